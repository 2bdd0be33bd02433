/* Element-wise loops for AVX2 + FMA (x86-64; this file is compiled with -mavx2 -mfma and only
 * called when the CPU has both, see vkern.c). */
#if defined(__x86_64__)
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif
#define SF_VK_SUFFIX _avx2
#define SF_VK_ISA "avx2"
#define SF_VK_OWN_SIGMOID /* sigmoid and swish below, with intrinsics */
#include <immintrin.h>
#include <math.h>

#include "runtime/ops/vmath.h"

/* sigmoid(x) for 8 lanes. With z = |x|: e = e^-z (degree-5 minimax polynomial on the reduced
 * argument, 2^n rebuilt from the rounding bias), f = e / (1 + e) = sigmoid(-z), and
 * sigmoid(x) = x > 0 ? 1 - f : f. No overflow; f flushes to 0 where it would be denormal. */
static inline __m256 sigmoid8(__m256 x) {
  const __m256 bias = _mm256_set1_ps(0x1.8000FEp23f); /* rounds, and holds n + 127 */
  const __m256 cutoff = _mm256_set1_ps(0x1.5D589Ep+6f); /* ~87.3: e^-z is denormal beyond */
  __m256 z = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  __m256 n = _mm256_fmadd_ps(z, _mm256_set1_ps(-0x1.715476p+0f), bias);
  __m256 s = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(n), 23)); /* 2^n */
  n = _mm256_sub_ps(n, bias);
  __m256 t = _mm256_fmadd_ps(n, _mm256_set1_ps(0x1.62E400p-1f), z);
  t = _mm256_fmadd_ps(n, _mm256_set1_ps(0x1.7F7D1Cp-20f), t);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(-0x1.0F9F9Cp-7f), t, _mm256_set1_ps(0x1.573A1Ap-5f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0x1.555A80p-3f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0x1.FFFDC6p-2f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0x1.FFFFF6p-1f));
  t = _mm256_mul_ps(t, s);
  __m256 e = _mm256_fmadd_ps(t, p, s);
  __m256 f = _mm256_div_ps(e, _mm256_add_ps(e, _mm256_set1_ps(1.0f)));
  f = _mm256_andnot_ps(_mm256_cmp_ps(z, cutoff, _CMP_GT_OQ), f);
  __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ);
  return _mm256_blendv_ps(f, _mm256_sub_ps(_mm256_set1_ps(1.0f), f), pos);
}

static void vk_sigmoid_avx2(const float *x, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, sigmoid8(_mm256_loadu_ps(x + i)));
  for (; i < n; i++) y[i] = 1.0f / (1.0f + sf__vm_exp(-x[i]));
}

static void vk_swish_avx2(const float *x, float *y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(y + i, _mm256_mul_ps(v, sigmoid8(v)));
  }
  for (; i < n; i++) y[i] = x[i] / (1.0f + sf__vm_exp(-x[i]));
}

#include "runtime/ops/vkern.inc"
#else
typedef int sf__vkern_avx2_unused;
#endif
