// Stage 5 — the container (docs/FORMAT.md): header, then the payload (outliers, coder tables,
// chunk directory, chunk streams), then CRC-32C. The one writer and the one reader of blobs: the
// CPU encoder and the CUDA backend write through ContainerWriter, and every decoder starts from
// parse_blob().
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

#include "../coders/dispatch.hpp"
#include "../common/bytes.hpp"
#include "../common/checksum.hpp"
#include "../common/errors.hpp"
#include "header.hpp"
#include "vocabulary.hpp"

namespace ebgc {

// Called once with a blob's final size; returns where to write it (host memory).
using BlobAllocator = std::function<uint8_t*(size_t)>;

// ---- writer -------------------------------------------------------------------------------------
// Collects the payload's head (outliers, tables, directory), then writes the blob in one pass into
// memory the caller allocates at its final size: the chunk streams are copied once, by `fill`.
class ContainerWriter {
 public:
  explicit ContainerWriter(const Header& h) : header_(h) {}

  // count outliers: their indices (strictly increasing) as gaps, then their raw values.
  template <class Index>
  void outliers(uint64_t count, const Index* index, const void* values, size_t elem) {
    head_.varint(count);
    for (uint64_t k = 0; k < count; ++k) head_.varint(k ? uint64_t(index[k]) - uint64_t(index[k - 1]) - 1 : uint64_t(index[k]));
    head_.bytes(values, size_t(count * elem));
  }
  void tables(const ByteWriter& t) { head_.bytes(t.buf.data(), t.size()); }
  // The next chunk's stream lengths, in chunk order.
  void chunk(uint64_t len_a, uint64_t len_b) {
    head_.varint(len_a);
    head_.varint(len_b);
    stream_bytes_ += len_a + len_b;
  }

  // Writes the blob: fill(dst) must write exactly the chunk streams declared by chunk(), in order.
  template <class Fill>
  void write(const BlobAllocator& allocate, Fill&& fill) {
    finish(head_.size() + stream_bytes_, allocate, [&](uint8_t* p) {
      if (head_.size()) std::memcpy(p, head_.buf.data(), head_.size());  // a raw blob has none
      if (stream_bytes_) fill(p + head_.size());
    });
  }

  // Everything before the chunk streams (header, outliers, tables, directory), for a blob
  // assembled where its streams are (grid/blob_assembly.hpp): front, then the streams declared by
  // chunk(), then the checksum of both.
  ByteWriter front() {
    header_.payload_size = head_.size() + stream_bytes_;
    ByteWriter out;
    header_.write(out);
    out.bytes(head_.buf.data(), head_.size());
    return out;
  }
  uint64_t stream_bytes() const { return stream_bytes_; }

  // A raw blob: the values themselves are the payload (the writer's only "stream").
  void raw(uint64_t bytes) {
    header_.coder = Coder::Raw;
    stream_bytes_ = bytes;
  }
  void write_raw(const void* values, size_t bytes, const BlobAllocator& allocate) {
    raw(bytes);
    write(allocate, [&](uint8_t* p) { std::memcpy(p, values, bytes); });
  }

 private:
  template <class Payload>
  void finish(uint64_t payload_size, const BlobAllocator& allocate, Payload&& payload) {
    header_.payload_size = payload_size;
    ByteWriter head;
    header_.write(head);
    const size_t size = head.size() + size_t(payload_size) + kChecksumSize;
    uint8_t* out = allocate(size);
    std::memcpy(out, head.buf.data(), head.size());
    payload(out + head.size());
    const uint32_t crc = crc32c(out, size - kChecksumSize);
    for (unsigned k = 0; k < 4; ++k) out[size - kChecksumSize + k] = uint8_t(crc >> (8 * k));
  }

  Header header_;
  ByteWriter head_;
  uint64_t stream_bytes_ = 0;
};

// ---- reader -------------------------------------------------------------------------------------
// A blob validated in everything but its entropy-coded streams (checksum, header, outliers,
// tables, chunk directory), read without allocating in proportion to any declared size. Pointers
// point into the caller's bytes, which must outlive it.
struct ParsedBlob {
  Header header;
  size_t size = 0;                             // bytes of the whole blob
  std::vector<uint64_t> outlier_index;
  const uint8_t* outlier_values = nullptr;
  CoderTables tables;
  std::vector<uint64_t> len_a, len_b, offset;  // chunk directory
  const uint8_t* streams = nullptr;
  const uint8_t* raw_values = nullptr;         // Coder::Raw

  uint64_t output_bytes() const { return header.elements() * dtype_size(header.dtype); }
  ChunkStreams chunk(uint64_t c) const {
    const uint64_t begin = c * header.chunk_elems(), end = std::min(header.elements(), begin + header.chunk_elems());
    const uint8_t* a = streams + offset[c];
    return {a, size_t(len_a[c]), a + len_a[c], size_t(len_b[c]), begin, end};
  }
};

// The values a payload of this size can hold, per coder: a header that declares more is refused
// before the decoder allocates anything (docs/FORMAT.md, "Limits a reader enforces").
inline void check_plausible_size(const Header& h) {
  const uint64_t n = h.elements(), p = h.payload_size;
  if (h.coder == Coder::Raw) {
    require_format(p == n * dtype_size(h.dtype), "raw payload size does not match the shape");
    return;
  }
  const bool fits = with_coder(h.coder, [&](auto coder) { return coder.holds(n, h.chunks(), p); });
  require_format(fits, "declared size larger than the payload can hold");
}

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
  pb.size = size;
  Header& h = pb.header;
  h = read_header(blob, size, hr, verify_checksum);
  check_plausible_size(h);
  ByteReader r(blob + hr.pos, size_t(h.payload_size));
  if (h.coder == Coder::Raw) {
    pb.raw_values = r.data;
    return pb;
  }
  const uint64_t n = h.elements();
  read_outliers(r, n, dtype_size(h.dtype), pb);
  with_coder(h.coder, [&](auto coder) { coder.load(r, pb.tables); });
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
  with_coder(h.coder, [&](auto coder) {
    uint64_t at = 0;
    for (uint64_t c = 0; c < nchunks; ++c) {
      const uint64_t cn = std::min(n, (c + 1) * chunk) - c * chunk;
      const uint64_t la = pb.len_a[c], lb = pb.len_b[c];
      require_format(coder.chunk_fits(cn, la, lb), coder.kBadChunk);
      require_format(la <= r.remaining() && lb <= r.remaining(), "chunk longer than the blob");
      pb.offset[c] = at;
      at += la + lb;
      require_format(at <= r.remaining(), "chunks run past the end of the blob");
    }
    require_format(at == r.remaining(), "trailing bytes after the last chunk");
  });
  pb.streams = r.data + r.pos;
  return pb;
}

}  // namespace ebgc
