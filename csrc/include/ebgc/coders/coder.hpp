// Stage 4 — the entropy coders, behind one interface. Each coder of the container (docs/FORMAT.md)
// is a struct of static functions and types; the container reader (format/container.hpp), the
// encoder (encode/compress.hpp) and the decoder (decode/decompress.hpp) reach them only through
// with_coder() (coders/dispatch.hpp), so adding a coder is adding one struct:
//
//   static constexpr Coder id;
//   // decoder side
//   static void load(ByteReader& r, CoderTables& t);        // its tables, from the payload
//   static bool holds(uint64_t values, uint64_t chunks, uint64_t payload_bytes);  // payload can hold them
//   static bool chunk_fits(uint64_t values, uint64_t len_a, uint64_t len_b);     // directory entry
//   static constexpr const char* kBadChunk;                 // the error when it does not
//   template <class Sink> static void decode_chunk(const CoderTables&, const ChunkStreams&, Sink&& sink);
//       // calls sink(index, code) for every value of the chunk, in any order, and throws
//       // FormatError on a corrupt stream
//   static void check_chunk(const CoderTables&, const ChunkStreams&);
//       // validates the chunk's streams without writing a value: all decode_chunk can refuse
//       // (the check before a large output is allocated, plan.hpp)
//   // encoder side
//   struct Model {                                          // its tables, fitted to pass 1's counts
//     explicit Model(const SymbolStats&);
//     double cost(const SymbolStats&) const;                  // estimated payload bytes
//     void save(ByteWriter&) const;
//   };
//   struct ChunkEncoder {                                   // symbol coders: built once a coder is picked
//     explicit ChunkEncoder(const Model&);
//     void encode_chunk(const uint8_t* sym, const uint8_t* ctx, uint64_t n, std::vector<uint8_t>& a) const;
//   };
// (Bit-packing has no tables and quantizes and packs in one pass: encode/chunk_passes.hpp.)
//
// Symbol coders share the binarization of coders/symbolize.hpp and the encoder's pass 1
// (encode/symbol_pass.hpp): per value a magnitude symbol, its sign, raw low bits in stream B.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "context_model.hpp"
#include "huffman_code.hpp"

namespace ebgc {

// The tables a blob's coder reads before its chunks (filled by the coder's load()).
struct CoderTables {
  std::unique_ptr<HuffmanCode> huffman;
  ContextModel context;
};

// One chunk's two streams and the values it holds: [begin, end) of the tensor.
struct ChunkStreams {
  const uint8_t* a;
  size_t len_a;
  const uint8_t* b;
  size_t len_b;
  uint64_t begin, end;
};

// What the encoder's pass 1 learnt about a tensor's codes: what the coders fit their tables to
// and estimate their sizes from.
struct SymbolStats {
  ContextCounts counts{};            // symbols per context bucket
  SignCounts signs{};                // signs of nonzero codes per sign context
  std::vector<uint64_t> total = std::vector<uint64_t>(kSymbols, 0);  // symbols in all
  uint64_t values = 0, chunks = 0, sign_period = 1;
  double raw_bytes = 0;              // stream B of every chunk: the raw low bits
  double bitpack_bytes = 0;          // what bit-packing the codes would take
  double outliers = 0;
  double outlier_cost = 0;           // their bytes in the container, the same under every coder
};

}  // namespace ebgc
