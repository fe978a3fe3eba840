// Stage 4b in the container: the bit-packing primitives of coders/bitpack.hpp as coder 1, behind
// the coder interface (coders/coder.hpp).
#pragma once
#include <algorithm>
#include <cstdint>

#include "../common/bytes.hpp"
#include "../common/errors.hpp"
#include "../format/vocabulary.hpp"
#include "bitpack.hpp"
#include "coder.hpp"

namespace ebgc {

// Coder 1 in the container (coders/coder.hpp): stream A holds one width byte per block, stream B
// the packed blocks. The encoder quantizes and packs in one pass (encode/chunk_passes.hpp).
struct BitpackCoder {
  static constexpr Coder id = Coder::Bitpack;

  static void load(ByteReader&, CoderTables&) {}  // no tables
  static bool holds(uint64_t values, uint64_t, uint64_t payload) { return values <= kPackBlock * payload; }
  static constexpr const char* kBadChunk = "bad bit-packing width count";
  static bool chunk_fits(uint64_t values, uint64_t len_a, uint64_t) {
    return len_a == (values + kPackBlock - 1) / kPackBlock;
  }

  template <class Sink>
  static void decode_chunk(const CoderTables&, const ChunkStreams& s, Sink&& sink) {
    uint32_t v[kPackBlock];
    const uint8_t* p = s.b;
    const uint8_t* const end = s.b + s.len_b;
    for (uint64_t k = 0; k < s.len_a; ++k) {
      const unsigned w = s.a[k];
      require_format(w <= 32, "bad bit-packing width");
      const uint64_t b0 = s.begin + k * kPackBlock, b1 = std::min(s.end, b0 + kPackBlock);
      if (!w) {
        for (uint64_t i = b0; i < b1; ++i) sink(i, 0);
        continue;
      }
      require_format(size_t(end - p) >= packed_block_bytes(w), "bit-packed data truncated");
      unpack_block(p, w, v);
      p += packed_block_bytes(w);
      for (uint64_t i = b0; i < b1; ++i) sink(i, unzigzag(v[i - b0]));
    }
    require_format(p == end, "bit-packed data length mismatch");
  }

  // Every width and the chunk's packed length, without decoding a value: all decode_chunk can
  // refuse (and the GPU decoder's check before its kernels, which then need none of their own).
  static void check_chunk(const CoderTables&, const ChunkStreams& s) { require_bitpack_chunk(bitpack_chunk_fault(s.a, s.len_a, s.len_b)); }

  struct Model {
    explicit Model(const SymbolStats&) {}
    double cost(const SymbolStats& st) const { return st.bitpack_bytes + 3.0 * double(st.chunks) + st.outlier_cost; }
    void save(ByteWriter&) const {}
  };
};

}  // namespace ebgc
