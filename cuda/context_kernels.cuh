// The ratio coders on the GPU: the context coder's lanes one per thread, and Huffman on the same
// lanes. Every kernel here is a launch of a per-lane (or per-chunk) body of
// ebgc/grid/context_lane_steps.hpp or ebgc/grid/huffman_lane_steps.hpp, the code the host runner
// executes in the CPU test suite; what is CUDA-specific is only the grid, the shared-memory
// histograms and tables, and the atomics. The host in between fits the tables with the CPU's code
// (grid/grid_blob.hpp), so a blob written here is the CPU codec's (coders 2 and 4, chunk_log2 =
// kGridChunkLog2) byte for byte.
#pragma once
#include <cstdint>

#include "device_common.cuh"
#include "ebgc/grid/context_lane_steps.hpp"
#include "ebgc/grid/huffman_lane_steps.hpp"
#include "range_kernel.cuh"

namespace ebgc {
namespace gpu {

constexpr unsigned kLaneThreads = 128;  // threads (lanes) per thread block
static_assert(kLaneThreads % kLanes == 0, "a chunk's lanes are in one thread block");

// The summary the host reads after the analysis, in one copy: counts and sums in 64-bit words.
struct AnalysisSummary {
  unsigned long long abs_bound_bits, raw_bytes, bitpack_bytes, outliers;
  unsigned long long signs[kSignContexts][2];
  unsigned long long counts[kCtxBuckets][kSymbols];
};

// Histograms in shared memory (32-bit: a thread block sees at most kLaneThreads lanes of 2^17
// values), flushed to the summary once per thread block.
struct SharedHistogram {
  unsigned counts[kCtxBuckets * kSymbols];
  unsigned signs[kSignContexts * 2];
};

struct DeviceSink {
  SharedHistogram* h;
  __device__ void count(unsigned bucket, unsigned symbol) { atomicAdd(&h->counts[bucket * kSymbols + symbol], 1u); }
  __device__ void sign(unsigned sign_ctx, unsigned negative) { atomicAdd(&h->signs[sign_ctx * 2 + negative], 1u); }
  __device__ void or_word(uint32_t* array, uint64_t index, uint32_t bits) { atomicOr(array + index, bits); }
};

template <class T, class Predictor>
__global__ void __launch_bounds__(kLaneThreads)
    context_analyze_kernel(LaneGrid g, const T* __restrict__ x, const DeviceBound* bound, Predictor predict,
                           uint64_t sign_period, const uint8_t* __restrict__ bucket_of_sum, AnalyzeOut<T> o,
                           AnalysisSummary* summary) {
  __shared__ SharedHistogram h;
  for (unsigned k = threadIdx.x; k < kCtxBuckets * kSymbols; k += blockDim.x) h.counts[k] = 0;
  if (threadIdx.x < kSignContexts * 2) h.signs[threadIdx.x] = 0;
  __syncthreads();
  const uint64_t t = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  DeviceSink sink{&h};
  if (t < g.lanes()) analyze_lane(g, t, x, bound->qz, predict, sign_period, bucket_of_sum, o, sink);
  __syncthreads();
  for (unsigned k = threadIdx.x; k < kCtxBuckets * kSymbols; k += blockDim.x)
    if (h.counts[k]) atomicAdd(&summary->counts[k / kSymbols][k % kSymbols], (unsigned long long)h.counts[k]);
  if (threadIdx.x < kSignContexts * 2 && h.signs[threadIdx.x])
    atomicAdd(&summary->signs[threadIdx.x / 2][threadIdx.x % 2], (unsigned long long)h.signs[threadIdx.x]);
}

// One thread a chunk: its B length and outliers (for the scans), and the summary's sums.
__global__ void context_tally_kernel(LaneGrid g, const uint32_t* __restrict__ lane_raw_bits,
                                     const uint32_t* __restrict__ block_or, const uint32_t* __restrict__ outlier_bits,
                                     const DeviceBound* bound, unsigned long long* len_b,
                                     unsigned long long* chunk_outliers, AnalysisSummary* summary) {
  const uint64_t c = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c == 0) summary->abs_bound_bits = bits_of(bound->abs_bound);
  if (c >= g.chunks) return;
  const ChunkTally r = tally_chunk(g, c, lane_raw_bits, block_or, outlier_bits);
  len_b[c] = r.len_b;
  chunk_outliers[c] = r.outliers;
  atomicAdd(&summary->raw_bytes, (unsigned long long)r.len_b);
  atomicAdd(&summary->bitpack_bytes, (unsigned long long)r.bitpack_bytes);
  if (r.outliers) atomicAdd(&summary->outliers, (unsigned long long)r.outliers);
}

// rANS words of every lane, and its raw bits into its chunk's B (zeroed before the launch).
__global__ void __launch_bounds__(kLaneThreads)
    context_encode_kernel(LaneGrid g, RansEncodeView v, const uint8_t* __restrict__ sym, const uint8_t* __restrict__ ctx,
                          LaneCode code, const uint32_t* __restrict__ lane_raw, const uint32_t* __restrict__ lane_raw_bits,
                          uint32_t* chunk_b) {
  const uint64_t t = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.lanes()) return;
  encode_lane(g, t, v, sym, ctx, code);
  DeviceSink sink{nullptr};
  place_lane_raw_bits(g, t, lane_raw, lane_raw_bits, chunk_b, sink);
}

// Huffman's lanes: each counts its A bits (into code.words), the thread block syncs (a chunk's
// lanes are in it), then each writes its bits after those of its chunk's earlier lanes into the
// chunk's A words (zeroed before the launch), and its raw bits into the chunk's B (zeroed).
__global__ void __launch_bounds__(kLaneThreads)
    huffman_encode_kernel(LaneGrid g, HuffmanEncodeView v, const uint8_t* __restrict__ sym, LaneCode code,
                          uint32_t* chunk_a, const uint32_t* __restrict__ lane_raw,
                          const uint32_t* __restrict__ lane_raw_bits, uint32_t* chunk_b) {
  const uint64_t t = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool live = t < g.lanes();
  if (live) code.words[t] = huffman_lane_bits(g, t, v, sym);
  __syncthreads();
  if (!live) return;
  DeviceSink sink{nullptr};
  encode_huffman_lane(g, t, v, sym, huffman_lane_offset(t, code.words), chunk_a, sink);
  place_lane_raw_bits(g, t, lane_raw, lane_raw_bits, chunk_b, sink);
}

// One thread a chunk: A's length, and the chunk's bytes for the offsets' scan (entry g.chunks of
// `bytes` is left 0, so the exclusive scan's last entry is the total). coded: LaneCoded.
__global__ void context_sizes_kernel(LaneGrid g, uint32_t coded, const uint32_t* __restrict__ words,
                                     const unsigned long long* __restrict__ len_b, unsigned long long* len_a,
                                     unsigned long long* bytes) {
  const uint64_t c = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c > g.chunks) return;
  if (c == g.chunks) {
    bytes[c] = 0;
    return;
  }
  len_a[c] = lane_chunk_a_bytes(coded, words + c * kLanes);
  bytes[c] = len_a[c] + len_b[c];
}

__global__ void __launch_bounds__(kLaneThreads)
    context_streams_kernel(LaneGrid g, uint32_t coded, LaneCode code, const uint32_t* __restrict__ chunk_a,
                           const uint32_t* __restrict__ chunk_b, const unsigned long long* __restrict__ len_a,
                           const unsigned long long* __restrict__ len_b, const unsigned long long* __restrict__ offset,
                           uint8_t* streams) {
  const uint64_t t = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.lanes()) return;
  const uint64_t c = t / kLanes;
  write_coded_lane_streams(coded, g, t, code, chunk_a, chunk_b, len_a[c], len_b[c], streams + offset[c]);
}

// One thread a chunk: its outliers at its place in the scan of per-chunk counts.
template <class T>
__global__ void context_outlier_kernel(LaneGrid g, const T* __restrict__ x, const uint32_t* __restrict__ outlier_bits,
                                       const unsigned long long* __restrict__ chunk_outliers,
                                       const unsigned long long* __restrict__ first, uint64_t* index, T* value) {
  const uint64_t c = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= g.chunks || !chunk_outliers[c]) return;
  gather_chunk_outliers(g, c, x, outlier_bits, first[c], index, value);
}

// ---- decoding ----------------------------------------------------------------------------------

// Set by any lane whose stream is corrupt: the host reads it before decompress returns.
enum DecodeFault : unsigned { kFaultRans = 1, kFaultRawBits = 2, kFaultHuffman = 4 };

// A thread a chunk: its Huffman symbols and its lanes' raw-bit counts, by the 12-bit lookup table
// (in shared memory: 8 KiB, read once a thread block).
__global__ void __launch_bounds__(kLaneThreads)
    huffman_symbols_kernel(LaneGrid g, const uint16_t* __restrict__ table, const uint8_t* __restrict__ streams,
                           const ChunkStreamRef* __restrict__ chunks, uint8_t* sym, uint32_t* lane_raw_bits,
                           unsigned* fault) {
  __shared__ uint16_t lookup[kHuffMaxSymbols];
  for (unsigned k = threadIdx.x; k < kHuffMaxSymbols; k += blockDim.x) lookup[k] = table[k];
  __syncthreads();
  const uint64_t c = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= g.chunks) return;
  if (!decode_huffman_chunk(g, c, lookup, streams, chunks, sym, lane_raw_bits)) atomicOr(fault, unsigned(kFaultHuffman));
}

__global__ void __launch_bounds__(kLaneThreads)
    context_symbols_kernel(LaneGrid g, LaneDecodeTables tables, const uint8_t* __restrict__ streams,
                           const ChunkStreamRef* __restrict__ chunks, uint8_t* sym, uint32_t* lane_raw_bits,
                           unsigned* fault) {
  const uint64_t t = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.lanes()) return;
  if (!decode_lane_symbols(g, t, tables, streams, chunks, sym, lane_raw_bits)) atomicOr(fault, unsigned(kFaultRans));
}

template <class T, class Predictor>
__global__ void __launch_bounds__(kLaneThreads)
    context_reconstruct_kernel(LaneGrid g, const uint8_t* __restrict__ streams, const ChunkStreamRef* __restrict__ chunks,
                               const uint8_t* __restrict__ sym, const uint32_t* __restrict__ lane_raw_bits,
                               LinearQuantizer qz, Predictor predict, T* out, unsigned* fault) {
  const uint64_t t = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= g.lanes()) return;
  if (!reconstruct_lane(g, t, streams, chunks, sym, lane_raw_bits, qz, predict, out))
    atomicOr(fault, unsigned(kFaultRawBits));
}

}  // namespace gpu
}  // namespace ebgc
