/* Private helpers of the data-movement kernels (ops/shape.c, ops/tensor.c, ops/transpose.c,
 * ops/resize.c): output-shape validation, reading constant shape-like inputs, safe copies.
 * Everything here is static inline; the only exported symbols are the transpose entry points
 * used by the unit tests. */
#ifndef SF_OPS_DATAMOVE_H
#define SF_OPS_DATAMOVE_H

#include <math.h>
#include <string.h>

#include "runtime/op.h"

/* Default-domain opset of the graph (latest supported when unknown). */
static inline int64_t dm_opset(const sf_kctx *k) { return k->g->opset > 0 ? k->g->opset : 17; }

static inline int64_t dm_numel(const sf_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->dims[i];
  return n;
}

/* memcpy that accepts n == 0 with NULL pointers (empty tensors). */
static inline void dm_copy(void *dst, const void *src, size_t n) {
  if (n) memcpy(dst, src, n);
}

/* Element size of a tensor's dtype; SF_EUNSUPPORTED for strings and unknown types. */
static inline int dm_esize(sf_kctx *k, const sf_tensor *t, size_t *es) {
  size_t s = sf_dtype_size(t->dtype);
  if (t->dtype == SF_STRING || s == 0)
    return sf__op_err(k, SF_EUNSUPPORTED, "dtype %s of '%s' is not supported",
                      sf_dtype_name(t->dtype), t->name ? t->name : "");
  *es = s;
  return 0;
}

/* Validate and set output i's dtype and dims: each dim in [0, SF_MAX_DIM], rank <= SF_MAX_RANK,
 * total bytes <= SF_MAX_TENSOR_BYTES (SF_ELIMIT / SF_ESHAPE otherwise). */
static inline int dm_set_out(sf_kctx *k, int i, int dtype, int rank, const int64_t *dims) {
  sf_gtensor *o = sf__out(k->g, k->node, i);
  if (!o) return 0;
  if (rank < 0 || rank > SF_MAX_RANK)
    return sf__op_err(k, SF_EUNSUPPORTED, "output rank %d exceeds the maximum %d", rank,
                      SF_MAX_RANK);
  size_t es = sf_dtype_size(dtype);
  if (dtype == SF_STRING || es == 0)
    return sf__op_err(k, SF_EUNSUPPORTED, "output dtype %s is not supported",
                      sf_dtype_name(dtype));
  int64_t bytes = (int64_t)es;
  for (int d = 0; d < rank; d++) {
    if (dims[d] < 0) return sf__op_err(k, SF_ESHAPE, "output dim %d is negative (%lld)", d,
                                       (long long)dims[d]);
    if (dims[d] > SF_MAX_DIM || sf__mul_ok(bytes, dims[d], SF_MAX_TENSOR_BYTES, &bytes) < 0)
      return sf__op_err(k, SF_ELIMIT, "output %d is too large (dim %d = %lld)", i, d,
                        (long long)dims[d]);
  }
  sf__tensor_set_shape(o, dtype, rank, dims);
  return 0;
}

/* Values of constant integer input i (int32/int64, rank 0 or 1) into v[0..max). *n = count.
 * SF_EUNSUPPORTED if not constant, SF_ESHAPE if malformed or more than max values. */
static inline int dm_const_ints(sf_kctx *k, int i, const char *what, int64_t *v, int max,
                                int *n) {
  sf_gtensor *t = sf__in(k->g, k->node, i);
  if (!t) return sf__op_err(k, SF_EINVAL, "input '%s' is missing", what);
  if (t->kind != SF_TK_CONST || !t->t.data)
    return sf__op_err(k, SF_EUNSUPPORTED,
                      "input '%s' must be a constant (dynamic shapes are not supported)", what);
  if (t->t.dtype != SF_I64 && t->t.dtype != SF_I32)
    return sf__op_err(k, SF_EUNSUPPORTED, "input '%s' has dtype %s, expected int64 or int32",
                      what, sf_dtype_name(t->t.dtype));
  if (t->t.rank > 1)
    return sf__op_err(k, SF_ESHAPE, "input '%s' must be 1-D, got rank %d", what, t->t.rank);
  int64_t cnt = dm_numel(&t->t);
  if (cnt > max)
    return sf__op_err(k, SF_ESHAPE, "input '%s' has %lld values, at most %d allowed", what,
                      (long long)cnt, max);
  for (int64_t j = 0; j < cnt; j++) v[j] = sf__int_at(&t->t, j);
  *n = (int)cnt;
  return 0;
}

/* IEEE half from a double, round to nearest even. */
static inline uint16_t dm_double_to_half(double d) {
  uint16_t s = signbit(d) ? 0x8000 : 0;
  if (isnan(d)) return s | 0x7e00;
  double a = fabs(d);
  if (a >= 65520.0) return s | 0x7c00;
  if (a < 0x1p-14) { /* subnormal or zero, in units of 2^-24; 1024 is the smallest normal */
    double m = nearbyint(a * 0x1p24);
    return (uint16_t)(s | (uint16_t)m);
  }
  int e;
  frexp(a, &e); /* a in [2^(e-1), 2^e) */
  e -= 1;
  double m = nearbyint(ldexp(a, 10 - e));
  if (m >= 2048) {
    m = 1024;
    e++;
  }
  if (e > 15) return s | 0x7c00;
  return (uint16_t)(s | (uint16_t)((e + 15) << 10) | (uint16_t)((int)m - 1024));
}

static inline float dm_half_to_float(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
  if (e == 0) {
    float f = ldexpf((float)m, -24);
    return s ? -f : f;
  }
  bits = s | (e == 0x1f ? 0x7f800000u : (e + 112) << 23) | (m << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* A double as one element of dtype (little-endian bytes into out[8]); integers truncate
 * and saturate. */
static inline void dm_from_double(int dtype, double v, unsigned char *out) {
  memset(out, 0, 8);
  if (dtype == SF_F32) {
    float f = (float)v;
    memcpy(out, &f, 4);
  } else if (dtype == SF_F64) {
    memcpy(out, &v, 8);
  } else if (dtype == SF_F16) {
    uint16_t h = dm_double_to_half(v);
    memcpy(out, &h, 2);
  } else if (dtype == SF_BOOL) {
    out[0] = v != 0;
  } else {
    int64_t x = isnan(v) ? 0 : v <= -0x1p63 ? INT64_MIN : v >= 0x1p63 ? INT64_MAX : (int64_t)v;
    uint64_t u = (uint64_t)x;
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(u >> (8 * i));
  }
}

/* "[1,2,3]" into buf. */
static inline const char *dm_list_str(const int64_t *v, int n, char *buf, size_t cap) {
  size_t p = 0;
  buf[0] = 0;
  p += (size_t)snprintf(buf + p, cap - p, "[");
  for (int i = 0; i < n && p < cap; i++)
    p += (size_t)snprintf(buf + p, cap - p, "%s%lld", i ? "," : "", (long long)v[i]);
  if (p < cap) snprintf(buf + p, cap - p, "]");
  return buf;
}

/* Transpose of a dense tensor: out[j0..] = in[...] with out dim d = in dim perm[d].
 * esize is 1, 2, 4 or 8 (other sizes are copied bytewise). Picks the blocked 2-D kernel when
 * the permutation reduces to a batched matrix transpose, else the general N-D loop. */
void sf__transpose(pthreadpool_t pool, const void *in, void *out, int rank, const int64_t *dims,
                   const int *perm, size_t esize);
/* The general N-D loop alone (unit tests compare it with the fast path). */
void sf__transpose_general(pthreadpool_t pool, const void *in, void *out, int rank,
                           const int64_t *dims, const int *perm, size_t esize);

#endif
