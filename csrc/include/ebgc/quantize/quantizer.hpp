// Stage 3 — linear quantizer. Step 2*eb, codes centred on the prediction. Every reconstruction is
// verified in exactly the arithmetic the decoder uses; a value that fails (NaN, Inf, huge, rounding
// edge, code out of range) becomes an outlier stored bit-exactly. This is why the bound holds in
// floating point, not only on paper. T may be a 16-bit storage type (half.hpp): the check is then
// on the value rounded to 16 bits, which is what the caller receives.
#pragma once
#include <cfloat>
#include <cstdint>

#include "../common/hd.hpp"

namespace ebgc {

// Codes live in (-2^30, 2^30): symbolize.hpp needs at most 29 extra bits.
constexpr double kMaxCode = double((1 << 30) - 1);

struct LinearQuantizer {
  double step;      // 2 * abs_bound (1 in exact mode, abs_bound == 0)
  double inv_step;  // 1 / step, used only to find the candidate code
  double check;     // bound the verified error must meet (slightly tightened, see below)

  LinearQuantizer() = default;  // (the GPU keeps one in device memory, filled by a kernel)
  EBGC_HD explicit LinearQuantizer(double abs_bound) {
    if (abs_bound > 0) {
      step = 2.0 * abs_bound;
      if (!is_finite(step)) step = DBL_MAX;  // huge bounds: every finite value maps to code 0
    } else {
      step = 1.0;  // exact mode: integers are codes, everything else is an outlier
    }
    inv_step = 1.0 / step;
    // The error is measured in double; a double subtraction is exact for float32 inputs and
    // within 2^-53 relative for float64 ones. Tightening by 2^-50 makes the measured test imply
    // the mathematical one.
    check = abs_bound * (1.0 - 0x1p-50);
    if (abs_bound > 0 && !(check > 0)) check = 0;  // denormal bound: demand exactness
  }

  // The single definition of a reconstruction, shared by encoder and decoder, CPU and GPU.
  template <class T>
  EBGC_HD inline T reconstruct(int32_t code, double prediction) const {
    return T(add_rn(prediction, mul_rn(double(code), step)));
  }

  // Returns false when x must be stored as an outlier (code is then 0). `decoded` receives what
  // the decoder will hold: the reconstruction, or x itself for an outlier. Branch-free, so that
  // the encoder's loop over a block vectorizes; a failed test only clears `ok`.
  template <class T>
  EBGC_HD inline bool quantize(T x, double prediction, int32_t& code, T& decoded) const {
    const double xd = double(x);
    const double v = mul_rn(xd - prediction, inv_step);
    const bool in_range = abs_of(v) < kMaxCode;  // false for NaN, Inf, out of code range
    // Round half to even without libm: valid for |v| < 2^51. Out of range, v becomes +0 by a mask,
    // not a select: GCC turned the select into a branch around the conversion below, and a loop
    // with a branch does not vectorize.
    const double in_range_v = double_of(bits_of(v) & (uint64_t(0) - uint64_t(in_range)));
    const double q = add_rn(in_range_v, 0x1.8p52) - 0x1.8p52;
    const int32_t c = int32_t(q);
    const T rec = reconstruct<T>(c, prediction);
    const double err = abs_of(double(rec) - xd);
    // Exact mode (check == 0) must also keep the sign of a zero.
    // `&` and `|`, not `&&` and `||`: no short-circuit branches either.
    const bool ok = in_range & (err <= check) & ((check != 0) | (sign_bit(double(rec)) == sign_bit(xd)));
    code = ok ? c : 0;
    decoded = ok ? rec : x;
    return ok;
  }

  template <class T>
  EBGC_HD inline bool quantize(T x, double prediction, int32_t& code) const {
    T decoded;
    return quantize(x, prediction, code, decoded);
  }
};

}  // namespace ebgc
