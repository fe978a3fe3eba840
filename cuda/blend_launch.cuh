// The stream predictor chosen for a device tensor: the least-squares sums and residual scores on
// the device (blend_kernels.cuh), the fit and the decision by the CPU's code between and after
// them (grid/blend_steps.hpp: BlendFit). Two small copies to the host; the values stay on the
// device. The host runner's grid_choose_blend makes the same choice on the CPU.
#pragma once
#include <cuda_runtime.h>

#include "bitpack_launch.cuh"
#include "blend_kernels.cuh"
#include "workspace.cuh"

namespace ebgc {
namespace gpu {

// p1, p2 (p2 may be null): the stream's last reconstructions, on the device.
template <class T>
PredictorChoice<T> choose_blend_on_device(const T* x, uint64_t n, const T* p1, const T* p2, const Params& p,
                                          Workspace& ws, cudaStream_t s) {
  PredictorChoice<T> choice;
  const BlendSample sample(n);
  Carve c;
  const size_t bound_at = c.take(sizeof(DeviceBound)), sums_at = c.take(sizeof(BlendSums) * sample.blocks),
               bits_at = c.take(sizeof(ResidualBits) * sample.blocks);
  uint8_t* d = ws.device_bytes(c.end);
  auto* bound = reinterpret_cast<DeviceBound*>(d + bound_at);
  auto* sums = reinterpret_cast<BlendSums*>(d + sums_at);
  auto* bits = reinterpret_cast<ResidualBits*>(d + bits_at);
  // One pinned buffer for both results (growing it between would free memory a copy may use).
  ws.wait_host();
  uint8_t* h = ws.host_bytes(std::max(sizeof(BlendSums), sizeof(ResidualBits)) * sample.blocks);

  Enqueued fit_work(ws, s);
  enqueue_bound(x, n, bound, p.mode, p.error_bound, ws.sm_count, s);
  blend_sums_kernel<T><<<unsigned(sample.blocks), kBlendThreads, 0, s>>>(x, p1, p2, sample, sums);
  EBGC_CUDA(cudaGetLastError());
  EBGC_CUDA(cudaMemcpyAsync(h, sums, sizeof(BlendSums) * sample.blocks, cudaMemcpyDeviceToHost, s));
  fit_work.end();
  ws.wait_host();
  const BlendFit<T> fit(reinterpret_cast<const BlendSums*>(h), sample.blocks, p1, p2);

  Enqueued score(ws, s);
  residual_bits_kernel<T><<<unsigned(sample.blocks), kBlendThreads, 0, s>>>(x, sample, bound, fit.one, fit.two, bits);
  EBGC_CUDA(cudaGetLastError());
  EBGC_CUDA(cudaMemcpyAsync(h, bits, sizeof(ResidualBits) * sample.blocks, cudaMemcpyDeviceToHost, s));
  score.end();
  ws.wait_host();
  fit.choose(reinterpret_cast<const ResidualBits*>(h), sample, choice);
  return choice;
}

}  // namespace gpu
}  // namespace ebgc
