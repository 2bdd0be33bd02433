/* Vectorised float32 element-wise loops, compiled once per instruction set (vkern_base.c: the
 * build's baseline, vkern_avx2.c: AVX2+FMA, vkern_avx512.c: AVX-512F, on x86-64) and chosen at
 * run time by CPU features.
 *
 *   const sf_vkern *vk = sf__vkern();      // resolved once, thread-safe
 *   vk->swish(x, y, n);                     // y may alias x
 *
 * Accuracy is that of ops/vmath.h (exp within 1 ulp, tanh 2 ulp, erf 8 ulp). */
#ifndef SF_VKERN_H
#define SF_VKERN_H

#include <stdint.h>

typedef void (*sf_vk_fn)(const float *x, float *y, int64_t n);
typedef void (*sf_vk_ab_fn)(const float *x, float *y, int64_t n, float a, float b);

typedef struct sf_vkern {
  const char *isa;
  sf_vk_fn sigmoid, swish, tanh, exp, erf;
  sf_vk_ab_fn hsigmoid; /* clamp(a*x + b, 0, 1) */
} sf_vkern;

const sf_vkern *sf__vkern(void);
/* 1 if the CPU and the OS support AVX-512F (and AVX2 + FMA); resolved once, thread-safe. */
int sf__cpu_avx512(void);

/* The variants (defined by vkern.inc). */
extern const sf_vkern sf__vkern_base;
#if defined(__x86_64__)
extern const sf_vkern sf__vkern_avx2;
#if defined(__GNUC__)
extern const sf_vkern sf__vkern_avx512;
#endif
#endif

#endif
