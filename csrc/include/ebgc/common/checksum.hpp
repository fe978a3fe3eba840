// CRC-32C (Castagnoli) over the whole blob: corruption in transit is reported as a ChecksumError
// before any section is parsed. x86-64 CPUs with SSE4.2 compute it in hardware (about 4x the
// slicing-by-8 tables, which remain the portable path); both give the same value.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define EBGC_CRC32C_HW 1
#endif

namespace ebgc {

namespace detail {
struct Crc32cTables {
  std::array<std::array<uint32_t, 256>, 8> t{};
  Crc32cTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
  }
};
inline const Crc32cTables& crc32c_tables() {
  static const Crc32cTables tables;
  return tables;
}

#ifdef EBGC_CRC32C_HW
__attribute__((target("sse4.2"))) inline uint32_t crc32c_sse42(const uint8_t* p, size_t n, uint32_t crc) {
  uint64_t c = ~crc;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  uint32_t c32 = uint32_t(c);
  for (; n; --n) c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}
#endif
}  // namespace detail

inline uint32_t crc32c_portable(const uint8_t* p, size_t n, uint32_t crc = 0) {
  const auto& t = detail::crc32c_tables().t;
  crc = ~crc;
  while (n >= 8) {
    uint32_t lo = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
    lo ^= crc;
    crc = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
          t[3][p[4]] ^ t[2][p[5]] ^ t[1][p[6]] ^ t[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
  return ~crc;
}

inline uint32_t crc32c(const uint8_t* p, size_t n, uint32_t crc = 0) {
#ifdef EBGC_CRC32C_HW
  static const bool hardware = __builtin_cpu_supports("sse4.2");
  if (hardware) return detail::crc32c_sse42(p, n, crc);
#endif
  return crc32c_portable(p, n, crc);
}

}  // namespace ebgc
