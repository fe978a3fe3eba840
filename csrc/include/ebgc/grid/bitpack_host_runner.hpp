// The host runner of the device's fast mode (coder 1): the bit-packing kernels' steps executed on
// the CPU over the same grid, block by block, with the same per-block bodies
// (grid/bitpack_block_steps.hpp) the CUDA kernels run one block a thread. Launches become loops, the
// warp scan and the look-back a running sum of packed sizes, the block-wide reduce and scan of the
// decoder plain sums. Its blobs must equal the CPU codec's (coder 1, chunk_log2 =
// kDefaultChunkLog2, as the device writes them) byte for byte, and it must decode any coder-1 blob
// as the CPU does: tests/test_grid_bitpack.py checks both on every run. Single-threaded: a proof,
// not a codec.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../encode/compress.hpp"
#include "../predictors/dispatch.hpp"
#include "bitpack_block_steps.hpp"
#include "grid_blob.hpp"

namespace ebgc {

// What the device encodes: n values in chunks of kDefaultChunkLog2 (bitpack_launch.cuh's
// kGpuChunkLog2), the bound from the finite range of x (rel) or the request (abs).
template <class T, class Predictor>
void grid_bitpack_encode(const T* x, const std::vector<uint64_t>& shape, const Params& p, const Predictor& predict,
                         const FiniteRange* known_range, T* reconstruction, const BlobAllocator& allocate) {
  const uint64_t n = checked_elements(shape);
  const HostGridStart start = host_grid_start(x, shape, p, predict, kDefaultChunkLog2, Coder::Bitpack, known_range);
  const Header& h = start.header;
  const LinearQuantizer& qz = start.qz;
  const BitpackGrid g = BitpackGrid::of(n, kDefaultChunkLog2);

  // The fused kernel, segment by segment (a warp each), block by block (a thread each). `packed`
  // is the look-back's exclusive prefix, P(first block of the segment); `chunk_packed` P(cB).
  std::vector<uint8_t> streams(g.blocks * (1 + packed_block_bytes(32)) + 1);  // the device's worst case
  std::vector<uint32_t> outlier_bits(g.blocks);
  std::vector<uint64_t> tile_outliers(g.tiles() + 1, 0), len_a(g.chunks()), len_b(g.chunks());
  uint64_t packed = 0, chunk_packed = 0;
  for (uint64_t segment = 0; segment < g.segments; ++segment) {
    const uint64_t chunk = g.chunk_of(segment);
    if (segment == g.chunk_first_segment(chunk)) chunk_packed = packed;
    uint64_t before = packed;  // the warp's exclusive scan, lane by lane
    for (unsigned lane = 0; lane < kBitpackSegmentBlocks; ++lane) {
      const uint64_t block = segment * kBitpackSegmentBlocks + lane, first = block * kPackBlock;
      T v[kPackBlock];
      load_block_values(x, first, n, v);
      uint32_t code[kPackBlock];
      const BlockCodes bc = quantize_block(v, first, n, qz, predict, reconstruction, code);
      tile_outliers[segment / kBitpackTileSegments] += popcount32(bc.outliers);
      if (block < g.blocks) outlier_bits[block] = bc.outliers;
      write_block(g, block, chunk, bc.width, code, chunk_packed, before, streams.data());
      before += packed_block_bytes(bc.width);
    }
    packed = before;
    if (g.closes_chunk(segment)) len_b[chunk] = packed - chunk_packed;
  }
  for (uint64_t c = 0; c < g.chunks(); ++c) len_a[c] = g.chunk_end_block(c) - c * g.blocks_per_chunk;

  // The exclusive scan of per-tile counts (over tiles + 1 entries, as the device's), then the gather
  // kernel: a warp per tile, lane by lane. Its capacity is every outlier: where the device's is
  // short it runs the CPU codec instead, whose blob this one equals.
  std::vector<uint64_t> tile_offset(g.tiles() + 1, 0);
  for (uint64_t t = 0; t < g.tiles(); ++t) tile_offset[t + 1] = tile_offset[t] + tile_outliers[t];
  const uint64_t outliers = tile_offset[g.tiles()];
  std::vector<uint64_t> index(outliers);
  std::vector<T> value(outliers);
  for (uint64_t t = 0; t < g.tiles(); ++t)
    if (tile_outliers[t])
      for (unsigned lane = 0; lane < kPackBlock; ++lane)
        gather_tile_lane(t, lane, tile_offset[t], g.blocks, outlier_bits.data(), x, outliers, index.data(), value.data());
  write_coded_blob(h, outliers, index.data(), value.data(), sizeof(T), ByteWriter(), len_a, len_b, streams.data(),
                   allocate);
}

// The device decoder's steps for a coder-1 blob of any chunk size: the host's check of every
// width and packed length (what the device path does before its kernels), the streams staged with
// 8 bytes of padding (load_field's over-read), then decode segment by segment, thread by thread,
// and the outliers scattered. previous: the stream's reconstructions, for blend-predicted blobs.
template <class T>
void grid_bitpack_decode(const ParsedBlob& pb, T* out, const T* const* previous) {
  const Header& h = pb.header;
  if (h.coder != Coder::Bitpack) throw InvalidArgument("the grid bit-packing decoder reads bit-packed (coder 1) blobs");
  const uint64_t chunks = pb.len_a.size();
  for (uint64_t c = 0; c < chunks; ++c) BitpackCoder::check_chunk(pb.tables, pb.chunk(c));
  uint64_t stream_bytes = 0;
  for (uint64_t c = 0; c < chunks; ++c) stream_bytes += pb.len_a[c] + pb.len_b[c];
  std::vector<uint8_t> streams(stream_bytes + 8, 0);
  if (stream_bytes) std::memcpy(streams.data(), pb.streams, size_t(stream_bytes));

  const LinearQuantizer qz(h.abs_bound);
  const unsigned per_chunk = decode_segments_per_chunk(h.chunk_log2);
  with_predictor(h, previous, [&](const auto& full) {
    const auto& predict = per_value(full);
    uint32_t offset[kBitpackDecodeBlocks];
    unsigned width[kBitpackDecodeBlocks];
    for (uint64_t id = 0; id < chunks * per_chunk; ++id) {
      const BitpackDecodeSegment s = decode_segment(h.elements(), h.chunk_log2, per_chunk, id);
      if (s.empty()) continue;
      const uint8_t* widths = streams.data() + pb.offset[s.chunk];
      const uint8_t* data = widths + s.blocks;
      uint32_t before = 0;  // the block-wide reduction
      for (unsigned t = 0; t < kBitpackDecodeBlocks; ++t) before += widths_before_part(s, widths, t, kBitpackDecodeBlocks);
      uint32_t at = uint32_t(packed_block_bytes(before));  // the block-wide exclusive scan
      for (unsigned t = 0; t < kBitpackDecodeBlocks; ++t) {
        width[t] = segment_width(s, widths, t);
        offset[t] = at;
        at += uint32_t(packed_block_bytes(width[t]));
      }
      for (unsigned b = 0; b < kBitpackDecodeBlocks && s.first + b < s.blocks; ++b)
        for (unsigned lane = 0; lane < kPackBlock; ++lane) decode_value(s, b, lane, width[b], offset[b], data, qz, predict, out);
    }
  });
  for (uint64_t k = 0; k < pb.outlier_index.size(); ++k) scatter_outlier(pb.outlier_index.data(), pb.outlier_values, k, out);
}

}  // namespace ebgc
