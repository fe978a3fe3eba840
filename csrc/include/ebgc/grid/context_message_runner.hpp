// The host runner of whole-message ratio mode: the context message kernels' steps
// (cuda/context_message_kernels.cuh) executed on the CPU over the same message grid, in the
// device's thread order, with the same per-lane and per-chunk bodies (grid/*_lane_steps.hpp)
// at the offsets grid/context_message.hpp gives, and the host's choices made by the same code.
// Tensors the host gives to bit-packing go through the fast mode's message grid (its host runner),
// raw ones are written as raw. Every tensor's blob must equal the CPU codec's (coder auto, context
// or Huffman, chunk_log2 = kGridChunkLog2, no low rank) byte for byte: tests/test_grid_message.py.
// Single-threaded: a proof, not a codec.
#pragma once
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "context_message.hpp"
#include "host_runner.hpp"
#include "message_host_runner.hpp"

namespace ebgc {

template <class T>
void grid_context_encode_message(const MessageInputs<T>& in, const Params& p, const CodedBlobSink& sink) {
  std::vector<ContextRow<T>> rows;
  const std::vector<std::vector<uint64_t>>& shapes = in.shape;
  const std::vector<size_t> tensor_of = message_rows(in, p, sink.allocate, rows, [&](size_t k, uint64_t n) {
    ContextRow<T> r{};
    r.x = in.x[k], r.reconstruction = in.reconstruction[k], r.n = n, r.sign_period = kernel_size(shapes[k]);
    return r;
  });
  if (rows.empty()) return;
  const ContextMessageGrid m = plan_context_message(rows);
  const uint64_t count = m.rows;
  const LaneGrid any(1, kGridChunkLog2);  // the per-lane and per-chunk strides are the same for every row
  const uint64_t raw_words = any.raw_words_per_lane(), b_words = any.b_words_per_chunk(), region_words = any.word_region();

  // Bounds: the range kernel (a thread block per tile), then a thread per row.
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> lo(count, inf), hi(count, -inf), abs_bound(count);
  const bool rel = p.mode == BoundMode::Rel;
  if (rel)
    for (uint64_t tile = 0; tile < m.tiles; ++tile) {
      const uint64_t k = row_at(rows.data(), count, tile, &ContextRow<T>::first_tile);
      for (unsigned t = 0; t < kMessageRangeThreads; ++t)
        range_tile_part(rows[k].x, rows[k].n, tile - rows[k].first_tile, t, kMessageRangeThreads, lo[k], hi[k]);
    }
  for (uint64_t k = 0; k < count; ++k) abs_bound[k] = message_abs_bound(rel, p.error_bound, lo[k], hi[k]);
  grid_row_predictors(rows, tensor_of, in, abs_bound);

  // Step 1: the analysis kernel over the message's lane threads, then the tally (a thread a chunk).
  std::vector<uint8_t> sym(m.values), ctx(m.values);
  std::vector<uint32_t> lane_raw(m.lanes * raw_words), lane_raw_bits(m.lanes), block_or(m.blocks), outlier_bits(m.blocks);
  std::vector<GridTotals> totals(count);
  for (uint64_t thread = 0; thread < m.threads; ++thread) {
    const uint64_t k = row_at(rows.data(), count, thread, &ContextRow<T>::first_thread);
    const ContextRow<T>& r = rows[k];
    const LaneGrid g = r.grid();
    const uint64_t t = thread - r.first_thread;
    if (t >= g.lanes()) continue;
    const AnalyzeOut<T> a{sym.data() + r.first_value, ctx.data() + r.first_value, r.reconstruction,
                          lane_raw.data() + r.first_lane * raw_words, lane_raw_bits.data() + r.first_lane,
                          block_or.data() + r.first_block, outlier_bits.data() + r.first_block};
    HostGridSink sink{totals[k]};
    r.predict.visit([&](const auto& predict) {
      analyze_lane(g, t, r.x, LinearQuantizer(abs_bound[k]), predict, r.sign_period, kCtxBucketLut.bucket.data(), a, sink);
    });
  }
  std::vector<unsigned long long> len_a(m.chunks, 0), len_b(m.chunks), chunk_outliers(m.chunks + 1, 0);
  for (uint64_t c = 0; c < m.chunks; ++c) {
    const uint64_t k = row_at(rows.data(), count, c, &ContextRow<T>::first_chunk);
    const ContextRow<T>& r = rows[k];
    const ChunkTally tally = tally_chunk(r.grid(), c - r.first_chunk, lane_raw_bits.data() + r.first_lane,
                                         block_or.data() + r.first_block, outlier_bits.data() + r.first_block);
    len_b[c] = tally.len_b;
    chunk_outliers[c] = tally.outliers;
    totals[k].raw_bytes += tally.len_b, totals[k].bitpack_bytes += tally.bitpack_bytes;
    totals[k].outliers += tally.outliers;
  }

  // The host's part: each row's coder and tables. Raw rows are written now, bit-packed ones by the
  // fast mode's message grid.
  std::vector<LaneCoderChoice> choices(count);
  MessageInputs<T> pack;  // with the predictors chosen here
  std::vector<size_t> pack_tensor;
  for (uint64_t k = 0; k < count; ++k) {
    const ContextRow<T>& r = rows[k];
    const size_t tensor = tensor_of[k];
    choices[k] = choose_lane_coder(totals[k], r.n, r.grid().chunks, r.sign_period, sizeof(T), p.coder);
    if (choices[k].coder == Coder::Raw) {
      if (r.reconstruction) std::memcpy(r.reconstruction, r.x, r.n * sizeof(T));
      put_raw_blob(shapes[tensor], p, abs_bound[k], r.x, r.n, sink, tensor);
    } else if (choices[k].coder == Coder::Bitpack) {
      pack.add(r.x, shapes[tensor], r.reconstruction, nullptr, nullptr);
      pack.chosen.push_back(r.predict);
      pack_tensor.push_back(tensor);
    }
  }
  if (!pack.x.empty()) {
    CodedBlobSink packed = sink;
    packed.allocate = [&](size_t k, size_t size) { return sink.allocate(pack_tensor[k], size); };
    grid_bitpack_encode_message(pack, p, packed);
  }
  std::vector<uint8_t> tables;
  place_context_tables(rows, choices, tables);

  // Step 2: the coded rows' lanes (A: rANS words, or Huffman's bit counts then bits; raw bits into
  // their chunk's B). The device's kernel counts a Huffman lane's bits, syncs its thread block (a
  // chunk's lanes are in one), then writes them: here all counts come first.
  std::vector<uint32_t> state(m.lanes), words(m.lanes), chunk_b(m.chunks * b_words, 0);
  std::vector<uint32_t> chunk_a(m.chunks * huffman_words_per_chunk(any), 0);
  std::vector<uint16_t> region(m.lanes * region_words);
  GridTotals unused;
  HostGridSink tallies{unused};
  auto coded_lanes = [&](uint32_t which, auto&& body) {
    for (uint64_t thread = 0; thread < m.threads; ++thread) {
      const ContextRow<T>& r = rows[row_at(rows.data(), count, thread, &ContextRow<T>::first_thread)];
      const uint64_t t = thread - r.first_thread;
      if ((which == kLaneNone ? r.coded != kLaneNone : r.coded == which) && t < r.grid().lanes()) body(r, t);
    }
  };
  auto code_of = [&](const ContextRow<T>& r) {
    return LaneCode{state.data() + r.first_lane, words.data() + r.first_lane, region.data() + r.first_lane * region_words};
  };
  coded_lanes(kLaneHuffman, [&](const ContextRow<T>& r, uint64_t t) {
    words[r.first_lane + t] = huffman_lane_bits(r.grid(), t, row_huffman(r, tables.data()), sym.data() + r.first_value);
  });
  coded_lanes(kLaneNone, [&](const ContextRow<T>& r, uint64_t t) {
    const LaneGrid g = r.grid();
    if (r.coded == kLaneHuffman)
      encode_huffman_lane(g, t, row_huffman(r, tables.data()), sym.data() + r.first_value,
                          huffman_lane_offset(t, words.data() + r.first_lane),
                          chunk_a.data() + r.first_chunk * huffman_words_per_chunk(g), tallies);
    else
      encode_lane(g, t, row_tables(r, tables.data()), sym.data() + r.first_value, ctx.data() + r.first_value, code_of(r));
    place_lane_raw_bits(g, t, lane_raw.data() + r.first_lane * raw_words, lane_raw_bits.data() + r.first_lane,
                        chunk_b.data() + r.first_chunk * b_words, tallies);
  });

  // Step 3: chunk sizes (0 for rows not coded here), one scan of bytes and one of outliers over the
  // whole message, the streams lane by lane, the outliers chunk by chunk.
  std::vector<unsigned long long> bytes(m.chunks + 1, 0), offset(m.chunks + 1, 0), first_outlier(m.chunks + 1, 0);
  for (uint64_t c = 0; c < m.chunks; ++c) {
    const ContextRow<T>& r = rows[row_at(rows.data(), count, c, &ContextRow<T>::first_chunk)];
    if (!r.coded) {
      chunk_outliers[c] = 0;
      continue;
    }
    len_a[c] = lane_chunk_a_bytes(r.coded, words.data() + r.first_lane + (c - r.first_chunk) * kLanes);
    bytes[c] = len_a[c] + len_b[c];
  }
  for (uint64_t c = 0; c < m.chunks; ++c) {
    offset[c + 1] = offset[c] + bytes[c];
    first_outlier[c + 1] = first_outlier[c] + chunk_outliers[c];
  }
  std::vector<uint8_t> streams(offset[m.chunks] + 1);
  coded_lanes(kLaneNone, [&](const ContextRow<T>& r, uint64_t t) {
    const uint64_t c = r.first_chunk + t / kLanes;
    write_coded_lane_streams(r.coded, r.grid(), t, code_of(r), chunk_a.data() + r.first_chunk * huffman_words_per_chunk(any),
                             chunk_b.data() + r.first_chunk * b_words, len_a[c], len_b[c], streams.data() + offset[c]);
  });
  std::vector<uint64_t> index(first_outlier[m.chunks]);
  std::vector<T> value(index.size());
  for (uint64_t c = 0; c < m.chunks; ++c) {
    const ContextRow<T>& r = rows[row_at(rows.data(), count, c, &ContextRow<T>::first_chunk)];
    if (r.coded && chunk_outliers[c])
      gather_chunk_outliers(r.grid(), c - r.first_chunk, r.x, outlier_bits.data() + r.first_block, first_outlier[c],
                            index.data(), value.data());
  }
  for (uint64_t k = 0; k < count; ++k)
    if (rows[k].coded)
      put_context_row_blob(rows[k], shapes[tensor_of[k]], p, abs_bound[k], choices[k].tables, len_a.data(), len_b.data(),
                           offset.data(), first_outlier.data(), index.data(),
                           reinterpret_cast<const uint8_t*>(value.data()), streams.data(), sink, tensor_of[k]);
  sink.finish();  // before the streams' memory goes
}

}  // namespace ebgc
