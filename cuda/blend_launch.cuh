// The stream predictor chosen for a device tensor: the least-squares sums and residual scores on
// the device (blend_kernels.cuh), the fit and the decision by the CPU's code (predictors/blend.hpp,
// plan.hpp's choose_blend). Two small copies to the host; the values stay on the device.
#pragma once
#include <cuda_runtime.h>

#include <vector>

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
  const uint64_t stride = blend_sample_stride(n), blocks = ceil_div(ceil_div(n, kScoreBlock), stride);
  uint64_t sampled = 0;
  for (uint64_t b = 0; b < blocks; ++b) sampled += std::min(n, (b * stride + 1) * kScoreBlock) - b * stride * kScoreBlock;
  Carve c;
  const size_t bound_at = c.take(sizeof(DeviceBound)), sums_at = c.take(sizeof(BlendSums) * blocks),
               bits_at = c.take(sizeof(ResidualBits) * blocks);
  uint8_t* d = ws.device_bytes(c.end);
  auto* bound = reinterpret_cast<DeviceBound*>(d + bound_at);
  auto* sums = reinterpret_cast<BlendSums*>(d + sums_at);
  auto* bits = reinterpret_cast<ResidualBits*>(d + bits_at);

  Enqueued fit(ws, s);
  enqueue_bound(x, n, bound, p.mode, p.error_bound, ws.sm_count, s);
  blend_sums_kernel<T><<<unsigned(blocks), kBlendThreads, 0, s>>>(x, p1, p2, n, stride, sums);
  EBGC_CUDA(cudaGetLastError());
  ws.wait_host();
  auto* host_sums = reinterpret_cast<BlendSums*>(ws.host_bytes(sizeof(BlendSums) * blocks));
  EBGC_CUDA(cudaMemcpyAsync(host_sums, sums, sizeof(BlendSums) * blocks, cudaMemcpyDeviceToHost, s));
  fit.end();
  ws.wait_host();
  BlendSums total;
  for (uint64_t b = 0; b < blocks; ++b) add_blend_sums(total, host_sums[b]);
  const PreviousBlendPredictor<T> one = fit_previous(total, p1);
  const PreviousBlendPredictor<T> two = p2 ? fit_two_previous(total, p1, p2) : one;

  Enqueued score(ws, s);
  residual_bits_kernel<T><<<unsigned(blocks), kBlendThreads, 0, s>>>(x, n, stride, bound, one, two, bits);
  EBGC_CUDA(cudaGetLastError());
  auto* host_bits = reinterpret_cast<ResidualBits*>(ws.host_bytes(sizeof(ResidualBits) * blocks));
  EBGC_CUDA(cudaMemcpyAsync(host_bits, bits, sizeof(ResidualBits) * blocks, cudaMemcpyDeviceToHost, s));
  score.end();
  ws.wait_host();
  std::array<double, 3> estimate{};
  for (uint64_t b = 0; b < blocks; ++b)
    for (unsigned k = 0; k < 3; ++k) estimate[k] += host_bits[b].bits[k];
  choose_blend(estimate, double(n) / double(sampled), one, two, choice);
  return choice;
}

}  // namespace gpu
}  // namespace ebgc
