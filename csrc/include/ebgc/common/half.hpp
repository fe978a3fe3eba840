// Stage 0 — 16-bit storage types. float16 (IEEE binary16) and bfloat16 values are read into double
// exactly, and every reconstruction is rounded from double straight to the storage type (round to
// nearest, ties to even; one rounding, never through float), so the quantizer verifies the bound
// on the value the caller will actually receive. Outliers keep their 16 raw bits (NaN payloads too).
#pragma once
#include <cstdint>

#include "../common/hd.hpp"

namespace ebgc {

// A binary floating-point format with kMant stored mantissa bits and exponent bias kBias, whose
// exponent field is 15 - kMant bits wide.
template <int kMant, int kBias>
struct Narrow {
  uint16_t bits = 0;

  static constexpr int kExpMax = (1 << (15 - kMant)) - 1;  // all ones: Inf / NaN
  static constexpr int kMinExp = 1 - kBias;                // exponent of the smallest normal

  Narrow() = default;
  EBGC_HD static Narrow from_bits(uint16_t b) {
    Narrow n;
    n.bits = b;
    return n;
  }

  // Round to nearest even, from double directly (a double rounding through float could break
  // ties differently).
  EBGC_HD explicit Narrow(double v) {
    uint64_t u = bits_of(v);
    const uint16_t sign = uint16_t((u >> 63) << 15);
    u &= ~(uint64_t(1) << 63);
    const uint64_t inf_bits = uint64_t(0x7ff) << 52;
    if (u > inf_bits) {  // NaN: keep it quiet
      bits = uint16_t(sign | (kExpMax << kMant) | (1u << (kMant - 1)));
      return;
    }
    const double a = double_of(u);
    uint64_t r;
    if (a < pow2(kMinExp)) {
      // Subnormal target: count units of 2^(kMinExp - kMant); exact scaling, then RNE.
      const double units = mul_rn(a, pow2(kMant - kMinExp));  // < 2^kMant, exact
      r = uint64_t(add_rn(units, 0x1.8p52) - 0x1.8p52);       // may round up to the smallest normal
    } else {
      // Normal: drop the low 52 - kMant mantissa bits with RNE; a carry runs into the exponent,
      // which is exactly right (the encoding is monotone), and past the largest finite into Inf.
      const int shift = 52 - kMant;
      const uint64_t rem = u & ((uint64_t(1) << shift) - 1), half = uint64_t(1) << (shift - 1);
      uint64_t q = u >> shift;
      if (rem > half || (rem == half && (q & 1))) ++q;
      const uint64_t rebias = uint64_t(1023 - kBias) << kMant;
      r = q - rebias;
      if (u == inf_bits || r >= (uint64_t(kExpMax) << kMant)) r = uint64_t(kExpMax) << kMant;  // Inf
    }
    bits = uint16_t(sign | r);
  }

  EBGC_HD explicit operator double() const {
    const uint64_t sign = uint64_t(bits >> 15) << 63;
    const uint32_t e = (bits >> kMant) & kExpMax, m = bits & ((1u << kMant) - 1);
    uint64_t u;
    if (e == 0) {
      u = bits_of(mul_rn(double(m), pow2(kMinExp - kMant)));  // exact
    } else if (e == uint32_t(kExpMax)) {
      u = (uint64_t(0x7ff) << 52) | (uint64_t(m) << (52 - kMant));  // Inf, or NaN with its payload
    } else {
      u = (uint64_t(int(e) - kBias + 1023) << 52) | (uint64_t(m) << (52 - kMant));
    }
    return double_of(u | sign);
  }
};

using Float16 = Narrow<10, 15>;
using BFloat16 = Narrow<7, 127>;
static_assert(sizeof(Float16) == 2 && sizeof(BFloat16) == 2, "16-bit storage types must be 2 bytes");

}  // namespace ebgc
