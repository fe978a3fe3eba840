// Stage 4c — context-modelled rANS over the symbols of symbolize.hpp.
// The context of a symbol is the sum of the 4 symbols before it (its chunk's start counts as
// zeros): gradients have a local scale, so a run of small codes predicts small codes. The 16
// context buckets are merged per tensor, adjacent ones only, while merging lowers the estimated
// size (entropy + table); each merged group gets its own frequency table of 12-bit precision.
// Two interleaved 32-bit rANS states with 16-bit renormalization; the encoder runs backwards.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bitio.hpp"
#include "bytes.hpp"
#include "errors.hpp"
#include "symbolize.hpp"

namespace ebgc {

constexpr unsigned kCtxHistory = 4;  // measured best of 2, 4, 8, 16 on the resnet trace
constexpr unsigned kCtxBuckets = 16;
constexpr unsigned kCtxMaxSum = kCtxHistory * (kSymbols - 1);
constexpr unsigned kRansScaleBits = 12;
constexpr uint32_t kRansScale = 1u << kRansScaleBits;
constexpr uint32_t kRansLow = 1u << 16;

struct ContextBucketLut {
  std::array<uint8_t, kCtxMaxSum + 1> bucket{};
  constexpr ContextBucketLut() {
    // Upper ends of buckets 0..14 for twice the sum (about sqrt(2) apart); above is bucket 15.
    constexpr unsigned upper[kCtxBuckets - 1] = {0, 1, 2, 3, 5, 7, 10, 14, 19, 27, 38, 54, 76, 108, 152};
    for (unsigned s = 0; s <= kCtxMaxSum; ++s) {
      unsigned b = 0;
      while (b < kCtxBuckets - 1 && 2 * s > upper[b]) ++b;
      bucket[s] = uint8_t(b);
    }
  }
};
inline constexpr ContextBucketLut kCtxBucketLut{};

// Running context: the sum of the last kCtxHistory symbols.
struct ContextWindow {
  uint8_t ring[kCtxHistory] = {};
  unsigned sum = 0, head = 0;
  inline unsigned bucket() const { return kCtxBucketLut.bucket[sum]; }
  inline void push(uint32_t s) {
    sum += s - ring[head];
    ring[head] = uint8_t(s);
    head = (head + 1) & (kCtxHistory - 1);
  }
};

using ContextCounts = std::array<std::array<uint64_t, kSymbols>, kCtxBuckets>;

// Signs of a conv kernel's gradient tend to agree (one output delta times similar input patches),
// so a sign is coded with the running sign sum of the earlier nonzero codes of its kernel as
// context: 7 binary tables, sum clamped to [-3, 3]. A kernel is `period` consecutive values (H*W
// for OIHW weights, 1 otherwise: then there is one table, about a bit a sign). The sum restarts
// at each kernel and at each chunk.
constexpr unsigned kSignContexts = 7;
constexpr uint64_t kMaxSignPeriod = uint64_t(1) << 20;
using SignCounts = std::array<std::array<uint64_t, 2>, kSignContexts>;

struct SignContext {
  uint64_t period, left;
  int sum = 0;
  SignContext(uint64_t p, uint64_t begin) : period(p), left(p - begin % p) {}
  inline unsigned ctx() const { return unsigned((sum < -3 ? -3 : sum > 3 ? 3 : sum) + 3); }
  inline void push(uint32_t symbol, uint32_t negative) {  // after every value, zeros included
    if (symbol) sum += negative ? -1 : 1;
    if (--left == 0) left = period, sum = 0;
  }
};

struct ContextModel {
  uint8_t group_of[kCtxBuckets] = {};  // bucket -> group
  unsigned groups = 0;
  std::vector<std::array<uint16_t, kSymbols>> freq;          // per group
  std::vector<std::vector<uint32_t>> table;                   // decoder view, kRansScale per group
  std::array<const uint32_t*, kCtxMaxSum + 1> table_for_sum{}; // context sum -> its group's table
  uint64_t sign_period = 1;
  std::array<uint16_t, kSignContexts> sign_positive{};       // frequency of '+', in [1, scale-1]
  // Encoder view of every table an event can use: magnitude groups at 0..15, sign contexts at
  // kCtxBuckets + c, so the encoder's loop has no branch on the kind of event.
  static constexpr unsigned kEncoderTables = kCtxBuckets + kSignContexts;
  std::array<std::array<uint16_t, kSymbols>, kEncoderTables> enc_freq{}, enc_start{};
  std::array<std::array<double, kSymbols>, kEncoderTables> enc_inv{};

  // Move-only: table_for_sum points into table, whose buffers a move keeps and a copy would not.
  ContextModel() = default;
  ContextModel(ContextModel&&) = default;
  ContextModel& operator=(ContextModel&&) = default;
  ContextModel(const ContextModel&) = delete;
  ContextModel& operator=(const ContextModel&) = delete;

  // Normalize counts to sum kRansScale with every present symbol >= 1.
  static std::array<uint16_t, kSymbols> normalize(const std::array<uint64_t, kSymbols>& c) {
    std::array<uint16_t, kSymbols> f{};
    uint64_t total = 0;
    for (uint64_t v : c) total += v;
    if (!total) {
      f[0] = uint16_t(kRansScale);  // unused group: any valid table
      return f;
    }
    int64_t sum = 0;
    unsigned largest = 0;
    for (unsigned s = 0; s < kSymbols; ++s) {
      if (!c[s]) continue;
      uint64_t v = (c[s] * kRansScale) / total;
      f[s] = uint16_t(v ? v : 1);
      sum += f[s];
      if (c[s] > c[largest] || !c[largest]) largest = s;
    }
    int64_t diff = int64_t(kRansScale) - sum;
    if (diff >= 0) {
      f[largest] = uint16_t(f[largest] + diff);
    } else {
      // Take back from the largest frequencies, never below 1.
      while (diff < 0) {
        unsigned big = 0;
        for (unsigned s = 1; s < kSymbols; ++s)
          if (f[s] > f[big]) big = s;
        int64_t take = std::min<int64_t>(-diff, int64_t(f[big]) - 1);
        if (take <= 0) take = 1;  // unreachable: kSymbols < kRansScale
        f[big] = uint16_t(f[big] - take);
        diff += take;
      }
    }
    return f;
  }

  static double estimate_bits(const std::array<uint64_t, kSymbols>& c) {
    uint64_t total = 0;
    unsigned top = 0;
    for (unsigned s = 0; s < kSymbols; ++s) {
      total += c[s];
      if (c[s]) top = s + 1;
    }
    if (!total) return 0;
    double bits = 8;  // alphabet size byte
    for (unsigned s = 0; s < top; ++s) {
      if (!c[s]) {
        bits += 1;
        continue;
      }
      double p = double(c[s]) / double(total);
      bits += double(c[s]) * -std::log2(p);
      bits += 2 * std::log2(p * kRansScale + 2) + 1;  // gamma-coded frequency
    }
    return bits;
  }

  // Build from the per-bucket counts of one tensor.
  static ContextModel fit(const ContextCounts& counts, const SignCounts& signs, uint64_t sign_period) {
    std::vector<std::array<uint64_t, kSymbols>> g(counts.begin(), counts.end());
    std::vector<std::vector<unsigned>> members(kCtxBuckets);
    std::vector<double> cost(kCtxBuckets);  // estimated bits of each group
    for (unsigned b = 0; b < kCtxBuckets; ++b) members[b] = {b}, cost[b] = estimate_bits(g[b]);
    // gain[i]: bits saved by merging groups i and i+1; only the merged group's neighbours change.
    auto merged_cost = [&](size_t i) {
      std::array<uint64_t, kSymbols> m;
      for (unsigned s = 0; s < kSymbols; ++s) m[s] = g[i][s] + g[i + 1][s];
      return estimate_bits(m);
    };
    std::vector<double> pair(kCtxBuckets - 1);
    for (size_t i = 0; i + 1 < g.size(); ++i) pair[i] = merged_cost(i);
    for (;;) {
      double best_gain = 0;
      size_t best = SIZE_MAX;
      for (size_t i = 0; i + 1 < g.size(); ++i) {
        double gain = cost[i] + cost[i + 1] - pair[i];
        if (gain > best_gain) best_gain = gain, best = i;
      }
      if (best == SIZE_MAX) break;
      for (unsigned s = 0; s < kSymbols; ++s) g[best][s] += g[best + 1][s];
      members[best].insert(members[best].end(), members[best + 1].begin(), members[best + 1].end());
      cost[best] = pair[best];
      g.erase(g.begin() + best + 1);
      members.erase(members.begin() + best + 1);
      cost.erase(cost.begin() + best + 1);
      pair.erase(pair.begin() + best);
      if (best > 0) pair[best - 1] = merged_cost(best - 1);
      if (best + 1 < g.size()) pair[best] = merged_cost(best);
    }
    ContextModel m;
    m.groups = unsigned(g.size());
    for (unsigned k = 0; k < m.groups; ++k)
      for (unsigned b : members[k]) m.group_of[b] = uint8_t(k);
    for (auto& c : g) m.freq.push_back(normalize(c));
    m.sign_period = sign_period;
    for (unsigned c = 0; c < kSignContexts; ++c) {
      const uint64_t pos = signs[c][0], total = signs[c][0] + signs[c][1];
      const uint64_t f = total ? (pos * kRansScale + total / 2) / total : kRansScale / 2;
      m.sign_positive[c] = uint16_t(std::min<uint64_t>(std::max<uint64_t>(f, 1), kRansScale - 1));
    }
    m.finish_encoder();
    return m;
  }

  // Encoder view: frequencies, cumulative starts and reciprocals of every table.
  void finish_encoder() {
    for (unsigned k = 0; k < groups; ++k) {
      uint32_t cum = 0;
      for (unsigned s = 0; s < kSymbols; ++s) {
        enc_freq[k][s] = freq[k][s];
        enc_start[k][s] = uint16_t(cum);
        enc_inv[k][s] = freq[k][s] ? 1.0 / freq[k][s] : 0.0;
        cum += freq[k][s];
      }
    }
    for (unsigned c = 0; c < kSignContexts; ++c) {
      const unsigned k = kCtxBuckets + c;
      const uint16_t f = sign_positive[c];
      enc_freq[k][0] = f, enc_freq[k][1] = uint16_t(kRansScale - f);
      enc_start[k][0] = 0, enc_start[k][1] = f;
      enc_inv[k][0] = 1.0 / f, enc_inv[k][1] = 1.0 / (kRansScale - f);
    }
  }

  // Decoder view: one 4096-entry table per group (symbol, frequency, offset in its slot range).
  void finish_decoder() {
    table.assign(groups, std::vector<uint32_t>(kRansScale));
    for (unsigned k = 0; k < groups; ++k) {
      uint32_t cum = 0;
      for (unsigned s = 0; s < kSymbols; ++s) {
        for (uint32_t j = 0; j < freq[k][s]; ++j)
          table[k][cum + j] = s | (uint32_t(freq[k][s] - 1) << 7) | (j << 19);
        cum += freq[k][s];
      }
    }
    // One load from the running sum to the decode table keeps the decoder's serial chain short.
    for (unsigned sum = 0; sum <= kCtxMaxSum; ++sum)
      table_for_sum[sum] = table[group_of[kCtxBucketLut.bucket[sum]]].data();
  }

  // Serialization: group count, 16 bucket->group nibbles, then per group the alphabet size and
  // the Elias-gamma coded (frequency + 1) of each symbol below it.
  void write(ByteWriter& w) const {
    w.u8(uint8_t(groups));
    for (unsigned b = 0; b < kCtxBuckets; b += 2) w.u8(uint8_t(group_of[b] | group_of[b + 1] << 4));
    BitWriter bits;
    for (unsigned k = 0; k < groups; ++k) {
      unsigned top = 0;
      for (unsigned s = 0; s < kSymbols; ++s)
        if (freq[k][s]) top = s + 1;
      bits.put(top, 7);
      for (unsigned s = 0; s < top; ++s) {
        uint32_t v = uint32_t(freq[k][s]) + 1;  // >= 1
        unsigned nb = 31u - unsigned(__builtin_clz(v));
        bits.put(0, nb);                                  // nb zeros, a one, then the low nb bits
        bits.put(1u | ((v & ((1u << nb) - 1)) << 1), nb + 1);
      }
    }
    bits.flush();
    w.varint(bits.out.size());
    w.bytes(bits.out.data(), bits.out.size());
    w.varint(sign_period);
    for (uint16_t f : sign_positive) w.u8(uint8_t(f)), w.u8(uint8_t(f >> 8));
  }

  static ContextModel read(ByteReader& r) {
    ContextModel m;
    m.groups = r.u8("context group count");
    require_format(m.groups >= 1 && m.groups <= kCtxBuckets, "bad context group count");
    const uint8_t* map = r.take(kCtxBuckets / 2, "context bucket map");
    for (unsigned b = 0; b < kCtxBuckets; ++b) {
      m.group_of[b] = (map[b / 2] >> (4 * (b & 1))) & 15u;
      require_format(m.group_of[b] < m.groups, "context bucket maps to a missing group");
    }
    uint64_t nbytes = r.varint("context table length");
    const uint8_t* p = r.take(nbytes, "context tables");
    BitReader bits(p, size_t(nbytes));
    m.freq.assign(m.groups, {});
    for (unsigned k = 0; k < m.groups; ++k) {
      bits.refill();
      unsigned top = bits.get(7);
      require_format(top <= kSymbols, "context alphabet too large");
      uint32_t sum = 0;
      for (unsigned s = 0; s < top; ++s) {
        bits.refill();
        unsigned nb = 0;
        while (nb <= 13 && bits.peek(1) == 0) {
          bits.skip(1);
          ++nb;
          if (bits.bits < 16) bits.refill();
        }
        require_format(nb <= 13, "bad context frequency code");
        bits.refill();
        uint32_t w = bits.get(nb + 1);  // the one, then the low bits
        uint32_t v = (1u << nb) | (w >> 1);
        m.freq[k][s] = uint16_t(v - 1);
        sum += v - 1;
        require_format(!bits.overran(), "context tables truncated");
      }
      require_format(sum == kRansScale, "context frequencies do not sum to the scale");
    }
    m.sign_period = r.varint("sign period");
    require_format(m.sign_period >= 1 && m.sign_period <= kMaxSignPeriod, "bad sign period");
    for (auto& f : m.sign_positive) {
      const uint8_t* b = r.take(2, "sign frequencies");
      f = uint16_t(b[0] | b[1] << 8);
      require_format(f >= 1 && f < kRansScale, "bad sign frequency");
    }
    m.finish_decoder();
    return m;
  }
};

// Encodes one chunk; sym holds the magnitude symbol in bits 0-6 and the sign in bit 7, begin is
// the chunk's first index in the tensor (for the kernel phase of the sign context). Returns the
// rANS bytes: two states, then 16-bit words. Events (a magnitude, then a sign if nonzero)
// alternate between the two states in decoding order.
inline void rans_encode_chunk(const ContextModel& m, const uint8_t* sym, size_t n, uint64_t begin,
                              std::vector<uint16_t>& events, std::vector<uint8_t>& out) {
  events.clear();
  events.reserve(2 * n);
  ContextWindow win;
  SignContext sc(m.sign_period, begin);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t s = sym[i] & 127u, neg = sym[i] >> 7;
    events.push_back(uint16_t(m.group_of[win.bucket()] << 8 | s));
    if (s) events.push_back(uint16_t((kCtxBuckets + sc.ctx()) << 8 | neg));
    win.push(s);
    sc.push(s, neg);
  }
  std::vector<uint16_t> words;
  words.reserve(n / 4 + 16);
  auto put = [&](uint32_t& xs, uint16_t event) {
    const unsigned id = event >> 8, v = event & 255u;
    const uint32_t f = m.enc_freq[id][v], st = m.enc_start[id][v];
    if (uint64_t(xs) >= (uint64_t(f) << (32 - kRansScaleBits))) {
      words.push_back(uint16_t(xs));
      xs >>= 16;
    }
    // xs / f through a double reciprocal: its error (< 2^-20) can only truncate an exact
    // multiple one short, which the remainder test corrects. Much faster than a divide.
    uint32_t q = uint32_t(double(xs) * m.enc_inv[id][v]);
    uint32_t r = xs - q * f;
    if (r >= f) ++q, r -= f;
    xs = (q << kRansScaleBits) + r + st;
  };
  // Event e uses state e & 1; going backwards two at a time keeps both states in registers.
  uint32_t x[2] = {kRansLow, kRansLow};
  uint32_t x0 = kRansLow, x1 = kRansLow;
  size_t e = events.size();
  if (e & 1) put(x0, events[--e]);
  while (e) {
    e -= 2;
    put(x1, events[e + 1]);
    put(x0, events[e]);
  }
  x[0] = x0, x[1] = x1;
  size_t base = out.size();
  out.resize(base + 8 + 2 * words.size());
  uint8_t* p = out.data() + base;
  for (int k = 0; k < 2; ++k)
    for (int b = 0; b < 4; ++b) *p++ = uint8_t(x[k] >> (8 * b));
  for (size_t j = words.size(); j-- > 0;) {
    *p++ = uint8_t(words[j]);
    *p++ = uint8_t(words[j] >> 8);
  }
}

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
    const uint32_t e = m.table_for_sum[win.sum][xs & (kRansScale - 1)];
    const uint32_t s = e & 127u;
    xs = (((e >> 7) & 4095u) + 1) * (xs >> kRansScaleBits) + (e >> 19);
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

}  // namespace ebgc
