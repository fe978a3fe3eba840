// Stage 2 — predictor, one-shot: a low-rank approximation of a matrix, its factors sent in the
// header. The update of a linear layer is a sum over the steps of a round of outer products
// (output delta x input), so its spectrum falls fast: on the vgg trace rank 4 of the 512 x 512 fc
// update holds 95% of its energy. Gradients have no spatial smoothness for Lorenzo-style
// predictors to use, but this is structure they do have (the idea PowerSGD and GaLore build on);
// coding the residual of a rank-r prediction makes that fc tensor about 2.5-3x smaller. Conv
// weights read as (O, I*H*W) matrices gain nothing measurable, so only rank-2 tensors try it.
//
// The prediction of (i, j) is sum_k a[i][k] * b[k][j] in double, k ascending, every product and
// sum rounded on its own (no FMA): exactly reproducible anywhere. The factors (their layout:
// lowrank_factors.hpp) are found by the encoder in lowrank_fit.hpp.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../common/cpu_features.hpp"
#include "../common/hd.hpp"
#include "../format/header.hpp"
#include "lowrank_factors.hpp"

namespace ebgc {

// A prediction computed for the values [begin, end) of one chunk, read by global index.
struct RangePrediction {
  const double* v;
  uint64_t begin;
  double operator()(size_t i) const { return v[i - begin]; }
};

// The prediction one value at a time, for the device's decoders (a thread a value) and their host
// runners: the factors in memory the caller holds (a: rows x rank, b: rank x cols, as in
// LowRankPredictor), the operation order of fill_portable, so the same bits.
struct LowRankView {
  const double* a;
  const double* b;
  uint64_t cols;
  unsigned rank;  // >= 1

  EBGC_HD double operator()(size_t i) const {
    const uint64_t row = i / cols, j = i % cols;
    const double* ar = a + row * rank;
    double p = mul_rn(ar[0], b[j]);
    for (unsigned k = 1; k < rank; ++k) p = add_rn(p, mul_rn(ar[k], b[k * cols + j]));
    return p;
  }
  const LowRankView& for_range(uint64_t, uint64_t) const { return *this; }
};

struct LowRankPredictor {
  uint64_t rows = 0, cols = 0;
  unsigned rank = 0;
  std::vector<double> a;  // rows x rank: integer times scale, exact in double
  std::vector<double> b;  // rank x cols
  std::vector<uint8_t> data;  // the header bytes

  explicit LowRankPredictor(const LowRankFactors& f)
      : rows(f.rows), cols(f.cols), rank(f.rank), a(f.a.size()), b(f.b.size()), data(f.save()) {
    for (uint64_t i = 0; i < rows; ++i)
      for (unsigned k = 0; k < rank; ++k) a[i * rank + k] = double(f.a[i * rank + k]) * double(f.scale_a[k]);
    for (unsigned k = 0; k < rank; ++k)
      for (uint64_t j = 0; j < cols; ++j) b[k * cols + j] = double(f.b[k * cols + j]) * double(f.scale_b[k]);
  }

  // Predictions of the flat indices [begin, end) into out.
  void fill(uint64_t begin, uint64_t end, double* out) const {
#ifdef EBGC_HAVE_AVX2
    if (use_avx2()) return fill_avx2(begin, end, out);
#endif
    fill_portable(begin, end, out);
  }

  // The loop runs over j innermost with the same operation order for every element, so any
  // vector width gives the same bits.
  inline void fill_portable(uint64_t begin, uint64_t end, double* out) const {
    for (uint64_t at = begin; at < end;) {
      const uint64_t i = at / cols, j0 = at % cols, j1 = std::min(cols, j0 + (end - at));
      double* o = out + (at - begin);  // o[j - j0] is the value (i, j)
      const double* ar = a.data() + i * rank;
      for (uint64_t j = j0; j < j1; ++j) o[j - j0] = mul_rn(ar[0], b[j]);
      for (unsigned k = 1; k < rank; ++k) {
        const double ak = ar[k];
        const double* bk = b.data() + k * cols;
        for (uint64_t j = j0; j < j1; ++j) o[j - j0] = add_rn(o[j - j0], mul_rn(ak, bk[j]));
      }
      at += j1 - j0;
    }
  }
#ifdef EBGC_HAVE_AVX2
  __attribute__((target("avx2"))) void fill_avx2(uint64_t begin, uint64_t end, double* out) const {
    fill_portable(begin, end, out);
  }
#endif

  // The chunk's predictions in a per-thread buffer, valid until this thread's next call.
  RangePrediction for_range(uint64_t begin, uint64_t end) const {
    static thread_local std::vector<double> buffer;
    buffer.resize(size_t(end - begin));
    fill(begin, end, buffer.data());
    return {buffer.data(), begin};
  }

  LowRankView view() const { return {a.data(), b.data(), cols, rank}; }

  // Its state from a blob's header (predictor 3 or 4; read_header() has checked the sizes).
  static LowRankPredictor load(const Header& h) {
    const uint64_t rows = h.shape[0];
    return LowRankPredictor(LowRankFactors::load(h.predictor_data, rows, h.elements() / rows, h.predictor));
  }

  void save(Header& h) const {
    h.predictor = uint8_t(PredictorId::LowRankPacked);
    h.predictor_coef[0] = h.predictor_coef[1] = 0;
    h.predictor_data = data;
  }
};

}  // namespace ebgc
