// Binarization shared by the Huffman and context coders: a quantization code becomes a small
// symbol (its magnitude class) plus raw bits (sign, then the low bits of large magnitudes).
//   |q| < 16            -> symbol |q|
//   |q| in [2^e, 2^e+1) -> symbol 16 + 4(e-4) + (the 2 bits below the leading one), e-2 raw bits
// Signs of gradients are close to fair coins, so they go raw; magnitudes carry the entropy, and
// two bits of mantissa in the class keep the raw low bits close to uniform.
#pragma once
#include <cstdint>
#include <cstring>

#include "cpu_features.hpp"
#include "hd.hpp"

namespace ebgc {

constexpr unsigned kExactSymbols = 16;
constexpr unsigned kClassBits = 2;                                     // mantissa bits in the class
constexpr unsigned kSymbols = kExactSymbols + (30 - 4) * (1u << kClassBits);  // |q| < 2^30: 120

struct SymbolInfo {
  uint32_t base;    // smallest magnitude of the class
  uint8_t nextra;   // low bits sent raw
  uint8_t nraw;     // nextra + sign bit (0 for symbol 0)
};

struct SymbolTable {
  SymbolInfo info[kSymbols];
  constexpr SymbolTable() : info{} {
    for (unsigned s = 0; s < kSymbols; ++s) {
      if (s < kExactSymbols) {
        info[s] = {s, 0, uint8_t(s ? 1 : 0)};
      } else {
        unsigned k = s - kExactSymbols, e = 4 + (k >> kClassBits), hi = k & ((1u << kClassBits) - 1);
        info[s] = {(1u << e) | (hi << (e - kClassBits)), uint8_t(e - kClassBits), uint8_t(e - kClassBits + 1)};
      }
    }
  }
};
inline constexpr SymbolTable kSymbolTable{};

struct Symbolized {
  uint32_t symbol;
  uint32_t raw;    // sign in bit 0, then the extra bits
  uint32_t nraw;    // raw bits in all: nextra + the sign bit of a nonzero code
  uint32_t nextra;
};

// Branch-free (the encoder's hot loop; GCC had compiled the small/large select into a jump that
// mispredicts wherever small and large codes mix): |q| < 2^30, as the quantizer guarantees.
inline Symbolized symbolize(int32_t q) {
  const uint32_t sign = uint32_t(q) >> 31;
  const uint32_t m = (uint32_t(q) ^ (0u - sign)) + sign;  // |q|
  const uint32_t large = m >= kExactSymbols;
  const unsigned e = 31u - unsigned(__builtin_clz(m | kExactSymbols));  // >= 4
  const unsigned nextra = (e - kClassBits) & (0u - large);
  const uint32_t hi = (m >> (e - kClassBits)) & ((1u << kClassBits) - 1);
  const uint32_t extra = m & ((1u << nextra) - 1u);
  const uint32_t symbol = pick(large, kExactSymbols + (e - 4) * (1u << kClassBits) + hi, m);
  return {symbol, sign | (extra << 1), nextra + (m != 0), nextra};
}

// symbolize() over a run of codes, into arrays (the encoder's pass 1), written for the vectorizer:
// the exponent comes from a float conversion (exact below 2^24, corrected above) instead of clz,
// which AVX2 has no vector form of. The same results as symbolize() (test_stages compares them).
constexpr unsigned kSymbolRun = 256;
struct SymbolizedRun {
  uint32_t symbol[kSymbolRun], raw[kSymbolRun], nextra[kSymbolRun];
};
inline void symbolize_run(const int32_t* q, unsigned m, SymbolizedRun& out) {  // m <= kSymbolRun
  for (unsigned k = 0; k < m; ++k) {
    const uint32_t sign = uint32_t(q[k]) >> 31;
    const uint32_t mag = (uint32_t(q[k]) ^ (0u - sign)) + sign;
    const uint32_t v = mag | kExactSymbols;
    const float f = float(int32_t(v));
    uint32_t fb;
    std::memcpy(&fb, &f, 4);
    uint32_t e = (fb >> 23) - 127;
    e -= uint32_t((v >> e) == 0);  // the conversion rounded up to the next power of two
    const uint32_t large = mag >= kExactSymbols;
    const uint32_t nextra = (e - kClassBits) & (0u - large);
    const uint32_t hi = (mag >> (e - kClassBits)) & ((1u << kClassBits) - 1);
    out.symbol[k] = large ? kExactSymbols + (e - 4) * (1u << kClassBits) + hi : mag;
    out.raw[k] = sign | (mag & ((1u << nextra) - 1u)) << 1;
    out.nextra[k] = nextra;
  }
}

#ifdef EBGC_HAVE_AVX2
__attribute__((target("avx2"))) inline void symbolize_run_avx2(const int32_t* q, unsigned m, SymbolizedRun& out) {
  symbolize_run(q, m, out);  // inlined here, and so compiled for AVX2 (8 codes a vector)
}
#endif

inline void symbolize_codes(const int32_t* q, unsigned m, SymbolizedRun& out) {
#ifdef EBGC_HAVE_AVX2
  if (use_avx2()) return symbolize_run_avx2(q, m, out);
#endif
  symbolize_run(q, m, out);
}

// symbolize() of a code known to be below kExactSymbols in magnitude: the symbol is |q|.
inline Symbolized symbolize_small(int32_t q) {
  const uint32_t sign = uint32_t(q) >> 31;
  const uint32_t m = (uint32_t(q) ^ (0u - sign)) + sign;
  return {m, sign, uint32_t(m != 0), 0};
}

// Inverse: given the symbol and its raw bits (nraw of them, LSB first), rebuild the code.
inline int32_t desymbolize(uint32_t symbol, uint32_t raw) {
  const SymbolInfo& si = kSymbolTable.info[symbol];
  uint32_t m = si.base + (raw >> 1);
  return (raw & 1u) ? -int32_t(m) : int32_t(m);
}

}  // namespace ebgc
