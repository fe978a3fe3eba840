// The front door of the C++ core: compress a tensor, inspect a blob, decompress it. Each call
// validates its arguments once and takes every decision through plan.hpp; the stages behind it
// are in folders that follow the pipeline:
//   quantize/ (bound, quantizer) -> predictors/ -> coders/ (entropy coding) -> format/ (container),
//   encode/ and decode/ (the two directions), legacy/ (layouts still decoded, no longer written),
//   common/ (bytes, bits, checksums, threads). cuda/ runs the same stages on a GPU.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/strided.hpp"
#include "decode/decompress.hpp"
#include "encode/compress.hpp"
#include "format/container.hpp"
#include "plan.hpp"
#include "predictors/lowrank.hpp"
#include "request.hpp"

namespace ebgc {

// The blob of a host array (its dtype's storage type T), predictor chosen by the plan.
template <class T>
void compress_host(const T* x, const std::vector<uint64_t>& shape, const Params& p, const Execution& e,
                   const T* const* previous, T* reconstruction, const BlobAllocator& allocate) {
  const PredictorChoice<T> choice = choose_predictor(x, shape, p, e, previous);
  EncodeSettings s;
  s.mode = p.mode;
  s.error_bound = p.error_bound;
  s.coder = p.coder;
  s.threads = e.threads;
  s.chunk_log2 = p.chunk_log2;
  s.range = choice.range_known ? &choice.range : nullptr;
  switch (choice.kind) {
    case PredictorKind::Blend: return encode(x, shape, s, choice.blend, reconstruction, allocate);
    case PredictorKind::LowRank: return encode(x, shape, s, LowRankPredictor(choice.factors), reconstruction, allocate);
    case PredictorKind::Zero: break;
  }
  encode(x, shape, s, ZeroPredictor(), reconstruction, allocate);
}

// Compresses a host tensor into a blob written where `allocate` says. A strided view is copied
// into C order first. stream: the stream's earlier reconstructions to predict from, and where the
// reconstruction goes (both C-contiguous, of x's dtype and size).
inline void compress(const TensorView& x, const Params& p, const Execution& e, const StreamTerms& stream,
                     const BlobAllocator& allocate) {
  validate(x, p, e);
  if (x.device != Device::Host) throw InvalidArgument("a device tensor is compressed by the CUDA backend (ebgc._cuda)");
  if (!stream.previous[0] && stream.previous[1]) throw InvalidArgument("previous2 needs previous");
  const uint64_t n = x.elements();
  std::vector<uint8_t> gathered;
  const void* data = x.data;
  if (n && !x.contiguous()) {
    gathered.resize(size_t(n * x.item_size()));
    gather_strided(static_cast<const uint8_t*>(x.data), x.shape, x.strides, x.item_size(), gathered.data());
    data = gathered.data();
  }
  with_storage_type(x.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* previous[2] = {static_cast<const T*>(stream.previous[0]), static_cast<const T*>(stream.previous[1])};
    compress_host(static_cast<const T*>(data), x.shape, p, e, previous, static_cast<T*>(stream.reconstruction), allocate);
  });
}

inline std::vector<uint8_t> compress(const TensorView& x, const Params& p, const Execution& e = {},
                                     const StreamTerms& stream = {}) {
  std::vector<uint8_t> blob;
  compress(x, p, e, stream, [&](size_t size) {
    blob.resize(size);
    return blob.data();
  });
  return blob;
}

struct InspectOptions {
  bool verify_checksum = true;  // false only where the caller has just checked this buffer's CRC
  uint64_t max_output = 0;      // refuse a blob that decodes to more bytes (0: no limit)
  bool for_decoding = true;     // validate the streams of a blob that expands far (plan.hpp) first
  unsigned threads = 1;
};

// Parses and validates a blob once; what it returns is all a decoder needs, so no decode parses
// twice. On return the blob is safe to allocate the output for.
inline void check_output_limit(const ParsedBlob& pb, uint64_t max_output) {
  if (max_output && pb.output_bytes() > max_output)
    throw OutputLimitError("the blob decodes to " + std::to_string(pb.output_bytes()) + " bytes, over max_output=" +
                           std::to_string(max_output));
}

inline ParsedBlob inspect(const uint8_t* blob, size_t size, const InspectOptions& o = {}) {
  ParsedBlob pb = parse_blob(blob, size, o.verify_checksum);
  check_output_limit(pb, o.max_output);
  if (o.for_decoding && check_streams_first(pb)) validate_streams(pb, o.threads);
  return pb;
}

// Decodes an inspected blob into a C-contiguous host array of its dtype and size. previous: the
// stream's last and second-last reconstructions (C-contiguous, same dtype and size) for blobs
// predicted from them; previous[0] may be out itself.
inline void decompress(const ParsedBlob& pb, const TensorView& out, const Execution& e,
                       const void* const* previous = nullptr) {
  if (out.device != Device::Host) throw InvalidArgument("a device output is decoded by the CUDA backend (ebgc._cuda)");
  if (!out.contiguous()) throw InvalidArgument("out must be C-contiguous");
  if (out.dtype != pb.header.dtype) throw InvalidArgument("output dtype does not match the blob");
  if (e.threads < 1) throw InvalidArgument("threads must be >= 1");
  with_storage_type(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p[2] = {previous ? static_cast<const T*>(previous[0]) : nullptr,
                     previous ? static_cast<const T*>(previous[1]) : nullptr};
    ebgc::decompress(pb, static_cast<T*>(out.data), out.elements(), e.threads, p);
  });
}

}  // namespace ebgc
