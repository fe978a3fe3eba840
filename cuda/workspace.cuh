// The CUDA backend's per-device workspace and the checks around CUDA calls. Per device, one
// workspace (device buffer + pinned host buffer) grows to the largest request and is then reused:
// no allocation in steady state. Each call orders itself after the previous one on the device (an
// event, no host wait) and waits on the host only before it overwrites pinned memory a previous
// transfer may still read.
#pragma once
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <string>

#include "ebgc/coders/context_model.hpp"
#include "ebgc/common/errors.hpp"
#include "ebgc/grid/crc32c_parts.hpp"

namespace ebgc {
namespace gpu {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state so that the next call starts clean
    throw CudaError(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + " (" +
                    cudaGetErrorString(e) + ")");
  }
}
#define EBGC_CUDA(call) check((call), #call)

class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    EBGC_CUDA(cudaGetDevice(&previous_));
    if (previous_ != device) EBGC_CUDA(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

// Byte offsets of the parts of one buffer, each 256-byte aligned.
struct Carve {
  size_t end = 0;
  size_t take(size_t bytes) {
    const size_t at = end;
    end += (bytes + 255) & ~size_t(255);
    return at;
  }
};

struct Workspace {
  std::mutex mutex;
  int device_index = 0;
  int sm_count = 0;
  uint8_t* bucket_of_sum = nullptr;  // the context coder's bucket table (kCtxBucketLut) on the device
  cudaEvent_t done = nullptr;  // the last call's work
  uint8_t* device = nullptr;
  size_t device_size = 0;
  uint8_t* host = nullptr;     // pinned
  size_t host_size = 0;
  uint8_t* staging = nullptr;  // device: what a step uploads while `device` still holds its inputs
  size_t staging_size = 0;
  uint8_t* gathered = nullptr;  // device: the ratio coders' outliers, sized once their count is known
  size_t gathered_size = 0;
  Crc32cShift* pow2 = nullptr;  // device: Crc32cPowers, for checksums by parts' terms

  // Device work of this call runs after the previous call's (which may be on another stream).
  void begin(cudaStream_t s) {
    if (done) EBGC_CUDA(cudaStreamWaitEvent(s, done, 0));
  }
  void end(cudaStream_t s) {
    if (!done) EBGC_CUDA(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    EBGC_CUDA(cudaEventRecord(done, s));
  }
  // Before the host writes pinned memory, or before a buffer is replaced.
  void wait_host() {
    if (done) EBGC_CUDA(cudaEventSynchronize(done));
  }
  uint8_t* device_bytes(size_t bytes) { return grow(device, device_size, bytes, false); }
  uint8_t* host_bytes(size_t bytes) { return grow(host, host_size, bytes, true); }
  uint8_t* staging_bytes(size_t bytes) { return grow(staging, staging_size, bytes, false); }
  uint8_t* gathered_bytes(size_t bytes) { return grow(gathered, gathered_size, bytes, false); }
  const Crc32cShift* crc_powers() {
    if (!pow2) {
      void* p = nullptr;
      EBGC_CUDA(cudaMalloc(&p, sizeof(Crc32cPowers)));
      EBGC_CUDA(cudaMemcpy(p, Crc32cPowers::get().pow2, sizeof(Crc32cPowers), cudaMemcpyHostToDevice));
      pow2 = static_cast<Crc32cShift*>(p);
    }
    return pow2;
  }

 private:
  // Buffers only grow (with 25% headroom), so steady-state calls allocate nothing.
  uint8_t* grow(uint8_t*& buffer, size_t& size, size_t bytes, bool pinned) {
    if (bytes <= size) return buffer;
    wait_host();  // work in flight may still use the old buffer
    if (buffer) EBGC_CUDA(pinned ? cudaFreeHost(buffer) : cudaFree(buffer));
    buffer = nullptr, size = 0;
    const size_t grown = bytes + bytes / 4;
    void* p = nullptr;
    EBGC_CUDA(pinned ? cudaMallocHost(&p, grown) : cudaMalloc(&p, grown));
    buffer = static_cast<uint8_t*>(p), size = grown;
    return buffer;
  }
};

// Device work enqueued on a stream between construction and end() is what the workspace's event
// covers next. If an exception leaves the scope first, the event is still recorded, so the next
// call never reuses buffers that work in flight may touch.
class Enqueued {
 public:
  Enqueued(Workspace& ws, cudaStream_t s) : ws_(ws), s_(s) { ws.begin(s); }
  Enqueued(const Enqueued&) = delete;
  Enqueued& operator=(const Enqueued&) = delete;
  void end() {
    ended_ = true;
    ws_.end(s_);
  }
  // Enqueues more work after end() (after a host wait in between).
  void restart() {
    ended_ = false;
    ws_.begin(s_);
  }
  ~Enqueued() {
    if (ended_) return;
    if (!ws_.done) cudaEventCreateWithFlags(&ws_.done, cudaEventDisableTiming);
    cudaEventRecord(ws_.done, s_);  // best effort: we are already unwinding
  }

 private:
  Workspace& ws_;
  cudaStream_t s_;
  bool ended_ = false;
};

// Workspaces live as long as the process (freeing them at exit would race the driver's teardown).
inline Workspace& workspace(int device) {
  static std::mutex mutex;
  static std::map<int, Workspace*> all;
  std::lock_guard<std::mutex> lock(mutex);
  Workspace*& w = all[device];
  if (!w) {
    w = new Workspace;
    w->device_index = device;
    EBGC_CUDA(cudaDeviceGetAttribute(&w->sm_count, cudaDevAttrMultiProcessorCount, device));
    void* lut = nullptr;
    EBGC_CUDA(cudaMalloc(&lut, kCtxBucketLut.bucket.size()));
    EBGC_CUDA(cudaMemcpy(lut, kCtxBucketLut.bucket.data(), kCtxBucketLut.bucket.size(), cudaMemcpyHostToDevice));
    w->bucket_of_sum = static_cast<uint8_t*>(lut);
  }
  return *w;
}

inline uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

}  // namespace gpu
}  // namespace ebgc
