// Stage 4a — canonical Huffman coding, code length limited to 12 bits so that decoding is one
// lookup in a 4096-entry table. The table is sent as one 4-bit length per symbol.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

#include "../common/bitio.hpp"
#include "../common/bytes.hpp"
#include "../common/errors.hpp"

namespace ebgc {

constexpr unsigned kHuffMaxLen = 12;
constexpr unsigned kHuffMaxSymbols = 1u << kHuffMaxLen;

// Optimal code lengths, then limited to kHuffMaxLen by lengthening the longest codes that still
// fit until the Kraft sum is met again. A single used symbol gets a 1-bit code.
inline std::vector<uint8_t> huffman_lengths(const std::vector<uint64_t>& counts) {
  const size_t n = counts.size();
  std::vector<uint8_t> len(n, 0);
  std::vector<uint32_t> used;
  for (size_t s = 0; s < n; ++s)
    if (counts[s]) used.push_back(uint32_t(s));
  if (used.empty()) return len;
  if (used.size() == 1) {
    len[used[0]] = 1;
    return len;
  }
  // Tree nodes: leaves first, then internal nodes; parent links give depths.
  struct Item {
    uint64_t w;
    uint32_t node;
    bool operator>(const Item& o) const { return w != o.w ? w > o.w : node > o.node; }
  };
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> heap;
  std::vector<uint32_t> parent(2 * used.size(), 0);
  for (uint32_t i = 0; i < used.size(); ++i) heap.push({counts[used[i]], i});
  uint32_t next = uint32_t(used.size());
  while (heap.size() > 1) {
    Item a = heap.top();
    heap.pop();
    Item b = heap.top();
    heap.pop();
    parent[a.node] = parent[b.node] = next;
    heap.push({a.w + b.w, next++});
  }
  const uint32_t root = next - 1;
  std::vector<uint32_t> depth(next, 0);
  for (uint32_t v = root; v-- > 0;) depth[v] = depth[parent[v]] + 1;
  for (uint32_t i = 0; i < used.size(); ++i) len[used[i]] = uint8_t(std::min<uint32_t>(depth[i], 255));

  // Length limiting (Kraft repair). Units of 2^-kHuffMaxLen.
  const uint64_t full = uint64_t(1) << kHuffMaxLen;
  uint64_t kraft = 0;
  for (uint32_t s : used) {
    if (len[s] > kHuffMaxLen) len[s] = kHuffMaxLen;
    kraft += full >> len[s];
  }
  if (kraft > full) {
    // Lengthen the least frequent symbols among the longest codes shorter than the limit.
    std::vector<uint32_t> order(used);
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      return counts[a] != counts[b] ? counts[a] < counts[b] : a < b;
    });
    while (kraft > full) {
      // The longest length below the limit that some symbol has; lengthening one of its codes
      // frees the least code space, and the least frequent such symbol costs the fewest bits.
      unsigned best = 0;
      for (uint32_t s : used)
        if (len[s] < kHuffMaxLen && len[s] > best) best = len[s];
      for (uint32_t s : order) {
        if (len[s] == best) {
          kraft -= full >> (best + 1);
          ++len[s];
          break;
        }
      }
    }
  }
  return len;
}

struct HuffmanCode {
  std::vector<uint8_t> len;     // per symbol, 0 = unused
  std::vector<uint16_t> code;   // bit-reversed canonical code, ready for an LSB-first writer
  std::vector<uint16_t> table;  // decode: index = next 12 bits; entry = symbol << 4 | length

  // Canonical assignment from lengths; throws FormatError on an over-full (invalid) length set.
  explicit HuffmanCode(std::vector<uint8_t> lengths) : len(std::move(lengths)) {
    const size_t n = len.size();
    code.assign(n, 0);
    unsigned count[kHuffMaxLen + 1] = {};
    for (uint8_t l : len) {
      require_format(l <= kHuffMaxLen, "Huffman code length over the limit");
      if (l) ++count[l];
    }
    uint64_t kraft = 0;
    for (unsigned l = 1; l <= kHuffMaxLen; ++l) kraft += uint64_t(count[l]) << (kHuffMaxLen - l);
    require_format(kraft <= (uint64_t(1) << kHuffMaxLen), "Huffman code lengths are over-full");
    uint32_t next[kHuffMaxLen + 1] = {};
    uint32_t c = 0;
    for (unsigned l = 1; l <= kHuffMaxLen; ++l) {
      next[l] = c;
      c = (c + count[l]) << 1;
    }
    table.assign(kHuffMaxSymbols, 0);
    for (size_t s = 0; s < n; ++s) {
      unsigned l = len[s];
      if (!l) continue;
      uint32_t v = next[l]++, r = 0;
      for (unsigned b = 0; b < l; ++b) r |= ((v >> b) & 1u) << (l - 1 - b);
      code[s] = uint16_t(r);
      for (uint32_t k = r; k < kHuffMaxSymbols; k += 1u << l) table[k] = uint16_t((s << 4) | l);
    }
  }

  inline void put(BitWriter& w, uint32_t s) const { w.put(code[s], len[s]); }
  // Caller refills; returns the symbol or throws on a code that no symbol owns.
  inline uint32_t get(BitReader& r) const {
    uint16_t e = table[r.peek(kHuffMaxLen)];
    unsigned l = e & 15u;
    if (!l) fail_format("invalid Huffman code in stream");
    r.skip(l);
    return e >> 4;
  }
};

// Table serialization: varint alphabet size, then 4-bit lengths, two per byte.
inline void write_huffman_lengths(ByteWriter& w, const std::vector<uint8_t>& len) {
  w.varint(len.size());
  for (size_t i = 0; i < len.size(); i += 2) {
    uint8_t lo = len[i], hi = i + 1 < len.size() ? len[i + 1] : 0;
    w.u8(uint8_t(lo | hi << 4));
  }
}

inline std::vector<uint8_t> read_huffman_lengths(ByteReader& r, size_t max_symbols) {
  uint64_t n = r.varint("Huffman alphabet size");
  require_format(n <= max_symbols, "Huffman alphabet larger than allowed");
  const uint8_t* p = r.take((n + 1) / 2, "Huffman code lengths");
  std::vector<uint8_t> len(n);
  for (size_t i = 0; i < n; ++i) len[i] = (p[i / 2] >> (4 * (i & 1))) & 15u;
  return len;
}

}  // namespace ebgc
