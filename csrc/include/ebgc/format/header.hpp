// Stage 5 — the container (docs/FORMAT.md is the specification). Header, payload, CRC-32C.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "bound.hpp"
#include "bytes.hpp"
#include "checksum.hpp"
#include "errors.hpp"
#include "half.hpp"

namespace ebgc {

static_assert(sizeof(float) == 4 && sizeof(double) == 8, "IEEE-754 binary32/binary64 required");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ebgc streams are written on little-endian hosts");

constexpr uint8_t kMagic[4] = {'E', 'B', 'G', 'C'};
constexpr uint8_t kFormatVersion = 1;
constexpr unsigned kMaxDims = 16;
constexpr uint64_t kMaxElements = uint64_t(1) << 40;
constexpr unsigned kDefaultChunkLog2 = 16;
constexpr unsigned kMinChunkLog2 = 10, kMaxChunkLog2 = 20;

enum class DType : uint8_t { Float32 = 1, Float64 = 2, Float16 = 3, BFloat16 = 4 };
// ContextSerial is the context coder's first layout: still decoded, no longer written.
enum class Coder : uint8_t { Raw = 0, Bitpack = 1, Huffman = 2, ContextSerial = 3, Context = 4 };
// LowRank (int16 factors) is still decoded but no longer written; LowRankPacked replaced it.
enum class PredictorId : uint8_t { Zero = 0, ScaledPrevious = 1, BlendTwoPrevious = 2, LowRank = 3, LowRankPacked = 4 };
inline bool is_low_rank(uint8_t id) { return id == 3 || id == 4; }
// Earlier reconstructions a predictor reads (the low-rank one reads only its factors).
inline unsigned predictor_terms(uint8_t id) { return id == 1 ? 1 : id == 2 ? 2 : 0; }
constexpr unsigned kMaxLowRank = 32;
// Header bytes of the low-rank factors: rank, two f32 scales and int16 rows/cols per component.
inline uint64_t low_rank_data_bytes(unsigned rank, uint64_t rows, uint64_t cols) {
  return 1 + uint64_t(rank) * (8 + 2 * (rows + cols));
}
// Header bytes of packed factors: rank, per component u8 bits and two f32 scales, then every
// component's entries at its own width (total_bits = the sum of the components' widths).
constexpr unsigned kLowRankComponentHeader = 9;
constexpr unsigned kLowRankMinBits = 2, kLowRankMaxBits = 16;
inline uint64_t low_rank_packed_bytes(unsigned rank, uint64_t total_bits, uint64_t rows, uint64_t cols) {
  return 1 + uint64_t(rank) * kLowRankComponentHeader + (total_bits * (rows + cols) + 7) / 8;
}
constexpr uint8_t kCoderCount = 5;

inline size_t dtype_size(DType t) { return t == DType::Float32 ? 4 : t == DType::Float64 ? 8 : 2; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
  }
  return "?";
}
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }
template <> constexpr DType dtype_of<Float16>() { return DType::Float16; }
template <> constexpr DType dtype_of<BFloat16>() { return DType::BFloat16; }
template <class T>
struct TypeTag {
  using type = T;
};
// Calls f(TypeTag<T>{}) with the storage type of a dtype.
template <class F>
decltype(auto) with_storage_type(DType t, F&& f) {
  switch (t) {
    case DType::Float32: return f(TypeTag<float>{});
    case DType::Float64: return f(TypeTag<double>{});
    case DType::Float16: return f(TypeTag<Float16>{});
    default: return f(TypeTag<BFloat16>{});
  }
}

inline const char* coder_name(Coder c) {
  switch (c) {
    case Coder::Raw: return "raw";
    case Coder::Bitpack: return "bitpack";
    case Coder::Huffman: return "huffman";
    case Coder::ContextSerial:  // two layouts of one coder (FORMAT.md tells them apart by id)
    case Coder::Context: return "context";
  }
  return "?";
}

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

constexpr size_t kChecksumSize = 4;

// Least payload bytes a coder needs for a given element count. A header that declares more
// elements than its payload could hold is refused before the decoder allocates anything, which
// caps the output at a fixed multiple of the blob's size (see docs/FORMAT.md).
inline void check_plausible_size(const Header& h) {
  const uint64_t n = h.elements(), p = h.payload_size;
  switch (h.coder) {
    case Coder::Raw:
      require_format(p == n * dtype_size(h.dtype), "raw payload size does not match the shape");
      return;
    case Coder::Bitpack:  // one width byte per 32 values
      require_format(n <= 32 * p, "declared size larger than the payload can hold");
      return;
    case Coder::Huffman:  // at least one bit per value
      require_format(n <= 8 * p, "declared size larger than the payload can hold");
      return;
    case Coder::ContextSerial:  // every chunk: two lengths and two 4-byte rANS states
      require_format(h.chunks() <= p / 10, "declared size larger than the payload can hold");
      return;
    case Coder::Context:  // every chunk: two lengths and a 4-byte rANS state for each of 8 lanes
      require_format(h.chunks() <= p / (2 + 4 * 8), "declared size larger than the payload can hold");
      return;
  }
}

// Checks magic, version and checksum of a whole blob, then parses the header. On return the
// reader stands at the first payload byte, and exactly payload_size bytes precede the checksum.
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
  require_format(dt >= 1 && dt <= 4, "unknown dtype code");
  h.dtype = DType(dt);
  uint8_t mode = r.u8("bound mode");
  require_format(mode <= 1, "unknown bound mode");
  h.mode = BoundMode(mode);
  h.predictor = r.u8("predictor");
  require_format(h.predictor <= 4, "unknown predictor");
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
    const unsigned rank = r.remaining() ? r.data[r.pos] : 0;
    require_format(rank >= 1 && rank <= kMaxLowRank, "bad low-rank predictor rank");
    const uint64_t rows = h.shape[0], cols = n / rows;
    uint64_t bytes = 0;
    if (h.predictor == uint8_t(PredictorId::LowRank)) {
      require_format((rows + cols) <= r.remaining() / (2 * rank), "low-rank factors run past the end of the blob");
      bytes = low_rank_data_bytes(rank, rows, cols);
    } else {
      require_format(r.remaining() >= 1 + uint64_t(rank) * kLowRankComponentHeader, "low-rank factors run past the end of the blob");
      uint64_t total_bits = 0;
      for (unsigned k = 0; k < rank; ++k) {
        const unsigned bits = r.data[r.pos + 1 + k * kLowRankComponentHeader];
        require_format(bits >= kLowRankMinBits && bits <= kLowRankMaxBits, "bad low-rank factor width");
        total_bits += bits;
      }
      require_format((rows + cols) <= r.remaining() * 8 / total_bits, "low-rank factors run past the end of the blob");
      bytes = low_rank_packed_bytes(rank, total_bits, rows, cols);
    }
    const uint8_t* p = r.take(bytes, "low-rank factors");
    h.predictor_data.assign(p, p + bytes);
  }
  h.payload_size = r.varint("payload size");
  require_format(h.payload_size == r.remaining(), "payload size does not match the blob");
  check_plausible_size(h);
  return h;
}

// Wraps a header and payload into a blob with its checksum.
inline std::vector<uint8_t> seal(const Header& h, const uint8_t* payload, size_t size) {
  ByteWriter w;
  Header hh = h;
  hh.payload_size = size;
  hh.write(w);
  w.buf.reserve(w.size() + size + kChecksumSize);
  w.bytes(payload, size);
  w.u32(crc32c(w.buf.data(), w.size()));
  return std::move(w.buf);
}

}  // namespace ebgc
