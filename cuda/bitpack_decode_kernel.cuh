// Fast mode on the GPU, decoder: one thread block per segment of 256 blocks (8,192 values) of a
// chunk, so that even a tensor of a few chunks fills the GPU. The thread block sums the width bytes
// of the chunk's earlier segments to find where its packed data starts, takes a block-wide
// exclusive sum of its own 4 w, then each warp unpacks blocks of 32 values and reconstructs them
// with the shared quantizer. What a thread does is grid/bitpack_block_steps.hpp's (decode_segment,
// widths_before_part, segment_width, decode_value), which the host runner
// (grid/bitpack_host_runner.hpp) runs thread by thread in the normal test suite; here are the
// launch, the block-wide reduction and scan, and the shared memory.
// The host has already checked every width (<= 32) and that each chunk's packed data has exactly
// the declared length, so no read leaves the chunk (bar the 8-byte over-read load_field documents).
// Outliers are written afterwards by outlier_scatter_kernel.
#pragma once
#include <cstdint>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "device_common.cuh"
#include "ebgc/coders/bitpack.hpp"
#include "ebgc/grid/bitpack_block_steps.hpp"
#include "ebgc/quantize/quantizer.hpp"

namespace ebgc {
namespace gpu {

constexpr unsigned kDecodeThreads = kBitpackDecodeBlocks;  // also the blocks of one segment

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
  const unsigned* fault;  // optional: set by bitpack_check_kernel (streams checked on the device), then nothing runs
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

  const BitpackDecodeSegment seg = decode_segment(a.n, a.chunk_log2, a.segments_per_chunk, blockIdx.x);
  if (seg.empty()) return;  // past a short last chunk (the whole thread block)
  if (a.fault && *a.fault) return;  // widths not checked to fit: read nothing (the host raises)
  const uint8_t* widths = a.streams + a.chunk_offset[seg.chunk];
  const uint8_t* data = widths + seg.blocks;
  const unsigned warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;

  // The sum of the widths of the chunk's blocks before this segment (valid in thread 0).
  const uint32_t before = Reduce(storage.reduce).Sum(widths_before_part(seg, widths, threadIdx.x, kDecodeThreads));
  if (threadIdx.x == 0) s_offset[0] = before;
  __syncthreads();
  const uint32_t done = uint32_t(packed_block_bytes(s_offset[0]));
  __syncthreads();

  const uint32_t w = segment_width(seg, widths, threadIdx.x);
  uint32_t offset, total;
  Scan(storage.scan).ExclusiveSum(uint32_t(packed_block_bytes(w)), offset, total);
  s_offset[threadIdx.x] = done + offset;
  s_width[threadIdx.x] = uint8_t(w);
  __syncthreads();
  for (unsigned b = warp; b < kDecodeThreads && seg.first + b < seg.blocks; b += kDecodeThreads / kWarp)
    decode_value(seg, b, lane, s_width[b], s_offset[b], data, a.qz, a.predict, a.out);
}

// A thread per chunk of a blob whose streams stay in device memory: the host's check_chunk, on the
// device (widths <= 32, packed length as declared), before the decode kernel reads them.
__global__ void bitpack_check_kernel(const uint8_t* __restrict__ streams, const unsigned long long* __restrict__ chunk_offset,
                                     uint64_t chunks, uint64_t n, unsigned chunk_log2, uint64_t stream_bytes,
                                     unsigned* fault) {
  const uint64_t c = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= chunks) return;
  const uint64_t begin = c << chunk_log2, end = min(n, (c + 1) << chunk_log2);
  const uint64_t len_a = (end - begin + kPackBlock - 1) / kPackBlock;  // parse_blob checked it
  const uint64_t next = c + 1 < chunks ? chunk_offset[c + 1] : stream_bytes;
  const unsigned f = bitpack_chunk_fault(streams + chunk_offset[c], len_a, next - chunk_offset[c] - len_a);
  if (f) atomicOr(fault, f);
}

// Outliers replace their values bit for bit (their bytes are unaligned inside the blob).
template <class T>
__global__ void outlier_scatter_kernel(const unsigned long long* __restrict__ index, const uint8_t* __restrict__ values,
                                       uint64_t count, T* out) {
  const uint64_t stride = uint64_t(gridDim.x) * blockDim.x;
  for (uint64_t k = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < count; k += stride)
    scatter_outlier(index, values, k, out);
}

}  // namespace gpu
}  // namespace ebgc
