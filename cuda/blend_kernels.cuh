// The stream predictor's fit on the GPU: the least-squares sums and the residual-bit scores of
// plan.hpp's choose_predictor, over the same sample of blocks, with the same per-value terms
// (predictors/blend.hpp: add_blend_terms, residual_bits). Each sampled block is one thread block,
// reduced in a fixed order, so the partial sums are deterministic; the host adds them in block
// order and decides with the CPU's code (fit_previous, fit_two_previous, choose_blend).
#pragma once
#include <cstdint>

#include "device_common.cuh"
#include "ebgc/plan.hpp"
#include "ebgc/predictors/blend.hpp"
#include "range_kernel.cuh"

namespace ebgc {
namespace gpu {

constexpr unsigned kBlendThreads = 256;
static_assert(kScoreBlock % kBlendThreads == 0, "a sampled block is whole threads' shares");

template <class V, class Add>
__device__ V block_reduce(V v, V* shared, Add add) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) shared[threadIdx.x] = add(shared[threadIdx.x], shared[threadIdx.x + half]);
    __syncthreads();
  }
  return shared[0];
}

// Thread block j: sampled block j * stride.
template <class T>
__global__ void __launch_bounds__(kBlendThreads)
    blend_sums_kernel(const T* __restrict__ x, const T* __restrict__ p1, const T* __restrict__ p2, uint64_t n,
                      uint64_t stride, BlendSums* partial) {
  // Raw storage: a __shared__ array may not have initializers, and BlendSums' members have them.
  __shared__ alignas(BlendSums) unsigned char storage[sizeof(BlendSums) * kBlendThreads];
  BlendSums* shared = reinterpret_cast<BlendSums*>(storage);
  const uint64_t begin = uint64_t(blockIdx.x) * stride * kScoreBlock, end = min(n, begin + kScoreBlock);
  BlendSums s;
  for (uint64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
    add_blend_terms(double(x[i]), double(p1[i]), p2 ? double(p2[i]) : 0.0, p2 != nullptr, s);
  const BlendSums total = block_reduce(s, shared, [](BlendSums a, const BlendSums& b) {
    add_blend_sums(a, b);
    return a;
  });
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

struct ResidualBits {
  double bits[3];  // zero, one-term, two-term prediction
};

template <class T>
__global__ void __launch_bounds__(kBlendThreads)
    residual_bits_kernel(const T* __restrict__ x, uint64_t n, uint64_t stride, const DeviceBound* bound,
                         PreviousBlendPredictor<T> one, PreviousBlendPredictor<T> two, ResidualBits* partial) {
  __shared__ ResidualBits shared[kBlendThreads];
  const uint64_t begin = uint64_t(blockIdx.x) * stride * kScoreBlock, end = min(n, begin + kScoreBlock);
  const double inv = 1.0 / bound->qz.step;
  ResidualBits r{{0, 0, 0}};
  for (uint64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double xi = double(x[i]);
    r.bits[0] = add_rn(r.bits[0], residual_bits(xi, 0.0, inv));
    r.bits[1] = add_rn(r.bits[1], residual_bits(xi, one(i), inv));
    r.bits[2] = add_rn(r.bits[2], residual_bits(xi, two(i), inv));
  }
  const ResidualBits total = block_reduce(r, shared, [](ResidualBits a, const ResidualBits& b) {
    for (unsigned k = 0; k < 3; ++k) a.bits[k] = add_rn(a.bits[k], b.bits[k]);
    return a;
  });
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

}  // namespace gpu
}  // namespace ebgc
