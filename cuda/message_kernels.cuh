// Whole messages in fast mode on the GPU: the kernels over one message grid (grid/message_grid.hpp)
// of all tensors of one dtype. Every kernel finds its tensor in the tensor table by its tile
// (message_row_of_tile) and then does the single-tensor kernel's work at the row's offsets:
//   range (a thread block per tile) -> bounds (a thread per row) -> encode (the fused
//   quantize/pack kernel, look-back per row) -> one scan of all tiles' outlier counts (cub) ->
//   gather + row results -> stream offsets (one thread) -> compaction of all rows' streams.
// What a thread computes is the shared steps' (the host runner, grid/message_host_runner.hpp, runs
// them in the normal test suite and its blobs equal the CPU codec's); here are the launches, the
// reductions, the look-back and the atomics.
#pragma once
#include <cstdint>

#include "bitpack_encode_kernel.cuh"
#include "device_common.cuh"
#include "ebgc/grid/message_grid.hpp"
#include "lookback.cuh"
#include "range_kernel.cuh"

namespace ebgc {
namespace gpu {

static_assert(kBitpackTileValues == kTileValues, "a message tile is the encoder's tile");
constexpr unsigned kMessageThreads = 256;

__global__ void message_bounds_reset_kernel(DeviceBound* bounds, uint64_t count) {
  const uint64_t k = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < count) bound_reset(&bounds[k]);
}

// One thread block per message tile: the tile's finite range, folded into its row's bound. Row:
// any tensor table whose rows have x, n and first_tile (MessageRow, ContextRow).
template <class Row>
__global__ void __launch_bounds__(kMessageThreads) message_range_kernel(const Row* rows, uint64_t count,
                                                                       DeviceBound* bounds) {
  const uint64_t tile = blockIdx.x, k = row_at(rows, count, tile, &Row::first_tile);
  const Row r = rows[k];
  const double inf = double_of(uint64_t(0x7ff) << 52);
  double lo = inf, hi = -inf;
  range_tile_part(r.x, r.n, tile - r.first_tile, threadIdx.x, kMessageThreads, lo, hi);
  block_fold_range(lo, hi, &bounds[k]);
}

// A thread per row: its absolute bound and quantizer.
__global__ void message_bounds_finish_kernel(DeviceBound* bounds, uint64_t count, int rel, double error_bound) {
  const uint64_t k = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < count) bound_finish(&bounds[k], rel, error_bound);
}

template <class T>
struct MessageEncodeArgs {
  const MessageRow<T>* rows;
  uint64_t count;
  const DeviceBound* bounds;
  unsigned long long* tile_counter;   // zeroed before the launch
  unsigned long long* status;         // [message segments], zeroed before the launch
  uint32_t* outlier_bits;             // [message blocks]
  unsigned long long* tile_outliers;  // [message tiles + 1], zeroed before the launch
  unsigned long long* result;         // MessageResult words
  uint8_t* streams;                   // the rows' stream areas
};

// bitpack_encode_kernel over the message grid: the same per-thread work at the row's offsets,
// the look-back over the row's own segments (they start in order, so no warp waits on a tile
// that has not started).
template <class T>
__global__ void __launch_bounds__(kEncodeThreads) message_encode_kernel(MessageEncodeArgs<T> a) {
  __shared__ unsigned long long s_tile;
  if (threadIdx.x == 0) s_tile = atomicAdd(a.tile_counter, 1ull);
  __syncthreads();
  const uint64_t tile = s_tile, k = message_row_of_tile(a.rows, a.count, tile);
  const MessageRow<T> r = a.rows[k];
  const BitpackGrid g = r.grid();
  const unsigned warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const uint64_t segment = (tile - r.first_tile) * kEncodeWarps + warp;
  if (segment >= g.segments) return;  // the whole warp
  const LinearQuantizer qz = a.bounds[k].qz;
  const uint64_t block = segment * kWarp + lane, first = block * kPackBlock;

  T v[kPackBlock];
  load_block(r.x, first, r.n, (reinterpret_cast<uintptr_t>(r.x) & 15u) == 0, v);
  uint32_t code[kPackBlock];
  BlockCodes bc;
  r.predict.visit([&](const auto& predict) { bc = quantize_block(v, first, r.n, qz, predict, r.reconstruction, code); });
  const unsigned w = bc.width;
  const uint32_t bytes = uint32_t(packed_block_bytes(w));

  const uint32_t inclusive = warp_inclusive_sum(bytes);
  const uint32_t aggregate = __shfl_sync(kFullMask, inclusive, kWarp - 1);
  const unsigned segment_outliers = warp_sum(unsigned(__popc(bc.outliers)));
  if (segment_outliers && lane == 0) atomicAdd(&a.tile_outliers[tile], (unsigned long long)segment_outliers);
  if (block < g.blocks) a.outlier_bits[r.first_block + block] = bc.outliers;

  unsigned long long* status = a.status + r.first_segment;
  const uint64_t prefix = lookback_exclusive_prefix(status, segment, aggregate);
  const uint64_t chunk = g.chunk_of(segment), chunk_first = g.chunk_first_segment(chunk);
  const uint64_t chunk_prefix =
      segment == chunk_first ? prefix : chunk_first ? wait_inclusive_prefix(status, chunk_first - 1) : 0;
  if (lane == 0) {
    if (g.closes_chunk(segment)) a.result[kRowWords * a.count + r.first_chunk + chunk] = prefix + aggregate - chunk_prefix;
    if (segment + 1 == g.segments) a.result[kRowWords * k + kRowStreamBytes] = g.stream_bytes(prefix + aggregate);
  }
  write_block(g, block, chunk, w, code, chunk_prefix, prefix + (inclusive - bytes), a.streams + r.streams_at);
}

// A warp per message tile with outliers: its outliers at their rank in the message's outlier
// arrays (indices within the row). Threads 0 .. count-1 also write their row's results.
template <class T>
__global__ void message_gather_kernel(const MessageRow<T>* rows, uint64_t count, const uint32_t* __restrict__ outlier_bits,
                                      const unsigned long long* __restrict__ tile_outliers,
                                      const unsigned long long* __restrict__ tile_offset, uint64_t tiles,
                                      uint64_t capacity, unsigned long long* index, T* value, const DeviceBound* bounds,
                                      unsigned long long* result) {
  const uint64_t thread = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (thread < count) finish_message_row(rows[thread], thread, tile_offset, bounds[thread].abs_bound, result);
  const uint64_t tile = thread / kWarp;
  if (tile >= tiles || tile_outliers[tile] == 0) return;  // the same for the whole warp
  const uint64_t k = message_row_of_tile(rows, count, tile);
  const MessageRow<T> r = rows[k];
  gather_tile_lane(tile - r.first_tile, threadIdx.x % kWarp, tile_offset[tile], r.grid().blocks,
                   outlier_bits + r.first_block, r.x, capacity, index, value);
}

// One thread: where each row's streams go in the compact buffer.
__global__ void message_offsets_kernel(const unsigned long long* result, uint64_t count, unsigned long long* offset) {
  message_stream_offsets(result, count, offset);
}

// Row blockIdx.y (striding by gridDim.y): its streams to its offset in the compact buffer.
template <class T>
__global__ void message_compact_kernel(const MessageRow<T>* rows, uint64_t count, const uint8_t* __restrict__ streams,
                                       const unsigned long long* __restrict__ result,
                                       const unsigned long long* __restrict__ offset, uint8_t* __restrict__ compact) {
  for (uint64_t k = blockIdx.y; k < count; k += gridDim.y) {
    const uint64_t bytes = result[kRowWords * k + kRowStreamBytes];
    const uint8_t* src = streams + rows[k].streams_at;
    uint8_t* dst = compact + offset[k];
    const uint64_t stride = uint64_t(gridDim.x) * blockDim.x;
    for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < bytes; i += stride) dst[i] = src[i];
  }
}

}  // namespace gpu
}  // namespace ebgc
