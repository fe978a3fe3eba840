// The container's header (docs/FORMAT.md is the specification): what a blob holds and how it was
// coded, read and written in one place. The payload after it is format/container.hpp's.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../common/bytes.hpp"
#include "../common/checksum.hpp"
#include "../common/errors.hpp"
#include "../predictors/lowrank_factors.hpp"
#include "vocabulary.hpp"

namespace ebgc {

static_assert(sizeof(float) == 4 && sizeof(double) == 8, "IEEE-754 binary32/binary64 required");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ebgc streams are written on little-endian hosts");

constexpr uint8_t kMagic[4] = {'E', 'B', 'G', 'C'};
constexpr uint8_t kFormatVersion = 1;
constexpr size_t kChecksumSize = 4;

struct Header {
  uint8_t version = kFormatVersion;
  uint8_t flags = 0;  // reserved, 0 in v1
  DType dtype = DType::Float32;
  BoundMode mode = BoundMode::Rel;
  uint8_t predictor = 0;  // PredictorId
  double predictor_coef[2] = {0, 0};  // per previous reconstruction used (predictors 1, 2)
  std::vector<uint8_t> predictor_data;  // the low-rank predictor's factors (predictors 3, 4)
  Coder coder = Coder::Raw;
  uint8_t chunk_log2 = kDefaultChunkLog2;
  std::vector<uint64_t> shape;
  double error_bound = 0;  // as requested
  double abs_bound = 0;    // as guaranteed
  uint64_t payload_size = 0;

  uint64_t elements() const {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;  // checked in read()
    return n;
  }
  uint64_t chunk_elems() const { return uint64_t(1) << chunk_log2; }
  uint64_t chunks() const { return (elements() + chunk_elems() - 1) >> chunk_log2; }

  void write(ByteWriter& w) const {
    w.bytes(kMagic, 4);
    w.u8(version);
    w.u8(flags);
    w.u8(uint8_t(dtype));
    w.u8(uint8_t(mode));
    w.u8(predictor);
    w.u8(uint8_t(coder));
    w.u8(chunk_log2);
    w.u8(uint8_t(shape.size()));
    for (uint64_t d : shape) w.varint(d);
    w.f64(error_bound);
    w.f64(abs_bound);
    for (unsigned k = 0; k < predictor_terms(predictor); ++k) w.f64(predictor_coef[k]);
    if (is_low_rank(predictor)) w.bytes(predictor_data.data(), predictor_data.size());
    w.varint(payload_size);
  }
};

// Checks magic, version and checksum of a whole blob, then parses the header. On return the
// reader stands at the first payload byte, and exactly payload_size bytes precede the checksum
// (the payload's own limits are checked by format/container.hpp).
// verify_checksum = false only to peek at a header that a full read will check later.
inline Header read_header(const uint8_t* blob, size_t size, ByteReader& r, bool verify_checksum = true) {
  if (size < 4 || std::memcmp(blob, kMagic, 4) != 0)
    fail_format("not an ebgc blob (bad magic bytes)");
  if (size < 5) fail_format("truncated blob: no format version");
  if (blob[4] != kFormatVersion)
    throw VersionError("unsupported ebgc format version " + std::to_string(blob[4]) +
                       " (this build reads version " + std::to_string(kFormatVersion) + ")");
  if (size < 4 + 1 + kChecksumSize) fail_format("truncated blob: shorter than a header");
  const size_t body = size - kChecksumSize;
  uint32_t stored = uint32_t(blob[body]) | uint32_t(blob[body + 1]) << 8 |
                    uint32_t(blob[body + 2]) << 16 | uint32_t(blob[body + 3]) << 24;
  if (verify_checksum && crc32c(blob, body) != stored)
    throw ChecksumError("ebgc blob checksum mismatch (truncated or corrupted)");

  r = ByteReader(blob, body);
  Header h;
  r.take(4, "magic");
  h.version = r.u8("version");
  h.flags = r.u8("flags");
  require_format(h.flags == 0, "unknown header flags");
  uint8_t dt = r.u8("dtype");
  require_format(dtype_info(dt) != nullptr, "unknown dtype code");
  h.dtype = DType(dt);
  uint8_t mode = r.u8("bound mode");
  require_format(mode < sizeof(kModes) / sizeof(kModes[0]), "unknown bound mode");
  h.mode = BoundMode(mode);
  h.predictor = r.u8("predictor");
  require_format(h.predictor < kPredictorCount, "unknown predictor");
  uint8_t coder = r.u8("coder");
  require_format(coder < kCoderCount, "unknown coder");
  h.coder = Coder(coder);
  h.chunk_log2 = r.u8("chunk size");
  require_format(h.chunk_log2 >= kMinChunkLog2 && h.chunk_log2 <= kMaxChunkLog2, "bad chunk size");
  uint8_t ndim = r.u8("ndim");
  require_format(ndim <= kMaxDims, "too many dimensions");
  // The product of the non-zero dimensions is capped too: an empty tensor must still have a
  // shape that an array library can represent.
  uint64_t n = 1;
  for (unsigned i = 0; i < ndim; ++i) {
    uint64_t d = r.varint("shape");
    require_format(d <= kMaxElements, "dimension too large");
    h.shape.push_back(d);
    if (d) {
      require_format(n <= kMaxElements / d, "too many elements");
      n *= d;
    }
  }
  h.error_bound = r.f64("error bound");
  h.abs_bound = r.f64("absolute bound");
  require_format(h.error_bound > 0 && std::isfinite(h.error_bound), "bad error bound in header");
  require_format(h.abs_bound >= 0, "bad absolute bound in header");  // +Inf allowed (rel overflow)
  require_format(h.mode != BoundMode::Abs || h.abs_bound == h.error_bound, "inconsistent bounds");
  for (unsigned k = 0; k < predictor_terms(h.predictor); ++k) {
    h.predictor_coef[k] = r.f64("predictor coefficient");
    require_format(std::isfinite(h.predictor_coef[k]), "bad predictor coefficient");
    require_format(h.coder != Coder::Raw, "a raw blob has no prediction");
  }
  if (is_low_rank(h.predictor)) {
    // A matrix (rows = shape[0], cols = the rest) and its factors: their size follows from the
    // rank, the widths and the shape, and they must be present, so nothing is allocated beyond
    // the blob.
    require_format(h.coder != Coder::Raw, "a raw blob has no prediction");
    require_format(ndim >= 2 && h.elements() > 0, "a low-rank prediction needs a non-empty matrix");
    const uint64_t bytes = low_rank_stored_bytes(r, h.predictor, h.shape[0], n / h.shape[0]);
    const uint8_t* p = r.take(bytes, "low-rank factors");
    h.predictor_data.assign(p, p + bytes);
  }
  h.payload_size = r.varint("payload size");
  require_format(h.payload_size == r.remaining(), "payload size does not match the blob");
  return h;
}

}  // namespace ebgc
