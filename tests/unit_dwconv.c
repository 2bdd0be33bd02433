/* Depthwise convolution kernel (runtime/ops/dwconv.c) against a naive double-precision NHWC
 * reference on random data: 3x3, 5x5 and 1-D 1x3 kernels, strides 1 and 2 per axis,
 * independent pads 0..4 per side, images smaller than the kernel or than a register block,
 * channel counts with a partial last block of 16, batch 2, no activation / clamp / Swish, both
 * variants (staged, and direct: 3x3 at stride 2 or on inputs above 512 KiB), with and without
 * a thread pool (which splits rows into ranges); and the Conv operator with a fused Swish on
 * this path and on XNNPACK's (a grouped convolution), in one-node channels-last graphs. The
 * kernel cases are skipped on CPUs without AVX-512 (the operator then runs XNNPACK, which the
 * operator test still checks). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <pthreadpool.h>
#include <xnnpack.h>

#include "runtime/op.h"
#include "runtime/ops/dwconv.h"

static pthreadpool_t g_pool;

static uint32_t rng = 777;
static float frand(void) {
  rng = rng * 1664525u + 1013904223u;
  return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}
static float *rand_buf(int64_t n) {
  float *p = malloc(sizeof(float) * (size_t)n + 64);
  for (int64_t i = 0; i < n; i++) p[i] = frand() * 2.0f; /* Swish sees both signs, |x| > 1 */
  return p;
}

typedef struct dcase {
  int64_t N, H, W, C, kh, kw, sh, sw, pt, pb, pl, pr;
  int act, bias;
} dcase;

static double swish_d(double v) { return v / (1.0 + exp(-v)); }

/* Naive NHWC depthwise convolution in double; w is ONNX [C][1][kh][kw]. mag: sum of |terms|. */
static void ref_dw(const dcase *c, int64_t OH, int64_t OW, const float *x, const float *w,
                   const float *b, float lo, float hi, double *y, double *mag) {
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t oy = 0; oy < OH; oy++)
      for (int64_t ox = 0; ox < OW; ox++)
        for (int64_t ch = 0; ch < c->C; ch++) {
          double s = b ? b[ch] : 0.0, a = b ? fabs(b[ch]) : 0.0;
          for (int64_t ky = 0; ky < c->kh; ky++)
            for (int64_t kx = 0; kx < c->kw; kx++) {
              int64_t iy = oy * c->sh - c->pt + ky, ix = ox * c->sw - c->pl + kx;
              if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
              double t = (double)w[(ch * c->kh + ky) * c->kw + kx] *
                         x[((n * c->H + iy) * c->W + ix) * c->C + ch];
              s += t;
              a += fabs(t);
            }
          if (c->act == SF_DW_ACT_CLAMP) s = s < lo ? lo : (s > hi ? hi : s);
          if (c->act == SF_DW_ACT_SWISH) s = swish_d(s);
          int64_t o = ((n * OH + oy) * OW + ox) * c->C + ch;
          y[o] = s;
          mag[o] = a;
        }
}

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p0, int64_t p1) {
  return (in + p0 + p1 - k) / s + 1;
}

/* Largest |y - ref| / (sum of |terms| + 1) over the output (two runs). */
static double run_case(const dcase *c, pthreadpool_t pool) {
  int64_t OH = out_size(c->H, c->kh, c->sh, c->pt, c->pb);
  int64_t OW = out_size(c->W, c->kw, c->sw, c->pl, c->pr);
  int64_t nx = c->N * c->H * c->W * c->C, ny = c->N * OH * OW * c->C;
  float *x = rand_buf(nx), *w = rand_buf(c->C * c->kh * c->kw), *b = c->bias ? rand_buf(c->C) : NULL;
  float *y = malloc(sizeof(float) * (size_t)ny + 64);
  double *ref = malloc(sizeof(double) * (size_t)ny), *mag = malloc(sizeof(double) * (size_t)ny);
  float lo = -0.5f, hi = 1.0f;
  ref_dw(c, OH, OW, x, w, b, lo, hi, ref, mag);
  sf_dw_shape s = {.N = c->N, .H = c->H, .W = c->W, .C = c->C, .OH = OH, .OW = OW,
                   .kh = c->kh, .kw = c->kw, .sh = c->sh, .sw = c->sw, .pt = c->pt, .pl = c->pl,
                   .act = c->act, .lo = lo, .hi = hi};
  assert_true(sf__dw_supported(&s));
  sf_dw *op = NULL;
  assert_int_equal(sf__dw_create(&s, w, b, pool, &op), 0);
  assert_non_null(op);
  double worst = 0;
  for (int rep = 0; rep < 2; rep++) {
    for (int64_t i = 0; i < ny; i++) y[i] = 777.0f;
    sf__dw_run(op, x, y, pool);
    for (int64_t i = 0; i < ny; i++) {
      double e = fabs(y[i] - ref[i]) / (mag[i] + 1.0);
      if (!(e <= worst)) worst = e; /* NaN propagates */
      if (c->act == SF_DW_ACT_CLAMP) assert_true(y[i] >= lo && y[i] <= hi);
    }
  }
  sf__dw_free(op);
  free(x);
  free(w);
  free(b);
  free(y);
  free(ref);
  free(mag);
  return worst;
}

static const dcase cases[] = {
    /* N  H   W   C  kh kw sh sw pt pb pl pr act bias */
    {1, 12, 13, 16, 3, 3, 1, 1, 1, 1, 1, 1, SF_DW_ACT_NONE, 1},   /* one full block */
    {2, 9, 21, 40, 3, 3, 2, 2, 0, 1, 0, 1, SF_DW_ACT_SWISH, 1},   /* batch 2, tail of 8, s2 */
    {1, 15, 15, 33, 5, 5, 1, 1, 2, 2, 2, 2, SF_DW_ACT_CLAMP, 0},  /* tail of 1, no bias */
    {1, 8, 8, 64, 5, 5, 2, 2, 1, 2, 1, 2, SF_DW_ACT_SWISH, 1},    /* 5x5 s2, asymmetric pads */
    {1, 2, 3, 17, 5, 5, 1, 1, 4, 3, 4, 3, SF_DW_ACT_NONE, 1},     /* image smaller than kernel */
    {1, 1, 40, 24, 1, 3, 1, 1, 0, 0, 1, 1, SF_DW_ACT_SWISH, 1},   /* 1-D (H = 1, kh = 1) */
    {1, 11, 30, 48, 5, 5, 2, 1, 2, 2, 0, 0, SF_DW_ACT_NONE, 1},   /* sh != sw, no side pad */
    {1, 20, 9, 32, 3, 3, 1, 2, 0, 0, 2, 1, SF_DW_ACT_CLAMP, 1},   /* sw 2, pads 0/2 */
    {2, 30, 31, 144, 3, 3, 1, 1, 1, 1, 1, 1, SF_DW_ACT_SWISH, 1}, /* many blocks and rows */
    {1, 41, 40, 88, 3, 3, 1, 1, 1, 0, 0, 1, SF_DW_ACT_CLAMP, 1},  /* > 512 KiB: direct, tail */
    {1, 7, 7, 1152, 5, 5, 1, 1, 2, 2, 2, 2, SF_DW_ACT_SWISH, 1},  /* wide, small map */
};

static void test_kernel(void **st) {
  (void)st;
  sf_dw_shape probe = {.N = 1, .H = 3, .W = 3, .C = 16, .OH = 1, .OW = 1, .kh = 3, .kw = 3,
                       .sh = 1, .sw = 1};
  if (!sf__dw_supported(&probe)) {
    print_message("no AVX-512 on this CPU: depthwise kernel cases skipped\n");
    skip();
  }
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    for (int pi = 0; pi < 2; pi++) {
      double e = run_case(&cases[i], pi ? g_pool : NULL);
      if (getenv("DW_VERBOSE")) printf("case %zu pool=%d: %.3g\n", i, pi, e);
      if (!(e <= 1e-6)) {
        print_error("case %zu pool=%d: relative error %g > 1e-6\n", i, pi, e);
        fail();
      }
    }
}

static void test_rejects(void **st) {
  (void)st;
  sf_dw_shape s = {.N = 1, .H = 8, .W = 8, .C = 32, .OH = 8, .OW = 8, .kh = 3, .kw = 3,
                   .sh = 1, .sw = 1, .pt = 1, .pl = 1};
  sf_dw_shape bad[5];
  for (int i = 0; i < 5; i++) bad[i] = s;
  bad[0].C = 8;  /* fewer than 16 channels */
  bad[1].kh = bad[1].kw = 7; /* 7x7 */
  bad[2].kh = 5; /* 5x3 */
  bad[3].sw = 3; /* stride 3 */
  bad[4].act = 7;
  float w[32 * 9] = {0};
  for (int i = 0; i < 5; i++) {
    assert_false(sf__dw_supported(&bad[i]));
    sf_dw *op = (sf_dw *)&op;
    assert_int_equal(sf__dw_create(&bad[i], w, NULL, NULL, &op), SF_EINVAL);
    assert_null(op);
  }
  sf__dw_free(NULL);
}

/* ---- the Conv operator with a fused Swish, channels-last one-node graph ---- */

/* NHWC Conv (group g) with fused Swish against the reference; dw: expect the depthwise kernel
 * (no XNNPACK operator) when the CPU has AVX-512. */
static void conv_op_case(int64_t C, int64_t M, int64_t group, pthreadpool_t pool) {
  const int64_t N = 1, H = 10, W = 11, K = 3;
  int64_t gic = C / group, goc = M / group, nx = N * H * W * C, ny = N * H * W * M;
  float *xh = rand_buf(nx), *w = rand_buf(M * gic * K * K), *b = rand_buf(M);
  double *ref = malloc(sizeof(double) * (size_t)ny), *mag = malloc(sizeof(double) * (size_t)ny);
  for (int64_t oy = 0; oy < H; oy++)
    for (int64_t ox = 0; ox < W; ox++)
      for (int64_t oc = 0; oc < M; oc++) {
        double s = b[oc], a = fabs(b[oc]);
        int64_t g = oc / goc;
        for (int64_t ky = 0; ky < K; ky++)
          for (int64_t kx = 0; kx < K; kx++) {
            int64_t iy = oy + ky - 1, ix = ox + kx - 1;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            for (int64_t ic = 0; ic < gic; ic++) {
              double t = (double)w[((oc * gic + ic) * K + ky) * K + kx] *
                         xh[(iy * W + ix) * C + g * gic + ic];
              s += t;
              a += fabs(t);
            }
          }
        ref[(oy * W + ox) * M + oc] = swish_d(s);
        mag[(oy * W + ox) * M + oc] = a;
      }
  sf_graph *g = sf__graph_new();
  int ix = sf__graph_tensor(g, "x"), iw = sf__graph_tensor(g, "w"), ib = sf__graph_tensor(g, "b");
  int iy = sf__graph_tensor(g, "y");
  int64_t xd[4] = {N, C, H, W}, wd[4] = {M, gic, K, K}, bd[1] = {M};
  assert_int_equal(sf__tensor_set_const(g, iw, SF_F32, 4, wd, w), 0);
  assert_int_equal(sf__tensor_set_const(g, ib, SF_F32, 1, bd, b), 0);
  sf_gtensor *x = &g->tensors[ix];
  sf__tensor_set_shape(x, SF_F32, 4, xd);
  x->kind = SF_TK_INPUT;
  int ins[3] = {ix, iw, ib}, outs[1] = {iy};
  int ni = sf__graph_add_node(g, "Conv", "conv", 3, ins, 1, outs);
  sf_node *n = &g->nodes[ni];
  n->op = sf__op_find("", "Conv");
  assert_non_null(n->op);
  int64_t pads[4] = {1, 1, 1, 1};
  sf__node_set_ints(n, "pads", pads, 4);
  sf__node_set_int(n, "group", group);
  n->fused_act = SF_ACT_SWISH;
  sf_err err = {0};
  sf_kctx k = {.g = g, .node = n, .pool = pool, .err = &err};
  assert_int_equal(n->op->infer(&k), 0);
  assert_int_equal(n->op->wants_nhwc(&k), 1);
  sf_gtensor *y = &g->tensors[iy];
  int64_t xp[4] = {N, H, W, C}, yp[4] = {N, H, W, M};
  memcpy(x->t.dims, xp, sizeof xp);
  x->t.layout = SF_LAYOUT_NHWC;
  x->t.data = xh;
  memcpy(y->t.dims, yp, sizeof yp);
  y->t.layout = SF_LAYOUT_NHWC;
  n->layout = SF_LAYOUT_NHWC;
  y->t.data = malloc(sizeof(float) * (size_t)ny + 64);
  y->owns_data = 1;
  assert_int_equal(n->op->prepare(&k), 0);
  assert_int_equal(n->packed_inputs & 6u, 6u); /* weights copied into a kernel */
  sf_dw_shape probe = {.N = 1, .H = 3, .W = 3, .C = 16, .OH = 1, .OW = 1, .kh = 3, .kw = 3,
                       .sh = 1, .sw = 1};
  int dw = group == C && C == M && C >= 16 && sf__dw_supported(&probe);
  if (dw) assert_null(*(void **)n->state); /* depthwise kernel: no XNNPACK operator */
  else assert_non_null(*(void **)n->state);
  for (int rep = 0; rep < 2; rep++) {
    assert_int_equal(n->op->run(&k), 0);
    const float *yv = y->t.data;
    for (int64_t i = 0; i < ny; i++)
      if (!(fabs(yv[i] - ref[i]) <= 1e-5 * (mag[i] + 1.0))) {
        print_error("C=%lld group=%lld y[%lld] = %g, expected %g\n", (long long)C,
                    (long long)group, (long long)i, yv[i], ref[i]);
        fail();
      }
  }
  n->op->release(n);
  x->t.data = NULL; /* owned by the test */
  sf__graph_free(g);
  free(xh);
  free(w);
  free(b);
  free(ref);
  free(mag);
}

static void test_conv_op_swish(void **st) {
  (void)st;
  for (int pi = 0; pi < 2; pi++) {
    pthreadpool_t pool = pi ? g_pool : NULL;
    conv_op_case(48, 48, 48, pool); /* depthwise kernel, Swish in registers */
    conv_op_case(12, 24, 3, pool);  /* XNNPACK convolution, then the Swish pass */
  }
}

static int setup(void **st) {
  (void)st;
  if (xnn_initialize(NULL) != xnn_status_success) return -1;
  g_pool = pthreadpool_create(3);
  return g_pool ? 0 : -1;
}

static int teardown(void **st) {
  (void)st;
  pthreadpool_destroy(g_pool);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kernel),
      cmocka_unit_test(test_rejects),
      cmocka_unit_test(test_conv_op_swish),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
