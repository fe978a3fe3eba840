// Coder 3, the context coder's first layout (decode only): context-modelled rANS with two
// interleaved 32-bit states over the whole chunk. Blobs written before the lane layout
// (coders/context_lanes.hpp) use it; it is kept so that every blob ever written still decodes. Its
// serial chain (each symbol's context and state depend on the one before) is why the encoder moved
// to lanes.
#pragma once
#include <cstdint>

#include "../coders/coder.hpp"
#include "../coders/context_model.hpp"
#include "../coders/symbolize.hpp"
#include "../common/bitio.hpp"
#include "../common/errors.hpp"
#include "../format/vocabulary.hpp"

namespace ebgc {

// Streaming decoder of one chunk: next() returns the next symbol.
struct RansChunkDecoder {
  const ContextModel& m;
  const uint8_t* p;
  size_t n, pos = 8;
  uint32_t x[2];
  bool overrun = false;
  ContextWindow win;

  RansChunkDecoder(const ContextModel& model, const uint8_t* data, size_t size)
      : m(model), p(data), n(size) {
    require_format(size >= 8, "rANS chunk shorter than its states");
    for (int k = 0; k < 2; ++k)
      x[k] = uint32_t(p[4 * k]) | uint32_t(p[4 * k + 1]) << 8 | uint32_t(p[4 * k + 2]) << 16 |
             uint32_t(p[4 * k + 3]) << 24;
    require_format(x[0] >= kRansLow && x[1] >= kRansLow, "bad rANS state");
  }
  // The state of the next event is x[0]; after each event the two states swap.
  inline void advance(uint32_t xs) {
    x[0] = x[1];
    x[1] = xs;
  }
  inline void renormalize(uint32_t& xs) {
    if (xs < kRansLow) {
      if (pos + 2 <= n) {
        xs = (xs << 16) | uint32_t(p[pos]) | uint32_t(p[pos + 1]) << 8;
        pos += 2;
      } else {
        overrun = true;
        xs = kRansLow;  // keep going; finish() reports it
      }
    }
  }
  // The next magnitude symbol.
  inline uint32_t next() {
    uint32_t xs = x[0];
    const uint32_t s = m.view().decode(win.sum, xs);
    renormalize(xs);
    advance(xs);
    win.push(s);
    return s;
  }
  // The sign of a nonzero value (1 = negative), coded in sign context c.
  inline uint32_t next_sign(unsigned c) {
    uint32_t xs = x[0];
    const uint32_t f0 = m.sign_positive[c], slot = xs & (kRansScale - 1);
    const uint32_t neg = slot >= f0;
    xs = (neg ? kRansScale - f0 : f0) * (xs >> kRansScaleBits) + slot - (neg ? f0 : 0);
    renormalize(xs);
    advance(xs);
    return neg;
  }
  // After the last symbol: the states are back at their start and every word was read.
  void finish() const {
    require_format(!overrun && pos == n && x[0] == kRansLow && x[1] == kRansLow,
                   "rANS chunk is corrupt");
  }
};

struct ContextSerialCoder {
  static constexpr Coder id = Coder::ContextSerial;

  static void load(ByteReader& r, CoderTables& t) { t.context = ContextModel::read(r); }
  // Every chunk: two directory lengths and two 4-byte rANS states.
  static bool holds(uint64_t, uint64_t chunks, uint64_t payload) { return chunks <= payload / 10; }
  static constexpr const char* kBadChunk = "rANS chunk too short";
  static bool chunk_fits(uint64_t, uint64_t len_a, uint64_t) { return len_a >= 8; }

  template <class Sink>
  static void decode_chunk(const CoderTables& t, const ChunkStreams& s, Sink&& sink) {
    RansChunkDecoder dec(t.context, s.a, s.len_a);
    SignContext sc(t.context.sign_period, s.begin);
    BitReader raw(s.b, s.len_b);
    for (uint64_t i = s.begin; i < s.end; ++i) {
      const uint32_t q = dec.next();
      const uint32_t neg = q ? dec.next_sign(sc.ctx()) : 0;
      sc.push(q, neg);
      raw.refill();
      sink(i, desymbolize(q, neg | raw.get(kSymbolTable.info[q].nextra) << 1));
    }
    dec.finish();
    require_format(!raw.overran(), "raw bits truncated");
  }

  static void check_chunk(const CoderTables& t, const ChunkStreams& s) {
    decode_chunk(t, s, [](uint64_t, int32_t) {});
  }
};

}  // namespace ebgc
