// Stage 3 over runs of values: the quantizer (quantize/quantizer.hpp) applied to a short run the
// compiler vectorizes, with an AVX2 build of the same loop, and the values it rejects collected as
// outliers. Shared by every encoder pass (encode/chunk_passes.hpp).
#pragma once
#include <cstdint>
#include <vector>

#include "../common/cpu_features.hpp"
#include "quantizer.hpp"

namespace ebgc {

// Values the quantizer could not bound, stored bit-exactly by the container (in index order).
template <class T>
struct Outliers {
  std::vector<uint64_t> index;
  std::vector<T> value;
  void add(uint64_t i, T v) {
    index.push_back(i);
    value.push_back(v);
  }
  void append(const Outliers& o) {
    index.insert(index.end(), o.index.begin(), o.index.end());
    value.insert(value.end(), o.value.begin(), o.value.end());
  }
};

// Values quantized per step of the encoder's loops: a short run the compiler vectorizes.
constexpr unsigned kQuantRun = 256;

// Codes of x[i0, i0 + m) into code[0, m); values the quantizer cannot bound become outliers with
// code 0. rec (if given) receives the decoder's values, from the quantizer's own check.
template <class T, class Predictor>
inline unsigned quantize_codes(const T* x, uint64_t i0, unsigned m, const LinearQuantizer& qz,
                               const Predictor& predict, int32_t* code, T* rec) {
  unsigned failed = 0;
  if (rec)
    for (unsigned k = 0; k < m; ++k) failed += !qz.quantize(x[i0 + k], predict(i0 + k), code[k], rec[i0 + k]);
  else
    for (unsigned k = 0; k < m; ++k) failed += !qz.quantize(x[i0 + k], predict(i0 + k), code[k]);
  return failed;
}

#ifdef EBGC_HAVE_AVX2
// The same loop, inlined here and so compiled for AVX2 (4 doubles a vector instead of SSE2's 2):
// IEEE arithmetic without contraction, so the codes are the same bits (test_stages compares them).
template <class T, class Predictor>
__attribute__((target("avx2"))) unsigned quantize_codes_avx2(const T* x, uint64_t i0, unsigned m,
                                                             const LinearQuantizer& qz, const Predictor& predict,
                                                             int32_t* code, T* rec) {
  return quantize_codes(x, i0, m, qz, predict, code, rec);
}
#endif

template <class T, class Predictor>
inline void quantize_run(const T* x, uint64_t i0, unsigned m, const LinearQuantizer& qz,
                         const Predictor& predict, int32_t* code, Outliers<T>& outliers, T* rec) {
#ifdef EBGC_HAVE_AVX2
  const unsigned failed = use_avx2() ? quantize_codes_avx2(x, i0, m, qz, predict, code, rec)
                                     : quantize_codes(x, i0, m, qz, predict, code, rec);
#else
  const unsigned failed = quantize_codes(x, i0, m, qz, predict, code, rec);
#endif
  if (!failed) return;
  for (unsigned k = 0; k < m; ++k) {
    int32_t c;
    if (!qz.quantize(x[i0 + k], predict(i0 + k), c)) outliers.add(i0 + k, x[i0 + k]);
  }
}

}  // namespace ebgc
