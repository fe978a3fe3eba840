// The one place where ebgc decides. Every other file does what it is told:
//   - validate():            every argument of a request, checked once, at the front door;
//   - choose_predictor():    which predictor codes a tensor (zero, a blend of the stream's last
//                            reconstructions, or a low-rank approximation of a matrix), each
//                            scored by the estimated bits of its residual plus what it sends;
//   - pick_coder():          which coder writes it ("auto": the smallest estimate);
//   - compress_where(), decompress_where(): whether a device tensor's work runs on the GPU or is
//                            staged through host memory and done by the CPU codec (and
//                            kGridChunkLog2, the device ratio coder's chunk size);
//   - check_streams_first(): whether a blob's streams are validated before its output is allocated.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "common/errors.hpp"
#include "format/container.hpp"
#include "format/vocabulary.hpp"
#include "predictors/blend.hpp"
#include "predictors/lowrank_fit.hpp"
#include "predictors/zero.hpp"
#include "quantize/bound.hpp"
#include "quantize/quantizer.hpp"
#include "request.hpp"

namespace ebgc {

// ---- validation -------------------------------------------------------------------------------

inline uint64_t checked_elements(const std::vector<uint64_t>& shape) {
  if (shape.size() > kMaxDims) throw InvalidArgument("too many dimensions (at most 16)");
  uint64_t n = 1;
  for (uint64_t d : shape) {
    if (d && n > kMaxElements / d) throw InvalidArgument("array too large (the format holds at most 2**40 values)");
    n *= d;
  }
  if (n > kMaxElements) throw InvalidArgument("array too large (the format holds at most 2**40 values)");
  return n;
}

inline void validate(const Params& p) {
  check_requested_bound(p.error_bound);
  if (p.mode != BoundMode::Abs && p.mode != BoundMode::Rel) throw InvalidArgument("mode must be abs or rel");
  if (p.coder == int(Coder::ContextSerial))
    throw InvalidArgument("coder 3 (the serial context layout) is decoded but no longer written: use 4 (its lane layout)");
  if (p.coder != kCoderAuto && !is_written_coder(p.coder)) throw InvalidArgument("unknown coder");
  if (p.chunk_log2 < kMinChunkLog2 || p.chunk_log2 > kMaxChunkLog2) throw InvalidArgument("chunk_log2 out of range");
}

inline void validate(const TensorView& x, const Params& p, const Execution& e) {
  validate(p);
  const uint64_t n = checked_elements(x.shape);
  if (!x.strides.empty() && x.strides.size() != x.shape.size()) throw InvalidArgument("one stride per dimension");
  if (n && !x.data) throw InvalidArgument("no data");
  if (e.threads < 1) throw InvalidArgument("threads must be >= 1");
}

// ---- where the work runs ------------------------------------------------------------------------

enum class Where { Host, Device };

// The ratio coder on a device codes chunks of 2^14 values (8 lanes of 2048, one thread each): a
// 1 GiB float32 tensor is then 131,072 threads, enough to fill an H100; the CPU's 2^16 would give
// a quarter of that. Its blobs are what the CPU codec writes with chunk_log2=14 (smaller chunks
// cost 36 bytes each in lane states and directory: 0.3-1% of a gradient's blob).
constexpr unsigned kGridChunkLog2 = 14;

// A device tensor is coded on the device by the context coder's lanes, Huffman on the same lanes,
// bit-packing or raw, with zero or stream (blend) prediction: "auto" there picks among those four
// from the device's own statistics (grid/grid_blob.hpp). Staged through host memory and coded by
// the CPU codec: matrices that may be predicted by a low-rank approximation (low_rank on, a ratio
// coder): the fit is a CPU stage, and it pays (the vgg trace's messages are 1.16-1.30x larger
// without it) at a host cost of 0.1-0.2 s for a 4096 x 4096 matrix (docs/DESIGN.md). low_rank=False
// keeps them on the device.
inline Where compress_where(const TensorView& x, const Params& p) {
  if (x.device != Device::Cuda) return Where::Host;
  const bool ratio_coder = p.coder != int(Coder::Bitpack) && p.coder != int(Coder::Raw);
  return p.low_rank && ratio_coder && low_rank_eligible(x.shape) ? Where::Host : Where::Device;
}
// Raw, bit-packed, Huffman and lane-coded context blobs decode on the device, with any predictor
// (zero, stream blend, or low rank: its factors go up with the blob's front and are multiplied out
// per value, LowRankView); only the serial context layout (older encoders') on the host.
inline Where decompress_where(const Header& h, bool out_on_device) {
  if (!out_on_device) return Where::Host;
  if (h.coder == Coder::Raw) return Where::Device;  // a copy
  const bool device_coder = h.coder == Coder::Bitpack || h.coder == Coder::Context || h.coder == Coder::Huffman;
  return device_coder ? Where::Device : Where::Host;
}
// ---- which coder --------------------------------------------------------------------------------

struct CoderCosts {
  double context, huffman, bitpack, raw;  // estimated bytes
};
// requested: kCoderAuto (the smallest; at equal size the faster one) or a written coder.
inline Coder pick_coder(int requested, const CoderCosts& c) {
  if (requested != kCoderAuto) return Coder(requested);
  Coder pick = Coder::Context;
  double best = c.context;
  if (c.huffman <= best) pick = Coder::Huffman, best = c.huffman;
  if (c.bitpack <= best) pick = Coder::Bitpack, best = c.bitpack;
  if (c.raw <= best) pick = Coder::Raw;
  return pick;
}

// ---- which predictor ----------------------------------------------------------------------------

// The stream blends are fitted and scored on blocks of kScoreBlock values, every kScoreStride-th
// one, or every block of tensors under kScoreAllBelow values.
constexpr uint64_t kScoreBlock = 1024, kScoreStride = 8, kScoreAllBelow = uint64_t(1) << 16;

enum class PredictorKind { Zero, Blend, LowRank };

template <class T>
struct PredictorChoice {
  PredictorKind kind = PredictorKind::Zero;
  PreviousBlendPredictor<T> blend{{nullptr, nullptr}, {0.0, 0.0}, 1};
  LowRankFactors factors;
  bool range_known = false;  // the encoder need not find the range again
  FiniteRange range;
};

// The sample that scores the stream blends: blocks of kScoreBlock values, every `stride`-th one.
inline uint64_t blend_sample_stride(uint64_t n) { return n < kScoreAllBelow ? 1 : kScoreStride; }

// From the sampled bits of zero, one-term and two-term prediction (scale: values per sampled
// value): the blend that saves the most bits, with what it costs to send, or none. Returns the
// bits saved. The CUDA backend decides from its device sums with this same function.
template <class T>
double choose_blend(const std::array<double, 3>& bits, double scale, const PreviousBlendPredictor<T>& one,
                    const PreviousBlendPredictor<T>& two, PredictorChoice<T>& choice) {
  const double one_bits = bits[1] * scale + 64, two_bits = two.terms == 2 ? bits[2] * scale + 128 : one_bits;  // + coefficients
  const double saved = bits[0] * scale - std::min(one_bits, two_bits);
  if (!(saved > 0)) return 0;
  choice.kind = PredictorKind::Blend;
  choice.blend = two_bits < one_bits ? two : one;
  return saved;
}

// previous[0], previous[1]: the stream's last and second-last reconstructions of this tensor
// (null if none). Estimated bits saved against zero prediction decide: the blends are scored by
// log2(1 + |r|) over a sample, low rank by the order-0 entropy of sampled residual symbols (the log
// estimate undervalues small residuals: DESIGN.md); in the stateful bench the pick is never worse
// than either predictor alone.
template <class T>
PredictorChoice<T> choose_predictor(const T* x, const std::vector<uint64_t>& shape, const Params& p,
                                    const Execution& e, const T* const* previous) {
  PredictorChoice<T> choice;
  const uint64_t n = checked_elements(shape);
  const T* p1 = previous ? previous[0] : nullptr;
  const T* p2 = p1 ? previous[1] : nullptr;
  // Bit-packing is the fast mode: no factorization there. Raw has no prediction at all.
  const bool try_low_rank = p.low_rank && low_rank_eligible(shape) && p.coder != int(Coder::Raw) &&
                            p.coder != int(Coder::Bitpack);
  if ((!p1 && !try_low_rank) || n == 0) return choice;
  choice.range = p.mode == BoundMode::Rel ? finite_range(x, size_t(n)) : FiniteRange();
  choice.range_known = true;
  const double abs_bound = absolute_bound(p.mode, p.error_bound, choice.range);
  const double step = LinearQuantizer(abs_bound).step;

  double best_saved = 0;
  if (p1) {
    // Fitted and scored on a sample: every kScoreStride-th block (all of a small tensor), so a
    // stream whose rounds do not correlate pays little for asking.
    const uint64_t stride = blend_sample_stride(n);
    auto for_sample = [&](auto&& f) {
      for (uint64_t b = 0; b * kScoreBlock < n; b += stride) f(b * kScoreBlock, std::min(n, (b + 1) * kScoreBlock));
    };
    BlendSums sums;
    uint64_t sampled = 0;
    for_sample([&](uint64_t b, uint64_t end) { add_blend_sums(x, p1, p2, b, end, sums), sampled += end - b; });
    const PreviousBlendPredictor<T> one = fit_previous(sums, p1);
    const PreviousBlendPredictor<T> two = p2 ? fit_two_previous(sums, p1, p2) : one;
    std::array<double, 3> bits{};
    for_sample([&](uint64_t b, uint64_t end) { add_residual_bits(x, b, end, step, bits, ZeroPredictor(), one, two); });
    best_saved = choose_blend(bits, double(n) / double(sampled), one, two, choice);
  }
  if (try_low_rank && abs_bound > 0 && std::isfinite(abs_bound)) {
    LowRankFit fit = fit_low_rank(x, shape[0], shape[1], step, e.threads);
    if (fit.factors.rank && fit.bits_saved > best_saved) {
      choice.kind = PredictorKind::LowRank;
      choice.factors = std::move(fit.factors);
    }
  }
  return choice;
}

// ---- decoding ---------------------------------------------------------------------------------

// A context blob may declare up to ~30,000 values per payload byte (a chunk of zeros costs 34
// bytes whatever its size), so before the output of a blob of more than kTrustedValuesPerByte
// values per byte is allocated, every chunk's streams are decoded once without output: a corrupt
// blob is then refused having allocated nothing in proportion to what it declares. Below, the
// output is at most 256x the blob in float32 (512x in float64). Gradients stay far below (at REL
// 1e-2: resnet 2-4 values a byte, the vgg trace's low-rank fc layer up to 52); blobs above pay a
// second pass of the symbol decoder.
constexpr uint64_t kTrustedValuesPerByte = 64;
inline bool check_streams_first(const ParsedBlob& b) {
  return b.header.coder != Coder::Raw && b.header.elements() / kTrustedValuesPerByte > b.size;
}

}  // namespace ebgc
