// Stage 1 on the GPU: the finite range for the rel bound, then the absolute bound and the
// quantizer, left in device memory for the encoder so that no host round trip separates them.
// The arithmetic is the CPU's (bound.hpp, quantizer.hpp): min and max are exact, so the bound and
// the quantizer are the same bits on both.
#pragma once
#include <cstdint>

#include "device_common.cuh"
#include "ebgc/quantize/bound.hpp"
#include "ebgc/quantize/quantizer.hpp"

namespace ebgc {
namespace gpu {

struct DeviceBound {
  unsigned long long lo_key, hi_key;  // order keys of the finite minimum and maximum
  double abs_bound;
  LinearQuantizer qz;
};

__device__ inline void bound_reset(DeviceBound* b) {
  b->lo_key = order_key(double_of(uint64_t(0x7ff) << 52));   // +Inf: nothing seen yet
  b->hi_key = order_key(-double_of(uint64_t(0x7ff) << 52));  // -Inf
}

__global__ void bound_reset_kernel(DeviceBound* b) { bound_reset(b); }

// The thread block's lo, hi (each thread's share) reduced and folded into b by atomics.
__device__ inline void block_fold_range(double lo, double hi, DeviceBound* b) {
  for (int off = 16; off > 0; off >>= 1) {
    const double l = __shfl_xor_sync(kFullMask, lo, off), h = __shfl_xor_sync(kFullMask, hi, off);
    lo = l < lo ? l : lo;
    hi = h > hi ? h : hi;
  }
  __shared__ double s_lo[32], s_hi[32];
  const unsigned warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp, warps = blockDim.x / kWarp;
  if (lane == 0) s_lo[warp] = lo, s_hi[warp] = hi;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (unsigned k = 1; k < warps; ++k) {
      lo = s_lo[k] < lo ? s_lo[k] : lo;
      hi = s_hi[k] > hi ? s_hi[k] : hi;
    }
    if (lo <= hi) {
      atomicMin(&b->lo_key, order_key(lo));
      atomicMax(&b->hi_key, order_key(hi));
    }
  }
}

// Reads 16-byte vectors (the values before the first 16-byte boundary and after the last whole
// vector go one per thread), so that each thread keeps enough bytes in flight to saturate memory.
template <class T>
__global__ void finite_range_kernel(const T* __restrict__ x, uint64_t n, DeviceBound* b) {
  constexpr unsigned kPerVector = 16 / sizeof(T);
  const double inf = double_of(uint64_t(0x7ff) << 52);
  double lo = inf, hi = -inf;
  auto see = [&](T t) {
    const double v = double(t);
    if (is_finite(v)) {
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
  };
  const uint64_t head = min(n, uint64_t((16 - (reinterpret_cast<uintptr_t>(x) & 15u)) & 15u) / sizeof(T));
  const uint64_t vectors = (n - head) / kPerVector, tail = head + vectors * kPerVector;
  const uint64_t thread = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = uint64_t(gridDim.x) * blockDim.x;
  if (thread < head) see(x[thread]);
  if (thread < n - tail) see(x[tail + thread]);
  const uint4* xv = reinterpret_cast<const uint4*>(x + head);
#pragma unroll 2
  for (uint64_t k = thread; k < vectors; k += stride) {
    const uint4 u = xv[k];
    T t[kPerVector];
    memcpy(t, &u, sizeof(u));
#pragma unroll
    for (unsigned e = 0; e < kPerVector; ++e) see(t[e]);
  }
  block_fold_range(lo, hi, b);
}

// One thread: the absolute bound (rel: from the range; abs: as given) and its quantizer.
__device__ inline void bound_finish(DeviceBound* b, int rel, double error_bound) {
  const double abs_bound =
      rel ? rel_abs_bound(error_bound, from_order_key(b->lo_key), from_order_key(b->hi_key)) : error_bound;
  b->abs_bound = abs_bound;
  b->qz = LinearQuantizer(abs_bound);
}

__global__ void bound_finish_kernel(DeviceBound* b, int rel, double error_bound) { bound_finish(b, rel, error_bound); }

}  // namespace gpu
}  // namespace ebgc
