/* Shape and data-movement kernels (runtime/ops/shape.c, tensor.c, transpose.c, resize.c):
 * one-node graphs run through infer -> allocate -> prepare -> run -> release. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "graph/compile.h"
#include "onnx/onnx.h"
#include "runtime/op.h"
#include "runtime/ops/datamove.h"

/* ---- harness ------------------------------------------------------------------------------ */

/* Activation input holding a copy of data. */
static int act(sf_graph *g, const char *name, int dtype, int rank, const int64_t *dims,
               const void *data) {
  int id = sf__graph_tensor(g, name);
  sf_gtensor *t = &g->tensors[id];
  sf__tensor_set_shape(t, dtype, rank, dims);
  int64_t nb = sf_tensor_nbytes(&t->t);
  t->t.data = malloc((size_t)nb + 16);
  memcpy(t->t.data, data, (size_t)nb);
  t->owns_data = 1;
  t->kind = SF_TK_INPUT;
  return id;
}

static int cst(sf_graph *g, const char *name, int dtype, int rank, const int64_t *dims,
               const void *data) {
  int id = sf__graph_tensor(g, name);
  assert_int_equal(sf__tensor_set_const(g, id, dtype, rank, dims, data), 0);
  return id;
}

static int ints1(sf_graph *g, const char *name, int n, const int64_t *v) {
  int64_t d = n;
  return cst(g, name, SF_I64, 1, &d, v);
}

static int node(sf_graph *g, const char *op, int n_in, const int *in, int n_out, int *out) {
  for (int i = 0; i < n_out; i++) {
    char nm[32];
    snprintf(nm, sizeof nm, "out%d", i);
    out[i] = sf__graph_tensor(g, nm);
  }
  return sf__graph_add_node(g, op, "n", n_in, in, n_out, out);
}

/* Run node ni through the op callbacks with malloc'ed outputs. */
static int run_node(sf_graph *g, int ni, pthreadpool_t pool, sf_err *err) {
  sf_node *n = &g->nodes[ni];
  const sf_op_def *op = sf__op_find("", n->op_type);
  assert_non_null(op);
  n->op = op;
  sf_kctx k = {.g = g, .node = n, .pool = pool, .err = err};
  err->code = 0;
  err->msg[0] = 0;
  int rc = op->infer(&k);
  if (rc < 0) return rc;
  for (int j = 0; j < n->n_out; j++) {
    sf_gtensor *t = sf__out(g, n, j);
    if (!t) continue;
    int64_t nb = sf_tensor_nbytes(&t->t);
    assert_true(nb >= 0);
    if (t->owns_data) free(t->t.data);
    t->t.data = malloc((size_t)nb + 16);
    memset(t->t.data, 0xab, (size_t)nb + 16);
    t->owns_data = 1;
  }
  if (op->prepare) rc = op->prepare(&k);
  if (rc == 0) rc = op->run(&k);
  if (op->release) op->release(n);
  return rc;
}

static sf_gtensor *outp(sf_graph *g, int ni, int j) { return sf__out(g, &g->nodes[ni], j); }

static void assert_shape(const sf_gtensor *t, int rank, const int64_t *dims) {
  assert_int_equal(t->t.rank, rank);
  for (int i = 0; i < rank; i++) assert_int_equal(t->t.dims[i], dims[i]);
}

static void assert_floats(const float *got, const float *want, int n, float tol) {
  for (int i = 0; i < n; i++) {
    if (fabsf(got[i] - want[i]) > tol) {
      print_error("element %d: got %.7g want %.7g\n", i, got[i], want[i]);
      fail();
    }
  }
}

static void iota(float *x, int n) {
  for (int i = 0; i < n; i++) x[i] = (float)i;
}

/* ---- Transpose ---------------------------------------------------------------------------- */

/* Reference: out index -> in index by explicit coordinates. */
static void naive_transpose(const char *in, char *out, int r, const int64_t *dims,
                            const int *perm, size_t es) {
  int64_t n = 1, od[SF_MAX_RANK], istr[SF_MAX_RANK];
  for (int i = 0; i < r; i++) n *= dims[i];
  for (int i = 0; i < r; i++) od[i] = dims[perm[i]];
  int64_t acc = 1;
  for (int i = r - 1; i >= 0; i--) {
    istr[i] = acc;
    acc *= dims[i];
  }
  for (int64_t o = 0; o < n; o++) {
    int64_t rem = o, off = 0;
    for (int j = r - 1; j >= 0; j--) {
      off += (rem % od[j]) * istr[perm[j]];
      rem /= od[j];
    }
    memcpy(out + o * (int64_t)es, in + off * (int64_t)es, es);
  }
}

static void check_transpose(pthreadpool_t pool, int r, const int64_t *dims, const int *perm,
                            size_t es) {
  int64_t n = 1;
  for (int i = 0; i < r; i++) n *= dims[i];
  size_t nb = (size_t)n * es;
  unsigned char *in = malloc(nb), *a = malloc(nb), *b = malloc(nb), *c = malloc(nb);
  for (size_t i = 0; i < nb; i++) in[i] = (unsigned char)(i * 7 + i / 251);
  naive_transpose((char *)in, (char *)a, r, dims, perm, es);
  sf__transpose(pool, in, b, r, dims, perm, es);
  sf__transpose_general(pool, in, c, r, dims, perm, es);
  assert_memory_equal(a, b, nb);
  assert_memory_equal(a, c, nb);
  free(in);
  free(a);
  free(b);
  free(c);
}

static void test_transpose_paths(void **st) {
  (void)st;
  pthreadpool_t pool = pthreadpool_create(4);
  static const int64_t nchw[4] = {2, 37, 13, 11}, big[4] = {1, 64, 56, 56};
  static const int to_nhwc[4] = {0, 2, 3, 1}, to_nchw[4] = {0, 3, 1, 2};
  static const size_t sizes[4] = {1, 2, 4, 8};
  for (int s = 0; s < 4; s++) {
    check_transpose(NULL, 4, nchw, to_nhwc, sizes[s]);
    check_transpose(NULL, 4, nchw, to_nchw, sizes[s]);
    check_transpose(pool, 4, big, to_nhwc, sizes[s]);
    check_transpose(pool, 4, big, to_nchw, sizes[s]);
  }
  static const int64_t d3[3] = {3, 65, 130};
  static const int p3[3] = {0, 2, 1};
  check_transpose(pool, 3, d3, p3, 4);
  /* Every permutation of a rank-4 tensor with a size-1 dim. */
  static const int64_t d4[4] = {2, 1, 5, 7};
  int p[4];
  for (int a = 0; a < 4; a++)
    for (int b = 0; b < 4; b++)
      for (int c = 0; c < 4; c++)
        for (int d = 0; d < 4; d++) {
          if (a == b || a == c || a == d || b == c || b == d || c == d) continue;
          p[0] = a, p[1] = b, p[2] = c, p[3] = d;
          check_transpose(NULL, 4, d4, p, 4);
          check_transpose(NULL, 4, d4, p, 2);
        }
  /* Rank 6, general path with contiguous inner runs and with strided inner loop. */
  static const int64_t d6[6] = {2, 3, 2, 4, 3, 5};
  static const int p6a[6] = {4, 1, 0, 3, 2, 5}, p6b[6] = {5, 0, 3, 1, 4, 2};
  check_transpose(pool, 6, d6, p6a, 4);
  check_transpose(pool, 6, d6, p6b, 8);
  pthreadpool_destroy(pool);
}

static void test_transpose_op(void **st) {
  (void)st;
  sf_graph *g = sf__graph_new();
  int64_t d[3] = {2, 3, 4};
  float x[24];
  iota(x, 24);
  int in[1] = {act(g, "x", SF_F32, 3, d, x)}, out[1];
  int ni = node(g, "Transpose", 1, in, 1, out);
  sf_err err;
  assert_int_equal(run_node(g, ni, NULL, &err), 0); /* default perm reverses */
  int64_t want[3] = {4, 3, 2};
  assert_shape(outp(g, ni, 0), 3, want);
  const float *y = outp(g, ni, 0)->t.data;
  assert_true(y[1] == 12 && y[2] == 4 && y[6] == 1);
  int64_t bad[3] = {0, 0, 1};
  sf__node_set_ints(&g->nodes[ni], "perm", bad, 3);
  assert_int_equal(run_node(g, ni, NULL, &err), SF_EINVAL);
  sf__graph_free(g);
}

/* ---- Reshape family ----------------------------------------------------------------------- */

static int reshape(sf_graph *g, const int64_t *shape, int n, int allowzero, sf_err *err) {
  int64_t d[3] = {2, 3, 4};
  float x[24];
  iota(x, 24);
  int in[2] = {act(g, "x", SF_F32, 3, d, x), ints1(g, "shape", n, shape)}, out[1];
  int ni = node(g, "Reshape", 2, in, 1, out);
  if (allowzero) sf__node_set_int(&g->nodes[ni], "allowzero", 1);
  int rc = run_node(g, ni, NULL, err);
  return rc < 0 ? rc : ni;
}

static void test_reshape(void **st) {
  (void)st;
  sf_err err;
  sf_graph *g = sf__graph_new();
  static const int64_t s1[2] = {0, -1}, w1[2] = {2, 12};
  int ni = reshape(g, s1, 2, 0, &err);
  assert_true(ni >= 0);
  assert_shape(outp(g, ni, 0), 2, w1);
  assert_true(((float *)outp(g, ni, 0)->t.data)[23] == 23);
  sf__graph_free(g);

  g = sf__graph_new();
  static const int64_t s2[4] = {-1, 0, 2, 2}, w2[4] = {2, 3, 2, 2};
  ni = reshape(g, s2, 4, 0, &err);
  assert_true(ni >= 0);
  assert_shape(outp(g, ni, 0), 4, w2);
  sf__graph_free(g);

  g = sf__graph_new();
  static const int64_t s3[2] = {5, -1};
  assert_int_equal(reshape(g, s3, 2, 0, &err), SF_ESHAPE);
  assert_non_null(strstr(err.msg, "2x3x4"));
  assert_non_null(strstr(err.msg, "[5,-1]"));
  sf__graph_free(g);

  g = sf__graph_new();
  static const int64_t s4[2] = {4, 7};
  assert_int_equal(reshape(g, s4, 2, 0, &err), SF_ESHAPE);
  assert_non_null(strstr(err.msg, "[4,7]"));
  sf__graph_free(g);

  g = sf__graph_new(); /* allowzero: 0 is a real zero, element count then mismatches */
  static const int64_t s5[2] = {0, 24};
  assert_int_equal(reshape(g, s5, 2, 1, &err), SF_ESHAPE);
  sf__graph_free(g);

  g = sf__graph_new(); /* shape that is not a constant */
  int64_t d[1] = {3}, sh[2] = {6, 4}, two = 2;
  float x[3] = {0};
  int in[2] = {act(g, "x", SF_F32, 1, d, x), act(g, "s", SF_I64, 1, &two, sh)}, out[1];
  ni = node(g, "Reshape", 2, in, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), SF_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "constant"));
  sf__graph_free(g);
}

static void test_squeeze_unsqueeze_flatten(void **st) {
  (void)st;
  sf_err err;
  sf_graph *g = sf__graph_new();
  int64_t d[4] = {1, 3, 1, 2};
  float x[6];
  iota(x, 6);
  int xi = act(g, "x", SF_F32, 4, d, x), out[1];
  int ni = node(g, "Squeeze", 1, &xi, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  int64_t w1[2] = {3, 2};
  assert_shape(outp(g, ni, 0), 2, w1);
  static const int64_t ax[1] = {-2};
  int in2[2] = {xi, ints1(g, "axes", 1, ax)};
  ni = node(g, "Squeeze", 2, in2, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  int64_t w2[3] = {1, 3, 2};
  assert_shape(outp(g, ni, 0), 3, w2);
  static const int64_t bad[1] = {1};
  in2[1] = ints1(g, "axes2", 1, bad);
  ni = node(g, "Squeeze", 2, in2, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), SF_ESHAPE);

  static const int64_t uax[2] = {5, 0};
  in2[1] = ints1(g, "uaxes", 2, uax);
  ni = node(g, "Unsqueeze", 2, in2, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  int64_t w3[6] = {1, 1, 3, 1, 2, 1};
  assert_shape(outp(g, ni, 0), 6, w3);
  assert_memory_equal(outp(g, ni, 0)->t.data, x, sizeof x);

  ni = node(g, "Flatten", 1, &xi, 1, out);
  sf__node_set_int(&g->nodes[ni], "axis", -1);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  int64_t w4[2] = {3, 2};
  assert_shape(outp(g, ni, 0), 2, w4);
  sf__graph_free(g);
}

/* ---- Slice -------------------------------------------------------------------------------- */

static void test_slice(void **st) {
  (void)st;
  sf_err err;
  sf_graph *g = sf__graph_new();
  int64_t d[2] = {3, 10};
  float x[30];
  iota(x, 30);
  int xi = act(g, "x", SF_F32, 2, d, x), out[1];
  /* axis 1: from -1 down past the start by -3; axis 0: rows 2..0 by -2 */
  static const int64_t st0[2] = {-1, 100}, en[2] = {-1000, -100}, axes[2] = {1, 0},
                       steps[2] = {-3, -2};
  int in[5] = {xi, ints1(g, "s", 2, st0), ints1(g, "e", 2, en), ints1(g, "a", 2, axes),
               ints1(g, "p", 2, steps)};
  int ni = node(g, "Slice", 5, in, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  int64_t w[2] = {2, 4};
  assert_shape(outp(g, ni, 0), 2, w);
  static const float want[8] = {29, 26, 23, 20, 9, 6, 3, 0};
  assert_floats(outp(g, ni, 0)->t.data, want, 8, 0);

  /* Positive steps, out-of-range ends clamp, default axes. */
  static const int64_t s2[2] = {1, 2}, e2[2] = {INT64_MAX, 9};
  int in2[3] = {xi, ints1(g, "s2", 2, s2), ints1(g, "e2", 2, e2)};
  ni = node(g, "Slice", 3, in2, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  int64_t w2[2] = {2, 7};
  assert_shape(outp(g, ni, 0), 2, w2);
  assert_true(((float *)outp(g, ni, 0)->t.data)[0] == 12);
  assert_true(((float *)outp(g, ni, 0)->t.data)[13] == 28);

  /* Empty result when start is past the end. */
  static const int64_t s3[1] = {20}, e3[1] = {30}, a3[1] = {-1};
  int in3[4] = {xi, ints1(g, "s3", 1, s3), ints1(g, "e3", 1, e3), ints1(g, "a3", 1, a3)};
  ni = node(g, "Slice", 4, in3, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  int64_t w3[2] = {3, 0};
  assert_shape(outp(g, ni, 0), 2, w3);

  /* Slice-1 attributes. */
  ni = node(g, "Slice", 1, &xi, 1, out);
  static const int64_t as[1] = {1}, ae[1] = {-1}, aa[1] = {0};
  sf__node_set_ints(&g->nodes[ni], "starts", as, 1);
  sf__node_set_ints(&g->nodes[ni], "ends", ae, 1);
  sf__node_set_ints(&g->nodes[ni], "axes", aa, 1);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  int64_t w4[2] = {1, 10};
  assert_shape(outp(g, ni, 0), 2, w4);
  assert_true(((float *)outp(g, ni, 0)->t.data)[0] == 10);

  /* step 0 is an error */
  static const int64_t z[1] = {0};
  int in5[5] = {xi, ints1(g, "s5", 1, z), ints1(g, "e5", 1, s3), ints1(g, "a5", 1, z),
                ints1(g, "p5", 1, z)};
  ni = node(g, "Slice", 5, in5, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), SF_EINVAL);
  sf__graph_free(g);
}

/* ---- Concat / Split / Gather -------------------------------------------------------------- */

static void test_concat_split(void **st) {
  (void)st;
  sf_err err;
  sf_graph *g = sf__graph_new();
  int64_t da[3] = {2, 1, 2}, db[3] = {2, 2, 2};
  static const float a[4] = {0, 1, 2, 3}, b[8] = {10, 11, 12, 13, 14, 15, 16, 17};
  int in[2] = {act(g, "a", SF_F32, 3, da, a), act(g, "b", SF_F32, 3, db, b)}, out[3];
  int ni = node(g, "Concat", 2, in, 1, out);
  sf__node_set_int(&g->nodes[ni], "axis", -2);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  static const float want[12] = {0, 1, 10, 11, 12, 13, 2, 3, 14, 15, 16, 17};
  assert_floats(outp(g, ni, 0)->t.data, want, 12, 0);
  int cat = out[0];
  /* Split it back along axis 1 as [1, 2] */
  static const int64_t sp[2] = {1, 2};
  int sin[2] = {cat, ints1(g, "split", 2, sp)};
  g->tensors[cat].kind = SF_TK_INPUT;
  int si = sf__graph_add_node(g, "Split", "s", 2, sin, 2,
                              (int[]){sf__graph_tensor(g, "s0"), sf__graph_tensor(g, "s1")});
  sf__node_set_int(&g->nodes[si], "axis", 1);
  assert_int_equal(run_node(g, si, NULL, &err), 0);
  assert_floats(outp(g, si, 0)->t.data, a, 4, 0);
  assert_floats(outp(g, si, 1)->t.data, b, 8, 0);
  /* Mismatched shapes */
  int64_t dc[3] = {3, 1, 2};
  float c[6] = {0};
  int bad[2] = {in[0], act(g, "c", SF_F32, 3, dc, c)};
  ni = node(g, "Concat", 2, bad, 1, out);
  sf__node_set_int(&g->nodes[ni], "axis", 1);
  assert_int_equal(run_node(g, ni, NULL, &err), SF_ESHAPE);
  /* Equal split not divisible before opset 18 */
  int64_t d7 = 7;
  float x7[7] = {0};
  int x7i = act(g, "x7", SF_F32, 1, &d7, x7);
  ni = node(g, "Split", 1, &x7i, 3, out);
  assert_int_equal(run_node(g, ni, NULL, &err), SF_ESHAPE);
  g->opset = 18;
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  assert_int_equal(outp(g, ni, 0)->t.dims[0], 3);
  assert_int_equal(outp(g, ni, 2)->t.dims[0], 1);
  sf__graph_free(g);
}


static void test_concat_threaded(void **st) {
  (void)st;
  pthreadpool_t pool = pthreadpool_create(4);
  sf_err err;
  sf_graph *g = sf__graph_new();
  int64_t da[4] = {1, 50, 60, 7}, db[4] = {1, 50, 60, 5};
  int na = 50 * 60 * 7, nb = 50 * 60 * 5;
  float *a = malloc(sizeof(float) * (size_t)na), *b = malloc(sizeof(float) * (size_t)nb);
  iota(a, na);
  for (int i = 0; i < nb; i++) b[i] = -(float)i;
  int in[2] = {act(g, "a", SF_F32, 4, da, a), act(g, "b", SF_F32, 4, db, b)}, out[1];
  int ni = node(g, "Concat", 2, in, 1, out);
  sf__node_set_int(&g->nodes[ni], "axis", 3);
  assert_int_equal(run_node(g, ni, pool, &err), 0);
  const float *y = outp(g, ni, 0)->t.data;
  for (int p = 0; p < 3000; p++) {
    for (int c = 0; c < 7; c++) assert_true(y[p * 12 + c] == a[p * 7 + c]);
    for (int c = 0; c < 5; c++) assert_true(y[p * 12 + 7 + c] == b[p * 5 + c]);
  }
  free(a);
  free(b);
  sf__graph_free(g);
  pthreadpool_destroy(pool);
}

static void test_gather(void **st) {
  (void)st;
  sf_err err;
  sf_graph *g = sf__graph_new();
  int64_t d[2] = {3, 4}, di[2] = {2, 2};
  float x[12];
  iota(x, 12);
  static const int32_t idx[4] = {3, -1, 0, 1};
  int in[2] = {act(g, "x", SF_F32, 2, d, x), act(g, "i", SF_I32, 2, di, idx)}, out[1];
  int ni = node(g, "Gather", 2, in, 1, out);
  sf__node_set_int(&g->nodes[ni], "axis", 1);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  int64_t w[3] = {3, 2, 2};
  assert_shape(outp(g, ni, 0), 3, w);
  static const float want[12] = {3, 3, 0, 1, 7, 7, 4, 5, 11, 11, 8, 9};
  assert_floats(outp(g, ni, 0)->t.data, want, 12, 0);
  /* Out-of-range index in a runtime input: an error code at run, not a crash. */
  ((int32_t *)g->tensors[in[1]].t.data)[2] = 4;
  assert_int_equal(run_node(g, ni, NULL, &err), SF_EINVAL);
  assert_non_null(strstr(err.msg, "out of range"));
  sf__graph_free(g);
}

/* ---- Pad ---------------------------------------------------------------------------------- */

static int pad(sf_graph *g, const char *mode, const int64_t *pads, const float *cv) {
  int64_t d[2] = {2, 3};
  static const float x[6] = {1, 2, 3, 4, 5, 6};
  int64_t one = 1;
  int in[3] = {act(g, "x", SF_F32, 2, d, x), ints1(g, "pads", 4, pads),
               cv ? cst(g, "cv", SF_F32, 0, &one, cv) : -1};
  int out[1];
  int ni = node(g, "Pad", cv ? 3 : 2, in, 1, out);
  sf__node_set_string(&g->nodes[ni], "mode", mode);
  return ni;
}

static void test_pad(void **st) {
  (void)st;
  sf_err err;
  sf_graph *g = sf__graph_new();
  static const int64_t p1[4] = {1, 2, 0, 1}; /* rows +1 before, cols +2 before +1 after */
  int ni = pad(g, "reflect", p1, NULL);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  int64_t w[2] = {3, 6};
  assert_shape(outp(g, ni, 0), 2, w);
  static const float wr[18] = {6, 5, 4, 5, 6, 5, 3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5};
  assert_floats(outp(g, ni, 0)->t.data, wr, 18, 0);
  sf__graph_free(g);

  g = sf__graph_new();
  ni = pad(g, "edge", p1, NULL);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  static const float we[18] = {1, 1, 1, 2, 3, 3, 1, 1, 1, 2, 3, 3, 4, 4, 4, 5, 6, 6};
  assert_floats(outp(g, ni, 0)->t.data, we, 18, 0);
  sf__graph_free(g);

  g = sf__graph_new();
  static const float cv = 9;
  static const int64_t p2[4] = {0, -1, 1, 1}; /* crop first column, pad a row and a column */
  ni = pad(g, "constant", p2, &cv);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  int64_t w2[2] = {3, 3};
  assert_shape(outp(g, ni, 0), 2, w2);
  static const float wc[9] = {2, 3, 9, 5, 6, 9, 9, 9, 9};
  assert_floats(outp(g, ni, 0)->t.data, wc, 9, 0);
  sf__graph_free(g);

  g = sf__graph_new();
  static const int64_t p3[4] = {0, -4, 0, 0};
  ni = pad(g, "constant", p3, NULL);
  assert_int_equal(run_node(g, ni, NULL, &err), SF_ESHAPE);
  sf__graph_free(g);
}

/* ---- Resize ------------------------------------------------------------------------------- */

static int resize(sf_graph *g, int64_t h, int64_t w, const float *x, const float *scales,
                  const int64_t *sizes, const char *mode, const char *ctm) {
  int64_t d[4] = {1, 1, h, w}, four = 4;
  int in[4] = {act(g, "x", SF_F32, 4, d, x), -1,
               scales ? cst(g, "scales", SF_F32, 1, &four, scales) : -1,
               sizes ? ints1(g, "sizes", 4, sizes) : -1};
  int out[1];
  int ni = node(g, "Resize", sizes ? 4 : 3, in, 1, out);
  sf__node_set_string(&g->nodes[ni], "mode", mode);
  if (ctm) sf__node_set_string(&g->nodes[ni], "coordinate_transformation_mode", ctm);
  return ni;
}

static void test_resize(void **st) {
  (void)st;
  sf_err err;
  static const float x22[4] = {1, 2, 3, 4}, x24[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  static const float s23[4] = {1, 1, 2, 3}, s22[4] = {1, 1, 2, 2}, s06[4] = {1, 1, 0.6f, 0.6f};
  sf_graph *g = sf__graph_new();
  int ni = resize(g, 2, 2, x22, s23, NULL, "nearest", NULL);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  static const float wn[24] = {1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2,
                               3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4};
  assert_floats(outp(g, ni, 0)->t.data, wn, 24, 0);
  sf__graph_free(g);

  g = sf__graph_new();
  ni = resize(g, 2, 2, x22, s22, NULL, "linear", NULL);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  static const float wl[16] = {1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f,
                               2.5f, 2.75f, 3.25f, 3.5f, 3, 3.25f, 3.75f, 4};
  assert_floats(outp(g, ni, 0)->t.data, wl, 16, 1e-6f);
  sf__graph_free(g);

  g = sf__graph_new();
  ni = resize(g, 2, 2, x22, s22, NULL, "linear", "align_corners");
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  static const float wa[4] = {1, 1.3333333f, 1.6666667f, 2};
  assert_floats(outp(g, ni, 0)->t.data, wa, 4, 1e-6f);
  sf__graph_free(g);

  g = sf__graph_new();
  ni = resize(g, 2, 4, x24, s06, NULL, "linear", NULL);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  static const float wd[2] = {2.6666665f, 4.3333331f};
  assert_floats(outp(g, ni, 0)->t.data, wd, 2, 1e-5f);
  sf__graph_free(g);

  g = sf__graph_new();
  ni = resize(g, 2, 4, x24, s06, NULL, "linear", "align_corners");
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  static const float wac[2] = {1, 3.142857f};
  assert_floats(outp(g, ni, 0)->t.data, wac, 2, 1e-5f);
  sf__graph_free(g);

  g = sf__graph_new(); /* sizes, nearest downsample: [[1, 2, 4]] */
  static const int64_t sz[4] = {1, 1, 1, 3};
  ni = resize(g, 2, 4, x24, NULL, sz, "nearest", NULL);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  static const float wsz[3] = {1, 2, 4};
  assert_floats(outp(g, ni, 0)->t.data, wsz, 3, 0);
  sf__graph_free(g);

  g = sf__graph_new(); /* cubic upsample, ONNX reference values (first row) */
  float x44[16];
  for (int i = 0; i < 16; i++) x44[i] = (float)(i + 1);
  ni = resize(g, 4, 4, x44, s22, NULL, "cubic", NULL);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  static const float wcu[8] = {0.47265625f, 0.76953125f, 1.24609375f, 1.875f,
                               2.28125f,    2.91015625f, 3.38671875f, 3.68359375f};
  assert_floats(outp(g, ni, 0)->t.data, wcu, 8, 1e-5f);
  sf__graph_free(g);

  g = sf__graph_new(); /* tf_crop_and_resize with extrapolation */
  int64_t d[4] = {1, 1, 2, 2}, eight = 8;
  static const float roi[8] = {0, 0, 0, 0, 1, 1, 1, 2};
  static const int64_t sz3[4] = {1, 1, 2, 3};
  int in[4] = {act(g, "x", SF_F32, 4, d, x22), cst(g, "roi", SF_F32, 1, &eight, roi), -1,
               ints1(g, "sizes", 4, sz3)};
  int out[1];
  ni = node(g, "Resize", 4, in, 1, out);
  sf__node_set_string(&g->nodes[ni], "mode", "linear");
  sf__node_set_string(&g->nodes[ni], "coordinate_transformation_mode", "tf_crop_and_resize");
  sf__node_set_float(&g->nodes[ni], "extrapolation_value", -7);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  static const float wt[6] = {1, 2, -7, 3, 4, -7};
  assert_floats(outp(g, ni, 0)->t.data, wt, 6, 1e-6f);
  sf__graph_free(g);

  g = sf__graph_new(); /* non-float linear is unsupported */
  int64_t di[4] = {1, 1, 2, 2}, four = 4;
  static const int32_t xi[4] = {1, 2, 3, 4};
  int in2[3] = {act(g, "x", SF_I32, 4, di, xi), -1, cst(g, "scales", SF_F32, 1, &four, s22)};
  ni = node(g, "Resize", 3, in2, 1, out);
  sf__node_set_string(&g->nodes[ni], "mode", "linear");
  assert_int_equal(run_node(g, ni, NULL, &err), SF_EUNSUPPORTED);
  sf__graph_free(g);
}

static void test_upsample_large(void **st) {
  (void)st;
  /* Threaded nearest and bilinear on a larger plane agree with the generic double path. */
  pthreadpool_t pool = pthreadpool_create(3);
  sf_err err;
  int64_t d[4] = {2, 3, 40, 50};
  int n = 2 * 3 * 40 * 50;
  float *x = malloc(sizeof(float) * (size_t)n);
  for (int i = 0; i < n; i++) x[i] = (float)((i * 37) % 101) / 7.0f;
  static const float sc[4] = {1, 1, 2, 2};
  for (int m = 0; m < 2; m++) {
    sf_graph *g = sf__graph_new();
    g->opset = 9;
    int64_t four = 4;
    int in[2] = {act(g, "x", SF_F32, 4, d, x), cst(g, "s", SF_F32, 1, &four, sc)}, out[1];
    int ni = node(g, "Upsample", 2, in, 1, out);
    sf__node_set_string(&g->nodes[ni], "mode", m ? "linear" : "nearest");
    assert_int_equal(run_node(g, ni, pool, &err), 0);
    const float *y = outp(g, ni, 0)->t.data;
    for (int p = 0; p < 6; p++)
      for (int oy = 0; oy < 80; oy++)
        for (int ox = 0; ox < 100; ox++) {
          const float *s = x + p * 2000;
          float want;
          if (!m) {
            want = s[(oy / 2) * 50 + ox / 2];
          } else { /* asymmetric bilinear, clamped */
            double fy = oy / 2.0, fx = ox / 2.0;
            int y0 = (int)fy, x0 = (int)fx, y1 = y0 + 1 < 40 ? y0 + 1 : 39,
                x1 = x0 + 1 < 50 ? x0 + 1 : 49;
            double ry = fy - y0, rx = fx - x0;
            want = (float)((1 - ry) * ((1 - rx) * s[y0 * 50 + x0] + rx * s[y0 * 50 + x1]) +
                           ry * ((1 - rx) * s[y1 * 50 + x0] + rx * s[y1 * 50 + x1]));
          }
          float got = y[p * 8000 + oy * 100 + ox];
          if (fabsf(got - want) > 1e-5f) {
            print_error("mode %d plane %d (%d,%d): %g vs %g\n", m, p, oy, ox, got, want);
            fail();
          }
        }
    sf__graph_free(g);
  }
  free(x);
  pthreadpool_destroy(pool);
}

/* ---- Cast / constants / Dropout / Shape --------------------------------------------------- */

static void test_cast(void **st) {
  (void)st;
  sf_err err;
  sf_graph *g = sf__graph_new();
  int64_t d = 6;
  static const float x[6] = {1.5f, -2.7f, 65504.0f, 1e-8f, 70000.0f, 0.333333f};
  int xi = act(g, "x", SF_F32, 1, &d, x), out[1];
  int ni = node(g, "Cast", 1, &xi, 1, out);
  sf__node_set_int(&g->nodes[ni], "to", SF_F16);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  const uint16_t *h = outp(g, ni, 0)->t.data;
  assert_int_equal(h[0], 0x3e00);
  assert_int_equal(h[1], 0xc166); /* -2.69921875 */
  assert_int_equal(h[2], 0x7bff);
  assert_int_equal(h[3], 0x0000);
  assert_int_equal(h[4], 0x7c00);
  assert_int_equal(h[5], 0x3555);
  ni = node(g, "Cast", 1, &xi, 1, out);
  sf__node_set_int(&g->nodes[ni], "to", SF_I8);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  const int8_t *i8 = outp(g, ni, 0)->t.data;
  assert_int_equal(i8[0], 1);
  assert_int_equal(i8[1], -2);
  ni = node(g, "Cast", 1, &xi, 1, out);
  sf__node_set_int(&g->nodes[ni], "to", SF_STRING);
  assert_int_equal(run_node(g, ni, NULL, &err), SF_EUNSUPPORTED);
  sf__graph_free(g);
}

static void test_constants(void **st) {
  (void)st;
  sf_err err;
  sf_graph *g = sf__graph_new();
  static const int64_t shape[3] = {2, 0, 3}, shape2[2] = {2, 3};
  int s = ints1(g, "shape", 2, shape2), out[1];
  int ni = node(g, "ConstantOfShape", 1, &s, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  assert_int_equal(outp(g, ni, 0)->t.dtype, SF_F32);
  static const float z[6] = {0};
  assert_memory_equal(outp(g, ni, 0)->t.data, z, sizeof z);
  sf_attr *a = sf__node_add_attr(&g->nodes[ni], "value", SF_ATTR_TENSOR);
  a->tensor = calloc(1, sizeof *a->tensor);
  a->tensor->dtype = SF_I32;
  a->tensor->rank = 1;
  a->tensor->dims[0] = 1;
  a->tensor->data = malloc(4);
  *(int32_t *)a->tensor->data = 7;
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  const int32_t *v = outp(g, ni, 0)->t.data;
  for (int i = 0; i < 6; i++) assert_int_equal(v[i], 7);
  int s0 = ints1(g, "shape0", 3, shape);
  ni = node(g, "ConstantOfShape", 1, &s0, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  assert_int_equal(outp(g, ni, 0)->t.dims[1], 0);

  ni = node(g, "Constant", 0, NULL, 1, out);
  static const int64_t iv[3] = {4, 5, 6};
  sf__node_set_ints(&g->nodes[ni], "value_ints", iv, 3);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  assert_memory_equal(outp(g, ni, 0)->t.data, iv, sizeof iv);
  sf__graph_free(g);
}

static void test_dropout_shape_identity(void **st) {
  (void)st;
  sf_err err;
  sf_graph *g = sf__graph_new();
  int64_t d[3] = {2, 3, 4};
  float x[24];
  iota(x, 24);
  int xi = act(g, "x", SF_F32, 3, d, x), out[2];
  int ni = node(g, "Dropout", 1, &xi, 2, out);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  assert_memory_equal(outp(g, ni, 0)->t.data, x, sizeof x);
  assert_int_equal(outp(g, ni, 1)->t.dtype, SF_BOOL);
  const uint8_t *m = outp(g, ni, 1)->t.data;
  for (int i = 0; i < 24; i++) assert_int_equal(m[i], 1);
  /* training_mode = true with the default ratio is unsupported */
  int64_t one = 1;
  uint8_t t = 1;
  int in3[3] = {xi, -1, cst(g, "tm", SF_BOOL, 0, &one, &t)};
  ni = node(g, "Dropout", 3, in3, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), SF_EUNSUPPORTED);

  ni = node(g, "Shape", 1, &xi, 1, out);
  sf__node_set_int(&g->nodes[ni], "start", -2);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  const int64_t *sh = outp(g, ni, 0)->t.data;
  assert_int_equal(outp(g, ni, 0)->t.dims[0], 2);
  assert_int_equal(sh[0], 3);
  assert_int_equal(sh[1], 4);

  /* Identity sharing the input buffer (planner alias) is a no-op. */
  ni = node(g, "Identity", 1, &xi, 1, out);
  assert_int_equal(run_node(g, ni, NULL, &err), 0);
  assert_memory_equal(outp(g, ni, 0)->t.data, x, sizeof x);
  sf_gtensor *o = outp(g, ni, 0);
  free(o->t.data);
  o->owns_data = 0;
  o->t.data = g->tensors[xi].t.data;
  sf_kctx k = {.g = g, .node = &g->nodes[ni], .err = &err};
  assert_int_equal(sf__op_Identity.run(&k), 0);
  assert_memory_equal(o->t.data, x, sizeof x);
  sf__graph_free(g);
}


/* ---- in a compiled session: channels-last Concat and the transposes around it ------------ */

static void fill(float *w, int n, int seed) {
  for (int i = 0; i < n; i++) w[i] = (float)(((i + seed) * 7919) % 23 - 11) / 16.0f;
}

static sf_graph *conv_concat_graph(void) {
  sf_graph *g = sf__graph_new();
  int64_t dx[4] = {1, 3, 9, 10}, dw1[4] = {4, 3, 3, 3}, dw2[4] = {5, 3, 1, 1},
          dw3[4] = {6, 9, 3, 3};
  float w1[108], w2[15], w3[486];
  fill(w1, 108, 1);
  fill(w2, 15, 2);
  fill(w3, 486, 3);
  int x = sf__graph_tensor(g, "x");
  sf__tensor_set_shape(&g->tensors[x], SF_F32, 4, dx);
  g->tensors[x].kind = SF_TK_INPUT;
  int W1 = cst(g, "w1", SF_F32, 4, dw1, w1), W2 = cst(g, "w2", SF_F32, 4, dw2, w2),
      W3 = cst(g, "w3", SF_F32, 4, dw3, w3);
  static const int64_t pads1[4] = {1, 1, 1, 1};
  int a = sf__graph_tensor(g, "a"), b = sf__graph_tensor(g, "b"), c = sf__graph_tensor(g, "c"),
      d = sf__graph_tensor(g, "d"), e = sf__graph_tensor(g, "e"), y = sf__graph_tensor(g, "y"),
      z = sf__graph_tensor(g, "z");
  int n = sf__graph_add_node(g, "Conv", "c1", 2, (int[]){x, W1}, 1, &a);
  sf__node_set_ints(&g->nodes[n], "pads", pads1, 4);
  sf__graph_add_node(g, "Conv", "c2", 2, (int[]){x, W2}, 1, &b);
  n = sf__graph_add_node(g, "Concat", "cat", 2, (int[]){a, b}, 1, &c);
  sf__node_set_int(&g->nodes[n], "axis", 1);
  sf__graph_add_node(g, "Dropout", "drop", 1, &c, 1, &d);
  n = sf__graph_add_node(g, "Conv", "c3", 2, (int[]){d, W3}, 1, &e);
  sf__node_set_ints(&g->nodes[n], "pads", pads1, 4);
  /* plain-layout consumers of a channels-last tensor */
  static const float sc[4] = {1, 1, 2, 1.5f};
  int64_t four = 4;
  n = sf__graph_add_node(g, "Resize", "up", 3, (int[]){e, -1, cst(g, "sc", SF_F32, 1, &four, sc)},
                         1, &y);
  sf__node_set_string(&g->nodes[n], "mode", "linear");
  static const int64_t pp[8] = {0, 0, 1, 2, 0, 1, 0, 1};
  n = sf__graph_add_node(g, "Pad", "pad", 2, (int[]){c, ints1(g, "pp", 8, pp)}, 1, &z);
  sf__node_set_string(&g->nodes[n], "mode", "reflect");
  g->inputs = malloc(sizeof(int));
  g->outputs = malloc(2 * sizeof(int));
  g->inputs[0] = x;
  g->outputs[0] = y;
  g->outputs[1] = z;
  g->n_inputs = 1;
  g->n_outputs = 2;
  g->tensors[y].is_output = g->tensors[z].is_output = 1;
  return g;
}

static void test_session_layouts(void **st) {
  (void)st;
  sf_model m = {conv_concat_graph(), NULL, 0};
  float *res[2][2] = {{0}};
  int64_t cnt[2] = {0};
  for (int lay = 0; lay < 2; lay++) {
    sf_session_opts o = sf_session_opts_default();
    o.threads = 2;
    o.layout = lay ? -1 : 0;
    sf_session *s = NULL;
    sf_err err = {0};
    int rc = sf_session_new(&s, &m, &o, &err);
    if (rc) print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    sf_tensor *in = sf_session_input(s, 0);
    fill(in->data, 270, 5);
    assert_int_equal(sf_session_run(s, &err), 0);
    for (int k = 0; k < 2; k++) {
      const sf_tensor *t = sf_session_output(s, k);
      cnt[k] = sf_tensor_numel(t);
      res[lay][k] = malloc(sizeof(float) * (size_t)cnt[k]);
      memcpy(res[lay][k], t->data, sizeof(float) * (size_t)cnt[k]);
    }
    assert_int_equal(sf_session_output(s, 0)->dims[2], 18);
    assert_int_equal(sf_session_output(s, 0)->dims[3], 15);
    assert_int_equal(sf_session_output(s, 1)->dims[2], 10);
    assert_int_equal(sf_session_output(s, 1)->dims[3], 13);
    sf_session_free(s);
  }
  /* The auto layout does run the Concat channels-last (axis remapped to 3). */
  sf_graph *g = sf__graph_clone(m.g);
  sf_compile_opts co = {.layout = -1};
  sf_compile_result cr;
  sf_err err = {0};
  assert_int_equal(sf__graph_compile(g, &co, &cr, &err), 0);
  int found = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    sf_node *n = &g->nodes[i];
    if (n->dead || strcmp(n->op_type, "Concat")) continue;
    found = 1;
    assert_int_equal(n->layout, SF_LAYOUT_NHWC);
    assert_int_equal(sf__attr_int(n, "axis", 0), 3);
  }
  assert_true(found);
  assert_true(cr.n_transposes >= 2);
  for (int i = 0; i < g->n_nodes; i++)
    if (g->nodes[i].state && g->nodes[i].op->release) g->nodes[i].op->release(&g->nodes[i]);
  sf__graph_free(g);
  for (int k = 0; k < 2; k++) {
    assert_floats(res[1][k], res[0][k], (int)cnt[k], 1e-4f);
    free(res[0][k]);
    free(res[1][k]);
  }
  sf__graph_free(m.g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_transpose_paths),
      cmocka_unit_test(test_transpose_op),
      cmocka_unit_test(test_reshape),
      cmocka_unit_test(test_squeeze_unsqueeze_flatten),
      cmocka_unit_test(test_slice),
      cmocka_unit_test(test_concat_split),
      cmocka_unit_test(test_concat_threaded),
      cmocka_unit_test(test_gather),
      cmocka_unit_test(test_pad),
      cmocka_unit_test(test_resize),
      cmocka_unit_test(test_upsample_large),
      cmocka_unit_test(test_cast),
      cmocka_unit_test(test_constants),
      cmocka_unit_test(test_dropout_shape_identity),
      cmocka_unit_test(test_session_layouts),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
