// The stream predictor of a whole message: every tensor that has its stream's last
// reconstructions gets its blend fitted and chosen as it would alone (grid/blend_steps.hpp), but
// all tensors at once: the message's sampled blocks are the rows' sampled blocks in row order, one
// thread block each, so one launch sums them all, one copy brings them back, the host fits every
// row (BlendFit, the CPU's code), one launch scores the fits and one copy brings the scores back.
// The message grids then code each row with its RowPredictor.
#pragma once
#include <cstdint>
#include <vector>

#include "blend_steps.hpp"
#include "message_grid.hpp"

namespace ebgc {

// A tensor whose blend is fitted: row `row` of its message grid (its bound), its values and its
// stream's last reconstructions, and its sampled blocks' place among the message's.
template <class T>
struct BlendRow {
  const T* x;
  const T* p1;
  const T* p2;  // may be null
  uint64_t n, row, first_block;
  BlendSample sample;
  static BlendRow make(const T* x, const T* p1, const T* p2, uint64_t n, uint64_t row) {
    return BlendRow{x, p1, p2, n, row, 0, BlendSample(n)};
  }
};

// Fills first_block; returns the message's sampled blocks.
template <class T>
uint64_t plan_message_blend(std::vector<BlendRow<T>>& rows) {
  uint64_t blocks = 0;
  for (BlendRow<T>& r : rows) {
    r.first_block = blocks;
    blocks += r.sample.blocks;
  }
  return blocks;
}

// The two candidate fits of a row (what the scoring kernel reads).
template <class T>
struct BlendCandidates {
  PreviousBlendPredictor<T> one, two;
};

// The host's fit of every row from the sums of the message's sampled blocks.
template <class T>
std::vector<BlendCandidates<T>> fit_message_blends(const std::vector<BlendRow<T>>& rows, const BlendSums* sums) {
  std::vector<BlendCandidates<T>> fits(rows.size());
  for (size_t k = 0; k < rows.size(); ++k) {
    const BlendFit<T> fit(sums + rows[k].first_block, rows[k].sample.blocks, rows[k].p1, rows[k].p2);
    fits[k] = {fit.one, fit.two};
  }
  return fits;
}

// The host's choice for every row from the scores of the message's sampled blocks.
template <class T>
std::vector<RowPredictor<T>> choose_message_blends(const std::vector<BlendRow<T>>& rows,
                                                   const std::vector<BlendCandidates<T>>& fits, const ResidualBits* bits) {
  std::vector<RowPredictor<T>> chosen(rows.size());
  for (size_t k = 0; k < rows.size(); ++k) {
    PredictorChoice<T> choice;
    BlendFit<T>(fits[k].one, fits[k].two).choose(bits + rows[k].first_block, rows[k].sample, choice);
    chosen[k] = RowPredictor<T>::of(choice);
  }
  return chosen;
}

// The host runner of both kernels: thread block by thread block (the message's sampled blocks in
// order), thread by thread, trees as the device's. abs_bound: each grid row's bound.
template <class T>
std::vector<RowPredictor<T>> grid_message_blends(std::vector<BlendRow<T>>& rows, const std::vector<double>& abs_bound) {
  const uint64_t blocks = plan_message_blend(rows);
  std::vector<BlendSums> sums(blocks), threads(kBlendThreads);
  for (uint64_t b = 0; b < blocks; ++b) {
    const BlendRow<T>& r = rows[row_at(rows.data(), rows.size(), b, &BlendRow<T>::first_block)];
    const BlendSample& sample = r.sample;
    const uint64_t local = b - r.first_block;
    for (unsigned t = 0; t < kBlendThreads; ++t)
      threads[t] = blend_thread_sums(r.x, r.p1, r.p2, sample.begin(local), sample.end(local), t);
    sums[b] = tree_reduce(threads.data(), add_sums);
  }
  const std::vector<BlendCandidates<T>> fits = fit_message_blends(rows, sums.data());
  std::vector<ResidualBits> bits(blocks), thread_bits(kBlendThreads);
  for (uint64_t b = 0; b < blocks; ++b) {
    const uint64_t k = row_at(rows.data(), rows.size(), b, &BlendRow<T>::first_block);
    const BlendRow<T>& r = rows[k];
    const BlendSample& sample = r.sample;
    const uint64_t local = b - r.first_block;
    const double inv = 1.0 / LinearQuantizer(abs_bound[r.row]).step;
    for (unsigned t = 0; t < kBlendThreads; ++t)
      thread_bits[t] = residual_thread_bits(r.x, sample.begin(local), sample.end(local), t, inv, fits[k].one, fits[k].two);
    bits[b] = tree_reduce(thread_bits.data(), add_bits);
  }
  return choose_message_blends(rows, fits, bits.data());
}

}  // namespace ebgc
