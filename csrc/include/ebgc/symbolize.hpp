// Binarization shared by the Huffman and context coders: a quantization code becomes a small
// symbol (its magnitude class) plus raw bits (sign, then the low bits of large magnitudes).
//   |q| < 16           -> symbol |q|
//   |q| in [2^e, 2^e+1) -> symbol 16 + 2(e-4) + (next bit below the leading one), e-1 raw bits
// Signs of gradients are close to fair coins, so they go raw; magnitudes carry the entropy.
#pragma once
#include <cstdint>

namespace ebgc {

constexpr unsigned kSymbols = 68;  // 16 exact + 2 classes for each e in [4, 29]

struct SymbolInfo {
  uint32_t base;    // smallest magnitude of the class
  uint8_t nextra;   // low bits sent raw
  uint8_t nraw;     // nextra + sign bit (0 for symbol 0)
};

struct SymbolTable {
  SymbolInfo info[kSymbols];
  constexpr SymbolTable() : info{} {
    for (unsigned s = 0; s < kSymbols; ++s) {
      if (s < 16) {
        info[s] = {s, 0, uint8_t(s ? 1 : 0)};
      } else {
        unsigned k = s - 16, e = 4 + k / 2, hi = k & 1;
        info[s] = {(1u << e) | (hi << (e - 1)), uint8_t(e - 1), uint8_t(e)};
      }
    }
  }
};
inline constexpr SymbolTable kSymbolTable{};

struct Symbolized {
  uint32_t symbol;
  uint32_t raw;    // sign in bit 0, then the extra bits
  uint32_t nraw;
};

inline Symbolized symbolize(int32_t q) {
  uint32_t sign = uint32_t(q) >> 31;
  uint32_t m = sign ? uint32_t(-int64_t(q)) : uint32_t(q);
  if (m < 16) return {m, sign, m ? 1u : 0u};
  unsigned e = 31u - unsigned(__builtin_clz(m));
  uint32_t hi = (m >> (e - 1)) & 1u;
  uint32_t extra = m & ((1u << (e - 1)) - 1u);
  return {16 + 2 * (e - 4) + hi, sign | (extra << 1), e};
}

// Inverse: given the symbol and its raw bits (nraw of them, LSB first), rebuild the code.
inline int32_t desymbolize(uint32_t symbol, uint32_t raw) {
  const SymbolInfo& si = kSymbolTable.info[symbol];
  uint32_t m = si.base + (raw >> 1);
  return (raw & 1u) ? -int32_t(m) : int32_t(m);
}

}  // namespace ebgc
