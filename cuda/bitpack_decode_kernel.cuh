// Fast mode on the GPU, decoder: one thread block per segment of 256 blocks (8,192 values) of a
// chunk, so that even a tensor of a few chunks fills the GPU. The thread block sums the width bytes
// of the chunk's earlier segments to find where its packed data starts, takes a block-wide
// exclusive sum of its own 4 w, then each warp unpacks blocks of 32 values and reconstructs them
// with the shared quantizer.
// The host has already checked every width (<= 32) and that each chunk's packed data has exactly
// the declared length, so no read leaves the chunk (bar the 8-byte over-read load_bits documents).
// Outliers are written afterwards by outlier_scatter_kernel.
#pragma once
#include <cstdint>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "device_common.cuh"
#include "ebgc/coders/bitpack.hpp"
#include "ebgc/quantize/quantizer.hpp"

namespace ebgc {
namespace gpu {

constexpr unsigned kDecodeThreads = 256;  // also the blocks of one segment

template <class T, class Predictor>
struct DecodeArgs {
  const uint8_t* streams;                  // all chunk streams, padded by 8 bytes
  const unsigned long long* chunk_offset;  // [chunks]: start of each chunk's streams
  uint64_t n;
  unsigned chunk_log2;
  unsigned segments_per_chunk;             // ceil(blocks of a whole chunk / kDecodeThreads)
  Predictor predict;  // may read `out` itself (in-place stream decoding): each value is read first
  LinearQuantizer qz;
  T* out;
};

template <class T, class Predictor>
__global__ void __launch_bounds__(kDecodeThreads) bitpack_decode_kernel(DecodeArgs<T, Predictor> a) {
  using Reduce = cub::BlockReduce<uint32_t, kDecodeThreads>;
  using Scan = cub::BlockScan<uint32_t, kDecodeThreads>;
  __shared__ union {
    typename Reduce::TempStorage reduce;
    typename Scan::TempStorage scan;
  } storage;
  __shared__ uint32_t s_offset[kDecodeThreads];
  __shared__ uint8_t s_width[kDecodeThreads];

  const uint64_t c = blockIdx.x / a.segments_per_chunk, begin = c << a.chunk_log2;
  const uint64_t end = min(a.n, begin + (uint64_t(1) << a.chunk_log2));
  const uint64_t blocks = (end - begin + kPackBlock - 1) / kPackBlock;
  const uint64_t seg = uint64_t(blockIdx.x % a.segments_per_chunk) * kDecodeThreads;  // first block
  if (seg >= blocks) return;  // past a short last chunk (the whole thread block)
  const uint8_t* widths = a.streams + a.chunk_offset[c];
  const uint8_t* data = widths + blocks;
  const unsigned warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;

  uint32_t before = 0;  // sum of the widths of the chunk's blocks before this segment
  for (uint64_t k = threadIdx.x; k < seg; k += kDecodeThreads) before += widths[k];
  before = Reduce(storage.reduce).Sum(before);  // valid in thread 0
  if (threadIdx.x == 0) s_offset[0] = before;
  __syncthreads();
  const uint32_t done = uint32_t(packed_block_bytes(s_offset[0]));
  __syncthreads();

  const uint64_t k = seg + threadIdx.x;
  const uint32_t w = k < blocks ? widths[k] : 0;
  uint32_t offset, total;
  Scan(storage.scan).ExclusiveSum(uint32_t(packed_block_bytes(w)), offset, total);
  s_offset[threadIdx.x] = done + offset;
  s_width[threadIdx.x] = uint8_t(w);
  __syncthreads();
  for (unsigned b = warp; b < kDecodeThreads && seg + b < blocks; b += kDecodeThreads / kWarp) {
    const unsigned bw = s_width[b];
    const uint32_t z = bw ? load_bits(data, uint64_t(s_offset[b]) * 8 + uint64_t(lane) * bw, bw) : 0u;
    const uint64_t i = begin + (seg + b) * kPackBlock + lane;
    if (i < end) a.out[i] = a.qz.template reconstruct<T>(unzigzag(z), a.predict(i));
  }
}

// Outliers replace their values bit for bit (their bytes are unaligned inside the blob).
template <class T>
__global__ void outlier_scatter_kernel(const unsigned long long* __restrict__ index, const uint8_t* __restrict__ values,
                                       uint64_t count, T* out) {
  const uint64_t stride = uint64_t(gridDim.x) * blockDim.x;
  for (uint64_t k = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < count; k += stride)
    out[index[k]] = load_unaligned<T>(values + k * sizeof(T));
}

}  // namespace gpu
}  // namespace ebgc
