// Stage 4a in the container: coder 2, canonical Huffman codes of the magnitude symbols
// (coders/huffman_code.hpp), each nonzero symbol followed by its sign bit, in stream A; the raw
// low bits in stream B. One table per tensor.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "../common/bitio.hpp"
#include "../common/bytes.hpp"
#include "../common/errors.hpp"
#include "../format/vocabulary.hpp"
#include "coder.hpp"
#include "huffman_code.hpp"
#include "symbolize.hpp"

namespace ebgc {

struct HuffmanCoder {
  static constexpr Coder id = Coder::Huffman;

  static void load(ByteReader& r, CoderTables& t) { t.huffman.reset(new HuffmanCode(read_huffman_lengths(r, kSymbols))); }
  static bool holds(uint64_t values, uint64_t, uint64_t payload) { return values <= 8 * payload; }  // >= 1 bit a value
  static constexpr const char* kBadChunk = "Huffman chunk too short";
  static bool chunk_fits(uint64_t values, uint64_t len_a, uint64_t) { return len_a >= (values + 7) / 8; }

  template <class Sink>
  static void decode_chunk(const CoderTables& t, const ChunkStreams& s, Sink&& sink) {
    BitReader bits(s.a, s.len_a), raw(s.b, s.len_b);
    const HuffmanCode& hc = *t.huffman;
    for (uint64_t i = s.begin; i < s.end; ++i) {
      bits.refill();
      const uint32_t sym = hc.get(bits);
      require_format(sym < kSymbols, "Huffman symbol out of range");
      const uint32_t neg = sym ? bits.get(1) : 0;
      raw.refill();
      sink(i, desymbolize(sym, neg | raw.get(kSymbolTable.info[sym].nextra) << 1));
    }
    require_format(!bits.overran(), "Huffman chunk truncated");
    require_format(!raw.overran(), "raw bits truncated");
  }

  static void check_chunk(const CoderTables& t, const ChunkStreams& s) {
    decode_chunk(t, s, [](uint64_t, int32_t) {});
  }

  struct Model {
    std::vector<uint8_t> len;  // code length per symbol
    explicit Model(const SymbolStats& st) : len(huffman_lengths(st.total)) {}
    // Codes, the signs as plain bits, the raw bits, and 4 bytes of directory a chunk.
    double cost(const SymbolStats& st) const {
      double bits = 0;
      for (size_t s = 0; s < len.size(); ++s) bits += double(st.total[s]) * len[s];
      const double table = double((len.size() + 1) / 2 + 1);
      const double raw_signs = double(st.values - st.total[0]) / 8;
      return (bits / 8 + table) + raw_signs + st.raw_bytes + 4.0 * double(st.chunks) + st.outlier_cost;
    }
    void save(ByteWriter& w) const { write_huffman_lengths(w, len); }
  };

  struct ChunkEncoder {
    HuffmanCode code;
    explicit ChunkEncoder(const Model& m) : code(m.len) {}
    // Each symbol's code, then its sign bit if it is nonzero.
    void encode_chunk(const uint8_t* sym, const uint8_t*, uint64_t n, std::vector<uint8_t>& out) const {
      BitWriter w;
      w.out.reserve(size_t(n / 2));
      for (uint64_t i = 0; i < n; ++i) {
        const uint32_t s = sym[i] & 127u;
        code.put(w, s);
        if (s) w.put(sym[i] >> 7, 1);
      }
      w.flush();
      out = std::move(w.out);
      out.shrink_to_fit();  // the reserve above is a guess; every chunk's stream stays until the end
    }
  };
};

}  // namespace ebgc
