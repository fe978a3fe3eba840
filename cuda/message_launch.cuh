// Whole messages in fast mode on the GPU, host side: the tensor table up in one copy, the message
// kernels (message_kernels.cuh) in a fixed number of launches whatever the tensor count, every
// tensor's sizes back in one small copy, then the outliers and the compacted streams of all
// tensors in one more, and the blobs written by the host part the host runner shares
// (grid/message_blobs.hpp). Two host waits per message, not two per tensor. Blobs assembled in
// device memory skip the compaction: only the outliers come down, and the assembly reads each
// row's streams where the encoder left them.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include <cub/device/device_scan.cuh>

#include "ebgc/grid/message_blobs.hpp"
#include "message_common.cuh"
#include "workspace.cuh"

namespace ebgc {
namespace gpu {

// Where the message's buffers sit in the workspace.
struct MessageLayout {
  uint64_t capacity;
  size_t rows, bounds, counter, status, tile_outliers, zeroed_bytes, tile_offset, outlier_bits, result, offset, index,
      value, scan_temp, scan_temp_bytes, streams, compact, total;
  MessageBlendLayout blend;
  // compact: a copy of the streams in row order, for one transfer to the host (host blobs only).
  template <class T>
  MessageLayout(const MessageGrid& m, size_t row_bytes, size_t elem, std::vector<BlendRow<T>>& blends, bool compacted) {
    capacity = message_outlier_capacity(m.values);
    scan_temp_bytes = 0;
    EBGC_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, scan_temp_bytes, static_cast<unsigned long long*>(nullptr),
                                            static_cast<unsigned long long*>(nullptr), int64_t(m.tiles + 1)));
    Carve c;
    rows = c.take(row_bytes * m.rows);
    bounds = c.take(sizeof(DeviceBound) * m.rows);
    // Zeroed by one memset: the tile counter, the look-back status, the per-tile outlier counts.
    counter = c.take(8 + 8 * m.segments);
    status = counter + 8;
    tile_outliers = c.take(8 * (m.tiles + 1));
    zeroed_bytes = c.end - counter;
    tile_offset = c.take(8 * (m.tiles + 1));
    outlier_bits = c.take(4 * m.blocks);
    result = c.take(8 * m.result_words());
    offset = c.take(8 * m.rows);
    index = c.take(8 * capacity);
    value = c.take(elem * capacity);
    scan_temp = c.take(scan_temp_bytes);
    streams = c.take(m.stream_area);
    compact = c.take(compacted ? m.stream_area : 0);
    blend.carve(c, blends);
    total = c.end;
  }
};

// Codes the rows (x, reconstruction, n and predict set; tensor_of[k] is row k's tensor, of
// shapes[...]); blends: the rows whose stream predictor is fitted first (BlendRow::row). Returns
// false, having written nothing, where the message's outliers overflow the device's capacity: the
// caller then codes its tensors one by one (each with its own fallback).
template <class T>
bool compress_message_on_device(std::vector<MessageRow<T>>& rows, std::vector<BlendRow<T>>& blends,
                                const std::vector<size_t>& tensor_of, const std::vector<std::vector<uint64_t>>& shapes,
                                const Params& p, Workspace& ws, cudaStream_t s, const CodedBlobSink& sink) {
  const MessageGrid m = plan_message(rows);
  const uint64_t count = m.rows;
  const bool stay = sink.streams_stay();
  const MessageLayout L(m, sizeof(MessageRow<T>), sizeof(T), blends, !stay);
  uint8_t* d = ws.device_bytes(L.total);
  const size_t row_bytes = sizeof(MessageRow<T>) * count, result_bytes = 8 * m.result_words();
  ws.wait_host();
  uint8_t* h = ws.host_bytes(row_bytes + result_bytes);
  std::memcpy(h, rows.data(), row_bytes);

  auto* table = reinterpret_cast<MessageRow<T>*>(d + L.rows);
  auto* bounds = reinterpret_cast<DeviceBound*>(d + L.bounds);
  auto* result = reinterpret_cast<unsigned long long*>(d + L.result);
  auto* tile_outliers = reinterpret_cast<unsigned long long*>(d + L.tile_outliers);
  auto* tile_offset = reinterpret_cast<unsigned long long*>(d + L.tile_offset);
  auto* outlier_bits = reinterpret_cast<uint32_t*>(d + L.outlier_bits);
  auto* offset = reinterpret_cast<unsigned long long*>(d + L.offset);
  Enqueued encode(ws, s);
  EBGC_CUDA(cudaMemsetAsync(d + L.counter, 0, L.zeroed_bytes, s));
  EBGC_CUDA(cudaMemsetAsync(result, 0, result_bytes, s));
  h = start_message_grid(rows, table, m.tiles, bounds, p, blends, L.blend, d, h, row_bytes + result_bytes, ws, s, encode);

  MessageEncodeArgs<T> a;
  a.rows = table;
  a.count = count;
  a.bounds = bounds;
  a.tile_counter = reinterpret_cast<unsigned long long*>(d + L.counter);
  a.status = reinterpret_cast<unsigned long long*>(d + L.status);
  a.outlier_bits = outlier_bits;
  a.tile_outliers = tile_outliers;
  a.result = result;
  a.streams = d + L.streams;
  message_encode_kernel<T><<<unsigned(m.tiles), kEncodeThreads, 0, s>>>(a);
  EBGC_CUDA(cudaGetLastError());

  size_t temp_bytes = L.scan_temp_bytes;
  EBGC_CUDA(cub::DeviceScan::ExclusiveSum(d + L.scan_temp, temp_bytes, tile_outliers, tile_offset, int64_t(m.tiles + 1), s));
  const unsigned gather_grid = unsigned(ceil_div(std::max<uint64_t>(m.tiles * kWarp, count), kMessageThreads));
  message_gather_kernel<T><<<gather_grid, kMessageThreads, 0, s>>>(
      table, count, outlier_bits, tile_outliers, tile_offset, m.tiles, L.capacity,
      reinterpret_cast<unsigned long long*>(d + L.index), reinterpret_cast<T*>(d + L.value), bounds, result);
  if (!stay) {  // blobs assembled on the device read the stream area itself
    message_offsets_kernel<<<1, 1, 0, s>>>(result, count, offset);
    uint64_t widest = 0;  // the largest stream area sets the compaction's grid
    for (const MessageRow<T>& r : rows) widest = std::max(widest, bitpack_stream_area(r.grid().blocks));
    const dim3 compact_grid(unsigned(std::min<uint64_t>(ceil_div(widest, kMessageThreads * 16), 1024)),
                            unsigned(std::min<uint64_t>(count, 65535)));
    message_compact_kernel<T><<<compact_grid, kMessageThreads, 0, s>>>(table, count, d + L.streams, result, offset,
                                                                       d + L.compact);
  }
  EBGC_CUDA(cudaGetLastError());
  EBGC_CUDA(cudaMemcpyAsync(h + row_bytes, result, result_bytes, cudaMemcpyDeviceToHost, s));
  encode.end();
  ws.wait_host();  // every tensor's sizes, in one copy
  const auto* res = reinterpret_cast<const unsigned long long*>(h + row_bytes);
  const std::vector<unsigned long long> results(res, res + m.result_words());
  uint64_t outliers = 0;
  for (uint64_t k = 0; k < count; ++k) outliers += results[kRowWords * k + kRowOutliers];
  if (outliers > L.capacity) return false;
  std::vector<uint64_t> offsets(count);
  const uint64_t stream_bytes = message_stream_offsets(results.data(), count, offsets.data());

  const MessageParts parts = download_message_parts(ws, s, d + L.index, d + L.value, sizeof(T), outliers,
                                                    d + (stay ? L.streams : L.compact), stream_bytes, sink);
  write_message_blobs(rows, tensor_of, shapes, p, results.data(), reinterpret_cast<const unsigned long long*>(parts.index),
                      parts.values, parts.streams, sink);
  sink.finish();
  return true;
}

}  // namespace gpu
}  // namespace ebgc
