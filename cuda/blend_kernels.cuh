// The stream predictor's fit on the GPU: one thread block a sampled block, each thread its share
// (grid/blend_steps.hpp: blend_thread_sums, residual_thread_bits, the code the host runner runs),
// reduced in shared memory in the tree order of tree_reduce, so the partial sums are
// deterministic and equal the host runner's.
#pragma once
#include <cstdint>

#include "device_common.cuh"
#include "ebgc/grid/blend_steps.hpp"
#include "range_kernel.cuh"

namespace ebgc {
namespace gpu {

// tree_reduce's order: shared[i] = add(shared[i], shared[i + half]) for half = 128, ..., 1.
template <class V, class Add>
__device__ V block_reduce(V v, V* shared, Add add) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (unsigned half = kBlendThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) shared[threadIdx.x] = add(shared[threadIdx.x], shared[threadIdx.x + half]);
    __syncthreads();
  }
  return shared[0];
}

// Thread block b: sampled block b.
template <class T>
__global__ void __launch_bounds__(kBlendThreads)
    blend_sums_kernel(const T* __restrict__ x, const T* __restrict__ p1, const T* __restrict__ p2, BlendSample sample,
                      BlendSums* partial) {
  // Raw storage: a __shared__ array may not have initializers, and BlendSums' members have them.
  __shared__ alignas(BlendSums) unsigned char storage[sizeof(BlendSums) * kBlendThreads];
  BlendSums* shared = reinterpret_cast<BlendSums*>(storage);
  const uint64_t b = blockIdx.x;
  const BlendSums s = blend_thread_sums(x, p1, p2, sample.begin(b), sample.end(b), threadIdx.x);
  const BlendSums total = block_reduce(s, shared, add_sums);
  if (threadIdx.x == 0) partial[b] = total;
}

template <class T>
__global__ void __launch_bounds__(kBlendThreads)
    residual_bits_kernel(const T* __restrict__ x, BlendSample sample, const DeviceBound* bound,
                         PreviousBlendPredictor<T> one, PreviousBlendPredictor<T> two, ResidualBits* partial) {
  __shared__ ResidualBits shared[kBlendThreads];
  const uint64_t b = blockIdx.x;
  const ResidualBits r =
      residual_thread_bits(x, sample.begin(b), sample.end(b), threadIdx.x, 1.0 / bound->qz.step, one, two);
  const ResidualBits total = block_reduce(r, shared, add_bits);
  if (threadIdx.x == 0) partial[b] = total;
}

}  // namespace gpu
}  // namespace ebgc
