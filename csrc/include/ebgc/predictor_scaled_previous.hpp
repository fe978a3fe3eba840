// Stage 2 — predictor, stateful: the previous reconstruction of the same tensor in the same
// stream, times a least-squares scale sent in the header. Both sides hold the same previous
// reconstruction (the decoder's output), so the prediction is identical bit for bit.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "format.hpp"

namespace ebgc {

template <class T>
struct ScaledPreviousPredictor {
  static constexpr PredictorId id = PredictorId::ScaledPrevious;
  const T* previous;
  double scale;
  double operator()(size_t i) const { return scale * double(previous[i]); }
  void describe(Header& h) const {
    h.predictor = uint8_t(id);
    h.predictor_scale = scale;
  }
};

// argmin_a sum (x - a p)^2 over the pairs where both are finite, rounded to float32 so that the
// scale costs 4 bytes of entropy at most and is exactly representable everywhere. 0 if undefined.
template <class T>
double least_squares_scale(const T* x, const T* previous, size_t n) {
  double xp = 0, pp = 0;
  for (size_t i = 0; i < n; ++i) {
    double a = double(x[i]), b = double(previous[i]);
    if (std::isfinite(a) && std::isfinite(b)) {
      xp += a * b;
      pp += b * b;
    }
  }
  if (!(pp > 0)) return 0.0;
  const float a = float(xp / pp);  // may overflow float32 (tiny previous values): then no scale
  return std::isfinite(a) ? double(a) : 0.0;
}

// Sum of |x - prediction| over the finite values of x: how a predictor is chosen per tensor.
template <class T, class Predictor>
double residual_l1(const T* x, size_t n, const Predictor& predict) {
  double sum = 0;
  for (size_t i = 0; i < n; ++i) {
    double r = std::fabs(double(x[i]) - predict(i));
    if (std::isfinite(r)) sum += r;
  }
  return sum;
}

}  // namespace ebgc
