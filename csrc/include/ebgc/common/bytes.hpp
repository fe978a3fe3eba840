// Little-endian byte writer and a bounds-checked byte reader. Every read checks the remaining
// length first, so no declared length can make the decoder read past its buffer.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "../common/errors.hpp"

namespace ebgc {

// A grow-only per-thread byte buffer of at least `bytes`, one per Use tag (so an encoder's and a
// decoder's scratch never alias), reused by every chunk the thread codes.
template <class Use>
inline std::vector<uint8_t>& thread_scratch(size_t bytes) {
  static thread_local std::vector<uint8_t> scratch;
  if (scratch.size() < bytes) scratch.resize(bytes);
  return scratch;
}

struct ByteWriter {
  std::vector<uint8_t> buf;

  void bytes(const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    buf.insert(buf.end(), b, b + n);
  }
  void u8(uint8_t v) { buf.push_back(v); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) buf.push_back(uint8_t(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) buf.push_back(uint8_t(v >> (8 * i)));
  }
  void f64(double v) {
    uint64_t u;
    std::memcpy(&u, &v, 8);
    u64(u);
  }
  // LEB128: 7 bits a byte, high bit = more.
  void varint(uint64_t v) {
    while (v >= 0x80) {
      buf.push_back(uint8_t(v) | 0x80);
      v >>= 7;
    }
    buf.push_back(uint8_t(v));
  }
  size_t size() const { return buf.size(); }
};

struct ByteReader {
  const uint8_t* data;
  size_t size;
  size_t pos = 0;

  ByteReader(const uint8_t* d, size_t n) : data(d), size(n) {}
  size_t remaining() const { return size - pos; }

  const uint8_t* take(uint64_t n, const char* what) {
    if (n > remaining()) fail_format(std::string("truncated blob: ") + what + " runs past the end");
    const uint8_t* p = data + pos;
    pos += size_t(n);
    return p;
  }
  uint8_t u8(const char* what) { return *take(1, what); }
  uint32_t u32(const char* what) {
    const uint8_t* p = take(4, what);
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
  }
  uint64_t u64(const char* what) {
    const uint8_t* p = take(8, what);
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }
  double f64(const char* what) {
    uint64_t u = u64(what);
    double v;
    std::memcpy(&v, &u, 8);
    return v;
  }
  uint64_t varint(const char* what) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b = u8(what);
      if (shift == 63 && b > 1) break;  // would overflow 64 bits
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail_format(std::string("malformed varint in ") + what);
  }
};

}  // namespace ebgc
