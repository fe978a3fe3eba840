// What a caller hands the front door (ebgc.hpp): a tensor (what), the parameters (how to code it)
// and the execution (where and how fast). Plain structs, in the manner of zfp's field and stream.
#pragma once
#include <cstdint>
#include <vector>

#include "format/vocabulary.hpp"

namespace ebgc {

enum class Device : uint8_t { Host = 0, Cuda = 1 };

// A strided array in host or device memory. strides are in bytes per step of each dimension
// (any sign); empty means C-contiguous.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::Float32;
  std::vector<uint64_t> shape;
  std::vector<int64_t> strides;
  Device device = Device::Host;

  uint64_t elements() const {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;  // the front door checks the limit before relying on it
    return n;
  }
  size_t item_size() const { return dtype_size(dtype); }
  bool contiguous() const {
    if (strides.empty()) return true;
    int64_t expect = int64_t(item_size());
    for (size_t d = shape.size(); d-- > 0;) {
      if (shape[d] > 1 && strides[d] != expect) return false;
      expect *= int64_t(shape[d]);
    }
    return true;
  }
};

// How to code a tensor.
struct Params {
  BoundMode mode = BoundMode::Rel;
  double error_bound = 1e-2;
  int coder = kCoderAuto;          // kCoderAuto or a written Coder id
  bool low_rank = true;            // let matrices try the low-rank predictor
  unsigned chunk_log2 = kDefaultChunkLog2;
};

// Stream prediction: the stream's last and second-last reconstructions of this tensor (C-contiguous,
// the tensor's dtype and size; either may be null), and where the encoder puts the reconstruction
// the decoder will compute (optional).
struct StreamTerms {
  const void* previous[2] = {nullptr, nullptr};
  void* reconstruction = nullptr;
};

// How to run: host threads, or the CUDA stream of device work (a cudaStream_t as an integer).
struct Execution {
  unsigned threads = 1;
  uintptr_t cuda_stream = 0;
};

}  // namespace ebgc
