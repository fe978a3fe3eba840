// Fast mode on the GPU, encoder: quantize + post-check + bit-packing of blocks of 32 values in one
// fused kernel, writing the blob's chunk streams (docs/FORMAT.md, coder 1) at offsets found by a
// single-pass decoupled look-back over the packed sizes of warp segments. Outliers are flagged in a
// bitmap by the same pass and gathered in index order by a second, cheap kernel.
//
// One thread owns one block of 32 values (the layout cuSZp-style compressors use): it quantizes
// them, finds their width and packs them into its own words with no cross-lane work, so a warp
// instruction advances 32 blocks at once. A warp's 32 blocks (1024 values) form a segment, the unit
// of the look-back.
//
// Layout arithmetic. With P(k) the packed bytes (4 w) of all blocks before block k, and chunk c
// holding blocks [c B, (c+1) B): chunk c's streams start at P(cB) + cB, its width bytes come first
// (block k's at P(cB) + k), then its packed data (block k's at P(k) + min(blocks, (c+1) B)).
// Segments never straddle a chunk (chunks are >= 2^10 values on the GPU).
#pragma once
#include <cstdint>

#include "device_common.cuh"
#include "ebgc/coders/bitpack.hpp"
#include "ebgc/quantize/quantizer.hpp"
#include "lookback.cuh"
#include "range_kernel.cuh"

namespace ebgc {
namespace gpu {

constexpr unsigned kEncodeWarps = 8;
constexpr unsigned kEncodeThreads = kEncodeWarps * kWarp;
constexpr unsigned kSegmentValues = kWarp * kPackBlock;           // 1024: one warp's share, the look-back's unit
constexpr unsigned kTileBlocks = kEncodeThreads;                  // 256: one thread block's share
constexpr unsigned kTileValues = kTileBlocks * kPackBlock;        // 8192: the outlier gather's unit
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
#pragma unroll
    for (unsigned j = 0; j < kPackBlock; ++j) v[j] = first + j < n ? x[first + j] : T(0);
  }
}

// A 32-bit word of the packed data at any byte address.
__device__ inline void store_word(uint8_t* p, uint32_t v, bool aligned) {
  if (aligned)
    *reinterpret_cast<uint32_t*>(p) = v;
  else
    store_u32_bytes(p, v);
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

  // Quantize this thread's block; codes stay in registers.
  T v[kPackBlock];
  load_block(a.x, first, a.n, (reinterpret_cast<uintptr_t>(a.x) & 15u) == 0, v);
  uint32_t code[kPackBlock];
  uint32_t any = 0, outliers = 0;
#pragma unroll
  for (unsigned j = 0; j < kPackBlock; ++j) {
    const uint64_t i = first + j;
    int32_t q = 0;
    if (i < a.n) {
      const double p = a.predict(i);
      if (qz.quantize(v[j], p, q)) {
        if (a.reconstruction) a.reconstruction[i] = qz.reconstruct<T>(q, p);
      } else {
        q = 0;
        outliers |= 1u << j;
        if (a.reconstruction) a.reconstruction[i] = v[j];
      }
    }
    code[j] = zigzag(q);
    any |= code[j];
  }
  const unsigned w = bit_width(any);
  const uint32_t bytes = uint32_t(packed_block_bytes(w));

  // The block's place in the segment (a warp scan of packed sizes), then the segment's place.
  uint32_t inclusive = bytes;
#pragma unroll
  for (unsigned off = 1; off < kWarp; off <<= 1) {
    const uint32_t t = __shfl_up_sync(kFullMask, inclusive, off);
    if (lane >= off) inclusive += t;
  }
  const uint32_t aggregate = __shfl_sync(kFullMask, inclusive, kWarp - 1);
  const unsigned segment_outliers = warp_sum(unsigned(__popc(outliers)));
  if (segment_outliers && lane == 0) atomicAdd(&a.tile_outliers[tile], (unsigned long long)segment_outliers);
  const bool real = block < a.blocks;
  if (real) a.outlier_bits[block] = outliers;

  const uint64_t prefix = lookback_exclusive_prefix(a.status, segment, aggregate);
  const uint64_t chunk = segment / a.segments_per_chunk, chunk_first = chunk * a.segments_per_chunk;
  const uint64_t chunk_prefix =
      segment == chunk_first ? prefix : chunk_first ? wait_inclusive_prefix(a.status, chunk_first - 1) : 0;
  if (lane == 0) {
    if (segment + 1 == a.segments || segment + 1 == chunk_first + a.segments_per_chunk)
      a.result[kResultChunkB + chunk] = prefix + aggregate - chunk_prefix;
    if (segment + 1 == a.segments) a.result[kResultStreamBytes] = prefix + aggregate + a.blocks;
  }

  // Width byte, then the packed words: value j's field at bit j w of the block's data.
  if (real) a.streams[chunk_prefix + block] = uint8_t(w);
  if (!w) return;
  const uint64_t chunk_end_block = min(a.blocks, (chunk + 1) * a.blocks_per_chunk);
  uint8_t* out = a.streams + prefix + (inclusive - bytes) + chunk_end_block;
  const bool aligned = (reinterpret_cast<uintptr_t>(out) & 3u) == 0;  // all chunks but maybe a short last one
  uint64_t pending = 0;  // bits not yet stored, `fill` of them
  unsigned fill = 0;
#pragma unroll
  for (unsigned j = 0; j < kPackBlock; ++j) {
    pending |= uint64_t(code[j]) << fill;
    fill += w;
    if (fill >= 32) {
      store_word(out, uint32_t(pending), aligned);
      out += 4;
      pending >>= 32;
      fill -= 32;
    }
  }
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
  const unsigned lane = threadIdx.x % kWarp;
  uint64_t at = tile_offset[tile];
  const uint64_t end = min(blocks, (tile + 1) * kTileBlocks);
  for (uint64_t k = tile * kTileBlocks; k < end; ++k) {
    const uint32_t m = outlier_bits[k];
    if ((m >> lane) & 1u) {
      const uint64_t r = at + unsigned(__popc(m & lanemask_lt()));
      if (r < capacity) {
        index[r] = k * kPackBlock + lane;
        value[r] = x[k * kPackBlock + lane];
      }
    }
    at += unsigned(__popc(m));
  }
}

}  // namespace gpu
}  // namespace ebgc
