// Fast mode on the GPU, encoder: quantize + post-check + bit-packing of blocks of 32 values in one
// fused kernel, writing the blob's chunk streams (docs/FORMAT.md, coder 1) at offsets found by a
// single-pass decoupled look-back over the packed sizes. Outliers are flagged in a bitmap by the
// same pass and gathered in index order by a second, cheap kernel.
//
// Layout arithmetic. With P(k) the packed bytes (4 w) of all blocks before block k, and chunk c
// holding blocks [c B, (c+1) B): chunk c's streams start at P(cB) + cB, its width bytes come first
// (block k's at P(cB) + k), then its packed data (block k's at P(k) + min(blocks, (c+1) B)).
// A tile is 2048 values and never straddles a chunk (chunks are >= 2^11 values on the GPU).
#pragma once
#include <cstdint>

#include "device_common.cuh"
#include "ebgc/bitpack.hpp"
#include "ebgc/quantizer.hpp"
#include "lookback.cuh"
#include "range_kernel.cuh"

namespace ebgc {
namespace gpu {

constexpr unsigned kEncodeWarps = 8;
constexpr unsigned kEncodeThreads = kEncodeWarps * kWarp;
constexpr unsigned kBlocksPerWarp = 8;
constexpr unsigned kTileBlocks = kEncodeWarps * kBlocksPerWarp;  // 64
constexpr unsigned kTileValues = kTileBlocks * kPackBlock;       // 2048
constexpr unsigned kMinGpuChunkLog2 = 11;

// The encoder's small results, in one array of 64-bit words that a single device-to-host copy
// brings back: total stream bytes, outlier count, the absolute bound's bits, then per chunk the
// bytes of its packed data (len_b).
enum EncodeResult : unsigned { kResultStreamBytes = 0, kResultOutliers = 1, kResultAbsBound = 2, kResultChunkB = 3 };

template <class T, class Predictor>
struct EncodeArgs {
  const T* x;
  uint64_t n, blocks, tiles, tiles_per_chunk, blocks_per_chunk;
  Predictor predict;
  T* reconstruction;            // optional: what the decoder will return
  const DeviceBound* bound;
  unsigned long long* tile_counter;   // zeroed before the launch
  unsigned long long* status;         // [tiles], zeroed before the launch
  uint32_t* outlier_bits;             // [blocks]: bit j = value j of the block is an outlier
  unsigned long long* tile_outliers;  // [tiles + 1]: outliers per tile (the last entry stays 0)
  unsigned long long* result;         // EncodeResult words
  uint8_t* streams;
};

template <class T, class Predictor>
__global__ void __launch_bounds__(kEncodeThreads) bitpack_encode_kernel(EncodeArgs<T, Predictor> a) {
  __shared__ unsigned long long s_tile, s_prefix, s_chunk_prefix;
  __shared__ uint32_t s_warp_bytes[kEncodeWarps], s_warp_offset[kEncodeWarps], s_warp_outliers[kEncodeWarps];
  __shared__ uint32_t s_pack[kEncodeWarps][kPackBlock + 1];

  // Tiles are numbered in the order they start, which the look-back needs to be deadlock-free.
  if (threadIdx.x == 0) s_tile = atomicAdd(a.tile_counter, 1ull);
  __syncthreads();
  const uint64_t tile = s_tile;
  const LinearQuantizer qz = a.bound->qz;
  const unsigned warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const uint64_t first_block = tile * kTileBlocks + warp * kBlocksPerWarp;

  // Pass over the values: codes stay in registers, one block of 32 per warp step.
  uint32_t code[kBlocksPerWarp];
  unsigned width[kBlocksPerWarp];
  uint32_t warp_bytes = 0, warp_outliers = 0;
#pragma unroll
  for (unsigned j = 0; j < kBlocksPerWarp; ++j) {
    const uint64_t k = first_block + j, i = k * kPackBlock + lane;
    int32_t q = 0;
    bool outlier = false;
    if (i < a.n) {
      const T v = a.x[i];
      const double p = a.predict(i);
      if (qz.quantize(v, p, q)) {
        if (a.reconstruction) a.reconstruction[i] = qz.reconstruct<T>(q, p);
      } else {
        q = 0;
        outlier = true;
        if (a.reconstruction) a.reconstruction[i] = v;
      }
    }
    code[j] = zigzag(q);
    width[j] = bit_width(warp_or(code[j]));
    const uint32_t outliers = __ballot_sync(kFullMask, outlier);
    if (lane == 0 && k < a.blocks) a.outlier_bits[k] = outliers;
    warp_bytes += uint32_t(packed_block_bytes(width[j]));
    warp_outliers += uint32_t(__popc(outliers));
  }
  if (lane == 0) s_warp_bytes[warp] = warp_bytes, s_warp_outliers[warp] = warp_outliers;
  __syncthreads();

  // Warp 0: offsets of the warps inside the tile, then the tile's place among all tiles.
  const uint64_t chunk = tile / a.tiles_per_chunk, chunk_first_tile = chunk * a.tiles_per_chunk;
  if (warp == 0) {
    const uint32_t mine = lane < kEncodeWarps ? s_warp_bytes[lane] : 0;
    uint32_t inclusive = mine;
    for (unsigned off = 1; off < kEncodeWarps; off <<= 1) {
      const uint32_t t = __shfl_up_sync(kFullMask, inclusive, off);
      if (lane >= off) inclusive += t;
    }
    if (lane < kEncodeWarps) s_warp_offset[lane] = inclusive - mine;
    const uint64_t aggregate = __shfl_sync(kFullMask, inclusive, kEncodeWarps - 1);
    const uint64_t prefix = lookback_exclusive_prefix(a.status, tile, aggregate);
    if (lane == 0) {
      uint64_t chunk_prefix = prefix;
      if (tile != chunk_first_tile) chunk_prefix = chunk_first_tile ? wait_inclusive_prefix(a.status, chunk_first_tile - 1) : 0;
      s_prefix = prefix;
      s_chunk_prefix = chunk_prefix;
      if (tile + 1 == a.tiles || tile + 1 == chunk_first_tile + a.tiles_per_chunk)
        a.result[kResultChunkB + chunk] = prefix + aggregate - chunk_prefix;
      if (tile + 1 == a.tiles) a.result[kResultStreamBytes] = prefix + aggregate + a.blocks;
      uint64_t outliers = 0;
      for (unsigned w = 0; w < kEncodeWarps; ++w) outliers += s_warp_outliers[w];
      a.tile_outliers[tile] = outliers;
    }
  }
  __syncthreads();

  // Width bytes, then the packed blocks (each block's words are assembled in shared memory,
  // because a w-bit value can straddle two words).
  const uint64_t chunk_end_block = min(a.blocks, (chunk + 1) * a.blocks_per_chunk);
  uint64_t at = s_prefix + s_warp_offset[warp] + chunk_end_block;
  uint32_t* pack = s_pack[warp];
#pragma unroll
  for (unsigned j = 0; j < kBlocksPerWarp; ++j) {
    const uint64_t k = first_block + j;
    if (lane == j && k < a.blocks) a.streams[s_chunk_prefix + k] = uint8_t(width[j]);
    const unsigned w = width[j];  // the same in every lane
    if (!w) continue;
    pack[lane] = 0;
    if (lane == 0) pack[kPackBlock] = 0;
    __syncwarp();
    const unsigned bit = lane * w, word = bit >> 5, shift = bit & 31u;
    atomicOr(&pack[word], code[j] << shift);
    if (shift + w > 32) atomicOr(&pack[word + 1], code[j] >> (32 - shift));
    __syncwarp();
    if (lane < w) store_u32_bytes(a.streams + at + 4 * lane, pack[lane]);
    __syncwarp();
    at += packed_block_bytes(w);
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
