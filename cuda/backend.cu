// Host entry points of the CUDA backend: where each request runs (plan.hpp), which predictor a
// stream's tensor gets, and the fallbacks through host memory. The launches live next to their
// kernels: bitpack_launch.cuh (fast mode), context_launch.cuh (the ratio coder's lanes),
// blend_launch.cuh (the stream predictor's fit); the workspace in workspace.cuh.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>

#include "backend.hpp"
#include "bitpack_launch.cuh"
#include "blob_assembly.cuh"
#include "blend_launch.cuh"
#include "context_launch.cuh"
#include "crc32c_kernel.cuh"
#include "ebgc/ebgc.hpp"
#include "context_message_launch.cuh"
#include "message_launch.cuh"
#include "workspace.cuh"

namespace ebgc {
namespace gpu {

void check_aligned(const void* p, DType dtype, const char* what);  // below: the kernels' element alignment

namespace {

// What the plan gives the host (matrices for the low-rank fit), and the device paths' fallback
// (outlier overflow): the tensor and the stream's reconstructions copied to pinned host memory,
// the CPU codec's front door, the reconstruction copied back (same format, same values).
template <class T>
void compress_on_host(const TensorView& x, const Params& p, const Execution& e, const StreamTerms& stream, uint64_t n,
                      Workspace& ws, cudaStream_t s, const CodedBlobSink& sink, size_t tensor) {
  const size_t bytes = n * sizeof(T), slot = (bytes + 255) & ~size_t(255);
  const void* sources[3] = {x.data, stream.previous[0], stream.previous[1]};
  ws.wait_host();
  uint8_t* h = ws.host_bytes(4 * slot);  // x, previous, previous2, reconstruction
  Enqueued download(ws, s);
  for (unsigned k = 0; k < 3; ++k)
    if (sources[k]) EBGC_CUDA(cudaMemcpyAsync(h + k * slot, sources[k], bytes, cudaMemcpyDeviceToHost, s));
  download.end();
  ws.wait_host();
  const T* previous[2] = {stream.previous[0] ? reinterpret_cast<const T*>(h + slot) : nullptr,
                          stream.previous[1] ? reinterpret_cast<const T*>(h + 2 * slot) : nullptr};
  T* rec = stream.reconstruction ? reinterpret_cast<T*>(h + 3 * slot) : nullptr;
  put_host_made_blob(sink, tensor, ws, s, [&](const BlobAllocator& allocate) {
    compress_host(reinterpret_cast<const T*>(h), x.shape, p, e, previous, rec, allocate);
  });
  if (!rec) return;
  Enqueued upload(ws, s);
  EBGC_CUDA(cudaMemcpyAsync(stream.reconstruction, rec, bytes, cudaMemcpyHostToDevice, s));
  upload.end();
}

// A raw blob of a device tensor: its values are the payload (and the reconstruction). A device
// blob is assembled where the values are (only the bound, found on the device, comes to the host);
// a host blob takes one copy of the values.
template <class T>
void compress_raw_from_device(const TensorView& x, const Params& p, const StreamTerms& stream, uint64_t n, Workspace& ws,
                              cudaStream_t s, const CodedBlobSink& sink, size_t tensor) {
  const size_t bytes = n * sizeof(T);
  ws.wait_host();
  if (sink.streams_stay()) {
    auto* bound = reinterpret_cast<DeviceBound*>(ws.device_bytes(sizeof(DeviceBound)));
    auto* abs_bound = reinterpret_cast<double*>(ws.host_bytes(sizeof(double)));
    Enqueued find(ws, s);
    enqueue_bound(static_cast<const T*>(x.data), n, bound, p.mode, p.error_bound, ws.sm_count, s);
    EBGC_CUDA(cudaMemcpyAsync(abs_bound, &bound->abs_bound, sizeof(double), cudaMemcpyDeviceToHost, s));
    find.end();
    ws.wait_host();
    return put_raw_on_device(static_cast<const T*>(x.data), static_cast<T*>(stream.reconstruction), x.shape, p,
                             *abs_bound, n, sink, tensor, ws, s);
  }
  uint8_t* h = ws.host_bytes(bytes);
  Enqueued download(ws, s);
  EBGC_CUDA(cudaMemcpyAsync(h, x.data, bytes, cudaMemcpyDeviceToHost, s));
  if (stream.reconstruction && stream.reconstruction != x.data)
    EBGC_CUDA(cudaMemcpyAsync(stream.reconstruction, x.data, bytes, cudaMemcpyDeviceToDevice, s));
  download.end();
  ws.wait_host();
  Header hd = grid_header<T>(x.shape, p, ZeroPredictor(), kGridChunkLog2, Coder::Raw);  // as the grid writes it
  if (p.mode == BoundMode::Rel) hd.abs_bound = absolute_bound(p.mode, p.error_bound, finite_range(reinterpret_cast<const T*>(h), n));
  else hd.abs_bound = absolute_bound(p.mode, p.error_bound, FiniteRange());
  put_host_made_blob(sink, tensor, ws, s, [&](const BlobAllocator& allocate) { ContainerWriter(hd).write_raw(h, bytes, allocate); });
}

// The device's codec for one tensor: predictor (zero, or the stream's blend), then the coder the
// request or the device's statistics name; bit-packing falls back to the CPU codec where the
// device cannot hold the outliers (the lane coders size their outlier buffer from the analysis).
template <class T>
void compress_typed(const TensorView& x, const Params& p, const Execution& e, const StreamTerms& stream, uint64_t n,
                    Workspace& ws, cudaStream_t s, const CodedBlobSink& sink, size_t tensor) {
  if (compress_where(x, p) == Where::Host) return compress_on_host<T>(x, p, e, stream, n, ws, s, sink, tensor);
  const T* xd = static_cast<const T*>(x.data);
  const T* p1 = static_cast<const T*>(stream.previous[0]);
  const T* p2 = p1 ? static_cast<const T*>(stream.previous[1]) : nullptr;
  T* rec = static_cast<T*>(stream.reconstruction);
  PredictorChoice<T> choice;
  if (p1 && p.coder != int(Coder::Raw)) choice = choose_blend_on_device(xd, n, p1, p2, p, ws, s);
  // The CPU codec in place of a device path that cannot hold the outliers: the coder the device
  // chose, with the device's chunk size, so the blob is the one the device would have written.
  auto on_host_as = [&](Coder coder, unsigned chunk_log2) {
    Params q = p;
    q.coder = int(coder);
    q.chunk_log2 = chunk_log2;
    q.low_rank = false;
    compress_on_host<T>(x, q, e, stream, n, ws, s, sink, tensor);
  };
  auto run = [&](const auto& predict) {
    auto bitpack = [&]() {
      if (!compress_bitpack_on_device(xd, x.shape, p, predict, rec, ws, s, sink, tensor))
        on_host_as(Coder::Bitpack, kGpuChunkLog2);
    };
    if (p.coder == int(Coder::Raw)) return compress_raw_from_device<T>(x, p, stream, n, ws, s, sink, tensor);
    if (p.coder == int(Coder::Bitpack)) return bitpack();
    switch (compress_context_on_device(xd, x.shape, p, predict, rec, ws, s, sink, tensor)) {
      case GridOutcome::Written: return;
      case GridOutcome::Raw: return compress_raw_from_device<T>(x, p, stream, n, ws, s, sink, tensor);
      case GridOutcome::Bitpack: return bitpack();
    }
  };
  if (choice.kind == PredictorKind::Blend) return run(choice.blend);
  run(ZeroPredictor());
}

// Calls f with a blob's predictor as the device decoders read it: a low-rank predictor's factors
// uploaded to the workspace's staging buffer (in stream order) and read through a LowRankView,
// the others as they are.
template <class T, class F>
void with_device_predictor(const Header& h, const T* const* previous, Workspace& ws, cudaStream_t s, F&& f) {
  with_predictor(h, previous, [&](const auto& predict) {
    if constexpr (std::is_same_v<std::decay_t<decltype(predict)>, LowRankPredictor>) {
      const size_t a_bytes = predict.a.size() * sizeof(double), b_bytes = predict.b.size() * sizeof(double);
      auto* factors = reinterpret_cast<double*>(ws.staging_bytes(a_bytes + b_bytes));
      Enqueued upload(ws, s);  // from pageable memory: copied out before each call returns
      EBGC_CUDA(cudaMemcpyAsync(factors, predict.a.data(), a_bytes, cudaMemcpyHostToDevice, s));
      EBGC_CUDA(cudaMemcpyAsync(factors + predict.a.size(), predict.b.data(), b_bytes, cudaMemcpyHostToDevice, s));
      upload.end();
      f(LowRankView{factors, factors + predict.a.size(), predict.cols, predict.rank});
    } else {
      f(predict);
    }
  });
}

template <class T>
void decompress_typed(const ParsedBlob& pb, T* out, const Execution& e, const T* const* previous, Workspace& ws,
                      cudaStream_t s) {
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
    with_device_predictor(h, previous, ws, s, [&](const auto& predict) {
      if (h.coder == Coder::Context || h.coder == Coder::Huffman) {
        decompress_context_on_device(pb, out, predict, ws, s);
      } else {
        check_bitpack_streams(pb);
        uint8_t* host = nullptr;
        const DecodeLayout L = stage_bitpack(pb, ws, host);
        uint8_t* d = ws.device_bytes(L.total);
        Enqueued work(ws, s);
        EBGC_CUDA(cudaMemcpyAsync(d, host, L.total, cudaMemcpyHostToDevice, s));
        enqueue_decode(pb, L, d, predict, out, s);
        work.end();
      }
    });
    return;
  }
  // The plan's host path (the serial context layout): the stream's
  // reconstructions to the host if the blob is predicted from them, the CPU codec, one copy back.
  const size_t slot = (bytes + 255) & ~size_t(255);
  uint8_t* host = ws.host_bytes(3 * slot);
  const unsigned terms = predictor_terms(h.predictor);
  const T* host_previous[2] = {nullptr, nullptr};
  if (terms) {
    if (!previous || !previous[0] || (terms == 2 && !previous[1]))
      throw InvalidArgument("this blob is predicted from its stream's earlier messages: decode it with a GradientDecoder");
    Enqueued download(ws, s);
    for (unsigned k = 0; k < terms; ++k)
      EBGC_CUDA(cudaMemcpyAsync(host + (k + 1) * slot, previous[k], bytes, cudaMemcpyDeviceToHost, s));
    download.end();
    ws.wait_host();
    for (unsigned k = 0; k < terms; ++k) host_previous[k] = reinterpret_cast<const T*>(host + (k + 1) * slot);
  }
  T* hout = reinterpret_cast<T*>(host);
  ebgc::decompress(pb, hout, n, e.threads, host_previous);
  Enqueued upload(ws, s);
  EBGC_CUDA(cudaMemcpyAsync(out, hout, bytes, cudaMemcpyHostToDevice, s));
  upload.end();
}

// crc32c of device memory on the workspace's device (held): the GPU's raw CRCs of parts, chained
// on the host.
uint32_t crc32c_on(Workspace& ws, cudaStream_t s, const void* data, uint64_t bytes, uint32_t seed) {
  if (!bytes) return seed;
  const uint64_t parts = ceil_div(bytes, kCrcPartBytes);
  uint32_t* raw = reinterpret_cast<uint32_t*>(ws.device_bytes(4 * parts));
  Enqueued work(ws, s);
  crc32c_parts_kernel<<<unsigned(ceil_div(parts, kCrcThreads)), kCrcThreads, 0, s>>>(static_cast<const uint8_t*>(data),
                                                                                     bytes, raw);
  EBGC_CUDA(cudaGetLastError());
  ws.wait_host();
  uint32_t* host = reinterpret_cast<uint32_t*>(ws.host_bytes(4 * parts));
  EBGC_CUDA(cudaMemcpyAsync(host, raw, 4 * parts, cudaMemcpyDeviceToHost, s));
  work.end();
  ws.wait_host();
  return crc32c_from_parts(seed, host, bytes, kCrcPartBytes);
}

// A decode's stream terms as T pointers, checked for alignment.
template <class T>
std::array<const T*, 2> typed_previous(const void* const* previous, DType dtype) {
  const std::array<const T*, 2> prev{previous ? static_cast<const T*>(previous[0]) : nullptr,
                                     previous ? static_cast<const T*>(previous[1]) : nullptr};
  check_aligned(prev[0], dtype, "previous");
  check_aligned(prev[1], dtype, "previous2");
  return prev;
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

// Where a call's blobs go: host memory, or the memory of the workspace's device (allocate returns
// it), each grid's blobs assembled there (blob_assembly.cuh).
CodedBlobSink sink_of(const MessageAllocator& allocate, bool device_blobs, BlobAssembly& assembly, Workspace& ws,
                      cudaStream_t s) {
  return device_blobs ? device_sink(allocate, assembly, ws, s) : CodedBlobSink::host(allocate);
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

// What every device request is checked for before anything runs.
void check_device_tensor(const TensorView& x, const Params& p, const Execution& e) {
  validate(x, p, e);
  if (x.device != Device::Cuda || !x.contiguous()) throw InvalidArgument("expected a C-contiguous device array");
}

void compress(const TensorView& x, const Params& p, const Execution& e, const StreamTerms& stream,
              const BlobAllocator& allocate, bool device_blob) {
  check_device_tensor(x, p, e);
  if (!stream.previous[0] && stream.previous[1]) throw InvalidArgument("previous2 needs previous");
  const uint64_t n = x.elements();
  if (n == 0) {  // nothing to read on any device: the CPU codec writes the header
    TensorView none = x;
    none.device = Device::Host;
    if (!device_blob) return ebgc::compress(none, p, e, StreamTerms(), allocate);
    std::vector<uint8_t> blob;
    ebgc::compress(none, p, e, StreamTerms(), [&](size_t size) {
      blob.resize(size);
      return blob.data();
    });
    uint8_t* dst = allocate(blob.size());
    return on_device_of(dst, DType::Float32, e, [&](auto, Workspace&, cudaStream_t s) {  // device memory, checked
      EBGC_CUDA(cudaMemcpyAsync(dst, blob.data(), blob.size(), cudaMemcpyHostToDevice, s));  // pageable: staged on return
    });
  }
  check_aligned(x.data, x.dtype, "the input");
  check_aligned(stream.previous[0], x.dtype, "previous");
  check_aligned(stream.previous[1], x.dtype, "previous2");
  check_aligned(stream.reconstruction, x.dtype, "the reconstruction");
  on_device_of(x.data, x.dtype, e, [&](auto tag, Workspace& ws, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    BlobAssembly assembly;
    const MessageAllocator one = [&allocate](size_t, size_t size) { return allocate(size); };
    compress_typed<T>(x, p, e, stream, n, ws, s, sink_of(one, device_blob, assembly, ws, s), 0);
  });
}

void compress_many(const std::vector<TensorView>& xs, const Params& p, const Execution& e,
                   const std::vector<StreamTerms>& terms, const MessageAllocator& allocate, bool device_blobs) {
  if (terms.size() != xs.size()) throw InvalidArgument("one set of stream terms per tensor");
  for (size_t k = 0; k < xs.size(); ++k) {
    check_device_tensor(xs[k], p, e);
    const StreamTerms& t = terms[k];
    if (!t.previous[0] && t.previous[1]) throw InvalidArgument("previous2 needs previous");
    check_aligned(xs[k].data, xs[k].dtype, "the input");
    check_aligned(t.previous[0], xs[k].dtype, "previous");
    check_aligned(t.previous[1], xs[k].dtype, "previous2");
    check_aligned(t.reconstruction, xs[k].dtype, "the reconstruction");
    // The grids write reconstructions in place while they still read these.
    const size_t bytes = xs[k].elements() * dtype_size(xs[k].dtype);
    const auto* r = static_cast<const uint8_t*>(t.reconstruction);
    const void* const others[3] = {xs[k].data, t.previous[0], t.previous[1]};
    for (const void* other : others) {
      const auto* o = static_cast<const uint8_t*>(other);
      if (r && o && bytes && r < o + bytes && o < r + bytes)
        throw InvalidArgument("a reconstruction overlaps its input or the stream's reconstructions");
    }
  }
  auto allocator_of = [&](size_t k) -> BlobAllocator { return [&allocate, k](size_t size) { return allocate(k, size); }; };
  // Fast mode and the ratio coders run as message grids, one per device and dtype (in order of
  // first appearance); the rest (raw, matrices for the low-rank fit) tensor by tensor.
  const bool fast = p.coder == int(Coder::Bitpack);
  const bool ratio = p.coder == kCoderAuto || p.coder == int(Coder::Context) || p.coder == int(Coder::Huffman);
  std::vector<std::pair<std::pair<int, DType>, std::vector<size_t>>> groups;
  for (size_t k = 0; k < xs.size(); ++k) {
    if (xs[k].elements() == 0 || !(fast || ratio) || compress_where(xs[k], p) == Where::Host) {
      gpu::compress(xs[k], p, e, terms[k], allocator_of(k), device_blobs);
      continue;
    }
    const std::pair<int, DType> key(device_of(xs[k].data), xs[k].dtype);
    auto g = std::find_if(groups.begin(), groups.end(), [&](const auto& entry) { return entry.first == key; });
    if (g == groups.end()) groups.push_back({key, {k}});
    else g->second.push_back(k);
  }
  std::vector<std::vector<uint64_t>> shapes(xs.size());
  for (size_t k = 0; k < xs.size(); ++k) shapes[k] = xs[k].shape;
  for (const auto& group : groups) {
    on_device_of(xs[group.second[0]].data, group.first.second, e, [&](auto tag, Workspace& ws, cudaStream_t s) {
      using T = typename decltype(tag)::type;
      BlobAssembly assembly;
      const CodedBlobSink sink = sink_of(allocate, device_blobs, assembly, ws, s);
      auto x_of = [&](size_t k) { return static_cast<const T*>(xs[k].data); };
      auto rec_of = [&](size_t k) { return static_cast<T*>(terms[k].reconstruction); };
      // The rows of `members` whose stream predictor the grid fits (row j is members[j]).
      auto blends_of = [&](const std::vector<size_t>& members) {
        std::vector<BlendRow<T>> blends;
        for (size_t j = 0; j < members.size(); ++j)
          if (terms[members[j]].previous[0])
            blends.push_back(BlendRow<T>::make(x_of(members[j]), static_cast<const T*>(terms[members[j]].previous[0]),
                                               static_cast<const T*>(terms[members[j]].previous[1]),
                                               xs[members[j]].elements(), j));
        return blends;
      };
      // Bit-packing of `members` as one grid (predictors fitted there, or given); past the outlier
      // capacity tensor by tensor, each with its own fallback.
      auto fast_grid = [&](const std::vector<size_t>& members, const Params& q, const std::vector<RowPredictor<T>>* given) {
        std::vector<MessageRow<T>> rows;
        for (size_t j = 0; j < members.size(); ++j) {
          rows.push_back(MessageRow<T>{x_of(members[j]), rec_of(members[j]), xs[members[j]].elements(), 0, 0, 0, 0, 0, {}});
          if (given) rows.back().predict = (*given)[j];
        }
        std::vector<BlendRow<T>> blends = given ? std::vector<BlendRow<T>>() : blends_of(members);
        if (compress_message_on_device<T>(rows, blends, members, shapes, q, ws, s, sink)) return;
        for (size_t k : members) compress_typed<T>(xs[k], q, e, terms[k], xs[k].elements(), ws, s, sink, k);
      };
      if (fast) return fast_grid(group.second, p, nullptr);
      std::vector<ContextRow<T>> rows;
      for (size_t k : group.second) {
        ContextRow<T> r{};
        r.x = x_of(k), r.reconstruction = rec_of(k), r.n = xs[k].elements(), r.sign_period = kernel_size(xs[k].shape);
        rows.push_back(r);
      }
      std::vector<BlendRow<T>> blends = blends_of(group.second);
      const ContextMessageLeftovers left =
          compress_context_message_on_device<T>(rows, blends, group.second, shapes, p, ws, s, sink);
      // What the host gave to other coders, as the single-tensor path codes it (with the
      // predictor the grid chose).
      auto row_of = [&](size_t k) {
        return size_t(std::find(group.second.begin(), group.second.end(), k) - group.second.begin());
      };
      Params q = p;
      q.coder = int(Coder::Bitpack);
      if (!left.bitpack.empty()) {
        std::vector<RowPredictor<T>> given;
        for (size_t k : left.bitpack) given.push_back(rows[row_of(k)].predict);
        fast_grid(left.bitpack, q, &given);
      }
      for (size_t k : left.raw) compress_raw_from_device<T>(xs[k], p, terms[k], xs[k].elements(), ws, s, sink, k);
    });
  }
}

// What every device output is checked for before anything is decoded.
void check_device_output(const ParsedBlob& pb, const TensorView& out, const Execution& e) {
  const Header& h = pb.header;
  if (out.device != Device::Cuda || !out.contiguous()) throw InvalidArgument("out must be a C-contiguous CUDA array");
  if (out.dtype != h.dtype) throw InvalidArgument("output dtype does not match the blob");
  if (out.elements() != h.elements()) throw InvalidArgument("output size does not match the blob");
  if (e.threads < 1) throw InvalidArgument("threads must be >= 1");
  if (h.elements()) check_aligned(out.data, h.dtype, "the output");
}

void decompress(const ParsedBlob& pb, const TensorView& out, const Execution& e, const void* const* previous) {
  const Header& h = pb.header;
  check_device_output(pb, out, e);
  if (h.elements() == 0) return;
  on_device_of(out.data, h.dtype, e, [&](auto tag, Workspace& ws, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    const auto prev = typed_previous<T>(previous, h.dtype);
    decompress_typed<T>(pb, static_cast<T*>(out.data), e, prev.data(), ws, s);
  });
}

uint32_t crc32c(const void* data, uint64_t bytes, uint32_t seed, uintptr_t stream) {
  if (!bytes) return seed;
  uint32_t result = seed;
  on_device_of(data, DType::Float32, Execution(), [&](auto, Workspace& ws, cudaStream_t) {
    result = crc32c_on(ws, reinterpret_cast<cudaStream_t>(stream), data, bytes, seed);
  });
  return result;
}

void seal_pieces(uint8_t* out, const std::vector<SealPiece>& pieces, uintptr_t stream) {
  on_device_of(out, DType::Float32, Execution(), [&](auto, Workspace& ws, cudaStream_t) {
    enqueue_seal(SealJobs(pieces, out), ws, reinterpret_cast<cudaStream_t>(stream));
  });
}

std::shared_ptr<DeviceBlob> inspect_device(const void* blob, size_t size, uint64_t max_output, uintptr_t stream) {
  auto db = std::make_shared<DeviceBlob>();
  db->data = static_cast<const uint8_t*>(blob);
  db->size = size;
  on_device_of(blob, DType::Float32, Execution(), [&](auto, Workspace& ws, cudaStream_t) {
    const cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
    const FetchBytes fetch = [&](size_t begin, size_t end, uint8_t* dst) {
      if (end <= begin) return;
      ws.wait_host();
      uint8_t* h = ws.host_bytes(end - begin);
      Enqueued copy(ws, s);
      EBGC_CUDA(cudaMemcpyAsync(h, db->data + begin, end - begin, cudaMemcpyDeviceToHost, s));
      copy.end();
      ws.wait_host();
      std::memcpy(dst, h, end - begin);
    };
    db->front = parse_blob_front(size, fetch);
    if (crc32c_on(ws, s, blob, size - kChecksumSize, 0) != db->front.stored_crc)
      throw ChecksumError("ebgc blob checksum mismatch (truncated or corrupted)");
    const ParsedBlob& pb = db->front.pb;
    check_output_limit(pb, max_output);
    if (check_streams_first(pb) || decompress_where(pb.header, true) == Where::Host) {
      const size_t body = size - kChecksumSize;
      fetch(db->front.fetched, body, db->front.bytes.get() + db->front.fetched);
      db->front.fetched = body;
      InspectOptions o;
      o.verify_checksum = false;  // verified above, on the device
      db->front.pb = inspect(db->front.bytes.get(), size, o);
      db->whole = true;
    }
  });
  return db;
}

void decompress_device_blob(const DeviceBlob& db, const TensorView& out, const Execution& e, const void* const* previous) {
  const ParsedBlob& pb = db.front.pb;
  const Header& h = pb.header;
  check_device_output(pb, out, e);
  if (h.elements() == 0) return;
  if (device_of(db.data) != device_of(out.data)) throw InvalidArgument("the blob and out are on different devices");
  on_device_of(out.data, h.dtype, e, [&](auto tag, Workspace& ws, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    const auto prev = typed_previous<T>(previous, h.dtype);
    T* o = static_cast<T*>(out.data);
    if (db.whole) return decompress_typed<T>(pb, o, e, prev.data(), ws, s);  // the host's bytes
    const uint8_t* payload = db.data + db.front.payload_offset();
    if (h.coder == Coder::Raw) {
      Enqueued copy(ws, s);
      EBGC_CUDA(cudaMemcpyAsync(o, payload, h.elements() * sizeof(T), cudaMemcpyDeviceToDevice, s));
      copy.end();
      return;
    }
    with_device_predictor(h, prev.data(), ws, s, [&](const auto& predict) {
      if (h.coder == Coder::Context || h.coder == Coder::Huffman) {
        decompress_context_on_device(pb, o, predict, ws, s, payload);
      } else {
        decompress_bitpack_from_device(pb, payload, o, predict, ws, s);
      }
    });
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
  gpu::compress(view, p, e, StreamTerms(), [&](size_t size) {
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
