// The encoder of one tensor, for a predictor already chosen (plan.hpp): bound -> quantizer and the
// chunk passes (encode/chunk_passes.hpp) -> the coder plan.hpp picks from their estimates ->
// its chunk streams -> the container (format/container.hpp). Chunks of 2^chunk_log2 values are
// coded independently (threads), while the tables are fitted once per tensor. Arguments are
// validated by the front door (ebgc.hpp) before they get here.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "../coders/bitpack_coder.hpp"
#include "../coders/context_coder.hpp"
#include "../coders/huffman_coder.hpp"
#include "../common/parallel.hpp"
#include "../format/container.hpp"
#include "../plan.hpp"
#include "../quantize/bound.hpp"
#include "../quantize/quantizer.hpp"
#include "chunk_passes.hpp"

namespace ebgc {

struct EncodeSettings {
  BoundMode mode = BoundMode::Rel;
  double error_bound = 1e-2;
  int coder = kCoderAuto;
  unsigned threads = 1;
  unsigned chunk_log2 = kDefaultChunkLog2;
  const FiniteRange* range = nullptr;  // the data's finite range, if the caller has it (rel mode)
};

// The pass-1 counts of every chunk, in chunk order.
template <class T>
SymbolStats gather_stats(const std::vector<ChunkOut<T>>& out, uint64_t n, uint64_t sign_period) {
  SymbolStats st;
  st.values = n;
  st.chunks = out.size();
  st.sign_period = sign_period;
  for (auto& co : out) {
    for (unsigned b = 0; b < kCtxBuckets; ++b)
      for (unsigned s = 0; s < kSymbols; ++s) st.counts[b][s] += co.counts[b][s], st.total[s] += co.counts[b][s];
    for (unsigned c = 0; c < kSignContexts; ++c) st.signs[c][0] += co.sign_counts[c][0], st.signs[c][1] += co.sign_counts[c][1];
    st.raw_bytes += double(co.b.size());
    st.bitpack_bytes += double(co.bitpack_bytes);
    st.outliers += double(co.outliers.index.size());
  }
  st.outlier_cost = st.outliers * (sizeof(T) + 2);
  return st;
}

// reconstruction (optional, n values): receives exactly what decompression will return, so a
// stateful encoder need not decode its own output.
template <class T, class Predictor>
void encode(const T* x, const std::vector<uint64_t>& shape, const EncodeSettings& s, const Predictor& predict,
            T* reconstruction, const BlobAllocator& allocate) {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  const unsigned threads = s.threads;

  Header h;
  h.dtype = dtype_of<T>();
  h.mode = s.mode;
  h.shape = shape;
  h.chunk_log2 = uint8_t(s.chunk_log2);
  h.error_bound = s.error_bound;
  predict.save(h);
  const uint64_t chunk = h.chunk_elems(), nchunks = h.chunks();
  const uint64_t sign_period = kernel_size(shape);
  auto chunk_end = [&](uint64_t c) { return std::min(n, (c + 1) * chunk); };

  FiniteRange range;
  if (s.mode == BoundMode::Rel && s.range) {
    range = *s.range;
  } else if (s.mode == BoundMode::Rel) {
    std::vector<FiniteRange> part(nchunks);
    parallel_for(nchunks, threads, [&](size_t c) { part[c] = finite_range(x + c * chunk, chunk_end(c) - c * chunk); });
    for (auto& p : part) range.merge(p);
  }
  h.abs_bound = absolute_bound(s.mode, s.error_bound, range);
  const LinearQuantizer qz(h.abs_bound);
  auto write_raw = [&]() {  // raw values need no prediction
    ZeroPredictor().save(h);
    if (reconstruction && n) std::memcpy(reconstruction, x, n * sizeof(T));
    ContainerWriter(h).write_raw(x, n * sizeof(T), allocate);
  };
  if (s.coder == int(Coder::Raw)) return write_raw();

  std::vector<ChunkOut<T>> out(nchunks);
  ByteWriter tables;
  auto bitpack_all = [&]() {
    parallel_for(nchunks, threads, [&](size_t c) { bitpack_chunk(x, c * chunk, chunk_end(c), qz, predict, out[c], reconstruction); });
  };
  if (s.coder == int(Coder::Bitpack)) {
    h.coder = Coder::Bitpack;
    bitpack_all();
  } else {
    // Per value: its symbol and sign, and the contexts of both (uninitialized: pass 1 fills them).
    std::unique_ptr<uint8_t[]> sym(new uint8_t[n]), ctx(new uint8_t[n]);
    parallel_for(nchunks, threads, [&](size_t c) {
      analyze_chunk(x, c * chunk, chunk_end(c), qz, predict, sign_period, sym.get(), ctx.get(), out[c], reconstruction);
    });
    const SymbolStats st = gather_stats(out, n, sign_period);
    const ContextCoder::Model context(st);
    const HuffmanCoder::Model huffman(st);
    const CoderCosts costs{context.cost(st), huffman.cost(st), BitpackCoder::Model(st).cost(st), double(n * sizeof(T))};
    h.coder = pick_coder(s.coder, costs);
    if (h.coder == Coder::Raw) return write_raw();
    auto encode_chunks = [&](const auto& model, auto chunk_encoder_type) {
      using ChunkEncoder = typename decltype(chunk_encoder_type)::type;
      model.save(tables);
      const ChunkEncoder encoder(model);
      parallel_for(nchunks, threads, [&](size_t c) {
        encoder.encode_chunk(sym.get() + c * chunk, ctx.get() + c * chunk, chunk_end(c) - c * chunk, out[c].a);
      });
    };
    if (h.coder == Coder::Bitpack) {
      sym.reset();
      ctx.reset();
      for (auto& co : out) co = ChunkOut<T>();
      bitpack_all();
    } else if (h.coder == Coder::Huffman) {
      encode_chunks(huffman, TypeTag<HuffmanCoder::ChunkEncoder>());
    } else {
      encode_chunks(context, TypeTag<ContextCoder::ChunkEncoder>());
    }
  }

  // Payload: outliers, coder tables, chunk directory, chunk streams.
  Outliers<T> outliers;
  for (auto& co : out) outliers.append(co.outliers);
  ContainerWriter w(h);
  w.outliers(outliers.index.size(), outliers.index.data(), outliers.value.data(), sizeof(T));
  w.tables(tables);
  for (auto& co : out) w.chunk(co.a.size(), co.b.size());
  w.write(allocate, [&](uint8_t* p) {
    for (auto& co : out) {
      if (!co.a.empty()) std::memcpy(p, co.a.data(), co.a.size());
      p += co.a.size();
      if (!co.b.empty()) std::memcpy(p, co.b.data(), co.b.size());
      p += co.b.size();
      co = ChunkOut<T>();  // release as we go: keeps peak memory near one copy of the output
    }
  });
}

}  // namespace ebgc
