// The stream digest on the device: one thread a part, each the raw CRC of its bytes
// (grid/crc32c_parts.hpp's crc32c_raw, with the byte table built in shared memory); the host
// chains the parts' CRCs into crc32c(buffer, seed).
#pragma once
#include <cstdint>

#include "device_common.cuh"
#include "ebgc/grid/crc32c_parts.hpp"

namespace ebgc {
namespace gpu {

constexpr unsigned kCrcThreads = 256;
constexpr uint64_t kCrcPartBytes = 4096;

// The byte table of the reflected polynomial, built by the block into shared memory.
__device__ inline void build_crc32c_table(uint32_t* table) {
  for (unsigned i = threadIdx.x; i < 256; i += blockDim.x) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  __syncthreads();
}

__global__ void __launch_bounds__(kCrcThreads)
    crc32c_parts_kernel(const uint8_t* __restrict__ p, uint64_t n, uint32_t* raw) {
  __shared__ uint32_t table[256];
  build_crc32c_table(table);
  const uint64_t j = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x, begin = j * kCrcPartBytes;
  if (begin >= n) return;
  raw[j] = crc32c_raw(p + begin, n - begin < kCrcPartBytes ? n - begin : kCrcPartBytes, table);
}

}  // namespace gpu
}  // namespace ebgc
