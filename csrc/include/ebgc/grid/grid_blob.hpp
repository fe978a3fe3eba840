// The host's part of a grid encode, shared by the CUDA backend and the host runner: the totals of
// the analysis step become the CPU's SymbolStats, the plan picks the coder from them, the CPU's
// ContextModel::fit makes the tables, and the container writer wraps the chunk streams (which
// arrive as one contiguous buffer in chunk order) into the blob.
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

#include "../coders/bitpack_coder.hpp"
#include "../coders/context_coder.hpp"
#include "../encode/chunk_passes.hpp"
#include "../format/container.hpp"
#include "../plan.hpp"
#include "blob_assembly.hpp"
#include "context_lane_steps.hpp"

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

// The coder of a grid-coded tensor: "auto" is the smallest of the coders the grid has (context,
// bit-packing, raw), by the CPU's estimates (plan.hpp's pick_coder, Huffman left out).
inline Coder pick_grid_coder(int requested, const SymbolStats& st, const ContextCoder::Model& context, size_t elem) {
  const CoderCosts costs{context.cost(st), std::numeric_limits<double>::infinity(), BitpackCoder::Model(st).cost(st),
                         double(st.values * elem)};
  return pick_coder(requested, costs);
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
