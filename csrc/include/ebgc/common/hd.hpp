// Host/device portability for the stages that CPU and GPU share (quantizer, 16-bit rounding,
// zigzag and bit-packing, predictors). One definition runs in both, so a reconstruction is the
// same bits wherever it is computed. Two things make that hold:
//  - the arithmetic that can differ is spelled out: a*b+c is two roundings (mul_rn, add_rn), never
//    a fused multiply-add, whatever the compiler's contraction setting;
//  - bit tests (sign, finiteness) read the IEEE bits instead of calling libm.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define EBGC_HD __host__ __device__
#else
#define EBGC_HD
#endif

namespace ebgc {

EBGC_HD inline uint64_t bits_of(double v) {
  uint64_t u;
  memcpy(&u, &v, 8);
  return u;
}
EBGC_HD inline double double_of(uint64_t u) {
  double v;
  memcpy(&v, &u, 8);
  return v;
}

// a * b and a + b rounded to nearest, each on its own (no contraction into an FMA).
EBGC_HD inline double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;  // the host build has -ffp-contract=off
#endif
}
EBGC_HD inline double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

EBGC_HD inline bool sign_bit(double v) { return (bits_of(v) >> 63) != 0; }
EBGC_HD inline double abs_of(double v) { return double_of(bits_of(v) & ~(uint64_t(1) << 63)); }
EBGC_HD inline bool is_finite(double v) { return (bits_of(v) & ~(uint64_t(1) << 63)) < (uint64_t(0x7ff) << 52); }
// 2^e for a normal double exponent (-1022..1023).
EBGC_HD inline double pow2(int e) { return double_of(uint64_t(e + 1023) << 52); }

// Order keys of IEEE bit patterns (U: uint32_t for float, uint64_t for double): key(a) < key(b)
// as unsigned integers iff a < b for non-NaN values (-0 before +0). Negatives are complemented,
// positives get the sign bit; branch-free, so a min/max over keys vectorizes (CPU) or runs as an
// integer atomic (GPU).
template <class U>
EBGC_HD inline U order_key_bits(U u) {
  constexpr unsigned kTop = 8 * sizeof(U) - 1;
  return u ^ ((U(0) - (u >> kTop)) | (U(1) << kTop));
}
template <class U>
EBGC_HD inline U from_order_key_bits(U k) {
  constexpr unsigned kTop = 8 * sizeof(U) - 1;
  return k ^ ((U(0) - ((k >> kTop) ^ 1u)) | (U(1) << kTop));
}

// c ? a : b for c in {0, 1}, without a branch: compilers turn the ternary into jumps on
// data-dependent conditions that no predictor can learn (zero or not, sign, small or large).
EBGC_HD inline uint32_t pick(uint32_t c, uint32_t a, uint32_t b) { return b ^ ((a ^ b) & (0u - c)); }

// The high 64 bits of a * b (the rANS encoder's division by a reciprocal).
EBGC_HD inline uint64_t mul_hi64(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  return uint64_t((static_cast<unsigned __int128>(a) * b) >> 64);
#endif
}

// Number of significant bits of v (0 for 0).
EBGC_HD inline unsigned bit_width(uint32_t v) {
#if defined(__CUDA_ARCH__)
  return 32u - unsigned(__clz(v));
#else
  return v ? 32u - unsigned(__builtin_clz(v)) : 0u;
#endif
}

EBGC_HD inline unsigned popcount32(uint32_t v) {
#if defined(__CUDA_ARCH__)
  return unsigned(__popc(v));
#else
  return unsigned(__builtin_popcount(v));
#endif
}

}  // namespace ebgc
