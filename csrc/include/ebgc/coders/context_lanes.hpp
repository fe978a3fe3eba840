// Stage 4c — context-modelled rANS in lanes (coder 4), the context model of context_model.hpp.
// A chunk is cut into kLanes contiguous lanes, each with its own 32-bit rANS state, context window,
// sign context and stream of 16-bit renormalization words. The decoder steps all lanes together
// (value j of every lane, then j+1) without a branch, so it runs kLanes independent dependency
// chains instead of one (a shared word stream would chain them through its read position); with
// 8 lanes, one AVX2 vector holds them all (rans_lanes_avx2.hpp). Chunk stream: the lane states
// (u32 each), the word counts of all lanes but the last (varints), then each lane's words in
// decoding order. Every value has a magnitude event and a sign event; the sign event of a zero has
// probability 1 (frequency = scale), which leaves the state unchanged and writes nothing, so
// the decoder need not branch on whether a symbol is zero (the encoder simply skips that no-op
// event). Measured on the resnet trace at REL 1e-2:
// lanes cost 0.4% of the ratio of the serial layout (9.05 vs 9.08) and the AVX2 loop decodes
// about 1.5x faster than the serial decoder of coder 3 (docs/DESIGN.md).
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <vector>

#include "../common/bytes.hpp"
#include "../coders/context_model.hpp"
#include "../common/errors.hpp"
#include "../common/hd.hpp"
#include "../coders/context_lanes_avx2.hpp"
#include "../coders/symbolize.hpp"

namespace ebgc {

constexpr unsigned kLanes = 8;

// Lane k of a chunk of n values holds its values [k*len, k*len + count[k]).
struct LaneSplit {
  uint64_t len;
  uint64_t count[kLanes];
  explicit LaneSplit(uint64_t n) : len((n + kLanes - 1) / kLanes) {
    for (unsigned k = 0; k < kLanes; ++k) count[k] = std::min(len, n - std::min(n, k * len));
  }
  uint64_t begin(unsigned k) const { return k * len; }
  uint64_t common() const { return count[kLanes - 1]; }  // positions every lane has
};

// Per value, the encoder's pass 1 stores the context of both events: bucket | sign context << 4.
inline uint8_t event_context(unsigned bucket, unsigned sign_ctx) { return uint8_t(bucket | sign_ctx << 4); }

// ---- encoder ------------------------------------------------------------------------------------
struct RansEncodeEntry {
  uint64_t reciprocal;  // floor(2^64 / freq) + 1 (2^64 - 1 for freq 1): the quotient by a multiply
  uint32_t renorm_max;  // emit 16 bits first when the state is above this ((freq << 20) - 1)
  uint32_t complement;  // kRansScale - freq
  uint32_t bias;        // start (start + kRansScale - 1 for freq 1)
};

// The encoder's tables as plain pointers: the CPU's loop keeps them in registers, a kernel reads
// them from device memory (grid/context_lane_steps.hpp).
struct RansEncodeView {
  const RansEncodeEntry* entry;  // magnitude tables (one per group), then 2 entries per sign context
  const uint32_t* magnitude_base;  // [128], by event context byte
  const uint32_t* sign_base;       // [128]

  // rANS step with the renormalization first (the decoder reads the word right after the event):
  // x' = (x / freq) * scale + x % freq + start = x + (x / freq) * (scale - freq) + start. The
  // quotient is the high half of x * reciprocal, exact for every 32-bit state: the reciprocal
  // exceeds 2^64 / freq by less than 1, which moves x * reciprocal / 2^64 by less than
  // 2^32 / 2^64, below the 1 / freq a fractional part can be from the next integer. One multiply
  // and no correction step (the floor(2^32 / freq) reciprocal this replaced was one short at
  // times, and fixing that took five more operations on the state's chain). Whether a word is
  // emitted is data the branch predictor cannot learn, so it is a shift by 0 or 16 (GCC compiled
  // the select it replaced into a branch).
  static EBGC_HD inline void put(uint32_t& x, const RansEncodeEntry& e, uint16_t*& w) {
    const uint32_t emit = uint32_t(x > e.renorm_max);
    w[-1] = uint16_t(x);  // harmless when not emitted: the next word overwrites it
    w -= emit;
    x >>= emit << 4;
    const uint32_t q = uint32_t(mul_hi64(x, e.reciprocal));
    x += q * e.complement + e.bias;
  }

  // One value of a lane: the encoder runs backwards, so its sign event goes before its magnitude.
  EBGC_HD inline void put_value(uint32_t& x, uint8_t sym, uint8_t ctx, uint16_t*& w) const {
    const uint32_t s = sym & 127u;
    // A zero's sign event is the identity (state unchanged, no word), so the encoder skips it:
    // cheaper than running it even where the branch is mispredicted (bytes unchanged).
    if (s) put(x, entry[sign_base[ctx] + (sym >> 7)], w);
    put(x, entry[magnitude_base[ctx] + s], w);
  }
};

struct RansLaneEncoder {
  std::vector<RansEncodeEntry> entry;  // as RansEncodeView
  std::array<uint32_t, 128> magnitude_base{}, sign_base{};

  static RansEncodeEntry make(uint32_t freq, uint32_t start) {
    RansEncodeEntry e;
    e.renorm_max = uint32_t((uint64_t(freq) << (32 - kRansScaleBits)) - 1);
    e.complement = kRansScale - freq;
    if (freq == 1) {
      // 2^64 would not fit: 2^64 - 1 gives a quotient one short for every state (>= 1), and the
      // bias makes up for it (x' = x + (q + 1) * (scale - 1) + start).
      e.reciprocal = ~uint64_t(0);
      e.bias = start + kRansScale - 1;
    } else {
      e.reciprocal = ~uint64_t(0) / freq + 1;
      e.bias = start;
    }
    return e;
  }
  explicit RansLaneEncoder(const ContextModel& m) {
    const uint32_t signs = m.groups * kSymbols;
    entry.resize(signs + 2 * kSignContexts);
    for (unsigned g = 0; g < m.groups; ++g) {
      uint32_t cum = 0;
      for (unsigned s = 0; s < kSymbols; ++s) {
        if (m.freq[g][s]) entry[g * kSymbols + s] = make(m.freq[g][s], cum);
        cum += m.freq[g][s];
      }
    }
    for (unsigned c = 0; c < kSignContexts; ++c) {
      const uint32_t f = m.sign_positive[c];
      entry[signs + 2 * c] = make(f, 0);
      entry[signs + 2 * c + 1] = make(kRansScale - f, f);
    }
    for (unsigned e = 0; e < 128; ++e) {
      magnitude_base[e] = m.group_of[e & 15u] * kSymbols;
      sign_base[e] = signs + 2 * std::min(e >> 4, kSignContexts - 1);
    }
  }
  RansEncodeView view() const { return {entry.data(), magnitude_base.data(), sign_base.data()}; }

  // Encodes one chunk (n values: sym = symbol | negative << 7, ctx = event_context) and appends
  // its stream to out. words: scratch.
  void encode_chunk(const uint8_t* sym, const uint8_t* ctx, uint64_t n, std::vector<uint16_t>& words,
                    std::vector<uint8_t>& out) const {
    const RansEncodeView v = view();
    const LaneSplit lanes(n);
    // Lane k writes downwards from the end of its region: at most one word per event, plus the
    // scratch slot of put().
    const size_t region = size_t(2 * lanes.len + 1);
    words.resize(kLanes * region);
    uint16_t *w[kLanes], *w_end[kLanes];
    uint32_t x[kLanes];
    for (unsigned k = 0; k < kLanes; ++k) w[k] = w_end[k] = words.data() + (k + 1) * region, x[k] = kRansLow;
    // The reverse of the decoder's order: positions downwards (lanes interleaved for parallelism).
    for (uint64_t j = lanes.len; j-- > lanes.common();)
      for (unsigned k = kLanes; k-- > 0;)
        if (j < lanes.count[k]) v.put_value(x[k], sym[lanes.begin(k) + j], ctx[lanes.begin(k) + j], w[k]);
    // Lanes are independent: two passes of 4 keep each pass's states and pointers in registers.
    for (unsigned half = 0; half < kLanes; half += kLanes / 2) {
      uint32_t xs[4];
      uint16_t* ws[4];
      const uint8_t *s[4], *c[4];
      for (unsigned k = 0; k < 4; ++k)
        xs[k] = x[half + k], ws[k] = w[half + k], s[k] = sym + lanes.begin(half + k), c[k] = ctx + lanes.begin(half + k);
      for (uint64_t j = lanes.common(); j-- > 0;) {
        v.put_value(xs[0], s[0][j], c[0][j], ws[0]);
        v.put_value(xs[1], s[1][j], c[1][j], ws[1]);
        v.put_value(xs[2], s[2][j], c[2][j], ws[2]);
        v.put_value(xs[3], s[3][j], c[3][j], ws[3]);
      }
      for (unsigned k = 0; k < 4; ++k) x[half + k] = xs[k], w[half + k] = ws[k];
    }
    ByteWriter head;
    for (unsigned k = 0; k < kLanes; ++k) head.u32(x[k]);
    for (unsigned k = 0; k + 1 < kLanes; ++k) head.varint(uint64_t(w_end[k] - w[k]));
    out.insert(out.end(), head.buf.begin(), head.buf.end());
    for (unsigned k = 0; k < kLanes; ++k) {
      const auto* bytes = reinterpret_cast<const uint8_t*>(w[k]);  // little-endian (format.hpp)
      out.insert(out.end(), bytes, bytes + 2 * (w_end[k] - w[k]));
    }
  }
};

// ---- decoder ------------------------------------------------------------------------------------
// A lane's whole state, small enough for registers.
struct RansLane {
  uint32_t x;
  ContextWindow window;
  SignContext sign;
};

// What the decoder's loop reads, as plain pointers: its byte stores may alias anything reached
// through a member, and locals keep the loads out of the loop.
struct RansLaneTables {
  ContextDecodeView magnitude;
  // Sign frequency by sign context, and kRansScale at index 7: the certain sign event of a zero.
  const uint32_t* sign_freq;
};

// Refills a state below the renormalization point with the next word. Unchecked (branch-free, the
// data decide the refills): the caller guarantees the word is there; checked: past the end it
// records an overrun instead.
template <bool kChecked>
EBGC_HD inline void rans_renormalize(uint32_t& x, const uint8_t*& p, const uint8_t* end, bool& overrun) {
  if (kChecked) {
    if (x < kRansLow) {
      if (end - p >= 2) {
        x = (x << 16) | uint32_t(p[0]) | uint32_t(p[1]) << 8;
        p += 2;
      } else {
        overrun = true;
        x = kRansLow;
      }
    }
    return;
  }
  uint16_t word;
  memcpy(&word, p, 2);
  const uint32_t refill = x < kRansLow;  // 0 or 1
  x = pick(refill, (x << 16) | word, x);
  p += 2 * refill;
}

// Decodes one value of a lane: symbol | negative << 7.
template <bool kChecked>
EBGC_HD inline uint8_t rans_lane_value(const RansLaneTables& t, RansLane& lane, const uint8_t*& p, const uint8_t* end,
                               bool& overrun) {
  uint32_t x = lane.x;
  const uint32_t s = t.magnitude.decode(lane.window.sum, x);
  rans_renormalize<kChecked>(x, p, end, overrun);
  // Sign event; a zero's has frequency kRansScale, which decodes as positive and keeps x.
  const uint32_t f0 = t.sign_freq[lane.sign.ctx() | (s ? 0u : kSignContexts)];
  const uint32_t slot = x & (kRansScale - 1);
  const uint32_t neg = slot >= f0;
  const uint32_t freq = pick(neg, kRansScale - f0, f0), start = pick(neg, f0, 0);
  x = freq * (x >> kRansScaleBits) + slot - start;
  rans_renormalize<kChecked>(x, p, end, overrun);
  lane.x = x;
  lane.window.push(s);
  lane.sign.push(s, neg);
  return uint8_t(s | neg << 7);
}

// Decodes a chunk of n values (begin: its first index in the tensor) into sym, position-major:
// value j of lane k goes to sym[kLanes * j + k] (kLanes * LaneSplit(n).len bytes; the slots past a
// short lane's end are not written).
inline void rans_lanes_decode_chunk(const ContextModel& m, const uint8_t* a, size_t size, uint64_t begin,
                                    uint64_t n, uint8_t* sym) {
  ByteReader r(a, size);
  const LaneSplit lanes(n);
  RansLane lane[kLanes];
  for (unsigned k = 0; k < kLanes; ++k) {
    lane[k].x = r.u32("rANS state");
    require_format(lane[k].x >= kRansLow, "bad rANS state");
    lane[k].sign = SignContext(m.sign_period, begin + lanes.begin(k));
  }
  uint64_t words[kLanes - 1], total = 0;
  for (auto& w : words) {
    w = r.varint("rANS lane length");
    require_format(w <= size / 2, "rANS lane longer than its chunk");
    total += w;
  }
  require_format(2 * total <= r.remaining(), "rANS lanes longer than their chunk");
  // The main loops run on a copy of stream A followed by zeros: a lane of a corrupt stream may
  // then read past its own words (into the next lane's, or the padding) but never past the
  // buffer, and the checks at the end refuse it. Bounding each lane by its own words instead
  // sent low-entropy chunks (few words a lane) to the checked scalar loop: 32% of the decode
  // time of the vgg fc layer.
  const size_t pad = size_t(4 * lanes.common() + 16);
  struct PaddedStreamA {};
  std::vector<uint8_t>& padded = thread_scratch<PaddedStreamA>(size + pad);
  std::memcpy(padded.data(), a, size);
  std::memset(padded.data() + size, 0, pad);
  a = padded.data();
  const uint8_t* const buffer_end = a + size + pad;
  const uint8_t *p[kLanes], *end[kLanes];
  p[0] = a + r.pos;
  for (unsigned k = 0; k < kLanes; ++k) {
    end[k] = k + 1 < kLanes ? p[k] + 2 * words[k] : a + size;
    if (k + 1 < kLanes) p[k + 1] = end[k];
  }
  alignas(32) uint32_t sign_freq[kSignContexts + 1];
  for (unsigned c = 0; c < kSignContexts; ++c) sign_freq[c] = m.sign_positive[c];
  sign_freq[kSignContexts] = kRansScale;
  const RansLaneTables t{m.view(), sign_freq};
  bool overrun = false;
  uint64_t j = 0;
  // Main loop, unchecked: a value reads at most 2 words, so it runs as many positions as every
  // lane has 4 bytes of buffer for (and 2 more: the vector loop's gathers read 4 bytes a word).
  while (j < lanes.common()) {
    uint64_t safe = lanes.common() - j;
    for (unsigned k = 0; k < kLanes; ++k) {
      const uint64_t rest = uint64_t(buffer_end - p[k]);
      safe = std::min<uint64_t>(safe, rest >= 2 ? (rest - 2) / 4 : 0);
    }
    if (!safe) break;
#ifdef EBGC_HAVE_AVX2
    if (kLanes == 8 && use_avx2()) {
      LaneVectors v;
      for (unsigned k = 0; k < kLanes; ++k) {
        v.x[k] = lane[k].x, v.sum[k] = lane[k].window.sum, v.last[k] = lane[k].window.last;
        v.left[k] = lane[k].sign.left, v.sign_sum[k] = lane[k].sign.sum, v.offset[k] = int32_t(p[k] - a);
      }
      rans_lanes_steps_avx2(t.magnitude, sign_freq, uint32_t(m.sign_period), v, a, j, safe, sym);
      for (unsigned k = 0; k < kLanes; ++k) {
        lane[k].x = v.x[k], lane[k].window.sum = v.sum[k], lane[k].window.last = v.last[k];
        lane[k].sign.left = v.left[k], lane[k].sign.sum = v.sign_sum[k], p[k] = a + v.offset[k];
      }
      j += safe;
      continue;
    }
#endif
    // Lanes in a local copy the compiler can keep in registers.
    RansLane l[kLanes];
    const uint8_t* q[kLanes];
    for (unsigned k = 0; k < kLanes; ++k) l[k] = lane[k], q[k] = p[k];
    for (const uint64_t stop = j + safe; j < stop; ++j) {
      for (unsigned k = 0; k < kLanes; ++k) sym[kLanes * j + k] = rans_lane_value<false>(t, l[k], q[k], end[k], overrun);
    }
    for (unsigned k = 0; k < kLanes; ++k) lane[k] = l[k], p[k] = q[k];
  }
  for (; j < lanes.len; ++j)
    for (unsigned k = 0; k < kLanes; ++k)
      if (j < lanes.count[k]) sym[kLanes * j + k] = rans_lane_value<true>(t, lane[k], p[k], end[k], overrun);
  bool settled = !overrun;
  for (unsigned k = 0; k < kLanes; ++k) settled = settled && p[k] == end[k] && lane[k].x == kRansLow;
  require_format(settled, "rANS chunk is corrupt");
}

}  // namespace ebgc
