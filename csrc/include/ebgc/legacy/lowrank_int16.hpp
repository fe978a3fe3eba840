// Predictor 3, the low-rank predictor's first layout (decode only): every factor entry an int16,
// whatever the component needs. Blobs written before the packed layout (predictor 4) use it; it is
// kept so that every blob ever written still decodes (docs/FORMAT.md, "Low-rank predictors").
//   u8 r | r x (f32 scale_a[k], f32 scale_b[k]) | rows x r x i16 A | r x cols x i16 B
#pragma once
#include <cstdint>
#include <vector>

#include "../common/errors.hpp"

namespace ebgc {
namespace legacy {

constexpr unsigned kInt16ComponentHeader = 8;  // two f32 scales

// Bytes of the factors of a rank-r (rows x cols) prediction, checked against what is left of the
// header before they are computed (no overflow for any declared shape).
inline uint64_t int16_factor_bytes(unsigned rank, uint64_t rows, uint64_t cols, uint64_t available) {
  require_format((rows + cols) <= available / (2 * rank), "low-rank factors run past the end of the blob");
  return 1 + uint64_t(rank) * (kInt16ComponentHeader + 2 * (rows + cols));
}

// The entries of A (row by row) then B (row by row) from p.
inline void read_int16_entries(const uint8_t* p, std::vector<int16_t>& a, std::vector<int16_t>& b) {
  for (auto* v : {&a, &b})
    for (int16_t& e : *v) e = int16_t(uint16_t(p[0] | p[1] << 8)), p += 2;
}

}  // namespace legacy
}  // namespace ebgc
