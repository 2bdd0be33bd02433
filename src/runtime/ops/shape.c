/* Shape-only and constant operators: Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout
 * (inference), Shape, Cast, Constant, ConstantOfShape (ONNX opsets 7..18).
 *
 * Reshape/Flatten/Squeeze/Unsqueeze/Identity/Dropout are SF_OPF_ALIAS: when the planner gives
 * output 0 the buffer of input 0, run() does nothing; otherwise it is one memcpy. */
#include <math.h>
#include <string.h>

#include "runtime/ops/datamove.h"

/* ---- copies shared by the reshape family ------------------------------------------------ */

static int alias_run(sf_kctx *k) {
  sf_gtensor *in = sf__in(k->g, k->node, 0), *out = sf__out(k->g, k->node, 0);
  if (out->t.data == in->t.data) return 0;
  int64_t n = sf_tensor_nbytes(&out->t);
  if (n < 0 || n != sf_tensor_nbytes(&in->t))
    return sf__op_err(k, SF_EINTERNAL, "input and output sizes differ");
  dm_copy(out->t.data, in->t.data, (size_t)n);
  return 0;
}

static int need_input(sf_kctx *k, sf_gtensor **in) {
  *in = sf__in(k->g, k->node, 0);
  if (!*in) return sf__op_err(k, SF_EINVAL, "input 0 is missing");
  size_t es;
  return dm_esize(k, &(*in)->t, &es);
}

/* ---- Reshape ------------------------------------------------------------------------------ */

static int reshape_infer(sf_kctx *k) {
  sf_gtensor *in;
  int rc = need_input(k, &in);
  if (rc < 0) return rc;
  int64_t s[SF_MAX_RANK], dims[SF_MAX_RANK];
  int n = 0;
  if (sf__in(k->g, k->node, 1)) {
    if ((rc = dm_const_ints(k, 1, "shape", s, SF_MAX_RANK, &n)) < 0) return rc;
  } else {
    const int64_t *a;
    n = sf__attr_ints(k->node, "shape", &a); /* Reshape-1 */
    if (n < 0) return sf__op_err(k, SF_EINVAL, "input 'shape' is missing");
    if (n > SF_MAX_RANK)
      return sf__op_err(k, SF_EUNSUPPORTED, "target rank %d exceeds %d", n, SF_MAX_RANK);
    memcpy(s, a, (size_t)n * sizeof *s);
  }
  int allowzero = sf__attr_int(k->node, "allowzero", 0) != 0;
  int64_t total = dm_numel(&in->t), known = 1;
  int neg = -1, has_zero = 0;
  char b1[128], b2[256];
  for (int i = 0; i < n; i++) {
    int64_t v = s[i];
    if (v == 0 && !allowzero) {
      if (i >= in->t.rank)
        return sf__op_err(k, SF_ESHAPE, "shape %s copies dim %d of input %s which has rank %d",
                          dm_list_str(s, n, b2, sizeof b2), i,
                          sf__shape_str(&in->t, b1, sizeof b1), in->t.rank);
      v = in->t.dims[i];
    } else if (v == -1) {
      if (neg >= 0)
        return sf__op_err(k, SF_ESHAPE, "shape %s has more than one -1",
                          dm_list_str(s, n, b2, sizeof b2));
      neg = i;
      dims[i] = -1;
      continue;
    } else if (v < 0) {
      return sf__op_err(k, SF_ESHAPE, "shape %s has a negative dim",
                        dm_list_str(s, n, b2, sizeof b2));
    }
    if (v == 0) has_zero = 1;
    if (v > SF_MAX_DIM) return sf__op_err(k, SF_ELIMIT, "dim %lld too large", (long long)v);
    dims[i] = v;
    if (v && sf__mul_ok(known, v, INT64_MAX, &known) < 0)
      return sf__op_err(k, SF_ELIMIT, "shape %s too large", dm_list_str(s, n, b2, sizeof b2));
  }
  if (has_zero) known = 0;
  if (neg >= 0) {
    if (allowzero && has_zero)
      return sf__op_err(k, SF_ESHAPE, "shape %s has both 0 and -1 with allowzero=1",
                        dm_list_str(s, n, b2, sizeof b2));
    if (known == 0 || total % known != 0)
      return sf__op_err(k, SF_ESHAPE, "cannot reshape input %s to %s",
                        sf__shape_str(&in->t, b1, sizeof b1), dm_list_str(s, n, b2, sizeof b2));
    dims[neg] = total / known;
    known = total;
  }
  if (known != total)
    return sf__op_err(k, SF_ESHAPE, "cannot reshape input %s (%lld elements) to %s",
                      sf__shape_str(&in->t, b1, sizeof b1), (long long)total,
                      dm_list_str(s, n, b2, sizeof b2));
  return dm_set_out(k, 0, in->t.dtype, n, dims);
}

/* ---- Flatten ------------------------------------------------------------------------------ */

static int flatten_infer(sf_kctx *k) {
  sf_gtensor *in;
  int rc = need_input(k, &in);
  if (rc < 0) return rc;
  int r = in->t.rank;
  int64_t axis = sf__attr_int(k->node, "axis", 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r)
    return sf__op_err(k, SF_EINVAL, "axis %lld out of range for rank %d",
                      (long long)sf__attr_int(k->node, "axis", 1), r);
  int64_t d[2] = {1, 1};
  for (int i = 0; i < r; i++) d[i >= axis] *= in->t.dims[i];
  return dm_set_out(k, 0, in->t.dtype, 2, d);
}

/* ---- Squeeze / Unsqueeze ----------------------------------------------------------------- */

/* Axes from the attribute (opset < 13) or input 1 (opset >= 13). *n = -1 when absent. */
static int read_axes(sf_kctx *k, int64_t *axes, int max, int *n) {
  const int64_t *a;
  int na = sf__attr_ints(k->node, "axes", &a);
  if (na >= 0) {
    if (na > max) return sf__op_err(k, SF_ESHAPE, "too many axes (%d)", na);
    memcpy(axes, a, (size_t)na * sizeof *axes);
    *n = na;
    return 0;
  }
  *n = -1;
  if (!sf__in(k->g, k->node, 1)) return 0;
  return dm_const_ints(k, 1, "axes", axes, max, n);
}

static int squeeze_infer(sf_kctx *k) {
  sf_gtensor *in;
  int rc = need_input(k, &in);
  if (rc < 0) return rc;
  int r = in->t.rank, n;
  int64_t axes[SF_MAX_RANK], dims[SF_MAX_RANK];
  char drop[SF_MAX_RANK] = {0};
  if ((rc = read_axes(k, axes, SF_MAX_RANK, &n)) < 0) return rc;
  if (n < 0) {
    for (int i = 0; i < r; i++) drop[i] = in->t.dims[i] == 1;
  } else {
    for (int i = 0; i < n; i++) {
      int a = sf__norm_axis(axes[i], r);
      if (a < 0)
        return sf__op_err(k, SF_EINVAL, "axis %lld out of range for rank %d",
                          (long long)axes[i], r);
      if (in->t.dims[a] != 1)
        return sf__op_err(k, SF_ESHAPE, "cannot squeeze axis %d of size %lld", a,
                          (long long)in->t.dims[a]);
      drop[a] = 1;
    }
  }
  int o = 0;
  for (int i = 0; i < r; i++)
    if (!drop[i]) dims[o++] = in->t.dims[i];
  return dm_set_out(k, 0, in->t.dtype, o, dims);
}

static int unsqueeze_infer(sf_kctx *k) {
  sf_gtensor *in;
  int rc = need_input(k, &in);
  if (rc < 0) return rc;
  int r = in->t.rank, n;
  int64_t axes[SF_MAX_RANK], dims[SF_MAX_RANK];
  char ins[SF_MAX_RANK] = {0};
  if ((rc = read_axes(k, axes, SF_MAX_RANK, &n)) < 0) return rc;
  if (n < 0) return sf__op_err(k, SF_EINVAL, "axes are missing");
  int ro = r + n;
  if (ro > SF_MAX_RANK)
    return sf__op_err(k, SF_EUNSUPPORTED, "output rank %d exceeds %d", ro, SF_MAX_RANK);
  for (int i = 0; i < n; i++) {
    int a = sf__norm_axis(axes[i], ro);
    if (a < 0)
      return sf__op_err(k, SF_EINVAL, "axis %lld out of range for output rank %d",
                        (long long)axes[i], ro);
    if (ins[a]) return sf__op_err(k, SF_EINVAL, "axis %d repeated", a);
    ins[a] = 1;
  }
  for (int i = 0, j = 0; i < ro; i++) dims[i] = ins[i] ? 1 : in->t.dims[j++];
  return dm_set_out(k, 0, in->t.dtype, ro, dims);
}

/* ---- Identity / Dropout ------------------------------------------------------------------ */

static int identity_infer(sf_kctx *k) {
  sf_gtensor *in;
  int rc = need_input(k, &in);
  if (rc < 0) return rc;
  return dm_set_out(k, 0, in->t.dtype, in->t.rank, in->t.dims);
}

/* Dropout in inference: Y = X, mask all true. training_mode=true is only accepted with
 * ratio 0 (then it is the identity too). */
static int dropout_training(sf_kctx *k, int at_run, int *unsupported) {
  *unsupported = 0;
  sf_gtensor *tm = sf__in(k->g, k->node, 2), *ra = sf__in(k->g, k->node, 1);
  if (!tm) return 0;
  if (!tm->t.data || (!at_run && tm->kind != SF_TK_CONST)) return 0; /* decided at run */
  if (dm_numel(&tm->t) != 1) return sf__op_err(k, SF_ESHAPE, "training_mode must be a scalar");
  if (sf__num_at(&tm->t, 0) == 0) return 0;
  double ratio = 0.5;
  if (ra) {
    if (!ra->t.data || (!at_run && ra->kind != SF_TK_CONST)) {
      *unsupported = 1;
      return 0;
    }
    if (dm_numel(&ra->t) != 1) return sf__op_err(k, SF_ESHAPE, "ratio must be a scalar");
    ratio = ra->t.dtype == SF_F16 ? dm_half_to_float(*(const uint16_t *)ra->t.data)
                                  : sf__num_at(&ra->t, 0);
  }
  if (ratio != 0) *unsupported = 1;
  return 0;
}

static int dropout_infer(sf_kctx *k) {
  sf_gtensor *in;
  int rc = need_input(k, &in);
  if (rc < 0) return rc;
  int uns;
  if ((rc = dropout_training(k, 0, &uns)) < 0) return rc;
  if (uns)
    return sf__op_err(k, SF_EUNSUPPORTED, "training_mode=true (random dropout) is not supported");
  if ((rc = dm_set_out(k, 0, in->t.dtype, in->t.rank, in->t.dims)) < 0) return rc;
  int mdt = dm_opset(k) >= 10 ? SF_BOOL : in->t.dtype;
  return dm_set_out(k, 1, mdt, in->t.rank, in->t.dims);
}

static int dropout_run(sf_kctx *k) {
  int uns, rc = dropout_training(k, 1, &uns);
  if (rc < 0) return rc;
  if (uns)
    return sf__op_err(k, SF_EUNSUPPORTED, "training_mode=true (random dropout) is not supported");
  if ((rc = alias_run(k)) < 0) return rc;
  sf_gtensor *m = sf__out(k->g, k->node, 1);
  if (m) {
    int64_t n = dm_numel(&m->t);
    if (m->t.dtype == SF_BOOL || sf_dtype_size(m->t.dtype) == 1) {
      if (n) memset(m->t.data, 1, (size_t)n);
    } else {
      /* Dropout-7 mask has the input type: ones. */
      float f = 1;
      size_t es = sf_dtype_size(m->t.dtype);
      unsigned char v[8] = {0};
      switch (m->t.dtype) {
        case SF_F32: memcpy(v, &f, 4); break;
        case SF_F64: { double d = 1; memcpy(v, &d, 8); break; }
        case SF_F16: { uint16_t h = 0x3c00; memcpy(v, &h, 2); break; }
        default: v[0] = 1; break; /* little-endian integer one */
      }
      for (int64_t i = 0; i < n; i++) memcpy((char *)m->t.data + i * (int64_t)es, v, es);
    }
  }
  return 0;
}

/* ---- Shape -------------------------------------------------------------------------------- */

static void shape_range(sf_kctx *k, int r, int64_t *s, int64_t *e) {
  int64_t st = sf__attr_int(k->node, "start", 0), en = sf__attr_int(k->node, "end", r);
  if (st < 0) st += r;
  if (en < 0) en += r;
  st = st < 0 ? 0 : st > r ? r : st;
  en = en < 0 ? 0 : en > r ? r : en;
  *s = st;
  *e = en < st ? st : en;
}

static int shape_infer(sf_kctx *k) {
  sf_gtensor *in = sf__in(k->g, k->node, 0);
  if (!in) return sf__op_err(k, SF_EINVAL, "input 0 is missing");
  int64_t s, e;
  shape_range(k, in->t.rank, &s, &e);
  int64_t d = e - s;
  return dm_set_out(k, 0, SF_I64, 1, &d);
}

static int shape_run(sf_kctx *k) {
  sf_gtensor *in = sf__in(k->g, k->node, 0), *out = sf__out(k->g, k->node, 0);
  int64_t s, e;
  shape_range(k, in->t.rank, &s, &e);
  int64_t *o = out->t.data;
  /* Channels-last inputs report their logical (ONNX) dims. */
  int64_t ld[SF_MAX_RANK];
  memcpy(ld, in->t.dims, sizeof ld);
  if (in->t.layout == SF_LAYOUT_NHWC && in->t.rank >= 3) {
    int r = in->t.rank;
    ld[1] = in->t.dims[r - 1];
    for (int i = 2; i < r; i++) ld[i] = in->t.dims[i - 1];
  }
  for (int64_t i = s; i < e; i++) o[i - s] = ld[i];
  return 0;
}

/* ---- Cast --------------------------------------------------------------------------------- */

static int cast_dtype_ok(int dt) {
  switch (dt) {
    case SF_F32: case SF_F64: case SF_F16: case SF_I8: case SF_I16: case SF_I32: case SF_I64:
    case SF_U8: case SF_U16: case SF_U32: case SF_U64: case SF_BOOL: return 1;
  }
  return 0;
}

typedef struct {
  int isf;    /* value held in d (float source) or in i/u (integer source) */
  int neg;    /* integer source negative (use i) */
  double d;
  int64_t i;
  uint64_t u;
} castval;

static castval cast_read(int dt, const void *p, int64_t k) {
  castval v = {0};
  switch (dt) {
    case SF_F32: v.isf = 1; v.d = ((const float *)p)[k]; break;
    case SF_F64: v.isf = 1; v.d = ((const double *)p)[k]; break;
    case SF_F16: v.isf = 1; v.d = dm_half_to_float(((const uint16_t *)p)[k]); break;
    case SF_I8: v.i = ((const int8_t *)p)[k]; break;
    case SF_I16: v.i = ((const int16_t *)p)[k]; break;
    case SF_I32: v.i = ((const int32_t *)p)[k]; break;
    case SF_I64: v.i = ((const int64_t *)p)[k]; break;
    case SF_U8: v.i = ((const uint8_t *)p)[k]; break;
    case SF_BOOL: v.i = ((const uint8_t *)p)[k] != 0; break;
    case SF_U16: v.i = ((const uint16_t *)p)[k]; break;
    case SF_U32: v.i = ((const uint32_t *)p)[k]; break;
    case SF_U64: v.u = ((const uint64_t *)p)[k]; v.i = (int64_t)v.u; v.neg = -1; break;
  }
  if (!v.isf && v.neg != -1) {
    v.neg = v.i < 0;
    v.u = (uint64_t)v.i;
  } else if (v.neg == -1) {
    v.neg = 0;
  }
  return v;
}

/* Float -> integer: truncation toward zero, saturated to [lo, hi]; NaN -> 0. (Out-of-range
 * conversions are undefined in ONNX; saturation keeps them defined in C.) */
static int64_t f2i(double d, double lo, double hi) {
  if (isnan(d)) return 0;
  d = trunc(d);
  if (d <= lo) return (int64_t)lo;
  if (d >= hi) return (int64_t)hi;
  return (int64_t)d;
}

static uint64_t f2u64(double d) {
  if (isnan(d) || d <= 0) return 0;
  if (d >= 18446744073709551615.0) return UINT64_MAX;
  return (uint64_t)d;
}

static void cast_write(int dt, void *p, int64_t k, castval v) {
  /* Integer bit pattern for integer targets (wraps modulo 2^bits like NumPy astype). */
  uint64_t bits = v.u;
  if (v.isf) {
    switch (dt) {
      case SF_I8: bits = (uint64_t)f2i(v.d, INT8_MIN, INT8_MAX); break;
      case SF_I16: bits = (uint64_t)f2i(v.d, INT16_MIN, INT16_MAX); break;
      case SF_I32: bits = (uint64_t)f2i(v.d, INT32_MIN, INT32_MAX); break;
      case SF_I64: bits = (uint64_t)f2i(v.d, -9223372036854775808.0, 9223372036854774784.0); break;
      case SF_U8: bits = (uint64_t)f2i(v.d, 0, UINT8_MAX); break;
      case SF_U16: bits = (uint64_t)f2i(v.d, 0, UINT16_MAX); break;
      case SF_U32: bits = (uint64_t)f2i(v.d, 0, UINT32_MAX); break;
      case SF_U64: bits = f2u64(v.d); break;
    }
  }
  double fv = v.isf ? v.d : v.neg ? (double)v.i : (double)v.u;
  switch (dt) {
    case SF_F32: ((float *)p)[k] = (float)fv; break;
    case SF_F64: ((double *)p)[k] = fv; break;
    case SF_F16: ((uint16_t *)p)[k] = dm_double_to_half(fv); break;
    case SF_BOOL: ((uint8_t *)p)[k] = v.isf ? v.d != 0 : v.u != 0; break;
    case SF_I8: case SF_U8: ((uint8_t *)p)[k] = (uint8_t)bits; break;
    case SF_I16: case SF_U16: ((uint16_t *)p)[k] = (uint16_t)bits; break;
    case SF_I32: case SF_U32: ((uint32_t *)p)[k] = (uint32_t)bits; break;
    case SF_I64: case SF_U64: ((uint64_t *)p)[k] = bits; break;
  }
}

static int cast_infer(sf_kctx *k) {
  sf_gtensor *in = sf__in(k->g, k->node, 0);
  if (!in) return sf__op_err(k, SF_EINVAL, "input 0 is missing");
  const sf_attr *a = sf__attr(k->node, "to");
  if (!a) return sf__op_err(k, SF_EINVAL, "attribute 'to' is missing");
  int to = (int)a->i;
  if (!cast_dtype_ok(in->t.dtype) || !cast_dtype_ok(to))
    return sf__op_err(k, SF_EUNSUPPORTED, "cast from %s (%d) to %s (%d) is not supported",
                      sf_dtype_name(in->t.dtype), in->t.dtype, sf_dtype_name(to), to);
  return dm_set_out(k, 0, to, in->t.rank, in->t.dims);
}

static int cast_run(sf_kctx *k) {
  sf_gtensor *in = sf__in(k->g, k->node, 0), *out = sf__out(k->g, k->node, 0);
  int64_t n = dm_numel(&in->t);
  int si = in->t.dtype, so = out->t.dtype;
  if (si == so) {
    dm_copy(out->t.data, in->t.data, (size_t)n * sf_dtype_size(si));
    return 0;
  }
  if (si == SF_F32 && so == SF_F16) {
    const float *x = in->t.data;
    uint16_t *y = out->t.data;
    for (int64_t i = 0; i < n; i++) y[i] = dm_double_to_half(x[i]);
    return 0;
  }
  if (si == SF_F16 && so == SF_F32) {
    const uint16_t *x = in->t.data;
    float *y = out->t.data;
    for (int64_t i = 0; i < n; i++) y[i] = dm_half_to_float(x[i]);
    return 0;
  }
  if (si == SF_F32 && so == SF_F64) {
    const float *x = in->t.data;
    double *y = out->t.data;
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return 0;
  }
  if (si == SF_F64 && so == SF_F32) {
    const double *x = in->t.data;
    float *y = out->t.data;
    for (int64_t i = 0; i < n; i++) y[i] = (float)x[i];
    return 0;
  }
  for (int64_t i = 0; i < n; i++) cast_write(so, out->t.data, i, cast_read(si, in->t.data, i));
  return 0;
}

/* ---- Constant ----------------------------------------------------------------------------- */

static int constant_infer(sf_kctx *k) {
  const sf_node *n = k->node;
  const sf_attr *a;
  if ((a = sf__attr(n, "value"))) {
    if (a->type != SF_ATTR_TENSOR || !a->tensor)
      return sf__op_err(k, SF_EINVAL, "attribute 'value' is not a tensor");
    const sf_tensor *t = a->tensor;
    if (t->dtype == SF_STRING || sf_dtype_size(t->dtype) == 0)
      return sf__op_err(k, SF_EUNSUPPORTED, "constant of dtype %s is not supported",
                        sf_dtype_name(t->dtype));
    if (!t->data && dm_numel(t) > 0)
      return sf__op_err(k, SF_EFORMAT, "attribute 'value' has no data");
    return dm_set_out(k, 0, t->dtype, t->rank, t->dims);
  }
  if ((a = sf__attr(n, "value_float"))) return dm_set_out(k, 0, SF_F32, 0, NULL);
  if ((a = sf__attr(n, "value_int"))) return dm_set_out(k, 0, SF_I64, 0, NULL);
  if ((a = sf__attr(n, "value_floats"))) {
    int64_t d = a->n;
    return dm_set_out(k, 0, SF_F32, 1, &d);
  }
  if ((a = sf__attr(n, "value_ints"))) {
    int64_t d = a->n;
    return dm_set_out(k, 0, SF_I64, 1, &d);
  }
  if (sf__attr(n, "sparse_value"))
    return sf__op_err(k, SF_EUNSUPPORTED, "sparse_value is not supported");
  if (sf__attr(n, "value_string") || sf__attr(n, "value_strings"))
    return sf__op_err(k, SF_EUNSUPPORTED, "string constants are not supported");
  return sf__op_err(k, SF_EINVAL, "no value attribute");
}

static int constant_run(sf_kctx *k) {
  const sf_node *n = k->node;
  sf_gtensor *out = sf__out(k->g, n, 0);
  const sf_attr *a;
  if ((a = sf__attr(n, "value"))) {
    dm_copy(out->t.data, a->tensor->data, (size_t)sf_tensor_nbytes(a->tensor));
  } else if ((a = sf__attr(n, "value_float"))) {
    *(float *)out->t.data = a->f;
  } else if ((a = sf__attr(n, "value_int"))) {
    *(int64_t *)out->t.data = a->i;
  } else if ((a = sf__attr(n, "value_floats"))) {
    dm_copy(out->t.data, a->floats, (size_t)a->n * sizeof(float));
  } else if ((a = sf__attr(n, "value_ints"))) {
    dm_copy(out->t.data, a->ints, (size_t)a->n * sizeof(int64_t));
  } else {
    return sf__op_err(k, SF_EINVAL, "no value attribute");
  }
  return 0;
}

/* ---- ConstantOfShape ---------------------------------------------------------------------- */

static int cos_value(sf_kctx *k, int *dtype, const void **val) {
  static const float zero = 0;
  const sf_attr *a = sf__attr(k->node, "value");
  *dtype = SF_F32;
  *val = &zero;
  if (!a) return 0;
  if (a->type != SF_ATTR_TENSOR || !a->tensor)
    return sf__op_err(k, SF_EINVAL, "attribute 'value' is not a tensor");
  if (dm_numel(a->tensor) != 1 || !a->tensor->data)
    return sf__op_err(k, SF_EINVAL, "attribute 'value' must hold exactly one element");
  if (a->tensor->dtype == SF_STRING || sf_dtype_size(a->tensor->dtype) == 0)
    return sf__op_err(k, SF_EUNSUPPORTED, "value of dtype %s is not supported",
                      sf_dtype_name(a->tensor->dtype));
  *dtype = a->tensor->dtype;
  *val = a->tensor->data;
  return 0;
}

static int cos_infer(sf_kctx *k) {
  int64_t s[SF_MAX_RANK];
  int n, dt, rc;
  const void *v;
  sf_gtensor *in = sf__in(k->g, k->node, 0);
  if (in && in->kind == SF_TK_CONST && in->t.data && dm_numel(&in->t) > SF_MAX_RANK)
    return sf__op_err(k, SF_EUNSUPPORTED, "output rank %lld exceeds %d",
                      (long long)dm_numel(&in->t), SF_MAX_RANK);
  if ((rc = dm_const_ints(k, 0, "input", s, SF_MAX_RANK, &n)) < 0) return rc;
  if ((rc = cos_value(k, &dt, &v)) < 0) return rc;
  return dm_set_out(k, 0, dt, n, s);
}

static int cos_run(sf_kctx *k) {
  int dt, rc;
  const void *v;
  if ((rc = cos_value(k, &dt, &v)) < 0) return rc;
  sf_gtensor *out = sf__out(k->g, k->node, 0);
  int64_t n = dm_numel(&out->t);
  size_t es = sf_dtype_size(dt);
  char *o = out->t.data;
  if (n == 0) return 0;
  memcpy(o, v, es);
  /* Doubling fill: O(log n) memcpys. */
  for (int64_t done = 1; done < n;) {
    int64_t c = done < n - done ? done : n - done;
    memcpy(o + done * (int64_t)es, o, (size_t)c * es);
    done += c;
  }
  return 0;
}

/* ---- definitions -------------------------------------------------------------------------- */

#define ALIASF (SF_OPF_ALIAS)
const sf_op_def sf__op_Reshape = {"Reshape", ALIASF, reshape_infer, NULL, alias_run, NULL, NULL, NULL};
const sf_op_def sf__op_Flatten = {"Flatten", ALIASF, flatten_infer, NULL, alias_run, NULL, NULL, NULL};
const sf_op_def sf__op_Squeeze = {"Squeeze", ALIASF, squeeze_infer, NULL, alias_run, NULL, NULL, NULL};
const sf_op_def sf__op_Unsqueeze = {"Unsqueeze", ALIASF, unsqueeze_infer, NULL, alias_run, NULL, NULL, NULL};
const sf_op_def sf__op_Identity = {"Identity", ALIASF | SF_OPF_AGNOSTIC, identity_infer, NULL,
                                   alias_run, NULL, NULL, NULL};
const sf_op_def sf__op_Dropout = {"Dropout", ALIASF | SF_OPF_AGNOSTIC, dropout_infer, NULL,
                                  dropout_run, NULL, NULL, NULL};
const sf_op_def sf__op_Shape = {"Shape", 0, shape_infer, NULL, shape_run, NULL, NULL, NULL};
const sf_op_def sf__op_Cast = {"Cast", 0, cast_infer, NULL, cast_run, NULL, NULL, NULL};
const sf_op_def sf__op_Constant = {"Constant", 0, constant_infer, NULL, constant_run, NULL, NULL, NULL};
const sf_op_def sf__op_ConstantOfShape = {"ConstantOfShape", 0, cos_infer, NULL, cos_run, NULL,
                                          NULL, NULL};
