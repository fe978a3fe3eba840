// What both message grids' launch sequences share: their start (the tensor table, the bounds,
// the stream's blends) and their end (the coded tensors' outliers and streams in one transfer).
#pragma once
#include <cuda_runtime.h>

#include <cstring>
#include <vector>

#include "message_blend_launch.cuh"
#include "message_kernels.cuh"
#include "workspace.cuh"

namespace ebgc {
namespace gpu {

// The start of both message grids' launch sequences (inside `work`): the tensor table up from the
// pinned staging h (its first row_bytes), each row's bound (range kernels for rel), and where rows
// have their stream's reconstructions, their blends (two host waits) and the table up again with
// them. Returns the staging, which the blend stage may have moved (staging_bytes kept).
template <class Row, class T>
uint8_t* start_message_grid(std::vector<Row>& rows, Row* table, uint64_t tiles, DeviceBound* bounds,
                            const Params& p, std::vector<BlendRow<T>>& blends, const MessageBlendLayout& blend_layout,
                            uint8_t* d, uint8_t* h, size_t staging_bytes, Workspace& ws, cudaStream_t s,
                            Enqueued& work) {
  const uint64_t count = rows.size();
  const size_t row_bytes = sizeof(Row) * count;
  const unsigned row_grid = unsigned(ceil_div(count, kMessageThreads));
  EBGC_CUDA(cudaMemcpyAsync(table, h, row_bytes, cudaMemcpyHostToDevice, s));
  const bool rel = p.mode == BoundMode::Rel;
  if (rel) {
    message_bounds_reset_kernel<<<row_grid, kMessageThreads, 0, s>>>(bounds, count);
    message_range_kernel<Row><<<unsigned(tiles), kMessageThreads, 0, s>>>(table, count, bounds);
  }
  message_bounds_finish_kernel<<<row_grid, kMessageThreads, 0, s>>>(bounds, count, rel, p.error_bound);
  EBGC_CUDA(cudaGetLastError());
  if (blends.empty()) return h;
  work.end();
  const std::vector<RowPredictor<T>> chosen = choose_message_blends_on_device(blends, blend_layout, d, bounds, ws, s);
  for (size_t j = 0; j < blends.size(); ++j) rows[blends[j].row].predict = chosen[j];
  h = ws.host_bytes(staging_bytes);
  std::memcpy(h, rows.data(), row_bytes);
  work.restart();
  EBGC_CUDA(cudaMemcpyAsync(table, h, row_bytes, cudaMemcpyHostToDevice, s));
  return h;
}

// The message's outliers (8-byte indices, then values of elem bytes) and streams, from the
// device to pinned memory in one transfer each; pointers into the workspace's host buffer. Streams
// the sink assembles where they are stay there (`streams` is then the device's).
struct MessageParts {
  const uint8_t *index, *values, *streams;
};
inline MessageParts download_message_parts(Workspace& ws, cudaStream_t s, const uint8_t* index, const uint8_t* values,
                                           size_t elem, uint64_t outliers, const uint8_t* streams, uint64_t stream_bytes,
                                           const CodedBlobSink& sink) {
  const bool stay = sink.streams_stay();
  const size_t value_at = 8 * outliers, streams_at = value_at + elem * outliers;
  uint8_t* h = ws.host_bytes(streams_at + (stay ? 0 : stream_bytes));
  Enqueued download(ws, s);
  if (outliers) {
    EBGC_CUDA(cudaMemcpyAsync(h, index, 8 * outliers, cudaMemcpyDeviceToHost, s));
    EBGC_CUDA(cudaMemcpyAsync(h + value_at, values, elem * outliers, cudaMemcpyDeviceToHost, s));
  }
  if (stream_bytes && !stay) EBGC_CUDA(cudaMemcpyAsync(h + streams_at, streams, stream_bytes, cudaMemcpyDeviceToHost, s));
  download.end();
  ws.wait_host();
  return {h, h + value_at, stay ? streams : h + streams_at};
}

}  // namespace gpu
}  // namespace ebgc
