// The context coder (coder 4) as a grid of lanes: what one thread does for one lane of one chunk in
// each step of encoding and decoding. The CUDA kernels (cuda/context_kernels.cuh) run these bodies
// one lane a thread; the host runner (grid/host_runner.hpp) runs the same bodies lane by lane over
// the same grid in the normal test suite, and its blobs equal the CPU codec's byte for byte. What
// is left for a GPU to prove is launch, synchronisation and speed.
//
// Thread t of a step owns lane k = t % kLanes of chunk c = t / kLanes (coders/context_lanes.hpp:
// lanes are contiguous, each with its own rANS state, contexts and word stream). Encoding:
//   1. analyze_lane: quantize, symbolize, contexts, histograms, raw bits, bit-pack widths, outliers;
//   (host: the tables fitted to the histograms by the CPU's code, the coder picked by the plan)
//   2. encode_lane + place_lane_raw_bits: the lane's rANS words; its raw bits into the chunk's B;
//   3. write_lane_streams: the chunk's A stream (lane 0 writes its head) and B, at the chunk's offset.
// Decoding: decode_lane_symbols (checked: never reads outside the lane's words), then
// reconstruct_lane (raw bits at the lane's offset in B, the quantizer, the prediction).
#pragma once
#include <cstdint>

#include "../coders/bitpack.hpp"
#include "../coders/context_lanes.hpp"
#include "../coders/context_model.hpp"
#include "../coders/symbolize.hpp"
#include "../common/hd.hpp"
#include "../quantize/quantizer.hpp"

namespace ebgc {

// Raw bits of a value: at most 27 (|code| < 2^30); 28 leaves slack.
constexpr unsigned kMaxRawBits = 28;

struct LaneSpan {
  uint64_t chunk, begin, count, chunk_begin, chunk_size;
  unsigned k;
};

// Chunk and lane geometry of n values in chunks of 2^chunk_log2 (LaneSplit's arithmetic).
struct LaneGrid {
  uint64_t n = 0;
  unsigned chunk_log2 = 0;
  uint64_t chunks = 0;

  LaneGrid() = default;
  EBGC_HD LaneGrid(uint64_t n_, unsigned log2) : n(n_), chunk_log2(log2), chunks((n_ + (uint64_t(1) << log2) - 1) >> log2) {}
  EBGC_HD uint64_t lanes() const { return chunks * kLanes; }
  EBGC_HD uint64_t chunk_begin(uint64_t c) const { return c << chunk_log2; }
  EBGC_HD uint64_t chunk_size(uint64_t c) const {
    const uint64_t end = (c + 1) << chunk_log2;
    return (end < n ? end : n) - chunk_begin(c);
  }
  EBGC_HD LaneSpan lane(uint64_t t) const {
    LaneSpan s;
    s.chunk = t / kLanes;
    s.k = unsigned(t % kLanes);
    s.chunk_begin = chunk_begin(s.chunk);
    s.chunk_size = chunk_size(s.chunk);
    const uint64_t len = (s.chunk_size + kLanes - 1) / kLanes, before = s.k * len < s.chunk_size ? s.k * len : s.chunk_size;
    s.begin = s.chunk_begin + before;
    s.count = s.chunk_size - before < len ? s.chunk_size - before : len;
    return s;
  }
  // Fixed per-lane and per-chunk scratch strides, so that no thread needs a scan to find its place.
  EBGC_HD uint64_t max_lane_len() const { return ((uint64_t(1) << chunk_log2) + kLanes - 1) / kLanes; }
  EBGC_HD uint64_t word_region() const { return 2 * max_lane_len() + 1; }  // u16 words a lane may write
  EBGC_HD uint64_t raw_words_per_lane() const { return (kMaxRawBits * max_lane_len() + 31) / 32 + 1; }
  EBGC_HD uint64_t b_words_per_chunk() const { return kLanes * raw_words_per_lane() + 1; }
  EBGC_HD uint64_t blocks() const { return (n + kPackBlock - 1) / kPackBlock; }
};

// LSB-first bits into 32-bit words (the layout of FastBitWriter's bytes on a little-endian machine).
struct WordBitWriter {
  uint32_t* w;
  uint64_t acc = 0;
  unsigned nacc = 0;
  EBGC_HD explicit WordBitWriter(uint32_t* out) : w(out) {}
  EBGC_HD void put(uint32_t value, unsigned n) {  // n <= 32, value < 2^n
    acc |= uint64_t(value) << nacc;
    nacc += n;
    if (nacc >= 32) {
      *w++ = uint32_t(acc);
      acc >>= 32;
      nacc -= 32;
    }
  }
  EBGC_HD void finish() {
    if (nacc) *w = uint32_t(acc);
  }
};

// ---- step 1: analysis ------------------------------------------------------------------------

// What analyze_lane writes (device or host memory; all arrays of the grid, indexed by value, lane
// or 32-value block).
template <class T>
struct AnalyzeOut {
  uint8_t* sym;              // [n] symbol | negative << 7
  uint8_t* ctx;              // [n] event_context
  T* reconstruction;         // [n] optional: what the decoder will return
  uint32_t* lane_raw;        // [lanes * raw_words_per_lane] each lane's raw bits from bit 0
  uint32_t* lane_raw_bits;   // [lanes]
  uint32_t* block_or;        // [blocks] OR of the zigzag codes (bit-packing's width), zeroed
  uint32_t* outlier_bits;    // [blocks] bit j: value j of the block is an outlier, zeroed
};

// Sink: count(bucket, symbol), sign(sign_ctx, negative), or_word(uint32_t* array, index, bits).
// bucket_of_sum: kCtxBucketLut.bucket (a device copy on the GPU).
template <class T, class Predictor, class Sink>
EBGC_HD void analyze_lane(const LaneGrid& g, uint64_t t, const T* x, const LinearQuantizer& qz,
                          const Predictor& predict, uint64_t sign_period, const uint8_t* bucket_of_sum,
                          const AnalyzeOut<T>& o, Sink& sink) {
  const LaneSpan s = g.lane(t);
  ContextWindow window;
  SignContext sign(sign_period, s.begin);
  WordBitWriter raw(o.lane_raw + t * g.raw_words_per_lane());
  uint32_t raw_bits = 0, width_or = 0, outliers = 0;
  uint64_t block = s.begin / kPackBlock;
  auto flush_block = [&]() {
    if (width_or) sink.or_word(o.block_or, block, width_or);
    if (outliers) sink.or_word(o.outlier_bits, block, outliers);
    width_or = outliers = 0;
  };
  for (uint64_t i = s.begin; i < s.begin + s.count; ++i) {
    if (i / kPackBlock != block) {
      flush_block();
      block = i / kPackBlock;
    }
    int32_t code;
    T decoded;
    const bool ok = qz.quantize(x[i], predict(i), code, decoded);
    if (o.reconstruction) o.reconstruction[i] = decoded;
    outliers |= uint32_t(!ok) << (i % kPackBlock);
    width_or |= zigzag(code);
    const Symbolized z = symbolize_one(code);
    const uint32_t negative = z.raw & 1u, bucket = bucket_of_sum[window.sum], sign_ctx = sign.ctx();
    o.sym[i] = uint8_t(z.symbol | negative << 7);
    o.ctx[i] = uint8_t(bucket | sign_ctx << 4);
    sink.count(bucket, z.symbol);
    if (z.symbol) sink.sign(sign_ctx, negative);
    window.push(z.symbol);
    sign.push(z.symbol, negative);
    raw.put(z.raw >> 1, z.nextra);
    raw_bits += z.nextra;
  }
  flush_block();
  raw.finish();
  o.lane_raw_bits[t] = raw_bits;
}

// Per chunk (host side of the plan's choice): its B length, what bit-packing it would cost, its
// outliers.
struct ChunkTally {
  uint64_t len_b, bitpack_bytes, outliers;
};
EBGC_HD inline ChunkTally tally_chunk(const LaneGrid& g, uint64_t c, const uint32_t* lane_raw_bits,
                                      const uint32_t* block_or, const uint32_t* outlier_bits) {
  ChunkTally r{0, 0, 0};
  uint64_t bits = 0;
  for (unsigned k = 0; k < kLanes; ++k) bits += lane_raw_bits[c * kLanes + k];
  r.len_b = (bits + 7) / 8;
  const uint64_t b0 = g.chunk_begin(c) / kPackBlock, b1 = (g.chunk_begin(c) + g.chunk_size(c) + kPackBlock - 1) / kPackBlock;
  for (uint64_t b = b0; b < b1; ++b) {
    r.bitpack_bytes += 1 + packed_block_bytes(bit_width(block_or[b]));
    r.outliers += popcount32(outlier_bits[b]);
  }
  return r;
}

// The chunk's outliers, in index order, from entry `first` of the blob's outlier arrays on.
template <class T>
EBGC_HD void gather_chunk_outliers(const LaneGrid& g, uint64_t c, const T* x, const uint32_t* outlier_bits,
                                   uint64_t first, uint64_t* index, T* value) {
  const uint64_t b0 = g.chunk_begin(c) / kPackBlock, b1 = (g.chunk_begin(c) + g.chunk_size(c) + kPackBlock - 1) / kPackBlock;
  for (uint64_t b = b0; b < b1; ++b)
    for (uint32_t m = outlier_bits[b]; m; m &= m - 1) {
      const uint64_t i = b * kPackBlock + (bit_width(m & (0u - m)) - 1);
      index[first] = i;
      value[first++] = x[i];
    }
}

// ---- step 2: rANS words and raw bits ---------------------------------------------------------

struct LaneCode {
  uint32_t* state;  // [lanes] final rANS state
  uint32_t* words;  // [lanes] 16-bit words written
  uint16_t* region; // [lanes * word_region]: lane t's words end at region + (t + 1) * word_region
};

// The lane's values backwards, as RansLaneEncoder::encode_chunk does them.
EBGC_HD inline void encode_lane(const LaneGrid& g, uint64_t t, const RansEncodeView& v, const uint8_t* sym,
                                const uint8_t* ctx, const LaneCode& o) {
  const LaneSpan s = g.lane(t);
  uint16_t* const end = o.region + (t + 1) * g.word_region();
  uint16_t* w = end;
  uint32_t x = kRansLow;
  for (uint64_t j = s.count; j-- > 0;) v.put_value(x, sym[s.begin + j], ctx[s.begin + j], w);
  o.state[t] = x;
  o.words[t] = uint32_t(end - w);
}

// ORs nbits bits (LSB-first words) into dst at bit offset `at`; or_word(dst, index, bits) is an
// atomic OR on the device (neighbouring lanes share a word).
template <class Sink>
EBGC_HD void or_bits(uint32_t* dst, uint64_t at, const uint32_t* src, uint64_t nbits, Sink& sink) {
  const unsigned shift = unsigned(at % 32);
  const uint64_t base = at / 32;
  for (uint64_t j = 0; j * 32 < nbits; ++j) {
    const uint32_t v = src[j];
    if (!v) continue;
    sink.or_word(dst, base + j, v << shift);
    if (shift && (v >> (32 - shift))) sink.or_word(dst, base + j + 1, v >> (32 - shift));
  }
}

// The lane's raw bits into its chunk's B words (zeroed), after those of the lanes before it.
template <class Sink>
EBGC_HD void place_lane_raw_bits(const LaneGrid& g, uint64_t t, const uint32_t* lane_raw, const uint32_t* lane_raw_bits,
                                 uint32_t* chunk_b, Sink& sink) {
  const uint64_t c = t / kLanes;
  uint64_t at = 0;
  for (uint64_t l = c * kLanes; l < t; ++l) at += lane_raw_bits[l];
  or_bits(chunk_b + c * g.b_words_per_chunk(), at, lane_raw + t * g.raw_words_per_lane(), lane_raw_bits[t], sink);
}

// ---- step 3: the chunk's streams ---------------------------------------------------------------

EBGC_HD inline unsigned varint_size(uint64_t v) {
  unsigned n = 1;
  while (v >= 0x80) v >>= 7, ++n;
  return n;
}
EBGC_HD inline uint8_t* put_varint(uint8_t* p, uint64_t v) {
  while (v >= 0x80) *p++ = uint8_t(v | 0x80), v >>= 7;
  *p++ = uint8_t(v);
  return p;
}

// Stream A of chunk c: the lane states (u32 each), the word counts of all lanes but the last, then
// each lane's words (context_lanes.hpp).
EBGC_HD inline uint64_t chunk_a_head_bytes(const uint32_t* words_of_chunk) {
  uint64_t n = 4 * kLanes;
  for (unsigned k = 0; k + 1 < kLanes; ++k) n += varint_size(words_of_chunk[k]);
  return n;
}
EBGC_HD inline uint64_t chunk_a_bytes(const uint32_t* words_of_chunk) {
  uint64_t n = chunk_a_head_bytes(words_of_chunk);
  for (unsigned k = 0; k < kLanes; ++k) n += 2 * uint64_t(words_of_chunk[k]);
  return n;
}

// Bytes [k * share, (k + 1) * share) of a chunk stream of len bytes held in LSB-first 32-bit
// words, share = len / kLanes rounded up: lane k's part of copying the stream out.
EBGC_HD inline void copy_lane_share(unsigned k, const uint32_t* words, uint64_t len, uint8_t* out) {
  const uint64_t share = (len + kLanes - 1) / kLanes;
  for (uint64_t j = k * share; j < len && j < (k + 1) * share; ++j) out[j] = uint8_t(words[j / 4] >> (8 * (j % 4)));
}

// Lane t's share of its chunk's streams at `out` (the chunk's first byte in the blob's stream
// area): lane 0 writes the head, every lane its words and an eighth of B (len_b bytes of chunk_b).
EBGC_HD inline void write_lane_streams(const LaneGrid& g, uint64_t t, const LaneCode& code, const uint32_t* chunk_b,
                                       uint64_t len_b, uint8_t* out) {
  const uint64_t c = t / kLanes;
  const unsigned k = unsigned(t % kLanes);
  const uint32_t* words = code.words + c * kLanes;
  const uint64_t head = chunk_a_head_bytes(words);
  if (k == 0) {
    uint8_t* p = out;
    for (unsigned l = 0; l < kLanes; ++l) {
      const uint32_t x = code.state[c * kLanes + l];
      for (unsigned b = 0; b < 4; ++b) *p++ = uint8_t(x >> (8 * b));
    }
    for (unsigned l = 0; l + 1 < kLanes; ++l) p = put_varint(p, words[l]);
  }
  uint64_t at = head;
  for (unsigned l = 0; l < k; ++l) at += 2 * uint64_t(words[l]);
  const uint16_t* w = code.region + (t + 1) * g.word_region() - words[k];
  for (uint32_t j = 0; j < words[k]; ++j) out[at + 2 * j] = uint8_t(w[j]), out[at + 2 * j + 1] = uint8_t(w[j] >> 8);
  copy_lane_share(k, chunk_b + c * g.b_words_per_chunk(), len_b, out + chunk_a_bytes(words));
}

// ---- decoding ----------------------------------------------------------------------------------

// The decoder's tables as pointers (host or device copies of ContextModel's).
struct LaneDecodeTables {
  RansLaneTables rans;  // magnitude view + sign frequencies (8 entries)
  uint64_t sign_period;
};

// Where a chunk's streams are (from the blob's chunk directory).
struct ChunkStreamRef {
  uint64_t a, len_a, b, len_b;  // offsets from the stream area's start
};

// Decodes lane t's symbols into sym (by value index) and its raw-bit count; false if the lane's
// stream is corrupt (never reads outside the chunk's A stream).
EBGC_HD inline bool decode_lane_symbols(const LaneGrid& g, uint64_t t, const LaneDecodeTables& tab, const uint8_t* streams,
                                        const ChunkStreamRef* chunks, uint8_t* sym, uint32_t* lane_raw_bits) {
  const LaneSpan s = g.lane(t);
  const ChunkStreamRef ref = chunks[s.chunk];
  const uint8_t* a = streams + ref.a;
  lane_raw_bits[t] = 0;
  if (ref.len_a < 4 * kLanes) return false;
  // The head: states, then the word counts of lanes 0..6 (lane 7 has the rest).
  uint32_t x = 0;
  for (unsigned b = 0; b < 4; ++b) x |= uint32_t(a[4 * s.k + b]) << (8 * b);
  if (x < kRansLow) return false;
  uint64_t pos = 4 * kLanes, before = 0, mine = 0, total = 0;
  for (unsigned l = 0; l + 1 < kLanes; ++l) {
    uint64_t v = 0;
    for (unsigned shift = 0;; shift += 7) {  // ByteReader::varint's rules
      if (pos >= ref.len_a || shift > 63) return false;
      const uint8_t byte = a[pos++];
      if (shift == 63 && byte > 1) return false;
      v |= uint64_t(byte & 0x7f) << shift;
      if (!(byte & 0x80)) break;
    }
    if (v > ref.len_a / 2) return false;
    if (l < s.k) before += v;
    if (l == s.k) mine = v;
    total += v;
  }
  if (2 * total > ref.len_a - pos) return false;
  const uint8_t* p = a + pos + 2 * before;
  const uint8_t* end = s.k + 1 < kLanes ? p + 2 * mine : a + ref.len_a;
  RansLane lane;
  lane.x = x;
  lane.sign = SignContext(tab.sign_period, s.begin);
  bool overrun = false;
  uint32_t bits = 0;
  for (uint64_t j = 0; j < s.count; ++j) {
    const uint8_t v = rans_lane_value<true>(tab.rans, lane, p, end, overrun);
    sym[s.begin + j] = v;
    bits += extra_bits_of(v & 127u);
  }
  lane_raw_bits[t] = bits;
  return !overrun && p == end && lane.x == kRansLow;
}

// Reads LSB-first bits of a byte stream; zeros past its end, counted as an overrun.
struct LaneBitReader {
  const uint8_t* p;
  uint64_t len, bit;
  bool overrun = false;
  EBGC_HD uint32_t get(unsigned n) {  // n <= 27
    if (!n) return 0;
    if (bit + n > 8 * len) overrun = true;
    uint64_t v = 0;
    const uint64_t first = bit / 8;
    for (unsigned b = 0; b < 5; ++b)
      if (first + b < len) v |= uint64_t(p[first + b]) << (8 * b);
    const uint32_t out = uint32_t((v >> (bit % 8)) & ((uint64_t(1) << n) - 1));
    bit += n;
    return out;
  }
};

// Values of lane t from its symbols and raw bits; false if the chunk's B is too short. Outliers are
// written afterwards (their codes are 0).
template <class T, class Predictor>
EBGC_HD bool reconstruct_lane(const LaneGrid& g, uint64_t t, const uint8_t* streams, const ChunkStreamRef* chunks,
                              const uint8_t* sym, const uint32_t* lane_raw_bits, const LinearQuantizer& qz,
                              const Predictor& predict, T* out) {
  const LaneSpan s = g.lane(t);
  const ChunkStreamRef ref = chunks[s.chunk];
  uint64_t at = 0;
  for (uint64_t l = s.chunk * kLanes; l < t; ++l) at += lane_raw_bits[l];
  LaneBitReader raw{streams + ref.b, ref.len_b, at};
  for (uint64_t i = s.begin; i < s.begin + s.count; ++i) {
    const uint32_t v = sym[i], q = v & 127u;
    const int32_t code = desymbolize(q, v >> 7 | raw.get(extra_bits_of(q)) << 1);
    out[i] = qz.reconstruct<T>(code, predict(i));
  }
  return !raw.overrun;
}

}  // namespace ebgc
