// Fast mode on the GPU, decoder: one thread block per chunk. It scans the chunk's width bytes in
// segments of 256 blocks (a block-wide exclusive sum of 4 w gives every block its data offset),
// then each warp unpacks blocks of 32 values and reconstructs them with the shared quantizer.
// The host has already checked every width (<= 32) and that each chunk's packed data has exactly
// the declared length, so no read leaves the chunk (bar the 8-byte over-read load_bits documents).
// Outliers are written afterwards by outlier_scatter_kernel.
#pragma once
#include <cstdint>

#include <cub/block/block_scan.cuh>

#include "device_common.cuh"
#include "ebgc/bitpack.hpp"
#include "ebgc/quantizer.hpp"

namespace ebgc {
namespace gpu {

constexpr unsigned kDecodeThreads = 256;

template <class T, class Predictor>
struct DecodeArgs {
  const uint8_t* streams;                  // all chunk streams, padded by 8 bytes
  const unsigned long long* chunk_offset;  // [chunks]: start of each chunk's streams
  uint64_t n;
  unsigned chunk_log2;
  Predictor predict;  // may read `out` itself (in-place stream decoding): each value is read first
  LinearQuantizer qz;
  T* out;
};

template <class T, class Predictor>
__global__ void __launch_bounds__(kDecodeThreads) bitpack_decode_kernel(DecodeArgs<T, Predictor> a) {
  using Scan = cub::BlockScan<uint32_t, kDecodeThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ uint32_t s_offset[kDecodeThreads];
  __shared__ uint8_t s_width[kDecodeThreads];

  const uint64_t c = blockIdx.x, begin = c << a.chunk_log2;
  const uint64_t end = min(a.n, begin + (uint64_t(1) << a.chunk_log2));
  const uint64_t blocks = (end - begin + kPackBlock - 1) / kPackBlock;
  const uint8_t* widths = a.streams + a.chunk_offset[c];
  const uint8_t* data = widths + blocks;
  const unsigned warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;

  uint32_t done = 0;  // packed bytes of the segments already decoded
  for (uint64_t seg = 0; seg < blocks; seg += kDecodeThreads) {
    const uint64_t k = seg + threadIdx.x;
    const uint32_t w = k < blocks ? widths[k] : 0;
    uint32_t offset, total;
    Scan(scan_storage).ExclusiveSum(uint32_t(packed_block_bytes(w)), offset, total);
    s_offset[threadIdx.x] = done + offset;
    s_width[threadIdx.x] = uint8_t(w);
    __syncthreads();
    for (unsigned b = warp; b < kDecodeThreads && seg + b < blocks; b += kDecodeThreads / kWarp) {
      const unsigned bw = s_width[b];
      const uint32_t z = bw ? load_bits(data, uint64_t(s_offset[b]) * 8 + uint64_t(lane) * bw, bw) : 0u;
      const uint64_t i = begin + (seg + b) * kPackBlock + lane;
      if (i < end) a.out[i] = a.qz.template reconstruct<T>(unzigzag(z), a.predict(i));
    }
    done += total;
    __syncthreads();  // s_offset, s_width and the scan storage are reused by the next segment
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
