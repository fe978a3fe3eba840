// Stage 2 — which predictor codes a tensor: zero; a blend of the stream's last one or two
// reconstructions (predictor_scaled_previous.hpp); or a low-rank approximation of a matrix
// (predictor_lowrank.hpp). Each is fitted and scored by the estimated bits of its residual plus
// what it sends, a cheap stand-in for coding the tensor several times; the fewest bits win.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "codec.hpp"

namespace ebgc {

// The stream blends are fitted and scored on blocks of kScoreBlock values, every kScoreStride-th
// one, or every block of tensors under kScoreAllBelow values.
constexpr uint64_t kScoreBlock = 1024, kScoreStride = 8, kScoreAllBelow = uint64_t(1) << 16;

// previous[0], previous[1]: the stream's last and second-last reconstructions of this tensor
// (null if none); reconstruction (optional) receives what the decoder will return.
template <class T>
std::vector<uint8_t> compress_with_best_predictor(const T* x, const std::vector<uint64_t>& shape,
                                                  const CompressOptions& opt, const T* const* previous,
                                                  T* reconstruction) {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  const T* p1 = previous ? previous[0] : nullptr;
  const T* p2 = previous ? previous[1] : nullptr;
  // Bit-packing is the fast mode: no factorization there. Raw has no prediction at all.
  const bool try_low_rank = opt.low_rank && low_rank_eligible(shape) && opt.coder != int(Coder::Raw) &&
                            opt.coder != int(Coder::Bitpack);
  if ((!p1 && !try_low_rank) || n == 0 || n > kMaxElements) return compress(x, shape, opt, ZeroPredictor(), reconstruction);
  check_requested_bound(opt.error_bound);
  const FiniteRange range = opt.mode == BoundMode::Rel ? finite_range(x, size_t(n)) : FiniteRange();
  CompressOptions known = opt;  // compress() need not find the range again
  known.range = &range;
  const double abs_bound = absolute_bound(opt.mode, opt.error_bound, range);
  const double step = LinearQuantizer(abs_bound).step;

  // Estimated bits saved against zero prediction. The blends are scored by log2(1 + |r|) over
  // every value, low rank by the order-0 entropy of sampled residual symbols (the log estimate
  // undervalues small residuals: DESIGN.md); in the stateful bench the pick is never worse than
  // either predictor alone.
  double best_saved = 0;
  PreviousBlendPredictor<T> blend{{p1, p1}, {0.0, 0.0}, 1};
  bool use_blend = false;
  if (p1) {
    // Fitted and scored on a sample: every kScoreStride-th block (all of a small tensor), so a
    // stream whose rounds do not correlate pays little for asking.
    const uint64_t stride = n < kScoreAllBelow ? 1 : kScoreStride;
    auto for_sample = [&](auto&& f) {
      for (uint64_t b = 0; b * kScoreBlock < n; b += stride) f(b * kScoreBlock, std::min(n, (b + 1) * kScoreBlock));
    };
    BlendSums sums;
    uint64_t sampled = 0;
    for_sample([&](uint64_t b, uint64_t e) { add_blend_sums(x, p1, p2, b, e, sums), sampled += e - b; });
    const PreviousBlendPredictor<T> one = fit_previous(sums, p1);
    const PreviousBlendPredictor<T> two = p2 ? fit_two_previous(sums, p1, p2) : one;
    std::array<double, 3> bits{};
    for_sample([&](uint64_t b, uint64_t e) { add_residual_bits(x, b, e, step, bits, ZeroPredictor(), one, two); });
    const double scale = double(n) / double(sampled);
    const double one_bits = bits[1] * scale + 64, two_bits = two.terms == 2 ? bits[2] * scale + 128 : one_bits;  // + coefficients
    blend = two_bits < one_bits ? two : one;
    const double saved = bits[0] * scale - std::min(one_bits, two_bits);
    if (saved > best_saved) best_saved = saved, use_blend = true;
  }
  if (try_low_rank && abs_bound > 0 && std::isfinite(abs_bound)) {
    LowRankFit fit = fit_low_rank(x, shape[0], shape[1], step, std::max(1u, opt.threads));
    if (fit.factors.rank && fit.bits_saved > best_saved)
      return compress(x, shape, known, LowRankPredictor(fit.factors), reconstruction);
  }
  if (use_blend) return compress(x, shape, known, blend, reconstruction);
  return compress(x, shape, known, ZeroPredictor(), reconstruction);
}

}  // namespace ebgc
