// Fast mode on the device, host side: the launches of the bit-packing kernels
// (bitpack_encode_kernel.cuh, bitpack_decode_kernel.cuh), their buffers in the workspace, and the
// blob around their streams, written by the container writer the CPU codec uses.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include <cub/device/device_scan.cuh>

#include "bitpack_decode_kernel.cuh"
#include "bitpack_encode_kernel.cuh"
#include "ebgc/grid/grid_blob.hpp"
#include "range_kernel.cuh"
#include "workspace.cuh"

namespace ebgc {
namespace gpu {

// The absolute bound and its quantizer into device memory (rel: from the range of x).
template <class T>
void enqueue_bound(const T* x, uint64_t n, DeviceBound* bound, BoundMode mode, double error_bound, int sm_count,
                   cudaStream_t s) {
  if (mode == BoundMode::Rel) {
    bound_reset_kernel<<<1, 1, 0, s>>>(bound);
    const unsigned grid = unsigned(std::min<uint64_t>(uint64_t(sm_count) * 8, ceil_div(n, 256)));
    if (n) finite_range_kernel<T><<<grid, 256, 0, s>>>(x, n, bound);
  }
  bound_finish_kernel<<<1, 1, 0, s>>>(bound, mode == BoundMode::Rel, error_bound);
  EBGC_CUDA(cudaGetLastError());
}

// ---- encoder ---------------------------------------------------------------------------------
constexpr unsigned kGpuChunkLog2 = kDefaultChunkLog2;
static_assert(kGpuChunkLog2 >= kMinGpuChunkLog2, "GPU segments must not straddle chunks");

inline uint64_t outlier_capacity(uint64_t n) { return std::max<uint64_t>(4096, n / 64); }

// Where the encoder's buffers sit in the workspace, for n values of `elem` bytes.
struct EncodeLayout {
  uint64_t n, tiles, segments, blocks, chunks, capacity;
  size_t bound, counter, status, tile_outliers, tile_offset, outlier_bits, result, index, value, scan_temp, streams;
  size_t reconstruction, scan_temp_bytes, zeroed_bytes, total;
  EncodeLayout(uint64_t n_, size_t elem, bool with_reconstruction = false) : n(n_) {
    tiles = ceil_div(n, kTileValues);
    segments = ceil_div(n, kSegmentValues);
    blocks = ceil_div(n, kPackBlock);
    chunks = ceil_div(n, uint64_t(1) << kGpuChunkLog2);
    capacity = outlier_capacity(n);
    scan_temp_bytes = 0;
    EBGC_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, scan_temp_bytes, static_cast<unsigned long long*>(nullptr),
                                            static_cast<unsigned long long*>(nullptr), int64_t(tiles + 1)));
    Carve c;
    bound = c.take(sizeof(DeviceBound));
    // Zeroed by one memset before each launch: the tile counter, the look-back status, the outlier counts.
    counter = c.take(8 + 8 * segments);
    status = counter + 8;
    tile_outliers = c.take(8 * (tiles + 1));
    zeroed_bytes = c.end - counter;
    tile_offset = c.take(8 * (tiles + 1));
    outlier_bits = c.take(4 * blocks);
    result = c.take(8 * (kResultChunkB + chunks));
    index = c.take(8 * capacity);
    value = c.take(elem * capacity);
    scan_temp = c.take(scan_temp_bytes);
    streams = c.take(blocks * (1 + packed_block_bytes(32)));
    // The kernel's reconstruction goes here first: the caller's buffer may alias the input or a
    // previous reconstruction, which the host fallback would still need to read.
    reconstruction = c.take(with_reconstruction ? elem * n : 0);
    total = c.end;
  }
};

// Enqueues the device part of compression: range and bound, fused quantize/pack, outlier gather.
template <class T, class Predictor>
void enqueue_encode(const T* x, const EncodeLayout& L, uint8_t* d, BoundMode mode, double error_bound,
                    const Predictor& predict, T* reconstruction, int sm_count, cudaStream_t s) {
  auto* bound = reinterpret_cast<DeviceBound*>(d + L.bound);
  auto* result = reinterpret_cast<unsigned long long*>(d + L.result);
  auto* tile_outliers = reinterpret_cast<unsigned long long*>(d + L.tile_outliers);
  auto* tile_offset = reinterpret_cast<unsigned long long*>(d + L.tile_offset);
  EBGC_CUDA(cudaMemsetAsync(d + L.counter, 0, L.zeroed_bytes, s));
  enqueue_bound(x, L.n, bound, mode, error_bound, sm_count, s);

  EncodeArgs<T, Predictor> a;
  a.x = x;
  a.n = L.n;
  a.blocks = L.blocks;
  a.segments = L.segments;
  a.segments_per_chunk = (uint64_t(1) << kGpuChunkLog2) / kSegmentValues;
  a.blocks_per_chunk = (uint64_t(1) << kGpuChunkLog2) / kPackBlock;
  a.predict = predict;
  a.reconstruction = reconstruction;
  a.bound = bound;
  a.tile_counter = reinterpret_cast<unsigned long long*>(d + L.counter);
  a.status = reinterpret_cast<unsigned long long*>(d + L.status);
  a.outlier_bits = reinterpret_cast<uint32_t*>(d + L.outlier_bits);
  a.tile_outliers = tile_outliers;
  a.result = result;
  a.streams = d + L.streams;
  bitpack_encode_kernel<T, Predictor><<<unsigned(L.tiles), kEncodeThreads, 0, s>>>(a);
  EBGC_CUDA(cudaGetLastError());

  size_t temp_bytes = L.scan_temp_bytes;
  EBGC_CUDA(cub::DeviceScan::ExclusiveSum(d + L.scan_temp, temp_bytes, tile_outliers, tile_offset,
                                          int64_t(L.tiles + 1), s));
  const unsigned gather_grid = unsigned(ceil_div(L.tiles * kWarp, 256));
  outlier_gather_kernel<T><<<gather_grid, 256, 0, s>>>(
      x, a.outlier_bits, tile_outliers, tile_offset, L.tiles, L.blocks, L.capacity,
      reinterpret_cast<unsigned long long*>(d + L.index), reinterpret_cast<T*>(d + L.value), bound, result);
  EBGC_CUDA(cudaGetLastError());
}

// The blob around the streams, by the container writer the CPU codec uses: header, outliers,
// chunk directory (the bit-packing coder has no tables), streams, checksum.

// Bit-packing on the device. Returns false, having written nothing, where the outliers overflow
// the device's capacity (hostile or unsuitable data): the caller then runs the CPU codec.
// reconstruction (optional, device): what the decoder will return.
template <class T, class Predictor>
bool compress_bitpack_on_device(const T* x, const std::vector<uint64_t>& shape, const Params& p, const Predictor& predict,
                                T* reconstruction, Workspace& ws, cudaStream_t s, const CodedBlobSink& sink,
                                size_t tensor) {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  const EncodeLayout L(n, sizeof(T), reconstruction != nullptr);
  uint8_t* d = ws.device_bytes(L.total);
  T* staged = reconstruction ? reinterpret_cast<T*>(d + L.reconstruction) : nullptr;
  Enqueued encode(ws, s);
  enqueue_encode(x, L, d, p.mode, p.error_bound, predict, staged, ws.sm_count, s);
  const size_t result_bytes = 8 * (kResultChunkB + L.chunks);
  ws.wait_host();
  uint8_t* h = ws.host_bytes(result_bytes);
  EBGC_CUDA(cudaMemcpyAsync(h, d + L.result, result_bytes, cudaMemcpyDeviceToHost, s));
  encode.end();
  ws.wait_host();  // the blob's size is needed here
  const auto* res = reinterpret_cast<const unsigned long long*>(h);
  const uint64_t stream_bytes = res[kResultStreamBytes], outliers = res[kResultOutliers];
  const double abs_bound = double_of(res[kResultAbsBound]);
  std::vector<uint64_t> len_a(L.chunks), len_b(res + kResultChunkB, res + kResultChunkB + L.chunks);
  if (outliers > L.capacity) return false;
  const uint64_t chunk = uint64_t(1) << kGpuChunkLog2;
  for (uint64_t c = 0; c < L.chunks; ++c) len_a[c] = ceil_div(std::min(n, (c + 1) * chunk) - c * chunk, kPackBlock);
  // The streams come to the host only for a host blob.
  const bool stay = sink.streams_stay();
  const size_t index_at = 0, value_at = 8 * outliers, streams_at = value_at + sizeof(T) * outliers;
  h = ws.host_bytes(streams_at + (stay ? 0 : stream_bytes));
  Enqueued download(ws, s);
  if (outliers) {
    EBGC_CUDA(cudaMemcpyAsync(h + index_at, d + L.index, 8 * outliers, cudaMemcpyDeviceToHost, s));
    EBGC_CUDA(cudaMemcpyAsync(h + value_at, d + L.value, sizeof(T) * outliers, cudaMemcpyDeviceToHost, s));
  }
  if (!stay) EBGC_CUDA(cudaMemcpyAsync(h + streams_at, d + L.streams, stream_bytes, cudaMemcpyDeviceToHost, s));
  if (reconstruction) EBGC_CUDA(cudaMemcpyAsync(reconstruction, staged, n * sizeof(T), cudaMemcpyDeviceToDevice, s));
  download.end();
  ws.wait_host();
  Header hd = grid_header<T>(shape, p, predict, kGpuChunkLog2, Coder::Bitpack);
  hd.abs_bound = abs_bound;
  put_coded_blob(hd, outliers, reinterpret_cast<const unsigned long long*>(h + index_at), h + value_at, sizeof(T),
                 ByteWriter(), len_a, len_b, stay ? d + L.streams : h + streams_at, sink, tensor);
  sink.finish();
  return true;
}

// ---- decoder ---------------------------------------------------------------------------------

// Everything the decode kernels read, staged in pinned memory and copied in one transfer.
struct DecodeLayout {
  size_t chunk_offset, index, value, streams, total;
  DecodeLayout(uint64_t chunks, uint64_t outliers, size_t elem, uint64_t stream_bytes) {
    Carve c;
    chunk_offset = c.take(8 * chunks);
    index = c.take(8 * outliers);
    value = c.take(elem * outliers);
    streams = c.take(stream_bytes + 8);  // load_bits may read 8 bytes past the last one
    total = c.end;
  }
};

// Every width byte is <= 32 and every chunk's packed data has exactly the declared length: the
// kernel then needs no checks of its own and cannot read outside the blob.
inline void check_bitpack_streams(const ParsedBlob& pb) {
  for (uint64_t c = 0; c < pb.len_a.size(); ++c) BitpackCoder::check_chunk(pb.tables, pb.chunk(c));
}

template <class T, class Predictor>
void enqueue_decode(const ParsedBlob& pb, const DecodeLayout& L, const uint8_t* d, const Predictor& predict, T* out,
                    cudaStream_t s, const unsigned* fault = nullptr) {
  const Header& h = pb.header;
  DecodeArgs<T, Predictor> a;
  a.streams = d + L.streams;
  a.chunk_offset = reinterpret_cast<const unsigned long long*>(d + L.chunk_offset);
  a.n = h.elements();
  a.chunk_log2 = h.chunk_log2;
  a.segments_per_chunk = unsigned(ceil_div(h.chunk_elems() / kPackBlock, kDecodeThreads));
  a.predict = predict;
  a.qz = LinearQuantizer(h.abs_bound);
  a.out = out;
  a.fault = fault;
  bitpack_decode_kernel<T, Predictor><<<unsigned(h.chunks() * a.segments_per_chunk), kDecodeThreads, 0, s>>>(a);
  EBGC_CUDA(cudaGetLastError());
  const uint64_t count = pb.outlier_index.size();
  if (count) {
    const unsigned grid = unsigned(std::min<uint64_t>(ceil_div(count, 256), 65535));
    outlier_scatter_kernel<T><<<grid, 256, 0, s>>>(reinterpret_cast<const unsigned long long*>(d + L.index),
                                                   d + L.value, count, out);
    EBGC_CUDA(cudaGetLastError());
  }
}

inline uint64_t stream_bytes_of(const ParsedBlob& pb) {
  uint64_t total = 0;
  for (size_t c = 0; c < pb.len_a.size(); ++c) total += pb.len_a[c] + pb.len_b[c];
  return total;
}

// Stages a bit-packed blob in pinned memory (the caller has waited for the previous transfer).
inline DecodeLayout stage_bitpack(const ParsedBlob& pb, Workspace& ws, uint8_t*& host) {
  const uint64_t count = pb.outlier_index.size(), stream_bytes = stream_bytes_of(pb);
  const size_t elem = dtype_size(pb.header.dtype);
  DecodeLayout L(pb.len_a.size(), count, elem, stream_bytes);
  host = ws.host_bytes(L.total);
  std::memcpy(host + L.chunk_offset, pb.offset.data(), 8 * pb.offset.size());
  std::memcpy(host + L.index, pb.outlier_index.data(), 8 * count);
  std::memcpy(host + L.value, pb.outlier_values, elem * count);
  std::memcpy(host + L.streams, pb.streams, stream_bytes);
  std::memset(host + L.streams + stream_bytes, 0, 8);
  return L;
}

// A bit-packed blob whose streams are in device memory (device_streams): the directory and the
// outliers go up from the host's parse, the streams are copied on the device with the decoder's
// padding, checked there (bitpack_check_kernel) and decoded; the host waits for the check's
// verdict, so a corrupt stream is a FormatError before this returns.
template <class T, class Predictor>
void decompress_bitpack_from_device(const ParsedBlob& pb, const uint8_t* device_streams, T* out, const Predictor& predict,
                                    Workspace& ws, cudaStream_t s) {
  const Header& h = pb.header;
  const uint64_t chunks = pb.len_a.size(), count = pb.outlier_index.size(), stream_bytes = stream_bytes_of(pb);
  const DecodeLayout L(chunks, count, sizeof(T), stream_bytes);
  const size_t fault_at = L.total;
  ws.wait_host();
  uint8_t* host = ws.host_bytes(L.streams + 4);
  std::memcpy(host + L.chunk_offset, pb.offset.data(), 8 * chunks);
  std::memcpy(host + L.index, pb.outlier_index.data(), 8 * count);
  std::memcpy(host + L.value, pb.outlier_values, sizeof(T) * count);
  uint8_t* d = ws.device_bytes(L.total + 4);
  auto* fault = reinterpret_cast<unsigned*>(d + fault_at);
  Enqueued work(ws, s);
  EBGC_CUDA(cudaMemcpyAsync(d, host, L.streams, cudaMemcpyHostToDevice, s));
  if (stream_bytes) EBGC_CUDA(cudaMemcpyAsync(d + L.streams, device_streams, stream_bytes, cudaMemcpyDeviceToDevice, s));
  EBGC_CUDA(cudaMemsetAsync(d + L.streams + stream_bytes, 0, 8, s));
  EBGC_CUDA(cudaMemsetAsync(fault, 0, 4, s));
  bitpack_check_kernel<<<unsigned(ceil_div(chunks, 256)), 256, 0, s>>>(
      d + L.streams, reinterpret_cast<const unsigned long long*>(d + L.chunk_offset), chunks, h.elements(), h.chunk_log2,
      stream_bytes, fault);
  EBGC_CUDA(cudaGetLastError());
  enqueue_decode(pb, L, d, predict, out, s, fault);
  EBGC_CUDA(cudaMemcpyAsync(host + L.streams, fault, 4, cudaMemcpyDeviceToHost, s));
  work.end();
  ws.wait_host();
  unsigned flags;
  std::memcpy(&flags, host + L.streams, 4);
  require_bitpack_chunk(flags);
}

}  // namespace gpu
}  // namespace ebgc
