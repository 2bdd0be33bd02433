/* MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (float32).
 *
 * Paths:
 *   - channels-last (rank 3/4, wants_nhwc says yes when XNNPACK reproduces ONNX exactly):
 *     XNNPACK max / average pooling (ceil_mode expressed as extra end padding), global average
 *     pooling over the flattened spatial axis; GlobalMaxPool by a channel-vectorised C loop.
 *   - otherwise (3-D, count_include_pad with padding, dilated max pooling with padding, 1x1
 *     windows, stride > window, windows without valid elements, XNNPACK refusing): a direct C
 *     loop over (n, c) planes with strided addressing, so it also serves channels-last tensors.
 *
 * XNNPACK max pooling reads padded positions as the nearest edge pixel (not -inf), which is only
 * equivalent when every window containing padding also contains that edge pixel: undilated
 * windows that each hold at least one valid element. Its average pooling divides by the number
 * of valid elements, which is count_include_pad=0 (or no padding at all).
 * MaxPool's optional Indices output is not supported.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include <xnnpack.h>

#include "runtime/op.h"

#define PL_MAXSP 3

typedef struct pool_p {
  int nsp, is_max, include_pad;
  int64_t N, C;
  int64_t in[PL_MAXSP], out[PL_MAXSP], k[PL_MAXSP], s[PL_MAXSP], d[PL_MAXSP];
  int64_t pb[PL_MAXSP], pe[PL_MAXSP]; /* explicit / auto pads */
  int64_t extra[PL_MAXSP];            /* end padding implied by ceil_mode */
} pool_p;

static int check_input(sf_kctx *k, int max_rank) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  sf_gtensor *x = sf__in(g, n, 0);
  if (!x) return sf__op_err(k, SF_EFORMAT, "needs input X");
  if (x->t.dtype != SF_F32)
    return sf__op_err(k, SF_EUNSUPPORTED, "input dtype %s is not supported (float32 only)",
                      sf_dtype_name(x->t.dtype));
  if (x->t.rank < 3 || x->t.rank > max_rank)
    return sf__op_err(k, SF_EUNSUPPORTED, "input rank %d (supported: 3 to %d)", x->t.rank,
                      max_rank);
  if (n->n_out < 1 || !sf__out(g, n, 0)) return sf__op_err(k, SF_EFORMAT, "needs an output");
  for (int i = 1; i < n->n_out; i++)
    if (sf__out(g, n, i))
      return sf__op_err(k, SF_EUNSUPPORTED, "output %d (Indices) is not supported", i);
  return 0;
}

static void logical_dims(const sf_tensor *t, int64_t *d) {
  int r = t->rank;
  if (t->layout == SF_LAYOUT_NHWC) {
    d[0] = t->dims[0];
    d[1] = t->dims[r - 1];
    for (int i = 1; i < r - 1; i++) d[i + 1] = t->dims[i];
  } else {
    for (int i = 0; i < r; i++) d[i] = t->dims[i];
  }
}

static int ints_attr(sf_kctx *k, const char *name, int n, int64_t def, int64_t lo, int64_t hi,
                     int64_t *v) {
  const int64_t *a;
  int c = sf__attr_ints(k->node, name, &a);
  if (c < 0) {
    for (int i = 0; i < n; i++) v[i] = def;
    return 0;
  }
  if (c != n)
    return sf__op_err(k, SF_EFORMAT, "attribute %s has %d values, expected %d", name, c, n);
  for (int i = 0; i < n; i++) {
    if (a[i] < lo || a[i] > hi)
      return sf__op_err(k, SF_EFORMAT, "attribute %s[%d] = %lld is out of range", name, i,
                        (long long)a[i]);
    v[i] = a[i];
  }
  return 0;
}

static int pool_params(sf_kctx *k, int is_max, pool_p *p) {
  int rc = check_input(k, 2 + PL_MAXSP);
  if (rc) return rc;
  sf_node *n = k->node;
  const sf_tensor *x = &sf__in(k->g, n, 0)->t;
  memset(p, 0, sizeof *p);
  int64_t xd[SF_MAX_RANK];
  logical_dims(x, xd);
  int ns = x->rank - 2;
  p->nsp = ns;
  p->is_max = is_max;
  p->N = xd[0];
  p->C = xd[1];
  for (int i = 0; i < ns; i++) p->in[i] = xd[2 + i];
  if (sf__attr_ints(n, "kernel_shape", &(const int64_t *){0}) < 0)
    return sf__op_err(k, SF_EFORMAT, "attribute kernel_shape is required");
  if ((rc = ints_attr(k, "kernel_shape", ns, 1, 1, SF_MAX_DIM, p->k))) return rc;
  if ((rc = ints_attr(k, "strides", ns, 1, 1, SF_MAX_DIM, p->s))) return rc;
  if ((rc = ints_attr(k, "dilations", ns, 1, 1, SF_MAX_DIM, p->d))) return rc;
  int64_t pads[2 * PL_MAXSP];
  if ((rc = ints_attr(k, "pads", 2 * ns, 0, 0, SF_MAX_DIM, pads))) return rc;
  int ceil_mode = sf__attr_int(n, "ceil_mode", 0) != 0;
  p->include_pad = !is_max && sf__attr_int(n, "count_include_pad", 0) != 0;
  const char *ap = sf__attr_string(n, "auto_pad", "NOTSET");
  int same = !strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER");
  int valid = !strcmp(ap, "VALID");
  if (!same && !valid && strcmp(ap, "NOTSET") && ap[0])
    return sf__op_err(k, SF_EUNSUPPORTED, "auto_pad '%.64s' is not supported", ap);
  for (int i = 0; i < ns; i++) {
    int64_t dk = (p->k[i] - 1) * p->d[i] + 1, in = p->in[i];
    if (same) {
      p->out[i] = (in + p->s[i] - 1) / p->s[i];
      int64_t tot = (p->out[i] - 1) * p->s[i] + dk - in;
      if (tot < 0) tot = 0;
      p->pb[i] = !strcmp(ap, "SAME_UPPER") ? tot / 2 : tot - tot / 2;
      p->pe[i] = tot - p->pb[i];
    } else {
      if (!valid) {
        p->pb[i] = pads[i];
        p->pe[i] = pads[ns + i];
      }
      int64_t span = in + p->pb[i] + p->pe[i] - dk;
      if (span < 0)
        return sf__op_err(k, SF_ESHAPE, "window (%lld dilated) larger than padded input %lld",
                          (long long)dk, (long long)(in + p->pb[i] + p->pe[i]));
      p->out[i] = (ceil_mode && !valid ? (span + p->s[i] - 1) / p->s[i] : span / p->s[i]) + 1;
    }
    int64_t ex = (p->out[i] - 1) * p->s[i] + dk - (in + p->pb[i] + p->pe[i]);
    p->extra[i] = ex > 0 ? ex : 0;
  }
  return 0;
}

/* XNNPACK reproduces ONNX for these parameters (see the file comment). */
static int xnn_able(const pool_p *p) {
  if (p->nsp > 2) return 0;
  int64_t ksz = 1;
  for (int i = 0; i < p->nsp; i++) {
    int64_t dk = (p->k[i] - 1) * p->d[i] + 1;
    int64_t pad = p->pb[i] + p->pe[i] + p->extra[i];
    ksz *= p->k[i];
    if (p->k[i] > UINT32_MAX || p->s[i] > UINT32_MAX || p->d[i] > UINT32_MAX ||
        p->pb[i] > UINT32_MAX || p->pe[i] + p->extra[i] > UINT32_MAX)
      return 0;
    if (p->s[i] > p->k[i]) return 0;
    if (p->pb[i] >= dk || (p->out[i] - 1) * p->s[i] - p->pb[i] >= p->in[i]) return 0;
    if (p->is_max && p->d[i] > 1 && pad > 0) return 0;
    if (!p->is_max && p->d[i] > 1) return 0;
    if (!p->is_max && p->include_pad && p->pb[i] + p->pe[i] > 0) return 0;
  }
  return ksz > 1;
}

static int pool_infer_common(sf_kctx *k, int is_max) {
  pool_p p;
  int rc = pool_params(k, is_max, &p);
  if (rc) return rc;
  int64_t od[2 + PL_MAXSP] = {p.N, p.C};
  for (int i = 0; i < p.nsp; i++) od[2 + i] = p.out[i];
  sf__tensor_set_shape(sf__out(k->g, k->node, 0), SF_F32, 2 + p.nsp, od);
  return 0;
}

static int maxpool_infer(sf_kctx *k) { return pool_infer_common(k, 1); }
static int avgpool_infer(sf_kctx *k) { return pool_infer_common(k, 0); }

static int wants_common(sf_kctx *k, int is_max) {
  pool_p p;
  sf_err e;
  sf_kctx kk = *k;
  kk.err = &e;
  if (pool_params(&kk, is_max, &p)) return 0;
  return xnn_able(&p);
}
static int maxpool_wants_nhwc(sf_kctx *k) { return wants_common(k, 1); }
static int avgpool_wants_nhwc(sf_kctx *k) { return wants_common(k, 0); }

typedef struct pool_state {
  xnn_operator_t op; /* NULL: C path (first field) */
  pool_p p;
} pool_state;

static void pool_release(sf_node *n) {
  pool_state *s = n->state;
  if (s && s->op) xnn_delete_operator(s->op);
  free(s);
  n->state = NULL;
}

static int pool_prepare_common(sf_kctx *k, int is_max) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  pool_state *s = sf__calloc(1, sizeof *s);
  if (!s) return sf__op_err(k, SF_ENOMEM, "out of memory");
  n->state = s;
  int rc = pool_params(k, is_max, &s->p);
  if (rc) return rc;
  const pool_p *p = &s->p;
  sf_gtensor *x = sf__in(g, n, 0);
  if (x->t.layout != SF_LAYOUT_NHWC || !xnn_able(p) || p->N == 0 || p->C == 0) return 0;
  int two = p->nsp == 2;
  uint32_t v[2][6] = {{1, 1, 1, 0, 0, 0}, {0}}; /* k, s, d, pb, pe(+extra), in per axis */
  for (int i = 0; i < p->nsp; i++) {
    int j = two ? i : 1;
    v[j][0] = (uint32_t)p->k[i];
    v[j][1] = (uint32_t)p->s[i];
    v[j][2] = (uint32_t)p->d[i];
    v[j][3] = (uint32_t)p->pb[i];
    v[j][4] = (uint32_t)(p->pe[i] + p->extra[i]);
  }
  size_t H = two ? (size_t)p->in[0] : 1, W = (size_t)p->in[p->nsp - 1], C = (size_t)p->C;
  enum xnn_status st;
  xnn_operator_t op = NULL;
  if (is_max) {
    st = xnn_create_max_pooling2d_nhwc_f32(v[0][3], v[1][4], v[0][4], v[1][3], v[0][0], v[1][0],
                                           v[0][1], v[1][1], v[0][2], v[1][2], C, C, C, -INFINITY,
                                           INFINITY, 0, &op);
    if (st == xnn_status_success)
      st = xnn_setup_max_pooling2d_nhwc_f32(op, (size_t)p->N, H, W, x->t.data,
                                            sf__out(g, n, 0)->t.data, k->pool);
  } else {
    st = xnn_create_average_pooling2d_nhwc_f32(v[0][3], v[1][4], v[0][4], v[1][3], v[0][0],
                                               v[1][0], v[0][1], v[1][1], C, C, C, -INFINITY,
                                               INFINITY, 0, &op);
    if (st == xnn_status_success)
      st = xnn_setup_average_pooling2d_nhwc_f32(op, (size_t)p->N, H, W, x->t.data,
                                                sf__out(g, n, 0)->t.data, k->pool);
  }
  if (st != xnn_status_success) {
    if (op) xnn_delete_operator(op);
    return 0; /* C path */
  }
  s->op = op;
  return 0;
}

static int maxpool_prepare(sf_kctx *k) { return pool_prepare_common(k, 1); }
static int avgpool_prepare(sf_kctx *k) { return pool_prepare_common(k, 0); }

/* Physical strides: n, c, spatial (3 axes, leading unused axes have extent 1). */
typedef struct pl_strides {
  int64_t n, c, sp[PL_MAXSP];
} pl_strides;

static pl_strides strides_of(const sf_tensor *t, int nsp, int64_t C, const int64_t *sp) {
  pl_strides s;
  int64_t P = 1, acc;
  for (int i = 0; i < nsp; i++) P *= sp[i];
  if (t->layout == SF_LAYOUT_NHWC) {
    s.c = 1;
    acc = C;
  } else {
    s.c = P;
    acc = 1;
  }
  for (int i = nsp - 1; i >= 0; i--) {
    s.sp[i] = acc;
    acc *= sp[i];
  }
  s.n = P * C;
  return s;
}

typedef struct pool_job {
  pool_p q; /* 3-axis form */
  const float *x;
  float *y;
  pl_strides xs, ys;
} pool_job;

static void pool_plane(void *ctx, size_t plane) {
  const pool_job *j = ctx;
  const pool_p *p = &j->q;
  int64_t b = (int64_t)plane / p->C, c = (int64_t)plane % p->C;
  const float *x = j->x + b * j->xs.n + c * j->xs.c;
  float *y = j->y + b * j->ys.n + c * j->ys.c;
  for (int64_t o0 = 0; o0 < p->out[0]; o0++)
    for (int64_t o1 = 0; o1 < p->out[1]; o1++)
      for (int64_t o2 = 0; o2 < p->out[2]; o2++) {
        int64_t st[3] = {o0 * p->s[0] - p->pb[0], o1 * p->s[1] - p->pb[1],
                         o2 * p->s[2] - p->pb[2]};
        float m = -INFINITY, sum = 0.0f;
        int64_t cnt = 0, cntp = 1;
        for (int a = 0; a < 3; a++) {
          int64_t np = 0; /* window positions inside the explicitly padded extent */
          for (int64_t t = 0; t < p->k[a]; t++) {
            int64_t pos = st[a] + t * p->d[a];
            if (pos >= -p->pb[a] && pos < p->in[a] + p->pe[a]) np++;
          }
          cntp *= np;
        }
        for (int64_t k0 = 0; k0 < p->k[0]; k0++) {
          int64_t i0 = st[0] + k0 * p->d[0];
          if ((uint64_t)i0 >= (uint64_t)p->in[0]) continue;
          for (int64_t k1 = 0; k1 < p->k[1]; k1++) {
            int64_t i1 = st[1] + k1 * p->d[1];
            if ((uint64_t)i1 >= (uint64_t)p->in[1]) continue;
            const float *row = x + i0 * j->xs.sp[0] + i1 * j->xs.sp[1];
            for (int64_t k2 = 0; k2 < p->k[2]; k2++) {
              int64_t i2 = st[2] + k2 * p->d[2];
              if ((uint64_t)i2 >= (uint64_t)p->in[2]) continue;
              float v = row[i2 * j->xs.sp[2]];
              if (v > m || isnan(v)) m = v;
              sum += v;
              cnt++;
            }
          }
        }
        float r;
        if (p->is_max)
          r = m;
        else
          r = (p->include_pad ? cntp : cnt) > 0 ? sum / (float)(p->include_pad ? cntp : cnt) : 0.0f;
        y[o0 * j->ys.sp[0] + o1 * j->ys.sp[1] + o2 * j->ys.sp[2]] = r;
      }
}

static int pool_run(sf_kctx *k) {
  pool_state *s = k->node->state;
  if (!s) return sf__op_err(k, SF_EINTERNAL, "not prepared");
  if (s->op) {
    if (xnn_run_operator(s->op, k->pool) != xnn_status_success)
      return sf__op_err(k, SF_EINTERNAL, "XNNPACK pooling failed");
    return 0;
  }
  const pool_p *p = &s->p;
  sf_graph *g = k->g;
  const sf_tensor *xt = &sf__in(g, k->node, 0)->t;
  sf_tensor *yt = &sf__out(g, k->node, 0)->t;
  pool_job j = {.x = xt->data, .y = yt->data};
  pl_strides xs = strides_of(xt, p->nsp, p->C, p->in), ys = strides_of(yt, p->nsp, p->C, p->out);
  /* expand to 3 spatial axes (leading axes of extent 1) */
  int off = PL_MAXSP - p->nsp;
  j.q = *p;
  j.xs.n = xs.n;
  j.xs.c = xs.c;
  j.ys.n = ys.n;
  j.ys.c = ys.c;
  for (int a = 0; a < PL_MAXSP; a++) {
    int i = a - off;
    j.q.in[a] = i >= 0 ? p->in[i] : 1;
    j.q.out[a] = i >= 0 ? p->out[i] : 1;
    j.q.k[a] = i >= 0 ? p->k[i] : 1;
    j.q.s[a] = i >= 0 ? p->s[i] : 1;
    j.q.d[a] = i >= 0 ? p->d[i] : 1;
    j.q.pb[a] = i >= 0 ? p->pb[i] : 0;
    j.q.pe[a] = i >= 0 ? p->pe[i] : 0;
    j.xs.sp[a] = i >= 0 ? xs.sp[i] : 0;
    j.ys.sp[a] = i >= 0 ? ys.sp[i] : 0;
  }
  sf__parallel_for(k->pool, (size_t)(p->N * p->C), pool_plane, &j);
  return 0;
}

static int64_t pool_flops(sf_kctx *k) {
  pool_p p;
  sf_err e;
  sf_kctx kk = *k;
  kk.err = &e;
  if (pool_params(&kk, !strcmp(k->node->op_type, "MaxPool"), &p)) return 0;
  int64_t f = p.N * p.C;
  for (int i = 0; i < p.nsp; i++) f *= p.out[i] * p.k[i];
  return f;
}

const sf_op_def sf__op_MaxPool = {
    .op_type = "MaxPool",
    .flags = SF_OPF_NHWC,
    .infer = maxpool_infer,
    .prepare = maxpool_prepare,
    .run = pool_run,
    .release = pool_release,
    .flops = pool_flops,
    .wants_nhwc = maxpool_wants_nhwc,
};

const sf_op_def sf__op_AveragePool = {
    .op_type = "AveragePool",
    .flags = SF_OPF_NHWC,
    .infer = avgpool_infer,
    .prepare = avgpool_prepare,
    .run = pool_run,
    .release = pool_release,
    .flops = pool_flops,
    .wants_nhwc = avgpool_wants_nhwc,
};

/* ---- global pooling ---------------------------------------------------------------------- */

static int global_infer(sf_kctx *k) {
  int rc = check_input(k, SF_MAX_RANK);
  if (rc) return rc;
  const sf_tensor *x = &sf__in(k->g, k->node, 0)->t;
  int64_t od[SF_MAX_RANK];
  od[0] = x->dims[0];
  od[1] = x->dims[1];
  for (int i = 2; i < x->rank; i++) od[i] = 1;
  sf__tensor_set_shape(sf__out(k->g, k->node, 0), SF_F32, x->rank, od);
  return 0;
}

/* N, C, P (flattened spatial) from physical dims. */
static void global_dims(const sf_tensor *x, int64_t *N, int64_t *C, int64_t *P) {
  int64_t d[SF_MAX_RANK];
  logical_dims(x, d);
  *N = d[0];
  *C = d[1];
  *P = 1;
  for (int i = 2; i < x->rank; i++) *P *= d[i];
}

static int gap_prepare(sf_kctx *k) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  pool_state *s = sf__calloc(1, sizeof *s);
  if (!s) return sf__op_err(k, SF_ENOMEM, "out of memory");
  n->state = s;
  sf_gtensor *x = sf__in(g, n, 0);
  if (x->t.layout != SF_LAYOUT_NHWC) return 0;
  int64_t N, C, P;
  global_dims(&x->t, &N, &C, &P);
  if (N == 0 || C == 0 || P == 0) return 0;
  xnn_operator_t op = NULL;
  enum xnn_status st = xnn_create_global_average_pooling_nwc_f32(
      (size_t)C, (size_t)C, (size_t)C, -INFINITY, INFINITY, 0, &op);
  if (st == xnn_status_success)
    st = xnn_setup_global_average_pooling_nwc_f32(op, (size_t)N, (size_t)P, x->t.data,
                                                  sf__out(g, n, 0)->t.data, k->pool);
  if (st != xnn_status_success) {
    if (op) xnn_delete_operator(op);
    return 0;
  }
  s->op = op;
  return 0;
}

typedef struct global_job {
  const float *x;
  float *y;
  int64_t C, P;
  int is_max, nhwc;
} global_job;

/* One batch element (channels-last) or one (n, c) plane (plain). */
static void global_task(void *ctx, size_t t) {
  const global_job *j = ctx;
  if (j->nhwc) {
    const float *x = j->x + (int64_t)t * j->P * j->C;
    float *y = j->y + (int64_t)t * j->C;
    for (int64_t c = 0; c < j->C; c++) y[c] = j->is_max ? -INFINITY : 0.0f;
    for (int64_t p = 0; p < j->P; p++) {
      const float *r = x + p * j->C;
      if (j->is_max)
        for (int64_t c = 0; c < j->C; c++) y[c] = r[c] > y[c] || isnan(r[c]) ? r[c] : y[c];
      else
        for (int64_t c = 0; c < j->C; c++) y[c] += r[c];
    }
    if (!j->is_max && j->P)
      for (int64_t c = 0; c < j->C; c++) y[c] /= (float)j->P;
    return;
  }
  const float *x = j->x + (int64_t)t * j->P;
  float acc = j->is_max ? -INFINITY : 0.0f;
  if (j->is_max) {
    for (int64_t p = 0; p < j->P; p++) acc = x[p] > acc || isnan(x[p]) ? x[p] : acc;
  } else {
    double sd = 0.0;
    for (int64_t p = 0; p < j->P; p++) sd += x[p];
    acc = j->P ? (float)(sd / (double)j->P) : 0.0f;
  }
  j->y[t] = acc;
}

static int global_run(sf_kctx *k) {
  pool_state *s = k->node->state;
  if (s && s->op) {
    if (xnn_run_operator(s->op, k->pool) != xnn_status_success)
      return sf__op_err(k, SF_EINTERNAL, "XNNPACK global average pooling failed");
    return 0;
  }
  const sf_tensor *x = &sf__in(k->g, k->node, 0)->t;
  global_job j = {.x = x->data, .y = sf__out(k->g, k->node, 0)->t.data,
                  .is_max = !strcmp(k->node->op_type, "GlobalMaxPool"),
                  .nhwc = x->layout == SF_LAYOUT_NHWC};
  int64_t N;
  global_dims(x, &N, &j.C, &j.P);
  sf__parallel_for(k->pool, (size_t)(j.nhwc ? N : N * j.C), global_task, &j);
  return 0;
}

static int64_t global_flops(sf_kctx *k) {
  return sf_tensor_numel(&sf__in(k->g, k->node, 0)->t);
}

static int global_wants_nhwc(sf_kctx *k) { return 1; }

const sf_op_def sf__op_GlobalAveragePool = {
    .op_type = "GlobalAveragePool",
    .flags = SF_OPF_NHWC,
    .infer = global_infer,
    .prepare = gap_prepare,
    .run = global_run,
    .release = pool_release,
    .flops = global_flops,
    .wants_nhwc = global_wants_nhwc,
};

const sf_op_def sf__op_GlobalMaxPool = {
    .op_type = "GlobalMaxPool",
    .flags = SF_OPF_NHWC,
    .infer = global_infer,
    .run = global_run,
    .flops = global_flops,
    .wants_nhwc = global_wants_nhwc,
};
