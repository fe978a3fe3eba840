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

#include <cub/device/device_scan.cuh>

#include "backend.hpp"
#include "bitpack_decode_kernel.cuh"
#include "bitpack_encode_kernel.cuh"
#include "ebgc/codec.hpp"
#include "ebgc/predictor_choice.hpp"
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

uint64_t element_count(const std::vector<uint64_t>& shape) {
  if (shape.size() > kMaxDims) throw InvalidArgument("too many dimensions (at most 16)");
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  if (n > kMaxElements) throw InvalidArgument("array too large");
  return n;
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

// The blob around the streams: header, outliers, chunk directory, streams, checksum.
template <class T, class Predictor>
void assemble_blob(const EncodeRequest& r, const Predictor& predict, double abs_bound, uint64_t n,
                   const std::vector<uint64_t>& chunk_b, const unsigned long long* index, const T* value,
                   uint64_t outliers, const uint8_t* streams, uint64_t stream_bytes, const BlobAllocator& allocate) {
  Header h;
  h.dtype = dtype_of<T>();
  h.mode = r.mode;
  h.shape = r.shape;
  h.chunk_log2 = uint8_t(kGpuChunkLog2);
  h.error_bound = r.error_bound;
  h.abs_bound = abs_bound;
  h.coder = Coder::Bitpack;
  predict.describe(h);
  ByteWriter lists;
  lists.varint(outliers);
  for (uint64_t k = 0; k < outliers; ++k) lists.varint(k ? index[k] - index[k - 1] - 1 : index[k]);
  lists.bytes(value, outliers * sizeof(T));
  const uint64_t chunk = uint64_t(1) << kGpuChunkLog2;
  for (size_t c = 0; c < chunk_b.size(); ++c) {
    lists.varint(ceil_div(std::min(n, (c + 1) * chunk) - c * chunk, kPackBlock));
    lists.varint(chunk_b[c]);
  }
  h.payload_size = lists.size() + stream_bytes;
  ByteWriter head;
  h.write(head);
  const size_t size = head.size() + size_t(h.payload_size) + kChecksumSize;
  uint8_t* out = allocate(size);
  uint8_t* p = out;
  std::memcpy(p, head.buf.data(), head.size());
  p += head.size();
  std::memcpy(p, lists.buf.data(), lists.size());
  p += lists.size();
  if (stream_bytes) std::memcpy(p, streams, stream_bytes);
  p += stream_bytes;
  const uint32_t crc = crc32c(out, size - kChecksumSize);
  for (unsigned k = 0; k < 4; ++k) p[k] = uint8_t(crc >> (8 * k));
}

// Any coder, any input: copy to the host and run the CPU codec (same format, same values).
template <class T>
void compress_on_host(const EncodeRequest& r, uint64_t n, Workspace& ws, cudaStream_t s, const BlobAllocator& allocate) {
  const size_t bytes = n * sizeof(T);
  const unsigned terms = r.terms;
  ws.wait_host();
  uint8_t* h = ws.host_bytes(std::max<size_t>(1, bytes * (2 + terms)));
  T* hx = reinterpret_cast<T*>(h);
  T* hrec = reinterpret_cast<T*>(h + bytes);
  T* hprev[2] = {reinterpret_cast<T*>(h + 2 * bytes), reinterpret_cast<T*>(h + 3 * bytes)};
  Enqueued download(ws, s);
  if (n) {
    EBGC_CUDA(cudaMemcpyAsync(hx, r.x, bytes, cudaMemcpyDeviceToHost, s));
    for (unsigned k = 0; k < terms; ++k)
      EBGC_CUDA(cudaMemcpyAsync(hprev[k], r.previous[k], bytes, cudaMemcpyDeviceToHost, s));
  }
  download.end();
  ws.wait_host();
  CompressOptions opt;
  opt.mode = r.mode;
  opt.error_bound = r.error_bound;
  opt.coder = r.coder;
  opt.threads = r.host_threads;
  opt.low_rank = r.low_rank;
  T* rec = r.reconstruction ? hrec : nullptr;
  // Without stream terms the predictor is chosen as on the CPU (low rank included): same blob.
  const std::vector<uint8_t> blob =
      terms ? ebgc::compress(hx, r.shape, opt, PreviousBlendPredictor<T>{{hprev[0], hprev[terms - 1]}, {r.coef[0], r.coef[1]}, terms}, rec)
            : compress_with_best_predictor(hx, r.shape, opt, static_cast<const T* const*>(nullptr), rec);
  if (rec && n) {
    Enqueued upload(ws, s);
    EBGC_CUDA(cudaMemcpyAsync(r.reconstruction, hrec, bytes, cudaMemcpyHostToDevice, s));
    upload.end();
  }
  std::memcpy(allocate(blob.size()), blob.data(), blob.size());
}

template <class T, class Predictor>
void compress_on_device(const EncodeRequest& r, uint64_t n, const Predictor& predict, Workspace& ws, cudaStream_t s,
                        const BlobAllocator& allocate) {
  const EncodeLayout L(n, sizeof(T), r.reconstruction != nullptr);
  uint8_t* d = ws.device_bytes(L.total);
  T* reconstruction = r.reconstruction ? reinterpret_cast<T*>(d + L.reconstruction) : nullptr;
  Enqueued encode(ws, s);
  enqueue_encode(static_cast<const T*>(r.x), L, d, r.mode, r.error_bound, predict, reconstruction, ws.sm_count, s);
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
    compress_on_host<T>(r, n, ws, s, allocate);
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
  if (reconstruction)
    EBGC_CUDA(cudaMemcpyAsync(r.reconstruction, reconstruction, n * sizeof(T), cudaMemcpyDeviceToDevice, s));
  download.end();
  ws.wait_host();
  assemble_blob<T>(r, predict, abs_bound, n, chunk_b, reinterpret_cast<const unsigned long long*>(h + index_at),
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
  for (size_t c = 0; c < pb.len_a.size(); ++c) {
    const uint8_t* widths = pb.streams + pb.offset[c];
    uint64_t packed = 0;
    bool ok = true;
    for (uint64_t k = 0; k < pb.len_a[c]; ++k) {
      ok &= widths[k] <= 32;
      packed += packed_block_bytes(widths[k]);
    }
    require_format(ok, "bad bit-packing width");
    require_format(packed == pb.len_b[c], "bit-packed data length mismatch");
  }
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
void decompress_typed(const DecodeRequest& r, const ParsedBlob& pb, Workspace& ws, cudaStream_t s) {
  const Header& h = pb.header;
  const uint64_t n = h.elements();
  const size_t bytes = n * sizeof(T);
  const unsigned terms = predictor_terms(h.predictor);
  T* out = static_cast<T*>(r.out);
  ws.wait_host();
  if (h.coder == Coder::Raw) {
    uint8_t* host = ws.host_bytes(bytes);
    std::memcpy(host, pb.raw_values, bytes);
    Enqueued work(ws, s);
    EBGC_CUDA(cudaMemcpyAsync(out, host, bytes, cudaMemcpyHostToDevice, s));
    work.end();
    return;
  }
  // The low-rank predictor has no GPU kernel yet: such blobs take the CPU path below.
  if (h.coder == Coder::Bitpack && !is_low_rank(h.predictor)) {
    check_bitpack_streams(pb);
    uint8_t* host = nullptr;
    const DecodeLayout L = stage_bitpack(pb, ws, host);
    uint8_t* d = ws.device_bytes(L.total);
    Enqueued work(ws, s);
    EBGC_CUDA(cudaMemcpyAsync(d, host, L.total, cudaMemcpyHostToDevice, s));
    if (terms) {
      const PreviousBlendPredictor<T> predict{{static_cast<const T*>(r.previous[0]), static_cast<const T*>(r.previous[terms - 1])},
                                              {h.predictor_coef[0], h.predictor_coef[1]}, terms};
      enqueue_decode(pb, L, d, predict, out, s);
    } else {
      enqueue_decode(pb, L, d, ZeroPredictor(), out, s);
    }
    work.end();
    return;
  }
  // Huffman and context streams (and low-rank predictions) are decoded by the CPU codec.
  uint8_t* host = ws.host_bytes(bytes * (1 + terms));
  T* hout = reinterpret_cast<T*>(host);
  const T* hprev[2] = {nullptr, nullptr};
  if (terms) {
    Enqueued download(ws, s);
    for (unsigned k = 0; k < terms; ++k) {
      hprev[k] = reinterpret_cast<const T*>(host + bytes * (1 + k));
      EBGC_CUDA(cudaMemcpyAsync(const_cast<T*>(hprev[k]), r.previous[k], bytes, cudaMemcpyDeviceToHost, s));
    }
    download.end();
    ws.wait_host();
  }
  ebgc::decompress(pb, hout, n, r.host_threads, hprev);
  Enqueued upload(ws, s);
  EBGC_CUDA(cudaMemcpyAsync(out, hout, bytes, cudaMemcpyHostToDevice, s));
  upload.end();
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

void compress(const EncodeRequest& r, const BlobAllocator& allocate) {
  check_requested_bound(r.error_bound);
  const uint64_t n = element_count(r.shape);
  if (r.coder < kCoderAuto || r.coder >= int(kCoderCount)) throw InvalidArgument("unknown coder");
  if (r.terms > 2 || (r.terms >= 1 && !r.previous[0]) || (r.terms == 2 && !r.previous[1]))
    throw InvalidArgument("the predictor needs its previous reconstructions");
  if (n == 0) {  // nothing to read on any device: the CPU codec writes the header
    CompressOptions opt;
    opt.mode = r.mode;
    opt.error_bound = r.error_bound;
    opt.coder = r.coder;
    with_storage_type(r.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T none{};
      const std::vector<uint8_t> blob = ebgc::compress(&none, r.shape, opt);
      std::memcpy(allocate(blob.size()), blob.data(), blob.size());
    });
    return;
  }
  check_aligned(r.x, r.dtype, "the input");
  for (unsigned t = 0; t < r.terms; ++t) check_aligned(r.previous[t], r.dtype, "a previous reconstruction");
  check_aligned(r.reconstruction, r.dtype, "the reconstruction buffer");
  const int device = device_of(r.x);
  DeviceGuard guard(device);
  Workspace& ws = workspace(device);
  std::lock_guard<std::mutex> lock(ws.mutex);
  const cudaStream_t s = reinterpret_cast<cudaStream_t>(r.stream);
  with_storage_type(r.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (r.coder != int(Coder::Bitpack)) {
      compress_on_host<T>(r, n, ws, s, allocate);
    } else if (r.terms) {
      const PreviousBlendPredictor<T> blend{
          {static_cast<const T*>(r.previous[0]), static_cast<const T*>(r.previous[r.terms - 1])}, {r.coef[0], r.coef[1]}, r.terms};
      compress_on_device<T>(r, n, blend, ws, s, allocate);
    } else {
      compress_on_device<T>(r, n, ZeroPredictor(), ws, s, allocate);
    }
  });
}

void decompress(const DecodeRequest& r) {
  const ParsedBlob pb = parse_blob(r.blob, r.size);
  const Header& h = pb.header;
  if (h.dtype != r.dtype) throw InvalidArgument("output dtype does not match the blob");
  if (h.elements() != r.out_elems) throw InvalidArgument("output size does not match the blob");
  const unsigned terms = predictor_terms(h.predictor);
  if (terms && (!r.previous[0] || (terms == 2 && !r.previous[1])))
    throw InvalidArgument("this blob is predicted from its stream's earlier messages: decode it with a GradientDecoder");
  if (h.elements() == 0) return;
  check_aligned(r.out, h.dtype, "the output");
  for (unsigned t = 0; t < terms; ++t) check_aligned(r.previous[t], h.dtype, "a previous reconstruction");
  const int device = device_of(r.out);
  DeviceGuard guard(device);
  Workspace& ws = workspace(device);
  std::lock_guard<std::mutex> lock(ws.mutex);
  const cudaStream_t s = reinterpret_cast<cudaStream_t>(r.stream);
  with_storage_type(h.dtype, [&](auto tag) { decompress_typed<typename decltype(tag)::type>(r, pb, ws, s); });
}

Timings benchmark_bitpack(const void* x, DType dtype, uint64_t n, BoundMode mode, double error_bound,
                          void* scratch_out, unsigned repeats, uintptr_t stream) {
  check_requested_bound(error_bound);
  if (n == 0 || n > kMaxElements) throw InvalidArgument("benchmark needs 1 .. 2^40 values");
  Timings t;
  // A blob made by the public path, for the decode timings and the size.
  EncodeRequest r;
  r.x = x;
  r.dtype = dtype;
  r.shape = {n};
  r.mode = mode;
  r.error_bound = error_bound;
  r.stream = stream;
  std::vector<uint8_t> blob;
  compress(r, [&](size_t size) {
    blob.resize(size);
    return blob.data();
  });
  t.compressed_bytes = blob.size();
  const ParsedBlob pb = parse_blob(blob.data(), blob.size());

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
