// Stage 4b — fixed-length bit-packing per block of 32 values with zero-block elimination.
// Each block sends one width byte w (0..32) and, if w > 0, its 32 values in w bits each (4w
// bytes; a short last block is padded with zeros). The layout is the GPU-friendly one: a block's
// output offset is a prefix sum of 4w, so blocks encode and decode independently.
#pragma once
#include <cstdint>
#include <cstring>

#include "../common/errors.hpp"
#include "../common/hd.hpp"

namespace ebgc {

constexpr unsigned kPackBlock = 32;

EBGC_HD inline uint32_t zigzag(int32_t q) { return (uint32_t(q) << 1) ^ uint32_t(q >> 31); }
EBGC_HD inline int32_t unzigzag(uint32_t u) { return int32_t(u >> 1) ^ -int32_t(u & 1u); }

// Packs 32 values of width w (1..32) into exactly 4w bytes.
inline void pack_block(const uint32_t* v, unsigned w, uint8_t* out) {
  uint64_t acc = 0;
  unsigned nacc = 0;
  for (unsigned i = 0; i < kPackBlock; ++i) {
    acc |= uint64_t(v[i]) << nacc;
    nacc += w;
    while (nacc >= 32) {
      uint32_t lo = uint32_t(acc);
      std::memcpy(out, &lo, 4);
      out += 4;
      acc >>= 32;
      nacc -= 32;
    }
  }
}

inline void unpack_block(const uint8_t* in, unsigned w, uint32_t* v) {
  const uint64_t mask = (uint64_t(1) << w) - 1;
  uint64_t acc = 0;
  unsigned nacc = 0;
  for (unsigned i = 0; i < kPackBlock; ++i) {
    if (nacc < w) {
      uint32_t lo;
      std::memcpy(&lo, in, 4);
      in += 4;
      acc |= uint64_t(lo) << nacc;
      nacc += 32;
    }
    v[i] = uint32_t(acc & mask);
    acc >>= w;
    nacc -= w;
  }
}

// Size in bytes of the packed data of one block.
EBGC_HD inline size_t packed_block_bytes(unsigned w) { return 4u * w; }

// A bit-packed chunk's widths (len_a bytes) against its packed data's length: 0 if they fit, 1 if
// a width is over 32, 2 if the lengths disagree. What BitpackCoder::check_chunk refuses, and what
// the GPU checks of a blob whose streams stay in device memory.
enum BitpackChunkFault : unsigned { kBitpackBadWidth = 1, kBitpackBadLength = 2 };
EBGC_HD inline unsigned bitpack_chunk_fault(const uint8_t* widths, uint64_t len_a, uint64_t len_b) {
  uint64_t packed = 0;
  bool ok = true;
  for (uint64_t k = 0; k < len_a; ++k) {
    ok &= widths[k] <= 32;
    packed += packed_block_bytes(widths[k]);
  }
  return !ok ? unsigned(kBitpackBadWidth) : packed != len_b ? unsigned(kBitpackBadLength) : 0u;
}
inline void require_bitpack_chunk(unsigned fault) {
  require_format(!(fault & kBitpackBadWidth), "bad bit-packing width");
  require_format(!(fault & kBitpackBadLength), "bit-packed data length mismatch");
}

}  // namespace ebgc
