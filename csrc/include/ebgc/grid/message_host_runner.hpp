// The host runner of whole-message fast mode: the message kernels' steps (cuda/message_kernels.cuh)
// executed on the CPU over the same message grid, tile by tile in the order the device's tile
// counter hands them out, warp by warp, thread by thread, with the same per-thread bodies
// (grid/message_grid.hpp, grid/bitpack_block_steps.hpp). The look-back becomes a running sum per
// row, the outlier scan one exclusive sum over all the message's tiles, the compaction a copy to
// the offsets message_stream_offsets gives. Every tensor's blob must equal the CPU codec's (coder
// 1, chunk_log2 = kDefaultChunkLog2, no low rank) byte for byte: tests/test_grid_message.py.
// Single-threaded: a proof, not a codec.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "message_blend.hpp"
#include "message_blobs.hpp"

namespace ebgc {

constexpr unsigned kMessageRangeThreads = 256;  // threads of the range kernel's block (one tile each)

// A message's tensors for the host runners: values, shapes, reconstructions (or null), the
// stream's last reconstructions (or null), and, where the caller already chose them, the
// predictors (the ratio grid's tensors that go on to bit-packing).
template <class T>
struct MessageInputs {
  std::vector<const T*> x, previous, previous2;
  std::vector<T*> reconstruction;
  std::vector<std::vector<uint64_t>> shape;
  std::vector<RowPredictor<T>> chosen;  // empty: fit the blends here
  void add(const T* x_, std::vector<uint64_t> shape_, T* rec, const T* p1, const T* p2) {
    x.push_back(x_), shape.push_back(std::move(shape_)), reconstruction.push_back(rec);
    previous.push_back(p1), previous2.push_back(p1 ? p2 : nullptr);
  }
};

// The tensor table of `in`: a row (make(k, n)) per tensor with values; the blobs of the others
// (header only) written by the CPU codec. Returns each row's tensor.
template <class T, class Row, class Make>
std::vector<size_t> message_rows(const MessageInputs<T>& in, const Params& p, const MessageAllocator& allocate,
                                 std::vector<Row>& rows, Make&& make) {
  std::vector<size_t> tensor_of;
  for (size_t k = 0; k < in.x.size(); ++k) {
    const uint64_t n = checked_elements(in.shape[k]);
    if (n == 0) {
      write_empty_blob(dtype_of<T>(), in.shape[k], p, [&](size_t size) { return allocate(k, size); });
      continue;
    }
    rows.push_back(make(k, n));
    tensor_of.push_back(k);
  }
  return tensor_of;
}

// The host runner of the message blend stage for the rows of a grid (MessageRow or ContextRow):
// rows[k] is tensor tensor_of[k]; abs_bound per row.
template <class T, class Row>
void grid_row_predictors(std::vector<Row>& rows, const std::vector<size_t>& tensor_of, const MessageInputs<T>& in,
                         const std::vector<double>& abs_bound) {
  if (!in.chosen.empty()) {
    for (size_t k = 0; k < rows.size(); ++k) rows[k].predict = in.chosen[tensor_of[k]];
    return;
  }
  std::vector<BlendRow<T>> blends;
  for (size_t k = 0; k < rows.size(); ++k)
    if (in.previous[tensor_of[k]])
      blends.push_back(BlendRow<T>::make(rows[k].x, in.previous[tensor_of[k]], in.previous2[tensor_of[k]], rows[k].n, k));
  const std::vector<RowPredictor<T>> chosen = grid_message_blends(blends, abs_bound);
  for (size_t j = 0; j < blends.size(); ++j) rows[blends[j].row].predict = chosen[j];
}

// Codes the tensors of `in` as one message grid, the blobs put in the sink.
template <class T>
void grid_bitpack_encode_message(const MessageInputs<T>& in, const Params& p, const CodedBlobSink& sink) {
  std::vector<MessageRow<T>> rows;
  const std::vector<std::vector<uint64_t>>& shapes = in.shape;
  const std::vector<size_t> tensor_of = message_rows(in, p, sink.allocate, rows, [&](size_t k, uint64_t n) {
    return MessageRow<T>{in.x[k], in.reconstruction[k], n, 0, 0, 0, 0, 0, {}};
  });
  if (rows.empty()) return;
  const MessageGrid m = plan_message(rows);
  const uint64_t count = m.rows;

  // The range kernel: a thread block per message tile; then one thread per row for the bound.
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> lo(count, inf), hi(count, -inf), abs_bound(count);
  const bool rel = p.mode == BoundMode::Rel;
  if (rel)
    for (uint64_t tile = 0; tile < m.tiles; ++tile) {
      const uint64_t k = message_row_of_tile(rows.data(), count, tile);
      for (unsigned t = 0; t < kMessageRangeThreads; ++t)
        range_tile_part(rows[k].x, rows[k].n, tile - rows[k].first_tile, t, kMessageRangeThreads, lo[k], hi[k]);
    }
  for (uint64_t k = 0; k < count; ++k) abs_bound[k] = message_abs_bound(rel, p.error_bound, lo[k], hi[k]);
  grid_row_predictors(rows, tensor_of, in, abs_bound);

  // The encode kernel: tiles in counter order, a warp per segment, a thread per block. packed[k]
  // is the look-back's exclusive prefix of row k (its tiles come in order), chunk_packed[k] P(cB).
  std::vector<unsigned long long> result(m.result_words(), 0), tile_outliers(m.tiles + 1, 0);
  std::vector<uint8_t> streams(m.stream_area + 1);
  std::vector<uint32_t> outlier_bits(m.blocks);
  std::vector<uint64_t> packed(count, 0), chunk_packed(count, 0);
  unsigned long long* len_b = result.data() + kRowWords * count;
  for (uint64_t tile = 0; tile < m.tiles; ++tile) {
    const uint64_t k = message_row_of_tile(rows.data(), count, tile);
    const MessageRow<T>& r = rows[k];
    const BitpackGrid g = r.grid();
    const LinearQuantizer qz(abs_bound[k]);
    for (unsigned warp = 0; warp < kBitpackTileSegments; ++warp) {
      const uint64_t segment = (tile - r.first_tile) * kBitpackTileSegments + warp;
      if (segment >= g.segments) break;
      const uint64_t chunk = g.chunk_of(segment);
      if (segment == g.chunk_first_segment(chunk)) chunk_packed[k] = packed[k];
      uint64_t before = packed[k];
      for (unsigned lane = 0; lane < kBitpackSegmentBlocks; ++lane) {
        const uint64_t block = segment * kBitpackSegmentBlocks + lane, first = block * kPackBlock;
        T v[kPackBlock];
        load_block_values(r.x, first, r.n, v);
        uint32_t code[kPackBlock];
        BlockCodes bc;
        r.predict.visit([&](const auto& predict) { bc = quantize_block(v, first, r.n, qz, predict, r.reconstruction, code); });
        tile_outliers[tile] += popcount32(bc.outliers);
        if (block < g.blocks) outlier_bits[r.first_block + block] = bc.outliers;
        write_block(g, block, chunk, bc.width, code, chunk_packed[k], before, streams.data() + r.streams_at);
        before += packed_block_bytes(bc.width);
      }
      packed[k] = before;
      if (g.closes_chunk(segment)) len_b[r.first_chunk + chunk] = packed[k] - chunk_packed[k];
      if (segment + 1 == g.segments) result[kRowWords * k + kRowStreamBytes] = g.stream_bytes(packed[k]);
    }
  }

  // One exclusive scan over the message's tiles + 1 counts, the gather (a warp per tile, with the
  // capacity of every outlier: where the device's is short it codes tensor by tensor instead),
  // then each row's results.
  std::vector<unsigned long long> tile_offset(m.tiles + 1, 0);
  for (uint64_t t = 0; t < m.tiles; ++t) tile_offset[t + 1] = tile_offset[t] + tile_outliers[t];
  const uint64_t outliers = tile_offset[m.tiles];
  std::vector<unsigned long long> index(outliers);
  std::vector<T> value(outliers);
  for (uint64_t tile = 0; tile < m.tiles; ++tile) {
    if (!tile_outliers[tile]) continue;
    const uint64_t k = message_row_of_tile(rows.data(), count, tile);
    const MessageRow<T>& r = rows[k];
    for (unsigned lane = 0; lane < kPackBlock; ++lane)
      gather_tile_lane(tile - r.first_tile, lane, tile_offset[tile], r.grid().blocks, outlier_bits.data() + r.first_block,
                       r.x, outliers, index.data(), value.data());
  }
  for (uint64_t k = 0; k < count; ++k) finish_message_row(rows[k], k, tile_offset.data(), abs_bound[k], result.data());

  // For host blobs the compaction (each row's streams at its offset in one buffer, one transfer on
  // the device); blobs assembled where the streams are read the stream area itself.
  std::vector<uint64_t> offset(count);
  std::vector<uint8_t> compact(sink.streams_stay() ? 0 : message_stream_offsets(result.data(), count, offset.data()) + 1);
  if (!sink.streams_stay())
    for (uint64_t k = 0; k < count; ++k)
      std::memcpy(compact.data() + offset[k], streams.data() + rows[k].streams_at, result[kRowWords * k + kRowStreamBytes]);
  write_message_blobs(rows, tensor_of, shapes, p, result.data(), index.data(), reinterpret_cast<const uint8_t*>(value.data()),
                      sink.streams_stay() ? streams.data() : compact.data(), sink);
  sink.finish();  // before the streams' memory goes
}

}  // namespace ebgc
