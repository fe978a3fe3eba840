// LSB-first bit streams. The reader never touches memory outside its buffer: past the end it
// yields zero bits and counts them, and the caller turns an overrun into a FormatError.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

namespace ebgc {

struct BitWriter {
  std::vector<uint8_t> out;
  uint64_t acc = 0;
  unsigned nacc = 0;

  // n <= 32 bits; value must fit in n bits.
  inline void put(uint64_t value, unsigned n) {
    acc |= value << nacc;
    nacc += n;
    if (nacc >= 32) {
      uint8_t b[4];
      uint32_t lo = uint32_t(acc);
      std::memcpy(b, &lo, 4);  // little-endian hosts only (checked in format.hpp)
      out.insert(out.end(), b, b + 4);
      acc >>= 32;
      nacc -= 32;
    }
  }
  void flush() {
    while (nacc > 0) {
      out.push_back(uint8_t(acc));
      acc >>= 8;
      nacc = nacc >= 8 ? nacc - 8 : 0;
    }
    acc = 0;
  }
  size_t bit_count() const { return out.size() * 8 + nacc; }
};

// The same bit order, branch-free, into a buffer the caller sized: every put() stores 8 bytes,
// so the buffer needs 8 bytes of slack past the last byte the stream will hold.
struct FastBitWriter {
  uint8_t* p;
  uint64_t acc = 0;
  unsigned nacc = 0;  // < 8 between calls

  explicit FastBitWriter(uint8_t* out) : p(out) {}
  inline void put(uint32_t value, unsigned n) {  // n <= 32, value < 2^n
    acc |= uint64_t(value) << nacc;
    nacc += n;
    std::memcpy(p, &acc, 8);  // little-endian hosts only (checked in format.hpp)
    p += nacc >> 3;
    acc >>= nacc & ~7u;
    nacc &= 7u;
  }
  // Writes the last partial byte; returns the end of the stream.
  uint8_t* finish() {
    if (nacc) *p++ = uint8_t(acc);
    acc = 0;
    nacc = 0;
    return p;
  }
};

struct BitReader {
  const uint8_t* p;
  size_t n;
  size_t pos = 0;          // next byte to load
  uint64_t buf = 0;
  unsigned bits = 0;        // valid bits in buf
  uint64_t overrun = 0;     // zero bits handed out past the end

  BitReader(const uint8_t* data, size_t size) : p(data), n(size) {}

  // Ensure at least 56 bits are buffered (zeros past the end). kEager: away from the end, load
  // 8 bytes whether or not bits are needed (with >= 56 buffered that adds no byte and ORs in
  // bits the buffer already holds). That costs a load where few bits are read, and saves a
  // branch the data decide where many are (measured in the context decoder's raw bits).
  template <bool kEager = false>
  inline void refill() {
    if (!kEager && bits >= 56) return;
    if (pos + 8 <= n) {
      uint64_t v;
      std::memcpy(&v, p + pos, 8);
      buf |= v << bits;
      pos += (63 - bits) >> 3;
      bits |= 56;
      return;
    }
    if (bits >= 56) return;
    while (bits <= 56) {
      if (pos < n) {
        buf |= uint64_t(p[pos++]) << bits;
      } else {
        overrun += 8;
      }
      bits += 8;
    }
  }
  inline uint32_t peek(unsigned k) const { return uint32_t(buf & ((uint64_t(1) << k) - 1)); }
  inline void skip(unsigned k) {
    buf >>= k;
    bits -= k;
  }
  inline uint32_t get(unsigned k) {
    uint32_t v = peek(k);
    skip(k);
    return v;
  }
  // True when more bits were consumed than the stream holds.
  bool overran() const {
    // Bits still buffered that came from past the end were never consumed.
    return overrun > bits;
  }
};

}  // namespace ebgc
