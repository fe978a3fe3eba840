// The encoder's pass 1 for the symbol coders (Huffman, context), after quantization: symbols,
// contexts and their counts, and the raw low bits (coders/symbolize.hpp, coders/context_model.hpp).
#pragma once
#include <algorithm>
#include <cstdint>

#include "../coders/context_lanes.hpp"
#include "../coders/context_model.hpp"
#include "../coders/symbolize.hpp"
#include "../common/bitio.hpp"

namespace ebgc {

// Pass 1 of the symbol coders after quantization, over a chunk's codes in order: symbolize, take
// each value's contexts (coders/context_lanes.hpp: they restart at every lane) and count. sym gets symbol |
// negative << 7, ctx the event context; the raw low bits of large magnitudes go to `raw`.
struct SymbolPass {
  uint64_t sign_period, lane_len, next_lane;
  ContextWindow win;
  SignContext sc;
  FastBitWriter raw;

  // raw_out: room for < 28 bits a value of the chunk, plus 8 bytes of slack.
  SymbolPass(uint64_t begin, uint64_t end, uint64_t period, uint8_t* raw_out)
      : sign_period(period), lane_len(LaneSplit(end - begin).len), next_lane(begin + lane_len),
        sc(period, begin), raw(raw_out) {}

  // The codes of values [i0, i0 + m), a run of kSymbolRun at a time. A run of small codes only
  // (common at coarse bounds) takes a loop without raw bits; other runs are symbolized by a
  // vectorized loop first: both measured faster than one loop with a small/large branch, which
  // mispredicts wherever the two mix.
  template <class Counts>
  void run(const int32_t* code, uint64_t i0, uint64_t m, uint8_t* sym, uint8_t* ctx, Counts& co) {
    for (uint64_t k0 = 0; k0 < m; k0 += kSymbolRun) {
      const unsigned n = unsigned(std::min<uint64_t>(kSymbolRun, m - k0));
      const int32_t* c = code + k0;
      uint32_t large = 0;
      for (unsigned k = 0; k < n; ++k) large |= magnitude(c[k]) / kExactSymbols;  // any |code| >= 16
      if (large)
        run_codes<false>(c, i0 + k0, n, sym, ctx, co);
      else
        run_codes<true>(c, i0 + k0, n, sym, ctx, co);
    }
  }

  template <bool kSmall, class Counts>
  void run_codes(const int32_t* code, uint64_t i0, unsigned m, uint8_t* sym, uint8_t* ctx, Counts& co) {
    SymbolizedRun z;
    if (!kSmall) symbolize_codes(code, m, z);
    // The running state in locals: the byte stores to sym and ctx may alias anything reached
    // through `this`, which kept every field in memory, reloaded and stored once a value.
    ContextWindow w = win;
    SignContext sg = sc;
    FastBitWriter bits = raw;
    uint64_t lane_start = next_lane;
    for (unsigned k = 0; k < m; ++k) {
      if (i0 + k == lane_start) {
        w = ContextWindow();
        sg = SignContext(sign_period, lane_start);
        lane_start += lane_len;
      }
      const Symbolized s = kSmall ? symbolize_small(code[k]) : z.at(k);
      const uint32_t neg = s.raw & 1u;
      const unsigned bucket = w.bucket(), sign_ctx = sg.ctx();
      sym[i0 + k] = uint8_t(s.symbol | neg << 7);  // the sign is coded by the symbol coder, not raw
      ctx[i0 + k] = event_context(bucket, sign_ctx);
      ++co.counts[bucket][s.symbol];
      co.sign_counts[sign_ctx][neg] += s.symbol != 0;
      w.push(s.symbol);
      sg.push(s.symbol, neg);
      if (!kSmall) bits.put(s.raw >> 1, s.nextra);
    }
    win = w;
    sc = sg;
    raw = bits;
    next_lane = lane_start;
  }
};

}  // namespace ebgc
