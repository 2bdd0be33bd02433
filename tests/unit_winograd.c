/* Winograd convolution (runtime/ops/winograd.c): F(2x2,3x3), F(4x4,3x3) and F(6x6,3x3) against
 * a naive double-precision NHWC convolution on random data, over odd sizes, images smaller
 * than a tile, independent pads 0..2 per side, channel counts that are not multiples of 8,
 * batch 2, several blocks of tiles, a fused clamp, with and without a thread pool; and the Conv
 * operator taking the Winograd path (SEIFER_WINOGRAD=all) in a one-node channels-last graph. */
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
#include "runtime/ops/winograd.h"

static pthreadpool_t g_pool;

static uint32_t rng = 4242;
static float frand(void) {
  rng = rng * 1664525u + 1013904223u;
  return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}
static float *rand_buf(int64_t n) {
  float *p = malloc(sizeof(float) * (size_t)n + 64);
  for (int64_t i = 0; i < n; i++) p[i] = frand();
  return p;
}

typedef struct wcase {
  int64_t N, H, W, C, M;
  int64_t pt, pb, pl, pr;
  int bias, clamp;
} wcase;

/* Naive NHWC convolution in double; w is OIHW. Also returns per output the sum of |terms| in
 * mag (the scale a float32 rounding error is relative to). */
static void ref_conv(const wcase *c, const float *x, const float *w, const float *b, double *y,
                     double *mag, float lo, float hi) {
  int64_t OH = c->H + c->pt + c->pb - 2, OW = c->W + c->pl + c->pr - 2;
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t oy = 0; oy < OH; oy++)
      for (int64_t ox = 0; ox < OW; ox++)
        for (int64_t oc = 0; oc < c->M; oc++) {
          double s = b ? b[oc] : 0.0, a = b ? fabs(b[oc]) : 0.0;
          for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
              int64_t iy = oy + ky - c->pt, ix = ox + kx - c->pl;
              if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
              const float *xp = x + ((n * c->H + iy) * c->W + ix) * c->C;
              for (int64_t ic = 0; ic < c->C; ic++) {
                double t = (double)w[((oc * c->C + ic) * 3 + ky) * 3 + kx] * xp[ic];
                s += t;
                a += fabs(t);
              }
            }
          int64_t o = ((n * OH + oy) * OW + ox) * c->M + oc;
          y[o] = s < lo ? lo : (s > hi ? hi : s);
          mag[o] = a;
        }
}

/* Largest |y - ref| / (mean magnitude of the terms) over the output. */
static double run_case(const wcase *c, int m, pthreadpool_t pool, int64_t *scratch) {
  int64_t OH = c->H + c->pt + c->pb - 2, OW = c->W + c->pl + c->pr - 2;
  int64_t nx = c->N * c->H * c->W * c->C, ny = c->N * OH * OW * c->M;
  float *x = rand_buf(nx), *w = rand_buf(c->M * c->C * 9), *b = c->bias ? rand_buf(c->M) : NULL;
  float *y = malloc(sizeof(float) * (size_t)ny + 64);
  double *ref = malloc(sizeof(double) * (size_t)ny), *mag = malloc(sizeof(double) * (size_t)ny);
  float lo = c->clamp ? -0.25f : -INFINITY, hi = c->clamp ? 0.5f : INFINITY;
  ref_conv(c, x, w, b, ref, mag, lo, hi);
  sf_wino_shape s = {.N = c->N,
                     .H = c->H,
                     .W = c->W,
                     .C = c->C,
                     .M = c->M,
                     .OH = OH,
                     .OW = OW,
                     .pt = c->pt,
                     .pl = c->pl};
  sf_wino *op = NULL;
  assert_int_equal(sf__wino_create(&s, m, w, b, lo, hi, x, y, pool, &op), 0);
  assert_non_null(op);
  *scratch = sf__wino_scratch_floats(op);
  double avg = 0;
  for (int64_t i = 0; i < ny; i++) avg += mag[i];
  avg = avg / (double)ny + 1e-30;
  double worst = 0;
  for (int rep = 0; rep < 2; rep++) { /* a second run on the same buffers gives the same */
    for (int64_t i = 0; i < ny; i++) y[i] = 777.0f;
    assert_int_equal(sf__wino_run(op, pool), 0);
    for (int64_t i = 0; i < ny; i++) {
      double e = fabs(y[i] - ref[i]) / avg;
      if (!(e <= worst)) worst = e; /* NaN propagates */
      if (c->clamp) assert_true(y[i] >= lo && y[i] <= hi);
    }
  }
  sf__wino_free(op);
  free(x);
  free(w);
  free(b);
  free(y);
  free(ref);
  free(mag);
  return worst;
}

static const wcase cases[] = {
    /* N  H   W   C   M  pt pb pl pr bias clamp */
    {1, 5, 7, 3, 5, 1, 1, 1, 1, 1, 0},     /* tiny channels, odd sizes */
    {2, 9, 11, 13, 17, 0, 1, 1, 0, 1, 1},  /* batch 2, asymmetric pads, clamp */
    {1, 2, 2, 9, 4, 1, 1, 1, 1, 0, 0},     /* image smaller than one tile */
    {1, 3, 3, 8, 8, 0, 0, 0, 0, 1, 0},     /* 1x1 output, no padding */
    {1, 1, 4, 5, 3, 1, 1, 0, 0, 1, 0},     /* H = 1 */
    {2, 7, 7, 24, 33, 1, 0, 0, 1, 1, 1},   /* 7x7 map */
    {1, 6, 5, 10, 12, 2, 2, 2, 1, 1, 0},   /* pads of 2 */
    {1, 14, 13, 64, 40, 1, 1, 1, 1, 1, 1}, /* full vectors */
    {2, 40, 38, 48, 56, 1, 1, 1, 1, 1, 0}, /* several blocks of tiles */
    {1, 17, 19, 7, 9, 0, 1, 0, 1, 0, 1},   /* every channel in the tail */
};

/* Error bounds relative to the mean term magnitude, per tile size (measured maxima over these
 * cases: about 1.3e-7 for m = 2, 2e-6 for m = 4 and 6e-6 for m = 6; a wrong transform gives
 * errors of order 1). */
static double bound(int m) {
  return m == 2 ? 2e-6 : m == 4 ? 1e-5 : 5e-5;
}

static void test_shapes(void **st) {
  (void)st;
  for (int m = 2; m <= 6; m += 2)
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
      for (int pi = 0; pi < 2; pi++) {
        int64_t scratch = 0;
        double e = run_case(&cases[i], m, pi ? g_pool : NULL, &scratch);
        if (getenv("WINO_VERBOSE")) printf("F(%d) case %zu pool=%d: %.3g\n", m, i, pi, e);
        if (!(e <= bound(m))) {
          print_error("F(%d) case %zu pool=%d: relative error %g > %g\n", m, i, pi, e, bound(m));
          fail();
        }
        /* scratch stays within 16 MiB (none of these tiles is that large) */
        assert_true(scratch > 0 && scratch <= (1 << 22));
      }
}

static void test_rejects(void **st) {
  (void)st;
  float w[9 * 4] = {0}, x[64] = {0}, y[64];
  sf_wino *op = (sf_wino *)&op;
  sf_wino_shape s = {.N = 1, .H = 4, .W = 4, .C = 2, .M = 2, .OH = 2, .OW = 2};
  assert_int_equal(sf__wino_create(&s, 3, w, NULL, -INFINITY, INFINITY, x, y, NULL, &op),
                   SF_EINVAL);
  assert_null(op);
  s.OH = 7; /* more rows than input + top padding */
  assert_int_equal(sf__wino_create(&s, 2, w, NULL, -INFINITY, INFINITY, x, y, NULL, &op),
                   SF_EINVAL);
  sf__wino_free(NULL);
  assert_int_equal(sf__wino_scratch_floats(NULL), 0);
}

static void test_choose(void **st) {
  (void)st;
  /* ResNet-50 stage 4 (14x14, 256 channels) takes the Winograd path; 3 input channels and a
   * 1x1 map do not */
  sf_wino_shape big = {
      .N = 1, .H = 14, .W = 14, .C = 256, .M = 256, .OH = 14, .OW = 14, .pt = 1, .pl = 1};
  assert_true(sf__wino_choose(&big, 1) != 0);
  sf_wino_shape rgb = big;
  rgb.C = 3;
  assert_int_equal(sf__wino_choose(&rgb, 1), 0);
  sf_wino_shape dot = big;
  dot.H = dot.W = dot.OH = dot.OW = 1;
  assert_int_equal(sf__wino_choose(&dot, 1), 0);
}

/* ---- the Conv operator through a one-node channels-last graph ---- */

static void test_conv_op(void **st) {
  (void)st;
  const wcase c = {2, 12, 9, 20, 36, 1, 1, 1, 1, 1, 1};
  int64_t OH = c.H, OW = c.W, nx = c.N * c.H * c.W * c.C, ny = c.N * OH * OW * c.M;
  float *xh = rand_buf(nx), *w = rand_buf(c.M * c.C * 9), *b = rand_buf(c.M);
  double *ref = malloc(sizeof(double) * (size_t)ny), *mag = malloc(sizeof(double) * (size_t)ny);
  ref_conv(&c, xh, w, b, ref, mag, 0.0f, 6.0f);
  for (int pi = 0; pi < 2; pi++) {
    sf_graph *g = sf__graph_new();
    int ix = sf__graph_tensor(g, "x"), iw = sf__graph_tensor(g, "w"), ib = sf__graph_tensor(g, "b");
    int iy = sf__graph_tensor(g, "y");
    int64_t xd[4] = {c.N, c.C, c.H, c.W}, wd[4] = {c.M, c.C, 3, 3}, bd[1] = {c.M};
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
    n->fused_act = SF_ACT_CLAMP;
    n->act_min = 0.0f;
    n->act_max = 6.0f;
    sf_err err = {0};
    sf_kctx k = {.g = g, .node = n, .pool = pi ? g_pool : NULL, .err = &err};
    assert_int_equal(n->op->infer(&k), 0);
    assert_int_equal(n->op->wants_nhwc(&k), 1);
    /* channels-last physical layout, as the compiler leaves it */
    sf_gtensor *y = &g->tensors[iy];
    int64_t xp[4] = {c.N, c.H, c.W, c.C}, yp[4] = {c.N, OH, OW, c.M};
    memcpy(x->t.dims, xp, sizeof xp);
    x->t.layout = SF_LAYOUT_NHWC;
    x->t.data = xh;
    memcpy(y->t.dims, yp, sizeof yp);
    y->t.layout = SF_LAYOUT_NHWC;
    n->layout = SF_LAYOUT_NHWC;
    y->t.data = malloc(sizeof(float) * (size_t)ny + 64);
    y->owns_data = 1;
    assert_int_equal(n->op->prepare(&k), 0);
    /* the weights were copied (into the Winograd GEMMs) and no XNNPACK convolution exists */
    assert_int_equal(n->packed_inputs & 6u, 6u);
    assert_null(*(void **)n->state);
    for (int rep = 0; rep < 2; rep++) {
      assert_int_equal(n->op->run(&k), 0);
      const float *yv = y->t.data;
      for (int64_t i = 0; i < ny; i++)
        if (!(fabs(yv[i] - ref[i]) <= 1e-5 * (mag[i] + 1.0))) {
          print_error("pool=%d y[%lld] = %g, expected %g\n", pi, (long long)i, yv[i], ref[i]);
          fail();
        }
    }
    n->op->release(n);
    x->t.data = NULL; /* owned by the test */
    sf__graph_free(g);
  }
  free(xh);
  free(w);
  free(b);
  free(ref);
  free(mag);
}

static int setup(void **st) {
  (void)st;
  setenv("SEIFER_WINOGRAD", "all", 1); /* before the first Conv is prepared */
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
      cmocka_unit_test(test_shapes),
      cmocka_unit_test(test_rejects),
      cmocka_unit_test(test_choose),
      cmocka_unit_test(test_conv_op),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
