/* Sigmoid and Swish on 16 float32 lanes with AVX-512F, for kernels compiled for AVX-512 (a file
 * under a target pragma, or functions with SF_AVX512_TARGET). Callers must check the CPU first
 * (sf__cpu_avx512(), vkern.h).
 *
 * Accuracy against double precision: relative error < 3e-7 for sigmoid(x) and x * sigmoid(x)
 * wherever the result is a normal float and |x| <= 88 (tests/unit_vkern.c); beyond, x is
 * clamped to +-88 (sigmoid 1 or ~6e-39, Swish x or ~6e-39 x). NaN propagates.
 * Method: z = clamp(x, -88, 88); e = e^-z = 2^n * p(t) with n = round(-z / ln 2), t = z + n ln 2
 * (Cody-Waite, two constants) and a degree-5 minimax polynomial, 2^n applied by vscalefps;
 * sigmoid = 1 / (1 + e), Swish = x / (1 + e). 13 instructions per vector for Swish: on AMD
 * Zen 4 the FMA pipes are the limit, and one vdivps costs less there than sign handling plus a
 * reciprocal with a Newton step (0.20 vs 0.27 ns per element, one core). */
#ifndef SF_OPS_VMATH_AVX512_H
#define SF_OPS_VMATH_AVX512_H

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define SF_AVX512_TARGET __attribute__((target("avx512f,avx2,fma")))

/* 1 + e^-x for x clamped to [-88, 88] */
static inline SF_AVX512_TARGET __m512 sf__v512_1pexpm(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  /* max / min return their second operand when one is NaN: NaN stays NaN */
  __m512 z = _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-88.0f), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(z, _mm512_set1_ps(-0x1.715476p+0f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 t = _mm512_fmadd_ps(n, _mm512_set1_ps(0x1.62E400p-1f), z);
  t = _mm512_fmadd_ps(n, _mm512_set1_ps(0x1.7F7D1Cp-20f), t);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(-0x1.0F9F9Cp-7f), t, _mm512_set1_ps(0x1.573A1Ap-5f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0x1.555A80p-3f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0x1.FFFDC6p-2f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0x1.FFFFF6p-1f));
  p = _mm512_fmadd_ps(p, t, one); /* e^-t */
  return _mm512_add_ps(_mm512_scalef_ps(p, n), one);
}

static inline SF_AVX512_TARGET __m512 sf__v512_sigmoid(__m512 x) {
  return _mm512_div_ps(_mm512_set1_ps(1.0f), sf__v512_1pexpm(x));
}

static inline SF_AVX512_TARGET __m512 sf__v512_swish(__m512 x) {
  return _mm512_div_ps(x, sf__v512_1pexpm(x));
}

#endif
#endif
