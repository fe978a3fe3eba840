// The codec of one tensor: bound -> predictor (zero, or earlier reconstructions of a stream) ->
// linear quantizer -> entropy coder -> container.
// Work is split into chunks of 2^chunk_log2 values that are coded independently (threads), while
// the entropy tables (Huffman lengths, context model) are fitted once per tensor.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "bitpack.hpp"
#include "bound.hpp"
#include "format.hpp"
#include "huffman.hpp"
#include "parallel.hpp"
#include "predictor_lowrank.hpp"
#include "predictor_scaled_previous.hpp"
#include "predictor_zero.hpp"
#include "quantizer.hpp"
#include "rans_context.hpp"
#include "rans_lanes.hpp"
#include "symbolize.hpp"

namespace ebgc {

constexpr int kCoderAuto = -1;

struct CompressOptions {
  BoundMode mode = BoundMode::Rel;
  double error_bound = 1e-2;
  int coder = kCoderAuto;  // kCoderAuto or a Coder value
  unsigned threads = 1;
  unsigned chunk_log2 = kDefaultChunkLog2;
  bool low_rank = true;  // let matrices try the low-rank predictor (predictor_choice.hpp)
  const FiniteRange* range = nullptr;  // the data's finite range, if the caller has it (rel mode)
};

// ---- outliers: values the quantizer could not bound, stored bit-exactly -------------------------
template <class T>
struct Outliers {
  std::vector<uint64_t> index;
  std::vector<T> value;
  void add(uint64_t i, T v) {
    index.push_back(i);
    value.push_back(v);
  }
  void append(const Outliers& o) {
    index.insert(index.end(), o.index.begin(), o.index.end());
    value.insert(value.end(), o.value.begin(), o.value.end());
  }
  void write(ByteWriter& w) const {
    w.varint(index.size());
    uint64_t prev = 0;
    for (size_t k = 0; k < index.size(); ++k) {
      w.varint(k ? index[k] - prev - 1 : index[k]);  // gaps: indices strictly increase
      prev = index[k];
    }
    w.bytes(value.data(), value.size() * sizeof(T));
  }
};

// ---- per-chunk encoder output ----------------------------------------------------------------
template <class T>
struct ChunkOut {
  std::vector<uint8_t> a, b;  // the chunk's two streams (coder-specific meaning)
  Outliers<T> outliers;
  ContextCounts counts{};     // symbol counts per context bucket (pass 1)
  SignCounts sign_counts{};   // signs of nonzero codes per sign context (pass 1)
  uint64_t bitpack_bytes = 0; // what bit-packing would cost (pass 1)
};

// Values quantized per step of the encoder's loops: a short run the compiler vectorizes.
constexpr unsigned kQuantRun = 256;

// Codes of x[i0, i0 + m) into code[0, m); values the quantizer cannot bound become outliers with
// code 0. rec (if given) receives the decoder's values, from the quantizer's own check.
template <class T, class Predictor>
inline unsigned quantize_codes(const T* x, uint64_t i0, unsigned m, const LinearQuantizer& qz,
                               const Predictor& predict, int32_t* code, T* rec) {
  unsigned failed = 0;
  if (rec)
    for (unsigned k = 0; k < m; ++k) failed += !qz.quantize(x[i0 + k], predict(i0 + k), code[k], rec[i0 + k]);
  else
    for (unsigned k = 0; k < m; ++k) failed += !qz.quantize(x[i0 + k], predict(i0 + k), code[k]);
  return failed;
}

#ifdef EBGC_HAVE_AVX2
// The same loop, inlined here and so compiled for AVX2 (4 doubles a vector instead of SSE2's 2):
// IEEE arithmetic without contraction, so the codes are the same bits (test_stages compares them).
template <class T, class Predictor>
__attribute__((target("avx2"))) unsigned quantize_codes_avx2(const T* x, uint64_t i0, unsigned m,
                                                             const LinearQuantizer& qz, const Predictor& predict,
                                                             int32_t* code, T* rec) {
  return quantize_codes(x, i0, m, qz, predict, code, rec);
}
#endif

template <class T, class Predictor>
inline void quantize_run(const T* x, uint64_t i0, unsigned m, const LinearQuantizer& qz,
                         const Predictor& predict, int32_t* code, Outliers<T>& outliers, T* rec) {
#ifdef EBGC_HAVE_AVX2
  const unsigned failed = use_avx2() ? quantize_codes_avx2(x, i0, m, qz, predict, code, rec)
                                     : quantize_codes(x, i0, m, qz, predict, code, rec);
#else
  const unsigned failed = quantize_codes(x, i0, m, qz, predict, code, rec);
#endif
  if (!failed) return;
  for (unsigned k = 0; k < m; ++k) {
    int32_t c;
    if (!qz.quantize(x[i0 + k], predict(i0 + k), c)) outliers.add(i0 + k, x[i0 + k]);
  }
}

// Bytes bit-packing would take for code[0, m), m a multiple of kPackBlock or the chunk's tail.
inline uint64_t bitpack_cost(const int32_t* code, unsigned m) {
  uint64_t bytes = 0;
  for (unsigned b0 = 0; b0 < m; b0 += kPackBlock) {
    uint32_t acc = 0;
    for (unsigned k = b0; k < std::min(m, b0 + kPackBlock); ++k) acc |= zigzag(code[k]);
    bytes += 1 + packed_block_bytes(bit_width(acc));
  }
  return bytes;
}

// Pass 1 of the symbol coders after quantization, over a chunk's codes in order: symbolize, take
// each value's contexts (rans_lanes.hpp: they restart at every lane) and count. sym gets symbol |
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

// The encoder's per-thread stream buffer (thread_scratch).
struct ChunkStreamScratch {};
inline std::vector<uint8_t>& chunk_scratch(uint64_t bytes) { return thread_scratch<ChunkStreamScratch>(size_t(bytes)); }

template <class T, class Predictor>
void analyze_chunk(const T* x, uint64_t begin, uint64_t end, const LinearQuantizer& qz,
                   const Predictor& predict, uint64_t sign_period, uint8_t* sym, uint8_t* ctx,
                   ChunkOut<T>& co, T* rec) {
  // The raw bits go to a per-thread buffer sized for the worst case, then to the chunk's output
  // at their size: every chunk keeping a worst-case buffer had cost 0.9x the input in memory.
  std::vector<uint8_t>& scratch = chunk_scratch((end - begin) * 28 / 8 + 16);
  SymbolPass pass(begin, end, sign_period, scratch.data());
  const auto& chunk_predict = predict.for_range(begin, end);
  int32_t code[kQuantRun];
  for (uint64_t i0 = begin; i0 < end; i0 += kQuantRun) {
    const unsigned m = unsigned(std::min<uint64_t>(kQuantRun, end - i0));
    quantize_run(x, i0, m, qz, chunk_predict, code, co.outliers, rec);
    co.bitpack_bytes += bitpack_cost(code, m);
    pass.run(code, i0, m, sym, ctx, co);
  }
  co.b.assign(scratch.data(), pass.raw.finish());
}

template <class T, class Predictor>
void bitpack_chunk(const T* x, uint64_t begin, uint64_t end, const LinearQuantizer& qz,
                   const Predictor& predict, ChunkOut<T>& co, T* rec) {
  const uint64_t blocks = (end - begin + kPackBlock - 1) / kPackBlock;
  co.a.resize(blocks);
  std::vector<uint8_t>& scratch = chunk_scratch((end - begin) * 4 + 4 * kPackBlock);  // as analyze_chunk
  uint8_t* out = scratch.data();
  const auto& chunk_predict = predict.for_range(begin, end);
  int32_t code[kQuantRun];
  uint32_t v[kPackBlock];
  for (uint64_t i0 = begin; i0 < end; i0 += kQuantRun) {
    const unsigned m = unsigned(std::min<uint64_t>(kQuantRun, end - i0));
    quantize_run(x, i0, m, qz, chunk_predict, code, co.outliers, rec);
    for (unsigned b0 = 0; b0 < m; b0 += kPackBlock) {
      uint32_t acc = 0;
      for (unsigned k = 0; k < kPackBlock; ++k) {
        v[k] = b0 + k < m ? zigzag(code[b0 + k]) : 0u;
        acc |= v[k];
      }
      const unsigned w = bit_width(acc);
      co.a[(i0 - begin + b0) / kPackBlock] = uint8_t(w);
      if (w) {
        pack_block(v, w, out);
        out += packed_block_bytes(w);
      }
    }
  }
  co.b.assign(scratch.data(), out);
}

// Each symbol's code, then its sign bit if it is nonzero.
inline void huffman_encode_symbols(const HuffmanCode& hc, const uint8_t* sym, size_t n,
                                   std::vector<uint8_t>& out) {
  BitWriter w;
  w.out.reserve(n / 2);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t s = sym[i] & 127u;
    hc.put(w, s);
    if (s) w.put(sym[i] >> 7, 1);
  }
  w.flush();
  out = std::move(w.out);
  out.shrink_to_fit();  // the reserve above is a guess; every chunk's stream stays until the end
}

// Estimated bytes of the symbol streams under each symbol coder (tables included).
inline double context_cost(const ContextModel& m, const ContextCounts& counts, const SignCounts& signs) {
  static const auto log2tab = [] {
    std::vector<double> t(kRansScale + 1, 0);
    for (uint32_t f = 1; f <= kRansScale; ++f) t[f] = std::log2(double(f));
    return t;
  }();
  double bits = 0;
  for (unsigned b = 0; b < kCtxBuckets; ++b)
    for (unsigned s = 0; s < kSymbols; ++s)
      if (counts[b][s]) bits += double(counts[b][s]) * (kRansScaleBits - log2tab[m.freq[m.group_of[b]][s]]);
  for (unsigned c = 0; c < kSignContexts; ++c)
    bits += double(signs[c][0]) * (kRansScaleBits - log2tab[m.sign_positive[c]]) +
            double(signs[c][1]) * (kRansScaleBits - log2tab[kRansScale - m.sign_positive[c]]);
  ByteWriter w;
  m.write(w);
  return bits / 8 + double(w.size());
}

inline double huffman_cost(const std::vector<uint8_t>& len, const std::vector<uint64_t>& total) {
  double bits = 0;
  for (size_t s = 0; s < len.size(); ++s) bits += double(total[s]) * len[s];
  return bits / 8 + (len.size() + 1) / 2 + 1;
}

// reconstruction (optional, n values): receives exactly what decompress() will return, so a
// stateful encoder need not decode its own output.
// Values per kernel for the sign context. OIHW weights (any tensor of rank >= 3): H*W, the product
// of the dimensions after the first two. Matrices: a row. A linear layer's weight gradient is a
// sum of outer products delta x input, and inputs after a ReLU are >= 0, so a row's signs follow
// the sign of its output's delta (measured: vgg fc signs 59 -> 35 KB in 4 messages at REL 1e-2;
// never worse than one context on any trace). Anything else, and kernels over the cap: 1.
inline uint64_t kernel_size(const std::vector<uint64_t>& shape) {
  if (shape.size() == 2) return shape[1] >= 1 && shape[1] <= kMaxSignPeriod ? shape[1] : 1;
  if (shape.size() < 3) return 1;
  uint64_t k = 1;
  for (size_t d = 2; d < shape.size(); ++d) {
    if (shape[d] == 0 || k > kMaxSignPeriod / shape[d]) return 1;
    k *= shape[d];
  }
  return k;
}

template <class T, class Predictor = ZeroPredictor>
std::vector<uint8_t> compress(const T* x, const std::vector<uint64_t>& shape, const CompressOptions& opt,
                              const Predictor& predict = Predictor(), T* reconstruction = nullptr) {
  check_requested_bound(opt.error_bound);
  if (shape.size() > kMaxDims) throw InvalidArgument("too many dimensions (at most 16)");
  if (opt.chunk_log2 < kMinChunkLog2 || opt.chunk_log2 > kMaxChunkLog2)
    throw InvalidArgument("chunk_log2 out of range");
  if (opt.coder == int(Coder::ContextSerial))
    throw InvalidArgument("coder 3 (the serial context layout) is decoded but no longer written: use 4 (its lane layout)");
  if (opt.coder != kCoderAuto && (opt.coder < 0 || opt.coder >= int(kCoderCount)))
    throw InvalidArgument("unknown coder");
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  if (n > kMaxElements) throw InvalidArgument("array too large");
  const unsigned threads = std::max(1u, opt.threads);

  Header h;
  h.dtype = dtype_of<T>();
  h.mode = opt.mode;
  h.shape = shape;
  h.chunk_log2 = uint8_t(opt.chunk_log2);
  h.error_bound = opt.error_bound;
  predict.describe(h);
  const uint64_t chunk = h.chunk_elems(), nchunks = h.chunks();
  const uint64_t sign_period = kernel_size(shape);
  auto chunk_end = [&](uint64_t c) { return std::min(n, (c + 1) * chunk); };

  FiniteRange range;
  if (opt.mode == BoundMode::Rel && opt.range) {
    range = *opt.range;
  } else if (opt.mode == BoundMode::Rel) {
    std::vector<FiniteRange> part(nchunks);
    parallel_for(nchunks, threads, [&](size_t c) { part[c] = finite_range(x + c * chunk, chunk_end(c) - c * chunk); });
    for (auto& p : part) range.merge(p);
  }
  h.abs_bound = absolute_bound(opt.mode, opt.error_bound, range);
  const LinearQuantizer qz(h.abs_bound);
  const double raw_cost = double(n * sizeof(T));

  if (opt.coder == int(Coder::Raw)) {
    ZeroPredictor().describe(h);  // raw values need no prediction
    h.coder = Coder::Raw;
    if (reconstruction && n) std::memcpy(reconstruction, x, n * sizeof(T));
    return seal(h, reinterpret_cast<const uint8_t*>(x), n * sizeof(T));
  }

  std::vector<ChunkOut<T>> out(nchunks);
  Outliers<T> outliers;
  ByteWriter tables;
  if (opt.coder == int(Coder::Bitpack)) {
    h.coder = Coder::Bitpack;
    parallel_for(nchunks, threads, [&](size_t c) { bitpack_chunk(x, c * chunk, chunk_end(c), qz, predict, out[c], reconstruction); });
  } else {
    // Per value: its symbol and sign, and the contexts of both (uninitialized: pass 1 fills them).
    std::unique_ptr<uint8_t[]> sym(new uint8_t[n]), ctx(new uint8_t[n]);
    parallel_for(nchunks, threads, [&](size_t c) {
      analyze_chunk(x, c * chunk, chunk_end(c), qz, predict, sign_period, sym.get(), ctx.get(), out[c],
                    reconstruction);
    });
    ContextCounts counts{};
    SignCounts signs{};
    std::vector<uint64_t> total(kSymbols, 0);
    double raw_bits = 0, packed = 0, n_out = 0;
    for (auto& co : out) {
      for (unsigned b = 0; b < kCtxBuckets; ++b)
        for (unsigned s = 0; s < kSymbols; ++s) counts[b][s] += co.counts[b][s], total[s] += co.counts[b][s];
      for (unsigned c = 0; c < kSignContexts; ++c) signs[c][0] += co.sign_counts[c][0], signs[c][1] += co.sign_counts[c][1];
      raw_bits += double(co.b.size());
      packed += double(co.bitpack_bytes);
      n_out += double(co.outliers.index.size());
    }
    const double outlier_cost = n_out * (sizeof(T) + 2);
    const ContextModel model = ContextModel::fit(counts, signs, sign_period);
    const std::vector<uint8_t> huff_len = huffman_lengths(total);
    const double raw_signs = double(n - total[0]) / 8;  // Huffman sends signs as plain bits
    double cost_context = context_cost(model, counts, signs) + raw_bits + (4.0 + 4 * kLanes) * nchunks + outlier_cost;
    double cost_huffman = huffman_cost(huff_len, total) + raw_signs + raw_bits + 4.0 * nchunks + outlier_cost;
    double cost_bitpack = packed + 3.0 * nchunks + outlier_cost;
    Coder pick;
    if (opt.coder == kCoderAuto) {
      pick = Coder::Context;
      double best = cost_context;
      if (cost_huffman <= best) pick = Coder::Huffman, best = cost_huffman;  // faster at equal size
      if (cost_bitpack <= best) pick = Coder::Bitpack, best = cost_bitpack;
      if (raw_cost <= best) pick = Coder::Raw;
    } else {
      pick = Coder(opt.coder);
    }
    h.coder = pick;
    if (pick == Coder::Raw) {
      ZeroPredictor().describe(h);
      if (reconstruction && n) std::memcpy(reconstruction, x, n * sizeof(T));
      return seal(h, reinterpret_cast<const uint8_t*>(x), n * sizeof(T));
    }
    if (pick == Coder::Bitpack) {
      sym.reset();
      ctx.reset();
      for (auto& co : out) co = ChunkOut<T>();
      parallel_for(nchunks, threads, [&](size_t c) { bitpack_chunk(x, c * chunk, chunk_end(c), qz, predict, out[c], reconstruction); });
    } else if (pick == Coder::Huffman) {
      const HuffmanCode huff(huff_len);
      write_huffman_lengths(tables, huff.len);
      parallel_for(nchunks, threads, [&](size_t c) {
        huffman_encode_symbols(huff, sym.get() + c * chunk, chunk_end(c) - c * chunk, out[c].a);
      });
    } else {
      model.write(tables);
      const RansLaneEncoder encoder(model);
      parallel_for(nchunks, threads, [&](size_t c) {
        thread_local std::vector<uint16_t> words;
        encoder.encode_chunk(sym.get() + c * chunk, ctx.get() + c * chunk, chunk_end(c) - c * chunk, words, out[c].a);
      });
    }
  }

  // Payload: outliers, coder tables, chunk directory, chunk streams.
  for (auto& co : out) outliers.append(co.outliers);
  ByteWriter w;
  outliers.write(w);
  w.bytes(tables.buf.data(), tables.size());
  size_t streams = 0;
  for (auto& co : out) {
    w.varint(co.a.size());
    w.varint(co.b.size());
    streams += co.a.size() + co.b.size();
  }
  w.buf.reserve(w.size() + streams);
  for (auto& co : out) {
    w.bytes(co.a.data(), co.a.size());
    w.bytes(co.b.data(), co.b.size());
    co = ChunkOut<T>();  // release as we go: keeps peak memory near one copy of the output
  }
  return seal(h, w.buf.data(), w.size());
}

// ---- decoding -----------------------------------------------------------------------------------
// parse_blob() validates everything but the entropy-coded streams themselves (checksum, header,
// outliers, tables, chunk directory) without allocating in proportion to any declared size, so
// the caller can allocate the output only for a blob that is well-formed.
struct ParsedBlob {
  Header header;
  std::vector<uint64_t> outlier_index;
  const uint8_t* outlier_values = nullptr;
  std::unique_ptr<HuffmanCode> huffman;
  ContextModel context;
  std::vector<uint64_t> len_a, len_b, offset;  // chunk directory
  const uint8_t* streams = nullptr;
  const uint8_t* raw_values = nullptr;         // Coder::Raw
};

inline void read_outliers(ByteReader& r, uint64_t n, size_t elem, ParsedBlob& pb) {
  uint64_t count = r.varint("outlier count");
  // Each outlier takes at least 1 + elem bytes: bound the count before allocating.
  require_format(count <= n && count <= r.remaining() / (1 + elem), "bad outlier count");
  pb.outlier_index.resize(count);
  uint64_t prev = 0;
  for (uint64_t k = 0; k < count; ++k) {
    uint64_t gap = r.varint("outlier index");
    require_format(gap < n, "outlier index out of range");
    uint64_t i = k ? prev + 1 + gap : gap;
    require_format(i < n, "outlier index out of range");
    pb.outlier_index[k] = prev = i;
  }
  pb.outlier_values = r.take(count * elem, "outlier values");
}

inline ParsedBlob parse_blob(const uint8_t* blob, size_t size, bool verify_checksum = true) {
  ByteReader hr(blob, size);
  ParsedBlob pb;
  Header& h = pb.header;
  h = read_header(blob, size, hr, verify_checksum);
  ByteReader r(blob + hr.pos, size_t(h.payload_size));
  if (h.coder == Coder::Raw) {
    pb.raw_values = r.data;
    return pb;
  }
  const uint64_t n = h.elements();
  read_outliers(r, n, dtype_size(h.dtype), pb);
  if (h.coder == Coder::Huffman) pb.huffman.reset(new HuffmanCode(read_huffman_lengths(r, kSymbols)));
  if (h.coder == Coder::Context || h.coder == Coder::ContextSerial) pb.context = ContextModel::read(r);
  const uint64_t chunk = h.chunk_elems(), nchunks = h.chunks();
  // Every chunk has two length fields (>= 2 bytes): bounds the directory before allocating it.
  require_format(nchunks <= r.remaining() / 2, "chunk directory larger than the blob");
  pb.len_a.resize(nchunks);
  pb.len_b.resize(nchunks);
  pb.offset.resize(nchunks);
  for (uint64_t c = 0; c < nchunks; ++c) {
    pb.len_a[c] = r.varint("chunk length");
    pb.len_b[c] = r.varint("chunk length");
  }
  uint64_t at = 0;
  for (uint64_t c = 0; c < nchunks; ++c) {
    const uint64_t cn = std::min(n, (c + 1) * chunk) - c * chunk;
    const uint64_t la = pb.len_a[c], lb = pb.len_b[c];
    if (h.coder == Coder::Bitpack) require_format(la == (cn + kPackBlock - 1) / kPackBlock, "bad bit-packing width count");
    if (h.coder == Coder::Huffman) require_format(la >= (cn + 7) / 8, "Huffman chunk too short");
    if (h.coder == Coder::ContextSerial) require_format(la >= 8, "rANS chunk too short");
    if (h.coder == Coder::Context) require_format(la >= 4 * kLanes, "rANS chunk too short");
    require_format(la <= r.remaining() && lb <= r.remaining(), "chunk longer than the blob");
    pb.offset[c] = at;
    at += la + lb;
    require_format(at <= r.remaining(), "chunks run past the end of the blob");
  }
  require_format(at == r.remaining(), "trailing bytes after the last chunk");
  pb.streams = r.data + r.pos;
  return pb;
}

template <class T, class Predictor>
void decode_chunk(const ParsedBlob& pb, const LinearQuantizer& qz, const Predictor& full_predict, uint64_t c, T* out) {
  const Header& h = pb.header;
  const uint64_t begin = c * h.chunk_elems(), end = std::min(h.elements(), begin + h.chunk_elems());
  const auto& predict = full_predict.for_range(begin, end);
  const uint8_t* a = pb.streams + pb.offset[c];
  const uint8_t* b = a + pb.len_a[c];
  const size_t la = size_t(pb.len_a[c]), lb = size_t(pb.len_b[c]);
  if (h.coder == Coder::Bitpack) {
    uint32_t v[kPackBlock];
    const uint8_t* p = b;
    for (uint64_t k = 0; k < la; ++k) {
      const unsigned w = a[k];
      require_format(w <= 32, "bad bit-packing width");
      const uint64_t b0 = begin + k * kPackBlock, b1 = std::min(end, b0 + kPackBlock);
      if (!w) {
        for (uint64_t i = b0; i < b1; ++i) out[i] = qz.reconstruct<T>(0, predict(i));
        continue;
      }
      require_format(size_t(b + lb - p) >= packed_block_bytes(w), "bit-packed data truncated");
      unpack_block(p, w, v);
      p += packed_block_bytes(w);
      for (uint64_t i = b0; i < b1; ++i) out[i] = qz.reconstruct<T>(unzigzag(v[i - b0]), predict(i));
    }
    require_format(p == b + lb, "bit-packed data length mismatch");
    return;
  }
  BitReader raw(b, lb);
  if (h.coder == Coder::Huffman) {
    BitReader bits(a, la);
    const HuffmanCode& hc = *pb.huffman;
    for (uint64_t i = begin; i < end; ++i) {
      bits.refill();
      const uint32_t s = hc.get(bits);
      require_format(s < kSymbols, "Huffman symbol out of range");
      const uint32_t neg = s ? bits.get(1) : 0;
      raw.refill();
      out[i] = qz.reconstruct<T>(desymbolize(s, neg | raw.get(kSymbolTable.info[s].nextra) << 1), predict(i));
    }
    require_format(!bits.overran(), "Huffman chunk truncated");
  } else if (h.coder == Coder::Context) {
    // Symbols of the whole chunk first (the lanes interleave), then raw bits in value order.
    const LaneSplit lanes(end - begin);
    struct DecodedSymbols {};
    std::vector<uint8_t>& sym = thread_scratch<DecodedSymbols>(size_t(kLanes * lanes.len));
    rans_lanes_decode_chunk(pb.context, a, la, begin, end - begin, sym.data());
    auto values = [&](auto eager) {
      for (unsigned k = 0; k < kLanes; ++k) {
        const uint8_t* lane_sym = sym.data() + k;
        for (uint64_t j = 0, i = begin + lanes.begin(k); j < lanes.count[k]; ++j, ++i) {
          const uint32_t v = lane_sym[kLanes * j], s = v & 127u;
          raw.refill<decltype(eager)::value>();
          out[i] = qz.reconstruct<T>(desymbolize(s, v >> 7 | raw.get(kSymbolTable.info[s].nextra) << 1), predict(i));
        }
      }
    };
    // Where values average a raw bit or more, refills are frequent and irregular: load eagerly.
    if (8 * uint64_t(lb) >= end - begin)
      values(std::true_type());
    else
      values(std::false_type());
  } else {
    RansChunkDecoder dec(pb.context, a, la);
    SignContext sc(pb.context.sign_period, begin);
    for (uint64_t i = begin; i < end; ++i) {
      const uint32_t s = dec.next();
      const uint32_t neg = s ? dec.next_sign(sc.ctx()) : 0;
      sc.push(s, neg);
      raw.refill();
      out[i] = qz.reconstruct<T>(desymbolize(s, neg | raw.get(kSymbolTable.info[s].nextra) << 1), predict(i));
    }
    dec.finish();
  }
  require_format(!raw.overran(), "raw bits truncated");
}

// previous[0], previous[1]: the stream's last and second-last reconstructions of this tensor, for
// blobs predicted from them (previous[0] may alias out: each value is read before it is written).
template <class T>
void decompress(const ParsedBlob& pb, T* out, uint64_t out_elems, unsigned threads,
                const T* const* previous = nullptr) {
  const Header& h = pb.header;
  if (h.dtype != dtype_of<T>()) throw InvalidArgument("output dtype does not match the blob");
  const uint64_t n = h.elements();
  if (out_elems != n) throw InvalidArgument("output size does not match the blob");
  if (h.coder == Coder::Raw) {
    if (n) std::memcpy(out, pb.raw_values, n * sizeof(T));
    return;
  }
  const LinearQuantizer qz(h.abs_bound);
  threads = std::max(1u, threads);
  if (const unsigned terms = predictor_terms(h.predictor)) {
    if (!previous || !previous[0] || (terms == 2 && !previous[1]))
      throw InvalidArgument("this blob is predicted from its stream's earlier messages: decode it with a GradientDecoder");
    const PreviousBlendPredictor<T> predict{{previous[0], previous[terms - 1]},
                                            {h.predictor_coef[0], h.predictor_coef[1]}, terms};
    parallel_for(h.chunks(), threads, [&](size_t c) { decode_chunk(pb, qz, predict, c, out); });
  } else if (is_low_rank(h.predictor)) {
    const uint64_t rows = h.shape[0];
    const LowRankPredictor predict(LowRankFactors::parse(h.predictor_data, rows, n / rows, h.predictor));
    parallel_for(h.chunks(), threads, [&](size_t c) { decode_chunk(pb, qz, predict, c, out); });
  } else {
    const ZeroPredictor predict;
    parallel_for(h.chunks(), threads, [&](size_t c) { decode_chunk(pb, qz, predict, c, out); });
  }
  for (size_t k = 0; k < pb.outlier_index.size(); ++k)
    std::memcpy(out + pb.outlier_index[k], pb.outlier_values + k * sizeof(T), sizeof(T));
}

}  // namespace ebgc
