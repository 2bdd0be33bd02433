/* Element-wise loops for AVX-512F (x86-64). The file is compiled for AVX-512 by the target
 * pragma below (no special build flags) and only called when the CPU and the OS support it (see
 * vkern.c). Sigmoid and Swish use ops/vmath_avx512.h; the other loops are vkern.inc's,
 * vectorised by the compiler for this target. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx2,fma")
#if defined(__OPTIMIZE__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif
#endif

#define SF_VK_SUFFIX _avx512
#define SF_VK_ISA "avx512"
#define SF_VK_OWN_SIGMOID /* sigmoid and swish below, with intrinsics */

#include "runtime/ops/vmath_avx512.h"

static void vk_sigmoid_avx512(const float *x, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, sf__v512_sigmoid(_mm512_loadu_ps(x + i)));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, sf__v512_sigmoid(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

static void vk_swish_avx512(const float *x, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, sf__v512_swish(_mm512_loadu_ps(x + i)));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, m, sf__v512_swish(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

#include "runtime/ops/vkern.inc"

#if defined(__clang__)
#pragma clang attribute pop
#endif
#else
typedef int sf__vkern_avx512_unused;
#endif
