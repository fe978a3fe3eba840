// Small device helpers shared by the kernels: warp reductions, order-preserving keys for atomic
// min/max of doubles, and byte-exact loads/stores at any alignment (blob streams are not aligned).
#pragma once
#include <cstdint>

#include "ebgc/common/hd.hpp"

namespace ebgc {
namespace gpu {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr unsigned kWarp = 32;

__device__ inline unsigned warp_sum(unsigned v) {
#if __CUDA_ARCH__ >= 800
  return __reduce_add_sync(kFullMask, v);  // one instruction
#else
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
  return v;
#endif
}

// Inclusive sum over the warp's lanes (all 32 take part).
__device__ inline uint32_t warp_inclusive_sum(uint32_t v) {
  const unsigned lane = threadIdx.x % kWarp;
#pragma unroll
  for (unsigned off = 1; off < kWarp; off <<= 1) {
    const uint32_t t = __shfl_up_sync(kFullMask, v, off);
    if (lane >= off) v += t;
  }
  return v;
}

__device__ inline uint32_t lanemask_lt() {
  return (1u << (threadIdx.x & 31u)) - 1u;
}

// Ordered keys for atomic min/max of doubles (hd.hpp).
__host__ __device__ inline unsigned long long order_key(double v) { return order_key_bits(bits_of(v)); }
__host__ __device__ inline double from_order_key(unsigned long long k) { return double_of(from_order_key_bits(uint64_t(k))); }

// Little-endian byte stores/loads of a 32-bit word at any address.
__device__ inline void store_u32_bytes(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
  p[2] = uint8_t(v >> 16);
  p[3] = uint8_t(v >> 24);
}

// w (<= 32) bits starting at bit `bit` of the byte stream `base`. Reads the two aligned 32-bit
// words covering them, so the buffer must extend 8 bytes past the last byte read (the decoder's
// staging buffer is padded for that).
__device__ inline uint32_t load_bits(const uint8_t* base, uint64_t bit, unsigned w) {
  const uint8_t* p = base + (bit >> 3);
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  const uint32_t* aligned = reinterpret_cast<const uint32_t*>(addr & ~uintptr_t(3));
  const uint64_t two = uint64_t(aligned[0]) | uint64_t(aligned[1]) << 32;
  const unsigned shift = unsigned(addr & 3u) * 8u + unsigned(bit & 7u);  // <= 31
  const uint64_t mask = (uint64_t(1) << w) - 1;
  return uint32_t((two >> shift) & mask);
}

// A value of T stored at any byte address (outlier values in a blob).
template <class T>
__device__ inline T load_unaligned(const uint8_t* p) {
  T v;
  uint8_t* d = reinterpret_cast<uint8_t*>(&v);
  for (unsigned k = 0; k < sizeof(T); ++k) d[k] = p[k];
  return v;
}

}  // namespace gpu
}  // namespace ebgc
