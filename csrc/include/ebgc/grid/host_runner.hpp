// The host runner: the device codec's steps executed on the CPU over the same grid, lane by lane,
// with the same per-lane bodies (grid/context_lane_steps.hpp, grid/huffman_lane_steps.hpp) the
// CUDA kernels run one lane a thread. Launches become loops, atomics plain ORs, scans running sums;
// everything a thread computes is the kernels' own code. Its blobs must equal the CPU codec's
// (coders 2 and 4, chunk_log2 = kGridChunkLog2) byte for byte, and it must decode any such blob as
// the CPU does: the test suite checks both on every run (tests/test_grid.py). Single-threaded: a
// proof, not a codec.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../encode/compress.hpp"
#include "../predictors/dispatch.hpp"
#include "bitpack_host_runner.hpp"
#include "blend_steps.hpp"
#include "grid_blob.hpp"

namespace ebgc {

// The analysis step's sink on the host: counts and ORs in place.
struct HostGridSink {
  GridTotals& totals;
  void count(unsigned bucket, unsigned symbol) { ++totals.counts[bucket][symbol]; }
  void sign(unsigned sign_ctx, unsigned negative) { ++totals.signs[sign_ctx][negative]; }
  void or_word(uint32_t* array, uint64_t index, uint32_t bits) { array[index] |= bits; }
};

template <class T, class Predictor>
void grid_encode(const T* x, const std::vector<uint64_t>& shape, const Params& p, const Predictor& predict,
                 const FiniteRange* known_range, T* reconstruction, const BlobAllocator& allocate) {
  const uint64_t n = checked_elements(shape);
  HostGridStart start = host_grid_start(x, shape, p, predict, kGridChunkLog2, Coder::Context, known_range);
  Header& h = start.header;
  const FiniteRange& range = start.range;
  const LinearQuantizer& qz = start.qz;
  auto write_raw = [&]() {
    ZeroPredictor().save(h);
    if (reconstruction && n) std::memcpy(reconstruction, x, n * sizeof(T));
    ContainerWriter(h).write_raw(x, n * sizeof(T), allocate);
  };
  if (p.coder == int(Coder::Raw)) return write_raw();

  // Step 1: every lane analysed; then per chunk its tally (the device's reduction kernel).
  const LaneGrid g(n, kGridChunkLog2);
  const uint64_t sign_period = kernel_size(shape);
  std::vector<uint8_t> sym(n), ctx(n);
  std::vector<uint32_t> lane_raw(g.lanes() * g.raw_words_per_lane()), lane_raw_bits(g.lanes());
  std::vector<uint32_t> block_or(g.blocks()), outlier_bits(g.blocks());
  const AnalyzeOut<T> a{sym.data(), ctx.data(), reconstruction, lane_raw.data(), lane_raw_bits.data(), block_or.data(),
                        outlier_bits.data()};
  GridTotals totals;
  HostGridSink sink{totals};
  for (uint64_t t = 0; t < g.lanes(); ++t)
    analyze_lane(g, t, x, qz, predict, sign_period, kCtxBucketLut.bucket.data(), a, sink);
  std::vector<uint64_t> len_a(g.chunks), len_b(g.chunks), first_outlier(g.chunks);
  for (uint64_t c = 0; c < g.chunks; ++c) {
    const ChunkTally tally = tally_chunk(g, c, lane_raw_bits.data(), block_or.data(), outlier_bits.data());
    len_b[c] = tally.len_b;
    first_outlier[c] = totals.outliers;
    totals.raw_bytes += tally.len_b, totals.bitpack_bytes += tally.bitpack_bytes, totals.outliers += tally.outliers;
  }

  // The host's part: statistics, the coder, the tables.
  const LaneCoderChoice choice = choose_lane_coder(totals, n, g.chunks, sign_period, sizeof(T), p.coder);
  h.coder = choice.coder;
  if (h.coder == Coder::Raw) return write_raw();
  if (h.coder == Coder::Bitpack) return grid_bitpack_encode(x, shape, p, predict, &range, reconstruction, allocate);
  const uint32_t coded = choice.coded();

  // Step 2: each lane's A (rANS words; or Huffman's bit count, then its bits) and raw bits.
  std::vector<uint32_t> state(g.lanes()), words(g.lanes()), chunk_b(g.chunks * g.b_words_per_chunk());
  std::vector<uint32_t> chunk_a(coded == kLaneHuffman ? g.chunks * huffman_words_per_chunk(g) : 0);
  std::vector<uint16_t> region(coded == kLaneContext ? g.lanes() * g.word_region() : 0);
  const LaneCode code{state.data(), words.data(), region.data()};
  std::vector<uint8_t> placed;  // the tables as the kernels read them
  const PlacedTables placed_at = place_lane_tables(choice, placed);
  if (coded == kLaneHuffman) {
    const HuffmanEncodeView view = huffman_view_at(placed.data());
    for (uint64_t t = 0; t < g.lanes(); ++t) words[t] = huffman_lane_bits(g, t, view, sym.data());
    for (uint64_t t = 0; t < g.lanes(); ++t)
      encode_huffman_lane(g, t, view, sym.data(), huffman_lane_offset(t, words.data()), chunk_a.data(), sink);
  } else {
    const RansEncodeView view = rans_tables_at(placed.data(), placed_at);
    for (uint64_t t = 0; t < g.lanes(); ++t) encode_lane(g, t, view, sym.data(), ctx.data(), code);
  }
  for (uint64_t t = 0; t < g.lanes(); ++t)
    place_lane_raw_bits(g, t, lane_raw.data(), lane_raw_bits.data(), chunk_b.data(), sink);

  // Step 3: chunk sizes, their running sum, every lane's share of the streams; outliers gathered.
  std::vector<uint64_t> offset(g.chunks + 1, 0);
  for (uint64_t c = 0; c < g.chunks; ++c) {
    len_a[c] = lane_chunk_a_bytes(coded, words.data() + c * kLanes);
    offset[c + 1] = offset[c] + len_a[c] + len_b[c];
  }
  std::vector<uint8_t> streams(offset[g.chunks]);
  for (uint64_t t = 0; t < g.lanes(); ++t) {
    const uint64_t c = t / kLanes;
    write_coded_lane_streams(coded, g, t, code, chunk_a.data(), chunk_b.data(), len_a[c], len_b[c],
                             streams.data() + offset[c]);
  }
  std::vector<uint64_t> index(totals.outliers);
  std::vector<T> value(totals.outliers);
  for (uint64_t c = 0; c < g.chunks; ++c) gather_chunk_outliers(g, c, x, outlier_bits.data(), first_outlier[c], index.data(), value.data());
  write_coded_blob(h, totals.outliers, index.data(), value.data(), sizeof(T), choice.tables, len_a, len_b, streams.data(),
                   allocate);
}

// A host tensor through the device codec's steps: the predictor the device chooses (zero, or the
// stream's blend by the GPU's own sums: grid/blend_steps.hpp; no low rank), then bit-packing
// (coder 1) or the lane coders' grid (the others: auto, context, Huffman, raw).
template <class T>
void grid_compress(const T* x, const std::vector<uint64_t>& shape, const Params& p, const T* const* previous,
                   T* reconstruction, const BlobAllocator& allocate) {
  const uint64_t n = checked_elements(shape);
  PredictorChoice<T> choice;
  if (previous && previous[0] && n && p.coder != int(Coder::Raw)) {
    const FiniteRange range = p.mode == BoundMode::Rel ? finite_range(x, size_t(n)) : FiniteRange();
    const double step = LinearQuantizer(absolute_bound(p.mode, p.error_bound, range)).step;
    choice = grid_choose_blend(x, n, previous[0], previous[1], step);
    choice.range = range;
    choice.range_known = true;
  }
  const FiniteRange* range = choice.range_known ? &choice.range : nullptr;
  auto run = [&](const auto& predict) {
    if (p.coder == int(Coder::Bitpack)) return grid_bitpack_encode(x, shape, p, predict, range, reconstruction, allocate);
    grid_encode(x, shape, p, predict, range, reconstruction, allocate);
  };
  if (choice.kind == PredictorKind::Blend) return run(choice.blend);
  run(ZeroPredictor());
}

// The device decoder's steps for a lane-coded blob of any chunk size: context (coder 4, a thread a
// lane) or Huffman (coder 2, a thread a chunk) for the symbols, then the values lane by lane (raw
// and bit-packed blobs have their own device paths). previous: the stream's reconstructions, for
// blend-predicted blobs.
template <class T>
void grid_decode(const ParsedBlob& pb, T* out, const T* const* previous) {
  const Header& h = pb.header;
  if (h.coder != Coder::Context && h.coder != Coder::Huffman)
    throw InvalidArgument("the grid decoder reads lane-coded (context or Huffman) blobs");
  const LaneGrid g(h.elements(), h.chunk_log2);
  std::vector<ChunkStreamRef> chunks(g.chunks);
  for (uint64_t c = 0; c < g.chunks; ++c) chunks[c] = {pb.offset[c], pb.len_a[c], pb.offset[c] + pb.len_a[c], pb.len_b[c]};
  std::vector<uint8_t> sym(g.n);
  std::vector<uint32_t> lane_raw_bits(g.lanes());
  bool ok = true;
  if (h.coder == Coder::Huffman) {
    for (uint64_t c = 0; c < g.chunks; ++c)
      ok &= decode_huffman_chunk(g, c, pb.tables.huffman->table.data(), pb.streams, chunks.data(), sym.data(),
                                 lane_raw_bits.data());
    require_format(ok, "Huffman chunk is corrupt");
  } else {
    const ContextModel& m = pb.tables.context;
    uint32_t sign_freq[kSignContexts + 1];
    for (unsigned c = 0; c < kSignContexts; ++c) sign_freq[c] = m.sign_positive[c];
    sign_freq[kSignContexts] = kRansScale;
    const LaneDecodeTables tables{{m.view(), sign_freq}, m.sign_period};
    for (uint64_t t = 0; t < g.lanes(); ++t)
      ok &= decode_lane_symbols(g, t, tables, pb.streams, chunks.data(), sym.data(), lane_raw_bits.data());
    require_format(ok, "rANS chunk is corrupt");
  }
  const LinearQuantizer qz(h.abs_bound);
  with_predictor(h, previous, [&](const auto& full) {
    const auto& predict = per_value(full);
    for (uint64_t t = 0; t < g.lanes(); ++t)
      ok &= reconstruct_lane(g, t, pb.streams, chunks.data(), sym.data(), lane_raw_bits.data(), qz, predict, out);
  });
  require_format(ok, "raw bits truncated");
  for (size_t k = 0; k < pb.outlier_index.size(); ++k)
    std::memcpy(out + pb.outlier_index[k], pb.outlier_values + k * sizeof(T), sizeof(T));
}

// Any blob the device decodes itself: context (coder 4), Huffman (coder 2) and bit-packed (coder 1)
// by their grid steps, raw by a copy.
template <class T>
void grid_decode_any(const ParsedBlob& pb, T* out, const T* const* previous) {
  const Header& h = pb.header;
  if (h.coder == Coder::Raw) {
    if (h.elements()) std::memcpy(out, pb.raw_values, h.elements() * sizeof(T));
    return;
  }
  if (h.coder == Coder::Bitpack) return grid_bitpack_decode(pb, out, previous);
  grid_decode(pb, out, previous);
}

}  // namespace ebgc
