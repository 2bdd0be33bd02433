/* Test helper for .npy arrays:
 *   npytool gen OUT.npy D1,D2,... SEED     deterministic uniform [-1,1) float32 array
 *   npytool image OUT.npy N,C,H,W [LO HI]  a synthetic document-like image (light page, dark
 *                                          strokes) with pixel values in [LO, HI] (default -1, 1)
 *   npytool cmp A.npy B.npy RTOL           compare A with the reference B
 * cmp prints the max absolute error, the max element-wise relative error and the error relative
 * to the reference's magnitude, and exits 1 unless max|a-b| <= RTOL * max|b| (NaN and infinities
 * must match exactly). Element-wise relative error is not the criterion: outputs near zero (e.g.
 * sigmoid of a large negative logit) carry the rounding noise of every earlier layer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/onnx.h"

static int gen(const char *out, const char *dims, unsigned long long seed) {
  sf_tensor t = {.dtype = SF_F32};
  const char *p = dims;
  while (*p) {
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p || v <= 0 || t.rank >= SF_MAX_RANK) return 2;
    t.dims[t.rank++] = v;
    p = *end ? end + 1 : end;
  }
  int64_t n = sf_tensor_numel(&t);
  float *d = malloc(sizeof(float) * (size_t)n);
  if (!d) return 1;
  unsigned long long x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    d[i] = (float)((double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
  }
  t.data = d;
  sf_err err = {0};
  int rc = sf__tensor_save_npy(out, &t, &err);
  if (rc) fprintf(stderr, "npytool: %s\n", err.msg);
  free(d);
  return rc ? 1 : 0;
}

static int image(const char *out, const char *dims, double lo, double hi) {
  long long d[4];
  if (sscanf(dims, "%lld,%lld,%lld,%lld", &d[0], &d[1], &d[2], &d[3]) != 4) return 2;
  sf_tensor t = {.dtype = SF_F32, .rank = 4, .dims = {d[0], d[1], d[2], d[3]}};
  int64_t n = sf_tensor_numel(&t);
  if (n <= 0) return 2;
  float *p = malloc(sizeof(float) * (size_t)n);
  if (!p) return 1;
  for (long long b = 0, i = 0; b < d[0] * d[1]; b++)
    for (long long y = 0; y < d[2]; y++)
      for (long long x = 0; x < d[3]; x++, i++) {
        double v = 0.9;
        if ((y / 16) % 3 == 1 && sin(0.7 * (double)x + 0.3 * (double)y) > 0.2 && x > d[3] / 10 &&
            x < d[3] - d[3] / 10)
          v = 0.1;
        p[i] = (float)(lo + v * (hi - lo));
      }
  t.data = p;
  sf_err err = {0};
  int rc = sf__tensor_save_npy(out, &t, &err);
  if (rc) fprintf(stderr, "npytool: %s\n", err.msg);
  free(p);
  return rc ? 1 : 0;
}

static double at(const sf_tensor *t, int64_t i) {
  switch (t->dtype) {
    case SF_F32: return ((float *)t->data)[i];
    case SF_F64: return ((double *)t->data)[i];
    case SF_I64: return (double)((int64_t *)t->data)[i];
    case SF_I32: return ((int32_t *)t->data)[i];
  }
  return NAN;
}

static int cmp(const char *a, const char *b, double rtol) {
  sf_tensor x = {0}, y = {0};
  sf_err err = {0};
  int rc = 1;
  if (sf__tensor_load_file(a, &x, &err) || sf__tensor_load_file(b, &y, &err)) {
    fprintf(stderr, "npytool: %s\n", err.msg);
    goto out;
  }
  if (x.dtype != y.dtype || x.rank != y.rank || memcmp(x.dims, y.dims, sizeof(int64_t) * (size_t)x.rank)) {
    char s1[128], s2[128];
    fprintf(stderr, "npytool: %s is %s %s, %s is %s %s\n", a, sf_dtype_name(x.dtype),
            sf__shape_str(&x, s1, sizeof s1), b, sf_dtype_name(y.dtype), sf__shape_str(&y, s2, sizeof s2));
    goto out;
  }
  int64_t n = sf_tensor_numel(&x), bad = 0, worst = -1;
  double maxref = 0, maxabs = 0, maxrel = 0;
  for (int64_t i = 0; i < n; i++) {
    double v = at(&y, i);
    if (!isnan(v) && !isinf(v)) maxref = fmax(maxref, fabs(v));
  }
  for (int64_t i = 0; i < n; i++) {
    double u = at(&x, i), v = at(&y, i);
    if (isnan(u) || isnan(v) || isinf(u) || isinf(v)) {
      if (!(isnan(u) && isnan(v)) && u != v) bad++;
      continue;
    }
    double d = fabs(u - v);
    if (d > maxabs) {
      maxabs = d;
      worst = i;
    }
    if (fabs(v) > 0) maxrel = fmax(maxrel, d / fabs(v));
  }
  double scaled = maxref > 0 ? maxabs / maxref : maxabs;
  if (scaled > rtol) bad++;
  printf("%s: %lld values, max |ref| %.3g, max abs err %.3g (at %lld) = %.3g of max |ref| "
         "(limit %.0e), max element-wise rel err %.3g\n",
         b, (long long)n, maxref, maxabs, (long long)worst, scaled, rtol, maxrel);
  rc = bad ? 1 : 0;
out:
  sf__tensor_deinit(&x);
  sf__tensor_deinit(&y);
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 5 && !strcmp(argv[1], "gen")) return gen(argv[2], argv[3], strtoull(argv[4], NULL, 10));
  if (argc == 4 && !strcmp(argv[1], "image")) return image(argv[2], argv[3], -1.0, 1.0);
  if (argc == 6 && !strcmp(argv[1], "image"))
    return image(argv[2], argv[3], strtod(argv[4], NULL), strtod(argv[5], NULL));
  if (argc == 5 && !strcmp(argv[1], "cmp")) return cmp(argv[2], argv[3], strtod(argv[4], NULL));
  fprintf(stderr, "usage: npytool gen OUT.npy D1,D2,... SEED | npytool image OUT.npy N,C,H,W [LO HI] |\n"
                  "       npytool cmp A.npy B.npy RTOL\n");
  return 2;
}
