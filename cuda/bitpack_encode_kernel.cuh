// Fast mode on the GPU, encoder: quantize + post-check + bit-packing of blocks of 32 values in one
// fused kernel, writing the blob's chunk streams (docs/FORMAT.md, coder 1) at offsets found by a
// single-pass decoupled look-back over the packed sizes of warp segments. Outliers are flagged in a
// bitmap by the same pass and gathered in index order by a second, cheap kernel.
//
// One thread owns one block of 32 values (the layout cuSZp-style compressors use): it quantizes
// them, finds their width and packs them into its own words with no cross-lane work, so a warp
// instruction advances 32 blocks at once. A warp's 32 blocks (1024 values) form a segment, the unit
// of the look-back. What a thread does for its block is grid/bitpack_block_steps.hpp's (the layout
// arithmetic is BitpackGrid's), which the host runner (grid/bitpack_host_runner.hpp) runs block by
// block in the normal test suite; here are the launch and the synchronisation: the warp scan, the
// look-back, the shuffles and the atomics.
#pragma once
#include <cstdint>

#include "device_common.cuh"
#include "ebgc/coders/bitpack.hpp"
#include "ebgc/grid/bitpack_block_steps.hpp"
#include "ebgc/quantize/quantizer.hpp"
#include "lookback.cuh"
#include "range_kernel.cuh"

namespace ebgc {
namespace gpu {

constexpr unsigned kEncodeWarps = kBitpackTileSegments;
constexpr unsigned kEncodeThreads = kEncodeWarps * kWarp;
constexpr unsigned kSegmentValues = kWarp * kPackBlock;           // 1024: one warp's share, the look-back's unit
constexpr unsigned kTileBlocks = kEncodeThreads;                  // 256: one thread block's share
constexpr unsigned kTileValues = kTileBlocks * kPackBlock;        // 8192: the outlier gather's unit
static_assert(kBitpackSegmentBlocks == kWarp && kBitpackTileBlocks == kTileBlocks, "the host runner's grid is this one");
constexpr unsigned kMinGpuChunkLog2 = 10;

// The encoder's small results, in one array of 64-bit words that a single device-to-host copy
// brings back: total stream bytes, outlier count, the absolute bound's bits, then per chunk the
// bytes of its packed data (len_b).
enum EncodeResult : unsigned { kResultStreamBytes = 0, kResultOutliers = 1, kResultAbsBound = 2, kResultChunkB = 3 };

template <class T, class Predictor>
struct EncodeArgs {
  const T* x;
  uint64_t n, blocks, segments, segments_per_chunk, blocks_per_chunk;
  Predictor predict;
  T* reconstruction;            // optional: what the decoder will return
  const DeviceBound* bound;
  unsigned long long* tile_counter;   // zeroed before the launch
  unsigned long long* status;         // [segments], zeroed before the launch
  uint32_t* outlier_bits;             // [blocks]: bit j = value j of the block is an outlier
  unsigned long long* tile_outliers;  // [tiles + 1]: outliers per tile, zeroed before the launch
  unsigned long long* result;         // EncodeResult words
  uint8_t* streams;
};

// The 32 values of block `first / 32`, by 16-byte vectors when the block is whole and the array is
// 16-byte aligned (the array's start decides for every block), else one by one (zeros past n).
template <class T>
__device__ inline void load_block(const T* __restrict__ x, uint64_t first, uint64_t n, bool vectors, T (&v)[kPackBlock]) {
  constexpr unsigned kPerVector = 16 / sizeof(T);
  if (vectors && first + kPackBlock <= n) {
    const uint4* p = reinterpret_cast<const uint4*>(x + first);
#pragma unroll
    for (unsigned g = 0; g < kPackBlock / kPerVector; ++g) {
      const uint4 u = p[g];
      memcpy(&v[g * kPerVector], &u, sizeof(u));
    }
  } else {
    load_block_values(x, first, n, v);
  }
}

template <class T, class Predictor>
__global__ void __launch_bounds__(kEncodeThreads) bitpack_encode_kernel(EncodeArgs<T, Predictor> a) {
  __shared__ unsigned long long s_tile;
  // Thread blocks are numbered in the order they start, which the look-back needs to be deadlock-free
  // (a warp waits only on segments of its own or of earlier-started thread blocks).
  if (threadIdx.x == 0) s_tile = atomicAdd(a.tile_counter, 1ull);
  __syncthreads();
  const uint64_t tile = s_tile;
  const unsigned warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const uint64_t segment = tile * kEncodeWarps + warp;
  if (segment >= a.segments) return;  // the whole warp
  const LinearQuantizer qz = a.bound->qz;
  const uint64_t block = segment * kWarp + lane, first = block * kPackBlock;
  const BitpackGrid g{a.n, a.blocks, a.segments, a.segments_per_chunk, a.blocks_per_chunk};

  // Quantize this thread's block; codes stay in registers.
  T v[kPackBlock];
  load_block(a.x, first, a.n, (reinterpret_cast<uintptr_t>(a.x) & 15u) == 0, v);
  uint32_t code[kPackBlock];
  const BlockCodes bc = quantize_block(v, first, a.n, qz, a.predict, a.reconstruction, code);
  const unsigned w = bc.width;
  const uint32_t outliers = bc.outliers;
  const uint32_t bytes = uint32_t(packed_block_bytes(w));

  // The block's place in the segment (a warp scan of packed sizes), then the segment's place.
  const uint32_t inclusive = warp_inclusive_sum(bytes);
  const uint32_t aggregate = __shfl_sync(kFullMask, inclusive, kWarp - 1);
  const unsigned segment_outliers = warp_sum(unsigned(__popc(outliers)));
  if (segment_outliers && lane == 0) atomicAdd(&a.tile_outliers[tile], (unsigned long long)segment_outliers);
  const bool real = block < a.blocks;
  if (real) a.outlier_bits[block] = outliers;

  const uint64_t prefix = lookback_exclusive_prefix(a.status, segment, aggregate);
  const uint64_t chunk = g.chunk_of(segment), chunk_first = g.chunk_first_segment(chunk);
  const uint64_t chunk_prefix =
      segment == chunk_first ? prefix : chunk_first ? wait_inclusive_prefix(a.status, chunk_first - 1) : 0;
  if (lane == 0) {
    if (g.closes_chunk(segment)) a.result[kResultChunkB + chunk] = prefix + aggregate - chunk_prefix;
    if (segment + 1 == a.segments) a.result[kResultStreamBytes] = g.stream_bytes(prefix + aggregate);
  }

  // Width byte, then the packed words: value j's field at bit j w of the block's data.
  write_block(g, block, chunk, w, code, chunk_prefix, prefix + (inclusive - bytes), a.streams);
}

// One warp per tile: the tile's outliers, in index order, at the tile's place in the exclusive
// scan of per-tile counts. Entries past `capacity` are dropped (the host then falls back).
template <class T>
__global__ void outlier_gather_kernel(const T* __restrict__ x, const uint32_t* __restrict__ outlier_bits,
                                      const unsigned long long* __restrict__ tile_outliers,
                                      const unsigned long long* __restrict__ tile_offset, uint64_t tiles,
                                      uint64_t blocks, uint64_t capacity, unsigned long long* index,
                                      T* value, const DeviceBound* bound, unsigned long long* result) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    result[kResultOutliers] = tile_offset[tiles];  // the scan ran over tiles + 1 entries
    result[kResultAbsBound] = bits_of(bound->abs_bound);
  }
  const uint64_t tile = (uint64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  if (tile >= tiles || tile_outliers[tile] == 0) return;  // the same for the whole warp
  gather_tile_lane(tile, threadIdx.x % kWarp, tile_offset[tile], blocks, outlier_bits, x, capacity, index, value);
}

}  // namespace gpu
}  // namespace ebgc
