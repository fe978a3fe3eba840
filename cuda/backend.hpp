// The CUDA backend's host interface: plain C++ (no CUDA types), so that the pybind11 module is
// compiled by the host compiler and only backend.cu by nvcc. Pointers are device pointers; a
// stream is a cudaStream_t passed as an integer (0: the legacy default stream).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ebgc/format.hpp"

namespace ebgc {
namespace gpu {

int device_count();  // 0 where there is no driver or no device
std::string device_name(int device);
int device_of(const void* device_pointer);  // throws InvalidArgument for host memory

struct EncodeRequest {
  const void* x = nullptr;  // C-contiguous, on the device
  DType dtype = DType::Float32;
  std::vector<uint64_t> shape;
  BoundMode mode = BoundMode::Rel;
  double error_bound = 1e-2;
  int coder = int(Coder::Bitpack);  // bitpack runs on the GPU; the others are coded on the host
  unsigned host_threads = 1;        // for the host-coded path
  const void* previous[2] = {nullptr, nullptr};  // stream predictor inputs (device)
  double coef[2] = {0, 0};
  unsigned terms = 0;               // 0: zero prediction; 1 or 2: blend of previous[0..terms)
  void* reconstruction = nullptr;   // optional, device: receives what the decoder will return, written
                                    // on `stream` (may alias x or previous)
  uintptr_t stream = 0;
  bool low_rank = true;             // host-coded path without stream terms: as CompressOptions
};

// Called once with the blob's final size; returns where to write it (host memory).
using BlobAllocator = std::function<uint8_t*(size_t)>;

// Compresses on the device the array holds. The result equals, byte for byte, what the CPU
// codec makes of the same values with the same coder. Waits for its own stream only (the size of
// the blob is needed on the host).
void compress(const EncodeRequest& request, const BlobAllocator& allocate);

struct DecodeRequest {
  const uint8_t* blob = nullptr;  // host bytes
  size_t size = 0;
  void* out = nullptr;            // device, C-contiguous, of the blob's dtype and size
  DType dtype = DType::Float32;
  uint64_t out_elems = 0;
  const void* previous[2] = {nullptr, nullptr};  // device (may alias out)
  unsigned host_threads = 1;
  uintptr_t stream = 0;
};

// Validates the blob on the host (everything, including the bit-packed widths), then decodes on
// the device asynchronously on `stream`. Raw and bitpack blobs decode on the GPU; Huffman and
// context blobs are decoded on the host and copied.
void decompress(const DecodeRequest& request);

// ---- measurements (bench/): device time of each stage, by CUDA events ----------------------
struct Timings {
  std::vector<double> compress_ms, decompress_ms, copy_ms;
  uint64_t compressed_bytes = 0;
};
// Runs the device part of compress (range, encode, outlier gather; blob streams left in device
// memory) and of decompress (from a blob already on the device) `repeats` times each, and a
// device-to-device copy of the input's bytes.
Timings benchmark_bitpack(const void* x, DType dtype, uint64_t n, BoundMode mode, double error_bound,
                          void* scratch_out, unsigned repeats, uintptr_t stream);

}  // namespace gpu
}  // namespace ebgc
