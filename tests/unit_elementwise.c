/* Element-wise, activation, reduction and softmax kernels, run through their op callbacks
 * (infer -> malloc'ed outputs -> prepare -> run -> release) on hand-built one-node graphs and
 * compared with straightforward reference computations. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <pthreadpool.h>
#include <xnnpack.h>

#include "runtime/op.h"
#include "runtime/ops/vmath.h"

static pthreadpool_t pool4;

/* ---- graph helpers ----------------------------------------------------------------------- */

static int64_t numel(int rank, const int64_t *d) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= d[i];
  return n;
}

/* An activation tensor holding a copy of data (owned by the tensor). */
static int act(sf_graph *g, const char *name, int dt, int rank, const int64_t *dims,
               const void *data) {
  int id = sf__graph_tensor(g, name);
  sf_gtensor *t = &g->tensors[id];
  sf__tensor_set_shape(t, dt, rank, dims);
  size_t nb = (size_t)numel(rank, dims) * sf_dtype_size(dt);
  t->t.data = calloc(1, nb + SF_READ_SLACK);
  assert_non_null(t->t.data);
  if (nb) memcpy(t->t.data, data, nb);
  t->owns_data = 1;
  t->kind = SF_TK_INPUT;
  return id;
}

static int cst(sf_graph *g, const char *name, int dt, int rank, const int64_t *dims,
               const void *data) {
  int id = sf__graph_tensor(g, name);
  assert_int_equal(sf__tensor_set_const(g, id, dt, rank, dims, data), 0);
  return id;
}

static int node(sf_graph *g, const char *op, int n_in, const int *in, int out) {
  int o[1] = {out};
  int i = sf__graph_add_node(g, op, NULL, n_in, in, 1, o);
  assert_true(i >= 0);
  g->nodes[i].op = sf__op_find("", op);
  assert_non_null(g->nodes[i].op);
  return i;
}

/* infer; output buffers malloc'ed (or aliased to input 0 when inplace); prepare; run; release. */
static int run_node_ex(sf_graph *g, int ni, pthreadpool_t pool, int inplace, sf_err *err) {
  sf_node *n = &g->nodes[ni];
  const sf_op_def *d = n->op;
  sf_kctx k = {g, n, pool, err};
  int rc = d->infer(&k);
  if (rc < 0) return rc;
  for (int i = 0; i < n->n_out; i++) {
    sf_gtensor *t = &g->tensors[n->out[i]];
    if (inplace) {
      t->t.data = g->tensors[n->in[0]].t.data;
      t->owns_data = 0;
    } else {
      t->t.data = calloc(1, (size_t)sf_tensor_nbytes(&t->t) + SF_READ_SLACK);
      assert_non_null(t->t.data);
      t->owns_data = 1;
    }
  }
  rc = d->prepare ? d->prepare(&k) : 0;
  if (rc == 0) rc = d->run(&k);
  if (rc == 0) rc = d->run(&k); /* a second run gives the same result */
  if (d->release) d->release(n);
  return rc;
}

static void run_node(sf_graph *g, int ni, pthreadpool_t pool) {
  sf_err err = {0};
  int rc = run_node_ex(g, ni, pool, 0, &err);
  if (rc) fprintf(stderr, "%s\n", err.msg);
  assert_int_equal(rc, 0);
}

static const float *outf(sf_graph *g, int ni) { return g->tensors[g->nodes[ni].out[0]].t.data; }
static const sf_tensor *outt(sf_graph *g, int ni) { return &g->tensors[g->nodes[ni].out[0]].t; }

static void fill(float *x, int64_t n, unsigned seed, float lo, float hi) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    x[i] = lo + (hi - lo) * (float)((seed >> 8) & 0xffff) / 65535.0f;
  }
}

static void assert_close(const float *got, const float *want, int64_t n, float rtol, float atol) {
  for (int64_t i = 0; i < n; i++) {
    if (isnan(want[i])) {
      assert_true(isnan(got[i]));
      continue;
    }
    float tol = atol + rtol * fabsf(want[i]);
    if (!(fabsf(got[i] - want[i]) <= tol) && !(got[i] == want[i])) {
      fprintf(stderr, "element %lld: got %.9g want %.9g\n", (long long)i, got[i], want[i]);
      fail();
    }
  }
}

/* Offset into an input of rank ra / dims da for output multi-index idx (rank r), numpy rules. */
static int64_t bidx(const int64_t *idx, int r, int ra, const int64_t *da) {
  int64_t off = 0;
  for (int i = 0; i < ra; i++) {
    int oi = i + (r - ra);
    off = off * da[i] + (da[i] == 1 ? 0 : idx[oi]);
  }
  return off;
}

static void unravel(int64_t f, int r, const int64_t *d, int64_t *idx) {
  for (int i = r - 1; i >= 0; i--) {
    idx[i] = f % d[i];
    f /= d[i];
  }
}

/* ---- binary float ------------------------------------------------------------------------ */

static float ref_bin(const char *op, float a, float b) {
  if (!strcmp(op, "Add")) return a + b;
  if (!strcmp(op, "Sub")) return a - b;
  if (!strcmp(op, "Mul")) return a * b;
  if (!strcmp(op, "Div")) return a / b;
  if (!strcmp(op, "Pow")) return powf(a, b);
  return a < 0 ? a * b : a; /* PRelu */
}

/* One broadcast binary op on random data, checked against the naive reference. */
static void check_bin(const char *op, int ra, const int64_t *da, int rb, const int64_t *db,
                      pthreadpool_t pool, float lo, float hi) {
  sf_graph *g = sf__graph_new();
  int64_t na = numel(ra, da), nb = numel(rb, db);
  float *a = malloc(sizeof(float) * (size_t)na), *b = malloc(sizeof(float) * (size_t)nb);
  fill(a, na, 1, -2, 2);
  fill(b, nb, 2, 0.5f, 2);
  int in[2] = {act(g, "a", SF_F32, ra, da, a), act(g, "b", SF_F32, rb, db, b)};
  int ni = node(g, op, 2, in, sf__graph_tensor(g, "y"));
  if (lo > -INFINITY || hi < INFINITY) {
    g->nodes[ni].fused_act = SF_ACT_CLAMP;
    g->nodes[ni].act_min = lo;
    g->nodes[ni].act_max = hi;
  }
  run_node(g, ni, pool);
  const sf_tensor *y = outt(g, ni);
  int r = ra > rb ? ra : rb;
  assert_int_equal(y->rank, r);
  int64_t n = sf_tensor_numel(y);
  float *want = malloc(sizeof(float) * (size_t)n);
  int64_t idx[SF_MAX_RANK];
  for (int64_t f = 0; f < n; f++) {
    unravel(f, r, y->dims, idx);
    float v = ref_bin(op, a[bidx(idx, r, ra, da)], b[bidx(idx, r, rb, db)]);
    want[f] = v < lo ? lo : v > hi ? hi : v;
  }
  assert_close(y->data, want, n, 1e-5f, 1e-6f);
  free(want);
  free(a);
  free(b);
  sf__graph_free(g);
}

static void test_binary_broadcast(void **s) {
  (void)s;
  static const char *ops[] = {"Add", "Sub", "Mul", "Div", "Pow"};
  const int64_t a1[3] = {2, 3, 4}, b1[2] = {3, 1};          /* middle broadcast */
  const int64_t a2[4] = {1, 3, 1, 5}, b2[4] = {2, 1, 4, 1}; /* both sides broadcast */
  const int64_t a3[1] = {1}, b3[3] = {2, 2, 3};              /* scalar-like first operand */
  const int64_t a4[1] = {0}, b4[2] = {3, 2};                 /* rank 0 */
  const int64_t a5[8] = {2, 1, 2, 1, 2, 1, 2, 1}, b5[8] = {1, 2, 1, 2, 1, 2, 1, 2}; /* rank 8 */
  const int64_t a6[4] = {4, 8, 40, 40}, b6[4] = {1, 8, 1, 1}; /* parallel chunks */
  for (int i = 0; i < 5; i++) {
    check_bin(ops[i], 3, a1, 2, b1, NULL, -INFINITY, INFINITY);
    check_bin(ops[i], 4, a2, 4, b2, NULL, -INFINITY, INFINITY);
    check_bin(ops[i], 1, a3, 3, b3, NULL, -INFINITY, INFINITY);
    check_bin(ops[i], 0, a4, 2, b4, NULL, -INFINITY, INFINITY);
    check_bin(ops[i], 2, b4, 0, a4, NULL, -INFINITY, INFINITY);
    check_bin(ops[i], 8, a5, 8, b5, NULL, -INFINITY, INFINITY);
    check_bin(ops[i], 8, a5, 8, b5, pool4, -INFINITY, INFINITY);
    check_bin(ops[i], 4, a6, 4, b6, pool4, -INFINITY, INFINITY);
    check_bin(ops[i], 4, b6, 4, a6, pool4, -INFINITY, INFINITY);
  }
}

static void test_fused_clamp(void **s) {
  (void)s;
  const int64_t a1[3] = {2, 3, 4}, b1[2] = {3, 1};
  const int64_t a5[8] = {2, 1, 2, 1, 2, 1, 2, 1}, b5[8] = {1, 2, 1, 2, 1, 2, 1, 2};
  static const char *ops[] = {"Add", "Sub", "Mul", "Div", "Pow"};
  for (int i = 0; i < 5; i++) {
    check_bin(ops[i], 3, a1, 2, b1, NULL, 0.0f, 1.5f);  /* XNNPACK path (not Pow) */
    check_bin(ops[i], 8, a5, 8, b5, NULL, 0.0f, 1.5f);  /* C path */
  }
  check_bin("PRelu", 3, a1, 2, b1, NULL, -0.5f, 1.0f);
}

static void test_prelu(void **s) {
  (void)s;
  const int64_t x1[4] = {2, 3, 4, 5}, s1[3] = {3, 1, 1}; /* NCHW per-channel: C path */
  const int64_t s2[1] = {5};                              /* last dim: XNNPACK prelu */
  const int64_t s3[1] = {1};                              /* scalar: leaky relu */
  const int64_t s4[4] = {2, 3, 4, 5};                     /* full shape */
  check_bin("PRelu", 4, x1, 3, s1, NULL, -INFINITY, INFINITY);
  check_bin("PRelu", 4, x1, 1, s2, NULL, -INFINITY, INFINITY);
  check_bin("PRelu", 4, x1, 1, s3, NULL, -INFINITY, INFINITY);
  check_bin("PRelu", 4, x1, 4, s4, pool4, -INFINITY, INFINITY);
  /* constant slopes take the XNNPACK paths */
  for (int c = 0; c < 2; c++) {
    sf_graph *g = sf__graph_new();
    float x[120], sl[5] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
    fill(x, 120, 7, -1, 1);
    int in[2] = {act(g, "x", SF_F32, 4, x1, x), cst(g, "s", SF_F32, 1, c ? s2 : s3, sl)};
    int ni = node(g, "PRelu", 2, in, sf__graph_tensor(g, "y"));
    run_node(g, ni, pool4);
    const float *y = outf(g, ni);
    for (int i = 0; i < 120; i++) {
      float slope = c ? sl[i % 5] : sl[0];
      assert_float_equal(y[i], x[i] < 0 ? x[i] * slope : x[i], 1e-6);
    }
    sf__graph_free(g);
  }
  /* slope that does not broadcast to X is a shape error */
  sf_graph *g = sf__graph_new();
  float x[6] = {0}, sl[6] = {0};
  const int64_t xd[1] = {3}, sd[2] = {2, 3};
  int in[2] = {act(g, "x", SF_F32, 1, xd, x), act(g, "s", SF_F32, 2, sd, sl)};
  int ni = node(g, "PRelu", 2, in, sf__graph_tensor(g, "y"));
  sf_err err = {0};
  assert_int_equal(run_node_ex(g, ni, NULL, 0, &err), SF_ESHAPE);
  sf__graph_free(g);
}

/* Opset < 7: Add with broadcast=1 and axis, PRelu with a per-channel 1-D slope. */
static void test_legacy_broadcast(void **s) {
  (void)s;
  sf_graph *g = sf__graph_new();
  g->opset = 6;
  const int64_t da[3] = {2, 3, 2}, db[1] = {2}, dc[1] = {3};
  float a[12], b[2] = {10, 20}, c[3] = {0.5f, 2, 3};
  fill(a, 12, 21, -1, 1);
  int in[2] = {act(g, "a", SF_F32, 3, da, a), act(g, "b", SF_F32, 1, db, b)};
  int n1 = node(g, "Add", 2, in, sf__graph_tensor(g, "y1"));
  sf__node_set_int(&g->nodes[n1], "broadcast", 1);
  sf__node_set_int(&g->nodes[n1], "axis", 0);
  int n2 = node(g, "Mul", 2, in, sf__graph_tensor(g, "y2")); /* default axis: trailing */
  sf__node_set_int(&g->nodes[n2], "broadcast", 1);
  int in2[2] = {in[0], cst(g, "c", SF_F32, 1, dc, c)};
  int n3 = node(g, "PRelu", 2, in2, sf__graph_tensor(g, "y3"));
  run_node(g, n1, NULL);
  run_node(g, n2, NULL);
  run_node(g, n3, NULL);
  const float *y1 = outf(g, n1), *y2 = outf(g, n2), *y3 = outf(g, n3);
  for (int i = 0; i < 12; i++) {
    assert_float_equal(y1[i], a[i] + b[i / 6], 1e-6);
    assert_float_equal(y2[i], a[i] * b[i % 2], 1e-6);
    float sl = c[(i / 2) % 3];
    assert_float_equal(y3[i], a[i] < 0 ? a[i] * sl : a[i], 1e-6);
  }
  assert_int_equal(outt(g, n1)->rank, 3);
  sf__graph_free(g);
}

/* ---- binary integer ------------------------------------------------------------------------ */

static void test_int_arith(void **s) {
  (void)s;
  sf_graph *g = sf__graph_new();
  const int64_t d[1] = {6}, d0[1] = {0};
  int64_t a[6] = {7, -7, 7, -7, INT64_MIN, 5}, b[6] = {2, 2, -2, 0, -1, 3}, two = 2;
  int ia = act(g, "a", SF_I64, 1, d, a), ib = act(g, "b", SF_I64, 1, d, b);
  int sc = cst(g, "two", SF_I64, 0, d0, &two);
  int in[2] = {ia, ib};
  int nd = node(g, "Div", 2, in, sf__graph_tensor(g, "q"));
  int nm = node(g, "Mul", 2, in, sf__graph_tensor(g, "m"));
  int na = node(g, "Add", 2, in, sf__graph_tensor(g, "s"));
  int in2[2] = {sc, ia};
  int ns = node(g, "Sub", 2, in2, sf__graph_tensor(g, "d"));
  int in3[2] = {sc, sc};
  int nss = node(g, "Mul", 2, in3, sf__graph_tensor(g, "ss"));
  run_node(g, nd, NULL);
  run_node(g, nm, NULL);
  run_node(g, na, NULL);
  run_node(g, ns, NULL);
  run_node(g, nss, NULL);
  const int64_t *q = (const int64_t *)outf(g, nd), *m = (const int64_t *)outf(g, nm);
  const int64_t *sum = (const int64_t *)outf(g, na), *df = (const int64_t *)outf(g, ns);
  const int64_t want_q[6] = {3, -3, -3, 0, INT64_MIN, 1}; /* trunc; x/0 = 0; wraps */
  for (int i = 0; i < 6; i++) assert_int_equal(q[i], want_q[i]);
  assert_int_equal(m[0], 14);
  assert_int_equal(m[4], INT64_MIN); /* INT64_MIN * -1 wraps */
  assert_int_equal(sum[1], -5);
  assert_int_equal(sum[4], INT64_MAX); /* INT64_MIN + -1 wraps */
  assert_int_equal(df[0], -5);
  assert_int_equal(df[1], 9);
  assert_int_equal(outt(g, nss)->rank, 0);
  assert_int_equal(*(const int64_t *)outf(g, nss), 4);
  assert_int_equal(outt(g, nd)->dtype, SF_I64);
  sf__graph_free(g);

  /* int32 broadcast, both paths of the broadcasting engine, with the pool */
  g = sf__graph_new();
  const int64_t da[3] = {64, 1, 300}, db[2] = {5, 1};
  int32_t *x = malloc(sizeof(int32_t) * 64 * 300), y5[5] = {1, -2, 3, 0, 5};
  for (int i = 0; i < 64 * 300; i++) x[i] = i - 5000;
  int in4[2] = {act(g, "x", SF_I32, 3, da, x), act(g, "y", SF_I32, 2, db, y5)};
  int n1 = node(g, "Div", 2, in4, sf__graph_tensor(g, "o"));
  int n2 = node(g, "Sub", 2, in4, sf__graph_tensor(g, "o2"));
  run_node(g, n1, pool4);
  run_node(g, n2, pool4);
  const sf_tensor *o = outt(g, n1);
  assert_int_equal(o->rank, 3);
  assert_int_equal(o->dims[1], 5);
  const int32_t *q32 = (const int32_t *)o->data, *s32 = (const int32_t *)outf(g, n2);
  for (int i = 0; i < 64; i++)
    for (int j = 0; j < 5; j++)
      for (int k = 0; k < 300; k++) {
        int32_t xv = x[i * 300 + k], yv = y5[j];
        assert_int_equal(q32[(i * 5 + j) * 300 + k], yv ? xv / yv : 0);
        assert_int_equal(s32[(i * 5 + j) * 300 + k], xv - yv);
      }
  free(x);
  sf__graph_free(g);
}

static void test_pow_types(void **s) {
  (void)s;
  sf_graph *g = sf__graph_new();
  const int64_t d[1] = {3}, d0[1] = {0};
  float fb[3] = {1.5f, 2, -3};
  int32_t ib[3] = {2, 3, -4}, ie[3] = {3, 2, 3};
  int64_t lb[3] = {2, -3, 5}, le[3] = {10, 3, 0};
  float fe[3] = {2, 3, 0.5f}, two = 2.0f, half = 0.5f;
  int f = act(g, "fb", SF_F32, 1, d, fb), i = act(g, "ib", SF_I32, 1, d, ib);
  int l = act(g, "lb", SF_I64, 1, d, lb), ie_ = act(g, "ie", SF_I32, 1, d, ie);
  int le_ = act(g, "le", SF_I64, 1, d, le), fe_ = act(g, "fe", SF_F32, 1, d, fe);
  int c2 = cst(g, "two", SF_F32, 0, d0, &two), ch = cst(g, "half", SF_F32, 0, d0, &half);
  int p1[2] = {f, le_}, p2[2] = {i, ie_}, p3[2] = {l, fe_}, p4[2] = {f, c2}, p5[2] = {fe_, ch};
  int p6[2] = {l, le_};
  int n1 = node(g, "Pow", 2, p1, sf__graph_tensor(g, "o1"));
  int n2 = node(g, "Pow", 2, p2, sf__graph_tensor(g, "o2"));
  int n3 = node(g, "Pow", 2, p3, sf__graph_tensor(g, "o3"));
  int n4 = node(g, "Pow", 2, p4, sf__graph_tensor(g, "o4"));
  int n5 = node(g, "Pow", 2, p5, sf__graph_tensor(g, "o5"));
  int n6 = node(g, "Pow", 2, p6, sf__graph_tensor(g, "o6"));
  for (int n = n1; n <= n6; n++) run_node(g, n, NULL);
  const float *o1 = outf(g, n1);
  assert_float_equal(o1[0], powf(1.5f, 10), 1e-3);
  assert_float_equal(o1[1], -0.0f + 8.0f, 1e-6);
  assert_float_equal(o1[2], 1.0f, 1e-6);
  const int32_t *o2 = (const int32_t *)outf(g, n2);
  assert_int_equal(o2[0], 8);
  assert_int_equal(o2[1], 9);
  assert_int_equal(o2[2], -64);
  assert_int_equal(outt(g, n3)->dtype, SF_I64);
  const int64_t *o3 = (const int64_t *)outf(g, n3);
  assert_int_equal(o3[0], 4);
  assert_int_equal(o3[1], -27);
  assert_int_equal(o3[2], 2); /* (int64)(5^0.5) */
  const float *o4 = outf(g, n4), *o5 = outf(g, n5);
  for (int k = 0; k < 3; k++) assert_float_equal(o4[k], fb[k] * fb[k], 1e-6);
  for (int k = 0; k < 3; k++) assert_float_equal(o5[k], sqrtf(fe[k]), 1e-6);
  const int64_t *o6 = (const int64_t *)outf(g, n6);
  assert_int_equal(o6[0], 1024);
  assert_int_equal(o6[1], -27);
  assert_int_equal(o6[2], 1);
  sf__graph_free(g);
}

/* ---- in-place ------------------------------------------------------------------------------ */

static void test_inplace(void **s) {
  (void)s;
  static const char *ops[] = {"Add", "Mul", "Pow", "Relu", "Sigmoid", "Tanh", "Exp", "Sqrt"};
  const int64_t d[2] = {37, 1000}, db[1] = {1000};
  const int64_t d8[8] = {2, 3, 2, 3, 2, 3, 2, 3}, db8[8] = {1, 3, 1, 3, 1, 3, 1, 3};
  for (int big = 0; big < 2; big++)
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
      int bin = o < 3;
      int r = big ? 2 : 8;
      const int64_t *da = big ? d : d8, *dbb = big ? db : db8;
      int64_t n = numel(r, da), nb = numel(big ? 1 : 8, dbb);
      float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)nb);
      fill(a, n, 3, 0.1f, 2);
      fill(b, nb, 4, 0.5f, 1.5f);
      for (int inplace = 0; inplace < 2; inplace++) {
        sf_graph *g = sf__graph_new();
        int in[2] = {act(g, "a", SF_F32, r, da, a), act(g, "b", SF_F32, big ? 1 : 8, dbb, b)};
        int ni = node(g, ops[o], bin ? 2 : 1, in, sf__graph_tensor(g, "y"));
        sf_err err = {0};
        assert_int_equal(run_node_ex(g, ni, pool4, 0, &err), 0);
        float *want = malloc(sizeof(float) * (size_t)n);
        memcpy(want, outf(g, ni), sizeof(float) * (size_t)n);
        sf__graph_free(g);
        g = sf__graph_new();
        in[0] = act(g, "a", SF_F32, r, da, a);
        in[1] = act(g, "b", SF_F32, big ? 1 : 8, dbb, b);
        ni = node(g, ops[o], bin ? 2 : 1, in, sf__graph_tensor(g, "y"));
        /* in place: a single run (a second one would apply the op twice) */
        sf_node *nn = &g->nodes[ni];
        sf_kctx k = {g, nn, pool4, &err};
        assert_int_equal(nn->op->infer(&k), 0);
        g->tensors[nn->out[0]].t.data = g->tensors[in[0]].t.data;
        if (nn->op->prepare) assert_int_equal(nn->op->prepare(&k), 0);
        assert_int_equal(nn->op->run(&k), 0);
        if (nn->op->release) nn->op->release(nn);
        assert_close(g->tensors[in[0]].t.data, want, n, 1e-6f, 0);
        free(want);
        sf__graph_free(g);
      }
      free(a);
      free(b);
    }
}

/* ---- unary ---------------------------------------------------------------------------------- */

static float ref_unary(const char *op, float x) {
  if (!strcmp(op, "Relu")) return x < 0 ? 0 : x;
  if (!strcmp(op, "LeakyRelu")) return x < 0 ? 0.01f * x : x;
  if (!strcmp(op, "Sigmoid")) return 1.0f / (1.0f + expf(-x));
  if (!strcmp(op, "HardSigmoid")) return fmaxf(0, fminf(1, 0.2f * x + 0.5f));
  if (!strcmp(op, "HardSwish")) return x * fmaxf(0, fminf(1, x / 6 + 0.5f));
  if (!strcmp(op, "Tanh")) return tanhf(x);
  if (!strcmp(op, "Exp")) return expf(x);
  if (!strcmp(op, "Sqrt")) return sqrtf(x);
  if (!strcmp(op, "Erf")) return erff(x);
  return NAN;
}

static void test_unary(void **s) {
  (void)s;
  static const char *ops[] = {"Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish",
                              "Tanh", "Exp",       "Sqrt",    "Erf"};
  const int64_t sizes[3][2] = {{3, 5}, {1, 1}, {64, 3000}};
  for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
    for (int z = 0; z < 3; z++) {
      sf_graph *g = sf__graph_new();
      int64_t n = numel(2, sizes[z]);
      float *x = malloc(sizeof(float) * (size_t)n), *want = malloc(sizeof(float) * (size_t)n);
      fill(x, n, 5, strcmp(ops[o], "Sqrt") ? -8.0f : 0.0f, 8.0f);
      for (int64_t i = 0; i < n; i++) want[i] = ref_unary(ops[o], x[i]);
      int in[1] = {act(g, "x", SF_F32, 2, sizes[z], x)};
      int ni = node(g, ops[o], 1, in, sf__graph_tensor(g, "y"));
      run_node(g, ni, z == 2 ? pool4 : NULL);
      assert_close(outf(g, ni), want, n, 2e-5f, 1e-6f);
      free(x);
      free(want);
      sf__graph_free(g);
    }

  /* attributes */
  sf_graph *g = sf__graph_new();
  const int64_t d[1] = {4};
  float x[4] = {-2, -0.5f, 0.5f, 4};
  int in[1] = {act(g, "x", SF_F32, 1, d, x)};
  int n1 = node(g, "LeakyRelu", 1, in, sf__graph_tensor(g, "y1"));
  sf__node_set_float(&g->nodes[n1], "alpha", 0.5f);
  int n2 = node(g, "HardSigmoid", 1, in, sf__graph_tensor(g, "y2"));
  sf__node_set_float(&g->nodes[n2], "alpha", 0.5f);
  sf__node_set_float(&g->nodes[n2], "beta", 0.25f);
  run_node(g, n1, NULL);
  run_node(g, n2, NULL);
  const float w1[4] = {-1, -0.25f, 0.5f, 4}, w2[4] = {0, 0, 0.5f, 1};
  assert_close(outf(g, n1), w1, 4, 0, 0);
  assert_close(outf(g, n2), w2, 4, 0, 0);
  sf__graph_free(g);

  /* integer Relu */
  g = sf__graph_new();
  int32_t xi[4] = {-3, 0, 5, INT32_MIN};
  in[0] = act(g, "x", SF_I32, 1, d, xi);
  n1 = node(g, "Relu", 1, in, sf__graph_tensor(g, "y"));
  run_node(g, n1, NULL);
  const int32_t *yi = (const int32_t *)outf(g, n1);
  assert_int_equal(yi[0], 0);
  assert_int_equal(yi[2], 5);
  assert_int_equal(yi[3], 0);
  sf__graph_free(g);
}

static void check_clip(int opset, int have_min, int have_max, float mn, float mx, int as_const,
                       pthreadpool_t pool, int64_t n) {
  sf_graph *g = sf__graph_new();
  g->opset = opset;
  const int64_t d[1] = {n}, d0[1] = {0};
  float *x = malloc(sizeof(float) * (size_t)n), *want = malloc(sizeof(float) * (size_t)n);
  fill(x, n, 9, -3, 3);
  int in[3] = {act(g, "x", SF_F32, 1, d, x), -1, -1};
  int nin = 1;
  if (opset >= 11) {
    if (have_min)
      in[1] = as_const ? cst(g, "mn", SF_F32, 0, d0, &mn) : act(g, "mn", SF_F32, 0, d0, &mn);
    if (have_max)
      in[2] = as_const ? cst(g, "mx", SF_F32, 0, d0, &mx) : act(g, "mx", SF_F32, 0, d0, &mx);
    nin = have_max ? 3 : have_min ? 2 : 1;
  }
  int ni = node(g, "Clip", nin, in, sf__graph_tensor(g, "y"));
  if (opset < 11) {
    if (have_min) sf__node_set_float(&g->nodes[ni], "min", mn);
    if (have_max) sf__node_set_float(&g->nodes[ni], "max", mx);
  }
  run_node(g, ni, pool);
  float lo = have_min ? mn : -INFINITY, hi = have_max ? mx : INFINITY;
  for (int64_t i = 0; i < n; i++) want[i] = fminf(fmaxf(x[i], lo), hi);
  assert_close(outf(g, ni), want, n, 0, 0);
  free(x);
  free(want);
  sf__graph_free(g);
}

static void test_clip(void **s) {
  (void)s;
  for (int c = 0; c < 2; c++) {
    check_clip(13, 1, 1, -1, 1, c, NULL, 100);
    check_clip(13, 1, 0, -1, 0, c, NULL, 100);
    check_clip(13, 0, 1, 0, 0.5f, c, NULL, 100);
    check_clip(13, 1, 1, 2, 1, c, NULL, 100); /* min > max: everything becomes max */
    check_clip(13, 1, 1, -1, 1, c, pool4, 100000);
  }
  check_clip(13, 0, 0, 0, 0, 1, NULL, 100);
  check_clip(6, 1, 1, -0.5f, 0.5f, 0, NULL, 100);
  check_clip(6, 0, 0, 0, 0, 0, NULL, 100);

  /* int8 with a max only */
  sf_graph *g = sf__graph_new();
  g->opset = 13;
  const int64_t d[1] = {4}, d0[1] = {0};
  int8_t x[4] = {-128, -5, 5, 127}, mx = 6;
  int in[3] = {act(g, "x", SF_I8, 1, d, x), -1, cst(g, "mx", SF_I8, 0, d0, &mx)};
  int ni = node(g, "Clip", 3, in, sf__graph_tensor(g, "y"));
  run_node(g, ni, NULL);
  const int8_t *y = (const int8_t *)outf(g, ni);
  assert_int_equal(y[0], -128);
  assert_int_equal(y[2], 5);
  assert_int_equal(y[3], 6);
  sf__graph_free(g);
}

static void test_bad_dtype(void **s) {
  (void)s;
  sf_graph *g = sf__graph_new();
  const int64_t d[1] = {2};
  int32_t x[2] = {1, 2};
  double xd[2] = {1, 2};
  int in[1] = {act(g, "x", SF_I32, 1, d, x)};
  int ni = sf__graph_add_node(g, "Sigmoid", "sig1", 1, in, 1, (int[]){sf__graph_tensor(g, "y")});
  g->nodes[ni].op = sf__op_find("", "Sigmoid");
  sf_err err = {0};
  assert_int_equal(run_node_ex(g, ni, NULL, 0, &err), SF_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "int32"));
  assert_non_null(strstr(err.msg, "sig1"));
  int in2[2] = {act(g, "a", SF_F64, 1, d, xd), act(g, "b", SF_F64, 1, d, xd)};
  ni = node(g, "Sqrt", 1, in2, sf__graph_tensor(g, "z"));
  assert_int_equal(run_node_ex(g, ni, NULL, 0, &err), SF_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "float64"));
  ni = node(g, "Div", 2, in2, sf__graph_tensor(g, "q")); /* float64 arithmetic works */
  run_node(g, ni, NULL);
  assert_true(((const double *)outf(g, ni))[1] == 1.0);
  int in3[2] = {in[0], in2[0]};
  ni = node(g, "Mul", 2, in3, sf__graph_tensor(g, "w"));
  assert_true(run_node_ex(g, ni, NULL, 0, &err) < 0);
  sf__graph_free(g);
}

/* ---- softmax -------------------------------------------------------------------------------- */

static void check_softmax(int opset, int64_t axis, int has_axis, int r, const int64_t *d,
                          pthreadpool_t pool, float scale) {
  sf_graph *g = sf__graph_new();
  g->opset = opset;
  int64_t n = numel(r, d);
  float *x = malloc(sizeof(float) * (size_t)n), *want = malloc(sizeof(float) * (size_t)n);
  fill(x, n, 11, -scale, scale);
  int in[1] = {act(g, "x", SF_F32, r, d, x)};
  int ni = node(g, "Softmax", 1, in, sf__graph_tensor(g, "y"));
  if (has_axis) sf__node_set_int(&g->nodes[ni], "axis", axis);
  run_node(g, ni, pool);
  int64_t a = has_axis ? axis : opset < 13 ? 1 : -1;
  if (a < 0) a += r;
  int64_t outer = 1, len = 1, inner = 1;
  for (int i = 0; i < a; i++) outer *= d[i];
  if (opset < 13) {
    for (int i = (int)a; i < r; i++) len *= d[i];
  } else {
    len = d[a];
    for (int i = (int)a + 1; i < r; i++) inner *= d[i];
  }
  for (int64_t o = 0; o < outer; o++)
    for (int64_t c = 0; c < inner; c++) {
      double m = -INFINITY, sum = 0;
      for (int64_t k = 0; k < len; k++) m = fmax(m, x[(o * len + k) * inner + c]);
      for (int64_t k = 0; k < len; k++) sum += exp(x[(o * len + k) * inner + c] - m);
      for (int64_t k = 0; k < len; k++)
        want[(o * len + k) * inner + c] = (float)(exp(x[(o * len + k) * inner + c] - m) / sum);
    }
  assert_close(outf(g, ni), want, n, 1e-5f, 1e-7f);
  free(x);
  free(want);
  sf__graph_free(g);
}

static void test_softmax(void **s) {
  (void)s;
  const int64_t d3[3] = {3, 4, 5}, big[3] = {8, 100, 130};
  for (int a = -3; a < 3; a++) {
    check_softmax(13, a, 1, 3, d3, NULL, 3);
    check_softmax(11, a, 1, 3, d3, NULL, 3);
  }
  check_softmax(13, 0, 0, 3, d3, NULL, 3);
  check_softmax(11, 0, 0, 3, d3, NULL, 3);
  check_softmax(13, 0, 0, 3, d3, NULL, 10000); /* large numbers */
  check_softmax(13, 1, 1, 3, big, pool4, 5);
  check_softmax(13, 2, 1, 3, big, pool4, 5);
  check_softmax(13, 0, 1, 3, big, pool4, 5);
}

/* ---- reductions ----------------------------------------------------------------------------- */

static void check_reduce(const char *op, int opset, int r, const int64_t *d, int na,
                         const int64_t *axes, int keep, int noop, int axes_input,
                         pthreadpool_t pool) {
  sf_graph *g = sf__graph_new();
  g->opset = opset;
  int64_t n = numel(r, d);
  float *x = malloc(sizeof(float) * (size_t)n);
  fill(x, n, 13, -1, 1);
  int in[2] = {act(g, "x", SF_F32, r, d, x), -1};
  const int64_t da[1] = {na};
  if (axes_input) in[1] = cst(g, "axes", SF_I64, 1, da, axes);
  int ni = node(g, op, axes_input ? 2 : 1, in, sf__graph_tensor(g, "y"));
  sf_node *nd = &g->nodes[ni];
  if (!axes_input && na) sf__node_set_ints(nd, "axes", axes, na);
  if (keep >= 0) sf__node_set_int(nd, "keepdims", keep);
  if (noop) sf__node_set_int(nd, "noop_with_empty_axes", 1);
  run_node(g, ni, pool);
  int mask[SF_MAX_RANK] = {0};
  for (int i = 0; i < na; i++) mask[axes[i] < 0 ? axes[i] + r : axes[i]] = 1;
  if (na == 0)
    for (int i = 0; i < r; i++) mask[i] = !noop;
  const sf_tensor *y = outt(g, ni);
  int want_rank = 0;
  for (int i = 0; i < r; i++) want_rank += (!mask[i] || keep != 0);
  assert_int_equal(y->rank, want_rank);
  /* reference: output index from the kept input coordinates */
  int64_t ko[SF_MAX_RANK], kd[SF_MAX_RANK], nk = 0, cnt = 1;
  for (int i = 0; i < r; i++)
    if (!mask[i]) kd[nk++] = d[i];
    else cnt *= d[i];
  int64_t nout = numel((int)nk, kd);
  assert_int_equal(sf_tensor_numel(y), nout);
  double *acc = calloc((size_t)nout, sizeof(double));
  int64_t idx[SF_MAX_RANK];
  for (int64_t f = 0; f < n; f++) {
    unravel(f, r, d, idx);
    int64_t o = 0, j = 0;
    for (int i = 0; i < r; i++)
      if (!mask[i]) ko[j] = idx[i], o = o * kd[j] + ko[j], j++;
    acc[o] += x[f];
  }
  float *want = malloc(sizeof(float) * (size_t)nout);
  for (int64_t i = 0; i < nout; i++)
    want[i] = (float)(strcmp(op, "ReduceMean") ? acc[i] : acc[i] / (double)cnt);
  assert_close(y->data, want, nout, 1e-4f, 1e-5f);
  free(acc);
  free(want);
  free(x);
  sf__graph_free(g);
}

static void test_reduce(void **s) {
  (void)s;
  const int64_t d3[3] = {3, 4, 5}, d4[4] = {2, 3, 1, 7}, big[4] = {2, 64, 30, 40};
  const int64_t ax0[1] = {0}, ax1[1] = {1}, ax2[1] = {-1}, ax02[2] = {0, 2}, ax12[2] = {1, 2};
  const int64_t ax23[2] = {2, 3}, ax13[2] = {-3, -1};
  static const char *ops[] = {"ReduceMean", "ReduceSum"};
  for (int o = 0; o < 2; o++)
    for (int keep = -1; keep <= 1; keep++) {
      check_reduce(ops[o], 11, 3, d3, 1, ax0, keep, 0, 0, NULL);
      check_reduce(ops[o], 11, 3, d3, 1, ax1, keep, 0, 0, NULL);
      check_reduce(ops[o], 11, 3, d3, 1, ax2, keep, 0, 0, NULL);
      check_reduce(ops[o], 11, 3, d3, 2, ax02, keep, 0, 0, NULL);
      check_reduce(ops[o], 11, 3, d3, 2, ax12, keep, 0, 0, NULL);
      check_reduce(ops[o], 11, 3, d3, 0, NULL, keep, 0, 0, NULL);
      check_reduce(ops[o], 11, 4, d4, 2, ax13, keep, 0, 0, NULL);
      check_reduce(ops[o], 11, 4, d4, 2, ax23, keep, 0, 0, NULL);
      check_reduce(ops[o], 18, 3, d3, 2, ax02, keep, 0, 1, NULL);
      check_reduce(ops[o], 18, 3, d3, 0, ax02, keep, 1, 1, NULL); /* noop */
      check_reduce(ops[o], 18, 3, d3, 0, ax02, keep, 0, 1, NULL); /* empty axes input: all */
      check_reduce(ops[o], 11, 4, big, 2, ax23, keep, 0, 0, pool4);
      check_reduce(ops[o], 11, 4, big, 2, ax12, keep, 0, 0, pool4);
      check_reduce(ops[o], 11, 4, big, 1, ax0, keep, 0, 0, pool4);
      check_reduce(ops[o], 11, 4, big, 2, ax13, keep, 0, 0, pool4);
    }

  /* int64 sum with axes as an input (opset 13) */
  sf_graph *g = sf__graph_new();
  g->opset = 13;
  const int64_t d[2] = {2, 3}, da[1] = {1};
  int64_t x[6] = {1, 2, 3, 4, 5, INT64_MAX}, axis = 1;
  int in[2] = {act(g, "x", SF_I64, 2, d, x), cst(g, "a", SF_I64, 1, da, &axis)};
  int ni = node(g, "ReduceSum", 2, in, sf__graph_tensor(g, "y"));
  sf__node_set_int(&g->nodes[ni], "keepdims", 0);
  run_node(g, ni, NULL);
  const sf_tensor *y = outt(g, ni);
  assert_int_equal(y->rank, 1);
  assert_int_equal(y->dims[0], 2);
  assert_int_equal(((const int64_t *)y->data)[0], 6);
  assert_int_equal(((const int64_t *)y->data)[1], (int64_t)((uint64_t)9 + (uint64_t)INT64_MAX));
  /* axes from a non-constant input are unsupported; out-of-range axes are shape errors */
  int in2[2] = {in[0], in[0]};
  ni = node(g, "ReduceSum", 2, in2, sf__graph_tensor(g, "z"));
  sf_err err = {0};
  assert_int_equal(run_node_ex(g, ni, NULL, 0, &err), SF_EUNSUPPORTED);
  int in3[1] = {in[0]};
  ni = node(g, "ReduceMean", 1, in3, sf__graph_tensor(g, "w"));
  assert_int_equal(run_node_ex(g, ni, NULL, 0, &err), SF_EUNSUPPORTED); /* int64 mean */
  ni = node(g, "ReduceSum", 1, in3, sf__graph_tensor(g, "v"));
  const int64_t bad[1] = {2};
  sf__node_set_ints(&g->nodes[ni], "axes", bad, 1);
  assert_int_equal(run_node_ex(g, ni, NULL, 0, &err), SF_ESHAPE);
  sf__graph_free(g);
}

/* Vectorisable exp / tanh / erf against double-precision libm, in units of the float ulp. */
static double ulps(float got, double want) {
  float w = (float)want, a = fabsf(w);
  if (a < 1e-30f) return fabs(got - want) / 1e-30 * 1e-7;
  return fabs(got - want) / (nextafterf(a, INFINITY) - a);
}

static void test_vmath(void **s) {
  (void)s;
  double me = 0, mt = 0, mf = 0;
  for (float x = -86.0f; x < 88.5f; x += 0.000731f * (1 + fabsf(x))) {
    float xs[3] = {x, x * 1e-3f, x * 1e-7f};
    for (int k = 0; k < 3; k++) {
      me = fmax(me, ulps(sf__vm_exp(xs[k]), exp(xs[k])));
      mt = fmax(mt, ulps(sf__vm_tanh(xs[k]), tanh(xs[k])));
      mf = fmax(mf, ulps(sf__vm_erf(xs[k]), erf(xs[k])));
    }
  }
  assert_true(me <= 1.0);
  assert_true(mt <= 2.0);
  assert_true(mf <= 8.0);
  assert_true(isinf(sf__vm_exp(89.0f)) && sf__vm_exp(-INFINITY) == 0.0f);
  assert_true(isnan(sf__vm_exp(NAN)) && isnan(sf__vm_tanh(NAN)) && isnan(sf__vm_erf(NAN)));
  assert_true(sf__vm_tanh(INFINITY) == 1.0f && sf__vm_tanh(-INFINITY) == -1.0f);
  assert_true(sf__vm_erf(INFINITY) == 1.0f && sf__vm_erf(-10.0f) == -1.0f);
}

static void test_flops(void **s) {
  (void)s;
  sf_graph *g = sf__graph_new();
  const int64_t d[2] = {4, 5};
  float x[20] = {0};
  int in[2] = {act(g, "x", SF_F32, 2, d, x), act(g, "b", SF_F32, 2, d, x)};
  int ni = node(g, "Add", 2, in, sf__graph_tensor(g, "y"));
  sf_err err = {0};
  sf_kctx k = {g, &g->nodes[ni], NULL, &err};
  assert_int_equal(g->nodes[ni].op->infer(&k), 0);
  assert_int_equal(g->nodes[ni].op->flops(&k), 20);
  sf__graph_free(g);
}

static int setup(void **s) {
  (void)s;
  if (xnn_initialize(NULL) != xnn_status_success) return -1;
  pool4 = pthreadpool_create(4);
  return pool4 ? 0 : -1;
}

static int teardown(void **s) {
  (void)s;
  pthreadpool_destroy(pool4);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_binary_broadcast), cmocka_unit_test(test_fused_clamp),
      cmocka_unit_test(test_prelu),            cmocka_unit_test(test_legacy_broadcast),
      cmocka_unit_test(test_int_arith),
      cmocka_unit_test(test_pow_types),        cmocka_unit_test(test_inplace),
      cmocka_unit_test(test_unary),            cmocka_unit_test(test_clip),
      cmocka_unit_test(test_bad_dtype),        cmocka_unit_test(test_softmax),
      cmocka_unit_test(test_reduce),           cmocka_unit_test(test_vmath),
      cmocka_unit_test(test_flops),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
