// The host's part of a grid encode, shared by the CUDA backend and the host runner: the totals of
// the analysis step become the CPU's SymbolStats, the plan picks the coder from them, the CPU's
// ContextModel::fit makes the tables, and the container writer wraps the chunk streams (which
// arrive as one contiguous buffer in chunk order) into the blob.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "../coders/bitpack_coder.hpp"
#include "../coders/context_coder.hpp"
#include "../coders/huffman_coder.hpp"
#include "../encode/chunk_passes.hpp"
#include "../format/container.hpp"
#include "../plan.hpp"
#include "blob_assembly.hpp"
#include "context_lane_steps.hpp"
#include "huffman_lane_steps.hpp"

namespace ebgc {

// The header of a blob the device codes (or its host runner): the CPU codec's fields for the
// same request, with the device's chunk size; abs_bound is set by the caller once known.
template <class T, class Predictor>
Header grid_header(const std::vector<uint64_t>& shape, const Params& p, const Predictor& predict, unsigned chunk_log2,
                   Coder coder) {
  Header h;
  h.dtype = dtype_of<T>();
  h.mode = p.mode;
  h.shape = shape;
  h.chunk_log2 = uint8_t(chunk_log2);
  h.error_bound = p.error_bound;
  h.coder = coder;
  predict.save(h);
  return h;
}

// Where a host runner starts: the header with its bound, from the range the CPU codec finds (or the
// caller found), and the quantizer (the device computes the same on the device: range_kernel.cuh).
struct HostGridStart {
  Header header;
  FiniteRange range;
  LinearQuantizer qz;
};
template <class T, class Predictor>
HostGridStart host_grid_start(const T* x, const std::vector<uint64_t>& shape, const Params& p, const Predictor& predict,
                              unsigned chunk_log2, Coder coder, const FiniteRange* known_range) {
  HostGridStart s;
  s.header = grid_header<T>(shape, p, predict, chunk_log2, coder);
  const uint64_t n = s.header.elements();
  s.range = known_range ? *known_range : p.mode == BoundMode::Rel ? finite_range(x, size_t(n)) : FiniteRange();
  s.header.abs_bound = absolute_bound(p.mode, p.error_bound, s.range);
  s.qz = LinearQuantizer(s.header.abs_bound);
  return s;
}

// What the analysis step counted over the whole tensor.
struct GridTotals {
  ContextCounts counts{};
  SignCounts signs{};
  uint64_t raw_bytes = 0, bitpack_bytes = 0, outliers = 0;
};

inline SymbolStats grid_stats(const GridTotals& g, uint64_t n, uint64_t chunks, uint64_t sign_period, size_t elem) {
  SymbolStats st;
  st.values = n;
  st.chunks = chunks;
  st.sign_period = sign_period;
  st.counts = g.counts;
  st.signs = g.signs;
  for (unsigned b = 0; b < kCtxBuckets; ++b)
    for (unsigned s = 0; s < kSymbols; ++s) st.total[s] += g.counts[b][s];
  st.raw_bytes = double(g.raw_bytes);
  st.bitpack_bytes = double(g.bitpack_bytes);
  st.outliers = double(g.outliers);
  st.outlier_cost = st.outliers * double(elem + 2);
  return st;
}

// The host's choice for one row (or one tensor) from what the analysis counted: the coder (as
// requested; "auto": the smallest of all four by the CPU's estimates, plan.hpp's pick_coder, so
// the CPU codec's pick for the same chunks), and for the lane coders their tables (as the blob
// carries them) and lane encoder. Only the models the choice needs are fitted.
struct LaneCoderChoice {
  Coder coder = Coder::Context;
  ByteWriter tables;
  std::shared_ptr<const RansLaneEncoder> encoder;  // context
  std::shared_ptr<const HuffmanCode> huffman;      // Huffman
  uint32_t coded() const { return huffman ? kLaneHuffman : encoder ? kLaneContext : kLaneNone; }
};

inline LaneCoderChoice choose_lane_coder(const GridTotals& totals, uint64_t n, uint64_t chunks, uint64_t sign_period,
                                         size_t elem, int requested) {
  LaneCoderChoice c;
  const SymbolStats st = grid_stats(totals, n, chunks, sign_period, elem);
  const bool any = requested == kCoderAuto;
  std::optional<ContextCoder::Model> context;
  std::optional<HuffmanCoder::Model> huffman;
  if (any || requested == int(Coder::Context)) context.emplace(st);
  if (any || requested == int(Coder::Huffman)) huffman.emplace(st);
  c.coder = any ? pick_coder(requested, {context->cost(st), huffman->cost(st), BitpackCoder::Model(st).cost(st),
                                         double(st.values * elem)})
                : Coder(requested);
  if (c.coder == Coder::Huffman) {
    huffman->save(c.tables);
    c.huffman = std::make_shared<const HuffmanCode>(huffman->len);
  } else if (c.coder == Coder::Context) {
    context->save(c.tables);
    c.encoder = std::make_shared<const RansLaneEncoder>(context->model);
  }
  return c;
}

// A lane coder's encode tables as the kernels read them, appended to `out` at a 16-byte boundary:
// Huffman's codes and lengths, or the rANS entries then the two base tables. Returns where they
// start (and where the rANS bases do).
struct PlacedTables {
  uint64_t tables, bases;
};
inline size_t context_table_bytes(size_t entries) {
  return (sizeof(RansEncodeEntry) * entries + 2 * 128 * 4 + 15) & ~size_t(15);
}
// The most one tensor's tables take (entries of kCtxBuckets groups; Huffman's are smaller).
inline size_t max_context_table_bytes() { return context_table_bytes(kCtxBuckets * kSymbols + 2 * kSignContexts); }
static_assert(kHuffmanEncodeTableBytes <= sizeof(RansEncodeEntry) * kCtxBuckets * kSymbols, "Huffman's tables fit");
inline PlacedTables place_lane_tables(const LaneCoderChoice& c, std::vector<uint8_t>& out) {
  const size_t at = out.size();
  if (c.huffman) {
    out.resize(at + ((kHuffmanEncodeTableBytes + 15) & ~size_t(15)));
    place_huffman_tables(*c.huffman, out.data() + at);
    return {at, at};
  }
  const RansLaneEncoder& e = *c.encoder;
  const size_t entry_bytes = sizeof(RansEncodeEntry) * e.entry.size();
  out.resize(at + context_table_bytes(e.entry.size()));
  std::memcpy(out.data() + at, e.entry.data(), entry_bytes);
  std::memcpy(out.data() + at + entry_bytes, e.magnitude_base.data(), 128 * 4);
  std::memcpy(out.data() + at + entry_bytes + 128 * 4, e.sign_base.data(), 128 * 4);
  return {at, at + entry_bytes};
}
EBGC_HD inline RansEncodeView rans_tables_at(const uint8_t* tables, PlacedTables at) {
  const uint32_t* bases = reinterpret_cast<const uint32_t*>(tables + at.bases);
  return {reinterpret_cast<const RansEncodeEntry*>(tables + at.tables), bases, bases + 128};
}

// The blob of coded chunk streams: outliers (count, strictly increasing indices, values), the
// coder's tables, the directory (len_a, len_b per chunk) and `streams`, their concatenation, put
// where the sink says (host memory, or assembled where the streams are).
template <class Index>
void put_coded_blob(const Header& h, uint64_t outliers, const Index* index, const void* values, size_t elem,
                    const ByteWriter& tables, const std::vector<uint64_t>& len_a, const std::vector<uint64_t>& len_b,
                    const uint8_t* streams, const CodedBlobSink& sink, size_t tensor) {
  ContainerWriter w(h);
  w.outliers(outliers, index, values, elem);
  w.tables(tables);
  for (size_t c = 0; c < len_a.size(); ++c) w.chunk(len_a[c], len_b[c]);
  sink.put(tensor, w, streams);
}
// A raw blob of the n values at x (read where the sink reads streams), with the bound the grid
// found; its reconstruction is the values themselves.
template <class T>
void put_raw_blob(const std::vector<uint64_t>& shape, const Params& p, double abs_bound, const T* x, uint64_t n,
                  const CodedBlobSink& sink, size_t tensor) {
  Header h = grid_header<T>(shape, p, ZeroPredictor(), kGridChunkLog2, Coder::Raw);
  h.abs_bound = abs_bound;
  ContainerWriter w(h);
  w.raw(n * sizeof(T));
  sink.put(tensor, w, reinterpret_cast<const uint8_t*>(x));
}
template <class Index>
void write_coded_blob(const Header& h, uint64_t outliers, const Index* index, const void* values, size_t elem,
                      const ByteWriter& tables, const std::vector<uint64_t>& len_a, const std::vector<uint64_t>& len_b,
                      const uint8_t* streams, const BlobAllocator& allocate) {
  put_coded_blob(h, outliers, index, values, elem, tables, len_a, len_b, streams,
                 CodedBlobSink::host([&](size_t, size_t size) { return allocate(size); }), 0);
}

}  // namespace ebgc
