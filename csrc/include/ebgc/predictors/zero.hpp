// Stage 2 — predictor, one-shot: predict zero. Gradients are noise-like and have no spatial
// smoothness, so Lorenzo/interpolation predictors only add residual energy on them (see
// docs/DESIGN.md); the cross-round predictors of the stateful codec live beside this file.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../format/header.hpp"
#include "../common/hd.hpp"

namespace ebgc {

struct ZeroPredictor {
  static constexpr PredictorId id = PredictorId::Zero;
  EBGC_HD double operator()(size_t /*index*/) const { return 0.0; }
  // Codec loops ask for a chunk's predictor: this one needs no preparation.
  const auto& for_range(uint64_t, uint64_t) const { return *this; }
  void save(Header& h) const {
    h.predictor = uint8_t(id);
    h.predictor_coef[0] = h.predictor_coef[1] = 0;
  }
};

}  // namespace ebgc
