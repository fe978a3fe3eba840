// CRC-32C of a buffer from the CRCs of its parts, so that many threads checksum one buffer: a GPU
// computes the stream digest of reconstructions it holds (python/ebgc/stream.py) without copying
// them to the host. The CRC without its pre- and post-inversion ("raw") is linear: feeding a part
// of n bytes maps a register c to shift_n(c) ^ raw(part), where shift_n (feeding n zero bytes) is
// a 32x32 matrix over GF(2). Each part's raw CRC is computed independently (crc32c_raw, the
// kernel's per-thread body); the host chains them with the shift of the part length. The result
// is crc32c(buffer, seed) of common/checksum.hpp, which the tests check on the CPU.
#pragma once
#include <cstdint>
#include <vector>

#include "../common/checksum.hpp"
#include "../common/hd.hpp"

namespace ebgc {

// table: the byte table of the reflected polynomial (detail::crc32c_tables().t[0]).
EBGC_HD inline uint32_t crc32c_raw(const uint8_t* p, uint64_t n, const uint32_t* table) {
  uint32_t c = 0;
  for (uint64_t k = 0; k < n; ++k) c = (c >> 8) ^ table[(c ^ p[k]) & 0xffu];
  return c;
}

// The linear map of feeding zero bytes to the register, as the images of its 32 unit vectors.
struct Crc32cShift {
  uint32_t column[32];

  EBGC_HD uint32_t apply(uint32_t c) const {
    uint32_t r = 0;
    for (unsigned i = 0; c; ++i, c >>= 1)
      if (c & 1u) r ^= column[i];
    return r;
  }
  Crc32cShift then(const Crc32cShift& next) const {  // this map, then `next`
    Crc32cShift m;
    for (unsigned i = 0; i < 32; ++i) m.column[i] = next.apply(column[i]);
    return m;
  }
  static Crc32cShift zero_bytes(uint64_t n) {
    const auto& t = detail::crc32c_tables().t[0];
    Crc32cShift one_byte, result;
    for (unsigned i = 0; i < 32; ++i) {
      const uint32_t c = 1u << i;
      one_byte.column[i] = (c >> 8) ^ t[c & 0xffu];
      result.column[i] = c;  // identity
    }
    for (Crc32cShift power = one_byte; n; n >>= 1, power = power.then(power))
      if (n & 1u) result = result.then(power);
    return result;
  }
};

// crc32c(buffer, seed) from the raw CRCs of its consecutive parts of part_bytes (the last one
// shorter: total bytes in all).
inline uint32_t crc32c_from_parts(uint32_t seed, const uint32_t* raw, uint64_t total, uint64_t part_bytes) {
  if (!total) return seed;
  const uint64_t parts = (total + part_bytes - 1) / part_bytes, last = total - (parts - 1) * part_bytes;
  const Crc32cShift whole = Crc32cShift::zero_bytes(part_bytes), tail = Crc32cShift::zero_bytes(last);
  uint32_t c = ~seed;
  for (uint64_t j = 0; j < parts; ++j) c = (j + 1 < parts ? whole : tail).apply(c) ^ raw[j];
  return ~c;
}

// The maps of 2^i zero bytes (i < 64): a shift by any length in at most 64 applications, so that
// every part's term is computed on its own, without a chain through the others.
struct Crc32cPowers {
  Crc32cShift pow2[64];
  static const Crc32cPowers& get() {
    static const Crc32cPowers powers = [] {
      Crc32cPowers p;
      p.pow2[0] = Crc32cShift::zero_bytes(1);
      for (unsigned i = 1; i < 64; ++i) p.pow2[i] = p.pow2[i - 1].then(p.pow2[i - 1]);
      return p;
    }();
    return powers;
  }
};

EBGC_HD inline uint32_t crc32c_shift(uint32_t c, uint64_t bytes, const Crc32cShift* pow2) {
  for (unsigned i = 0; bytes; ++i, bytes >>= 1)
    if (bytes & 1u) c = pow2[i].apply(c);
  return c;
}

// Part j's term in the CRC of n bytes cut into parts of part_bytes: its raw CRC moved past the
// bytes after it. crc32c(buffer, seed) is crc32c_from_terms of the XOR of all parts' terms, in
// any order: how the GPU checksums a blob it assembles, with no host step (cuda/blob_assembly.cuh).
EBGC_HD inline uint32_t crc32c_part_term(const uint8_t* p, uint64_t n, uint64_t j, uint64_t part_bytes,
                                         const uint32_t* table, const Crc32cShift* pow2) {
  const uint64_t begin = j * part_bytes, end = n - begin < part_bytes ? n : begin + part_bytes;
  return crc32c_shift(crc32c_raw(p + begin, end - begin, table), n - end, pow2);
}
EBGC_HD inline uint32_t crc32c_from_terms(uint32_t seed, uint32_t terms, uint64_t n, const Crc32cShift* pow2) {
  return ~(crc32c_shift(~seed, n, pow2) ^ terms);
}

// The host runner of the device's checksum of a blob: the same terms, one part after another.
inline uint32_t crc32c_by_terms(const uint8_t* p, uint64_t n, uint32_t seed, uint64_t part_bytes) {
  const auto& t = detail::crc32c_tables().t[0];
  const Crc32cShift* pow2 = Crc32cPowers::get().pow2;
  uint32_t terms = 0;
  for (uint64_t j = 0; j * part_bytes < n; ++j) terms ^= crc32c_part_term(p, n, j, part_bytes, t.data(), pow2);
  return crc32c_from_terms(seed, terms, n, pow2);
}

// The host runner of the GPU's digest: the same parts, one after another.
inline uint32_t crc32c_by_parts(const uint8_t* p, uint64_t n, uint32_t seed, uint64_t part_bytes) {
  const auto& t = detail::crc32c_tables().t[0];
  std::vector<uint32_t> raw((n + part_bytes - 1) / part_bytes);
  for (uint64_t j = 0; j < raw.size(); ++j) {
    const uint64_t begin = j * part_bytes;
    raw[j] = crc32c_raw(p + begin, (n - begin < part_bytes ? n - begin : part_bytes), t.data());
  }
  return crc32c_from_parts(seed, raw.data(), n, part_bytes);
}

}  // namespace ebgc
