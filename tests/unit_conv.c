/* Compute kernels: Conv, ConvTranspose, pools, Gemm, MatMul, BatchNormalization.
 *
 * Each case builds a one-node graph by hand and runs the op's callbacks through an sf_kctx
 * (infer -> allocate outputs -> prepare -> run twice -> release), in plain NCHW layout (C paths)
 * and channels-last (XNNPACK paths, input transposed here), with constant and non-constant
 * weights, and compares against naive reference implementations on random data. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include <pthreadpool.h>
#include <xnnpack.h>

#include "runtime/op.h"

static pthreadpool_t g_pool;

/* ---- random data ---- */
static uint32_t rng = 12345;
static float frand(void) {
  rng = rng * 1664525u + 1013904223u;
  return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}
static float *rand_buf(int64_t n) {
  float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) p[i] = frand();
  return p;
}
static int64_t prod(const int64_t *d, int n) {
  int64_t p = 1;
  for (int i = 0; i < n; i++) p *= d[i];
  return p;
}

/* ---- one-node graph spec ---- */
enum { A_INTS, A_INT, A_FLOAT, A_STR };
typedef struct attr {
  const char *name;
  int kind, n;
  int64_t v[10];
  float f;
  const char *s;
} attr;

typedef struct tin {
  int rank;
  int64_t dims[8];
  const float *data; /* NULL: absent optional input */
  int is_const;
} tin;

typedef struct spec {
  const char *op;
  int n_in;
  tin in[5];
  int n_out; /* default 1 */
  int n_attr;
  attr at[10];
  int fused;
  float lo, hi;
  int64_t opset;
} spec;

typedef struct result {
  int rc;
  int rank;
  int64_t dims[8]; /* logical */
  float *y;        /* NCHW */
  int used_xnn;    /* node state reported an XNNPACK operator (first field of every state) */
  int wants;       /* wants_nhwc answer (-1: no callback) */
  int64_t flops;
  char msg[1024];
} result;

static void to_nhwc(const float *src, float *dst, int rank, const int64_t *d) {
  int64_t N = d[0], C = d[1], P = prod(d + 2, rank - 2);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t p = 0; p < P; p++) dst[(n * P + p) * C + c] = src[(n * C + c) * P + p];
}
static void from_nhwc(const float *src, float *dst, int rank, const int64_t *d) {
  int64_t N = d[0], C = d[1], P = prod(d + 2, rank - 2);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t p = 0; p < P; p++) dst[(n * C + c) * P + p] = src[(n * P + p) * C + c];
}
static void phys_dims(int rank, const int64_t *d, int64_t *o) {
  o[0] = d[0];
  for (int i = 2; i < rank; i++) o[i - 1] = d[i];
  o[rank - 1] = d[1];
}

/* Builds the graph and runs the node; nhwc: input 0 and output 0 channels-last. */
static result run_spec(const spec *s, int nhwc, pthreadpool_t pool) {
  result r = {0};
  sf_graph *g = sf__graph_new();
  if (s->opset) g->opset = s->opset;
  int ins[5], outs[2];
  for (int i = 0; i < s->n_in; i++) {
    const tin *t = &s->in[i];
    if (!t->data) {
      ins[i] = -1;
      continue;
    }
    char nm[16];
    snprintf(nm, sizeof nm, "in%d", i);
    int id = sf__graph_tensor(g, nm);
    if (t->is_const) {
      assert_int_equal(sf__tensor_set_const(g, id, SF_F32, t->rank, t->dims, t->data), 0);
    } else {
      sf_gtensor *gt = &g->tensors[id];
      sf__tensor_set_shape(gt, SF_F32, t->rank, t->dims);
      int64_t n = prod(t->dims, t->rank);
      gt->t.data = calloc(1, sizeof(float) * (size_t)n + 64);
      memcpy(gt->t.data, t->data, sizeof(float) * (size_t)n);
      gt->owns_data = 1;
      gt->kind = SF_TK_INPUT;
    }
    ins[i] = id;
  }
  int n_out = s->n_out ? s->n_out : 1;
  outs[0] = sf__graph_tensor(g, "y");
  if (n_out > 1) outs[1] = sf__graph_tensor(g, "y1");
  int ni = sf__graph_add_node(g, s->op, "node", s->n_in, ins, n_out, outs);
  sf_node *n = &g->nodes[ni];
  n->op = sf__op_find("", s->op);
  assert_non_null(n->op);
  for (int i = 0; i < s->n_attr; i++) {
    const attr *a = &s->at[i];
    if (a->kind == A_INTS) sf__node_set_ints(n, a->name, a->v, a->n);
    if (a->kind == A_INT) sf__node_set_int(n, a->name, a->v[0]);
    if (a->kind == A_FLOAT) sf__node_set_float(n, a->name, a->f);
    if (a->kind == A_STR) sf__node_set_string(n, a->name, a->s);
  }
  if (s->fused) {
    n->fused_act = SF_ACT_CLAMP;
    n->act_min = s->lo;
    n->act_max = s->hi;
  }
  sf_err err = {0};
  sf_kctx k = {.g = g, .node = n, .pool = pool, .err = &err};
  r.rc = n->op->infer(&k);
  if (r.rc) {
    snprintf(r.msg, sizeof r.msg, "%s", err.msg);
    sf__graph_free(g);
    return r;
  }
  sf_gtensor *y = sf__out(g, n, 0);
  r.rank = y->t.rank;
  memcpy(r.dims, y->t.dims, sizeof r.dims);
  r.flops = n->op->flops ? n->op->flops(&k) : 0;
  r.wants = n->op->wants_nhwc ? n->op->wants_nhwc(&k) : -1;
  int64_t ny = prod(r.dims, r.rank);
  if (nhwc) {
    sf_gtensor *x = sf__in(g, n, 0);
    int64_t nx = prod(x->t.dims, x->t.rank);
    float *t = calloc(1, sizeof(float) * (size_t)nx + 64);
    to_nhwc(x->t.data, t, x->t.rank, x->t.dims);
    int64_t pd[8];
    phys_dims(x->t.rank, x->t.dims, pd);
    memcpy(x->t.dims, pd, sizeof(int64_t) * (size_t)x->t.rank);
    x->t.layout = SF_LAYOUT_NHWC;
    if (x->owns_data) free(x->t.data);
    x->t.data = t;
    x->owns_data = 1;
    phys_dims(y->t.rank, y->t.dims, pd);
    memcpy(y->t.dims, pd, sizeof(int64_t) * (size_t)y->t.rank);
    y->t.layout = SF_LAYOUT_NHWC;
    n->layout = SF_LAYOUT_NHWC;
  }
  y->t.data = malloc(sizeof(float) * (size_t)(ny ? ny : 1) + 64);
  for (int64_t i = 0; i < ny; i++) ((float *)y->t.data)[i] = 777.0f; /* must be overwritten */
  y->owns_data = 1;
  if (n->op->prepare) r.rc = n->op->prepare(&k);
  if (!r.rc && n->state) r.used_xnn = *(void **)n->state != NULL;
  if (!r.rc) r.rc = n->op->run(&k);
  if (!r.rc) r.rc = n->op->run(&k); /* a second run must give the same result */
  if (n->op->release) n->op->release(n);
  if (r.rc) {
    snprintf(r.msg, sizeof r.msg, "%s", err.msg);
  } else {
    r.y = malloc(sizeof(float) * (size_t)(ny ? ny : 1));
    if (nhwc)
      from_nhwc(y->t.data, r.y, r.rank, r.dims);
    else
      memcpy(r.y, y->t.data, sizeof(float) * (size_t)ny);
  }
  sf__graph_free(g);
  return r;
}

static int count_attrs(const attr *a) {
  int n = 0;
  while (n < 8 && a[n].name) n++;
  return n;
}

static void expect_close(const float *ref, const float *got, int64_t n, double tol,
                         const char *what) {
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)ref[i] - (double)got[i]);
    if (!(d <= tol * (1.0 + fabs((double)ref[i])))) {
      print_error("%s: element %lld: expected %g got %g\n", what, (long long)i, ref[i], got[i]);
      fail();
    }
  }
}

static void expect_dims(const result *r, int rank, const int64_t *dims, const char *what) {
  if (r->rc) print_error("%s: error %d: %s\n", what, r->rc, r->msg);
  assert_int_equal(r->rc, 0);
  int same = r->rank == rank;
  for (int i = 0; same && i < rank; i++) same = r->dims[i] == dims[i];
  if (!same) {
    print_error("%s: output dims:", what);
    for (int i = 0; i < r->rank; i++) print_error(" %lld", (long long)r->dims[i]);
    print_error(", expected:");
    for (int i = 0; i < rank; i++) print_error(" %lld", (long long)dims[i]);
    print_error("\n");
    fail();
  }
}

/* ---- convolution references (logical NCHW, spatial axes expanded to 3) ---- */
typedef struct geo {
  int nsp;
  int64_t N, C, M, G;
  int64_t in[3], out[3], k[3], s[3], d[3], pb[3], pe[3];
} geo;

static void geo3(const geo *g, int64_t *in, int64_t *out, int64_t *k, int64_t *s, int64_t *d,
                 int64_t *pb) {
  int off = 3 - g->nsp;
  for (int a = 0; a < 3; a++) {
    int i = a - off;
    in[a] = i >= 0 ? g->in[i] : 1;
    out[a] = i >= 0 ? g->out[i] : 1;
    k[a] = i >= 0 ? g->k[i] : 1;
    s[a] = i >= 0 ? g->s[i] : 1;
    d[a] = i >= 0 ? g->d[i] : 1;
    pb[a] = i >= 0 ? g->pb[i] : 0;
  }
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

static float *conv_ref(const geo *g, const float *x, const float *w, const float *b, float lo,
                       float hi) {
  int64_t in[3], out[3], k[3], s[3], d[3], pb[3];
  geo3(g, in, out, k, s, d, pb);
  int64_t gic = g->C / g->G, goc = g->M / g->G, Pi = in[0] * in[1] * in[2],
          Po = out[0] * out[1] * out[2], KK = k[0] * k[1] * k[2];
  float *y = malloc(sizeof(float) * (size_t)(g->N * g->M * Po));
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t oc = 0; oc < g->M; oc++)
      for (int64_t o0 = 0; o0 < out[0]; o0++)
        for (int64_t o1 = 0; o1 < out[1]; o1++)
          for (int64_t o2 = 0; o2 < out[2]; o2++) {
            double sum = b ? b[oc] : 0.0;
            int64_t gi = oc / goc;
            for (int64_t ic = 0; ic < gic; ic++)
              for (int64_t k0 = 0; k0 < k[0]; k0++)
                for (int64_t k1 = 0; k1 < k[1]; k1++)
                  for (int64_t k2 = 0; k2 < k[2]; k2++) {
                    int64_t i0 = o0 * s[0] - pb[0] + k0 * d[0], i1 = o1 * s[1] - pb[1] + k1 * d[1],
                            i2 = o2 * s[2] - pb[2] + k2 * d[2];
                    if (i0 < 0 || i0 >= in[0] || i1 < 0 || i1 >= in[1] || i2 < 0 || i2 >= in[2])
                      continue;
                    sum += (double)x[(n * g->C + gi * gic + ic) * Pi + (i0 * in[1] + i1) * in[2] + i2] *
                           w[(oc * gic + ic) * KK + (k0 * k[1] + k1) * k[2] + k2];
                  }
            y[(n * g->M + oc) * Po + (o0 * out[1] + o1) * out[2] + o2] = clampf((float)sum, lo, hi);
          }
  return y;
}

static float *convt_ref(const geo *g, const float *x, const float *w, const float *b, float lo,
                        float hi) {
  int64_t in[3], out[3], k[3], s[3], d[3], pb[3];
  geo3(g, in, out, k, s, d, pb);
  int64_t gic = g->C / g->G, goc = g->M / g->G, Pi = in[0] * in[1] * in[2],
          Po = out[0] * out[1] * out[2], KK = k[0] * k[1] * k[2];
  double *acc = calloc((size_t)(g->N * g->M * Po), sizeof(double));
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t ic = 0; ic < g->C; ic++)
      for (int64_t i0 = 0; i0 < in[0]; i0++)
        for (int64_t i1 = 0; i1 < in[1]; i1++)
          for (int64_t i2 = 0; i2 < in[2]; i2++) {
            double xv = x[(n * g->C + ic) * Pi + (i0 * in[1] + i1) * in[2] + i2];
            int64_t gi = ic / gic;
            for (int64_t oc = 0; oc < goc; oc++)
              for (int64_t k0 = 0; k0 < k[0]; k0++)
                for (int64_t k1 = 0; k1 < k[1]; k1++)
                  for (int64_t k2 = 0; k2 < k[2]; k2++) {
                    int64_t o0 = i0 * s[0] - pb[0] + k0 * d[0], o1 = i1 * s[1] - pb[1] + k1 * d[1],
                            o2 = i2 * s[2] - pb[2] + k2 * d[2];
                    if (o0 < 0 || o0 >= out[0] || o1 < 0 || o1 >= out[1] || o2 < 0 ||
                        o2 >= out[2])
                      continue;
                    acc[(n * g->M + gi * goc + oc) * Po + (o0 * out[1] + o1) * out[2] + o2] +=
                        xv * w[(ic * goc + oc) * KK + (k0 * k[1] + k1) * k[2] + k2];
                  }
          }
  float *y = malloc(sizeof(float) * (size_t)(g->N * g->M * Po));
  for (int64_t n = 0; n < g->N; n++)
    for (int64_t oc = 0; oc < g->M; oc++)
      for (int64_t p = 0; p < Po; p++) {
        int64_t i = (n * g->M + oc) * Po + p;
        y[i] = clampf((float)(acc[i] + (b ? b[oc] : 0.0)), lo, hi);
      }
  free(acc);
  return y;
}

/* Conv / ConvTranspose case: geometry for the reference plus the node's attributes. */
typedef struct conv_case {
  const char *name;
  int transposed;
  geo g;
  int bias;
  int n_attr;
  attr at[8];
  int fused;
  float lo, hi;
  int expect_xnn; /* channels-last with constant weights runs XNNPACK */
} conv_case;

static void run_conv_case(const conv_case *c) {
  geo g = c->g;
  if (!g.G) g.G = 1;
  for (int i = 0; i < g.nsp; i++) {
    if (!g.s[i]) g.s[i] = 1;
    if (!g.d[i]) g.d[i] = 1;
    int64_t dk = (g.k[i] - 1) * g.d[i] + 1;
    if (!c->transposed)
      g.out[i] = (g.in[i] + g.pb[i] + g.pe[i] - dk) / g.s[i] + 1;
    else if (!g.out[i])
      g.out[i] = g.s[i] * (g.in[i] - 1) + dk - g.pb[i] - g.pe[i];
  }
  int r = 2 + g.nsp;
  int64_t xd[5] = {g.N, g.C}, wd[5], bd[1] = {g.M}, yd[5] = {g.N, g.M};
  if (c->transposed) {
    wd[0] = g.C;
    wd[1] = g.M / g.G;
  } else {
    wd[0] = g.M;
    wd[1] = g.C / g.G;
  }
  for (int i = 0; i < g.nsp; i++) {
    xd[2 + i] = g.in[i];
    wd[2 + i] = g.k[i];
    yd[2 + i] = g.out[i];
  }
  float *x = rand_buf(prod(xd, r)), *w = rand_buf(prod(wd, r)), *b = c->bias ? rand_buf(g.M) : NULL;
  float lo = c->fused ? c->lo : -INFINITY, hi = c->fused ? c->hi : INFINITY;
  float *ref = c->transposed ? convt_ref(&g, x, w, b, lo, hi) : conv_ref(&g, x, w, b, lo, hi);
  int64_t ny = prod(yd, r);
  for (int nhwc = 0; nhwc < 2; nhwc++)
    for (int wconst = 0; wconst < 2; wconst++) {
      if (nhwc && r > 4) continue;
      spec s = {.op = c->transposed ? "ConvTranspose" : "Conv", .n_in = c->bias ? 3 : 2,
                .n_attr = count_attrs(c->at), .fused = c->fused, .lo = c->lo, .hi = c->hi};
      s.in[0] = (tin){r, {0}, x, 0};
      s.in[1] = (tin){r, {0}, w, wconst};
      s.in[2] = (tin){1, {g.M}, b, wconst};
      memcpy(s.in[0].dims, xd, sizeof xd);
      memcpy(s.in[1].dims, wd, sizeof wd);
      (void)bd;
      memcpy(s.at, c->at, sizeof c->at);
      for (int pi = 0; pi < 2; pi++) {
        result res = run_spec(&s, nhwc, pi ? g_pool : NULL);
        char what[160];
        snprintf(what, sizeof what, "%s nhwc=%d wconst=%d pool=%d", c->name, nhwc, wconst, pi);
        expect_dims(&res, r, yd, what);
        expect_close(ref, res.y, ny, 2e-4, what);
        if (nhwc && wconst && c->expect_xnn && !res.used_xnn) {
          print_error("%s: XNNPACK path not taken\n", c->name);
          fail();
        }
        if (!nhwc || !wconst) assert_false(res.used_xnn);
        int64_t fl = 2 * g.N * g.M * (g.C / g.G);
        for (int i = 0; i < g.nsp; i++) fl *= g.k[i] * (c->transposed ? g.in[i] : g.out[i]);
        assert_int_equal(res.flops, fl);
        free(res.y);
      }
    }
  free(x);
  free(w);
  free(b);
  free(ref);
}

#define INTS(nm, cnt, ...) {.name = nm, .kind = A_INTS, .n = cnt, .v = {__VA_ARGS__}}
#define INT(nm, val) {.name = nm, .kind = A_INT, .v = {val}}
#define FLT(nm, val) {.name = nm, .kind = A_FLOAT, .f = val}
#define STR(nm, val) {.name = nm, .kind = A_STR, .s = val}

static void test_conv(void **st) {
  (void)st;
  static const conv_case cases[] = {
      {"basic_pad", 0, {2, 2, 3, 4, 1, {7, 7}, {0}, {3, 3}, {0}, {0}, {1, 1}, {1, 1}}, 1, 1,
       {INTS("pads", 4, 1, 1, 1, 1)}, .expect_xnn = 1},
      {"no_attrs_no_bias", 0, {2, 1, 3, 4, 1, {6, 5}, {0}, {3, 2}, {0}, {0}, {0}, {0}}, 0, 0, {{0}}, .expect_xnn = 1},
      {"grouped_strided_asym", 0,
       {2, 2, 4, 6, 2, {9, 8}, {0}, {3, 2}, {2, 1}, {1, 1}, {0, 1}, {2, 0}}, 1, 4,
       {INT("group", 2), INTS("strides", 2, 2, 1), INTS("pads", 4, 0, 1, 2, 0),
        INTS("kernel_shape", 2, 3, 2)}, .expect_xnn = 1},
      {"depthwise", 0, {2, 1, 8, 8, 8, {9, 9}, {0}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}}, 1,
       3, {INT("group", 8), INTS("strides", 2, 2, 2), INTS("pads", 4, 1, 1, 1, 1)},
       .expect_xnn = 1},
      {"depthwise_multiplier", 0, {2, 2, 4, 8, 4, {6, 7}, {0}, {3, 3}, {1, 1}, {1, 1}, {1, 0}, {1, 2}},
       1, 2, {INT("group", 4), INTS("pads", 4, 1, 0, 1, 2)}, .expect_xnn = 1},
      {"dilated", 0, {2, 1, 3, 5, 1, {11, 12}, {0}, {3, 3}, {1, 1}, {2, 3}, {2, 3}, {2, 3}}, 1, 2,
       {INTS("dilations", 2, 2, 3), INTS("pads", 4, 2, 3, 2, 3)}, .expect_xnn = 1},
      {"pointwise", 0, {2, 2, 16, 24, 1, {5, 6}, {0}, {1, 1}, {0}, {0}, {0}, {0}}, 1, 0, {{0}}, .expect_xnn = 1},
      {"pointwise_strided", 0, {2, 1, 5, 3, 1, {6, 7}, {0}, {1, 1}, {2, 2}, {0}, {0}, {0}}, 0, 1,
       {INTS("strides", 2, 2, 2)}, .expect_xnn = 1},
      {"conv1d", 0, {1, 2, 5, 3, 1, {17}, {0}, {4}, {2}, {2}, {1}, {2}}, 1, 3,
       {INTS("strides", 1, 2), INTS("dilations", 1, 2), INTS("pads", 2, 1, 2)}, .expect_xnn = 1},
      {"conv3d", 0, {3, 2, 4, 6, 2, {5, 6, 4}, {0}, {2, 3, 2}, {1, 2, 1}, {1, 1, 2}, {1, 0, 1}, {0, 1, 1}},
       1, 4, {INT("group", 2), INTS("strides", 3, 1, 2, 1), INTS("dilations", 3, 1, 1, 2),
              INTS("pads", 6, 1, 0, 1, 0, 1, 1)}, .expect_xnn = 0},
      {"same_upper", 0, {2, 1, 3, 4, 1, {8, 7}, {0}, {3, 4}, {2, 2}, {1, 1}, {0, 1}, {1, 2}}, 1, 2,
       {STR("auto_pad", "SAME_UPPER"), INTS("strides", 2, 2, 2)}, .expect_xnn = 1},
      {"same_lower", 0, {2, 1, 3, 4, 1, {8, 7}, {0}, {3, 4}, {2, 2}, {1, 1}, {1, 2}, {0, 1}}, 1, 2,
       {STR("auto_pad", "SAME_LOWER"), INTS("strides", 2, 2, 2)}, .expect_xnn = 1},
      {"valid", 0, {2, 1, 3, 4, 1, {8, 7}, {0}, {3, 4}, {2, 2}, {0}, {0}, {0}}, 1, 2,
       {STR("auto_pad", "VALID"), INTS("strides", 2, 2, 2)}, .expect_xnn = 1},
      {"fused_clamp", 0, {2, 2, 3, 5, 1, {6, 6}, {0}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}}, 1, 1,
       {INTS("pads", 4, 1, 1, 1, 1)}, 1, 0.0f, 0.5f, .expect_xnn = 1},
      {"big_blocked", 0, {2, 1, 40, 80, 1, {17, 19}, {0}, {3, 3}, {1, 1}, {1, 1}, {1, 1}, {1, 1}}, 1,
       1, {INTS("pads", 4, 1, 1, 1, 1)}, .expect_xnn = 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_conv_case(&cases[i]);
}

static void test_conv_transpose(void **st) {
  (void)st;
  static const conv_case cases[] = {
      {"basic", 1, {2, 1, 2, 3, 1, {3, 4}, {0}, {3, 3}, {0}, {0}, {0}, {0}}, 1, 0, {{0}}, .expect_xnn = 1},
      {"strided_pads_outpad", 1,
       {2, 2, 3, 4, 1, {4, 3}, {0}, {3, 2}, {3, 2}, {1, 1}, {1, 0}, {-1, 0}}, 1, 3,
       {INTS("strides", 2, 3, 2), INTS("pads", 4, 1, 0, 0, 1), INTS("output_padding", 2, 1, 1)},
       .expect_xnn = 1},
      {"grouped_dilated", 1, {2, 2, 4, 6, 2, {4, 5}, {0}, {2, 3}, {2, 1}, {2, 2}, {1, 0}, {1, 1}}, 1,
       3, {INT("group", 2), INTS("strides", 2, 2, 1), INTS("dilations", 2, 2, 2),
           INTS("pads", 4, 1, 0, 1, 1)}, .expect_xnn = 1},
      /* output_shape 10x8 from 3x3, stride 3x2: total padding -1 -> one extra row/col at the end */
      {"output_shape", 1, {2, 1, 1, 2, 1, {3, 3}, {10, 8}, {3, 3}, {3, 2}, {1, 1}, {0, 0}, {-1, -1}},
       1, 1, {INTS("strides", 2, 3, 2), INTS("output_shape", 2, 10, 8)}, .expect_xnn = 1},
      {"same_upper", 1, {2, 1, 2, 3, 1, {3, 3}, {6, 6}, {3, 3}, {2, 2}, {1, 1}, {0, 0}, {1, 1}}, 1, 1,
       {STR("auto_pad", "SAME_UPPER"), INTS("strides", 2, 2, 2)}, .expect_xnn = 1},
      {"conv1d_t", 1, {1, 2, 3, 4, 1, {5}, {0}, {3}, {2}, {1}, {1}, {0}}, 1, 3,
       {INTS("strides", 1, 2), INTS("pads", 2, 1, 0)}, .expect_xnn = 1},
      {"conv3d_t", 1, {3, 2, 2, 4, 2, {3, 2, 3}, {0}, {2, 2, 3}, {2, 1, 2}, {1, 2, 1}, {0, 1, 1}, {1, 0, 0}},
       1, 5, {INT("group", 2), INTS("strides", 3, 2, 1, 2), INTS("dilations", 3, 1, 2, 1),
              INTS("pads", 6, 0, 1, 1, 1, 0, 0)}, .expect_xnn = 0},
      /* output_padding >= stride (allowed when < dilation): XNNPACK cannot, C path */
      {"outpad_ge_stride", 1, {2, 1, 2, 2, 1, {3, 3}, {0}, {2, 2}, {1, 1}, {3, 3}, {0, 0}, {-1, -1}},
       0, 1, {INTS("dilations", 2, 3, 3), INTS("output_padding", 2, 1, 1)}, .expect_xnn = 0},
      {"fused", 1, {2, 2, 3, 3, 1, {4, 4}, {0}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}}, 1, 2,
       {INTS("strides", 2, 2, 2), INTS("pads", 4, 1, 1, 1, 1)}, 1, -0.25f, 0.25f, .expect_xnn = 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_conv_case(&cases[i]);
}

/* ---- pooling ---- */
typedef struct pool_case {
  const char *name;
  int is_max, include_pad, ceil;
  geo g; /* uses nsp, N, C, in, k, s, d, pb, pe (out computed) */
  int n_attr;
  attr at[8];
  int expect_xnn;
} pool_case;

static float *pool_ref(const pool_case *c, const geo *g, const float *x) {
  int64_t in[3], out[3], k[3], s[3], d[3], pb[3], pe[3];
  geo3(g, in, out, k, s, d, pb);
  int off = 3 - g->nsp;
  for (int a = 0; a < 3; a++) pe[a] = a >= off ? g->pe[a - off] : 0;
  int64_t Pi = in[0] * in[1] * in[2], Po = out[0] * out[1] * out[2];
  float *y = malloc(sizeof(float) * (size_t)(g->N * g->C * Po));
  for (int64_t nc = 0; nc < g->N * g->C; nc++)
    for (int64_t o0 = 0; o0 < out[0]; o0++)
      for (int64_t o1 = 0; o1 < out[1]; o1++)
        for (int64_t o2 = 0; o2 < out[2]; o2++) {
          double sum = 0, m = -INFINITY;
          int64_t cnt = 0, cntp = 0;
          for (int64_t k0 = 0; k0 < k[0]; k0++)
            for (int64_t k1 = 0; k1 < k[1]; k1++)
              for (int64_t k2 = 0; k2 < k[2]; k2++) {
                int64_t i[3] = {o0 * s[0] - pb[0] + k0 * d[0], o1 * s[1] - pb[1] + k1 * d[1],
                                o2 * s[2] - pb[2] + k2 * d[2]};
                int valid = 1, inpad = 1;
                for (int a = 0; a < 3; a++) {
                  if (i[a] < 0 || i[a] >= in[a]) valid = 0;
                  if (i[a] < -pb[a] || i[a] >= in[a] + pe[a]) inpad = 0;
                }
                cntp += inpad;
                if (!valid) continue;
                double v = x[nc * Pi + (i[0] * in[1] + i[1]) * in[2] + i[2]];
                sum += v;
                if (v > m) m = v;
                cnt++;
              }
          y[nc * Po + (o0 * out[1] + o1) * out[2] + o2] =
              (float)(c->is_max ? m : sum / (double)(c->include_pad ? cntp : cnt));
        }
  return y;
}

static void run_pool_case(const pool_case *c) {
  geo g = c->g;
  for (int i = 0; i < g.nsp; i++) {
    if (!g.s[i]) g.s[i] = 1;
    if (!g.d[i]) g.d[i] = 1;
    int64_t dk = (g.k[i] - 1) * g.d[i] + 1, span = g.in[i] + g.pb[i] + g.pe[i] - dk;
    if (!g.out[i]) g.out[i] = (c->ceil ? (span + g.s[i] - 1) / g.s[i] : span / g.s[i]) + 1;
  }
  int r = 2 + g.nsp;
  int64_t xd[5] = {g.N, g.C}, yd[5] = {g.N, g.C};
  for (int i = 0; i < g.nsp; i++) {
    xd[2 + i] = g.in[i];
    yd[2 + i] = g.out[i];
  }
  float *x = rand_buf(prod(xd, r));
  float *ref = pool_ref(c, &g, x);
  for (int nhwc = 0; nhwc < 2; nhwc++) {
    if (nhwc && r > 4) continue;
    spec s = {.op = c->is_max ? "MaxPool" : "AveragePool", .n_in = 1, .n_attr = count_attrs(c->at)};
    s.in[0] = (tin){r, {0}, x, 0};
    memcpy(s.in[0].dims, xd, sizeof xd);
    memcpy(s.at, c->at, sizeof c->at);
    for (int pi = 0; pi < 2; pi++) {
      result res = run_spec(&s, nhwc, pi ? g_pool : NULL);
      char what[160];
      snprintf(what, sizeof what, "%s nhwc=%d pool=%d", c->name, nhwc, pi);
      expect_dims(&res, r, yd, what);
      expect_close(ref, res.y, prod(yd, r), 1e-5, what);
      if (nhwc && c->expect_xnn != res.used_xnn) {
        print_error("%s: XNNPACK used=%d expected %d\n", c->name, res.used_xnn, c->expect_xnn);
        fail();
      }
      if (!nhwc) assert_false(res.used_xnn);
      int64_t fl = g.N * g.C;
      for (int i = 0; i < g.nsp; i++) fl *= g.out[i] * g.k[i];
      assert_int_equal(res.flops, fl);
      free(res.y);
    }
  }
  free(x);
  free(ref);
}

static void test_pools(void **st) {
  (void)st;
  static const pool_case cases[] = {
      {"max_k3s2p1", 1, 0, 0, {2, 2, 5, 0, 0, {9, 8}, {0}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}}, 2,
       {INTS("kernel_shape", 2, 3, 3), INTS("strides", 2, 2, 2), INTS("pads", 4, 1, 1, 1, 1)}, 1},
      {"max_ceil", 1, 0, 1, {2, 1, 3, 0, 0, {8, 7}, {0}, {3, 2}, {2, 2}, {0}, {0}, {0}}, 3,
       {INTS("kernel_shape", 2, 3, 2), INTS("strides", 2, 2, 2), INT("ceil_mode", 1)}, 1},
      {"max_dilated_padded", 1, 0, 0, {2, 1, 3, 0, 0, {9, 9}, {0}, {2, 2}, {1, 1}, {2, 2}, {1, 1}, {1, 1}},
       3, {INTS("kernel_shape", 2, 2, 2), INTS("dilations", 2, 2, 2), INTS("pads", 4, 1, 1, 1, 1)},
       0},
      {"max_dilated", 1, 0, 0, {2, 1, 3, 0, 0, {9, 9}, {0}, {3, 2}, {1, 2}, {2, 2}, {0}, {0}}, 3,
       {INTS("kernel_shape", 2, 3, 2), INTS("strides", 2, 1, 2), INTS("dilations", 2, 2, 2)}, 1},
      {"max_1d", 1, 0, 0, {1, 2, 4, 0, 0, {11}, {0}, {3}, {2}, {1}, {1}, {0}}, 3,
       {INTS("kernel_shape", 1, 3), INTS("strides", 1, 2), INTS("pads", 2, 1, 0)}, 1},
      {"max_3d", 1, 0, 0, {3, 2, 2, 0, 0, {5, 4, 6}, {0}, {2, 2, 3}, {1, 2, 2}, {1, 1, 1}, {0, 1, 1}, {1, 0, 1}},
       3, {INTS("kernel_shape", 3, 2, 2, 3), INTS("strides", 3, 1, 2, 2),
           INTS("pads", 6, 0, 1, 1, 1, 0, 1)}, 0},
      {"max_stride_gt_kernel", 1, 0, 0, {2, 1, 3, 0, 0, {9, 9}, {0}, {2, 2}, {3, 3}, {0}, {0}, {0}}, 2,
       {INTS("kernel_shape", 2, 2, 2), INTS("strides", 2, 3, 3)}, 0},
      {"max_same_upper", 1, 0, 0, {2, 1, 3, 0, 0, {7, 6}, {0}, {3, 3}, {2, 2}, {1, 1}, {1, 0}, {1, 1}},
       3, {INTS("kernel_shape", 2, 3, 3), INTS("strides", 2, 2, 2), STR("auto_pad", "SAME_UPPER")},
       1},
      {"avg_exclude_pad", 0, 0, 0, {2, 2, 3, 0, 0, {7, 8}, {0}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}},
       3, {INTS("kernel_shape", 2, 3, 3), INTS("strides", 2, 2, 2), INTS("pads", 4, 1, 1, 1, 1)}, 1},
      {"avg_include_pad", 0, 1, 0, {2, 2, 3, 0, 0, {7, 8}, {0}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, {1, 1}},
       4, {INTS("kernel_shape", 2, 3, 3), INTS("strides", 2, 2, 2), INTS("pads", 4, 1, 1, 1, 1),
           INT("count_include_pad", 1)}, 0},
      {"avg_ceil", 0, 0, 1, {2, 1, 3, 0, 0, {8, 7}, {0}, {3, 3}, {2, 2}, {0}, {0}, {0}}, 3,
       {INTS("kernel_shape", 2, 3, 3), INTS("strides", 2, 2, 2), INT("ceil_mode", 1)}, 1},
      {"avg_ceil_include_pad", 0, 1, 1, {2, 1, 3, 0, 0, {8, 7}, {0}, {3, 3}, {2, 2}, {1, 1}, {1, 0}, {0, 1}},
       5, {INTS("kernel_shape", 2, 3, 3), INTS("strides", 2, 2, 2), INT("ceil_mode", 1),
           INT("count_include_pad", 1), INTS("pads", 4, 1, 0, 0, 1)}, 0},
      {"avg_1x1_strided", 0, 0, 0, {2, 1, 3, 0, 0, {7, 8}, {0}, {1, 1}, {2, 2}, {0}, {0}, {0}}, 2,
       {INTS("kernel_shape", 2, 1, 1), INTS("strides", 2, 2, 2)}, 0},
      {"avg_same_lower", 0, 0, 0, {2, 1, 3, 0, 0, {7, 6}, {0}, {3, 2}, {2, 2}, {1, 1}, {1, 0}, {1, 0}},
       3, {INTS("kernel_shape", 2, 3, 2), INTS("strides", 2, 2, 2), STR("auto_pad", "SAME_LOWER")},
       1},
      {"avg_3d", 0, 1, 0, {3, 1, 2, 0, 0, {4, 5, 6}, {0}, {2, 3, 3}, {2, 1, 2}, {1, 1, 1}, {1, 1, 0}, {0, 1, 1}},
       4, {INTS("kernel_shape", 3, 2, 3, 3), INTS("strides", 3, 2, 1, 2),
           INTS("pads", 6, 1, 1, 0, 0, 1, 1), INT("count_include_pad", 1)}, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const pool_case *c = &cases[i];
    run_pool_case(c);
    /* wants_nhwc agrees with the path prepare takes */
    int r = 2 + c->g.nsp;
    int64_t xd[5] = {c->g.N, c->g.C};
    for (int a = 0; a < c->g.nsp; a++) xd[2 + a] = c->g.in[a];
    float *x = rand_buf(prod(xd, r));
    spec s = {.op = c->is_max ? "MaxPool" : "AveragePool", .n_in = 1, .n_attr = count_attrs(c->at)};
    s.in[0] = (tin){r, {0}, x, 0};
    memcpy(s.in[0].dims, xd, sizeof xd);
    memcpy(s.at, c->at, sizeof c->at);
    result res = run_spec(&s, 0, NULL);
    assert_int_equal(res.rc, 0);
    assert_int_equal(res.wants, c->expect_xnn);
    free(res.y);
    free(x);
  }
}

static void test_global_pools(void **st) {
  (void)st;
  static const int64_t shapes[][6] = {{3, 2, 5, 9}, {4, 2, 6, 4, 5}, {5, 1, 3, 2, 3, 4}, {4, 1, 64, 1, 1}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    int r = (int)shapes[si][0];
    const int64_t *xd = &shapes[si][1];
    int64_t N = xd[0], C = xd[1], P = prod(xd + 2, r - 2);
    float *x = rand_buf(N * C * P);
    float ra[64 * 2], rm[64 * 2];
    for (int64_t i = 0; i < N * C; i++) {
      double s = 0, m = -INFINITY;
      for (int64_t p = 0; p < P; p++) {
        s += x[i * P + p];
        if (x[i * P + p] > m) m = x[i * P + p];
      }
      ra[i] = (float)(s / (double)P);
      rm[i] = (float)m;
    }
    int64_t yd[8] = {N, C, 1, 1, 1, 1, 1, 1};
    for (int mx = 0; mx < 2; mx++)
      for (int nhwc = 0; nhwc < 2; nhwc++) {
        if (nhwc && r > 4) continue;
        spec s = {.op = mx ? "GlobalMaxPool" : "GlobalAveragePool", .n_in = 1};
        s.in[0] = (tin){r, {0}, x, 0};
        memcpy(s.in[0].dims, xd, sizeof(int64_t) * (size_t)r);
        result res = run_spec(&s, nhwc, g_pool);
        expect_dims(&res, r, yd, s.op);
        assert_int_equal(res.wants, 1);
        if (nhwc && !mx) assert_true(res.used_xnn);
        expect_close(mx ? rm : ra, res.y, N * C, 1e-5, s.op);
        assert_int_equal(res.flops, N * C * P);
        free(res.y);
      }
    free(x);
  }
}

/* ---- Gemm / MatMul ---- */
static void test_gemm(void **st) {
  (void)st;
  struct {
    int64_t M, N, K;
    int ta, tb;
    float alpha, beta;
    int crank;
    int64_t cd[2];
    int fused;
  } cases[] = {
      {7, 33, 300, 0, 0, 1.0f, 1.0f, 1, {33, 0}, 0},  {7, 33, 300, 0, 1, 1.0f, 1.0f, 2, {1, 33}, 0},
      {5, 9, 20, 1, 0, 0.5f, 1.0f, 2, {5, 9}, 0},     {5, 9, 20, 1, 1, 1.0f, 0.25f, 2, {5, 1}, 1},
      {1, 100, 64, 0, 1, 2.0f, 3.0f, 0, {0, 0}, 0},   {3, 4, 5, 0, 0, 1.0f, 1.0f, -1, {0, 0}, 0},
      {100, 70, 130, 0, 1, 1.5f, 0.5f, 2, {100, 70}, 1}, {6, 8, 16, 0, 0, 1.0f, 1.0f, 1, {1, 0}, 1},
  };
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    __typeof__(cases[0]) *c = &cases[ci];
    int64_t M = c->M, N = c->N, K = c->K;
    float *A = rand_buf(M * K), *B = rand_buf(K * N);
    int64_t cn = c->crank < 0 ? 0 : prod(c->cd, c->crank);
    float *C = c->crank >= 0 ? rand_buf(cn) : NULL;
    float *ref = malloc(sizeof(float) * (size_t)(M * N));
    float lo = c->fused ? -0.5f : -INFINITY, hi = c->fused ? 2.0f : INFINITY;
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++)
          s += (double)(c->ta ? A[k * M + i] : A[i * K + k]) * (c->tb ? B[j * K + k] : B[k * N + j]);
        s *= c->alpha;
        if (C) {
          int64_t cm = c->crank == 2 ? c->cd[0] : 1, cc = c->crank >= 1 ? c->cd[c->crank - 1] : 1;
          s += c->beta * C[(cm == 1 ? 0 : i) * cc + (cc == 1 ? 0 : j)];
        }
        ref[i * N + j] = clampf((float)s, lo, hi);
      }
    for (int bconst = 0; bconst < 2; bconst++)
      for (int cconst = 0; cconst < 2; cconst++) {
        spec s = {.op = "Gemm", .n_in = C ? 3 : 2, .n_attr = 4, .fused = c->fused, .lo = lo, .hi = hi};
        s.in[0] = (tin){2, {c->ta ? K : M, c->ta ? M : K}, A, 0};
        s.in[1] = (tin){2, {c->tb ? N : K, c->tb ? K : N}, B, bconst};
        s.in[2] = (tin){c->crank, {c->cd[0], c->cd[1]}, C, cconst};
        s.at[0] = (attr)INT("transA", c->ta);
        s.at[1] = (attr)INT("transB", c->tb);
        s.at[2] = (attr)FLT("alpha", c->alpha);
        s.at[3] = (attr)FLT("beta", c->beta);
        result res = run_spec(&s, 0, g_pool);
        int64_t yd[2] = {M, N};
        char what[64];
        snprintf(what, sizeof what, "gemm case %zu bconst=%d cconst=%d", ci, bconst, cconst);
        expect_dims(&res, 2, yd, what);
        assert_int_equal(res.used_xnn, bconst && !c->ta);
        expect_close(ref, res.y, M * N, 1e-4, what);
        assert_int_equal(res.flops, 2 * M * N * K);
        free(res.y);
      }
    free(A);
    free(B);
    free(C);
    free(ref);
  }
}

static void test_matmul(void **st) {
  (void)st;
  struct {
    int ra, rb;
    int64_t ad[4], bd[4];
    int yr;
    int64_t yd[4];
  } cases[] = {
      {2, 2, {5, 7}, {7, 4}, 2, {5, 4}},
      {1, 2, {7}, {7, 4}, 1, {4}},
      {2, 1, {5, 7}, {7}, 1, {5}},
      {1, 1, {7}, {7}, 0, {0}},
      {4, 3, {2, 1, 5, 7}, {3, 7, 4}, 4, {2, 3, 5, 4}},
      {3, 2, {2, 5, 7}, {7, 9}, 3, {2, 5, 9}},
      {2, 4, {5, 7}, {2, 3, 7, 4}, 4, {2, 3, 5, 4}},
      {2, 2, {130, 200}, {200, 150}, 2, {130, 150}},
      {3, 3, {12, 64, 32}, {12, 32, 64}, 3, {12, 64, 64}},
  };
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    __typeof__(cases[0]) *c = &cases[ci];
    float *A = rand_buf(prod(c->ad, c->ra)), *B = rand_buf(prod(c->bd, c->rb));
    /* reference via explicit broadcasting */
    int64_t M = c->ra == 1 ? 1 : c->ad[c->ra - 2], K = c->ad[c->ra - 1];
    int64_t N = c->rb == 1 ? 1 : c->bd[c->rb - 1];
    int ba = c->ra > 2 ? c->ra - 2 : 0, bb = c->rb > 2 ? c->rb - 2 : 0, br = ba > bb ? ba : bb;
    int64_t bdims[4], nb = 1;
    for (int i = 0; i < br; i++) {
      int ia = i - (br - ba), ib = i - (br - bb);
      int64_t da = ia >= 0 ? c->ad[ia] : 1, db = ib >= 0 ? c->bd[ib] : 1;
      bdims[i] = da > db ? da : db;
      nb *= bdims[i];
    }
    float *ref = malloc(sizeof(float) * (size_t)(nb * M * N));
    for (int64_t b = 0; b < nb; b++) {
      int64_t idx[4], rem = b, ao = 0, bo = 0, as = M * K, bs = K * N;
      for (int i = br - 1; i >= 0; i--) {
        idx[i] = rem % bdims[i];
        rem /= bdims[i];
      }
      for (int i = br - 1; i >= 0; i--) {
        int ia = i - (br - ba), ib = i - (br - bb);
        if (ia >= 0) {
          ao += (c->ad[ia] == 1 ? 0 : idx[i]) * as;
          as *= c->ad[ia];
        }
        if (ib >= 0) {
          bo += (c->bd[ib] == 1 ? 0 : idx[i]) * bs;
          bs *= c->bd[ib];
        }
      }
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
          double s = 0;
          for (int64_t k = 0; k < K; k++) s += (double)A[ao + i * K + k] * B[bo + k * N + j];
          ref[(b * M + i) * N + j] = (float)s;
        }
    }
    for (int bconst = 0; bconst < 2; bconst++) {
      spec s = {.op = "MatMul", .n_in = 2};
      s.in[0] = (tin){c->ra, {0}, A, 0};
      s.in[1] = (tin){c->rb, {0}, B, bconst};
      memcpy(s.in[0].dims, c->ad, sizeof c->ad);
      memcpy(s.in[1].dims, c->bd, sizeof c->bd);
      result res = run_spec(&s, 0, g_pool);
      char what[64];
      snprintf(what, sizeof what, "matmul case %zu bconst=%d", ci, bconst);
      expect_dims(&res, c->yr, c->yd, what);
      assert_int_equal(res.used_xnn, bconst && c->rb <= 2);
      expect_close(ref, res.y, nb * M * N, 1e-4, what);
      assert_int_equal(res.flops, 2 * nb * M * N * K);
      free(res.y);
    }
    free(A);
    free(B);
    free(ref);
  }
}

static void test_matmul_fused_and_errors(void **st) {
  (void)st;
  /* [2,3] x [3,2] = [[4, 1], [-10, -1]], clamped to [0, 10] */
  float A[6] = {1, -2, 3, -4, 5, -6}, B[6] = {1, 0, 0, 1, 1, 1};
  float want[4] = {4, 1, 0, 0};
  for (int bconst = 0; bconst < 2; bconst++) {
    spec s = {.op = "MatMul", .n_in = 2, .fused = 1, .lo = 0.0f, .hi = 10.0f};
    s.in[0] = (tin){2, {2, 3}, A, 0};
    s.in[1] = (tin){2, {3, 2}, B, bconst};
    result res = run_spec(&s, 0, NULL);
    assert_int_equal(res.rc, 0);
    expect_close(want, res.y, 4, 1e-6, "matmul fused");
    free(res.y);
  }
  spec bad = {.op = "MatMul", .n_in = 2};
  bad.in[0] = (tin){2, {2, 3}, A, 0};
  bad.in[1] = (tin){2, {2, 3}, B, 0};
  result r = run_spec(&bad, 0, NULL);
  assert_int_equal(r.rc, SF_ESHAPE);
  assert_non_null(strstr(r.msg, "MatMul node 'node'"));
  spec bg = {.op = "Gemm", .n_in = 3};
  bg.in[0] = (tin){2, {2, 3}, A, 0};
  bg.in[1] = (tin){2, {3, 2}, B, 1};
  bg.in[2] = (tin){2, {3, 2}, B, 1}; /* C [3,2] does not broadcast to [2,2] */
  r = run_spec(&bg, 0, NULL);
  assert_int_equal(r.rc, SF_ESHAPE);
}

/* ---- BatchNormalization ---- */
static void test_batchnorm(void **st) {
  (void)st;
  static const int64_t shapes[][6] = {{4, 2, 5, 3, 4}, {3, 3, 4, 7}, {2, 5, 6}, {5, 2, 3, 2, 3, 2}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    int r = (int)shapes[si][0];
    int64_t xd[5] = {0};
    for (int i = 0; i < r; i++) xd[i] = shapes[si][1 + i];
    int64_t N = xd[0], C = xd[1], P = prod(xd + 2, r - 2);
    float *x = rand_buf(N * C * P), *sc = rand_buf(C), *b = rand_buf(C), *m = rand_buf(C),
          *v = rand_buf(C);
    for (int64_t c = 0; c < C; c++) v[c] = fabsf(v[c]) + 0.1f;
    float eps = 1e-3f;
    float *ref = malloc(sizeof(float) * (size_t)(N * C * P));
    for (int64_t n = 0; n < N; n++)
      for (int64_t c = 0; c < C; c++)
        for (int64_t p = 0; p < P; p++) {
          int64_t i = (n * C + c) * P + p;
          ref[i] = (float)((x[i] - m[c]) / sqrt((double)v[c] + eps) * sc[c] + b[c]);
        }
    for (int nhwc = 0; nhwc < 2; nhwc++)
      for (int cst = 0; cst < 2; cst++) {
        if (nhwc && (r < 3 || r > 4)) continue;
        spec s = {.op = "BatchNormalization", .n_in = 5, .n_attr = 1, .at = {FLT("epsilon", eps)}};
        s.in[0] = (tin){r, {0}, x, 0};
        memcpy(s.in[0].dims, xd, sizeof xd);
        const float *ps[4] = {sc, b, m, v};
        for (int i = 0; i < 4; i++) s.in[1 + i] = (tin){1, {C}, ps[i], cst};
        result res = run_spec(&s, nhwc, g_pool);
        expect_dims(&res, r, xd, "batchnorm");
        expect_close(ref, res.y, N * C * P, 1e-5, "batchnorm");
        free(res.y);
      }
    free(x);
    free(sc);
    free(b);
    free(m);
    free(v);
    free(ref);
  }
}

/* ---- unsupported inputs are rejected with the node named ---- */
static void test_rejections(void **st) {
  (void)st;
  float d[256] = {0};
  /* MaxPool with the Indices output */
  spec mp = {.op = "MaxPool", .n_in = 1, .n_out = 2, .n_attr = 1, .at = {INTS("kernel_shape", 2, 2, 2)}};
  mp.in[0] = (tin){4, {1, 1, 4, 4}, d, 0};
  result r = run_spec(&mp, 0, NULL);
  assert_int_equal(r.rc, SF_EUNSUPPORTED);
  assert_non_null(strstr(r.msg, "MaxPool node 'node'"));
  /* BatchNormalization training mode */
  spec bn = {.op = "BatchNormalization", .n_in = 5, .n_attr = 1, .at = {INT("training_mode", 1)}};
  bn.in[0] = (tin){4, {1, 2, 2, 2}, d, 0};
  for (int i = 1; i < 5; i++) bn.in[i] = (tin){1, {2}, d, 1};
  r = run_spec(&bn, 0, NULL);
  assert_int_equal(r.rc, SF_EUNSUPPORTED);
  /* opset 7 spatial=0 */
  bn.at[0] = (attr)INT("spatial", 0);
  bn.opset = 7;
  r = run_spec(&bn, 0, NULL);
  assert_int_equal(r.rc, SF_EUNSUPPORTED);
  /* Conv: channel mismatch, bad kernel_shape, unknown auto_pad */
  spec cv = {.op = "Conv", .n_in = 2};
  cv.in[0] = (tin){4, {1, 3, 5, 5}, d, 0};
  cv.in[1] = (tin){4, {2, 2, 3, 3}, d, 1};
  r = run_spec(&cv, 0, NULL);
  assert_int_equal(r.rc, SF_ESHAPE);
  cv.in[1] = (tin){4, {2, 3, 3, 3}, d, 1};
  cv.n_attr = 1;
  cv.at[0] = (attr)INTS("kernel_shape", 2, 2, 2);
  r = run_spec(&cv, 0, NULL);
  assert_int_equal(r.rc, SF_ESHAPE);
  cv.at[0] = (attr)STR("auto_pad", "BOGUS");
  r = run_spec(&cv, 0, NULL);
  assert_int_equal(r.rc, SF_EUNSUPPORTED);
  cv.at[0] = (attr)INTS("strides", 2, 0, 1);
  r = run_spec(&cv, 0, NULL);
  assert_int_equal(r.rc, SF_EFORMAT);
  /* kernel larger than the padded input */
  cv.in[0] = (tin){4, {1, 3, 2, 2}, d, 0};
  cv.n_attr = 0;
  r = run_spec(&cv, 0, NULL);
  assert_int_equal(r.rc, SF_ESHAPE);
}

/* Conv with a non-float input is rejected in infer, naming the dtype. */
static void test_dtype_rejection(void **st) {
  (void)st;
  sf_graph *g = sf__graph_new();
  int64_t xd[4] = {1, 1, 3, 3}, wd[4] = {1, 1, 1, 1};
  int x = sf__graph_tensor(g, "x"), w = sf__graph_tensor(g, "w"), y = sf__graph_tensor(g, "y");
  sf__tensor_set_shape(&g->tensors[x], SF_I64, 4, xd);
  int64_t wv = 1;
  sf__tensor_set_const(g, w, SF_I64, 4, wd, &wv);
  int in[2] = {x, w};
  int ni = sf__graph_add_node(g, "Conv", "c1", 2, in, 1, &y);
  sf_node *n = &g->nodes[ni];
  n->op = &sf__op_Conv;
  sf_err err = {0};
  sf_kctx k = {.g = g, .node = n, .err = &err};
  assert_int_equal(n->op->infer(&k), SF_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "int64"));
  assert_non_null(strstr(err.msg, "'c1'"));
  sf__graph_free(g);
}

static int setup(void **st) {
  (void)st;
  /* this test checks the XNNPACK and C paths; the Winograd path has tests/unit_winograd.c */
  setenv("SEIFER_WINOGRAD", "0", 1);
  if (xnn_initialize(NULL) != xnn_status_success) return -1;
  g_pool = pthreadpool_create(4);
  return 0;
}

static int teardown(void **st) {
  (void)st;
  pthreadpool_destroy(g_pool);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv),          cmocka_unit_test(test_conv_transpose),
      cmocka_unit_test(test_pools),         cmocka_unit_test(test_global_pools),
      cmocka_unit_test(test_gemm),          cmocka_unit_test(test_matmul),
      cmocka_unit_test(test_matmul_fused_and_errors), cmocka_unit_test(test_batchnorm),
      cmocka_unit_test(test_rejections),    cmocka_unit_test(test_dtype_rejection),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
