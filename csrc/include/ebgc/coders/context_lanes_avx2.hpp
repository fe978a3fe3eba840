// Stage 4c, the lane decoder's main loop in AVX2: the 8 lanes of rans_lanes.hpp are the 8 slots
// of a vector, so one pass of the loop decodes a position of every lane. Table lookups are
// gathers; the sign tables (7 contexts and the certain event of a zero) fit one register. It
// computes exactly what rans_lane_value<false> computes, lane by lane, and runs only where the CPU
// has AVX2 (checked at run time); the scalar loop is the reference and the fallback.
#pragma once
#include "../common/cpu_features.hpp"
#ifdef EBGC_HAVE_AVX2
#include <immintrin.h>

#include <cstdint>

#include "../coders/context_model.hpp"

namespace ebgc {

// Lane states as vectors' worth of arrays (slot k = lane k).
struct LaneVectors {
  alignas(32) uint32_t x[8], sum[8], last[8], left[8];
  alignas(32) int32_t sign_sum[8], offset[8];  // offset: each lane's next word, from the chunk start
};

// x < kRansLow: shift in the word w.
__attribute__((target("avx2"), always_inline)) inline __m256i renormalize_avx2(__m256i x, __m256i w, __m256i refill) {
  return _mm256_blendv_epi8(x, _mm256_or_si256(_mm256_slli_epi32(x, 16), w), refill);
}

// Decodes positions [j, j + steps) of all 8 lanes into sym (position-major: sym[8 * j + lane]).
// The caller guarantees every lane 4 * steps + 2 readable bytes: the word gathers read 4 bytes.
__attribute__((target("avx2"))) inline void rans_lanes_steps_avx2(const ContextDecodeView& v,
                                                                  const uint32_t* sign_freq, uint32_t period,
                                                                  LaneVectors& s, const uint8_t* chunk,
                                                                  uint64_t j, uint64_t steps, uint8_t* sym) {
  const __m256i low12 = _mm256_set1_epi32(int(kRansScale - 1)), low7 = _mm256_set1_epi32(127);
  const __m256i low13 = _mm256_set1_epi32(0x1fff);
  const __m256i low16 = _mm256_set1_epi32(0xffff), zero = _mm256_setzero_si256();
  const __m256i scale = _mm256_set1_epi32(int(kRansScale));
  const __m256i one = _mm256_set1_epi32(1), three = _mm256_set1_epi32(3), seven = _mm256_set1_epi32(7);
  const __m256i periods = _mm256_set1_epi32(int(period));
  const __m256i signs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sign_freq));
  const __m256i bytes_to_low = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const int* table_for_sum = reinterpret_cast<const int*>(v.table_for_sum);
  const int* slot_entry = reinterpret_cast<const int*>(v.slot_entry);
  __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(s.x));
  __m256i sum = _mm256_load_si256(reinterpret_cast<const __m256i*>(s.sum));
  __m256i last = _mm256_load_si256(reinterpret_cast<const __m256i*>(s.last));
  __m256i left = _mm256_load_si256(reinterpret_cast<const __m256i*>(s.left));
  __m256i sign_sum = _mm256_load_si256(reinterpret_cast<const __m256i*>(s.sign_sum));
  __m256i offset = _mm256_load_si256(reinterpret_cast<const __m256i*>(s.offset));


  for (uint64_t end = j + steps; j < end; ++j) {
    // The next two words of every lane, loaded off the states' dependency chain: a position
    // takes at most two.
    const __m256i words = _mm256_i32gather_epi32(reinterpret_cast<const int*>(chunk), offset, 1);
    const __m256i word0 = _mm256_and_si256(words, low16), word1 = _mm256_srli_epi32(words, 16);
    // Magnitude event.
    __m256i slot = _mm256_and_si256(x, low12);
    const __m256i base = _mm256_i32gather_epi32(table_for_sum, sum, 4);
    const __m256i entry = _mm256_i32gather_epi32(slot_entry, _mm256_add_epi32(base, slot), 4);
    const __m256i symbol = _mm256_and_si256(entry, low7);
    x = _mm256_add_epi32(
        _mm256_mullo_epi32(_mm256_and_si256(_mm256_srli_epi32(entry, 7), low13), _mm256_srli_epi32(x, kRansScaleBits)),
        _mm256_srli_epi32(entry, 20));
    const __m256i refill0 = _mm256_cmpeq_epi32(_mm256_srli_epi32(x, 16), zero);
    x = renormalize_avx2(x, word0, refill0);
    // Sign event: context clamp(sign_sum, -3, 3) + 3, or index 7 (frequency = scale) for a zero.
    const __m256i is_zero = _mm256_cmpeq_epi32(symbol, zero);
    const __m256i ctx = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(sign_sum, _mm256_sub_epi32(zero, three)), three), three);
    const __m256i f0 = _mm256_permutevar8x32_epi32(signs, _mm256_blendv_epi8(ctx, seven, is_zero));
    slot = _mm256_and_si256(x, low12);
    const __m256i neg = _mm256_cmpgt_epi32(_mm256_add_epi32(slot, one), f0);  // slot >= f0
    const __m256i freq = _mm256_blendv_epi8(f0, _mm256_sub_epi32(scale, f0), neg);
    x = _mm256_sub_epi32(_mm256_add_epi32(_mm256_mullo_epi32(freq, _mm256_srli_epi32(x, kRansScaleBits)), slot),
                         _mm256_and_si256(neg, f0));
    const __m256i refill1 = _mm256_cmpeq_epi32(_mm256_srli_epi32(x, 16), zero);
    x = renormalize_avx2(x, _mm256_blendv_epi8(word0, word1, refill0), refill1);
    offset = _mm256_sub_epi32(offset, _mm256_add_epi32(_mm256_add_epi32(refill0, refill1), _mm256_add_epi32(refill0, refill1)));
    // Context updates: the magnitude window, then the kernel's sign sum (+1, -1, or 0 for a zero).
    sum = _mm256_sub_epi32(_mm256_add_epi32(sum, symbol), _mm256_srli_epi32(last, 24));
    last = _mm256_or_si256(_mm256_slli_epi32(last, 8), symbol);
    const __m256i step = _mm256_andnot_si256(is_zero, _mm256_or_si256(neg, one));  // -1 | 1 = -1
    sign_sum = _mm256_add_epi32(sign_sum, step);
    left = _mm256_sub_epi32(left, one);
    const __m256i kernel_end = _mm256_cmpeq_epi32(left, zero);
    left = _mm256_blendv_epi8(left, periods, kernel_end);
    sign_sum = _mm256_andnot_si256(kernel_end, sign_sum);
    // Output bytes symbol | negative << 7, 8 lanes in one 8-byte store.
    const __m256i out = _mm256_shuffle_epi8(_mm256_or_si256(symbol, _mm256_and_si256(neg, _mm256_set1_epi32(128))), bytes_to_low);
    const __m128i packed = _mm_unpacklo_epi32(_mm256_castsi256_si128(out), _mm256_extracti128_si256(out, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(sym + 8 * j), packed);
  }
  _mm256_store_si256(reinterpret_cast<__m256i*>(s.x), x);
  _mm256_store_si256(reinterpret_cast<__m256i*>(s.sum), sum);
  _mm256_store_si256(reinterpret_cast<__m256i*>(s.last), last);
  _mm256_store_si256(reinterpret_cast<__m256i*>(s.left), left);
  _mm256_store_si256(reinterpret_cast<__m256i*>(s.sign_sum), sign_sum);
  _mm256_store_si256(reinterpret_cast<__m256i*>(s.offset), offset);
}

}  // namespace ebgc
#endif
