// The Huffman coder (coder 2) on the context coder's grid: what one thread does for one lane (or
// one chunk) in each step. Huffman shares the context coder's analysis (symbols, signs, the raw
// bits of stream B, the histograms: their sum over contexts is Huffman's), so only stream A
// differs: each value's canonical code, then its sign bit if it is nonzero, LSB-first, one stream
// a chunk (coders/huffman_coder.hpp). Lanes are contiguous runs of a chunk's values, so lane k's
// bits follow those of lanes 0..k-1: a lane counts its bits, then writes them at the sum of its
// chunk's earlier lanes' counts. The CUDA kernels (cuda/context_kernels.cuh and the message
// kernels) run these bodies a lane (a chunk) a thread; the host runners run them lane by lane, and
// their blobs equal the CPU codec's (coder 2, chunk_log2 = kGridChunkLog2) byte for byte.
//
// Decoding a Huffman chunk is serial (a code's start depends on every code before it), so it is
// a thread a chunk: symbols and each lane's raw-bit count, then the context coder's
// reconstruct_lane reads B and reconstructs lane by lane.
#pragma once
#include <cstdint>

#include "../coders/huffman_code.hpp"
#include "../coders/symbolize.hpp"
#include "context_lane_steps.hpp"

namespace ebgc {

// The most bits a value takes in A: the longest code and a sign bit.
constexpr unsigned kHuffmanMaxValueBits = kHuffMaxLen + 1;

// The encoder's tables as placed for the kernels: kSymbols codes (bit-reversed, ready for an
// LSB-first writer) then kSymbols lengths (0: unused symbol).
struct HuffmanEncodeView {
  const uint16_t* code;
  const uint8_t* len;
};
constexpr size_t kHuffmanEncodeTableBytes = kSymbols * (sizeof(uint16_t) + sizeof(uint8_t));

// Writes a HuffmanCode's encode tables at `out` (kHuffmanEncodeTableBytes).
inline void place_huffman_tables(const HuffmanCode& hc, uint8_t* out) {
  for (unsigned s = 0; s < kSymbols; ++s) {
    const uint16_t c = s < hc.code.size() ? hc.code[s] : 0;
    out[2 * s] = uint8_t(c), out[2 * s + 1] = uint8_t(c >> 8);
    out[2 * kSymbols + s] = s < hc.len.size() ? hc.len[s] : 0;
  }
}
EBGC_HD inline HuffmanEncodeView huffman_view_at(const uint8_t* tables) {
  return {reinterpret_cast<const uint16_t*>(tables), tables + 2 * kSymbols};
}

// Chunk c's A bits are built in `chunk_a` words (zeroed) at a fixed stride: the context coder's word
// region of its lanes, read as 32-bit words (kLanes * word_region u16 is even, so it is aligned).
EBGC_HD inline uint64_t huffman_words_per_chunk(const LaneGrid& g) { return kLanes * g.word_region() / 2; }
static_assert(kLanes % 2 == 0, "a chunk's word region holds whole 32-bit words");
static_assert(kHuffmanMaxValueBits <= 32, "the region (two u16 words a value) holds a chunk's longest A");

// ---- encoding ------------------------------------------------------------------------------------

// Step 2a: the bits lane t's values take in A.
EBGC_HD inline uint32_t huffman_lane_bits(const LaneGrid& g, uint64_t t, const HuffmanEncodeView& v, const uint8_t* sym) {
  const LaneSpan s = g.lane(t);
  uint32_t bits = 0;
  for (uint64_t i = s.begin; i < s.begin + s.count; ++i) {
    const uint32_t q = sym[i] & 127u;
    bits += v.len[q] + (q != 0);
  }
  return bits;
}

// The bit offset of lane t in its chunk's A: the bits of the chunk's lanes before it.
EBGC_HD inline uint64_t huffman_lane_offset(uint64_t t, const uint32_t* lane_bits) {
  uint64_t at = 0;
  for (uint64_t l = t / kLanes * kLanes; l < t; ++l) at += lane_bits[l];
  return at;
}

// Step 2b: lane t's codes and signs into its chunk's A words at bit `at`. Neighbouring lanes share
// a word at each end, so every word goes in by sink.or_word (an atomic OR on the device).
template <class Sink>
EBGC_HD void encode_huffman_lane(const LaneGrid& g, uint64_t t, const HuffmanEncodeView& v, const uint8_t* sym,
                                 uint64_t at, uint32_t* chunk_a, Sink& sink) {
  const LaneSpan s = g.lane(t);
  uint32_t* words = chunk_a + s.chunk * huffman_words_per_chunk(g);
  uint64_t word = at / 32, acc = 0;
  unsigned nacc = unsigned(at % 32);
  for (uint64_t i = s.begin; i < s.begin + s.count; ++i) {
    const uint32_t q = sym[i] & 127u, sign = sym[i] >> 7;
    // A code then its sign: len + 1 <= 13 bits, so acc (< 32 bits held) never overflows.
    acc |= uint64_t(v.code[q]) << nacc;
    nacc += v.len[q];
    if (q) acc |= uint64_t(sign) << nacc++;
    if (nacc >= 32) {
      sink.or_word(words, word++, uint32_t(acc));
      acc >>= 32;
      nacc -= 32;
    }
  }
  if (acc) sink.or_word(words, word, uint32_t(acc));
}

// Step 3: a Huffman chunk's A length from its lanes' bit counts.
EBGC_HD inline uint64_t huffman_chunk_a_bytes(const uint32_t* bits_of_chunk) {
  uint64_t bits = 0;
  for (unsigned k = 0; k < kLanes; ++k) bits += bits_of_chunk[k];
  return (bits + 7) / 8;
}

// Lane t's share of its Huffman chunk's streams at `out`: an eighth of A, then an eighth of B.
EBGC_HD inline void write_huffman_lane_streams(const LaneGrid& g, uint64_t t, const uint32_t* chunk_a, uint64_t len_a,
                                               const uint32_t* chunk_b, uint64_t len_b, uint8_t* out) {
  const uint64_t c = t / kLanes;
  const unsigned k = unsigned(t % kLanes);
  copy_lane_share(k, chunk_a + c * huffman_words_per_chunk(g), len_a, out);
  copy_lane_share(k, chunk_b + c * g.b_words_per_chunk(), len_b, out + len_a);
}

// ---- decoding ------------------------------------------------------------------------------------

// LSB-first bits of a byte stream through a 64-bit buffer; zeros past the end, and the bits taken
// are counted, so an overrun is `taken > 8 * len` (BitReader's rule).
struct ChunkBitReader {
  const uint8_t* p;
  uint64_t len, next = 0, taken = 0, buf = 0;
  unsigned have = 0;
  EBGC_HD ChunkBitReader(const uint8_t* data, uint64_t size) : p(data), len(size) {}
  EBGC_HD void refill() {
    for (; have <= 56; have += 8, ++next) buf |= uint64_t(next < len ? p[next] : 0) << have;
  }
  EBGC_HD uint32_t peek(unsigned n) const { return uint32_t(buf & ((uint64_t(1) << n) - 1)); }
  EBGC_HD void skip(unsigned n) {
    buf >>= n;
    have -= n;
    taken += n;
  }
  EBGC_HD bool overran() const { return taken > 8 * len; }
};

// Chunk c's symbols (symbol | negative << 7, by value index) and its lanes' raw-bit counts from A,
// by the 12-bit lookup `table` (HuffmanCode::table); false on a code no symbol owns or an overrun
// of A, the CPU decoder's two errors (never reads outside the chunk's A).
EBGC_HD inline bool decode_huffman_chunk(const LaneGrid& g, uint64_t c, const uint16_t* table, const uint8_t* streams,
                                         const ChunkStreamRef* chunks, uint8_t* sym, uint32_t* lane_raw_bits) {
  const ChunkStreamRef ref = chunks[c];
  ChunkBitReader bits(streams + ref.a, ref.len_a);
  bool ok = true;
  for (uint64_t t = c * kLanes; t < (c + 1) * kLanes; ++t) {
    const LaneSpan s = g.lane(t);
    uint32_t raw = 0;
    for (uint64_t i = s.begin; ok && i < s.begin + s.count; ++i) {
      bits.refill();
      const uint16_t e = table[bits.peek(kHuffMaxLen)];
      const unsigned l = e & 15u;
      const uint32_t q = e >> 4;
      ok = l != 0 && q < kSymbols;
      if (!ok) break;
      bits.skip(l);
      uint32_t negative = 0;
      if (q) negative = bits.peek(1), bits.skip(1);
      sym[i] = uint8_t(q | negative << 7);
      raw += extra_bits_of(q);
    }
    lane_raw_bits[t] = ok ? raw : 0;
  }
  return ok && !bits.overran();
}

// ---- either lane coder ------------------------------------------------------------------------

// Which lane coder codes a tensor (a message row's `coded`). A Huffman tensor's LaneCode holds its
// lanes' A bit counts in `words`; its chunk A words are where the context coder's regions are.
enum LaneCoded : uint32_t { kLaneNone = 0, kLaneContext = 1, kLaneHuffman = 2 };
inline Coder lane_coder(uint32_t coded) { return coded == kLaneHuffman ? Coder::Huffman : Coder::Context; }

// A chunk's A length.
EBGC_HD inline uint64_t lane_chunk_a_bytes(uint32_t coded, const uint32_t* words_of_chunk) {
  return coded == kLaneHuffman ? huffman_chunk_a_bytes(words_of_chunk) : chunk_a_bytes(words_of_chunk);
}

// Lane t's share of its chunk's streams at `out` (the chunk's first byte).
EBGC_HD inline void write_coded_lane_streams(uint32_t coded, const LaneGrid& g, uint64_t t, const LaneCode& code,
                                             const uint32_t* chunk_a, const uint32_t* chunk_b, uint64_t len_a,
                                             uint64_t len_b, uint8_t* out) {
  if (coded == kLaneHuffman) return write_huffman_lane_streams(g, t, chunk_a, len_a, chunk_b, len_b, out);
  write_lane_streams(g, t, code, chunk_b, len_b, out);
}

}  // namespace ebgc
