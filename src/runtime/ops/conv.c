/* Conv and ConvTranspose (float32, 1-D to 3-D spatial).
 *
 * Paths:
 *   - channels-last (the compiler stores X and Y as N,[H,]W,C when wants_nhwc says yes: rank 3/4,
 *     constant W and B): XNNPACK convolution / deconvolution operator, created and set up once in
 *     prepare from a repacked copy of W (freed after creation). 1-D is run as H = 1.
 *   - otherwise (3-D, non-constant weights, XNNPACK refusing the parameters, constant folding):
 *     plain C on either layout (strided addressing): Conv = implicit-im2col GEMM (B panels are
 *     gathered straight from X by the GEMM's packing callback, no column buffer), or direct
 *     per-tap row updates when every group has one input channel (depthwise); ConvTranspose =
 *     GEMM into a column buffer allocated in prepare (bounded chunk of input pixels) followed by
 *     a col2im scatter-add.
 * Fused activations (node->fused_act): a clamp is applied by every path; Swish (x * sigmoid(x),
 * fused by the compiler from a following seifer.Swish) in registers by the depthwise kernel,
 * by a vectorised pass over the output (ops/vkern.h) after the others.
 *
 * Winograd (ops/winograd.c): a channels-last 3x3 stride-1 undilated group-1 Conv with constant
 * weights runs as Winograd F(m x m, 3 x 3) instead of the XNNPACK convolution when
 * sf__wino_choose expects it to be faster (the rule and its measurements are there). The
 * environment variable SEIFER_WINOGRAD, read once per process, overrides the choice:
 * unset or "1" = that rule, "0" = never, "all" = every eligible Conv (tile size from the rule,
 * else 4), "2" / "4" / "6" = every eligible Conv with that tile size (testing).
 *
 * Depthwise (ops/dwconv.c): a channels-last Conv with one input channel per output channel
 * (group == C == M), at least 16 channels, 3x3 or 5x5, stride 1 or 2, dilation 1 runs the
 * AVX-512 kernel there on CPUs that have it (see dwconv.h for the exact conditions) instead of
 * XNNPACK's depthwise convolution (about 1.8x faster on EfficientNet-B1's layers).
 * SEIFER_DWCONV=0, read once per process, keeps XNNPACK.
 */
#include <math.h>
#include <pthread.h> /* Winograd path: pthread_once */
#include <string.h>

#include <xnnpack.h>

#include "runtime/op.h"
#include "runtime/ops/dwconv.h"   /* depthwise path */
#include "runtime/ops/sgemm.h"
#include "runtime/ops/vkern.h"    /* fused Swish */
#include "runtime/ops/winograd.h" /* Winograd path */


#define CV_MAXSP 3
#define CV_COLBUF ((int64_t)1 << 20) /* ConvTranspose column buffer budget (floats) */

typedef struct conv_p {
  int nsp, transposed;
  int64_t N, C, M, group; /* batch, input channels, output channels */
  int64_t in[CV_MAXSP], out[CV_MAXSP], k[CV_MAXSP], s[CV_MAXSP], d[CV_MAXSP];
  int64_t pb[CV_MAXSP], pe[CV_MAXSP]; /* pads at begin / end (ConvTranspose: may be < 0) */
  int64_t opad[CV_MAXSP];             /* ConvTranspose output_padding */
} conv_p;

static float act_lo(const sf_node *n) { return n->fused_act == SF_ACT_CLAMP ? n->act_min : -INFINITY; }
static float act_hi(const sf_node *n) { return n->fused_act == SF_ACT_CLAMP ? n->act_max : INFINITY; }

static int64_t floordiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* INTS attribute with n values in [lo, hi], or def everywhere when absent. */
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

enum { AP_NOTSET, AP_SAME_UPPER, AP_SAME_LOWER, AP_VALID };

static int auto_pad(sf_kctx *k, int *ap) {
  const char *s = sf__attr_string(k->node, "auto_pad", "NOTSET");
  if (!strcmp(s, "NOTSET") || !s[0])
    *ap = AP_NOTSET;
  else if (!strcmp(s, "SAME_UPPER"))
    *ap = AP_SAME_UPPER;
  else if (!strcmp(s, "SAME_LOWER"))
    *ap = AP_SAME_LOWER;
  else if (!strcmp(s, "VALID"))
    *ap = AP_VALID;
  else
    return sf__op_err(k, SF_EUNSUPPORTED, "auto_pad '%.64s' is not supported", s);
  return 0;
}

/* Logical (N,C,spatial...) dims of a tensor seen by prepare/run. */
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

/* Validates inputs and attributes and computes the geometry from the logical dims of X. */
static int conv_params(sf_kctx *k, int transposed, conv_p *p) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  memset(p, 0, sizeof *p);
  p->transposed = transposed;
  sf_gtensor *xg = sf__in(g, n, 0), *wg = sf__in(g, n, 1), *bg = sf__in(g, n, 2);
  if (!xg || !wg) return sf__op_err(k, SF_EFORMAT, "needs inputs X and W");
  const sf_gtensor *ts[3] = {xg, wg, bg};
  for (int i = 0; i < 3; i++)
    if (ts[i] && ts[i]->t.dtype != SF_F32)
      return sf__op_err(k, SF_EUNSUPPORTED, "input %d has dtype %s (only float32 is supported)",
                        i, sf_dtype_name(ts[i]->t.dtype));
  int64_t xd[SF_MAX_RANK];
  logical_dims(&xg->t, xd);
  const sf_tensor *w = &wg->t;
  int r = xg->t.rank;
  if (r < 3 || r > 2 + CV_MAXSP)
    return sf__op_err(k, SF_EUNSUPPORTED, "input rank %d (1-D to 3-D convolutions only)", r);
  if (w->rank != r) return sf__op_err(k, SF_ESHAPE, "W has rank %d, X has rank %d", w->rank, r);
  int ns = r - 2, rc, ap = AP_NOTSET;
  p->nsp = ns;
  p->N = xd[0];
  p->C = xd[1];
  p->group = sf__attr_int(n, "group", 1);
  if (p->group < 1 || p->group > p->C || p->C % p->group)
    return sf__op_err(k, SF_ESHAPE, "group %lld does not divide %lld input channels",
                      (long long)p->group, (long long)p->C);
  if (transposed) {
    if (w->dims[0] != p->C)
      return sf__op_err(k, SF_ESHAPE, "W has %lld input channels, X has %lld",
                        (long long)w->dims[0], (long long)p->C);
    p->M = w->dims[1] * p->group;
  } else {
    if (w->dims[1] * p->group != p->C)
      return sf__op_err(k, SF_ESHAPE, "W expects %lld input channels per group, X has %lld/%lld",
                        (long long)w->dims[1], (long long)p->C, (long long)p->group);
    p->M = w->dims[0];
    if (p->M % p->group)
      return sf__op_err(k, SF_ESHAPE, "group %lld does not divide %lld output channels",
                        (long long)p->group, (long long)p->M);
  }
  if (bg && (bg->t.rank != 1 || bg->t.dims[0] != p->M))
    return sf__op_err(k, SF_ESHAPE, "B must have %lld elements", (long long)p->M);
  for (int i = 0; i < ns; i++) p->in[i] = xd[2 + i];
  if ((rc = ints_attr(k, "kernel_shape", ns, 0, 1, SF_MAX_DIM, p->k))) return rc;
  for (int i = 0; i < ns; i++) {
    if (p->k[i] == 0) p->k[i] = w->dims[2 + i];
    if (p->k[i] != w->dims[2 + i])
      return sf__op_err(k, SF_ESHAPE, "kernel_shape[%d] = %lld but W has %lld", i,
                        (long long)p->k[i], (long long)w->dims[2 + i]);
    if (p->k[i] < 1) return sf__op_err(k, SF_ESHAPE, "empty kernel");
  }
  if ((rc = ints_attr(k, "strides", ns, 1, 1, SF_MAX_DIM, p->s))) return rc;
  if ((rc = ints_attr(k, "dilations", ns, 1, 1, SF_MAX_DIM, p->d))) return rc;
  int64_t pads[2 * CV_MAXSP];
  if ((rc = ints_attr(k, "pads", 2 * ns, 0, 0, SF_MAX_DIM, pads))) return rc;
  if ((rc = auto_pad(k, &ap))) return rc;
  for (int i = 0; i < ns; i++) {
    p->pb[i] = ap == AP_NOTSET ? pads[i] : 0;
    p->pe[i] = ap == AP_NOTSET ? pads[ns + i] : 0;
  }
  if (!transposed) {
    for (int i = 0; i < ns; i++) {
      int64_t dk = (p->k[i] - 1) * p->d[i] + 1, in = p->in[i];
      if (ap == AP_SAME_UPPER || ap == AP_SAME_LOWER) {
        p->out[i] = (in + p->s[i] - 1) / p->s[i];
        int64_t tot = (p->out[i] - 1) * p->s[i] + dk - in;
        if (tot < 0) tot = 0;
        p->pb[i] = ap == AP_SAME_UPPER ? tot / 2 : tot - tot / 2;
        p->pe[i] = tot - p->pb[i];
      } else {
        int64_t span = in + p->pb[i] + p->pe[i] - dk;
        if (span < 0)
          return sf__op_err(k, SF_ESHAPE, "kernel (%lld dilated) larger than padded input %lld",
                            (long long)dk, (long long)(in + p->pb[i] + p->pe[i]));
        p->out[i] = span / p->s[i] + 1;
      }
    }
    return 0;
  }
  int64_t os[CV_MAXSP + 2];
  if ((rc = ints_attr(k, "output_padding", ns, 0, 0, SF_MAX_DIM, p->opad))) return rc;
  const int64_t *osa;
  int nos = sf__attr_ints(n, "output_shape", &osa);
  if (nos >= 0) {
    if (nos != ns && nos != ns + 2)
      return sf__op_err(k, SF_EFORMAT, "output_shape has %d values, expected %d", nos, ns);
    for (int i = 0; i < ns; i++) {
      os[i] = osa[nos - ns + i];
      if (os[i] < 1 || os[i] > SF_MAX_DIM)
        return sf__op_err(k, SF_EFORMAT, "output_shape[%d] = %lld is out of range", i,
                          (long long)os[i]);
    }
  }
  for (int i = 0; i < ns; i++) {
    int64_t dk = (p->k[i] - 1) * p->d[i] + 1, in = p->in[i];
    int64_t full = p->s[i] * (in - 1) + p->opad[i] + dk;
    if (nos >= 0 || ap == AP_SAME_UPPER || ap == AP_SAME_LOWER) {
      int64_t o = nos >= 0 ? os[i] : in * p->s[i];
      int64_t tot = full - o;
      if (ap == AP_SAME_UPPER) {
        p->pb[i] = floordiv(tot, 2);
        p->pe[i] = tot - p->pb[i];
      } else {
        p->pe[i] = floordiv(tot, 2);
        p->pb[i] = tot - p->pe[i];
      }
    }
    p->out[i] = full - p->pb[i] - p->pe[i];
    if (p->out[i] < 1)
      return sf__op_err(k, SF_ESHAPE, "output size %lld along spatial axis %d",
                        (long long)p->out[i], i);
  }
  return 0;
}

static int conv_infer_common(sf_kctx *k, int transposed) {
  conv_p p;
  int rc = conv_params(k, transposed, &p);
  if (rc) return rc;
  sf_gtensor *y = sf__out(k->g, k->node, 0);
  if (!y) return sf__op_err(k, SF_EFORMAT, "needs an output");
  int64_t od[2 + CV_MAXSP] = {p.N, p.M};
  for (int i = 0; i < p.nsp; i++) od[2 + i] = p.out[i];
  sf__tensor_set_shape(y, SF_F32, 2 + p.nsp, od);
  return 0;
}

static int conv_infer(sf_kctx *k) { return conv_infer_common(k, 0); }
static int convt_infer(sf_kctx *k) { return conv_infer_common(k, 1); }

/* XNNPACK can run it: 1-D/2-D, constant weights, parameters it can express. */
static int xnn_able(const conv_p *p) {
  for (int i = 0; i < p->nsp; i++) {
    if (p->k[i] > UINT32_MAX || p->s[i] > UINT32_MAX || p->d[i] > UINT32_MAX ||
        p->pb[i] > UINT32_MAX || p->pe[i] > UINT32_MAX)
      return 0;
    if (p->transposed) {
      int64_t adj = p->opad[i] + (p->pe[i] < 0 ? -p->pe[i] : 0);
      if (p->pb[i] < 0 || adj >= p->s[i]) return 0;
    }
  }
  return p->nsp <= 2;
}

static int wants_common(sf_kctx *k, int transposed) {
  sf_gtensor *w = sf__in(k->g, k->node, 1), *b = sf__in(k->g, k->node, 2);
  if (!w || w->kind != SF_TK_CONST || (b && b->kind != SF_TK_CONST)) return 0;
  conv_p p;
  sf_err e;
  sf_kctx kk = *k;
  kk.err = &e;
  if (conv_params(&kk, transposed, &p)) return 0;
  return xnn_able(&p);
}

static int conv_wants_nhwc(sf_kctx *k) { return wants_common(k, 0); }
static int convt_wants_nhwc(sf_kctx *k) { return wants_common(k, 1); }

typedef struct conv_state {
  xnn_operator_t op; /* channels-last XNNPACK operator, or NULL for the C path (first field) */
  sf_wino *wino;     /* channels-last Winograd operator (then op is NULL) */
  sf_dw *dw;         /* channels-last depthwise kernel (then op is NULL) */
  conv_p p;
  float *col;        /* ConvTranspose C path: column buffer [M/group * prod(k)][chunk] */
  float *wpack;      /* Conv C path with constant W: per-group weights packed for sf__sgemm */
  int64_t chunk;     /* input pixels per column-buffer pass */
} conv_state;

static void conv_release(sf_node *n) {
  conv_state *s = n->state;
  if (s) {
    if (s->op) xnn_delete_operator(s->op);
    sf__wino_free(s->wino);
    sf__dw_free(s->dw);
    free(s->col);
    free(s->wpack);
    free(s);
  }
  n->state = NULL;
}

/* Physical strides of a logical (N, C, spatial...) tensor: batch, channel, spatial. */
typedef struct strides {
  int64_t n, c, sp[CV_MAXSP], pix; /* pix: stride of the flattened spatial index */
} strides;

static strides strides_of(const sf_tensor *t, int nsp, int64_t C, const int64_t *sp) {
  strides s;
  int64_t P = 1;
  for (int i = 0; i < nsp; i++) P *= sp[i];
  int64_t acc = 1;
  if (t->layout == SF_LAYOUT_NHWC) {
    s.c = 1;
    acc = C;
    s.pix = C;
  } else {
    s.c = P;
    s.pix = 1;
  }
  for (int i = nsp - 1; i >= 0; i--) {
    s.sp[i] = acc;
    acc *= sp[i];
  }
  s.n = P * C;
  return s;
}

/* XNNPACK weights [groups][group_out][kh][kw][group_in] from ONNX W. */
static float *repack_weights(const conv_p *p, const float *W) {
  int64_t G = p->group, gic = p->C / G, goc = p->M / G;
  int64_t kk = 1;
  for (int i = 0; i < p->nsp; i++) kk *= p->k[i];
  float *o = sf__malloc(sizeof(float) * (size_t)(G * goc * kk * gic));
  if (!o) return NULL;
  for (int64_t g = 0; g < G; g++)
    for (int64_t oc = 0; oc < goc; oc++)
      for (int64_t q = 0; q < kk; q++)
        for (int64_t ic = 0; ic < gic; ic++) {
          int64_t src = p->transposed ? (((g * gic + ic) * goc + oc) * kk + q)
                                      : (((g * goc + oc) * gic + ic) * kk + q);
          o[((g * goc + oc) * kk + q) * gic + ic] = W[src];
        }
  return o;
}

static int xnn_prepare(sf_kctx *k, conv_state *s) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  const conv_p *p = &s->p;
  const float *W = sf__in(g, n, 1)->t.data;
  sf_gtensor *bg = sf__in(g, n, 2);
  const float *B = bg ? bg->t.data : NULL;
  int two = p->nsp == 2;
  uint32_t kh = two ? (uint32_t)p->k[0] : 1, kw = (uint32_t)p->k[p->nsp - 1];
  uint32_t sh = two ? (uint32_t)p->s[0] : 1, sw = (uint32_t)p->s[p->nsp - 1];
  uint32_t dh = two ? (uint32_t)p->d[0] : 1, dw = (uint32_t)p->d[p->nsp - 1];
  int64_t pb[2] = {0, 0}, pe[2] = {0, 0}, adj[2] = {0, 0};
  for (int i = 0; i < p->nsp; i++) {
    int j = two ? i : 1;
    pb[j] = p->pb[i];
    pe[j] = p->pe[i];
    if (p->transposed) {
      adj[j] = p->opad[i];
      if (pe[j] < 0) {
        adj[j] -= pe[j];
        pe[j] = 0;
      }
    }
  }
  size_t H = two ? (size_t)p->in[0] : 1, Wd = (size_t)p->in[p->nsp - 1];
  size_t G = (size_t)p->group, gic = (size_t)(p->C / p->group), goc = (size_t)(p->M / p->group);
  /* ONNX W is already [group_out][kh][kw][group_in] for a 1x1 Conv: packed without a copy */
  int as_is = !p->transposed && kh * kw == 1;
  float *wp = as_is ? NULL : repack_weights(p, W);
  if (!as_is && !wp) return sf__op_err(k, SF_ENOMEM, "out of memory");
  const float *wk = as_is ? W : wp;
  xnn_operator_t op = NULL;
  enum xnn_status st;
  const float *x = sf__in(g, n, 0)->t.data;
  float *y = sf__out(g, n, 0)->t.data;
  if (!p->transposed) {
    st = xnn_create_convolution2d_nhwc_f32((uint32_t)pb[0], (uint32_t)pe[1], (uint32_t)pe[0],
                                           (uint32_t)pb[1], kh, kw, sh, sw, dh, dw, (uint32_t)G,
                                           gic, goc, (size_t)p->C, (size_t)p->M, wk, B,
                                           act_lo(n), act_hi(n), 0, &op);
    if (st == xnn_status_success)
      st = xnn_setup_convolution2d_nhwc_f32(op, (size_t)p->N, H, Wd, x, y, k->pool);
  } else {
    st = xnn_create_deconvolution2d_nhwc_f32((uint32_t)pb[0], (uint32_t)pe[1], (uint32_t)pe[0],
                                             (uint32_t)pb[1], kh, kw, sh, sw, dh, dw, (uint32_t)G,
                                             gic, goc, (size_t)p->C, (size_t)p->M, wk, B,
                                             act_lo(n), act_hi(n), 0, &op);
    if (st == xnn_status_success)
      st = xnn_setup_deconvolution2d_nhwc_f32(op, (size_t)p->N, H, Wd, (uint32_t)adj[0],
                                              (uint32_t)adj[1], x, y, k->pool);
  }
  free(wp);
  if (st != xnn_status_success) {
    if (op) xnn_delete_operator(op);
    return 0; /* C path */
  }
  s->op = op;
  k->node->packed_inputs |= (1u << 1) | (1u << 2); /* W and B live in the XNNPACK operator */
  return 0;
}

/* ---- Winograd path (ops/winograd.c) ---------------------------------------------------- */

enum { WG_AUTO = -1, WG_OFF = 0, WG_ALL = 1 }; /* or a forced tile size 2, 4, 6 */
static int wg_mode_v = WG_AUTO;
static pthread_once_t wg_once = PTHREAD_ONCE_INIT;

static void wg_read_env(void) {
  const char *e = getenv("SEIFER_WINOGRAD"); /* anything else: the rule */
  if (e && !strcmp(e, "0"))
    wg_mode_v = WG_OFF;
  else if (e && !strcmp(e, "all"))
    wg_mode_v = WG_ALL;
  else if (e && (!strcmp(e, "2") || !strcmp(e, "4") || !strcmp(e, "6")))
    wg_mode_v = e[0] - '0';
}

/* Tile size for this Conv (0: not Winograd). Eligible: 2-D, group 1, 3x3, stride 1, dilation 1;
 * the caller has checked channels-last, constant W and B, N > 0. */
static int wg_tile(sf_kctx *k, const conv_p *p, sf_wino_shape *ws) {
  if (p->transposed || p->nsp != 2 || p->group != 1) return 0;
  for (int i = 0; i < 2; i++)
    if (p->k[i] != 3 || p->s[i] != 1 || p->d[i] != 1) return 0;
  pthread_once(&wg_once, wg_read_env);
  *ws = (sf_wino_shape){.N = p->N, .H = p->in[0], .W = p->in[1], .C = p->C, .M = p->M,
                        .OH = p->out[0], .OW = p->out[1], .pt = p->pb[0], .pl = p->pb[1]};
  int threads = k->pool ? (int)pthreadpool_get_threads_count(k->pool) : 1;
  int m = wg_mode_v == WG_OFF ? 0 : sf__wino_choose(ws, threads);
  if (wg_mode_v == WG_ALL && !m) m = 4;
  if (wg_mode_v > WG_ALL) m = wg_mode_v;
  return m;
}

/* Creates s->wino when the Winograd path is chosen; leaves it NULL (other paths) otherwise or
 * when XNNPACK refuses one of its GEMMs. */
static int wg_prepare(sf_kctx *k, conv_state *s) {
  sf_wino_shape ws;
  int m = wg_tile(k, &s->p, &ws);
  if (!m) return 0;
  sf_gtensor *bg = sf__in(k->g, k->node, 2);
  int rc = sf__wino_create(&ws, m, sf__in(k->g, k->node, 1)->t.data, bg ? bg->t.data : NULL,
                           act_lo(k->node), act_hi(k->node), sf__in(k->g, k->node, 0)->t.data,
                           sf__out(k->g, k->node, 0)->t.data, k->pool, &s->wino);
  if (rc == SF_ENOMEM) return sf__op_err(k, rc, "out of memory");
  if (rc) return 0;
  k->node->packed_inputs |= (1u << 1) | (1u << 2); /* W and B live in the Winograd operator */
  return 0;
}

/* ---- end of the Winograd path ------------------------------------------------------------ */

/* ---- depthwise path (ops/dwconv.c) ------------------------------------------------------- */

static int dw_mode_v = 1;
static pthread_once_t dw_once = PTHREAD_ONCE_INIT;

static void dw_read_env(void) {
  const char *e = getenv("SEIFER_DWCONV");
  if (e && !strcmp(e, "0")) dw_mode_v = 0;
}

/* Creates s->dw when the depthwise kernel applies; leaves it NULL otherwise. The caller has
 * checked channels-last, constant W and B, N > 0. */
static int dw_prepare(sf_kctx *k, conv_state *s) {
  const conv_p *p = &s->p;
  sf_node *n = k->node;
  if (p->transposed || p->nsp > 2 || p->group != p->C || p->M != p->C) return 0;
  for (int i = 0; i < p->nsp; i++)
    if (p->d[i] != 1) return 0;
  pthread_once(&dw_once, dw_read_env);
  if (!dw_mode_v) return 0;
  int two = p->nsp == 2;
  sf_dw_shape ds = {.N = p->N, .H = two ? p->in[0] : 1, .W = p->in[p->nsp - 1], .C = p->C,
                    .OH = two ? p->out[0] : 1, .OW = p->out[p->nsp - 1],
                    .kh = two ? p->k[0] : 1, .kw = p->k[p->nsp - 1],
                    .sh = two ? p->s[0] : 1, .sw = p->s[p->nsp - 1],
                    .pt = two ? p->pb[0] : 0, .pl = p->pb[p->nsp - 1],
                    .act = n->fused_act == SF_ACT_CLAMP   ? SF_DW_ACT_CLAMP
                           : n->fused_act == SF_ACT_SWISH ? SF_DW_ACT_SWISH
                                                          : SF_DW_ACT_NONE,
                    .lo = n->act_min, .hi = n->act_max};
  if (!sf__dw_supported(&ds)) return 0;
  sf_gtensor *bg = sf__in(k->g, n, 2);
  int rc = sf__dw_create(&ds, sf__in(k->g, n, 1)->t.data, bg ? bg->t.data : NULL, k->pool,
                         &s->dw);
  if (rc == SF_ENOMEM) return sf__op_err(k, rc, "out of memory");
  if (rc) return 0;
  n->packed_inputs |= (1u << 1) | (1u << 2); /* W and B live in the depthwise kernel */
  return 0;
}

/* Fused Swish in place over the output, after the paths that do not apply it themselves. */
typedef struct swish_job {
  float *y;
  int64_t n, chunk;
} swish_job;

static void swish_task(void *ctx, size_t i) {
  const swish_job *j = ctx;
  int64_t s = (int64_t)i * j->chunk, e = s + j->chunk < j->n ? s + j->chunk : j->n;
  sf__vkern()->swish(j->y + s, j->y + s, e - s);
}

static void apply_swish(sf_kctx *k) {
  sf_tensor *y = &sf__out(k->g, k->node, 0)->t;
  int64_t n = sf_tensor_numel(y);
  size_t threads = k->pool ? pthreadpool_get_threads_count(k->pool) : 1;
  int64_t chunk = threads > 1 ? (n + (int64_t)threads * 4 - 1) / ((int64_t)threads * 4) : n;
  if (chunk < 16384) chunk = 16384;
  chunk = (chunk + 15) & ~(int64_t)15;
  swish_job j = {y->data, n, chunk};
  if (n > 0) sf__parallel_for(k->pool, (size_t)((n + chunk - 1) / chunk), swish_task, &j);
}

static int conv_prepare_common(sf_kctx *k, int transposed) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  conv_state *s = sf__calloc(1, sizeof *s);
  if (!s) return sf__op_err(k, SF_ENOMEM, "out of memory");
  n->state = s;
  int rc = conv_params(k, transposed, &s->p);
  if (rc) return rc;
  const conv_p *p = &s->p;
  sf_gtensor *x = sf__in(g, n, 0), *w = sf__in(g, n, 1), *b = sf__in(g, n, 2);
  if (x->t.layout == SF_LAYOUT_NHWC && w->kind == SF_TK_CONST &&
      (!b || b->kind == SF_TK_CONST) && xnn_able(p) && p->N > 0) {
    if ((rc = wg_prepare(k, s))) return rc;
    if (s->wino) return 0;
    if (!transposed && (rc = dw_prepare(k, s))) return rc;
    if (s->dw) return 0;
    if ((rc = xnn_prepare(k, s))) return rc;
    if (s->op) return 0;
  }
  if (!transposed && w->kind == SF_TK_CONST && p->C != p->group) {
    int64_t G = p->group, goc = p->M / G, Kg = p->C / G, per;
    for (int i = 0; i < p->nsp; i++) Kg *= p->k[i];
    per = sf__sgemm_packed_floats(goc, Kg);
    if (!(s->wpack = sf__malloc(sizeof(float) * (size_t)(per * G))))
      return sf__op_err(k, SF_ENOMEM, "out of memory");
    const float *W = w->t.data;
    for (int64_t gi = 0; gi < G; gi++)
      sf__sgemm_pack_a(goc, Kg, W + gi * goc * Kg, Kg, 1, s->wpack + gi * per);
  }
  if (transposed) {
    int64_t kk = 1, P = 1;
    for (int i = 0; i < p->nsp; i++) {
      kk *= p->k[i];
      P *= p->in[i];
    }
    int64_t rows = p->M / p->group * kk;
    int64_t ch = rows > 0 ? CV_COLBUF / rows : P;
    if (ch < 1) ch = 1;
    if (ch > P) ch = P;
    s->chunk = ch;
    if (rows * ch > 0 && !(s->col = sf__malloc(sizeof(float) * (size_t)(rows * ch))))
      return sf__op_err(k, SF_ENOMEM, "out of memory");
  }
  return 0;
}

static int conv_prepare(sf_kctx *k) { return conv_prepare_common(k, 0); }
static int convt_prepare(sf_kctx *k) { return conv_prepare_common(k, 1); }

/* ---- Conv, C path: implicit im2col ------------------------------------------------------ */

typedef struct im2col {
  const float *x; /* input at (n, first channel of the group) */
  int nsp;
  int64_t kk;     /* prod(k) */
  int64_t cs, sp[CV_MAXSP];
  int64_t in[CV_MAXSP], out[CV_MAXSP], k[CV_MAXSP], s[CV_MAXSP], d[CV_MAXSP], pb[CV_MAXSP];
} im2col;

/* B(r, j): r = (channel, kernel offset), j = output pixel. */
static void im2col_pack(const void *ctx, int64_t k0, int kc, int64_t j0, int nc, float *dst,
                        int ldd) {
  const im2col *c = ctx;
  int ns = c->nsp;
  int64_t base[64][CV_MAXSP]; /* ldd <= 64 */
  int64_t o[CV_MAXSP], rem = j0;
  for (int i = ns - 1; i >= 0; i--) {
    o[i] = rem % c->out[i];
    rem /= c->out[i];
  }
  for (int j = 0; j < nc; j++) {
    for (int i = 0; i < ns; i++) base[j][i] = o[i] * c->s[i] - c->pb[i];
    for (int i = ns - 1; i >= 0; i--) {
      if (++o[i] < c->out[i]) break;
      o[i] = 0;
    }
  }
  for (int r = 0; r < kc; r++) {
    int64_t kidx = k0 + r, ch = kidx / c->kk, q = kidx % c->kk, kof[CV_MAXSP];
    for (int i = ns - 1; i >= 0; i--) {
      kof[i] = (q % c->k[i]) * c->d[i];
      q /= c->k[i];
    }
    const float *xc = c->x + ch * c->cs;
    float *d = dst + (size_t)r * (size_t)ldd;
    for (int j = 0; j < nc; j++) {
      int64_t off = 0;
      int ok = 1;
      for (int i = 0; i < ns; i++) {
        int64_t pos = base[j][i] + kof[i];
        if ((uint64_t)pos >= (uint64_t)c->in[i]) {
          ok = 0;
          break;
        }
        off += pos * c->sp[i];
      }
      d[j] = ok ? xc[off] : 0.0f;
    }
  }
}

static int conv_run_c(sf_kctx *k, const conv_p *p, const float *wpack) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  const sf_tensor *xt = &sf__in(g, n, 0)->t, *wt = &sf__in(g, n, 1)->t;
  sf_gtensor *bg = sf__in(g, n, 2);
  sf_tensor *yt = &sf__out(g, n, 0)->t;
  const float *X = xt->data, *W = wt->data, *B = bg ? bg->t.data : NULL;
  float *Y = yt->data;
  strides xs = strides_of(xt, p->nsp, p->C, p->in), ys = strides_of(yt, p->nsp, p->M, p->out);
  int64_t G = p->group, gic = p->C / G, goc = p->M / G, kk = 1, P = 1;
  int pointwise = 1;
  for (int i = 0; i < p->nsp; i++) {
    kk *= p->k[i];
    P *= p->out[i];
    if (p->k[i] != 1 || p->s[i] != 1 || p->pb[i] != 0 || p->pe[i] != 0) pointwise = 0;
  }
  int64_t Kg = gic * kk;
  im2col c = {.nsp = p->nsp, .kk = kk, .cs = xs.c};
  for (int i = 0; i < p->nsp; i++) {
    c.sp[i] = xs.sp[i];
    c.in[i] = p->in[i];
    c.out[i] = p->out[i];
    c.k[i] = p->k[i];
    c.s[i] = p->s[i];
    c.d[i] = p->d[i];
    c.pb[i] = p->pb[i];
  }
  float lo = act_lo(n), hi = act_hi(n);
  int64_t per = sf__sgemm_packed_floats(goc, Kg);
  for (int64_t b = 0; b < p->N; b++)
    for (int64_t gi = 0; gi < G; gi++) {
      const float *xg = X + b * xs.n + gi * gic * xs.c;
      c.x = xg;
      const float *A = wpack ? wpack + gi * per : W + gi * goc * Kg;
      sf__sgemm(goc, P, Kg, 1.0f, A, wpack ? 0 : Kg, wpack ? 0 : 1, xg, xs.c, xs.pix,
                pointwise ? NULL : im2col_pack, &c, 0.0f, Y + b * ys.n + gi * goc * ys.c, ys.c,
                ys.pix, B ? B + gi * goc : NULL, lo, hi, k->pool);
    }
  return 0;
}

/* ---- Conv, C path for one input channel per group (depthwise): direct taps ------------- */

typedef float cv_v4 __attribute__((vector_size(16)));
typedef int32_t cv_i4 __attribute__((vector_size(16)));

/* y[i] += w * x[i], i in [0, n) (4-wide vectors, unaligned). */
static void axpy(float *restrict y, const float *restrict x, float w, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    cv_v4 a, b;
    memcpy(&a, y + i, sizeof a);
    memcpy(&b, x + i, sizeof b);
    a += w * b;
    memcpy(y + i, &a, sizeof a);
  }
  for (; i < n; i++) y[i] += w * x[i];
}

/* y[i] = clamp(y[i], lo, hi) for a contiguous row. */
static void clamp_row(float *y, int64_t n, float lo, float hi) {
  int64_t i = 0;
  cv_v4 vl = {lo, lo, lo, lo}, vh = {hi, hi, hi, hi};
  for (; i + 4 <= n; i += 4) {
    cv_v4 a;
    memcpy(&a, y + i, sizeof a);
    cv_i4 m = a < vl;
    a = (cv_v4)(((cv_i4)a & ~m) | ((cv_i4)vl & m));
    m = a > vh;
    a = (cv_v4)(((cv_i4)a & ~m) | ((cv_i4)vh & m));
    memcpy(y + i, &a, sizeof a);
  }
  for (; i < n; i++) y[i] = y[i] < lo ? lo : (y[i] > hi ? hi : y[i]);
}

typedef struct dw_job {
  const conv_p *p;
  const float *x, *w, *b;
  float *y;
  strides xs, ys;
  int64_t in[3], out[3], k[3], s[3], d[3], pb[3], xsp[3], ysp[3]; /* 3-axis form */
  float lo, hi;
} dw_job;

static void dw_range(const dw_job *j, int64_t k2, int64_t *off, int64_t *lo, int64_t *hi) {
  int64_t s2 = j->s[2], o = k2 * j->d[2] - j->pb[2];
  *off = o;
  *lo = o >= 0 ? 0 : (-o + s2 - 1) / s2;
  *hi = j->in[2] - o <= 0 ? 0 : (j->in[2] - o + s2 - 1) / s2;
  if (*hi > j->out[2]) *hi = j->out[2];
  if (*lo > *hi) *lo = *hi;
}

/* Output channel oc of batch element n: every kernel tap adds w * (shifted input row) to the
 * output row, over the range of output columns whose input column is inside the image. */
static void dw_task(void *ctx, size_t t) {
  const dw_job *j = ctx;
  int64_t M = j->p->M, goc = j->p->M / j->p->group;
  int64_t n = (int64_t)t / M, oc = (int64_t)t % M;
  const float *restrict x = j->x + n * j->xs.n + (oc / goc) * j->xs.c;
  float *restrict y = j->y + n * j->ys.n + oc * j->ys.c;
  const float *w = j->w + oc * j->k[0] * j->k[1] * j->k[2];
  float bias = j->b ? j->b[oc] : 0.0f;
  int64_t s2 = j->s[2], xs2 = j->xsp[2], ys2 = j->ysp[2];
  /* per tap column k2: input column = o2 * s2 + off; valid output columns [lo, hi) */
  int64_t offs[16], los[16], his[16];
  int ncache = j->k[2] < 16 ? (int)j->k[2] : 16;
  for (int k2 = 0; k2 < ncache; k2++) dw_range(j, k2, &offs[k2], &los[k2], &his[k2]);
  for (int64_t o0 = 0; o0 < j->out[0]; o0++)
    for (int64_t o1 = 0; o1 < j->out[1]; o1++) {
      float *restrict yr = y + o0 * j->ysp[0] + o1 * j->ysp[1];
      for (int64_t o2 = 0; o2 < j->out[2]; o2++) yr[o2 * ys2] = bias;
      for (int64_t k0 = 0; k0 < j->k[0]; k0++) {
        int64_t i0 = o0 * j->s[0] - j->pb[0] + k0 * j->d[0];
        if (i0 < 0 || i0 >= j->in[0]) continue;
        for (int64_t k1 = 0; k1 < j->k[1]; k1++) {
          int64_t i1 = o1 * j->s[1] - j->pb[1] + k1 * j->d[1];
          if (i1 < 0 || i1 >= j->in[1]) continue;
          const float *restrict xr = x + i0 * j->xsp[0] + i1 * j->xsp[1];
          const float *wr = w + (k0 * j->k[1] + k1) * j->k[2];
          for (int64_t k2 = 0; k2 < j->k[2]; k2++) {
            int64_t off, lo, hi;
            if (k2 < ncache) {
              off = offs[k2];
              lo = los[k2];
              hi = his[k2];
            } else {
              dw_range(j, k2, &off, &lo, &hi);
            }
            float wv = wr[k2];
            if (xs2 == 1 && ys2 == 1 && s2 == 1) {
              if (hi > lo) axpy(yr + lo, xr + off + lo, wv, hi - lo);
            } else {
              for (int64_t o2 = lo; o2 < hi; o2++) yr[o2 * ys2] += wv * xr[(o2 * s2 + off) * xs2];
            }
          }
        }
      }
      if ((j->lo > -INFINITY || j->hi < INFINITY) && ys2 == 1)
        clamp_row(yr, j->out[2], j->lo, j->hi);
      else if (j->lo > -INFINITY || j->hi < INFINITY)
        for (int64_t o2 = 0; o2 < j->out[2]; o2++) {
          float v = yr[o2 * ys2];
          yr[o2 * ys2] = v < j->lo ? j->lo : (v > j->hi ? j->hi : v);
        }
    }
}

static int conv_run_dw(sf_kctx *k, const conv_p *p) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  const sf_tensor *xt = &sf__in(g, n, 0)->t;
  sf_gtensor *bg = sf__in(g, n, 2);
  sf_tensor *yt = &sf__out(g, n, 0)->t;
  dw_job j = {.p = p, .x = xt->data, .w = sf__in(g, n, 1)->t.data, .b = bg ? bg->t.data : NULL,
              .y = yt->data, .xs = strides_of(xt, p->nsp, p->C, p->in),
              .ys = strides_of(yt, p->nsp, p->M, p->out), .lo = act_lo(n), .hi = act_hi(n)};
  int off = 3 - p->nsp;
  for (int a = 0; a < 3; a++) {
    int i = a - off;
    j.in[a] = i >= 0 ? p->in[i] : 1;
    j.out[a] = i >= 0 ? p->out[i] : 1;
    j.k[a] = i >= 0 ? p->k[i] : 1;
    j.s[a] = i >= 0 ? p->s[i] : 1;
    j.d[a] = i >= 0 ? p->d[i] : 1;
    j.pb[a] = i >= 0 ? p->pb[i] : 0;
    j.xsp[a] = i >= 0 ? j.xs.sp[i] : 0;
    j.ysp[a] = i >= 0 ? j.ys.sp[i] : 0;
  }
  sf__parallel_for(k->pool, (size_t)(p->N * p->M), dw_task, &j);
  return 0;
}

/* ---- ConvTranspose, C path: GEMM into columns + col2im ----------------------------------- */

typedef struct col2im {
  const conv_p *p;
  const float *col;
  float *y;       /* output at (n, first channel of the group) */
  strides ys;
  int64_t kk, p0, pc; /* first input pixel and pixel count of this chunk */
} col2im;

static void col2im_task(void *ctx, size_t oc) {
  const col2im *c = ctx;
  const conv_p *p = c->p;
  int ns = p->nsp;
  float *yc = c->y + (int64_t)oc * c->ys.c;
  for (int64_t q = 0; q < c->kk; q++) {
    int64_t kof[CV_MAXSP], rem = q;
    for (int i = ns - 1; i >= 0; i--) {
      kof[i] = (rem % p->k[i]) * p->d[i] - p->pb[i];
      rem /= p->k[i];
    }
    const float *src = c->col + ((int64_t)oc * c->kk + q) * c->pc;
    int64_t ic[CV_MAXSP];
    rem = c->p0;
    for (int i = ns - 1; i >= 0; i--) {
      ic[i] = rem % p->in[i];
      rem /= p->in[i];
    }
    for (int64_t j = 0; j < c->pc; j++) {
      int64_t off = 0;
      int ok = 1;
      for (int i = 0; i < ns; i++) {
        int64_t pos = ic[i] * p->s[i] + kof[i];
        if ((uint64_t)pos >= (uint64_t)p->out[i]) {
          ok = 0;
          break;
        }
        off += pos * c->ys.sp[i];
      }
      if (ok) yc[off] += src[j];
      for (int i = ns - 1; i >= 0; i--) {
        if (++ic[i] < p->in[i]) break;
        ic[i] = 0;
      }
    }
  }
}

typedef struct clamp_job {
  float *y;
  int64_t n;
  float lo, hi;
} clamp_job;

static int convt_run_c(sf_kctx *k, conv_state *s) {
  const conv_p *p = &s->p;
  sf_graph *g = k->g;
  sf_node *n = k->node;
  const sf_tensor *xt = &sf__in(g, n, 0)->t, *wt = &sf__in(g, n, 1)->t;
  sf_gtensor *bg = sf__in(g, n, 2);
  sf_tensor *yt = &sf__out(g, n, 0)->t;
  const float *X = xt->data, *W = wt->data, *B = bg ? bg->t.data : NULL;
  float *Y = yt->data;
  strides xs = strides_of(xt, p->nsp, p->C, p->in), ys = strides_of(yt, p->nsp, p->M, p->out);
  int64_t G = p->group, gic = p->C / G, goc = p->M / G, kk = 1, Pin = 1, Pout = 1;
  for (int i = 0; i < p->nsp; i++) {
    kk *= p->k[i];
    Pin *= p->in[i];
    Pout *= p->out[i];
  }
  int64_t rows = goc * kk;
  for (int64_t b = 0; b < p->N; b++) {
    for (int64_t oc = 0; oc < p->M; oc++) {
      float bv = B ? B[oc] : 0.0f;
      float *yc = Y + b * ys.n + oc * ys.c;
      for (int64_t q = 0; q < Pout; q++) yc[q * ys.pix] = bv;
    }
    if (!s->col) continue;
    for (int64_t gi = 0; gi < G; gi++)
      for (int64_t p0 = 0; p0 < Pin; p0 += s->chunk) {
        int64_t pc = Pin - p0 < s->chunk ? Pin - p0 : s->chunk;
        /* col[(oc,q), j] = sum_ic W[gi*gic+ic][oc][q] * X[gi*gic+ic][p0+j] */
        sf__sgemm(rows, pc, gic, 1.0f, W + gi * gic * rows, 1, rows,
                  X + b * xs.n + gi * gic * xs.c + p0 * xs.pix, xs.c, xs.pix, NULL, NULL, 0.0f,
                  s->col, pc, 1, NULL, -INFINITY, INFINITY, k->pool);
        col2im c = {.p = p, .col = s->col, .y = Y + b * ys.n + gi * goc * ys.c, .ys = ys,
                    .kk = kk, .p0 = p0, .pc = pc};
        sf__parallel_for(rows * pc > 65536 ? k->pool : NULL, (size_t)goc, col2im_task, &c);
      }
  }
  if (n->fused_act == SF_ACT_CLAMP) {
    float lo = n->act_min, hi = n->act_max;
    int64_t tot = p->N * p->M * Pout;
    for (int64_t i = 0; i < tot; i++) Y[i] = Y[i] < lo ? lo : (Y[i] > hi ? hi : Y[i]);
  }
  return 0;
}

static int conv_run_path(sf_kctx *k, conv_state *s) {
  if (s->dw) {
    sf__dw_run(s->dw, sf__in(k->g, k->node, 0)->t.data, sf__out(k->g, k->node, 0)->t.data,
               k->pool);
    return 0;
  }
  if (s->wino) {
    if (sf__wino_run(s->wino, k->pool))
      return sf__op_err(k, SF_EINTERNAL, "XNNPACK GEMM of the Winograd convolution failed");
    return 0;
  }
  if (s->op) {
    if (xnn_run_operator(s->op, k->pool) != xnn_status_success)
      return sf__op_err(k, SF_EINTERNAL, "XNNPACK convolution failed");
    return 0;
  }
  if (s->p.transposed) return convt_run_c(k, s);
  return s->p.C == s->p.group ? conv_run_dw(k, &s->p) : conv_run_c(k, &s->p, s->wpack);
}

static int conv_run(sf_kctx *k) {
  conv_state *s = k->node->state;
  if (!s) return sf__op_err(k, SF_EINTERNAL, "not prepared");
  int rc = conv_run_path(k, s);
  if (!rc && k->node->fused_act == SF_ACT_SWISH && !s->dw) apply_swish(k);
  return rc;
}

static int64_t conv_flops(sf_kctx *k) {
  conv_p p;
  sf_err e;
  sf_kctx kk = *k;
  kk.err = &e;
  if (conv_params(&kk, !strcmp(k->node->op_type, "ConvTranspose"), &p)) return 0;
  int64_t f = 2 * p.N * p.M * (p.C / p.group);
  for (int i = 0; i < p.nsp; i++) f *= p.k[i] * (p.transposed ? p.in[i] : p.out[i]);
  return f;
}

const sf_op_def sf__op_Conv = {
    .op_type = "Conv",
    .flags = SF_OPF_NHWC,
    .infer = conv_infer,
    .prepare = conv_prepare,
    .run = conv_run,
    .release = conv_release,
    .flops = conv_flops,
    .wants_nhwc = conv_wants_nhwc,
};

const sf_op_def sf__op_ConvTranspose = {
    .op_type = "ConvTranspose",
    .flags = SF_OPF_NHWC,
    .infer = convt_infer,
    .prepare = convt_prepare,
    .run = conv_run,
    .release = conv_release,
    .flops = conv_flops,
    .wants_nhwc = convt_wants_nhwc,
};
