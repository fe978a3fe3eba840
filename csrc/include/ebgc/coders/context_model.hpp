// Stage 4c — the context model shared by the context coders: symbols (symbolize.hpp) are coded
// with a frequency table chosen by their context. The context of a symbol is the sum of the 4
// symbols before it in its lane (a lane's start counts as zeros): gradients have a local scale, so
// a run of small codes predicts small codes. The 16 context buckets are merged per tensor,
// adjacent ones only, while merging lowers the estimated size (entropy + table); each merged group
// gets its own frequency table of 12-bit precision. Signs are coded with a kernel sign context.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../common/bitio.hpp"
#include "../common/bytes.hpp"
#include "../common/errors.hpp"
#include "../common/hd.hpp"
#include "../coders/symbolize.hpp"

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

// Running context: the sum of the last kCtxHistory symbols (each < 128, one byte of `last` each).
struct ContextWindow {
  static_assert(kCtxHistory == 4, "the window is one 32-bit word");
  uint32_t last = 0, sum = 0;
  inline unsigned bucket() const { return kCtxBucketLut.bucket[sum]; }
  EBGC_HD inline void push(uint32_t s) {
    sum += s - (last >> 24);
    last = last << 8 | s;
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
  uint32_t period = 1, left = 1;  // period <= kMaxSignPeriod
  int sum = 0;
  SignContext() = default;
  EBGC_HD SignContext(uint64_t p, uint64_t begin) : period(uint32_t(p)), left(uint32_t(p - begin % p)) {}
  // The sum clamped to [-3, 3], plus 3, with shifts: GCC had compiled the clamp into jumps, which
  // mispredict where a kernel's sum wanders around +-3.
  EBGC_HD inline unsigned ctx() const {
    int c = sum + 3;
    c &= ~(c >> 31);                      // max(c, 0)
    c = 6 + ((c - 6) & ((c - 6) >> 31));  // min(c, 6)
    return unsigned(c);
  }
  // After every value, zeros included. The sum's step (+1, -1, 0 for a zero) without a branch:
  // whether a code is zero, and its sign, are data no predictor learns (GCC had made a jump of the
  // ternary this replaced). The kernel's end is regular, and a branch on it predicts well.
  EBGC_HD inline void push(uint32_t symbol, uint32_t negative) {
    const int nonzero = symbol != 0;
    sum += nonzero - 2 * (nonzero & int(negative));
    const bool kernel_end = --left == 0;
    left = kernel_end ? period : left;
    sum = kernel_end ? 0 : sum;
  }
};

// A decoder slot: its symbol (7 bits), the symbol's frequency (13 bits: up to kRansScale) and the
// slot's offset in the symbol's range (12 bits), so that one lookup does the whole step.
inline uint32_t slot_entry_of(uint32_t symbol, uint32_t freq, uint32_t offset) {
  return symbol | freq << 7 | offset << 20;
}
static_assert(kSymbols <= 128 && kRansScaleBits == 12, "slot entry fields");

// The decoder's tables as plain pointers: a decoder's byte stores may alias anything reached
// through a member, so its loop copies these into locals once.
struct ContextDecodeView {
  const uint32_t* slot_entry;
  const uint32_t* table_for_sum;

  // The magnitude symbol in context `sum` whose slot range holds x's low bits; x steps past it:
  // x' = freq * (x >> 12) + slot - start.
  EBGC_HD inline uint32_t decode(uint32_t sum, uint32_t& x) const {
    const uint32_t e = slot_entry[table_for_sum[sum] + (x & (kRansScale - 1))];
    x = ((e >> 7) & 0x1fffu) * (x >> kRansScaleBits) + (e >> 20);
    return e & 127u;
  }
};

struct ContextModel {
  uint8_t group_of[kCtxBuckets] = {};  // bucket -> group
  unsigned groups = 0;
  std::vector<std::array<uint16_t, kSymbols>> freq;          // per group
  // Decoder view: per group, the entry of each of its kRansScale slots (slot_entry_of); per
  // context sum, its group times kRansScale. One 32-bit lookup a symbol measured 11% faster in the
  // lane decoder than the byte table of symbols plus a table of (frequency, start) it replaced
  // (two dependent gathers), although the tables no longer all fit the first-level cache.
  std::vector<uint32_t> slot_entry;
  std::array<uint32_t, kCtxMaxSum + 1> table_for_sum{};
  uint64_t sign_period = 1;
  std::array<uint16_t, kSignContexts> sign_positive{};       // frequency of '+', in [1, scale-1]
  // Move-only: the decoder tables are large and need not be copied.
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
    return m;
  }

  void finish_decoder() {
    // Every tensor's decode builds these (16 KB a group), so the fill is a vectorizable loop per
    // symbol: its entry with offset 0, or-ed with a ramp of offsets.
    static const std::array<uint32_t, kRansScale> offsets = [] {
      std::array<uint32_t, kRansScale> r{};
      for (uint32_t q = 0; q < kRansScale; ++q) r[q] = slot_entry_of(0, 0, q);
      return r;
    }();
    slot_entry.resize(size_t(groups) * kRansScale);
    for (unsigned k = 0; k < groups; ++k) {
      uint32_t* slots = slot_entry.data() + size_t(k) * kRansScale;
      for (unsigned s = 0, cum = 0; s < kSymbols; cum += freq[k][s], ++s) {
        const uint32_t first = slot_entry_of(s, freq[k][s], 0), f = freq[k][s];
        uint32_t* out = slots + cum;
        for (uint32_t q = 0; q < f; ++q) out[q] = first | offsets[q];
      }
    }
    for (unsigned sum = 0; sum <= kCtxMaxSum; ++sum)
      table_for_sum[sum] = uint32_t(group_of[kCtxBucketLut.bucket[sum]]) * kRansScale;
  }

  ContextDecodeView view() const { return {slot_entry.data(), table_for_sum.data()}; }

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

}  // namespace ebgc
