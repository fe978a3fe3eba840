// Stage 1 — bound: turn the user's request into the absolute bound every value must meet.
//   abs: |x - x'| <= eb.
//   rel: eb * (max - min) over the finite values (as SZ3's REL), computed in double.
// Defined cases: no finite value or max == min gives an absolute bound of 0, i.e. exact
// reconstruction; NaN and +-Inf never enter the range and are always stored exactly.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "../common/errors.hpp"
#include "../common/hd.hpp"
#include "../format/vocabulary.hpp"

namespace ebgc {

struct FiniteRange {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  bool empty() const { return !(lo <= hi); }
  void merge(const FiniteRange& o) {
    if (o.lo < lo) lo = o.lo;
    if (o.hi > hi) hi = o.hi;
  }
};

template <class T>
FiniteRange finite_range(const T* x, size_t n) {
  // NaN/Inf are skipped. 16-bit storage types are compared as float, which holds every one of
  // their values exactly. The reduction runs on the values' order keys (hd.hpp), integers whose
  // min/max GCC vectorizes when written with masks: a min/max over floats it may not reorder,
  // and it did not vectorize a select form either (the float loop ran at 0.75 ns a value).
  using A = std::conditional_t<std::is_floating_point_v<T>, T, float>;
  using U = std::conditional_t<sizeof(A) == 4, uint32_t, uint64_t>;
  constexpr U kMagnitude = ~U(0) >> 1;
  constexpr U kExponent = U(std::numeric_limits<A>::max_exponent * 2 - 1) << (std::numeric_limits<A>::digits - 1);
  U lo = ~U(0), hi = 0;
  for (size_t i = 0; i < n; ++i) {
    U b;
    if constexpr (std::is_same_v<A, T>) {
      std::memcpy(&b, x + i, sizeof b);
    } else {
      const A v = A(double(x[i]));
      std::memcpy(&b, &v, sizeof b);
    }
    const U finite = U(0) - U((b & kMagnitude) < kExponent);  // all ones, or 0 for NaN/Inf
    const U key = order_key_bits(b);
    lo = std::min(lo, key | ~finite);
    hi = std::max(hi, key & finite);
  }
  FiniteRange r;
  if (lo <= hi) {
    auto value_of = [](U key) {
      const U b = from_order_key_bits(key);
      A v;
      std::memcpy(&v, &b, sizeof v);
      return double(v);
    };
    r.lo = value_of(lo);
    r.hi = value_of(hi);
  }
  return r;
}

inline void check_requested_bound(double eb) {
  if (!(eb > 0) || !std::isfinite(eb))
    throw InvalidArgument("error_bound must be a finite number > 0");
}

// The rel-mode bound of a finite range [lo, hi] (lo > hi: no finite value). Shared with the GPU,
// which finds the range on the device.
EBGC_HD inline double rel_abs_bound(double eb, double lo, double hi) {
  if (!(lo <= hi)) return 0.0;
  const double b = mul_rn(eb, hi - lo);  // may be 0 (constant) or +Inf (double overflow): both defined
  return b == 0 ? 0.0 : b;  // +0 whichever signed zero a min/max reduction happened to keep
}

inline double absolute_bound(BoundMode mode, double eb, const FiniteRange& range) {
  check_requested_bound(eb);
  if (mode == BoundMode::Abs) return eb;
  return rel_abs_bound(eb, range.lo, range.hi);
}

}  // namespace ebgc
