// Stage 1 — bound: turn the user's request into the absolute bound every value must meet.
//   abs: |x - x'| <= eb.
//   rel: eb * (max - min) over the finite values (as SZ3's REL), computed in double.
// Defined cases: no finite value or max == min gives an absolute bound of 0, i.e. exact
// reconstruction; NaN and +-Inf never enter the range and are always stored exactly.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "errors.hpp"
#include "hd.hpp"

namespace ebgc {

enum class BoundMode : uint8_t { Abs = 0, Rel = 1 };

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
  // Two accumulators keep the loop simple enough to vectorize; NaN/Inf are skipped. 16-bit
  // storage types are compared as float, which holds every one of their values exactly.
  using A = std::conditional_t<std::is_floating_point_v<T>, T, float>;
  A lo = std::numeric_limits<A>::infinity(), hi = -std::numeric_limits<A>::infinity();
  const A big = std::numeric_limits<A>::max();
  for (size_t i = 0; i < n; ++i) {
    A v = A(double(x[i]));
    bool finite = v >= -big && v <= big;  // false for NaN and +-Inf
    lo = finite && v < lo ? v : lo;
    hi = finite && v > hi ? v : hi;
  }
  FiniteRange r;
  if (lo <= hi) {
    r.lo = double(lo);
    r.hi = double(hi);
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
