// The one dispatch from a blob's header to its predictor (each predictor loads its own state from
// the header: coefficients, factors). Used by every decoder, CPU and GPU.
#pragma once
#include <cstdint>

#include "../common/errors.hpp"
#include "../format/header.hpp"
#include "blend.hpp"
#include "lowrank.hpp"
#include "zero.hpp"

namespace ebgc {

// Calls f(predictor) with the predictor of a blob. previous[0], previous[1]: the stream's last and
// second-last reconstructions of the tensor, for blobs predicted from them.
template <class T, class F>
decltype(auto) with_predictor(const Header& h, const T* const* previous, F&& f) {
  if (const unsigned terms = predictor_terms(h.predictor)) {
    if (!previous || !previous[0] || (terms == 2 && !previous[1]))
      throw InvalidArgument("this blob is predicted from its stream's earlier messages: decode it with a GradientDecoder");
    return f(PreviousBlendPredictor<T>{{previous[0], previous[terms - 1]}, {h.predictor_coef[0], h.predictor_coef[1]}, terms});
  }
  if (is_low_rank(h.predictor)) return f(LowRankPredictor::load(h));
  return f(ZeroPredictor());
}

// A predictor as the grid decoders read it, one value at a time: the low-rank factors' product per
// value (LowRankView over the predictor's own factors), the others as they are.
template <class P>
const P& per_value(const P& predict) {
  return predict;
}
inline LowRankView per_value(const LowRankPredictor& predict) { return predict.view(); }

}  // namespace ebgc
