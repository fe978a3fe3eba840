// Stage 2, encoder only: the low-rank predictor's factors (predictors/lowrank.hpp) by a
// randomized range finder with one power iteration (Halko, Martinsson, Tropp 2011), in float (only
// the sent factors need to be exact), and the rank that saves the most estimated bits.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../coders/symbolize.hpp"
#include "../common/cpu_features.hpp"
#include "../common/hd.hpp"
#include "../common/parallel.hpp"
#include "../format/vocabulary.hpp"
#include "../quantize/quantizer.hpp"
#include "lowrank.hpp"
#include "lowrank_factors.hpp"

namespace ebgc {

constexpr unsigned kLowRankSketch = 24;     // sketch columns: ranks up to 20 and 4 spare
constexpr unsigned kLowRankOversample = 4;  // sketch columns beyond the largest rank kept
constexpr unsigned kLowRankMinSide = kLowRankSketch;  // smaller matrices: not worth factors
constexpr uint64_t kLowRankMinValues = 4096;
constexpr uint64_t kLowRankSampleValues = 16384;  // about this many values estimate each rank's bits

// ---- the encoder's factorization ----------------------------------------------------------------
namespace lowrank_detail {

// The rows [i0, i1) of M (cols wide) times W (cols x L) into y, or, transposed, M^T times those
// rows of Q (L wide) added into z (cols x L). NaN and Inf count as 0: they are outliers anyway.
template <class T, unsigned L>
inline void rows_times(const T* m, uint64_t cols, uint64_t i0, uint64_t i1, const float* w, float* y) {
  for (uint64_t i = i0; i < i1; ++i) {
    float acc[L] = {};
    const T* row = m + i * cols;
    for (uint64_t j = 0; j < cols; ++j) {
      const float v = float(double(row[j]));
      const float x = std::isfinite(v) ? v : 0.0f;
      for (unsigned l = 0; l < L; ++l) acc[l] += x * w[j * L + l];
    }
    std::memcpy(y + i * L, acc, sizeof(acc));
  }
}
// Columns [j0, j0 + W) of M^T Q over rows [i0, i1), summed in registers (row order ascending,
// from +0, so the same bits as adding row after row into z) and then stored into z, which holds
// zeros there.
template <class T, unsigned L, unsigned W>
inline void column_block_transposed(const T* m, uint64_t cols, uint64_t i0, uint64_t i1, uint64_t j0,
                                    const float* q, float* z) {
  float acc[W][L] = {};
  for (uint64_t i = i0; i < i1; ++i) {
    const T* row = m + i * cols + j0;
    const float* qi = q + i * L;
    for (unsigned c = 0; c < W; ++c) {
      const float v = float(double(row[c]));
      const float x = std::isfinite(v) ? v : 0.0f;
      for (unsigned l = 0; l < L; ++l) acc[c][l] += x * qi[l];
    }
  }
  for (unsigned c = 0; c < W; ++c)
    for (unsigned l = 0; l < L; ++l) z[(j0 + c) * L + l] += acc[c][l];
}
template <class T, unsigned L>
inline void rows_times_transposed(const T* m, uint64_t cols, uint64_t i0, uint64_t i1, const float* q, float* z) {
  // Two columns at a time with their sums in registers (measured best of 1-4 columns): adding
  // each row into all of z (cols x L floats) was a load and a store per product.
  uint64_t j0 = 0;
  for (; j0 + 2 <= cols; j0 += 2) column_block_transposed<T, L, 2>(m, cols, i0, i1, j0, q, z);
  for (; j0 < cols; ++j0) column_block_transposed<T, L, 1>(m, cols, i0, i1, j0, q, z);
}
#ifdef EBGC_HAVE_AVX2
template <class T, unsigned L>
__attribute__((target("avx2"))) void rows_times_avx2(const T* m, uint64_t cols, uint64_t i0, uint64_t i1,
                                                     const float* w, float* y) {
  rows_times<T, L>(m, cols, i0, i1, w, y);
}
template <class T, unsigned L>
__attribute__((target("avx2"))) void rows_times_transposed_avx2(const T* m, uint64_t cols, uint64_t i0, uint64_t i1,
                                                                const float* q, float* z) {
  rows_times_transposed<T, L>(m, cols, i0, i1, q, z);
}
#endif

// Y (rows x L) = M W. Rows are independent: any thread count gives the same bits.
template <class T, unsigned L>
void times_right(const T* m, uint64_t rows, uint64_t cols, const float* w, float* y, unsigned threads) {
  const uint64_t block = 64, blocks = (rows + block - 1) / block;
  parallel_for(size_t(blocks), threads, [&](size_t bl) {
    const uint64_t i0 = bl * block, i1 = std::min(rows, i0 + block);
#ifdef EBGC_HAVE_AVX2
    if (use_avx2()) return rows_times_avx2<T, L>(m, cols, i0, i1, w, y);
#endif
    rows_times<T, L>(m, cols, i0, i1, w, y);
  });
}

// Z (cols x L) = M^T Q: partial sums over fixed row parts (their number depends on the shape
// only), added in order, so the result does not depend on the thread count either.
template <class T, unsigned L>
void times_left(const T* m, uint64_t rows, uint64_t cols, const float* q, float* z, unsigned threads) {
  const uint64_t parts = std::max<uint64_t>(1, std::min<uint64_t>(8, rows / 256));
  std::vector<float> partial(size_t(parts * cols * L), 0.0f);
  parallel_for(size_t(parts), threads, [&](size_t p) {
    const uint64_t i0 = rows * p / parts, i1 = rows * (p + 1) / parts;
    float* zp = partial.data() + p * cols * L;
#ifdef EBGC_HAVE_AVX2
    if (use_avx2()) return rows_times_transposed_avx2<T, L>(m, cols, i0, i1, q, zp);
#endif
    rows_times_transposed<T, L>(m, cols, i0, i1, q, zp);
  });
  std::memcpy(z, partial.data(), size_t(cols * L) * sizeof(float));
  for (uint64_t p = 1; p < parts; ++p)
    for (uint64_t e = 0; e < cols * L; ++e) z[e] += partial[p * cols * L + e];
}

// Orthonormal columns in place (modified Gram-Schmidt, twice, in double on a column-major copy so
// every loop runs over contiguous memory). A column (close to) dependent on the earlier ones
// becomes zero.
inline double dot(const double* a, const double* b, uint64_t n) {
  double s[8] = {};  // eight partial sums: independent chains the compiler can vectorize
  const uint64_t whole = n - n % 8;
  for (uint64_t i = 0; i < whole; i += 8)
    for (unsigned t = 0; t < 8; ++t) s[t] += a[i + t] * b[i + t];
  for (uint64_t i = whole; i < n; ++i) s[0] += a[i] * b[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

template <unsigned L>
void orthonormalize(float* y, uint64_t n) {
  std::vector<double> c(size_t(n) * L);  // column k at c + k * n
  for (uint64_t i = 0; i < n; ++i)
    for (unsigned k = 0; k < L; ++k) c[k * n + i] = y[i * L + k];
  for (unsigned k = 0; k < L; ++k) {
    double* ck = c.data() + k * n;
    const double before = dot(ck, ck, n);
    for (int pass = 0; pass < 2; ++pass)
      for (unsigned m = 0; m < k; ++m) {
        const double* cm = c.data() + m * n;
        const double d = dot(ck, cm, n);
        for (uint64_t i = 0; i < n; ++i) ck[i] -= d * cm[i];
      }
    const double norm = dot(ck, ck, n);
    const double scale = norm > 1e-20 * before && norm > 0 ? 1.0 / std::sqrt(norm) : 0.0;
    for (uint64_t i = 0; i < n; ++i) ck[i] *= scale;
  }
  for (uint64_t i = 0; i < n; ++i)
    for (unsigned k = 0; k < L; ++k) y[i * L + k] = float(c[k * n + i]);
}

// Eigenvectors of a symmetric L x L matrix g (cyclic Jacobi), as columns of v, by eigenvalue
// from the largest down.
template <unsigned L>
void symmetric_eigen(std::vector<double> g, std::vector<double>& v) {
  v.assign(L * L, 0.0);
  for (unsigned k = 0; k < L; ++k) v[k * L + k] = 1.0;
  for (int sweep = 0; sweep < 30; ++sweep) {
    double off = 0, diag = 0;
    for (unsigned p = 0; p < L; ++p)
      for (unsigned q = 0; q < L; ++q) (p == q ? diag : off) += g[p * L + q] * g[p * L + q];
    if (!(off > 1e-30 * diag)) break;
    for (unsigned p = 0; p + 1 < L; ++p)
      for (unsigned q = p + 1; q < L; ++q) {
        const double gpq = g[p * L + q];
        if (gpq == 0) continue;
        const double theta = (g[q * L + q] - g[p * L + p]) / (2 * gpq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (unsigned k = 0; k < L; ++k) {  // columns p, q
          const double gkp = g[k * L + p], gkq = g[k * L + q];
          g[k * L + p] = c * gkp - s * gkq;
          g[k * L + q] = s * gkp + c * gkq;
        }
        for (unsigned k = 0; k < L; ++k) {  // rows p, q
          const double gpk = g[p * L + k], gqk = g[q * L + k];
          g[p * L + k] = c * gpk - s * gqk;
          g[q * L + k] = s * gpk + c * gqk;
        }
        for (unsigned k = 0; k < L; ++k) {
          const double vkp = v[k * L + p], vkq = v[k * L + q];
          v[k * L + p] = c * vkp - s * vkq;
          v[k * L + q] = s * vkp + c * vkq;
        }
      }
  }
  std::vector<unsigned> order(L);
  for (unsigned k = 0; k < L; ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](unsigned x, unsigned y) { return g[x * L + x] > g[y * L + y]; });
  std::vector<double> sorted(L * L);
  for (unsigned r = 0; r < L; ++r)
    for (unsigned k = 0; k < L; ++k) sorted[r * L + k] = v[r * L + order[k]];
  v = std::move(sorted);
}

inline double peak_of(const std::vector<double>& v) {
  double peak = 0;
  for (double e : v) peak = std::max(peak, std::fabs(e));
  return peak;
}

// The width of a component's entries. Rounding both factors' entries to `bits` bits moves the
// component's prediction by up to about peak_a * peak_b / 2^(bits-1); at the error bound that
// is noise the residual absorbs for a fraction of a bit, while every extra bit costs rows + cols
// bits. Measured on the fc updates of the vgg trace and the demo (REL 1e-2, 1e-3): this width
// codes within 1% of the best uniform width at ranks 2-4 and 5-10% smaller at ranks 8-12.
inline unsigned component_bits(double peak_a, double peak_b, double abs_bound) {
  const double ratio = peak_a * peak_b / abs_bound;
  if (!(ratio > 1)) return kLowRankMinBits;
  const double b = std::ceil(std::log2(ratio)) + 1;
  return unsigned(std::min<double>(kLowRankMaxBits, std::max<double>(kLowRankMinBits, b)));
}

// One component's entries as `bits`-bit integers times a float32 scale; false if it is zero.
inline bool quantize_component(const std::vector<double>& src, double peak, unsigned bits, std::vector<int16_t>& dst,
                               float& scale) {
  const double top = double((1 << (bits - 1)) - 1);
  scale = float(peak / top);
  if (!(scale > 0) || !std::isnormal(scale)) return false;
  for (size_t e = 0; e < src.size(); ++e) {
    const double q = std::nearbyint(src[e] / double(scale));
    dst[e] = int16_t(std::max(-top, std::min(top, q)));
  }
  return true;
}

}  // namespace lowrank_detail

struct LowRankFit {
  LowRankFactors factors;  // rank 0: no low-rank prediction pays
  double bits_saved = 0;   // estimated, against zero prediction, factors included
};

// Whether a tensor of this shape may try the low-rank predictor.
inline bool low_rank_eligible(const std::vector<uint64_t>& shape) {
  return shape.size() == 2 && shape[0] >= kLowRankMinSide && shape[1] >= kLowRankMinSide &&
         shape[0] * shape[1] >= kLowRankMinValues && shape[0] <= kMaxElements && shape[1] <= kMaxElements;
}

// Factors of x (rows x cols, row-major) and the rank that saves the most estimated bits at this
// quantizer step, estimated on evenly spaced rows (about kLowRankSampleValues values).
template <class T>
LowRankFit fit_low_rank(const T* x, uint64_t rows, uint64_t cols, double step, unsigned threads) {
  using namespace lowrank_detail;
  constexpr unsigned L = kLowRankSketch;
  LowRankFit fit;
  if (!(step > 0) || !std::isfinite(step) || std::min(rows, cols) < L) return fit;
  // Random +-1 test matrix (a fixed seed: the same input always gives the same blob).
  std::vector<float> w(size_t(cols) * L), y(size_t(rows) * L), z(size_t(cols) * L);
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (float& e : w) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    e = (s >> 40) & 1 ? 1.0f : -1.0f;
  }
  times_right<T, L>(x, rows, cols, w.data(), y.data(), threads);  // range of M
  orthonormalize<L>(y.data(), rows);
  times_left<T, L>(x, rows, cols, y.data(), z.data(), threads);   // one power iteration
  orthonormalize<L>(z.data(), cols);
  times_right<T, L>(x, rows, cols, z.data(), y.data(), threads);
  orthonormalize<L>(y.data(), rows);                               // Q
  times_left<T, L>(x, rows, cols, y.data(), z.data(), threads);   // B^T = M^T Q
  // B = U S V^T from the eigenvectors U of B B^T; A = Q U, B' = U^T B, components by size.
  std::vector<double> g(L * L, 0.0), u;
  for (uint64_t j = 0; j < cols; ++j)
    for (unsigned p = 0; p < L; ++p)
      for (unsigned q = 0; q < L; ++q) g[p * L + q] += double(z[j * L + p]) * double(z[j * L + q]);
  symmetric_eigen<L>(g, u);
  const unsigned kmax = L - kLowRankOversample;
  // Components: A = Q U (rows x kmax), B' = U^T B (kmax x cols), a row at a time (vectorizes over k).
  std::vector<double> ca(size_t(rows) * kmax, 0.0), cb(size_t(cols) * kmax, 0.0);
  auto project = [&](const float* src, uint64_t n, double* dst) {
    for (uint64_t i = 0; i < n; ++i)
      for (unsigned m = 0; m < L; ++m) {
        const double v = double(src[i * L + m]);
        for (unsigned k = 0; k < kmax; ++k) dst[i * kmax + k] += v * u[m * L + k];
      }
  };
  project(y.data(), rows, ca.data());
  project(z.data(), cols, cb.data());
  std::vector<double> comp_a(static_cast<size_t>(rows)), comp_b(static_cast<size_t>(cols));
  std::vector<int16_t> qa(static_cast<size_t>(rows)), qb(static_cast<size_t>(cols));
  LowRankFactors all;
  all.rows = rows, all.cols = cols;
  std::vector<std::vector<int16_t>> fa, fb;
  for (unsigned k = 0; k < kmax; ++k) {
    for (uint64_t i = 0; i < rows; ++i) comp_a[i] = ca[i * kmax + k];
    for (uint64_t j = 0; j < cols; ++j) comp_b[j] = cb[j * kmax + k];
    const double peak_a = peak_of(comp_a), peak_b = peak_of(comp_b);
    const unsigned bits = component_bits(peak_a, peak_b, step / 2);
    float sa, sb;
    if (!quantize_component(comp_a, peak_a, bits, qa, sa) || !quantize_component(comp_b, peak_b, bits, qb, sb)) break;
    all.bits.push_back(uint8_t(bits));
    all.scale_a.push_back(sa);
    all.scale_b.push_back(sb);
    fa.push_back(qa);
    fb.push_back(qb);
  }
  const unsigned kept = unsigned(fa.size());
  if (!kept) return fit;
  all.rank = kept;
  all.a.resize(size_t(rows) * kept);
  all.b.resize(size_t(kept) * cols);
  for (uint64_t i = 0; i < rows; ++i)
    for (unsigned k = 0; k < kept; ++k) all.a[i * kept + k] = fa[k][i];
  for (unsigned k = 0; k < kept; ++k) std::copy(fb[k].begin(), fb[k].end(), all.b.begin() + k * cols);

  // Bits of each candidate rank's residual over sampled rows: order-0 entropy of the symbols the
  // coder would see (symbolize.hpp) plus their raw bits, with the exact prediction arithmetic.
  static constexpr unsigned kCandidates[] = {1, 2, 4, 6, 8, 12, 16, 20};
  const LowRankPredictor full(all);
  const uint64_t sample = std::min(rows, std::max<uint64_t>(16, (kLowRankSampleValues + cols - 1) / cols));
  std::vector<std::array<uint64_t, kSymbols>> counts(kept + 1);
  std::vector<double> raw_bits(kept + 1, 0.0), p(static_cast<size_t>(cols));
  std::vector<int32_t> codes(static_cast<size_t>(cols));
  std::vector<bool> scored(kept + 1, false);
  scored[0] = true;
  for (unsigned k : kCandidates)
    if (k <= kept) scored[k] = true;
  const double inv_step = 1.0 / step;
  SymbolizedRun run;
  for (uint64_t t = 0; t < sample; ++t) {
    const uint64_t i = t * rows / sample;
    const T* row = x + i * cols;
    for (unsigned k = 0; k <= kept; ++k) {
      if (k) {  // add component k - 1, in fill()'s order
        const double ak = full.a[i * kept + k - 1];
        const double* bk = full.b.data() + (k - 1) * cols;
        for (uint64_t j = 0; j < cols; ++j) p[j] = k == 1 ? mul_rn(ak, bk[j]) : add_rn(p[j], mul_rn(ak, bk[j]));
      }
      if (!scored[k]) continue;
      // The quantizer's code without its check (an estimate: outliers are rare and cost alike
      // under every rank); NaN, Inf and codes out of range count as 0. Rounding by adding
      // 1.5 * 2^52 is the quantizer's, without a libm call.
      for (uint64_t j = 0; j < cols; ++j) {
        const double v = (double(row[j]) - (k ? p[j] : 0.0)) * inv_step;
        const double in_range = std::fabs(v) < kMaxCode ? v : 0.0;
        codes[j] = int32_t(add_rn(in_range, 0x1.8p52) - 0x1.8p52);
      }
      // The coder's own vectorized symbolize; four partial histograms: a run of one symbol would
      // otherwise chain every increment through memory.
      uint64_t partial[4][kSymbols] = {};
      uint64_t extra = 0;
      for (uint64_t j0 = 0; j0 < cols; j0 += kSymbolRun) {
        const unsigned m = unsigned(std::min<uint64_t>(kSymbolRun, cols - j0));
        symbolize_codes(codes.data() + j0, m, run);
        for (unsigned u = 0; u < m; ++u) {
          const Symbolized z = run.at(u);
          ++partial[u & 3][z.symbol];
          extra += z.nraw;
        }
      }
      for (unsigned sym = 0; sym < kSymbols; ++sym)
        counts[k][sym] += partial[0][sym] + partial[1][sym] + partial[2][sym] + partial[3][sym];
      raw_bits[k] += double(extra);
    }
  }
  std::vector<double> bits(kept + 1, 0.0);
  for (unsigned k = 0; k <= kept; ++k) {
    if (!scored[k]) continue;
    uint64_t total = 0;
    for (uint64_t v : counts[k]) total += v;
    for (uint64_t v : counts[k])
      if (v) bits[k] -= double(v) * std::log2(double(v) / double(total));
    bits[k] += raw_bits[k];
  }
  const double scale_up = double(rows) / double(sample);
  unsigned best = 0;
  double best_saved = 0;
  for (unsigned k = 1; k <= kept; ++k) {
    if (!scored[k]) continue;
    const double saved = (bits[0] - bits[k]) * scale_up - 8.0 * double(low_rank_packed_bytes(k, all.total_bits(k), rows, cols));
    if (saved > best_saved) best_saved = saved, best = k;
  }
  if (!best) return fit;
  fit.bits_saved = best_saved;
  LowRankFactors& f = fit.factors;
  f.rows = rows, f.cols = cols, f.rank = best;
  f.bits.assign(all.bits.begin(), all.bits.begin() + best);
  f.scale_a.assign(all.scale_a.begin(), all.scale_a.begin() + best);
  f.scale_b.assign(all.scale_b.begin(), all.scale_b.begin() + best);
  f.a.resize(size_t(rows) * best);
  for (uint64_t i = 0; i < rows; ++i)
    for (unsigned k = 0; k < best; ++k) f.a[i * best + k] = all.a[i * kept + k];
  f.b.assign(all.b.begin(), all.b.begin() + size_t(best) * cols);
  return fit;
}

}  // namespace ebgc
