/* Branch-free float32 exp, tanh and erf that GCC can vectorise inside element loops (libm's
 * expf / tanhf / erff are scalar calls, ~10x slower on large tensors).
 *
 * Accuracy against double-precision libm (also checked in tests/unit_elementwise.c): exp within
 * 1 ulp where the result is a normal float (below ~2.6e-38 it flushes to 0, above FLT_MAX it
 * is +inf); tanh within 2 ulp; erf within 8 ulp (absolute error < 5e-7). NaN propagates. No
 * float->int conversions (no UB on NaN or overflow).
 */
#ifndef SF_OPS_VMATH_H
#define SF_OPS_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float sf__vm_bits2f(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline uint32_t sf__vm_f2bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* exp(x) = 2^n * exp(r), |r| <= ln2/2; Cephes polynomial for exp(r). */
static inline float sf__vm_exp(float x) {
  const float lo = -86.6f, hi = 88.7228394f;
  float xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  /* round x/ln2 to the nearest integer with the 1.5*2^23 trick; its low bits hold n */
  float t = xc * 1.44269504088896341f + 12582912.0f;
  float n = t - 12582912.0f;
  uint32_t ni = sf__vm_f2bits(t) - 0x4B400000u;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float e = r + r * r * p + 1.0f;
  /* 2^(n-1) keeps the biased exponent in [1, 254] for n in [-125, 128] */
  float s = sf__vm_bits2f((ni + 126u) << 23);
  float y = e * s * 2.0f;
  y = x > hi ? INFINITY : y;
  return x < lo ? 0.0f : y;
}

/* Cephes tanhf: odd polynomial below 0.625, 1 - 2 / (exp(2|x|) + 1) above. */
static inline float sf__vm_tanh(float x) {
  float ax = fabsf(x);
  float e = sf__vm_exp(2.0f * ax);
  float big = copysignf(1.0f - 2.0f / (e + 1.0f), x);
  float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  float small = x + x * z * p;
  return ax < 0.625f ? small : big;
}

/* erf(x) = x P(x^2) / Q(x^2) on [-4, 4] (erf is +-1 in float32 beyond). */
static inline float sf__vm_erf(float a) {
  float x = a < -4.0f ? -4.0f : a;
  x = x > 4.0f ? 4.0f : x;
  float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  p = p * x;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return p / q;
}

#endif
