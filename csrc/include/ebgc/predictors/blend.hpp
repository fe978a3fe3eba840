// Stage 2 — predictor, stateful: a least-squares blend of the last one or two reconstructions of
// the same tensor in the same stream, coefficients sent in the header. Both sides hold those
// reconstructions bit for bit (the decoder's outputs), so the prediction is identical everywhere.
// Measured on the resnet trace at REL 1e-2 (tensors > 1024 values): zero 8.87, one previous 9.17,
// two previous 9.33 (per-channel scales add nothing over one per tensor: 9.19). Coefficients are
// fitted by least squares; the predictor (or none) is chosen per tensor by add_residual_bits() (predictor_choice.hpp).
#pragma once
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "../format/header.hpp"
#include "../common/hd.hpp"

namespace ebgc {

template <class T>
struct PreviousBlendPredictor {
  const T* previous[2];  // last, then the one before (unused when terms == 1)
  double coef[2];
  unsigned terms;        // 1 or 2

  // Two roundings per term, no FMA: the GPU computes the same bits (hd.hpp).
  EBGC_HD double operator()(size_t i) const {
    double p = mul_rn(coef[0], double(previous[0][i]));
    if (terms == 2) p = add_rn(p, mul_rn(coef[1], double(previous[1][i])));
    return p;
  }
  // Codec loops ask for a chunk's predictor: this one needs no preparation.
  const auto& for_range(uint64_t, uint64_t) const { return *this; }
  void save(Header& h) const {
    h.predictor = uint8_t(terms == 1 ? PredictorId::ScaledPrevious : PredictorId::BlendTwoPrevious);
    h.predictor_coef[0] = coef[0];
    h.predictor_coef[1] = terms == 2 ? coef[1] : 0.0;
  }
};

// Coefficients rounded to float32 (exactly representable everywhere); false if undefined.
inline bool to_coefficient(double v, double& out) {
  const float f = float(v);
  if (!std::isfinite(f)) return false;
  out = double(f);
  return true;
}

// The least-squares sums of x against the last (p1) and second-last (p2, may be null)
// reconstructions: over the values where x and p1 are finite (one-term fit) and where all three
// are (two-term fit).
struct BlendSums {
  double x1 = 0, s11 = 0;                                  // one term
  double t11 = 0, t12 = 0, t22 = 0, tx1 = 0, tx2 = 0;      // two terms
};

// One value's terms: a of x, b of the last reconstruction, c of the one before (if `two`). The
// GPU's partial sums add the same terms (cuda/blend_kernels.cuh).
EBGC_HD inline void add_blend_terms(double a, double b, double c, bool two, BlendSums& s) {
  if (!(is_finite(a) && is_finite(b))) return;
  const double ab = mul_rn(a, b), bb = mul_rn(b, b);
  s.x1 = add_rn(s.x1, ab), s.s11 = add_rn(s.s11, bb);
  if (!two || !is_finite(c)) return;
  s.t11 = add_rn(s.t11, bb), s.t12 = add_rn(s.t12, mul_rn(b, c)), s.t22 = add_rn(s.t22, mul_rn(c, c));
  s.tx1 = add_rn(s.tx1, ab), s.tx2 = add_rn(s.tx2, mul_rn(a, c));
}
EBGC_HD inline void add_blend_sums(BlendSums& s, const BlendSums& o) {
  s.x1 = add_rn(s.x1, o.x1), s.s11 = add_rn(s.s11, o.s11), s.t11 = add_rn(s.t11, o.t11), s.t12 = add_rn(s.t12, o.t12);
  s.t22 = add_rn(s.t22, o.t22), s.tx1 = add_rn(s.tx1, o.tx1), s.tx2 = add_rn(s.tx2, o.tx2);
}

// Over values [begin, end).
template <class T>
void add_blend_sums(const T* x, const T* p1, const T* p2, uint64_t begin, uint64_t end, BlendSums& s) {
  if (p2)  // two loops, so that neither tests for p2 per value
    for (uint64_t i = begin; i < end; ++i) add_blend_terms(double(x[i]), double(p1[i]), double(p2[i]), true, s);
  else
    for (uint64_t i = begin; i < end; ++i) add_blend_terms(double(x[i]), double(p1[i]), 0.0, false, s);
}

// argmin_a sum (x - a p1)^2 (a = 0 where undefined).
template <class T>
PreviousBlendPredictor<T> fit_previous(const BlendSums& s, const T* p1) {
  PreviousBlendPredictor<T> pr{{p1, p1}, {0.0, 0.0}, 1};
  if (!(s.s11 > 0) || !to_coefficient(s.x1 / s.s11, pr.coef[0])) pr.coef[0] = 0.0;
  return pr;
}

// argmin_{a,b} sum (x - a p1 - b p2)^2; falls back to one term when the system is ill-posed.
template <class T>
PreviousBlendPredictor<T> fit_two_previous(const BlendSums& s, const T* p1, const T* p2) {
  const double det = s.t11 * s.t22 - s.t12 * s.t12;
  PreviousBlendPredictor<T> pr{{p1, p2}, {0.0, 0.0}, 2};
  if (!(det > 1e-9 * s.t11 * s.t22) || !std::isfinite(det) ||
      !to_coefficient((s.tx1 * s.t22 - s.tx2 * s.t12) / det, pr.coef[0]) ||
      !to_coefficient((s.tx2 * s.t11 - s.tx1 * s.t12) / det, pr.coef[1]))
    return fit_previous(s, p1);
  return pr;
}

// log2(1 + r) for r >= 0 by Mitchell's approximation (the float's bits read as a fixed-point
// number); 0 for r that is NaN or huge (outliers either way). Branch-free, so loops vectorize.
EBGC_HD inline double approx_log2_1p(double r) {
  const float f = float(1.0 + (r < 1e30 ? r : 0.0));
  uint32_t u;
  memcpy(&u, &f, 4);
  return double(u) * (1.0 / (1 << 23)) - 127.0;
}

// One value's term of those estimates (inv: 1 / the quantizer's step).
EBGC_HD inline double residual_bits(double x, double prediction, double inv) {
  return approx_log2_1p(mul_rn(abs_of(x - prediction), inv));
}

// Estimated bits of the quantized residual under each predictor, sum of log2(1 + |x -
// prediction| / step) over values [begin, end), added to `sum`, in one pass. Entropy grows with
// the log of the residual, so this ranks predictors the way the coder will.
template <class T, class... Predictors>
void add_residual_bits(const T* x, uint64_t begin, uint64_t end, double step,
                       std::array<double, sizeof...(Predictors)>& sum, const Predictors&... predict) {
  const double inv = 1.0 / step;
  for (uint64_t i = begin; i < end; ++i) {
    const double xi = double(x[i]);
    size_t k = 0;
    ((sum[k++] += residual_bits(xi, predict(i), inv)), ...);
  }
}

}  // namespace ebgc
