// The encoder's passes over one chunk of values: quantize + symbol pass (for the symbol coders,
// whose tables are fitted afterwards to the counts of every chunk), or quantize + bit-pack in one
// pass (bit-packing has no tables).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "../coders/bitpack.hpp"
#include "../coders/context_model.hpp"
#include "../common/bytes.hpp"
#include "../quantize/quantize_run.hpp"
#include "symbol_pass.hpp"

namespace ebgc {

// ---- per-chunk encoder output ----------------------------------------------------------------
template <class T>
struct ChunkOut {
  std::vector<uint8_t> a, b;  // the chunk's two streams (coder-specific meaning)
  Outliers<T> outliers;
  ContextCounts counts{};     // symbol counts per context bucket (pass 1)
  SignCounts sign_counts{};   // signs of nonzero codes per sign context (pass 1)
  uint64_t bitpack_bytes = 0; // what bit-packing would cost (pass 1)
};

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

}  // namespace ebgc
