// The ratio coders on the device (context, and Huffman on the same lanes), host side: buffers,
// launches and the three host waits of a grid encode (the analysis summary, for the tables; the
// chunk sizes; the streams), and the decode of a lane-coded blob (one staging copy, a symbol and a
// lane kernel, the outliers, and a fault word the host reads before returning, so a corrupt stream
// is a typed error).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include <cub/device/device_scan.cuh>

#include "bitpack_launch.cuh"
#include "context_kernels.cuh"
#include "ebgc/grid/grid_blob.hpp"
#include "workspace.cuh"

namespace ebgc {
namespace gpu {

// Where a grid encode's buffers sit in the workspace.
struct GridEncodeLayout {
  LaneGrid g;
  size_t summary, block_or, outlier_bits, chunk_outliers, zeroed_bytes, chunk_b, chunk_b_bytes;
  size_t bound, sym, ctx, lane_raw, lane_raw_bits, len_b, first_outlier, len_a, bytes, offset, scan_temp;
  size_t state, words, region, tables, streams, reconstruction, scan_temp_bytes, total;

  GridEncodeLayout(uint64_t n, size_t elem, bool with_reconstruction) : g(n, kGridChunkLog2) {
    scan_temp_bytes = 0;
    EBGC_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, scan_temp_bytes, static_cast<unsigned long long*>(nullptr),
                                            static_cast<unsigned long long*>(nullptr), int64_t(g.chunks + 1)));
    Carve c;
    // Zeroed by one memset before the analysis.
    summary = c.take(sizeof(AnalysisSummary));
    block_or = c.take(4 * g.blocks());
    outlier_bits = c.take(4 * g.blocks());
    chunk_outliers = c.take(8 * (g.chunks + 1));
    zeroed_bytes = c.end;
    chunk_b_bytes = 4 * g.chunks * g.b_words_per_chunk();
    chunk_b = c.take(chunk_b_bytes);  // zeroed before the encode kernel
    bound = c.take(sizeof(DeviceBound));
    sym = c.take(n);
    ctx = c.take(n);
    lane_raw = c.take(4 * g.lanes() * g.raw_words_per_lane());
    lane_raw_bits = c.take(4 * g.lanes());
    len_b = c.take(8 * g.chunks);
    first_outlier = c.take(8 * (g.chunks + 1));
    len_a = c.take(8 * g.chunks);
    bytes = c.take(8 * (g.chunks + 1));
    offset = c.take(8 * (g.chunks + 1));
    scan_temp = c.take(scan_temp_bytes);
    state = c.take(4 * g.lanes());
    words = c.take(4 * g.lanes());
    region = c.take(2 * g.lanes() * g.word_region());
    tables = c.take(max_context_table_bytes());
    // A chunk's streams: its head (<= 32 + 7 * 5 bytes), <= 2 words a value, <= 27 raw bits a value.
    streams = c.take(g.chunks * 72 + n * 4 + (n * kMaxRawBits + 7) / 8);
    reconstruction = c.take(with_reconstruction ? elem * n : 0);
    total = c.end;
  }
};

enum class GridOutcome { Written, Raw, Bitpack };

inline unsigned lane_blocks(uint64_t threads, unsigned per_block) { return unsigned(ceil_div(threads, per_block)); }

// Encodes x (n >= 1) with the context coder's or Huffman's lanes, or says which coder to run
// instead: the plan's pick from the device's own statistics (raw, bit-packing). The outliers are
// gathered into a buffer of their exact count (known from the analysis), so any number fits.
template <class T, class Predictor>
GridOutcome compress_context_on_device(const T* x, const std::vector<uint64_t>& shape, const Params& p,
                                       const Predictor& predict, T* reconstruction, Workspace& ws, cudaStream_t s,
                                       const CodedBlobSink& sink, size_t tensor) {
  uint64_t n = 1;
  for (uint64_t dim : shape) n *= dim;
  const GridEncodeLayout L(n, sizeof(T), reconstruction != nullptr);
  const LaneGrid& g = L.g;
  uint8_t* d = ws.device_bytes(L.total);
  auto at = [&](size_t offset) { return d + offset; };
  auto u32 = [&](size_t offset) { return reinterpret_cast<uint32_t*>(d + offset); };
  auto u64 = [&](size_t offset) { return reinterpret_cast<unsigned long long*>(d + offset); };
  auto* bound = reinterpret_cast<DeviceBound*>(at(L.bound));
  auto* summary = reinterpret_cast<AnalysisSummary*>(at(L.summary));
  T* staged = reconstruction ? reinterpret_cast<T*>(at(L.reconstruction)) : nullptr;
  const uint64_t sign_period = kernel_size(shape);

  // Step 1: analysis, tallies, the summary to the host.
  Enqueued analyze(ws, s);
  EBGC_CUDA(cudaMemsetAsync(d, 0, L.zeroed_bytes, s));
  enqueue_bound(x, n, bound, p.mode, p.error_bound, ws.sm_count, s);
  const AnalyzeOut<T> a{at(L.sym), at(L.ctx), staged, u32(L.lane_raw), u32(L.lane_raw_bits), u32(L.block_or), u32(L.outlier_bits)};
  context_analyze_kernel<T, Predictor><<<lane_blocks(g.lanes(), kLaneThreads), kLaneThreads, 0, s>>>(
      g, x, bound, predict, sign_period, ws.bucket_of_sum, a, summary);
  EBGC_CUDA(cudaGetLastError());
  context_tally_kernel<<<lane_blocks(g.chunks, 256), 256, 0, s>>>(g, u32(L.lane_raw_bits), u32(L.block_or),
                                                                    u32(L.outlier_bits), bound, u64(L.len_b),
                                                                    u64(L.chunk_outliers), summary);
  EBGC_CUDA(cudaGetLastError());
  ws.wait_host();
  auto* host_summary = reinterpret_cast<AnalysisSummary*>(ws.host_bytes(sizeof(AnalysisSummary)));
  EBGC_CUDA(cudaMemcpyAsync(host_summary, summary, sizeof(AnalysisSummary), cudaMemcpyDeviceToHost, s));
  analyze.end();
  ws.wait_host();

  // The host's part: the CPU's statistics, coder choice and tables.
  GridTotals totals;
  for (unsigned b = 0; b < kCtxBuckets; ++b)
    for (unsigned k = 0; k < kSymbols; ++k) totals.counts[b][k] = host_summary->counts[b][k];
  for (unsigned c = 0; c < kSignContexts; ++c) totals.signs[c] = {host_summary->signs[c][0], host_summary->signs[c][1]};
  totals.raw_bytes = host_summary->raw_bytes;
  totals.bitpack_bytes = host_summary->bitpack_bytes;
  totals.outliers = host_summary->outliers;
  const double abs_bound = double_of(host_summary->abs_bound_bits);
  const LaneCoderChoice choice = choose_lane_coder(totals, n, g.chunks, sign_period, sizeof(T), p.coder);
  if (choice.coder == Coder::Raw) {
    if (!sink.streams_stay()) return GridOutcome::Raw;  // the values come to the host once
    put_raw_on_device(x, reconstruction, shape, p, abs_bound, n, sink, tensor, ws, s);
    return GridOutcome::Written;
  }
  if (choice.coder == Coder::Bitpack) return GridOutcome::Bitpack;
  uint8_t* gathered = ws.gathered_bytes(std::max<uint64_t>(1, totals.outliers) * (8 + sizeof(T)));
  auto* index = reinterpret_cast<uint64_t*>(gathered);
  T* value = reinterpret_cast<T*>(gathered + 8 * totals.outliers);
  const uint32_t coded = choice.coded();
  std::vector<uint8_t> placed;
  const PlacedTables placed_at = place_lane_tables(choice, placed);
  const size_t dir_bytes = 8 * (3 * g.chunks + 1);
  // One pinned buffer for the tables going and the directory coming back: growing it later would
  // free memory the tables' copy may still read.
  uint8_t* h = ws.host_bytes(std::max(placed.size(), dir_bytes));
  std::memcpy(h, placed.data(), placed.size());

  // Step 2 and 3: lanes coded, chunk sizes and offsets, streams and outliers in place.
  Enqueued encode(ws, s);
  EBGC_CUDA(cudaMemcpyAsync(at(L.tables), h, placed.size(), cudaMemcpyHostToDevice, s));
  const LaneCode code{u32(L.state), u32(L.words), reinterpret_cast<uint16_t*>(at(L.region))};
  uint32_t* chunk_a = u32(L.region);  // Huffman's A words, where the context coder's regions are
  EBGC_CUDA(cudaMemsetAsync(at(L.chunk_b), 0, L.chunk_b_bytes, s));
  if (coded == kLaneHuffman) {
    EBGC_CUDA(cudaMemsetAsync(chunk_a, 0, 4 * g.chunks * huffman_words_per_chunk(g), s));
    huffman_encode_kernel<<<lane_blocks(g.lanes(), kLaneThreads), kLaneThreads, 0, s>>>(
        g, huffman_view_at(at(L.tables)), at(L.sym), code, chunk_a, u32(L.lane_raw), u32(L.lane_raw_bits),
        u32(L.chunk_b));
  } else {
    context_encode_kernel<<<lane_blocks(g.lanes(), kLaneThreads), kLaneThreads, 0, s>>>(
        g, rans_tables_at(at(L.tables), placed_at), at(L.sym), at(L.ctx), code, u32(L.lane_raw), u32(L.lane_raw_bits),
        u32(L.chunk_b));
  }
  EBGC_CUDA(cudaGetLastError());
  context_sizes_kernel<<<lane_blocks(g.chunks + 1, 256), 256, 0, s>>>(g, coded, u32(L.words), u64(L.len_b), u64(L.len_a),
                                                                      u64(L.bytes));
  EBGC_CUDA(cudaGetLastError());
  size_t temp = L.scan_temp_bytes;
  EBGC_CUDA(cub::DeviceScan::ExclusiveSum(at(L.scan_temp), temp, u64(L.bytes), u64(L.offset), int64_t(g.chunks + 1), s));
  temp = L.scan_temp_bytes;
  EBGC_CUDA(cub::DeviceScan::ExclusiveSum(at(L.scan_temp), temp, u64(L.chunk_outliers), u64(L.first_outlier),
                                          int64_t(g.chunks + 1), s));
  context_streams_kernel<<<lane_blocks(g.lanes(), kLaneThreads), kLaneThreads, 0, s>>>(
      g, coded, code, chunk_a, u32(L.chunk_b), u64(L.len_a), u64(L.len_b), u64(L.offset), at(L.streams));
  EBGC_CUDA(cudaGetLastError());
  if (totals.outliers)
    context_outlier_kernel<T><<<lane_blocks(g.chunks, 256), 256, 0, s>>>(
        g, x, u32(L.outlier_bits), u64(L.chunk_outliers), u64(L.first_outlier), index, value);
  EBGC_CUDA(cudaGetLastError());
  EBGC_CUDA(cudaMemcpyAsync(h, at(L.len_a), 8 * g.chunks, cudaMemcpyDeviceToHost, s));
  EBGC_CUDA(cudaMemcpyAsync(h + 8 * g.chunks, at(L.len_b), 8 * g.chunks, cudaMemcpyDeviceToHost, s));
  EBGC_CUDA(cudaMemcpyAsync(h + 16 * g.chunks, at(L.offset), 8 * (g.chunks + 1), cudaMemcpyDeviceToHost, s));
  encode.end();
  ws.wait_host();
  const auto* dir = reinterpret_cast<const uint64_t*>(h);
  const std::vector<uint64_t> len_a(dir, dir + g.chunks), len_b(dir + g.chunks, dir + 2 * g.chunks);
  const uint64_t stream_bytes = dir[3 * g.chunks];

  // The blob's variable parts to the host (the streams only for a host blob), the reconstruction
  // to the caller.
  const bool stay = sink.streams_stay();
  const uint64_t outliers = totals.outliers;
  const size_t value_at = 8 * outliers, streams_at = value_at + sizeof(T) * outliers;
  h = ws.host_bytes(streams_at + (stay ? 0 : stream_bytes));
  Enqueued download(ws, s);
  if (outliers) {
    EBGC_CUDA(cudaMemcpyAsync(h, gathered, (8 + sizeof(T)) * outliers, cudaMemcpyDeviceToHost, s));
  }
  if (!stay) EBGC_CUDA(cudaMemcpyAsync(h + streams_at, at(L.streams), stream_bytes, cudaMemcpyDeviceToHost, s));
  if (reconstruction) EBGC_CUDA(cudaMemcpyAsync(reconstruction, staged, n * sizeof(T), cudaMemcpyDeviceToDevice, s));
  download.end();
  ws.wait_host();
  Header hd = grid_header<T>(shape, p, predict, kGridChunkLog2, choice.coder);
  hd.abs_bound = abs_bound;
  put_coded_blob(hd, outliers, reinterpret_cast<const uint64_t*>(h), h + value_at, sizeof(T), choice.tables, len_a, len_b,
                 stay ? at(L.streams) : h + streams_at, sink, tensor);
  sink.finish();
  return GridOutcome::Written;
}

// ---- decoding ----------------------------------------------------------------------------------

// A lane-coded blob's staged inputs (one host-to-device copy: the directory, the decode tables,
// the outliers, the streams unless they are on the device), then the device-only buffers.
struct GridDecodeLayout {
  size_t chunks, slot_entry, table_for_sum, sign_freq, huffman, index, value, streams, staged;
  size_t sym, lane_raw_bits, fault, total;
  GridDecodeLayout(const ParsedBlob& pb, const LaneGrid& g) {
    const bool huffman_coded = pb.header.coder == Coder::Huffman;
    const ContextModel& m = pb.tables.context;
    Carve c;
    chunks = c.take(sizeof(ChunkStreamRef) * g.chunks);
    slot_entry = c.take(huffman_coded ? 0 : 4 * m.slot_entry.size());
    table_for_sum = c.take(huffman_coded ? 0 : 4 * m.table_for_sum.size());
    sign_freq = c.take(huffman_coded ? 0 : 4 * (kSignContexts + 1));
    huffman = c.take(huffman_coded ? 2 * kHuffMaxSymbols : 0);
    index = c.take(8 * pb.outlier_index.size());
    value = c.take(dtype_size(pb.header.dtype) * pb.outlier_index.size());
    streams = c.take(stream_bytes_of(pb));
    staged = c.end;
    sym = c.take(g.n);
    lane_raw_bits = c.take(4 * g.lanes());
    fault = c.take(4);
    total = c.end;
  }
};

// Decodes a context (coder 4) or Huffman (coder 2) blob: the symbols a thread a lane (context) or a
// thread a chunk (Huffman), then the values a thread a lane. device_streams: where the blob's
// chunk streams are if they are in device memory (a blob parsed from its front), else null (they
// are staged from the host's bytes).
template <class T, class Predictor>
void decompress_context_on_device(const ParsedBlob& pb, T* out, const Predictor& predict, Workspace& ws, cudaStream_t s,
                                  const uint8_t* device_streams = nullptr) {
  const Header& hd = pb.header;
  const bool huffman_coded = hd.coder == Coder::Huffman;
  const LaneGrid g(hd.elements(), hd.chunk_log2);
  const ContextModel& m = pb.tables.context;
  const GridDecodeLayout L(pb, g);
  const uint64_t count = pb.outlier_index.size();
  const size_t elem = sizeof(T);
  ws.wait_host();
  uint8_t* h = ws.host_bytes(L.staged + 4);
  auto* refs = reinterpret_cast<ChunkStreamRef*>(h + L.chunks);
  for (uint64_t c = 0; c < g.chunks; ++c) refs[c] = {pb.offset[c], pb.len_a[c], pb.offset[c] + pb.len_a[c], pb.len_b[c]};
  if (huffman_coded) {
    std::memcpy(h + L.huffman, pb.tables.huffman->table.data(), 2 * kHuffMaxSymbols);
  } else {
    std::memcpy(h + L.slot_entry, m.slot_entry.data(), 4 * m.slot_entry.size());
    std::memcpy(h + L.table_for_sum, m.table_for_sum.data(), 4 * m.table_for_sum.size());
    auto* sign_freq = reinterpret_cast<uint32_t*>(h + L.sign_freq);
    for (unsigned c = 0; c < kSignContexts; ++c) sign_freq[c] = m.sign_positive[c];
    sign_freq[kSignContexts] = kRansScale;
  }
  std::memcpy(h + L.index, pb.outlier_index.data(), 8 * count);
  std::memcpy(h + L.value, pb.outlier_values, elem * count);
  if (!device_streams) std::memcpy(h + L.streams, pb.streams, stream_bytes_of(pb));
  uint8_t* d = ws.device_bytes(L.total);
  auto* fault = reinterpret_cast<unsigned*>(d + L.fault);
  Enqueued work(ws, s);
  EBGC_CUDA(cudaMemcpyAsync(d, h, device_streams ? L.streams : L.staged, cudaMemcpyHostToDevice, s));
  if (device_streams && stream_bytes_of(pb))
    EBGC_CUDA(cudaMemcpyAsync(d + L.streams, device_streams, stream_bytes_of(pb), cudaMemcpyDeviceToDevice, s));
  EBGC_CUDA(cudaMemsetAsync(fault, 0, 4, s));
  const auto* chunks = reinterpret_cast<const ChunkStreamRef*>(d + L.chunks);
  auto* lane_raw_bits = reinterpret_cast<uint32_t*>(d + L.lane_raw_bits);
  if (huffman_coded) {
    huffman_symbols_kernel<<<lane_blocks(g.chunks, kLaneThreads), kLaneThreads, 0, s>>>(
        g, reinterpret_cast<const uint16_t*>(d + L.huffman), d + L.streams, chunks, d + L.sym, lane_raw_bits, fault);
  } else {
    const LaneDecodeTables tables{
        {{reinterpret_cast<const uint32_t*>(d + L.slot_entry), reinterpret_cast<const uint32_t*>(d + L.table_for_sum)},
         reinterpret_cast<const uint32_t*>(d + L.sign_freq)},
        m.sign_period};
    context_symbols_kernel<<<lane_blocks(g.lanes(), kLaneThreads), kLaneThreads, 0, s>>>(
        g, tables, d + L.streams, chunks, d + L.sym, lane_raw_bits, fault);
  }
  EBGC_CUDA(cudaGetLastError());
  context_reconstruct_kernel<T, Predictor><<<lane_blocks(g.lanes(), kLaneThreads), kLaneThreads, 0, s>>>(
      g, d + L.streams, chunks, d + L.sym, lane_raw_bits, LinearQuantizer(hd.abs_bound), predict, out, fault);
  EBGC_CUDA(cudaGetLastError());
  if (count) {
    const unsigned grid = unsigned(std::min<uint64_t>(ceil_div(count, 256), 65535));
    outlier_scatter_kernel<T><<<grid, 256, 0, s>>>(reinterpret_cast<const unsigned long long*>(d + L.index),
                                                   d + L.value, count, out);
    EBGC_CUDA(cudaGetLastError());
  }
  EBGC_CUDA(cudaMemcpyAsync(h + L.staged, fault, 4, cudaMemcpyDeviceToHost, s));
  work.end();
  ws.wait_host();  // a corrupt stream must be an error before decompress returns
  unsigned flags;
  std::memcpy(&flags, h + L.staged, 4);
  require_format(!(flags & kFaultRans), "rANS chunk is corrupt");
  require_format(!(flags & kFaultHuffman), "Huffman chunk is corrupt");
  require_format(!(flags & kFaultRawBits), "raw bits truncated");
}

}  // namespace gpu
}  // namespace ebgc
