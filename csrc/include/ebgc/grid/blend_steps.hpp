// The stream predictor's fit as the GPU computes it: plan.hpp's sample of blocks (every
// stride-th block of kScoreBlock values), one thread block of kBlendThreads a sampled block, each
// thread summing its strided share with the CPU's per-value terms (add_blend_terms,
// residual_bits), the thread block reducing the shares in a fixed tree order, and the host adding
// the blocks' sums in block order before it fits and decides with the CPU's functions
// (fit_previous, fit_two_previous, choose_blend). The kernels are cuda/blend_kernels.cuh; the
// host runner (grid_choose_blend below) runs the same steps, so its choice is the GPU's to the
// bit. The CPU codec adds the same terms in one sequential loop: its coefficients can differ from
// these in their last float32 bit, in rare cases.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "../plan.hpp"
#include "../predictors/blend.hpp"

namespace ebgc {

constexpr unsigned kBlendThreads = 256;
static_assert(kScoreBlock % kBlendThreads == 0, "a sampled block is whole threads' shares");

struct BlendSample {
  uint64_t n, stride, blocks, sampled;
  explicit BlendSample(uint64_t n_) : n(n_), stride(blend_sample_stride(n_)), blocks(0), sampled(0) {
    const uint64_t all = (n + kScoreBlock - 1) / kScoreBlock;
    blocks = (all + stride - 1) / stride;
    for (uint64_t b = 0; b < blocks; ++b) sampled += end(b) - begin(b);
  }
  EBGC_HD uint64_t begin(uint64_t b) const { return b * stride * kScoreBlock; }
  EBGC_HD uint64_t end(uint64_t b) const { return begin(b) + kScoreBlock < n ? begin(b) + kScoreBlock : n; }
};

struct ResidualBits {
  double bits[3];  // zero, one-term, two-term prediction
};

EBGC_HD inline BlendSums add_sums(BlendSums a, const BlendSums& b) {
  add_blend_sums(a, b);
  return a;
}
EBGC_HD inline ResidualBits add_bits(ResidualBits a, const ResidualBits& b) {
  for (unsigned k = 0; k < 3; ++k) a.bits[k] = add_rn(a.bits[k], b.bits[k]);
  return a;
}

// Thread `thread` of the thread block of values [begin, end).
template <class T>
EBGC_HD BlendSums blend_thread_sums(const T* x, const T* p1, const T* p2, uint64_t begin, uint64_t end, unsigned thread) {
  BlendSums s;
  for (uint64_t i = begin + thread; i < end; i += kBlendThreads)
    add_blend_terms(double(x[i]), double(p1[i]), p2 ? double(p2[i]) : 0.0, p2 != nullptr, s);
  return s;
}
template <class T>
EBGC_HD ResidualBits residual_thread_bits(const T* x, uint64_t begin, uint64_t end, unsigned thread, double inv,
                                          const PreviousBlendPredictor<T>& one, const PreviousBlendPredictor<T>& two) {
  ResidualBits r{{0, 0, 0}};
  for (uint64_t i = begin + thread; i < end; i += kBlendThreads) {
    const double xi = double(x[i]);
    r.bits[0] = add_rn(r.bits[0], residual_bits(xi, 0.0, inv));
    r.bits[1] = add_rn(r.bits[1], residual_bits(xi, one(i), inv));
    r.bits[2] = add_rn(r.bits[2], residual_bits(xi, two(i), inv));
  }
  return r;
}

// The thread block's tree: v[i] = add(v[i], v[i + half]) for half = 128, 64, ..., 1.
template <class V, class Add>
V tree_reduce(V* v, Add add) {
  for (unsigned half = kBlendThreads / 2; half > 0; half /= 2)
    for (unsigned i = 0; i < half; ++i) v[i] = add(v[i], v[i + half]);
  return v[0];
}

// The host's part between the two kernels and after them.
template <class T>
struct BlendFit {
  PreviousBlendPredictor<T> one, two;
  BlendFit(const BlendSums* partial, uint64_t blocks, const T* p1, const T* p2) {
    BlendSums total;
    for (uint64_t b = 0; b < blocks; ++b) add_blend_sums(total, partial[b]);
    one = fit_previous(total, p1);
    two = p2 ? fit_two_previous(total, p1, p2) : one;
  }
  BlendFit(const PreviousBlendPredictor<T>& one_, const PreviousBlendPredictor<T>& two_) : one(one_), two(two_) {}
  void choose(const ResidualBits* partial, const BlendSample& sample, PredictorChoice<T>& choice) const {
    std::array<double, 3> bits{};
    for (uint64_t b = 0; b < sample.blocks; ++b)
      for (unsigned k = 0; k < 3; ++k) bits[k] += partial[b].bits[k];
    choose_blend(bits, double(sample.n) / double(sample.sampled), one, two, choice);
  }
};

// The host runner of the GPU's choice: the same threads, trees and host steps.
template <class T>
PredictorChoice<T> grid_choose_blend(const T* x, uint64_t n, const T* p1, const T* p2, double step) {
  PredictorChoice<T> choice;
  const BlendSample sample(n);
  std::vector<BlendSums> sums(sample.blocks), threads(kBlendThreads);
  for (uint64_t b = 0; b < sample.blocks; ++b) {
    for (unsigned t = 0; t < kBlendThreads; ++t) threads[t] = blend_thread_sums(x, p1, p2, sample.begin(b), sample.end(b), t);
    sums[b] = tree_reduce(threads.data(), add_sums);
  }
  const BlendFit<T> fit(sums.data(), sample.blocks, p1, p2);
  std::vector<ResidualBits> bits(sample.blocks), thread_bits(kBlendThreads);
  const double inv = 1.0 / step;
  for (uint64_t b = 0; b < sample.blocks; ++b) {
    for (unsigned t = 0; t < kBlendThreads; ++t)
      thread_bits[t] = residual_thread_bits(x, sample.begin(b), sample.end(b), t, inv, fit.one, fit.two);
    bits[b] = tree_reduce(thread_bits.data(), add_bits);
  }
  fit.choose(bits.data(), sample, choice);
  return choice;
}

}  // namespace ebgc
