// The bit-packing coder (coder 1) as a grid of blocks: what one thread does for one block of 32
// values in each kernel of the device's fast mode. The CUDA kernels (cuda/bitpack_encode_kernel.cuh,
// cuda/bitpack_decode_kernel.cuh) run these bodies one block a thread; the host runner
// (grid/bitpack_host_runner.hpp) runs the same bodies block by block over the same grid in the
// normal test suite, and its blobs equal the CPU codec's byte for byte (tests/test_grid_bitpack.py).
// What is left for a GPU to prove is the warp scan, the look-back, the shuffles and the atomics.
//
// Encoding: thread t of the encode kernel owns block t; a warp's 32 blocks form a segment (the
// look-back's unit), a thread block's 8 segments a tile (the outlier gather's unit).
//   1. load_block_values (or the kernel's vector loads) + quantize_block: codes, width, outliers;
//   (the warp: an exclusive scan of the packed sizes 4 w; the look-back: the segments before)
//   2. write_block: the width byte and the packed words at their places (BitpackGrid's layout);
//   3. gather_tile_lane: a tile's outliers in index order, one lane per value of a block.
// Decoding: a thread block per decode segment of 256 blocks of a chunk: widths_before_part (the
// width bytes before the segment, reduced), segment_width (scanned), then decode_value per value.
#pragma once
#include <cstdint>
#include <cstring>

#include "../coders/bitpack.hpp"
#include "../common/hd.hpp"
#include "../quantize/quantizer.hpp"

// The loops over a block's 32 values are unrolled on the device so that codes stay in registers.
#if defined(__CUDACC__)
#define EBGC_UNROLL _Pragma("unroll")
#else
#define EBGC_UNROLL
#endif

namespace ebgc {

constexpr unsigned kBitpackSegmentBlocks = 32;  // one warp's blocks: the look-back's unit
constexpr unsigned kBitpackTileSegments = 8;    // one thread block's warps
constexpr unsigned kBitpackTileBlocks = kBitpackSegmentBlocks * kBitpackTileSegments;  // the gather's unit
constexpr unsigned kBitpackDecodeBlocks = 256;  // blocks of one decode segment (one thread each)

// ---- encoding ----------------------------------------------------------------------------------

// Block, segment and chunk geometry of the encoder for n values in chunks of 2^chunk_log2 (>= 2^10,
// so that no segment straddles a chunk).
//
// Layout arithmetic. With P(k) the packed bytes (4 w) of all blocks before block k, and chunk c
// holding blocks [c B, (c+1) B): chunk c's streams start at P(cB) + cB, its width bytes come first
// (block k's at P(cB) + k), then its packed data (block k's at P(k) + min(blocks, (c+1) B)).
struct BitpackGrid {
  uint64_t n, blocks, segments, segments_per_chunk, blocks_per_chunk;

  EBGC_HD static BitpackGrid of(uint64_t n, unsigned chunk_log2) {
    const uint64_t blocks = (n + kPackBlock - 1) / kPackBlock;
    const uint64_t per_chunk = (uint64_t(1) << chunk_log2) / kPackBlock;
    return {n, blocks, (blocks + kBitpackSegmentBlocks - 1) / kBitpackSegmentBlocks, per_chunk / kBitpackSegmentBlocks,
            per_chunk};
  }
  EBGC_HD uint64_t tiles() const { return (segments + kBitpackTileSegments - 1) / kBitpackTileSegments; }
  EBGC_HD uint64_t chunks() const { return (blocks + blocks_per_chunk - 1) / blocks_per_chunk; }
  EBGC_HD uint64_t chunk_of(uint64_t segment) const { return segment / segments_per_chunk; }
  EBGC_HD uint64_t chunk_first_segment(uint64_t c) const { return c * segments_per_chunk; }
  // The segment whose inclusive prefix ends chunk c's packed data (the chunk's len_b).
  EBGC_HD bool closes_chunk(uint64_t segment) const {
    return segment + 1 == segments || (segment + 1) % segments_per_chunk == 0;
  }
  EBGC_HD uint64_t chunk_end_block(uint64_t c) const {
    const uint64_t end = (c + 1) * blocks_per_chunk;
    return end < blocks ? end : blocks;
  }
  // chunk_packed = P(cB), packed_before = P(k).
  EBGC_HD uint64_t width_at(uint64_t chunk_packed, uint64_t block) const { return chunk_packed + block; }
  EBGC_HD uint64_t data_at(uint64_t packed_before, uint64_t chunk) const { return packed_before + chunk_end_block(chunk); }
  EBGC_HD uint64_t stream_bytes(uint64_t packed_total) const { return packed_total + blocks; }
};

// The 32 values of the block starting at `first`, one by one (zeros past n).
template <class T>
EBGC_HD inline void load_block_values(const T* x, uint64_t first, uint64_t n, T (&v)[kPackBlock]) {
  EBGC_UNROLL
  for (unsigned j = 0; j < kPackBlock; ++j) v[j] = first + j < n ? x[first + j] : T(0);
}

struct BlockCodes {
  uint32_t outliers;  // bit j: value j is an outlier (its code is 0)
  unsigned width;     // bit width of the widest zigzag code
};

// Quantizes the block's values v (the block starts at value `first`) into zigzag codes; values
// past n get code 0. reconstruction (optional): what the decoder will return.
template <class T, class Predictor>
EBGC_HD inline BlockCodes quantize_block(const T (&v)[kPackBlock], uint64_t first, uint64_t n, const LinearQuantizer& qz,
                                         const Predictor& predict, T* reconstruction, uint32_t (&code)[kPackBlock]) {
  uint32_t any = 0, outliers = 0;
  EBGC_UNROLL
  for (unsigned j = 0; j < kPackBlock; ++j) {
    const uint64_t i = first + j;
    int32_t q = 0;
    if (i < n) {
      T decoded;
      outliers |= uint32_t(!qz.quantize(v[j], predict(i), q, decoded)) << j;
      if (reconstruction) reconstruction[i] = decoded;
    }
    code[j] = zigzag(q);
    any |= code[j];
  }
  return {outliers, bit_width(any)};
}

// A little-endian 32-bit word at any byte address; one store on the device where it is aligned.
EBGC_HD inline void store_le32(uint8_t* p, uint32_t v, bool aligned) {
#if defined(__CUDA_ARCH__)
  if (aligned) {
    *reinterpret_cast<uint32_t*>(p) = v;
    return;
  }
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
  p[2] = uint8_t(v >> 16);
  p[3] = uint8_t(v >> 24);
#else
  (void)aligned;
  std::memcpy(p, &v, 4);  // a little-endian host, as coders/bitpack.hpp's pack_block assumes
#endif
}

// The 4 w bytes of a block's packed words at `out`, exactly what pack_block writes: value j's
// field at bit j w. w in 1..32.
EBGC_HD inline void pack_block_words(const uint32_t (&code)[kPackBlock], unsigned w, uint8_t* out) {
  const bool aligned = (reinterpret_cast<uintptr_t>(out) & 3u) == 0;  // all chunks but maybe a short last one
  uint64_t pending = 0;  // bits not yet stored, `fill` of them
  unsigned fill = 0;
  EBGC_UNROLL
  for (unsigned j = 0; j < kPackBlock; ++j) {
    pending |= uint64_t(code[j]) << fill;
    fill += w;
    if (fill >= 32) {
      store_le32(out, uint32_t(pending), aligned);
      out += 4;
      pending >>= 32;
      fill -= 32;
    }
  }
}

// Block `block` of chunk `chunk` into the stream area: its width byte (blocks past the last one of
// the tensor have none) and its packed words. chunk_packed = P(cB), packed_before = P(block).
EBGC_HD inline void write_block(const BitpackGrid& g, uint64_t block, uint64_t chunk, unsigned w,
                                const uint32_t (&code)[kPackBlock], uint64_t chunk_packed, uint64_t packed_before,
                                uint8_t* streams) {
  if (block < g.blocks) streams[g.width_at(chunk_packed, block)] = uint8_t(w);
  if (w) pack_block_words(code, w, streams + g.data_at(packed_before, chunk));
}

// Lane `lane` of the outlier gather of tile `tile`: value `lane` of each of the tile's blocks, if it
// is an outlier, at its rank in index order from `first` (the tile's exclusive prefix of outlier
// counts) on. Entries past `capacity` are dropped (the device's host then falls back).
template <class T, class Index>
EBGC_HD inline void gather_tile_lane(uint64_t tile, unsigned lane, uint64_t first, uint64_t blocks,
                                     const uint32_t* outlier_bits, const T* x, uint64_t capacity, Index* index,
                                     T* value) {
  const uint32_t below = (1u << lane) - 1u;  // the lanes before this one
  uint64_t at = first;
  const uint64_t end = (tile + 1) * kBitpackTileBlocks < blocks ? (tile + 1) * kBitpackTileBlocks : blocks;
  for (uint64_t k = tile * kBitpackTileBlocks; k < end; ++k) {
    const uint32_t m = outlier_bits[k];
    if ((m >> lane) & 1u) {
      const uint64_t r = at + popcount32(m & below);
      if (r < capacity) {
        index[r] = Index(k * kPackBlock + lane);
        value[r] = x[k * kPackBlock + lane];
      }
    }
    at += popcount32(m);
  }
}

// ---- decoding ----------------------------------------------------------------------------------

// Decode segment `id` of the grid: blocks [first, first + kBitpackDecodeBlocks) of chunk `chunk`,
// which holds values [begin, end) in `blocks` blocks. Empty (no thread has work) when first >= blocks.
struct BitpackDecodeSegment {
  uint64_t chunk, begin, end, blocks, first;
  EBGC_HD bool empty() const { return first >= blocks; }
};

// Decode segments per chunk (a chunk's blocks over kBitpackDecodeBlocks, rounded up).
EBGC_HD inline unsigned decode_segments_per_chunk(unsigned chunk_log2) {
  const uint64_t blocks = (uint64_t(1) << chunk_log2) / kPackBlock;
  return unsigned((blocks + kBitpackDecodeBlocks - 1) / kBitpackDecodeBlocks);
}

EBGC_HD inline BitpackDecodeSegment decode_segment(uint64_t n, unsigned chunk_log2, unsigned segments_per_chunk,
                                                   uint64_t id) {
  BitpackDecodeSegment s;
  s.chunk = id / segments_per_chunk;
  s.begin = s.chunk << chunk_log2;
  const uint64_t end = s.begin + (uint64_t(1) << chunk_log2);
  s.end = end < n ? end : n;
  s.blocks = s.end > s.begin ? (s.end - s.begin + kPackBlock - 1) / kPackBlock : 0;
  s.first = uint64_t(id % segments_per_chunk) * kBitpackDecodeBlocks;
  return s;
}

// Thread t's share of the sum of the chunk's width bytes before the segment (then reduced over
// the segment's `threads` threads).
EBGC_HD inline uint32_t widths_before_part(const BitpackDecodeSegment& s, const uint8_t* widths, unsigned t,
                                           unsigned threads) {
  uint32_t before = 0;
  for (uint64_t k = t; k < s.first; k += threads) before += widths[k];
  return before;
}

// Width of the segment's block t (0 past the chunk's last block).
EBGC_HD inline unsigned segment_width(const BitpackDecodeSegment& s, const uint8_t* widths, unsigned t) {
  const uint64_t k = s.first + t;
  return k < s.blocks ? widths[k] : 0u;
}

// w (<= 32) bits starting at bit `bit` of the byte stream `base`, from the two aligned 32-bit
// words covering them: the buffer must be readable 8 bytes past the last byte of a field (the
// decoders stage the streams with that padding) and from the aligned word before its start.
EBGC_HD inline uint32_t load_field(const uint8_t* base, uint64_t bit, unsigned w) {
  const uint8_t* p = base + (bit >> 3);
  const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
  const uint8_t* word = reinterpret_cast<const uint8_t*>(addr & ~uintptr_t(3));
  uint32_t lo, hi;
#if defined(__CUDA_ARCH__)
  lo = reinterpret_cast<const uint32_t*>(word)[0];
  hi = reinterpret_cast<const uint32_t*>(word)[1];
#else
  std::memcpy(&lo, word, 4);
  std::memcpy(&hi, word + 4, 4);
#endif
  const uint64_t two = uint64_t(lo) | uint64_t(hi) << 32;
  const unsigned shift = unsigned(addr & 3u) * 8u + unsigned(bit & 7u);  // <= 31
  const uint64_t mask = (uint64_t(1) << w) - 1;
  return uint32_t((two >> shift) & mask);
}

// Value `lane` of the segment's block b, whose packed data (width w) starts at byte `offset` of the
// chunk's packed data `data`: unzigzagged and reconstructed with the predictor. Outliers are
// written afterwards (scatter_outlier).
template <class T, class Predictor>
EBGC_HD inline void decode_value(const BitpackDecodeSegment& s, unsigned b, unsigned lane, unsigned w, uint32_t offset,
                                 const uint8_t* data, const LinearQuantizer& qz, const Predictor& predict, T* out) {
  const uint32_t z = w ? load_field(data, uint64_t(offset) * 8 + uint64_t(lane) * w, w) : 0u;
  const uint64_t i = s.begin + (s.first + b) * kPackBlock + lane;
  if (i < s.end) out[i] = qz.reconstruct<T>(unzigzag(z), predict(i));
}

// Outlier k replaces its value bit for bit (values are unaligned inside the blob).
template <class T, class Index>
EBGC_HD inline void scatter_outlier(const Index* index, const uint8_t* values, uint64_t k, T* out) {
  T v;
  uint8_t* d = reinterpret_cast<uint8_t*>(&v);
  for (unsigned b = 0; b < sizeof(T); ++b) d[b] = values[k * sizeof(T) + b];
  out[index[k]] = v;
}

}  // namespace ebgc
