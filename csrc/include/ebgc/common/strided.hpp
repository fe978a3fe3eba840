// Copies a strided array (byte strides of any sign) into C order: the one copy a non-contiguous
// input costs, innermost dimension in a tight loop.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

namespace ebgc {

inline void gather_strided(const uint8_t* base, const std::vector<uint64_t>& shape, const std::vector<int64_t>& strides,
                           size_t item, uint8_t* out) {
  const size_t nd = shape.size();
  for (uint64_t d : shape)
    if (d == 0) return;
  if (nd == 0) {
    std::memcpy(out, base, item);
    return;
  }
  const uint64_t inner = shape[nd - 1];
  const int64_t inner_stride = strides[nd - 1];
  std::vector<uint64_t> index(nd, 0);
  for (;;) {
    const uint8_t* p = base;
    for (size_t d = 0; d + 1 < nd; ++d) p += int64_t(index[d]) * strides[d];
    for (uint64_t j = 0; j < inner; ++j, out += item) std::memcpy(out, p + int64_t(j) * inner_stride, item);
    size_t d = nd - 1;
    while (d-- > 0) {
      if (++index[d] < shape[d]) break;
      index[d] = 0;
    }
    if (d == size_t(-1)) return;
  }
}

}  // namespace ebgc
