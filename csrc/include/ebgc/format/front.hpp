// A blob whose bytes live elsewhere (device memory), parsed by the one reader (parse_blob) from
// as few of its bytes as it needs. The host holds a zero-filled buffer of the blob's size (calloc:
// untouched pages cost no memory) and copies in only the front (header, outliers, tables,
// directory) and the stored checksum; the chunk streams stay where they are and are decoded
// there. parse_blob reads nothing past the payload's head, so once a parse succeeds with its head
// inside the bytes copied, every byte it read was the blob's own and its result is the full
// parse's. A parse that needs more (or fails on the zeros past the copied bytes) copies more: the
// head's end, or twice as much, up to the whole blob. The checksum is the caller's to verify
// (where the bytes are).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>

#include "container.hpp"

namespace ebgc {

struct FrontParse {
  std::unique_ptr<uint8_t, void (*)(void*)> bytes{nullptr, std::free};  // the blob's size, copied where needed
  size_t fetched = 0;      // bytes [0, fetched) and the last kChecksumSize bytes are the blob's
  ParsedBlob pb;           // pointers into `bytes`
  uint32_t stored_crc = 0;
  // Where the chunk streams (or raw values) start in the blob.
  size_t payload_offset() const {
    const uint8_t* p = pb.header.coder == Coder::Raw ? pb.raw_values : pb.streams;
    return size_t(p - bytes.get());
  }
};

// fetch(begin, end, dst): copies bytes [begin, end) of the blob (`size` bytes) to dst.
using FetchBytes = std::function<void(size_t begin, size_t end, uint8_t* dst)>;

inline FrontParse parse_blob_front(size_t size, const FetchBytes& fetch, size_t first = size_t(1) << 16) {
  FrontParse f;
  f.bytes.reset(static_cast<uint8_t*>(std::calloc(std::max<size_t>(size, 1), 1)));
  if (!f.bytes) throw std::bad_alloc();
  uint8_t* b = f.bytes.get();
  if (size <= kChecksumSize + 5) {  // too short for a header: the full parse says why
    fetch(0, size, b);
    f.fetched = size;
    f.pb = parse_blob(b, size, false);
    return f;
  }
  const size_t body = size - kChecksumSize;
  fetch(body, size, b + body);
  for (unsigned k = 0; k < kChecksumSize; ++k) f.stored_crc |= uint32_t(b[body + k]) << (8 * k);
  f.fetched = std::min(body, std::max<size_t>(first, 1));
  fetch(0, f.fetched, b);
  auto more = [&](size_t to) {
    to = std::min(body, to);
    fetch(f.fetched, to, b + f.fetched);
    f.fetched = to;
  };
  while (true) {
    try {
      f.pb = parse_blob(b, size, false);
    } catch (const FormatError&) {
      if (f.fetched == body) throw;  // the blob's own bytes: the error is real
      more(2 * f.fetched);
      continue;
    }
    const size_t head_end = f.payload_offset();
    if (head_end <= f.fetched) return f;
    more(head_end);
  }
}

}  // namespace ebgc
