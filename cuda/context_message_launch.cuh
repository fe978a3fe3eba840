// Whole messages in ratio mode on the GPU, host side: the context message kernels
// (context_message_kernels.cuh) in a fixed number of launches whatever the tensor count, and three
// host waits per message: every tensor's analysis summary (one copy), then the coded tensors'
// chunk directory (one copy), then their outliers and streams (one copy each). Between the first
// two the host picks each tensor's coder and fits its tables (grid/context_message.hpp, the CPU's
// code); the tensors it gives to another coder are returned to the caller.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include <cub/device/device_scan.cuh>

#include "context_message_kernels.cuh"
#include "ebgc/grid/message_blobs.hpp"
#include "message_common.cuh"
#include "workspace.cuh"

namespace ebgc {
namespace gpu {

struct ContextMessageLayout {
  size_t rows, bounds, summaries, block_or, outlier_bits, chunk_outliers, zeroed_bytes, chunk_b, chunk_b_bytes;
  size_t sym, ctx, lane_raw, lane_raw_bits, len_a, len_b, bytes, offset, first_outlier, scan_temp, scan_temp_bytes;
  size_t state, words, region, tables, streams, total;
  MessageBlendLayout blend;
  template <class T>
  ContextMessageLayout(const ContextMessageGrid& m, size_t row_bytes, std::vector<BlendRow<T>>& blends) {
    const LaneGrid any(1, kGridChunkLog2);
    scan_temp_bytes = 0;
    EBGC_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, scan_temp_bytes, static_cast<unsigned long long*>(nullptr),
                                            static_cast<unsigned long long*>(nullptr), int64_t(m.chunks + 1)));
    Carve c;
    rows = c.take(row_bytes * m.rows);
    bounds = c.take(sizeof(DeviceBound) * m.rows);
    // Zeroed by one memset before the analysis.
    summaries = c.take(sizeof(AnalysisSummary) * m.rows);
    block_or = c.take(4 * m.blocks);
    outlier_bits = c.take(4 * m.blocks);
    chunk_outliers = c.take(8 * (m.chunks + 1));
    zeroed_bytes = c.end - summaries;
    chunk_b_bytes = 4 * m.chunks * any.b_words_per_chunk();
    chunk_b = c.take(chunk_b_bytes);  // zeroed before the encode kernel
    sym = c.take(m.values);
    ctx = c.take(m.values);
    lane_raw = c.take(4 * m.lanes * any.raw_words_per_lane());
    lane_raw_bits = c.take(4 * m.lanes);
    len_a = c.take(8 * m.chunks);
    len_b = c.take(8 * m.chunks);
    bytes = c.take(8 * (m.chunks + 1));
    offset = c.take(8 * (m.chunks + 1));
    first_outlier = c.take(8 * (m.chunks + 1));
    scan_temp = c.take(scan_temp_bytes);
    state = c.take(4 * m.lanes);
    words = c.take(4 * m.lanes);
    region = c.take(2 * m.lanes * any.word_region());
    tables = c.take(max_context_table_bytes() * m.rows);
    // A chunk's streams: its head (<= 32 + 7 * 5 bytes), <= 2 words a value, <= 27 raw bits a value.
    streams = c.take(m.chunks * 72 + m.values * 4 + (m.values * kMaxRawBits + 7) / 8);
    blend.carve(c, blends);
    total = c.end;
  }
};

// What the host gave to other coders: tensor indices the caller codes tensor by tensor (raw, for
// host blobs) or through the fast mode's message grid.
struct ContextMessageLeftovers {
  std::vector<size_t> raw, bitpack;
};

// rows: x, reconstruction, n, sign_period set; blends: the rows whose stream predictor is fitted
// first (BlendRow::row); tensor_of[k]: row k's tensor, of shapes[...].
template <class T>
ContextMessageLeftovers compress_context_message_on_device(std::vector<ContextRow<T>>& rows,
                                                            std::vector<BlendRow<T>>& blends,
                                                            const std::vector<size_t>& tensor_of,
                                                            const std::vector<std::vector<uint64_t>>& shapes,
                                                            const Params& p, Workspace& ws, cudaStream_t s,
                                                            const CodedBlobSink& sink) {
  ContextMessageLeftovers left;
  const ContextMessageGrid m = plan_context_message(rows);
  const uint64_t count = m.rows;
  const ContextMessageLayout L(m, sizeof(ContextRow<T>), blends);
  uint8_t* d = ws.device_bytes(L.total);
  auto u32 = [&](size_t offset) { return reinterpret_cast<uint32_t*>(d + offset); };
  auto u64 = [&](size_t offset) { return reinterpret_cast<unsigned long long*>(d + offset); };
  const LaneGrid any(1, kGridChunkLog2);
  const ContextMessageArrays a{d + L.sym, d + L.ctx, u32(L.lane_raw), u32(L.lane_raw_bits), u32(L.block_or),
                               u32(L.outlier_bits), u32(L.state), u32(L.words), u32(L.chunk_b),
                               reinterpret_cast<uint16_t*>(d + L.region), u64(L.len_a), u64(L.len_b), u64(L.bytes),
                               u64(L.offset), u64(L.chunk_outliers), u64(L.first_outlier), any.raw_words_per_lane(),
                               any.b_words_per_chunk(), any.word_region()};
  auto* table = reinterpret_cast<ContextRow<T>*>(d + L.rows);
  auto* bounds = reinterpret_cast<DeviceBound*>(d + L.bounds);
  auto* summaries = reinterpret_cast<AnalysisSummary*>(d + L.summaries);
  const size_t row_bytes = sizeof(ContextRow<T>) * count, summary_bytes = sizeof(AnalysisSummary) * count;
  const unsigned lane_grid = unsigned(m.threads / kLaneThreads), chunk_grid = unsigned(ceil_div(m.chunks + 1, 256));

  // Step 1: bounds, analysis and tallies of every tensor; all summaries back in one copy.
  ws.wait_host();
  uint8_t* h = ws.host_bytes(row_bytes + summary_bytes);
  std::memcpy(h, rows.data(), row_bytes);
  Enqueued analyze(ws, s);
  EBGC_CUDA(cudaMemsetAsync(d + L.summaries, 0, L.zeroed_bytes, s));
  h = start_message_grid(rows, table, m.tiles, bounds, p, blends, L.blend, d, h, row_bytes + summary_bytes, ws, s,
                         analyze);
  context_message_analyze_kernel<T><<<lane_grid, kLaneThreads, 0, s>>>(table, count, bounds, ws.bucket_of_sum, a,
                                                                         summaries);
  context_message_tally_kernel<T><<<chunk_grid, 256, 0, s>>>(table, count, m.chunks, bounds, a, summaries);
  EBGC_CUDA(cudaGetLastError());
  EBGC_CUDA(cudaMemcpyAsync(h + row_bytes, summaries, summary_bytes, cudaMemcpyDeviceToHost, s));
  analyze.end();
  ws.wait_host();

  // The host's part: each tensor's coder and tables, by the CPU's code.
  std::vector<LaneCoderChoice> choices(count);
  std::vector<double> abs_bound(count);
  std::vector<uint64_t> raw_rows;
  uint64_t gathered = 0;  // outliers of the lane-coded rows: the gather's buffer is sized for them
  for (uint64_t k = 0; k < count; ++k) {
    const AnalysisSummary& sm = reinterpret_cast<const AnalysisSummary*>(h + row_bytes)[k];
    GridTotals totals;
    for (unsigned b = 0; b < kCtxBuckets; ++b)
      for (unsigned j = 0; j < kSymbols; ++j) totals.counts[b][j] = sm.counts[b][j];
    for (unsigned c = 0; c < kSignContexts; ++c) totals.signs[c] = {sm.signs[c][0], sm.signs[c][1]};
    totals.raw_bytes = sm.raw_bytes, totals.bitpack_bytes = sm.bitpack_bytes, totals.outliers = sm.outliers;
    abs_bound[k] = double_of(sm.abs_bound_bits);
    const ContextRow<T>& r = rows[k];
    choices[k] = choose_lane_coder(totals, r.n, r.grid().chunks, r.sign_period, sizeof(T), p.coder);
    const size_t tensor = tensor_of[k];
    if (choices[k].coder == Coder::Raw) raw_rows.push_back(k);
    else if (choices[k].coder == Coder::Bitpack) left.bitpack.push_back(tensor);
    else gathered += sm.outliers;
  }
  // Raw rows: assembled from the values where they are for device blobs (after the loop above: the
  // assembly reuses the pinned buffer that held the summaries), else tensor by tensor.
  for (uint64_t k : raw_rows) {
    if (!sink.streams_stay()) left.raw.push_back(tensor_of[k]);
    else put_raw_on_device(rows[k].x, rows[k].reconstruction, shapes[tensor_of[k]], p, abs_bound[k], rows[k].n, sink,
                           tensor_of[k], ws, s);
  }
  std::vector<uint8_t> tables;
  place_context_tables(rows, choices, tables);
  if (tables.empty()) return left;  // no tensor for the lanes
  uint8_t* outliers_at = ws.gathered_bytes(std::max<uint64_t>(1, gathered) * (8 + sizeof(T)));
  auto* index = reinterpret_cast<uint64_t*>(outliers_at);
  T* value = reinterpret_cast<T*>(outliers_at + 8 * gathered);

  // Steps 2 and 3: the coded tensors' lanes, sizes, one scan of offsets and one of outliers over
  // the message, streams and outliers in place; the chunk directory back in one copy.
  const size_t dir_at = row_bytes + tables.size(), dir_bytes = 8 * (4 * m.chunks + 2);
  ws.wait_host();  // a raw row's assembly may still read the pinned buffer
  h = ws.host_bytes(dir_at + dir_bytes);
  std::memcpy(h, rows.data(), row_bytes);
  std::memcpy(h + row_bytes, tables.data(), tables.size());
  Enqueued encode(ws, s);
  EBGC_CUDA(cudaMemcpyAsync(d + L.rows, h, row_bytes, cudaMemcpyHostToDevice, s));
  EBGC_CUDA(cudaMemcpyAsync(d + L.tables, h + row_bytes, tables.size(), cudaMemcpyHostToDevice, s));
  EBGC_CUDA(cudaMemsetAsync(d + L.chunk_b, 0, L.chunk_b_bytes, s));
  if (std::any_of(rows.begin(), rows.end(), [](const ContextRow<T>& r) { return r.coded == kLaneHuffman; }))
    EBGC_CUDA(cudaMemsetAsync(d + L.region, 0, 2 * m.lanes * any.word_region(), s));  // Huffman's A words
  context_message_encode_kernel<T><<<lane_grid, kLaneThreads, 0, s>>>(table, count, d + L.tables, a);
  context_message_sizes_kernel<T><<<chunk_grid, 256, 0, s>>>(table, count, m.chunks, a);
  EBGC_CUDA(cudaGetLastError());
  size_t temp = L.scan_temp_bytes;
  EBGC_CUDA(cub::DeviceScan::ExclusiveSum(d + L.scan_temp, temp, a.bytes, a.offset, int64_t(m.chunks + 1), s));
  temp = L.scan_temp_bytes;
  EBGC_CUDA(cub::DeviceScan::ExclusiveSum(d + L.scan_temp, temp, a.chunk_outliers, a.first_outlier, int64_t(m.chunks + 1), s));
  context_message_streams_kernel<T><<<lane_grid, kLaneThreads, 0, s>>>(table, count, a, d + L.streams);
  context_message_outlier_kernel<T><<<chunk_grid, 256, 0, s>>>(table, count, m.chunks, a,
                                                               index, value);
  EBGC_CUDA(cudaGetLastError());
  EBGC_CUDA(cudaMemcpyAsync(h + dir_at, a.len_a, 8 * m.chunks, cudaMemcpyDeviceToHost, s));
  EBGC_CUDA(cudaMemcpyAsync(h + dir_at + 8 * m.chunks, a.len_b, 8 * m.chunks, cudaMemcpyDeviceToHost, s));
  EBGC_CUDA(cudaMemcpyAsync(h + dir_at + 16 * m.chunks, a.offset, 8 * (m.chunks + 1), cudaMemcpyDeviceToHost, s));
  EBGC_CUDA(cudaMemcpyAsync(h + dir_at + 8 * (3 * m.chunks + 1), a.first_outlier, 8 * (m.chunks + 1),
                            cudaMemcpyDeviceToHost, s));
  encode.end();
  ws.wait_host();
  const auto* dir = reinterpret_cast<const unsigned long long*>(h + dir_at);
  const std::vector<unsigned long long> directory(dir, dir + 4 * m.chunks + 2);
  const unsigned long long *len_a = directory.data(), *len_b = len_a + m.chunks, *offset = len_b + m.chunks;
  const unsigned long long* first_outlier = offset + m.chunks + 1;
  const uint64_t stream_bytes = offset[m.chunks], outliers = first_outlier[m.chunks];

  // The coded tensors' outliers and streams in one transfer each; their blobs.
  const MessageParts parts =
      download_message_parts(ws, s, reinterpret_cast<const uint8_t*>(index), reinterpret_cast<const uint8_t*>(value),
                             sizeof(T), outliers, d + L.streams, stream_bytes, sink);
  for (uint64_t k = 0; k < count; ++k)
    if (rows[k].coded)
      put_context_row_blob(rows[k], shapes[tensor_of[k]], p, abs_bound[k], choices[k].tables, len_a, len_b, offset,
                           first_outlier, reinterpret_cast<const uint64_t*>(parts.index), parts.values, parts.streams,
                           sink, tensor_of[k]);
  sink.finish();
  return left;
}

}  // namespace gpu
}  // namespace ebgc
