// Binarization shared by the Huffman and context coders: a quantization code becomes a small
// symbol (its magnitude class) plus raw bits (sign, then the low bits of large magnitudes).
//   |q| < 16            -> symbol |q|
//   |q| in [2^e, 2^e+1) -> symbol 16 + 4(e-4) + (the 2 bits below the leading one), e-2 raw bits
// Signs of gradients are close to fair coins, so they go raw; magnitudes carry the entropy, and
// two bits of mantissa in the class keep the raw low bits close to uniform.
#pragma once
#include <cstdint>
#include <cstring>

#include "../common/cpu_features.hpp"
#include "../common/hd.hpp"

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

// kSymbolTable's nextra by arithmetic, for loops the compiler vectorizes.
EBGC_HD constexpr uint32_t extra_bits_of(uint32_t symbol) {
  const int32_t k = int32_t(symbol) - int32_t(kExactSymbols);
  return uint32_t((k >> kClassBits) + 4 - int32_t(kClassBits)) & (0u - uint32_t(k >= 0));
}
constexpr bool extra_bits_agree() {
  for (uint32_t s = 0; s < kSymbols; ++s)
    if (extra_bits_of(s) != kSymbolTable.info[s].nextra) return false;
  return true;
}
static_assert(extra_bits_agree(), "extra_bits_of() must match the symbol table");

// kSymbolTable's base by arithmetic: device code cannot read the host's table.
EBGC_HD constexpr uint32_t symbol_base(uint32_t symbol) {
  if (symbol < kExactSymbols) return symbol;
  const uint32_t k = symbol - kExactSymbols, e = 4 + (k >> kClassBits), hi = k & ((1u << kClassBits) - 1);
  return (1u << e) | (hi << (e - kClassBits));
}
constexpr bool symbol_base_agrees() {
  for (uint32_t s = 0; s < kSymbols; ++s)
    if (symbol_base(s) != kSymbolTable.info[s].base) return false;
  return true;
}
static_assert(symbol_base_agrees(), "symbol_base() must match the symbol table");

// The codes of a run (at most kSymbolRun) as symbols, raw bits (sign in bit 0, then the extra
// bits) and extra-bit counts. Written for the vectorizer (the encoder's pass 1 and the low-rank
// fit's scoring run it on every value): branch-free, and the exponent comes from a float
// conversion (exact below 2^24, corrected above) instead of clz, which AVX2 has no vector form
// of. |q| < 2^30, as the quantizer guarantees.
constexpr unsigned kSymbolRun = 256;

// |q| without a branch (q > -2^31).
inline uint32_t magnitude(int32_t q) {
  const uint32_t sign = uint32_t(q) >> 31;
  return (uint32_t(q) ^ (0u - sign)) + sign;
}

struct Symbolized;
struct SymbolizedRun {
  uint32_t symbol[kSymbolRun], raw[kSymbolRun], nextra[kSymbolRun];
  inline Symbolized at(unsigned k) const;
};
inline void symbolize_run(const int32_t* q, unsigned m, SymbolizedRun& out) {
  for (unsigned k = 0; k < m; ++k) {
    const uint32_t sign = uint32_t(q[k]) >> 31, mag = magnitude(q[k]);
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

// One code as the coders see it: its symbol, its raw bits (sign in bit 0, then the extra bits),
// how many raw bits in all (the extra bits and a nonzero code's sign) and how many extra bits.
struct Symbolized {
  uint32_t symbol, raw, nraw, nextra;
};

// A code known to be below kExactSymbols in magnitude (the encoder's loop for runs of small
// codes): its symbol is |q|, its only raw bit its sign.
inline Symbolized symbolize_small(int32_t q) {
  const uint32_t m = magnitude(q);
  return {m, uint32_t(q) >> 31, uint32_t(m != 0), 0};
}

inline Symbolized SymbolizedRun::at(unsigned k) const {
  return {symbol[k], raw[k], nextra[k] + (symbol[k] != 0), nextra[k]};
}

// One code at a time, for a thread that owns a lane (grid/context_lane_steps.hpp): the same
// symbol and raw bits as symbolize_run, the exponent from the bit width.
EBGC_HD inline Symbolized symbolize_one(int32_t q) {
  const uint32_t sign = uint32_t(q) >> 31, mag = (uint32_t(q) ^ (0u - sign)) + sign;
  if (mag < kExactSymbols) return {mag, sign, uint32_t(mag != 0), 0};
  const uint32_t e = bit_width(mag) - 1, nextra = e - kClassBits;
  const uint32_t hi = (mag >> nextra) & ((1u << kClassBits) - 1);
  return {kExactSymbols + (e - 4) * (1u << kClassBits) + hi, sign | (mag & ((1u << nextra) - 1u)) << 1, nextra + 1,
          nextra};
}

// Inverse: given the symbol and its raw bits (nraw of them, LSB first), rebuild the code.
EBGC_HD inline int32_t desymbolize(uint32_t symbol, uint32_t raw) {
#if defined(__CUDA_ARCH__)
  const uint32_t m = symbol_base(symbol) + (raw >> 1);
#else
  const uint32_t m = kSymbolTable.info[symbol].base + (raw >> 1);  // a load: the CPU decoder's hot loop
#endif
  return (raw & 1u) ? -int32_t(m) : int32_t(m);
}

}  // namespace ebgc
