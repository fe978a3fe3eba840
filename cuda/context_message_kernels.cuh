// Whole messages in ratio mode on the GPU: the lane coders' kernels over one message grid
// (grid/context_message.hpp) of all tensors of one dtype. A lane thread finds its row by its
// thread block (rows start on a block, so the block's shared histograms are one row's), a chunk
// thread by its chunk, and then runs grid/*_lane_steps.hpp's body for the row's lane or chunk
// at the row's offsets, as context_kernels.cuh does for one tensor. The host runner
// (grid/context_message_runner.hpp) runs the same bodies in the same order in the test suite.
#pragma once
#include <cstdint>

#include "context_kernels.cuh"
#include "ebgc/grid/context_message.hpp"
#include "message_kernels.cuh"

namespace ebgc {
namespace gpu {

static_assert(kContextLaneBlock == kLaneThreads, "a row's lane threads start a thread block");

// The message's scratch, indexed by the rows' offsets (strides: raw_words a lane, b_words a chunk,
// region_words a lane).
struct ContextMessageArrays {
  uint8_t *sym, *ctx;
  uint32_t *lane_raw, *lane_raw_bits, *block_or, *outlier_bits, *state, *words, *chunk_b;
  uint16_t* region;
  unsigned long long *len_a, *len_b, *bytes, *offset, *chunk_outliers, *first_outlier;
  uint64_t raw_words, b_words, region_words;

  template <class T>
  __device__ LaneCode code_of(const ContextRow<T>& r) const {
    return {state + r.first_lane, words + r.first_lane, region + r.first_lane * region_words};
  }
  // A Huffman row's chunk A words: where its lanes' regions are (a chunk's start there is a
  // multiple of 16 bytes: first_lane is a multiple of kLanes).
  template <class T>
  __device__ uint32_t* huffman_a_of(const ContextRow<T>& r) const {
    return reinterpret_cast<uint32_t*>(region + r.first_lane * region_words);
  }
};

template <class T>
__global__ void __launch_bounds__(kLaneThreads)
    context_message_analyze_kernel(const ContextRow<T>* rows, uint64_t count, const DeviceBound* bounds,
                                   const uint8_t* __restrict__ bucket_of_sum, ContextMessageArrays a,
                                   AnalysisSummary* summaries) {
  __shared__ SharedHistogram h;
  for (unsigned k = threadIdx.x; k < kCtxBuckets * kSymbols; k += blockDim.x) h.counts[k] = 0;
  if (threadIdx.x < kSignContexts * 2) h.signs[threadIdx.x] = 0;
  __syncthreads();
  const uint64_t first = uint64_t(blockIdx.x) * blockDim.x;
  const uint64_t k = row_at(rows, count, first, &ContextRow<T>::first_thread);
  const ContextRow<T> r = rows[k];
  const LaneGrid g = r.grid();
  const uint64_t t = first + threadIdx.x - r.first_thread;
  DeviceSink sink{&h};
  if (t < g.lanes()) {
    const AnalyzeOut<T> o{a.sym + r.first_value, a.ctx + r.first_value, r.reconstruction,
                          a.lane_raw + r.first_lane * a.raw_words, a.lane_raw_bits + r.first_lane,
                          a.block_or + r.first_block, a.outlier_bits + r.first_block};
    r.predict.visit([&](const auto& predict) {
      analyze_lane(g, t, r.x, bounds[k].qz, predict, r.sign_period, bucket_of_sum, o, sink);
    });
  }
  __syncthreads();
  AnalysisSummary* summary = summaries + k;
  for (unsigned j = threadIdx.x; j < kCtxBuckets * kSymbols; j += blockDim.x)
    if (h.counts[j]) atomicAdd(&summary->counts[j / kSymbols][j % kSymbols], (unsigned long long)h.counts[j]);
  if (threadIdx.x < kSignContexts * 2 && h.signs[threadIdx.x])
    atomicAdd(&summary->signs[threadIdx.x / 2][threadIdx.x % 2], (unsigned long long)h.signs[threadIdx.x]);
}

// A thread per message chunk: its B length and outliers, and its row's summary sums.
template <class T>
__global__ void context_message_tally_kernel(const ContextRow<T>* rows, uint64_t count, uint64_t chunks,
                                             const DeviceBound* bounds, ContextMessageArrays a,
                                             AnalysisSummary* summaries) {
  const uint64_t c = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= chunks) return;
  const uint64_t k = row_at(rows, count, c, &ContextRow<T>::first_chunk);
  const ContextRow<T> r = rows[k];
  AnalysisSummary* summary = summaries + k;
  if (c == r.first_chunk) summary->abs_bound_bits = bits_of(bounds[k].abs_bound);
  const ChunkTally t = tally_chunk(r.grid(), c - r.first_chunk, a.lane_raw_bits + r.first_lane, a.block_or + r.first_block,
                                   a.outlier_bits + r.first_block);
  a.len_b[c] = t.len_b;
  a.chunk_outliers[c] = t.outliers;
  atomicAdd(&summary->raw_bytes, (unsigned long long)t.len_b);
  atomicAdd(&summary->bitpack_bytes, (unsigned long long)t.bitpack_bytes);
  if (t.outliers) atomicAdd(&summary->outliers, (unsigned long long)t.outliers);
}

// The coded rows' lanes: rANS words, or Huffman's bits (counted, the thread block synced, then
// written after the chunk's earlier lanes' into the chunk's A words, zeroed before the launch), and
// raw bits into their chunk's B (zeroed). A thread block holds one row's lanes, so the sync is the
// whole block's or none.
template <class T>
__global__ void __launch_bounds__(kLaneThreads)
    context_message_encode_kernel(const ContextRow<T>* rows, uint64_t count, const uint8_t* __restrict__ tables,
                                  ContextMessageArrays a) {
  const uint64_t thread = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const ContextRow<T> r = rows[row_at(rows, count, thread, &ContextRow<T>::first_thread)];
  const LaneGrid g = r.grid();
  const uint64_t t = thread - r.first_thread;
  const bool live = r.coded != kLaneNone && t < g.lanes();
  if (r.coded == kLaneHuffman) {
    if (live) a.words[r.first_lane + t] = huffman_lane_bits(g, t, row_huffman(r, tables), a.sym + r.first_value);
    __syncthreads();
  }
  if (!live) return;
  DeviceSink sink{nullptr};
  if (r.coded == kLaneHuffman)
    encode_huffman_lane(g, t, row_huffman(r, tables), a.sym + r.first_value,
                        huffman_lane_offset(t, a.words + r.first_lane), a.huffman_a_of(r), sink);
  else
    encode_lane(g, t, row_tables(r, tables), a.sym + r.first_value, a.ctx + r.first_value, a.code_of(r));
  place_lane_raw_bits(g, t, a.lane_raw + r.first_lane * a.raw_words, a.lane_raw_bits + r.first_lane,
                      a.chunk_b + r.first_chunk * a.b_words, sink);
}

// A thread per message chunk (and one past the last): A's length and the chunk's bytes for the
// offsets' scan; chunks of rows not coded here count 0 bytes and 0 outliers.
template <class T>
__global__ void context_message_sizes_kernel(const ContextRow<T>* rows, uint64_t count, uint64_t chunks,
                                             ContextMessageArrays a) {
  const uint64_t c = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c > chunks) return;
  if (c == chunks) {
    a.bytes[c] = a.chunk_outliers[c] = 0;
    return;
  }
  const ContextRow<T> r = rows[row_at(rows, count, c, &ContextRow<T>::first_chunk)];
  if (!r.coded) {
    a.len_a[c] = a.bytes[c] = a.chunk_outliers[c] = 0;
    return;
  }
  a.len_a[c] = lane_chunk_a_bytes(r.coded, a.words + r.first_lane + (c - r.first_chunk) * kLanes);
  a.bytes[c] = a.len_a[c] + a.len_b[c];
}

template <class T>
__global__ void __launch_bounds__(kLaneThreads)
    context_message_streams_kernel(const ContextRow<T>* rows, uint64_t count, ContextMessageArrays a, uint8_t* streams) {
  const uint64_t thread = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const ContextRow<T> r = rows[row_at(rows, count, thread, &ContextRow<T>::first_thread)];
  const LaneGrid g = r.grid();
  const uint64_t t = thread - r.first_thread;
  if (!r.coded || t >= g.lanes()) return;
  const uint64_t c = r.first_chunk + t / kLanes;
  write_coded_lane_streams(r.coded, g, t, a.code_of(r), a.huffman_a_of(r), a.chunk_b + r.first_chunk * a.b_words,
                           a.len_a[c], a.len_b[c], streams + a.offset[c]);
}

// A thread per message chunk of a coded row: its outliers (indices within the row) at its place in
// the message's scan of per-chunk counts.
template <class T>
__global__ void context_message_outlier_kernel(const ContextRow<T>* rows, uint64_t count, uint64_t chunks,
                                               ContextMessageArrays a, uint64_t* index, T* value) {
  const uint64_t c = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= chunks || !a.chunk_outliers[c]) return;
  const ContextRow<T> r = rows[row_at(rows, count, c, &ContextRow<T>::first_chunk)];
  gather_chunk_outliers(r.grid(), c - r.first_chunk, r.x, a.outlier_bits + r.first_block, a.first_outlier[c], index, value);
}

}  // namespace gpu
}  // namespace ebgc
