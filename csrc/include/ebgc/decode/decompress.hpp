// The decoder of one blob, from its parsed container (format/container.hpp): each chunk's coder
// (coders/dispatch.hpp) yields codes, its predictor (predictors/dispatch.hpp) their predictions, the
// quantizer the values; outliers are written last. The same chunk decoders with an output that
// does nothing validate a blob's streams before anything is allocated for it (plan.hpp).
#pragma once
#include <cstdint>
#include <cstring>

#include "../coders/dispatch.hpp"
#include "../common/errors.hpp"
#include "../common/parallel.hpp"
#include "../format/container.hpp"
#include "../predictors/dispatch.hpp"
#include "../quantize/quantizer.hpp"

namespace ebgc {

// previous[0], previous[1]: the stream's last and second-last reconstructions of this tensor, for
// blobs predicted from them (previous[0] may alias out: each value is read before it is written).
template <class T>
void decompress(const ParsedBlob& pb, T* out, uint64_t out_elems, unsigned threads, const T* const* previous = nullptr) {
  const Header& h = pb.header;
  if (h.dtype != dtype_of<T>()) throw InvalidArgument("output dtype does not match the blob");
  const uint64_t n = h.elements();
  if (out_elems != n) throw InvalidArgument("output size does not match the blob");
  if (h.coder == Coder::Raw) {
    if (n) std::memcpy(out, pb.raw_values, n * sizeof(T));
    return;
  }
  const LinearQuantizer qz(h.abs_bound);
  threads = std::max(1u, threads);
  with_predictor(h, previous, [&](const auto& full_predict) {
    with_coder(h.coder, [&](auto coder) {
      parallel_for(h.chunks(), threads, [&](size_t c) {
        const ChunkStreams s = pb.chunk(c);
        const auto& predict = full_predict.for_range(s.begin, s.end);
        coder.decode_chunk(pb.tables, s, [&](uint64_t i, int32_t q) { out[i] = qz.reconstruct<T>(q, predict(i)); });
      });
    });
  });
  for (size_t k = 0; k < pb.outlier_index.size(); ++k)
    std::memcpy(out + pb.outlier_index[k], pb.outlier_values + k * sizeof(T), sizeof(T));
}

// Checks every chunk's streams without writing a value: FormatError if any is corrupt.
inline void validate_streams(const ParsedBlob& pb, unsigned threads) {
  if (pb.header.coder == Coder::Raw) return;
  with_coder(pb.header.coder, [&](auto coder) {
    parallel_for(pb.header.chunks(), std::max(1u, threads), [&](size_t c) { coder.check_chunk(pb.tables, pb.chunk(c)); });
  });
}

}  // namespace ebgc
