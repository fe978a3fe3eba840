// The predictor of a row of a message grid (grid/message_grid.hpp, grid/context_message.hpp):
// zero, or the stream's blend that grid/message_blend.hpp chose for it. Kernels run their
// per-thread work through visit(), instantiated for both kinds.
#pragma once
#include <cstdint>

#include "../plan.hpp"
#include "../predictors/blend.hpp"
#include "../predictors/zero.hpp"

namespace ebgc {

template <class T>
struct RowPredictor {
  PreviousBlendPredictor<T> blend{{nullptr, nullptr}, {0.0, 0.0}, 1};
  uint32_t is_blend = 0;
  // f(the predictor): the kernels' per-thread work, instantiated for both kinds.
  template <class F>
  EBGC_HD void visit(F&& f) const {
    if (is_blend) f(blend);
    else f(ZeroPredictor());
  }
  void save(Header& h) const {
    if (is_blend) blend.save(h);
    else ZeroPredictor().save(h);
  }
  static RowPredictor of(const PredictorChoice<T>& c) {
    RowPredictor r;
    if (c.kind == PredictorKind::Blend) r.blend = c.blend, r.is_blend = 1;
    return r;
  }
};

}  // namespace ebgc
