// Whole messages as one grid (the device's fast mode, coder 1): every tensor of a message (of one
// dtype) goes through one launch sequence, driven by a tensor table. Each tensor keeps the grid
// of grid/bitpack_block_steps.hpp (its own blocks, warp segments, tiles of 8,192 values, chunks of
// 2^kDefaultChunkLog2), and the message's grid is their concatenation: tile t of the message is
// tile t - first_tile of the row whose tiles cover it. So the blob of each tensor is exactly the
// one it gets alone (and the CPU codec's), while the launches, the scans and the copies back cover
// all tensors at once: one small copy brings every tensor's sizes, one more their streams.
//
// What a thread does here is the single-tensor steps' (quantize_block, write_block,
// gather_tile_lane) at offsets this file computes; the CUDA kernels (cuda/message_kernels.cuh) and
// the host runner (grid/message_host_runner.hpp) both take them from here.
#pragma once
#include <cstdint>
#include <vector>

#include "../common/errors.hpp"
#include "../quantize/bound.hpp"
#include "bitpack_block_steps.hpp"
#include "row_predictor.hpp"

namespace ebgc {

constexpr unsigned kMessageChunkLog2 = kDefaultChunkLog2;  // the device's fast-mode chunks
constexpr uint64_t kBitpackTileValues = uint64_t(kBitpackTileBlocks) * kPackBlock;  // 8,192

// One row of the tensor table: a tensor (n >= 1 values) and its place in the message's grid.
// Tiles, segments, blocks and chunks of earlier rows come first; streams_at is where its stream
// area starts (earlier rows' worst cases). reconstruction (optional) receives what the decoder
// will return; it must not overlap x or the predictor's reconstructions.
template <class T>
struct MessageRow {
  const T* x;
  T* reconstruction;
  uint64_t n, first_tile, first_segment, first_block, first_chunk, streams_at;
  RowPredictor<T> predict;
  EBGC_HD BitpackGrid grid() const { return BitpackGrid::of(n, kMessageChunkLog2); }
};

// The message's results, one array of 64-bit words that one copy brings back: per row
// kRowWords words, then len_b of every chunk (rows' chunks in row order).
enum MessageResult : unsigned {
  kRowStreamBytes = 0,   // the row's stream bytes (widths and packed data of all its chunks)
  kRowOutliers = 1,      // its outlier count
  kRowFirstOutlier = 2,  // where its outliers start in the message's outlier arrays
  kRowAbsBound = 3,      // the bits of its absolute bound
  kRowWords = 4
};

// Sizes of the message's grid and buffers, from its rows.
struct MessageGrid {
  uint64_t rows = 0, tiles = 0, segments = 0, blocks = 0, chunks = 0, stream_area = 0, values = 0;
  uint64_t result_words() const { return kRowWords * rows + chunks; }
};

// The worst case of a tensor's streams: every block at width 32, plus its width byte.
EBGC_HD inline uint64_t bitpack_stream_area(uint64_t blocks) { return blocks * (1 + packed_block_bytes(32)); }

// Fills the rows' offsets (x, reconstruction, n already set; every n >= 1) and returns the grid.
template <class T>
MessageGrid plan_message(std::vector<MessageRow<T>>& rows) {
  MessageGrid m;
  m.rows = rows.size();
  for (MessageRow<T>& r : rows) {
    if (r.n == 0) throw InvalidArgument("a message row needs at least one value");
    const BitpackGrid g = r.grid();
    r.first_tile = m.tiles, r.first_segment = m.segments, r.first_block = m.blocks, r.first_chunk = m.chunks;
    r.streams_at = m.stream_area;
    m.tiles += g.tiles(), m.segments += g.segments, m.blocks += g.blocks, m.chunks += g.chunks();
    m.stream_area += bitpack_stream_area(g.blocks);
    m.values += r.n;
  }
  return m;
}

// The row of message item `id` (a tile, lane thread or chunk): the last row whose first item
// (the member `first`) is <= id.
template <class Row>
EBGC_HD inline uint64_t row_at(const Row* rows, uint64_t count, uint64_t id, uint64_t Row::*first) {
  uint64_t lo = 0, hi = count;  // rows[lo].*first <= id < rows[hi].*first
  while (hi - lo > 1) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (rows[mid].*first <= id) lo = mid;
    else hi = mid;
  }
  return lo;
}

template <class T>
EBGC_HD inline uint64_t message_row_of_tile(const MessageRow<T>* rows, uint64_t count, uint64_t tile) {
  return row_at(rows, count, tile, &MessageRow<T>::first_tile);
}

// Thread t (of `threads`) of a row's tile `tile`: its share of the row's finite range (folded into
// lo, hi). Min and max are exact, so any order of folding gives the CPU's range.
template <class T>
EBGC_HD inline void range_tile_part(const T* x, uint64_t n, uint64_t tile, unsigned t, unsigned threads, double& lo,
                                    double& hi) {
  const uint64_t end = (tile + 1) * kBitpackTileValues < n ? (tile + 1) * kBitpackTileValues : n;
  for (uint64_t i = tile * kBitpackTileValues + t; i < end; i += threads) {
    const double v = double(x[i]);
    if (is_finite(v)) {
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
  }
}

// A row's absolute bound from its finite range (rel) or the request (abs): bound.hpp's arithmetic.
EBGC_HD inline double message_abs_bound(bool rel, double error_bound, double lo, double hi) {
  return rel ? rel_abs_bound(error_bound, lo, hi) : error_bound;
}

// The device's outlier capacity for a message of `values` values (as for one tensor of that size);
// past it the message falls back to coding its tensors one by one.
EBGC_HD inline uint64_t message_outlier_capacity(uint64_t values) { return values / 64 > 4096 ? values / 64 : 4096; }

// A row's results once the outlier scan is done: tile_offset is the exclusive scan of the
// message's per-tile outlier counts (tiles + 1 entries).
template <class T>
EBGC_HD inline void finish_message_row(const MessageRow<T>& r, uint64_t row, const unsigned long long* tile_offset,
                                       double abs_bound, unsigned long long* result) {
  const uint64_t first = tile_offset[r.first_tile], end = tile_offset[r.first_tile + r.grid().tiles()];
  result[kRowWords * row + kRowOutliers] = end - first;
  result[kRowWords * row + kRowFirstOutlier] = first;
  result[kRowWords * row + kRowAbsBound] = bits_of(abs_bound);
}

// Where each row's streams go in the message's compact stream buffer (the exclusive sum of the
// rows' stream bytes); returns the total. One device thread runs it before the compaction.
template <class Offset>
EBGC_HD inline uint64_t message_stream_offsets(const unsigned long long* result, uint64_t rows, Offset* offset) {
  uint64_t at = 0;
  for (uint64_t k = 0; k < rows; ++k) {
    offset[k] = at;
    at += result[kRowWords * k + kRowStreamBytes];
  }
  return at;
}

}  // namespace ebgc
