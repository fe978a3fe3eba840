// Run-time CPU dispatch: the few hot loops that gain from AVX2 have a copy compiled for it (a
// target("avx2") function inlining the portable loop) and run it where the CPU has AVX2. The
// copies compute the same bits as the portable loops: IEEE arithmetic, no contraction.
#pragma once
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EBGC_HAVE_AVX2 1

namespace ebgc {

// Whether the AVX2 paths run: the CPU has AVX2, and the tests have not switched them off to
// compare them with the portable paths.
inline bool& use_avx2() {
  static bool use = __builtin_cpu_supports("avx2");
  return use;
}

}  // namespace ebgc
#endif
