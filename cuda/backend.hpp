// The CUDA backend's host interface: plain C++ (no CUDA types), so that the pybind11 module is
// compiled by the host compiler and only backend.cu by nvcc. Tensors are the front door's views
// (ebgc/request.hpp) of device memory; a stream is a cudaStream_t passed as an integer in the
// Execution (0: the legacy default stream). What runs on the device and what is staged through
// host memory for the CPU codec is decided by ebgc/plan.hpp.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ebgc/format/container.hpp"
#include "ebgc/format/front.hpp"
#include "ebgc/grid/blob_assembly.hpp"
#include "ebgc/grid/message_blobs.hpp"
#include "ebgc/request.hpp"

namespace ebgc {
namespace gpu {

int device_count();  // 0 where there is no driver or no device
std::string device_name(int device);
int device_of(const void* device_pointer);  // throws InvalidArgument for host memory

// Compresses a C-contiguous device tensor (x.device == Device::Cuda). The result equals, byte for
// byte, what the CPU codec makes of the same values with the same coder and the device's chunk
// size (the host runner, grid/host_runner.hpp, writes it on the CPU). stream: the stream's last
// reconstructions and where the new one goes, all device arrays of x's dtype and size; the values
// never leave the device (only the blob does). Waits for its own stream only (the size of the
// blob is needed on the host).
// device_blob: allocate returns memory of x's device, where the blob is assembled (its front
// goes up, its streams stay, its checksum is computed there: grid/blob_assembly.hpp), enqueued on
// the execution's stream; blobs the host writes (the plan's host work, raw) are copied up whole.
void compress(const TensorView& x, const Params& p, const Execution& e, const StreamTerms& stream,
              const BlobAllocator& allocate, bool device_blob = false);

// Compresses the tensors of one message: C-contiguous device tensors. terms[k]: tensor k's
// stream terms (device arrays of its dtype and size, or null): the stream's last reconstructions,
// and where its reconstruction goes (which must not overlap the tensor or those). Bit-packing and
// the ratio coders (auto, context) run as one message grid per device and dtype
// (message_launch.cuh, context_message_launch.cuh), the stream predictors of all its tensors
// fitted at once (message_blend_launch.cuh): a fixed number of launches and a few host waits for
// the whole message. The plan's host work (Huffman, matrices for the low-rank fit) and raw run
// tensor by tensor. Blob k equals what compress() writes for x[k] alone; allocate(k, size) is
// called once per tensor (with device_blobs, device memory of that tensor's device, as compress()).
void compress_many(const std::vector<TensorView>& xs, const Params& p, const Execution& e,
                   const std::vector<StreamTerms>& terms, const MessageAllocator& allocate, bool device_blobs = false);

// Decodes an inspected blob into a C-contiguous device array of its dtype and size on the
// execution's stream. Raw, bit-packed and lane-coded context blobs decode on the device (context:
// the host waits for the device's corruption check before returning); the others on the host,
// then one copy. previous: the stream's reconstructions on the device, for blend-predicted blobs.
void decompress(const ParsedBlob& blob, const TensorView& out, const Execution& e, const void* const* previous = nullptr);

// A blob in device memory (e.g. received over NCCL), parsed from its front (format/front.hpp):
// header, outliers, tables, directory and checksum come to the host, the chunk streams stay on
// the device and are decoded there. The checksum is verified on the device. A blob the host
// decodes (Huffman, the serial context layout) or whose streams are checked before its
// output is allocated (plan.hpp) is copied whole (`whole`).
struct DeviceBlob {
  const uint8_t* data = nullptr;  // device memory, `size` bytes, read again by the decode
  size_t size = 0;
  FrontParse front;               // front.pb: the parse
  bool whole = false;
};
// max_output: refuse (OutputLimitError) a blob that decodes to more bytes (0: no limit).
std::shared_ptr<DeviceBlob> inspect_device(const void* blob, size_t size, uint64_t max_output, uintptr_t stream);
// Decodes it into a C-contiguous device array of its dtype and size on the same device; streams
// checked on the device are a FormatError before this returns (out then holds no decoded values).
void decompress_device_blob(const DeviceBlob& blob, const TensorView& out, const Execution& e,
                            const void* const* previous = nullptr);

// crc32c(bytes of device memory, seed), as common/checksum.hpp computes it on the host (the stream
// digest of reconstructions that live on the device). Waits for the result.
uint32_t crc32c(const void* data, uint64_t bytes, uint32_t seed, uintptr_t stream);

// A container sealed in device memory from its pieces (host framing, and pieces that stay where
// they are: device memory of out's device): into `out` (the pieces' bytes + 4), its CRC-32C
// computed there. Two kernel launches and one upload, enqueued on `stream`; no host wait.
void seal_pieces(uint8_t* out, const std::vector<SealPiece>& pieces, uintptr_t stream);

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
