// The low-rank predictor's state as it travels in the header (docs/FORMAT.md, "Low-rank
// predictors"): A (rows x r) and B (r x cols), each component k as integers of its own width times
// a float32 scale per factor. This file writes and reads that state; predictors/lowrank.hpp
// predicts from it and predictors/lowrank_fit.hpp finds it.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../common/bitio.hpp"
#include "../common/bytes.hpp"
#include "../common/errors.hpp"
#include "../format/vocabulary.hpp"
#include "../legacy/lowrank_int16.hpp"

namespace ebgc {

// Packed layout (predictor 4): rank; per component its width and the scales of A and B; then per
// component A's column and B's row, each entry in its width, LSB first, one bit stream padded to
// a byte at the end.
constexpr unsigned kLowRankComponentHeader = 9;
constexpr unsigned kLowRankMinBits = 2, kLowRankMaxBits = 16;
inline uint64_t low_rank_packed_bytes(unsigned rank, uint64_t total_bits, uint64_t rows, uint64_t cols) {
  return 1 + uint64_t(rank) * kLowRankComponentHeader + (total_bits * (rows + cols) + 7) / 8;
}

// Bytes the factors of predictor `id` (3 or 4) take at the front of `r`, for a rows x cols
// matrix; every size is checked against what is there before it is computed, so no declared
// shape can make a reader go past the header.
inline uint64_t low_rank_stored_bytes(const ByteReader& r, uint8_t id, uint64_t rows, uint64_t cols) {
  const unsigned rank = r.remaining() ? r.data[r.pos] : 0;
  require_format(rank >= 1 && rank <= kMaxLowRank, "bad low-rank predictor rank");
  if (id == uint8_t(PredictorId::LowRank)) return legacy::int16_factor_bytes(rank, rows, cols, r.remaining());
  require_format(r.remaining() >= 1 + uint64_t(rank) * kLowRankComponentHeader,
                 "low-rank factors run past the end of the blob");
  uint64_t total_bits = 0;
  for (unsigned k = 0; k < rank; ++k) {
    const unsigned bits = r.data[r.pos + 1 + k * kLowRankComponentHeader];
    require_format(bits >= kLowRankMinBits && bits <= kLowRankMaxBits, "bad low-rank factor width");
    total_bits += bits;
  }
  require_format((rows + cols) <= r.remaining() * 8 / total_bits, "low-rank factors run past the end of the blob");
  return low_rank_packed_bytes(rank, total_bits, rows, cols);
}

struct LowRankFactors {
  uint64_t rows = 0, cols = 0;
  unsigned rank = 0;
  std::vector<uint8_t> bits;            // per component, kLowRankMinBits..kLowRankMaxBits
  std::vector<float> scale_a, scale_b;  // per component
  std::vector<int16_t> a;               // rows x rank
  std::vector<int16_t> b;               // rank x cols

  uint64_t total_bits(unsigned components) const {
    uint64_t t = 0;
    for (unsigned k = 0; k < components; ++k) t += bits[k];
    return t;
  }

  // The header bytes of predictor 4.
  std::vector<uint8_t> save() const {
    ByteWriter w;
    w.u8(uint8_t(rank));
    for (unsigned k = 0; k < rank; ++k) {
      uint32_t u[2];
      std::memcpy(&u[0], &scale_a[k], 4);
      std::memcpy(&u[1], &scale_b[k], 4);
      w.u8(bits[k]);
      w.u32(u[0]);
      w.u32(u[1]);
    }
    BitWriter bw;
    for (unsigned k = 0; k < rank; ++k) {
      const uint32_t mask = (uint32_t(1) << bits[k]) - 1;
      for (uint64_t i = 0; i < rows; ++i) bw.put(uint32_t(int32_t(a[i * rank + k])) & mask, bits[k]);
      for (uint64_t j = 0; j < cols; ++j) bw.put(uint32_t(int32_t(b[k * cols + j])) & mask, bits[k]);
    }
    bw.flush();
    w.bytes(bw.out.data(), bw.out.size());
    return std::move(w.buf);
  }

  // From the header bytes of predictor 3 (int16) or 4 (packed), whose length read_header() has
  // checked against the shape (low_rank_stored_bytes).
  static LowRankFactors load(const std::vector<uint8_t>& data, uint64_t rows, uint64_t cols, uint8_t predictor) {
    LowRankFactors f;
    require_format(!data.empty(), "missing low-rank factors");
    f.rank = data[0];
    require_format(f.rank >= 1 && f.rank <= kMaxLowRank, "bad low-rank predictor rank");
    const bool packed = predictor == uint8_t(PredictorId::LowRankPacked);
    require_format(data.size() >= 1 + uint64_t(f.rank) * (packed ? kLowRankComponentHeader : legacy::kInt16ComponentHeader),
                   "low-rank factors do not match the shape");
    f.rows = rows, f.cols = cols;
    const uint8_t* p = data.data() + 1;
    auto f32 = [&]() {
      const uint32_t v = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
      p += 4;
      float x;
      std::memcpy(&x, &v, 4);
      return x;
    };
    for (unsigned k = 0; k < f.rank; ++k) {
      f.bits.push_back(packed ? *p++ : uint8_t(16));
      require_format(f.bits[k] >= kLowRankMinBits && f.bits[k] <= kLowRankMaxBits, "bad low-rank factor width");
      const float sa = f32(), sb = f32();
      require_format(std::isfinite(sa) && std::isfinite(sb), "bad low-rank factor scale");
      f.scale_a.push_back(sa);
      f.scale_b.push_back(sb);
    }
    ByteReader measure(data.data(), data.size());
    require_format(data.size() == low_rank_stored_bytes(measure, predictor, rows, cols),
                   "low-rank factors do not match the shape");
    f.a.resize(size_t(rows * f.rank));
    f.b.resize(size_t(f.rank * cols));
    if (!packed) {
      legacy::read_int16_entries(p, f.a, f.b);
      return f;
    }
    BitReader br(p, size_t(data.data() + data.size() - p));
    auto entry = [&](unsigned w) {  // sign-extends a w-bit two's complement integer
      br.refill();
      const uint32_t u = br.get(w);
      return int16_t(int32_t(u << (32 - w)) >> (32 - w));
    };
    for (unsigned k = 0; k < f.rank; ++k) {
      for (uint64_t i = 0; i < rows; ++i) f.a[i * f.rank + k] = entry(f.bits[k]);
      for (uint64_t j = 0; j < cols; ++j) f.b[k * cols + j] = entry(f.bits[k]);
    }
    require_format(!br.overran(), "low-rank factors truncated");
    return f;
  }
};

}  // namespace ebgc
