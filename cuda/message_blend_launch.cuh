// The stream predictor of a whole message on the GPU (grid/message_blend.hpp): one launch sums the
// sampled blocks of every tensor that has its stream's reconstructions, one copy brings the sums
// back, the host fits every tensor (the CPU's code), one launch scores the fits against the rows'
// bounds, one copy brings the scores back and the host chooses. Two host waits per message. The
// kernels are the single-tensor ones' per-thread bodies and tree (blend_kernels.cuh) over the
// message's sampled blocks; the host runner (grid_message_blends) runs the same.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "blend_kernels.cuh"
#include "ebgc/grid/message_blend.hpp"
#include "workspace.cuh"

namespace ebgc {
namespace gpu {

template <class T>
__global__ void __launch_bounds__(kBlendThreads)
    message_blend_sums_kernel(const BlendRow<T>* rows, uint64_t count, BlendSums* partial) {
  __shared__ alignas(BlendSums) unsigned char storage[sizeof(BlendSums) * kBlendThreads];
  BlendSums* shared = reinterpret_cast<BlendSums*>(storage);
  const uint64_t b = blockIdx.x;
  const BlendRow<T> r = rows[row_at(rows, count, b, &BlendRow<T>::first_block)];
  const uint64_t local = b - r.first_block;
  const BlendSums s = blend_thread_sums(r.x, r.p1, r.p2, r.sample.begin(local), r.sample.end(local), threadIdx.x);
  const BlendSums total = block_reduce(s, shared, add_sums);
  if (threadIdx.x == 0) partial[b] = total;
}

template <class T>
__global__ void __launch_bounds__(kBlendThreads)
    message_residual_bits_kernel(const BlendRow<T>* rows, uint64_t count, const BlendCandidates<T>* fits,
                                 const DeviceBound* bounds, ResidualBits* partial) {
  __shared__ ResidualBits shared[kBlendThreads];
  const uint64_t b = blockIdx.x, k = row_at(rows, count, b, &BlendRow<T>::first_block);
  const BlendRow<T> r = rows[k];
  const uint64_t local = b - r.first_block;
  const ResidualBits bits = residual_thread_bits(r.x, r.sample.begin(local), r.sample.end(local), threadIdx.x,
                                                 1.0 / bounds[r.row].qz.step, fits[k].one, fits[k].two);
  const ResidualBits total = block_reduce(bits, shared, add_bits);
  if (threadIdx.x == 0) partial[b] = total;
}

// The blend stage's device buffers, carved from the message's layout.
struct MessageBlendLayout {
  uint64_t rows = 0, blocks = 0;
  size_t table = 0, fits = 0, sums = 0, bits = 0;
  template <class T>
  void carve(Carve& c, std::vector<BlendRow<T>>& blend_rows) {
    rows = blend_rows.size();
    blocks = plan_message_blend(blend_rows);
    table = c.take(sizeof(BlendRow<T>) * rows);
    fits = c.take(sizeof(BlendCandidates<T>) * rows);
    sums = c.take(sizeof(BlendSums) * blocks);
    bits = c.take(sizeof(ResidualBits) * blocks);
  }
};

// Runs after the message's bounds are enqueued (`bounds`, indexed by the grid's rows). Returns each
// blend row's predictor; d: the message's device buffer, with L carved from it.
template <class T>
std::vector<RowPredictor<T>> choose_message_blends_on_device(const std::vector<BlendRow<T>>& rows,
                                                             const MessageBlendLayout& L, uint8_t* d,
                                                             const DeviceBound* bounds, Workspace& ws, cudaStream_t s) {
  if (rows.empty()) return {};
  const auto* table = reinterpret_cast<const BlendRow<T>*>(d + L.table);
  auto* fits = reinterpret_cast<BlendCandidates<T>*>(d + L.fits);
  auto* sums = reinterpret_cast<BlendSums*>(d + L.sums);
  auto* bits = reinterpret_cast<ResidualBits*>(d + L.bits);
  const size_t table_bytes = sizeof(BlendRow<T>) * L.rows, fit_bytes = sizeof(BlendCandidates<T>) * L.rows;
  const size_t result_bytes = std::max(sizeof(BlendSums), sizeof(ResidualBits)) * L.blocks;
  // One pinned buffer for everything going and coming (growing it between would free memory a
  // copy may still read).
  ws.wait_host();
  uint8_t* h = ws.host_bytes(table_bytes + fit_bytes + result_bytes);
  std::memcpy(h, rows.data(), table_bytes);
  Enqueued sum(ws, s);
  EBGC_CUDA(cudaMemcpyAsync(d + L.table, h, table_bytes, cudaMemcpyHostToDevice, s));
  message_blend_sums_kernel<T><<<unsigned(L.blocks), kBlendThreads, 0, s>>>(table, L.rows, sums);
  EBGC_CUDA(cudaGetLastError());
  EBGC_CUDA(cudaMemcpyAsync(h + table_bytes + fit_bytes, sums, sizeof(BlendSums) * L.blocks, cudaMemcpyDeviceToHost, s));
  sum.end();
  ws.wait_host();
  const std::vector<BlendCandidates<T>> candidates =
      fit_message_blends(rows, reinterpret_cast<const BlendSums*>(h + table_bytes + fit_bytes));

  std::memcpy(h + table_bytes, candidates.data(), fit_bytes);
  Enqueued score(ws, s);
  EBGC_CUDA(cudaMemcpyAsync(fits, h + table_bytes, fit_bytes, cudaMemcpyHostToDevice, s));
  message_residual_bits_kernel<T><<<unsigned(L.blocks), kBlendThreads, 0, s>>>(table, L.rows, fits, bounds, bits);
  EBGC_CUDA(cudaGetLastError());
  EBGC_CUDA(cudaMemcpyAsync(h + table_bytes + fit_bytes, bits, sizeof(ResidualBits) * L.blocks, cudaMemcpyDeviceToHost, s));
  score.end();
  ws.wait_host();
  return choose_message_blends(rows, candidates, reinterpret_cast<const ResidualBits*>(h + table_bytes + fit_bytes));
}

}  // namespace gpu
}  // namespace ebgc
