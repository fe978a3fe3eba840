// Single-pass exclusive prefix sum across thread blocks by decoupled look-back (Merrill & Garland,
// "Single-pass Parallel Prefix Scan with Decoupled Look-back", 2016). Each tile publishes its own
// aggregate as soon as it knows it, then walks back over its predecessors, adding aggregates until
// it meets one that has published an inclusive prefix. Tiles take their index from an atomic
// counter in launch order, so every predecessor is already running: no tile waits on one that
// cannot make progress.
//
// A tile's status is one 64-bit word: the flag in the top two bits, the value in the low 62.
#pragma once
#include <cstdint>

#include <cuda/atomic>

#include "device_common.cuh"

namespace ebgc {
namespace gpu {

constexpr uint64_t kStatusEmpty = 0, kStatusAggregate = 1, kStatusInclusive = 2;
constexpr unsigned kStatusShift = 62;
constexpr uint64_t kStatusValueMask = (uint64_t(1) << kStatusShift) - 1;

using StatusRef = cuda::atomic_ref<unsigned long long, cuda::thread_scope_device>;

__device__ inline void publish(unsigned long long* status, uint64_t flag, uint64_t value) {
  StatusRef(*status).store((flag << kStatusShift) | value, cuda::memory_order_relaxed);
}

// Waits until the status has a flag, then returns it.
__device__ inline unsigned long long wait_status(unsigned long long* status) {
  unsigned long long s;
  while (((s = StatusRef(*status).load(cuda::memory_order_relaxed)) >> kStatusShift) == kStatusEmpty) {
  }
  return s;
}

// Called by all 32 lanes of one warp of the tile. Returns the sum of the aggregates of tiles
// [0, tile) and publishes tile's inclusive prefix. `status` has one zeroed word per tile.
__device__ inline uint64_t lookback_exclusive_prefix(unsigned long long* status, uint64_t tile, uint64_t aggregate) {
  const unsigned lane = threadIdx.x % kWarp;
  if (tile == 0) {
    if (lane == 0) publish(&status[0], kStatusInclusive, aggregate);
    return 0;
  }
  if (lane == 0) publish(&status[tile], kStatusAggregate, aggregate);
  uint64_t exclusive = 0;
  int64_t base = int64_t(tile) - 1;  // the window is tiles base, base-1, ..., base-31
  while (true) {
    const int64_t idx = base - int64_t(lane);
    // Lanes past tile 0 behave as an inclusive prefix of 0.
    const unsigned long long s = idx >= 0 ? wait_status(&status[idx]) : (kStatusInclusive << kStatusShift);
    const unsigned inclusive = __ballot_sync(kFullMask, (s >> kStatusShift) == kStatusInclusive);
    // Lanes up to and including the nearest inclusive one (the lowest lane) contribute.
    const unsigned stop = inclusive ? unsigned(__ffs(inclusive)) - 1 : kWarp - 1;
    uint64_t v = lane <= stop ? (s & kStatusValueMask) : 0;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFullMask, v, off);
    exclusive += v;
    if (inclusive) break;
    base -= kWarp;
  }
  if (lane == 0) publish(&status[tile], kStatusInclusive, exclusive + aggregate);
  return exclusive;
}

// The inclusive prefix of an earlier tile, once it is published (it always will be).
__device__ inline uint64_t wait_inclusive_prefix(unsigned long long* status, uint64_t tile) {
  unsigned long long s;
  while (((s = wait_status(&status[tile])) >> kStatusShift) != kStatusInclusive) {
  }
  return s & kStatusValueMask;
}

}  // namespace gpu
}  // namespace ebgc
