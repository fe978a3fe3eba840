// Blobs assembled in device memory (grid/blob_assembly.hpp): every front of a call goes up in one
// copy with the job table, one kernel places fronts and streams (which never leave the device),
// one kernel checksums every blob by parts (crc32c_part_term, a thread a part; the last part of a
// blob to finish writes its trailer). Enqueued on the call's stream; no host wait. A stream
// message framed around device blobs is sealed by the same two kernels (enqueue_seal).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "crc32c_kernel.cuh"
#include "device_common.cuh"
#include "ebgc/grid/blob_assembly.hpp"
#include "ebgc/grid/grid_blob.hpp"
#include "workspace.cuh"

namespace ebgc {
namespace gpu {

constexpr unsigned kAssemblyThreads = 256;

// Job blockIdx.y (strided), its bytes across the x blocks.
__global__ void __launch_bounds__(kAssemblyThreads)
    assembly_copy_kernel(const AssemblyJob* __restrict__ jobs, uint64_t count, const uint8_t* __restrict__ fronts) {
  for (uint64_t k = blockIdx.y; k < count; k += gridDim.y) {
    const AssemblyJob j = jobs[k];
    const uint64_t step = uint64_t(gridDim.x) * blockDim.x;
    for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < j.covered(); i += step)
      j.dst[i] = assembly_byte(j, fronts, i);
  }
}

// A thread a part of all jobs' parts; terms (one per job) and done (parts finished per job) start
// at zero. The thread that finishes a job's last part writes its checksum.
__global__ void __launch_bounds__(kAssemblyThreads)
    assembly_crc_kernel(const AssemblyJob* __restrict__ jobs, uint64_t count, uint64_t parts,
                        const Crc32cShift* __restrict__ pow2, uint32_t* terms, unsigned long long* done) {
  __shared__ uint32_t table[256];
  build_crc32c_table(table);
  const uint64_t part = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (part >= parts) return;
  const uint64_t k = assembly_job_of(jobs, count, part);
  const AssemblyJob j = jobs[k];
  atomicXor(&terms[k], crc32c_part_term(j.dst, j.covered(), part - j.first_part, kAssemblyPartBytes, table, pow2));
  __threadfence();
  if (atomicAdd(&done[k], 1ull) + 1 == j.parts()) {
    __threadfence();
    write_assembly_crc(j, crc32c_from_terms(0, atomicXor(&terms[k], 0u), j.covered(), pow2));
  }
}

// What a device sink's allocator returned: memory of the workspace's device.
inline void check_blob_memory(const void* dst, const Workspace& ws) {
  cudaPointerAttributes at;
  EBGC_CUDA(cudaPointerGetAttributes(&at, dst));
  if ((at.type != cudaMemoryTypeDevice && at.type != cudaMemoryTypeManaged) || at.device != ws.device_index)
    throw InvalidArgument("a device blob must be allocated in the memory of the tensor's device");
}

// Enqueues the copy jobs (fronts from `fronts`, streams where they are) and then the checksum jobs
// over `parts` parts (each writes its trailer after the bytes it covers). All dst: device memory
// on the workspace's device.
inline void enqueue_jobs(const std::vector<AssemblyJob>& copies, const std::vector<uint8_t>& fronts,
                         const std::vector<AssemblyJob>& checks, uint64_t parts, Workspace& ws, cudaStream_t s) {
  const uint64_t count = copies.size(), check_count = checks.size();
  uint64_t widest = 0;
  for (const AssemblyJob& j : copies) {
    check_blob_memory(j.dst, ws);
    widest = std::max(widest, j.covered());
  }
  Carve c;
  const size_t jobs_at = c.take(sizeof(AssemblyJob) * count), checks_at = c.take(sizeof(AssemblyJob) * check_count);
  const size_t fronts_at = c.take(fronts.size());
  const size_t upload = c.end, terms_at = c.take(4 * check_count), done_at = c.take(8 * check_count);
  ws.wait_host();  // the pinned buffer may still be read by this call's last transfer
  uint8_t* h = ws.host_bytes(upload);
  std::memcpy(h + jobs_at, copies.data(), sizeof(AssemblyJob) * count);
  std::memcpy(h + checks_at, checks.data(), sizeof(AssemblyJob) * check_count);
  std::memcpy(h + fronts_at, fronts.data(), fronts.size());
  uint8_t* d = ws.staging_bytes(c.end);
  const Crc32cShift* pow2 = ws.crc_powers();
  Enqueued work(ws, s);
  EBGC_CUDA(cudaMemcpyAsync(d, h, upload, cudaMemcpyHostToDevice, s));
  EBGC_CUDA(cudaMemsetAsync(d + terms_at, 0, c.end - terms_at, s));
  if (count && widest) {
    const dim3 copy_grid(unsigned(std::min<uint64_t>(ceil_div(widest, kAssemblyThreads * 8), 1024)),
                         unsigned(std::min<uint64_t>(count, 65535)));
    assembly_copy_kernel<<<copy_grid, kAssemblyThreads, 0, s>>>(reinterpret_cast<const AssemblyJob*>(d + jobs_at),
                                                                 count, d + fronts_at);
  }
  if (parts)
    assembly_crc_kernel<<<unsigned(ceil_div(parts, kAssemblyThreads)), kAssemblyThreads, 0, s>>>(
        reinterpret_cast<const AssemblyJob*>(d + checks_at), check_count, parts, pow2,
        reinterpret_cast<uint32_t*>(d + terms_at), reinterpret_cast<unsigned long long*>(d + done_at));
  for (const AssemblyJob& j : checks)  // nothing covered: the checksum of no bytes is 0
    if (!j.covered()) EBGC_CUDA(cudaMemsetAsync(j.dst, 0, kChecksumSize, s));
  EBGC_CUDA(cudaGetLastError());
  work.end();
}

// Enqueues the assembly of a's blobs (their dst: device memory on the workspace's device).
inline void enqueue_assembly(const BlobAssembly& a, Workspace& ws, cudaStream_t s) {
  if (!a.jobs.empty()) enqueue_jobs(a.jobs, a.fronts, a.jobs, a.parts, ws, s);
}

// Enqueues a container sealed where its pieces are (grid/blob_assembly.hpp: SealJobs) into `out`
// (device memory of the workspace's device, body + 4 bytes); the staying pieces must be there too.
inline void enqueue_seal(const SealJobs& jobs, Workspace& ws, cudaStream_t s) {
  for (const AssemblyJob& j : jobs.copies)
    if (j.stream_bytes) check_blob_memory(j.streams, ws);
  check_blob_memory(jobs.checksum.dst, ws);
  enqueue_jobs(jobs.copies, jobs.fronts, {jobs.checksum}, jobs.checksum.parts(), ws, s);
}

// The sink of a call whose blobs go to device memory: `allocate` returns memory on the
// workspace's device; each grid's blobs are assembled where its streams are, before they go.
inline CodedBlobSink device_sink(MessageAllocator allocate, BlobAssembly& assembly, Workspace& ws, cudaStream_t s) {
  CodedBlobSink sink = CodedBlobSink::host(std::move(allocate));
  sink.assembly = &assembly;
  sink.assemble = [&ws, s](const BlobAssembly& a) { enqueue_assembly(a, ws, s); };
  return sink;
}

// A raw blob assembled where the values are (the sink's streams stay): the header with the bound
// the grid found, the values as the payload, the reconstruction (the values) copied on the device.
template <class T>
void put_raw_on_device(const T* x, T* reconstruction, const std::vector<uint64_t>& shape, const Params& p,
                       double abs_bound, uint64_t n, const CodedBlobSink& sink, size_t tensor, Workspace& ws,
                       cudaStream_t s) {
  put_raw_blob(shape, p, abs_bound, x, n, sink, tensor);
  if (reconstruction && reconstruction != x) {
    Enqueued copy(ws, s);
    EBGC_CUDA(cudaMemcpyAsync(reconstruction, x, n * sizeof(T), cudaMemcpyDeviceToDevice, s));
    copy.end();
  }
  sink.finish();
}

// A blob the host writes (raw from host values, the CPU codec's paths, tensors of no values) put
// where the sink says: at once into host memory, or for a device sink written on the host and
// copied up (these paths hold the blob on the host anyway). The copy is from pageable memory, so
// `blob` can go when it returns.
template <class Write>
void put_host_made_blob(const CodedBlobSink& sink, size_t tensor, Workspace& ws, cudaStream_t s, Write&& write) {
  if (!sink.streams_stay()) return write([&](size_t size) { return sink.allocate(tensor, size); });
  std::vector<uint8_t> blob;
  write([&](size_t size) {
    blob.resize(size);
    return blob.data();
  });
  uint8_t* dst = sink.allocate(tensor, blob.size());
  check_blob_memory(dst, ws);
  EBGC_CUDA(cudaMemcpyAsync(dst, blob.data(), blob.size(), cudaMemcpyHostToDevice, s));
}

}  // namespace gpu
}  // namespace ebgc
