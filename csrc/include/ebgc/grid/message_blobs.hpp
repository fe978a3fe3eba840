// The host's part of a message encode, shared by the CUDA backend (cuda/message_launch.cuh) and
// the host runner (grid/message_host_runner.hpp): each tensor's blob from the message's results,
// outliers and compact streams, by the container writer the CPU codec uses. Tensors of no values
// never enter the grid; the CPU codec writes their blobs (header only), as for one tensor.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "../ebgc.hpp"
#include "grid_blob.hpp"
#include "message_grid.hpp"

namespace ebgc {

// The blob of a tensor of no values (the device path does the same for one tensor).
inline void write_empty_blob(DType dtype, const std::vector<uint64_t>& shape, const Params& p, const BlobAllocator& allocate) {
  TensorView none;
  none.dtype = dtype;
  none.shape = shape;
  none.device = Device::Host;
  ebgc::compress(none, p, Execution(), StreamTerms(), allocate);
}

// rows[k] holds tensor tensor_of[k] (of shape shapes[tensor_of[k]]); result, index, values and
// streams are the message's, as the grid left them: for a host sink the compact copy in host
// memory (row k at message_stream_offsets), for a sink that assembles where the streams are the
// grid's own stream area (row k at rows[k].streams_at: no compaction).
template <class T>
void write_message_blobs(const std::vector<MessageRow<T>>& rows, const std::vector<size_t>& tensor_of,
                         const std::vector<std::vector<uint64_t>>& shapes, const Params& p,
                         const unsigned long long* result, const unsigned long long* index, const uint8_t* values,
                         const uint8_t* streams, const CodedBlobSink& sink) {
  std::vector<uint64_t> offset(rows.size());
  if (sink.streams_stay())
    for (size_t k = 0; k < rows.size(); ++k) offset[k] = rows[k].streams_at;
  else
    message_stream_offsets(result, rows.size(), offset.data());
  const unsigned long long* len_b_all = result + kRowWords * rows.size();
  for (size_t k = 0; k < rows.size(); ++k) {
    const BitpackGrid g = rows[k].grid();
    const unsigned long long* row = result + kRowWords * k;
    const size_t tensor = tensor_of[k];
    Header h = grid_header<T>(shapes[tensor], p, rows[k].predict, kMessageChunkLog2, Coder::Bitpack);
    h.abs_bound = double_of(row[kRowAbsBound]);
    std::vector<uint64_t> len_a(g.chunks()), len_b(len_b_all + rows[k].first_chunk, len_b_all + rows[k].first_chunk + g.chunks());
    for (uint64_t c = 0; c < g.chunks(); ++c) len_a[c] = g.chunk_end_block(c) - c * g.blocks_per_chunk;
    const uint64_t first = row[kRowFirstOutlier];
    put_coded_blob(h, row[kRowOutliers], index + first, values + first * sizeof(T), sizeof(T), ByteWriter(), len_a,
                   len_b, streams + offset[k], sink, tensor);
  }
}

}  // namespace ebgc
