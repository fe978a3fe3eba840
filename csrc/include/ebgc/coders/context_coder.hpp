// Stage 4c in the container: coder 4, the context model (coders/context_model.hpp) coded by rANS in
// 8 lanes a chunk (coders/context_lanes.hpp); the raw low bits in stream B.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../common/bitio.hpp"
#include "../common/bytes.hpp"
#include "../common/errors.hpp"
#include "../format/vocabulary.hpp"
#include "coder.hpp"
#include "context_lanes.hpp"
#include "context_model.hpp"
#include "symbolize.hpp"

namespace ebgc {

struct ContextCoder {
  static constexpr Coder id = Coder::Context;

  static void load(ByteReader& r, CoderTables& t) { t.context = ContextModel::read(r); }
  // Every chunk: two directory lengths and a 4-byte rANS state for each lane.
  static bool holds(uint64_t, uint64_t chunks, uint64_t payload) { return chunks <= payload / (2 + 4 * kLanes); }
  static constexpr const char* kBadChunk = "rANS chunk too short";
  static bool chunk_fits(uint64_t, uint64_t len_a, uint64_t) { return len_a >= 4 * kLanes; }

  // The chunk's symbols, position-major (context_lanes.hpp), in a per-thread buffer.
  static const uint8_t* decode_symbols(const CoderTables& t, const ChunkStreams& s) {
    const uint64_t n = s.end - s.begin;
    struct DecodedSymbols {};
    uint8_t* sym = thread_scratch<DecodedSymbols>(size_t(kLanes * LaneSplit(n).len)).data();
    rans_lanes_decode_chunk(t.context, s.a, s.len_a, s.begin, n, sym);
    return sym;
  }

  template <class Sink>
  static void decode_chunk(const CoderTables& t, const ChunkStreams& s, Sink&& sink) {
    // Symbols of the whole chunk first (the lanes interleave), then raw bits in value order.
    const uint64_t n = s.end - s.begin;
    const LaneSplit lanes(n);
    const uint8_t* sym = decode_symbols(t, s);
    BitReader raw(s.b, s.len_b);
    auto values = [&](auto eager) {
      for (unsigned k = 0; k < kLanes; ++k) {
        const uint8_t* lane_sym = sym + k;
        for (uint64_t j = 0, i = s.begin + lanes.begin(k); j < lanes.count[k]; ++j, ++i) {
          const uint32_t v = lane_sym[kLanes * j], q = v & 127u;
          raw.refill<decltype(eager)::value>();
          sink(i, desymbolize(q, v >> 7 | raw.get(kSymbolTable.info[q].nextra) << 1));
        }
      }
    };
    // Where values average a raw bit or more, refills are frequent and irregular: load eagerly.
    if (8 * uint64_t(s.len_b) >= n)
      values(std::true_type());
    else
      values(std::false_type());
    require_format(!raw.overran(), "raw bits truncated");
  }

  // The rANS lanes decoded and the raw bits they call for counted against stream B: all
  // decode_chunk can refuse.
  static void check_chunk(const CoderTables& t, const ChunkStreams& s) {
    const LaneSplit lanes(s.end - s.begin);
    const uint8_t* sym = decode_symbols(t, s);
    // The positions every lane has are contiguous (a loop the compiler vectorizes), then the tail.
    uint64_t bits = 0;
    for (uint64_t i = 0; i < kLanes * lanes.common(); ++i) bits += extra_bits_of(sym[i] & 127u);
    for (uint64_t j = lanes.common(); j < lanes.len; ++j)
      for (unsigned k = 0; k < kLanes; ++k)
        if (j < lanes.count[k]) bits += extra_bits_of(sym[kLanes * j + k] & 127u);
    require_format(bits <= 8 * uint64_t(s.len_b), "raw bits truncated");
  }

  struct Model {
    ContextModel model;
    explicit Model(const SymbolStats& st) : model(ContextModel::fit(st.counts, st.signs, st.sign_period)) {}
    // The entropy of the symbols and signs under the fitted tables, the tables themselves, the
    // raw bits, and per chunk its lane states and directory.
    double cost(const SymbolStats& st) const {
      static const auto log2tab = [] {
        std::vector<double> t(kRansScale + 1, 0);
        for (uint32_t f = 1; f <= kRansScale; ++f) t[f] = std::log2(double(f));
        return t;
      }();
      const ContextModel& m = model;
      double bits = 0;
      for (unsigned b = 0; b < kCtxBuckets; ++b)
        for (unsigned s = 0; s < kSymbols; ++s)
          if (st.counts[b][s]) bits += double(st.counts[b][s]) * (kRansScaleBits - log2tab[m.freq[m.group_of[b]][s]]);
      for (unsigned c = 0; c < kSignContexts; ++c)
        bits += double(st.signs[c][0]) * (kRansScaleBits - log2tab[m.sign_positive[c]]) +
                double(st.signs[c][1]) * (kRansScaleBits - log2tab[kRansScale - m.sign_positive[c]]);
      ByteWriter w;
      m.write(w);
      const double coded = bits / 8 + double(w.size());
      return coded + st.raw_bytes + (4.0 + 4 * kLanes) * double(st.chunks) + st.outlier_cost;
    }
    void save(ByteWriter& w) const { model.write(w); }
  };

  struct ChunkEncoder {
    RansLaneEncoder encoder;
    explicit ChunkEncoder(const Model& m) : encoder(m.model) {}
    void encode_chunk(const uint8_t* sym, const uint8_t* ctx, uint64_t n, std::vector<uint8_t>& out) const {
      thread_local std::vector<uint16_t> words;
      encoder.encode_chunk(sym, ctx, n, words, out);
    }
  };
};

}  // namespace ebgc
