// Host launchers of the CUDA backend. Per device, one workspace (device buffer + pinned host
// buffer) grows to the largest request and is then reused: no allocation in steady state. Each
// call orders itself after the previous one on the device (an event, no host wait) and waits on the
// host only before it overwrites pinned memory a previous transfer may still read.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>

#include <cub/device/device_scan.cuh>

#include "backend.hpp"
#include "bitpack_decode_kernel.cuh"
#include "bitpack_encode_kernel.cuh"
#include "ebgc/ebgc.hpp"
#include "range_kernel.cuh"

namespace ebgc {
namespace gpu {
namespace {

void check(cudaError_t e, const char* what) {
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
  int sm_count = 0;
  cudaEvent_t done = nullptr;  // the last call's work
  uint8_t* device = nullptr;
  size_t device_size = 0;
  uint8_t* host = nullptr;     // pinned
  size_t host_size = 0;

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
Workspace& workspace(int device) {
  static std::mutex mutex;
  static std::map<int, Workspace*> all;
  std::lock_guard<std::mutex> lock(mutex);
  Workspace*& w = all[device];
  if (!w) {
    w = new Workspace;
    EBGC_CUDA(cudaDeviceGetAttribute(&w->sm_count, cudaDevAttrMultiProcessorCount, device));
  }
  return *w;
}

uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// ---- encoder ---------------------------------------------------------------------------------
constexpr unsigned kGpuChunkLog2 = kDefaultChunkLog2;
static_assert(kGpuChunkLog2 >= kMinGpuChunkLog2, "GPU segments must not straddle chunks");

uint64_t outlier_capacity(uint64_t n) { return std::max<uint64_t>(4096, n / 64); }

// Where the encoder's buffers sit in the workspace, for n values of `elem` bytes.
struct EncodeLayout {
  uint64_t n, tiles, segments, blocks, chunks, capacity;
  size_t bound, counter, status, tile_outliers, tile_offset, outlier_bits, result, index, value, scan_temp, streams;
  size_t reconstruction, scan_temp_bytes, zeroed_bytes, total;
  EncodeLayout(uint64_t n_, size_t elem, bool with_reconstruction = false) : n(n_) {
    tiles = ceil_div(n, kTileValues);
    segments = ceil_div(n, kSegmentValues);
    blocks = ceil_div(n, kPackBlock);
    chunks = ceil_div(n, uint64_t(1) << kGpuChunkLog2);
    capacity = outlier_capacity(n);
    scan_temp_bytes = 0;
    EBGC_CUDA(cub::DeviceScan::ExclusiveSum(nullptr, scan_temp_bytes, static_cast<unsigned long long*>(nullptr),
                                            static_cast<unsigned long long*>(nullptr), int64_t(tiles + 1)));
    Carve c;
    bound = c.take(sizeof(DeviceBound));
    // Zeroed by one memset before each launch: the tile counter, the look-back status, the outlier counts.
    counter = c.take(8 + 8 * segments);
    status = counter + 8;
    tile_outliers = c.take(8 * (tiles + 1));
    zeroed_bytes = c.end - counter;
    tile_offset = c.take(8 * (tiles + 1));
    outlier_bits = c.take(4 * blocks);
    result = c.take(8 * (kResultChunkB + chunks));
    index = c.take(8 * capacity);
    value = c.take(elem * capacity);
    scan_temp = c.take(scan_temp_bytes);
    streams = c.take(blocks * (1 + packed_block_bytes(32)));
    // The kernel's reconstruction goes here first: the caller's buffer may alias the input or a
    // previous reconstruction, which the host fallback would still need to read.
    reconstruction = c.take(with_reconstruction ? elem * n : 0);
    total = c.end;
  }
};

// Enqueues the device part of compression: range and bound, fused quantize/pack, outlier gather.
template <class T, class Predictor>
void enqueue_encode(const T* x, const EncodeLayout& L, uint8_t* d, BoundMode mode, double error_bound,
                    const Predictor& predict, T* reconstruction, int sm_count, cudaStream_t s) {
  auto* bound = reinterpret_cast<DeviceBound*>(d + L.bound);
  auto* result = reinterpret_cast<unsigned long long*>(d + L.result);
  auto* tile_outliers = reinterpret_cast<unsigned long long*>(d + L.tile_outliers);
  auto* tile_offset = reinterpret_cast<unsigned long long*>(d + L.tile_offset);
  EBGC_CUDA(cudaMemsetAsync(d + L.counter, 0, L.zeroed_bytes, s));
  if (mode == BoundMode::Rel) {
    bound_reset_kernel<<<1, 1, 0, s>>>(bound);
    const unsigned grid = unsigned(std::min<uint64_t>(uint64_t(sm_count) * 8, ceil_div(L.n, 256)));
    finite_range_kernel<T><<<grid, 256, 0, s>>>(x, L.n, bound);
  }
  bound_finish_kernel<<<1, 1, 0, s>>>(bound, mode == BoundMode::Rel, error_bound);

  EncodeArgs<T, Predictor> a;
  a.x = x;
  a.n = L.n;
  a.blocks = L.blocks;
  a.segments = L.segments;
  a.segments_per_chunk = (uint64_t(1) << kGpuChunkLog2) / kSegmentValues;
  a.blocks_per_chunk = (uint64_t(1) << kGpuChunkLog2) / kPackBlock;
  a.predict = predict;
  a.reconstruction = reconstruction;
  a.bound = bound;
  a.tile_counter = reinterpret_cast<unsigned long long*>(d + L.counter);
  a.status = reinterpret_cast<unsigned long long*>(d + L.status);
  a.outlier_bits = reinterpret_cast<uint32_t*>(d + L.outlier_bits);
  a.tile_outliers = tile_outliers;
  a.result = result;
  a.streams = d + L.streams;
  bitpack_encode_kernel<T, Predictor><<<unsigned(L.tiles), kEncodeThreads, 0, s>>>(a);
  EBGC_CUDA(cudaGetLastError());

  size_t temp_bytes = L.scan_temp_bytes;
  EBGC_CUDA(cub::DeviceScan::ExclusiveSum(d + L.scan_temp, temp_bytes, tile_outliers, tile_offset,
                                          int64_t(L.tiles + 1), s));
  const unsigned gather_grid = unsigned(ceil_div(L.tiles * kWarp, 256));
  outlier_gather_kernel<T><<<gather_grid, 256, 0, s>>>(
      x, a.outlier_bits, tile_outliers, tile_offset, L.tiles, L.blocks, L.capacity,
      reinterpret_cast<unsigned long long*>(d + L.index), reinterpret_cast<T*>(d + L.value), bound, result);
  EBGC_CUDA(cudaGetLastError());
}

// The blob around the streams, by the container writer the CPU codec uses: header, outliers,
// chunk directory (the bit-packing coder has no tables), streams, checksum.
template <class T>
void assemble_blob(const TensorView& x, const Params& p, double abs_bound, uint64_t n, const std::vector<uint64_t>& chunk_b,
                   const unsigned long long* index, const T* value, uint64_t outliers, const uint8_t* streams,
                   uint64_t stream_bytes, const BlobAllocator& allocate) {
  Header h;
  h.dtype = dtype_of<T>();
  h.mode = p.mode;
  h.shape = x.shape;
  h.chunk_log2 = uint8_t(kGpuChunkLog2);
  h.error_bound = p.error_bound;
  h.abs_bound = abs_bound;
  h.coder = Coder::Bitpack;
  ZeroPredictor().save(h);
  ContainerWriter w(h);
  w.outliers(outliers, index, value, sizeof(T));
  const uint64_t chunk = uint64_t(1) << kGpuChunkLog2;
  for (size_t c = 0; c < chunk_b.size(); ++c) w.chunk(ceil_div(std::min(n, (c + 1) * chunk) - c * chunk, kPackBlock), chunk_b[c]);
  w.write(allocate, [&](uint8_t* dst) { std::memcpy(dst, streams, stream_bytes); });
}

// What the plan gives the host (other coders, the low-rank fit), and the device path's fallback:
// copy to pinned host memory and run the CPU codec's front door (same format, same values).
template <class T>
void compress_on_host(const TensorView& x, const Params& p, const Execution& e, uint64_t n, Workspace& ws, cudaStream_t s,
                      const BlobAllocator& allocate) {
  const size_t bytes = n * sizeof(T);
  ws.wait_host();
  T* hx = reinterpret_cast<T*>(ws.host_bytes(std::max<size_t>(1, bytes)));
  Enqueued download(ws, s);
  if (n) EBGC_CUDA(cudaMemcpyAsync(hx, x.data, bytes, cudaMemcpyDeviceToHost, s));
  download.end();
  ws.wait_host();
  compress_host(hx, x.shape, p, e, static_cast<const T* const*>(nullptr), static_cast<T*>(nullptr), allocate);
}

template <class T>
void compress_on_device(const TensorView& x, const Params& p, const Execution& e, uint64_t n, Workspace& ws,
                        cudaStream_t s, const BlobAllocator& allocate) {
  const EncodeLayout L(n, sizeof(T));
  uint8_t* d = ws.device_bytes(L.total);
  Enqueued encode(ws, s);
  enqueue_encode(static_cast<const T*>(x.data), L, d, p.mode, p.error_bound, ZeroPredictor(), static_cast<T*>(nullptr),
                 ws.sm_count, s);
  const size_t result_bytes = 8 * (kResultChunkB + L.chunks);
  ws.wait_host();
  uint8_t* h = ws.host_bytes(result_bytes);
  EBGC_CUDA(cudaMemcpyAsync(h, d + L.result, result_bytes, cudaMemcpyDeviceToHost, s));
  encode.end();
  ws.wait_host();  // the blob's size is needed here
  const auto* res = reinterpret_cast<const unsigned long long*>(h);
  const uint64_t stream_bytes = res[kResultStreamBytes], outliers = res[kResultOutliers];
  const double abs_bound = double_of(res[kResultAbsBound]);
  std::vector<uint64_t> chunk_b(res + kResultChunkB, res + kResultChunkB + L.chunks);
  if (outliers > L.capacity) {  // hostile or unsuitable data: the CPU codec handles any count
    compress_on_host<T>(x, p, e, n, ws, s, allocate);
    return;
  }
  const size_t index_at = 0, value_at = 8 * outliers, streams_at = value_at + sizeof(T) * outliers;
  h = ws.host_bytes(streams_at + stream_bytes);
  Enqueued download(ws, s);
  if (outliers) {
    EBGC_CUDA(cudaMemcpyAsync(h + index_at, d + L.index, 8 * outliers, cudaMemcpyDeviceToHost, s));
    EBGC_CUDA(cudaMemcpyAsync(h + value_at, d + L.value, sizeof(T) * outliers, cudaMemcpyDeviceToHost, s));
  }
  EBGC_CUDA(cudaMemcpyAsync(h + streams_at, d + L.streams, stream_bytes, cudaMemcpyDeviceToHost, s));
  download.end();
  ws.wait_host();
  assemble_blob<T>(x, p, abs_bound, n, chunk_b, reinterpret_cast<const unsigned long long*>(h + index_at),
                   reinterpret_cast<const T*>(h + value_at), outliers, h + streams_at, stream_bytes, allocate);
}

// ---- decoder ---------------------------------------------------------------------------------

// Everything the decode kernels read, staged in pinned memory and copied in one transfer.
struct DecodeLayout {
  size_t chunk_offset, index, value, streams, total;
  DecodeLayout(uint64_t chunks, uint64_t outliers, size_t elem, uint64_t stream_bytes) {
    Carve c;
    chunk_offset = c.take(8 * chunks);
    index = c.take(8 * outliers);
    value = c.take(elem * outliers);
    streams = c.take(stream_bytes + 8);  // load_bits may read 8 bytes past the last one
    total = c.end;
  }
};

// Every width byte is <= 32 and every chunk's packed data has exactly the declared length: the
// kernel then needs no checks of its own and cannot read outside the blob.
void check_bitpack_streams(const ParsedBlob& pb) {
  for (uint64_t c = 0; c < pb.len_a.size(); ++c) BitpackCoder::check_chunk(pb.tables, pb.chunk(c));
}

template <class T, class Predictor>
void enqueue_decode(const ParsedBlob& pb, const DecodeLayout& L, const uint8_t* d, const Predictor& predict, T* out,
                    cudaStream_t s) {
  const Header& h = pb.header;
  DecodeArgs<T, Predictor> a;
  a.streams = d + L.streams;
  a.chunk_offset = reinterpret_cast<const unsigned long long*>(d + L.chunk_offset);
  a.n = h.elements();
  a.chunk_log2 = h.chunk_log2;
  a.segments_per_chunk = unsigned(ceil_div(h.chunk_elems() / kPackBlock, kDecodeThreads));
  a.predict = predict;
  a.qz = LinearQuantizer(h.abs_bound);
  a.out = out;
  bitpack_decode_kernel<T, Predictor><<<unsigned(h.chunks() * a.segments_per_chunk), kDecodeThreads, 0, s>>>(a);
  EBGC_CUDA(cudaGetLastError());
  const uint64_t count = pb.outlier_index.size();
  if (count) {
    const unsigned grid = unsigned(std::min<uint64_t>(ceil_div(count, 256), 65535));
    outlier_scatter_kernel<T><<<grid, 256, 0, s>>>(reinterpret_cast<const unsigned long long*>(d + L.index),
                                                   d + L.value, count, out);
    EBGC_CUDA(cudaGetLastError());
  }
}

uint64_t stream_bytes_of(const ParsedBlob& pb) {
  uint64_t total = 0;
  for (size_t c = 0; c < pb.len_a.size(); ++c) total += pb.len_a[c] + pb.len_b[c];
  return total;
}

// Stages a bit-packed blob in pinned memory (the caller has waited for the previous transfer).
DecodeLayout stage_bitpack(const ParsedBlob& pb, Workspace& ws, uint8_t*& host) {
  const uint64_t count = pb.outlier_index.size(), stream_bytes = stream_bytes_of(pb);
  const size_t elem = dtype_size(pb.header.dtype);
  DecodeLayout L(pb.len_a.size(), count, elem, stream_bytes);
  host = ws.host_bytes(L.total);
  std::memcpy(host + L.chunk_offset, pb.offset.data(), 8 * pb.offset.size());
  std::memcpy(host + L.index, pb.outlier_index.data(), 8 * count);
  std::memcpy(host + L.value, pb.outlier_values, elem * count);
  std::memcpy(host + L.streams, pb.streams, stream_bytes);
  std::memset(host + L.streams + stream_bytes, 0, 8);
  return L;
}

template <class T>
void decompress_typed(const ParsedBlob& pb, T* out, const Execution& e, Workspace& ws, cudaStream_t s) {
  const Header& h = pb.header;
  const uint64_t n = h.elements();
  const size_t bytes = n * sizeof(T);
  ws.wait_host();
  if (h.coder == Coder::Raw) {
    uint8_t* host = ws.host_bytes(bytes);
    std::memcpy(host, pb.raw_values, bytes);
    Enqueued work(ws, s);
    EBGC_CUDA(cudaMemcpyAsync(out, host, bytes, cudaMemcpyHostToDevice, s));
    work.end();
    return;
  }
  if (decompress_where(h, true) == Where::Device) {
    check_bitpack_streams(pb);
    with_predictor(h, static_cast<const T* const*>(nullptr), [&](const auto& predict) {
      using P = std::decay_t<decltype(predict)>;
      if constexpr (std::is_same_v<P, ZeroPredictor>) {
        uint8_t* host = nullptr;
        const DecodeLayout L = stage_bitpack(pb, ws, host);
        uint8_t* d = ws.device_bytes(L.total);
        Enqueued work(ws, s);
        EBGC_CUDA(cudaMemcpyAsync(d, host, L.total, cudaMemcpyHostToDevice, s));
        enqueue_decode(pb, L, d, predict, out, s);
        work.end();
      } else {
        throw InvalidArgument("only zero-predicted blobs decode on the device");
      }
    });
    return;
  }
  // The plan's host path: Huffman and context streams, low-rank predictions.
  T* hout = reinterpret_cast<T*>(ws.host_bytes(bytes));
  ebgc::decompress(pb, hout, n, e.threads);
  Enqueued upload(ws, s);
  EBGC_CUDA(cudaMemcpyAsync(out, hout, bytes, cudaMemcpyHostToDevice, s));
  upload.end();
}

// Runs f(TypeTag<T>, workspace, stream) on the device that owns `ptr`, holding its workspace.
template <class F>
void on_device_of(const void* ptr, DType dtype, const Execution& e, F&& f) {
  const int device = device_of(ptr);
  DeviceGuard guard(device);
  Workspace& ws = workspace(device);
  std::lock_guard<std::mutex> lock(ws.mutex);
  const cudaStream_t s = reinterpret_cast<cudaStream_t>(e.cuda_stream);
  with_storage_type(dtype, [&](auto tag) { f(tag, ws, s); });
}

}  // namespace

// ---- public entry points -------------------------------------------------------------------

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp p;
  EBGC_CUDA(cudaGetDeviceProperties(&p, device));
  return p.name;
}

int device_of(const void* ptr) {
  if (device_count() == 0) throw CudaError("no CUDA device is visible (no driver, or no GPU)");
  cudaPointerAttributes a;
  EBGC_CUDA(cudaPointerGetAttributes(&a, ptr));
  if (a.type != cudaMemoryTypeDevice && a.type != cudaMemoryTypeManaged)
    throw InvalidArgument("expected a pointer to CUDA device memory");
  return a.device;
}

// The kernels load and store whole elements: a pointer off the element grid is refused here.
void check_aligned(const void* p, DType dtype, const char* what) {
  if (p && reinterpret_cast<uintptr_t>(p) % dtype_size(dtype))
    throw InvalidArgument(std::string(what) + " is not aligned to its element size");
}

void compress(const TensorView& x, const Params& p, const Execution& e, const BlobAllocator& allocate) {
  validate(x, p, e);
  if (x.device != Device::Cuda || !x.contiguous()) throw InvalidArgument("expected a C-contiguous device array");
  const uint64_t n = x.elements();
  if (n == 0) {  // nothing to read on any device: the CPU codec writes the header
    TensorView none = x;
    none.device = Device::Host;
    return ebgc::compress(none, p, e, StreamTerms(), allocate);
  }
  check_aligned(x.data, x.dtype, "the input");
  on_device_of(x.data, x.dtype, e, [&](auto tag, Workspace& ws, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    if (compress_where(x, p, false) == Where::Device)
      compress_on_device<T>(x, p, e, n, ws, s, allocate);
    else
      compress_on_host<T>(x, p, e, n, ws, s, allocate);
  });
}

void decompress(const ParsedBlob& pb, const TensorView& out, const Execution& e) {
  const Header& h = pb.header;
  if (out.device != Device::Cuda || !out.contiguous()) throw InvalidArgument("out must be a C-contiguous CUDA array");
  if (out.dtype != h.dtype) throw InvalidArgument("output dtype does not match the blob");
  if (out.elements() != h.elements()) throw InvalidArgument("output size does not match the blob");
  if (e.threads < 1) throw InvalidArgument("threads must be >= 1");
  if (h.elements() == 0) return;
  check_aligned(out.data, h.dtype, "the output");
  on_device_of(out.data, h.dtype, e, [&](auto tag, Workspace& ws, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    decompress_typed<T>(pb, static_cast<T*>(out.data), e, ws, s);
  });
}

Timings benchmark_bitpack(const void* x, DType dtype, uint64_t n, BoundMode mode, double error_bound,
                          void* scratch_out, unsigned repeats, uintptr_t stream) {
  if (n == 0 || n > kMaxElements) throw InvalidArgument("benchmark needs 1 .. 2^40 values");
  Timings t;
  // A blob made by the public path, for the decode timings and the size.
  TensorView view;
  view.data = const_cast<void*>(x);
  view.dtype = dtype;
  view.shape = {n};
  view.device = Device::Cuda;
  Params p;
  p.mode = mode;
  p.error_bound = error_bound;
  p.coder = int(Coder::Bitpack);
  Execution e;
  e.cuda_stream = stream;
  std::vector<uint8_t> blob;
  compress(view, p, e, [&](size_t size) {
    blob.resize(size);
    return blob.data();
  });
  t.compressed_bytes = blob.size();
  const ParsedBlob pb = inspect(blob.data(), blob.size());

  const int device = device_of(x);
  DeviceGuard guard(device);
  Workspace& ws = workspace(device);
  std::lock_guard<std::mutex> lock(ws.mutex);
  const cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  cudaEvent_t start, stop;
  EBGC_CUDA(cudaEventCreate(&start));
  EBGC_CUDA(cudaEventCreate(&stop));
  auto time = [&](auto&& enqueue) {
    EBGC_CUDA(cudaEventRecord(start, s));
    enqueue();
    EBGC_CUDA(cudaEventRecord(stop, s));
    EBGC_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    EBGC_CUDA(cudaEventElapsedTime(&ms, start, stop));
    return double(ms);
  };
  with_storage_type(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const EncodeLayout E(n, sizeof(T));
    ws.wait_host();
    uint8_t* host = nullptr;
    const DecodeLayout D = stage_bitpack(pb, ws, host);
    uint8_t* d = ws.device_bytes(E.total + D.total);
    Enqueued work(ws, s);
    EBGC_CUDA(cudaMemcpyAsync(d + E.total, host, D.total, cudaMemcpyHostToDevice, s));
    for (unsigned k = 0; k < repeats; ++k)
      t.compress_ms.push_back(time([&] {
        enqueue_encode(static_cast<const T*>(x), E, d, mode, error_bound, ZeroPredictor(), static_cast<T*>(nullptr),
                       ws.sm_count, s);
      }));
    for (unsigned k = 0; k < repeats; ++k)
      t.decompress_ms.push_back(time([&] { enqueue_decode(pb, D, d + E.total, ZeroPredictor(), static_cast<T*>(scratch_out), s); }));
    for (unsigned k = 0; k < repeats; ++k)
      t.copy_ms.push_back(time([&] {
        EBGC_CUDA(cudaMemcpyAsync(scratch_out, x, n * sizeof(T), cudaMemcpyDeviceToDevice, s));
      }));
    work.end();
  });
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return t;
}

}  // namespace gpu
}  // namespace ebgc
