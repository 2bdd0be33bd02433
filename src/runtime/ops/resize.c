/* Resize (opsets 10..19) and Upsample (opsets 7..9).
 *
 * Interpolation is separable: prepare() builds, for every axis and output index, a few taps
 * (input index, weight) following the ONNX reference (onnx/reference/ops/op_resize.py):
 * nearest = 1 tap, linear = 2, cubic = 4, with the coordinate transformation of the node. The
 * output is the tensor product of the per-axis taps; with tf_crop_and_resize an output whose
 * coordinate falls outside the input on any axis is extrapolation_value.
 *
 * run() paths (no allocation): nearest = gather of any fixed-size dtype through the index
 * tables; float32 linear/cubic on the two innermost axes (the usual NCHW case) = per-plane
 * 2-D kernel; anything else = generic N-D loop in double (float32/float64). Work is split
 * over output rows on the thread pool.
 *
 * Resize-10 and Upsample use the asymmetric transformation and their own nearest rounding
 * (floor when upsampling, ceil when downsampling), as ONNX Runtime does for these opsets. */
#include <math.h>
#include <string.h>

#include "runtime/ops/datamove.h"

enum { M_NEAREST, M_LINEAR, M_CUBIC };
enum { C_HALF, C_HALF_SYM, C_PYTORCH, C_ALIGN, C_ASYM, C_TF_NN, C_TF_CROP };
enum { N_PFLOOR, N_PCEIL, N_FLOOR, N_CEIL, N_SIMPLE };

typedef struct {
  int mode, ctm, nearest, exclude_outside, rank;
  double cubic_a, extrap;
  int64_t in[SF_MAX_RANK], out[SF_MAX_RANK];
  double scale[SF_MAX_RANK], roi0[SF_MAX_RANK], roi1[SF_MAX_RANK];
} rparams;

static int pick(sf_kctx *k, const char *attr, const char *val, const char *const *names, int n,
                int *out) {
  for (int i = 0; i < n; i++)
    if (!strcmp(val, names[i])) {
      *out = i;
      return 0;
    }
  return sf__op_err(k, SF_EUNSUPPORTED, "%s '%s' is not supported", attr, val);
}

/* Float values of constant input i (any float dtype) into v[0..max); *n = count. */
static int const_floats(sf_kctx *k, int i, const char *what, double *v, int max, int *n) {
  sf_gtensor *t = sf__in(k->g, k->node, i);
  if (!t) return sf__op_err(k, SF_EINVAL, "input '%s' is missing", what);
  if (t->kind != SF_TK_CONST || (!t->t.data && dm_numel(&t->t) > 0))
    return sf__op_err(k, SF_EUNSUPPORTED,
                      "input '%s' must be a constant (dynamic shapes are not supported)", what);
  if (t->t.dtype != SF_F32 && t->t.dtype != SF_F64 && t->t.dtype != SF_F16)
    return sf__op_err(k, SF_EUNSUPPORTED, "input '%s' has dtype %s, expected a float type", what,
                      sf_dtype_name(t->t.dtype));
  int64_t c = dm_numel(&t->t);
  if (c > max) return sf__op_err(k, SF_ESHAPE, "input '%s' has %lld values, at most %d", what,
                                 (long long)c, max);
  for (int64_t j = 0; j < c; j++)
    v[j] = t->t.dtype == SF_F16 ? dm_half_to_float(((const uint16_t *)t->t.data)[j])
                                : sf__num_at(&t->t, j);
  *n = (int)c;
  return 0;
}

/* Present (non-empty) optional input. */
static int has_input(sf_kctx *k, int i) {
  sf_gtensor *t = sf__in(k->g, k->node, i);
  return t && !(t->shape_known && dm_numel(&t->t) == 0);
}

static int resize_params(sf_kctx *k, const sf_tensor *x, rparams *p) {
  const sf_node *n = k->node;
  int r = x->rank, rc, legacy = !strcmp(n->op_type, "Upsample") || dm_opset(k) < 11;
  static const char *const modes[] = {"nearest", "linear", "cubic"};
  static const char *const ctms[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                                     "align_corners", "asymmetric", "tf_half_pixel_for_nn",
                                     "tf_crop_and_resize"};
  static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
  memset(p, 0, sizeof *p);
  if (r < 1) return sf__op_err(k, SF_ESHAPE, "input must have rank >= 1");
  p->rank = r;
  const char *m = sf__attr_string(n, "mode", "nearest");
  if (legacy && !strcmp(m, "bilinear")) m = "linear";
  if ((rc = pick(k, "mode", m, modes, legacy ? 2 : 3, &p->mode)) < 0) return rc;
  for (int d = 0; d < r; d++) {
    p->in[d] = x->dims[d];
    p->roi0[d] = 0;
    p->roi1[d] = 1;
  }
  double sc[SF_MAX_RANK];
  int nsc = 0;
  if (legacy) {
    p->ctm = C_ASYM;
    p->nearest = N_SIMPLE;
    const float *fa;
    int nf = sf__attr_floats(n, "scales", &fa);
    if (nf >= 0) { /* Upsample-7 */
      if (nf > SF_MAX_RANK) return sf__op_err(k, SF_EINVAL, "too many scales");
      for (int i = 0; i < nf; i++) sc[i] = fa[i];
      nsc = nf;
    } else if ((rc = const_floats(k, 1, "scales", sc, SF_MAX_RANK, &nsc)) < 0) {
      return rc;
    }
    if (nsc != r)
      return sf__op_err(k, SF_EINVAL, "scales has %d values for rank %d", nsc, r);
    for (int d = 0; d < r; d++) {
      if (!(sc[d] > 0) || sc[d] > SF_MAX_DIM)
        return sf__op_err(k, SF_EINVAL, "scale %g on axis %d is not positive", sc[d], d);
      p->scale[d] = sc[d];
      p->out[d] = (int64_t)floor((double)p->in[d] * sc[d]);
    }
    return 0;
  }
  if ((rc = pick(k, "coordinate_transformation_mode",
                 sf__attr_string(n, "coordinate_transformation_mode", "half_pixel"), ctms, 7,
                 &p->ctm)) < 0)
    return rc;
  if ((rc = pick(k, "nearest_mode", sf__attr_string(n, "nearest_mode", "round_prefer_floor"),
                 nms, 4, &p->nearest)) < 0)
    return rc;
  p->cubic_a = sf__attr_float(n, "cubic_coeff_a", -0.75f);
  p->exclude_outside = sf__attr_int(n, "exclude_outside", 0) != 0;
  p->extrap = sf__attr_float(n, "extrapolation_value", 0);
  if (sf__attr_int(n, "antialias", 0))
    return sf__op_err(k, SF_EUNSUPPORTED, "antialias=1 is not supported");
  /* Opset 18 axes: scales / sizes / roi cover only these axes. */
  int ax[SF_MAX_RANK], nax = r;
  const int64_t *aa;
  int na = sf__attr_ints(n, "axes", &aa);
  if (na >= 0) {
    if (na > r) return sf__op_err(k, SF_EINVAL, "axes has %d values for rank %d", na, r);
    char seen[SF_MAX_RANK] = {0};
    for (int i = 0; i < na; i++) {
      ax[i] = sf__norm_axis(aa[i], r);
      if (ax[i] < 0 || seen[ax[i]])
        return sf__op_err(k, SF_EINVAL, "bad or repeated axis %lld", (long long)aa[i]);
      seen[ax[i]] = 1;
    }
    nax = na;
  } else {
    for (int i = 0; i < r; i++) ax[i] = i;
  }
  for (int d = 0; d < r; d++) {
    p->scale[d] = 1;
    p->out[d] = p->in[d];
  }
  if (p->ctm == C_TF_CROP) {
    double roi[2 * SF_MAX_RANK];
    int nr = 0;
    if (!has_input(k, 1))
      return sf__op_err(k, SF_EINVAL, "roi is required with tf_crop_and_resize");
    if ((rc = const_floats(k, 1, "roi", roi, 2 * SF_MAX_RANK, &nr)) < 0) return rc;
    if (nr != 2 * nax)
      return sf__op_err(k, SF_EINVAL, "roi has %d values, expected %d", nr, 2 * nax);
    for (int i = 0; i < nax; i++) {
      p->roi0[ax[i]] = roi[i];
      p->roi1[ax[i]] = roi[nax + i];
    }
  }
  if (has_input(k, 3)) {
    int64_t sz[SF_MAX_RANK];
    int ns = 0;
    if (has_input(k, 2) && dm_numel(&sf__in(k->g, n, 2)->t) > 0)
      return sf__op_err(k, SF_EINVAL, "only one of scales and sizes may be given");
    if ((rc = dm_const_ints(k, 3, "sizes", sz, SF_MAX_RANK, &ns)) < 0) return rc;
    if (ns != nax) return sf__op_err(k, SF_EINVAL, "sizes has %d values, expected %d", ns, nax);
    const char *pol = sf__attr_string(n, "keep_aspect_ratio_policy", "stretch");
    int keep = !strcmp(pol, "not_larger") ? 1 : !strcmp(pol, "not_smaller") ? 2 : 0;
    if (!keep && strcmp(pol, "stretch"))
      return sf__op_err(k, SF_EUNSUPPORTED, "keep_aspect_ratio_policy '%s'", pol);
    double ks = keep == 1 ? INFINITY : 0;
    for (int i = 0; i < nax; i++) {
      int d = ax[i];
      if (sz[i] < 0 || sz[i] > SF_MAX_DIM)
        return sf__op_err(k, SF_EINVAL, "size %lld on axis %d is out of range", (long long)sz[i], d);
      if (p->in[d] == 0) return sf__op_err(k, SF_ESHAPE, "cannot resize empty axis %d", d);
      p->out[d] = sz[i];
      p->scale[d] = (double)sz[i] / (double)p->in[d];
      if (keep == 1 && p->scale[d] < ks) ks = p->scale[d];
      if (keep == 2 && p->scale[d] > ks) ks = p->scale[d];
    }
    if (keep)
      for (int i = 0; i < nax; i++) {
        int d = ax[i];
        p->scale[d] = ks;
        p->out[d] = (int64_t)(ks * (double)p->in[d] + 0.5);
      }
    for (int d = 0; d < r; d++)
      if (!(p->scale[d] > 0) && p->out[d] != 0)
        return sf__op_err(k, SF_EINVAL, "bad scale on axis %d", d);
  } else {
    if (!has_input(k, 2)) return sf__op_err(k, SF_EINVAL, "one of scales and sizes is required");
    if ((rc = const_floats(k, 2, "scales", sc, SF_MAX_RANK, &nsc)) < 0) return rc;
    if (nsc != nax) return sf__op_err(k, SF_EINVAL, "scales has %d values, expected %d", nsc, nax);
    for (int i = 0; i < nax; i++) {
      int d = ax[i];
      if (!(sc[i] > 0) || sc[i] > SF_MAX_DIM)
        return sf__op_err(k, SF_EINVAL, "scale %g on axis %d is not positive", sc[i], d);
      p->scale[d] = sc[i];
      p->out[d] = (int64_t)floor((double)p->in[d] * sc[i]);
    }
  }
  return 0;
}

static int resize_infer(sf_kctx *k) {
  sf_gtensor *x = sf__in(k->g, k->node, 0);
  if (!x) return sf__op_err(k, SF_EINVAL, "input 0 is missing");
  size_t es;
  int rc = dm_esize(k, &x->t, &es);
  if (rc < 0) return rc;
  rparams p;
  if ((rc = resize_params(k, &x->t, &p)) < 0) return rc;
  if (p.mode != M_NEAREST && x->t.dtype != SF_F32 && x->t.dtype != SF_F64)
    return sf__op_err(k, SF_EUNSUPPORTED, "%s interpolation of %s is not supported",
                      p.mode == M_LINEAR ? "linear" : "cubic", sf_dtype_name(x->t.dtype));
  return dm_set_out(k, 0, x->t.dtype, p.rank, p.out);
}

/* ---- tap tables ------------------------------------------------------------------------- */

typedef struct {
  rparams p;
  int T;                        /* taps per axis and output index */
  int ident[SF_MAX_RANK];       /* axis passes through unchanged */
  int64_t *idx[SF_MAX_RANK];    /* [out][T] input index along the axis */
  float *w[SF_MAX_RANK];        /* [out][T] weights */
  double *wd[SF_MAX_RANK];      /* [out][T] weights in double */
  unsigned char *outside[SF_MAX_RANK]; /* [out] coordinate outside the input (tf_crop) */
  int any_outside;
  int64_t istride[SF_MAX_RANK]; /* element strides of the input */
  void *mem;
} rstate;

static double coord(const rparams *p, int d, int64_t o, int *outside) {
  double s = p->scale[d], x = (double)o, in = (double)p->in[d], olen = s * in;
  *outside = 0;
  switch (p->ctm) {
    case C_HALF: return (x + 0.5) / s - 0.5;
    case C_HALF_SYM: {
      double adj = (double)p->out[d] / olen, off = in / 2 * (1 - adj);
      return off + (x + 0.5) / s - 0.5;
    }
    case C_PYTORCH: return p->out[d] > 1 ? (x + 0.5) / s - 0.5 : 0;
    case C_ALIGN: return olen == 1 ? 0 : x * (in - 1) / (olen - 1);
    case C_ASYM: return x / s;
    case C_TF_NN: return (x + 0.5) / s;
    default: { /* tf_crop_and_resize */
      double a = p->roi0[d], b = p->roi1[d], v;
      if (olen == 1) v = (b - a) * (in - 1) / 2;
      else v = x * (b - a) * (in - 1) / (olen - 1);
      v += a * (in - 1);
      *outside = v < 0 || v > in - 1;
      return v;
    }
  }
}

static void cubic_coeffs(double r, double A, double *c) {
  double t = r + 1, u = 1 - r, v = 2 - r;
  c[0] = ((A * t - 5 * A) * t + 8 * A) * t - 4 * A;
  c[1] = ((A + 2) * r - (A + 3)) * r * r + 1;
  c[2] = ((A + 2) * u - (A + 3)) * u * u + 1;
  c[3] = ((A * v - 5 * A) * v + 8 * A) * v - 4 * A;
}

static inline int64_t clampi(int64_t i, int64_t n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

static void axis_taps(const rparams *p, int d, int T, int64_t o, int64_t *idx, double *w,
                      unsigned char *out) {
  int outside;
  double x = coord(p, d, o, &outside);
  int64_t n = p->in[d];
  *out = (unsigned char)outside;
  for (int t = 0; t < T; t++) w[t] = 0;
  if (outside || n == 0) {
    for (int t = 0; t < T; t++) idx[t] = 0;
    if (n == 0) *out = 1;
    return;
  }
  double fl = floor(x), r = x - fl;
  int64_t i0 = (int64_t)fl;
  if (p->mode == M_NEAREST || r == 0) {
    int64_t i = i0;
    if (r != 0) {
      switch (p->nearest) {
        case N_PFLOOR: i = r > 0.5 ? i0 + 1 : i0; break;
        case N_PCEIL: i = r >= 0.5 ? i0 + 1 : i0; break;
        case N_FLOOR: i = i0; break;
        case N_CEIL: i = i0 + 1; break;
        default: i = p->scale[d] < 1 ? i0 + 1 : i0; break; /* legacy: ceil when downsampling */
      }
    }
    i = clampi(i, n);
    for (int t = 0; t < T; t++) idx[t] = i;
    w[0] = 1;
    return;
  }
  if (p->mode == M_LINEAR) {
    idx[0] = clampi(i0, n);
    idx[1] = clampi(i0 + 1, n);
    w[0] = 1 - r;
    w[1] = r;
    return;
  }
  cubic_coeffs(r, p->cubic_a, w);
  double sum = 0;
  for (int t = 0; t < 4; t++) {
    int64_t i = i0 - 1 + t;
    if (p->exclude_outside && (i < 0 || i >= n)) w[t] = 0;
    sum += w[t];
    idx[t] = clampi(i, n);
  }
  if (p->exclude_outside && sum != 0)
    for (int t = 0; t < 4; t++) w[t] /= sum;
}

static void resize_release(sf_node *n) {
  rstate *s = n->state;
  if (s) free(s->mem);
  free(s);
  n->state = NULL;
}

static int resize_prepare(sf_kctx *k) {
  sf_gtensor *x = sf__in(k->g, k->node, 0);
  resize_release(k->node);
  rstate *s = sf__calloc(1, sizeof *s);
  if (!s) return sf__op_err(k, SF_ENOMEM, "out of memory");
  k->node->state = s;
  int rc = resize_params(k, &x->t, &s->p);
  if (rc < 0) return rc;
  const rparams *p = &s->p;
  int r = p->rank, T = p->mode == M_NEAREST ? 1 : p->mode == M_LINEAR ? 2 : 4;
  s->T = T;
  int64_t per = T * (int64_t)(sizeof(int64_t) + sizeof(float) + sizeof(double)) + 1, bytes = 0;
  for (int d = 0; d < r; d++) {
    int64_t b;
    if (sf__mul_ok(p->out[d], per, SF_MAX_TENSOR_BYTES, &b) < 0 ||
        (bytes += b + 64) > SF_MAX_TENSOR_BYTES)
      return sf__op_err(k, SF_ELIMIT, "interpolation tables too large");
  }
  char *m = sf__malloc((size_t)bytes);
  if (!m) return sf__op_err(k, SF_ENOMEM, "out of memory");
  s->mem = m;
  int64_t acc = 1;
  for (int d = r - 1; d >= 0; d--) {
    s->istride[d] = acc;
    acc *= p->in[d];
  }
  for (int d = 0; d < r; d++) {
    int64_t no = p->out[d];
    s->idx[d] = (int64_t *)m;
    m += no * T * (int64_t)sizeof(int64_t);
    s->wd[d] = (double *)m;
    m += no * T * (int64_t)sizeof(double);
    s->w[d] = (float *)m;
    m += no * T * (int64_t)sizeof(float);
    s->outside[d] = (unsigned char *)m;
    m += no;
    m = (char *)(((uintptr_t)m + 7) & ~(uintptr_t)7); /* next axis 8-byte aligned */
    int ident = no == p->in[d];
    for (int64_t o = 0; o < no; o++) {
      axis_taps(p, d, T, o, s->idx[d] + o * T, s->wd[d] + o * T, s->outside[d] + o);
      for (int t = 0; t < T; t++) s->w[d][o * T + t] = (float)s->wd[d][o * T + t];
      s->any_outside |= s->outside[d][o];
      ident &= !s->outside[d][o] && s->idx[d][o * T] == o && s->wd[d][o * T] == 1;
      for (int t = 1; t < T; t++) ident &= s->wd[d][o * T + t] == 0;
    }
    s->ident[d] = ident;
  }
  return 0;
}

/* ---- run ---------------------------------------------------------------------------------- */

typedef struct {
  const rstate *s;
  const char *in;
  char *out;
  size_t es;
  int dtype;
  int64_t rows, chunk; /* output rows (all dims but the last) and rows per task */
} rctx;

static void rows_begin(const rparams *p, int64_t row, int64_t *idx) {
  for (int d = p->rank - 2; d >= 0; d--) {
    idx[d] = row % p->out[d];
    row /= p->out[d];
  }
}

static void rows_next(const rparams *p, int64_t *idx) {
  for (int d = p->rank - 2; d >= 0; d--) {
    if (++idx[d] < p->out[d]) return;
    idx[d] = 0;
  }
}

/* Nearest: every output row is a gather through the last axis' index table. */
static void nearest_task(void *vctx, size_t ti) {
  const rctx *c = vctx;
  const rstate *s = c->s;
  const rparams *p = &s->p;
  int L = p->rank - 1;
  int64_t r0 = (int64_t)ti * c->chunk, r1 = r0 + c->chunk < c->rows ? r0 + c->chunk : c->rows;
  int64_t idx[SF_MAX_RANK] = {0}, W = p->out[L];
  const int64_t *ix = s->idx[L];
  unsigned char ev[8];
  dm_from_double(c->dtype, p->extrap, ev);
  rows_begin(p, r0, idx);
  size_t es = c->es;
  for (int64_t row = r0; row < r1; row++, rows_next(p, idx)) {
    char *dst = c->out + row * W * (int64_t)es;
    int64_t base = 0;
    int outside = 0;
    for (int d = 0; d < L; d++) {
      base += s->idx[d][idx[d]] * s->istride[d];
      outside |= s->outside[d][idx[d]];
    }
    const char *src = c->in + base * (int64_t)es;
    if (es == 4 && !s->any_outside) {
      const uint32_t *a = (const uint32_t *)src;
      uint32_t *b = (uint32_t *)dst;
      for (int64_t o = 0; o < W; o++) b[o] = a[ix[o]];
      continue;
    }
    for (int64_t o = 0; o < W; o++) {
      if (outside || s->outside[L][o]) memcpy(dst + o * (int64_t)es, ev, es);
      else memcpy(dst + o * (int64_t)es, src + ix[o] * (int64_t)es, es);
    }
  }
}

/* float32, only the two innermost axes interpolated: out[y][x] = sum wy wx in[iy][ix]. */
static void plane_task(void *vctx, size_t ti) {
  const rctx *c = vctx;
  const rstate *s = c->s;
  const rparams *p = &s->p;
  int r = p->rank, L = r - 1, Y = r - 2, T = s->T;
  int64_t r0 = (int64_t)ti * c->chunk, r1 = r0 + c->chunk < c->rows ? r0 + c->chunk : c->rows;
  int64_t W = p->out[L], IW = p->in[L];
  int64_t OH = r >= 2 ? p->out[Y] : 1, IH = r >= 2 ? p->in[Y] : 1;
  const float *wx = s->w[L];
  const int64_t *ix = s->idx[L];
  float ev = (float)p->extrap;
  for (int64_t row = r0; row < r1; row++) {
    int64_t plane = row / OH, oy = row % OH;
    const float *src = (const float *)c->in + plane * IH * IW;
    float *dst = (float *)c->out + row * W;
    static const int64_t zero_idx[4] = {0, 0, 0, 0};
    static const float one_w[4] = {1, 0, 0, 0};
    const int64_t *iy = r >= 2 ? s->idx[Y] + oy * T : zero_idx;
    const float *wy = r >= 2 ? s->w[Y] + oy * T : one_w;
    int yout = r >= 2 && s->outside[Y][oy];
    if (yout) {
      for (int64_t o = 0; o < W; o++) dst[o] = ev;
      continue;
    }
    if (T == 2) {
      const float *a = src + iy[0] * IW, *b = src + iy[1] * IW;
      float w0 = wy[0], w1 = wy[1];
      for (int64_t o = 0; o < W; o++) {
        int64_t x0 = ix[2 * o], x1 = ix[2 * o + 1];
        float u0 = wx[2 * o], u1 = wx[2 * o + 1];
        dst[o] = w0 * (u0 * a[x0] + u1 * a[x1]) + w1 * (u0 * b[x0] + u1 * b[x1]);
      }
    } else {
      for (int64_t o = 0; o < W; o++) {
        float acc = 0;
        for (int ty = 0; ty < T; ty++) {
          const float *a = src + iy[ty] * IW;
          float racc = 0;
          for (int tx = 0; tx < T; tx++) racc += wx[o * T + tx] * a[ix[o * T + tx]];
          acc += wy[ty] * racc;
        }
        dst[o] = acc;
      }
    }
    if (s->any_outside)
      for (int64_t o = 0; o < W; o++)
        if (s->outside[L][o]) dst[o] = ev;
  }
}

/* Generic N-D interpolation in double (float32 / float64). */
static void generic_task(void *vctx, size_t ti) {
  const rctx *c = vctx;
  const rstate *s = c->s;
  const rparams *p = &s->p;
  int r = p->rank, L = r - 1, T = s->T;
  int64_t r0 = (int64_t)ti * c->chunk, r1 = r0 + c->chunk < c->rows ? r0 + c->chunk : c->rows;
  int64_t idx[SF_MAX_RANK] = {0}, W = p->out[L];
  int act[SF_MAX_RANK], na = 0;
  for (int d = 0; d < r; d++)
    if (!s->ident[d]) act[na++] = d;
  int64_t ncomb = 1;
  for (int i = 0; i < na; i++) ncomb *= T;
  int f32 = c->dtype == SF_F32;
  rows_begin(p, r0, idx);
  for (int64_t row = r0; row < r1; row++, rows_next(p, idx)) {
    for (int64_t o = 0; o < W; o++) {
      idx[L] = o;
      int outside = 0;
      int64_t base = 0;
      for (int d = 0; d < r; d++) {
        outside |= s->outside[d][idx[d]];
        if (s->ident[d]) base += idx[d] * s->istride[d];
      }
      double acc = 0;
      if (outside) {
        acc = p->extrap;
      } else {
        for (int64_t cb = 0; cb < ncomb; cb++) {
          int64_t q = cb, off = base;
          double w = 1;
          for (int i = 0; i < na && w != 0; i++) {
            int d = act[i], t = (int)(q % T);
            q /= T;
            w *= s->wd[d][idx[d] * T + t];
            off += s->idx[d][idx[d] * T + t] * s->istride[d];
          }
          if (w == 0) continue;
          acc += w * (f32 ? (double)((const float *)c->in)[off] : ((const double *)c->in)[off]);
        }
      }
      int64_t oi = row * W + o;
      if (f32) ((float *)c->out)[oi] = (float)acc;
      else ((double *)c->out)[oi] = acc;
    }
  }
}

static int resize_run(sf_kctx *k) {
  rstate *s = k->node->state;
  if (!s) return sf__op_err(k, SF_EINTERNAL, "not prepared");
  sf_gtensor *x = sf__in(k->g, k->node, 0), *y = sf__out(k->g, k->node, 0);
  const rparams *p = &s->p;
  int r = p->rank;
  int64_t total = dm_numel(&y->t);
  if (total == 0) return 0;
  rctx c = {s, x->t.data, y->t.data, sf_dtype_size(x->t.dtype), x->t.dtype, 0, 0};
  c.rows = total / p->out[r - 1];
  /* About 16 KiB of output per task. */
  int64_t rowbytes = p->out[r - 1] * (int64_t)c.es;
  c.chunk = (16384 + rowbytes - 1) / (rowbytes ? rowbytes : 1);
  if (c.chunk < 1) c.chunk = 1;
  size_t ntask = (size_t)((c.rows + c.chunk - 1) / c.chunk);
  sf_task_fn fn = generic_task;
  if (p->mode == M_NEAREST) {
    fn = nearest_task;
  } else if (x->t.dtype == SF_F32) {
    int plane_ok = 1;
    for (int d = 0; d < r - 2; d++) plane_ok &= s->ident[d];
    if (plane_ok) fn = plane_task;
  }
  sf__parallel_for(total * (int64_t)c.es < 64 * 1024 ? NULL : k->pool, ntask, fn, &c);
  return 0;
}

static int64_t resize_flops(sf_kctx *k) {
  sf_gtensor *y = sf__out(k->g, k->node, 0);
  const char *m = sf__attr_string(k->node, "mode", "nearest");
  int64_t n = dm_numel(&y->t);
  if (!strcmp(m, "linear") || !strcmp(m, "bilinear")) return 4 * n;
  if (!strcmp(m, "cubic")) return 16 * n;
  return 0;
}

const sf_op_def sf__op_Resize = {"Resize", 0, resize_infer, resize_prepare, resize_run,
                                 resize_release, resize_flops, NULL};
const sf_op_def sf__op_Upsample = {"Upsample", 0, resize_infer, resize_prepare, resize_run,
                                   resize_release, resize_flops, NULL};
