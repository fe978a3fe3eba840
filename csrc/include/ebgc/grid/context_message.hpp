// Whole messages for the ratio coder (coder 4 on the device, "auto" and "context"): every tensor of
// a message (of one dtype) through one launch sequence of the context lanes, driven by a tensor
// table. Each tensor keeps its own LaneGrid (chunks of 2^kGridChunkLog2, kLanes lanes a chunk),
// and the message's lanes, chunks, blocks and values are the rows' in row order, so a tensor's
// blob is exactly the one it gets alone (and the CPU codec's). The analysis of all tensors comes
// back in one copy; the host then picks each tensor's coder and fits its tables with the CPU's
// code (grid_blob.hpp), and the coded tensors' lanes, sizes, streams and outliers are made by one
// more launch sequence, their chunk offsets being one scan over the whole message.
//
// What a thread does is grid/context_lane_steps.hpp's at the row's offsets; the CUDA kernels
// (cuda/context_message_kernels.cuh) and the host runner (grid/context_message_runner.hpp) both
// take the offsets and the host's choices from here.
#pragma once
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "grid_blob.hpp"
#include "message_grid.hpp"

namespace ebgc {

// The analysis kernel's thread block (lanes): a row's lanes start a new block, so that the block's
// shared histograms belong to one row.
constexpr unsigned kContextLaneBlock = 128;

// One row of the tensor table. Lane-indexed scratch starts at first_lane, the kernels' threads for
// its lanes at first_thread (a multiple of kContextLaneBlock); chunks, blocks, values and range
// tiles of earlier rows come first. coded / tables_at / bases_at are set by the host's choice.
template <class T>
struct ContextRow {
  const T* x;
  T* reconstruction;  // optional, must not overlap x
  uint64_t n, sign_period;
  uint64_t first_tile, first_thread, first_lane, first_chunk, first_block, first_value;
  uint64_t tables_at, bases_at;  // byte offsets of its encode tables (and the context coder's bases)
  uint32_t coded;                // LaneCoded: which lane coder codes it in steps 2 and 3, if any
  RowPredictor<T> predict;
  EBGC_HD LaneGrid grid() const { return LaneGrid(n, kGridChunkLog2); }
  EBGC_HD uint64_t threads() const { return (grid().lanes() + kContextLaneBlock - 1) / kContextLaneBlock * kContextLaneBlock; }
};

struct ContextMessageGrid {
  uint64_t rows = 0, tiles = 0, threads = 0, lanes = 0, chunks = 0, blocks = 0, values = 0;
};

// Fills the rows' offsets (x, reconstruction, n, sign_period set; every n >= 1).
template <class T>
ContextMessageGrid plan_context_message(std::vector<ContextRow<T>>& rows) {
  ContextMessageGrid m;
  m.rows = rows.size();
  for (ContextRow<T>& r : rows) {
    if (r.n == 0) throw InvalidArgument("a message row needs at least one value");
    const LaneGrid g = r.grid();
    r.first_tile = m.tiles, r.first_thread = m.threads, r.first_lane = m.lanes, r.first_chunk = m.chunks;
    r.first_block = m.blocks, r.first_value = m.values;
    r.tables_at = r.bases_at = 0;
    r.coded = 0;
    m.tiles += (r.n + kBitpackTileValues - 1) / kBitpackTileValues;
    m.threads += r.threads();
    m.lanes += g.lanes(), m.chunks += g.chunks, m.blocks += g.blocks(), m.values += r.n;
  }
  return m;
}

// Lays out the coded rows' tables one after another in `out` (max_context_table_bytes() each at most)
// and marks the rows with their lane coder.
template <class T>
void place_context_tables(std::vector<ContextRow<T>>& rows, const std::vector<LaneCoderChoice>& choices,
                          std::vector<uint8_t>& out) {
  out.clear();
  for (size_t k = 0; k < rows.size(); ++k) {
    if (choices[k].coded() == kLaneNone) continue;
    const PlacedTables at = place_lane_tables(choices[k], out);
    rows[k].tables_at = at.tables, rows[k].bases_at = at.bases, rows[k].coded = choices[k].coded();
  }
}

// A coded row's view of the tables (placed at `tables`): the context coder's, or Huffman's.
template <class T>
EBGC_HD inline RansEncodeView row_tables(const ContextRow<T>& r, const uint8_t* tables) {
  return rans_tables_at(tables, {r.tables_at, r.bases_at});
}
template <class T>
EBGC_HD inline HuffmanEncodeView row_huffman(const ContextRow<T>& r, const uint8_t* tables) {
  return huffman_view_at(tables + r.tables_at);
}

// Where a coded row's blob parts are, from the message's per-chunk arrays: len_a, len_b (chunks),
// offset and first_outlier (exclusive scans over chunks + 1 entries).
template <class T>
void put_context_row_blob(const ContextRow<T>& r, const std::vector<uint64_t>& shape, const Params& p, double abs_bound,
                          const ByteWriter& tables, const unsigned long long* len_a, const unsigned long long* len_b,
                          const unsigned long long* offset, const unsigned long long* first_outlier,
                          const uint64_t* index, const uint8_t* values, const uint8_t* streams,
                          const CodedBlobSink& sink, size_t tensor) {
  const LaneGrid g = r.grid();
  const uint64_t c0 = r.first_chunk, first = first_outlier[c0];
  Header h = grid_header<T>(shape, p, r.predict, kGridChunkLog2, lane_coder(r.coded));
  h.abs_bound = abs_bound;
  const std::vector<uint64_t> a(len_a + c0, len_a + c0 + g.chunks), b(len_b + c0, len_b + c0 + g.chunks);
  put_coded_blob(h, first_outlier[c0 + g.chunks] - first, index + first, values + first * sizeof(T), sizeof(T), tables,
                 a, b, streams + offset[c0], sink, tensor);
}

}  // namespace ebgc
