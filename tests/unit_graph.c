/* Graph IR and compiler: topological order, pruning, folding, fusion, layout, memory plan. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "graph/compile.h"
#include "onnx/onnx.h"
#include "runtime/op.h"

static int tensor(sf_graph *g, const char *name, int rank, const int64_t *dims) {
  int id = sf__graph_tensor(g, name);
  sf__tensor_set_shape(&g->tensors[id], SF_F32, rank, dims);
  return id;
}

static void set_io(sf_graph *g, int in, int out) {
  g->inputs = malloc(sizeof(int));
  g->outputs = malloc(sizeof(int));
  g->inputs[0] = in;
  g->outputs[0] = out;
  g->n_inputs = g->n_outputs = 1;
  g->tensors[in].kind = SF_TK_INPUT;
}

static int node1(sf_graph *g, const char *op, int a, int b) {
  int in[1] = {a}, out[1] = {b};
  return sf__graph_add_node(g, op, NULL, 1, in, 1, out);
}

static void test_toposort_and_cycle(void **st) {
  (void)st;
  sf_graph *g = sf__graph_new();
  int64_t d[1] = {4};
  int x = tensor(g, "x", 1, d);
  int a = sf__graph_tensor(g, "a"), b = sf__graph_tensor(g, "b"), c = sf__graph_tensor(g, "c");
  node1(g, "Relu", b, c); /* stored out of order */
  node1(g, "Relu", a, b);
  node1(g, "Relu", x, a);
  set_io(g, x, c);
  sf_err err = {0};
  assert_int_equal(sf__graph_toposort(g, &err), 0);
  assert_int_equal(g->n_order, 3);
  assert_int_equal(g->order[0], 2);
  assert_int_equal(g->order[1], 1);
  assert_int_equal(g->order[2], 0);
  /* make a cycle: x -> a -> b -> c -> a */
  g->nodes[2].in[0] = c;
  assert_int_equal(sf__graph_toposort(g, &err), SF_EFORMAT);
  assert_non_null(strstr(err.msg, "cycle"));
  sf__graph_free(g);
}

static void test_prune(void **st) {
  (void)st;
  sf_graph *g = sf__graph_new();
  int64_t d[1] = {4};
  int x = tensor(g, "x", 1, d);
  int a = sf__graph_tensor(g, "a"), dead = sf__graph_tensor(g, "dead");
  node1(g, "Relu", x, a);
  node1(g, "Sigmoid", x, dead);
  set_io(g, x, a);
  sf__graph_prune(g);
  assert_int_equal(g->nodes[0].dead, 0);
  assert_int_equal(g->nodes[1].dead, 1);
  sf__graph_free(g);
}

/* Two arena buffers alive at the same step must not overlap. */
static void check_plan(sf_graph *g) {
  for (int i = 0; i < g->n_tensors; i++) {
    sf_gtensor *a = &g->tensors[i];
    if (a->kind == SF_TK_CONST || a->arena_off < 0 || a->alias_of >= 0) continue;
    int64_t sa = sf_tensor_nbytes(&a->t);
    for (int j = i + 1; j < g->n_tensors; j++) {
      sf_gtensor *b = &g->tensors[j];
      if (b->kind == SF_TK_CONST || b->arena_off < 0 || b->alias_of >= 0) continue;
      int64_t sb = sf_tensor_nbytes(&b->t);
      int live = a->first_use <= b->last_use && b->first_use <= a->last_use;
      int overlap = a->arena_off < b->arena_off + sb && b->arena_off < a->arena_off + sa;
      if (live && overlap) fail_msg("tensors '%s' and '%s' overlap while both alive", a->t.name, b->t.name);
    }
  }
}

static void test_memory_plan_reuses(void **st) {
  (void)st;
  if (!sf__op_find("", "Relu")) skip();
  sf_graph *g = sf__graph_new();
  int64_t d[2] = {256, 1024}; /* 1 MiB */
  int prev = tensor(g, "x", 2, d);
  int x = prev;
  for (int i = 0; i < 8; i++) {
    char nm[16];
    snprintf(nm, sizeof nm, "t%d", i);
    int t = sf__graph_tensor(g, nm);
    node1(g, (i & 1) ? "Sigmoid" : "Relu", prev, t);
    prev = t;
  }
  set_io(g, x, prev);
  sf_compile_opts o = {.layout = -1};
  sf_compile_result r;
  sf_err err = {0};
  assert_int_equal(sf__graph_compile(g, &o, &r, &err), 0);
  check_plan(g);
  /* a chain needs two live buffers at a time; 9 tensors of 1 MiB would be 9 MiB unplanned */
  assert_true(r.arena_bytes <= 2 * (1 << 20) + 2 * 128);
  assert_true(r.arena_bytes >= 2 * (1 << 20));
  sf__graph_free(g);
}

static void test_missing_initializer(void **st) {
  (void)st;
  sf_graph *g = sf__graph_new();
  int64_t d[1] = {4};
  int x = tensor(g, "x", 1, d);
  int w = sf__graph_tensor(g, "weights_nobody_made"), y = sf__graph_tensor(g, "y");
  int in[2] = {x, w}, out[1] = {y};
  sf__graph_add_node(g, "Add", "add0", 2, in, 1, out);
  set_io(g, x, y);
  sf_compile_opts o = {.layout = -1};
  sf_compile_result r;
  sf_err err = {0};
  assert_int_equal(sf__graph_compile(g, &o, &r, &err), SF_EFORMAT);
  assert_non_null(strstr(err.msg, "weights_nobody_made"));
  assert_non_null(strstr(err.msg, "add0"));
  sf__graph_free(g);
}

static void test_unsupported_op(void **st) {
  (void)st;
  sf_graph *g = sf__graph_new();
  int64_t d[1] = {4};
  int x = tensor(g, "x", 1, d), y = sf__graph_tensor(g, "y");
  int in[1] = {x}, out[1] = {y};
  sf__graph_add_node(g, "FancyOp", "fancy1", 1, in, 1, out);
  set_io(g, x, y);
  sf_compile_opts o = {.layout = -1};
  sf_compile_result r;
  sf_err err = {0};
  assert_int_equal(sf__graph_compile(g, &o, &r, &err), SF_EUNSUPPORTED);
  assert_non_null(strstr(err.msg, "FancyOp"));
  assert_non_null(strstr(err.msg, "fancy1"));
  sf__graph_free(g);
}

static void test_input_shape_checks(void **st) {
  (void)st;
  sf_graph *g = sf__graph_new();
  int64_t d[2] = {-1, 4};
  int x = tensor(g, "x", 2, d), y = sf__graph_tensor(g, "y");
  node1(g, "Relu", x, y);
  set_io(g, x, y);
  sf_err err = {0};
  sf_compile_result r;
  sf_input_shape bad = {.name = "x", .rank = 2, .dims = {2, 5}};
  sf_compile_opts o = {.layout = -1, .n_shapes = 1, .shapes = &bad};
  sf_graph *c = sf__graph_clone(g);
  assert_int_equal(sf__graph_compile(c, &o, &r, &err), SF_ESHAPE);
  assert_non_null(strstr(err.msg, "'x'"));
  sf__graph_free(c);
  sf_input_shape wrong = {.name = "z", .rank = 2, .dims = {2, 4}};
  o.shapes = &wrong;
  c = sf__graph_clone(g);
  assert_int_equal(sf__graph_compile(c, &o, &r, &err), SF_ENOTFOUND);
  assert_non_null(strstr(err.msg, "'z'"));
  sf__graph_free(c);
  sf_input_shape huge = {.name = "x", .rank = 2, .dims = {(int64_t)1 << 30, 4}};
  o.shapes = &huge;
  c = sf__graph_clone(g);
  assert_int_equal(sf__graph_compile(c, &o, &r, &err), SF_ELIMIT);
  sf__graph_free(c);
  if (sf__op_find("", "Relu")) {
    sf_input_shape good = {.name = "x", .rank = 2, .dims = {3, 4}};
    o.shapes = &good;
    c = sf__graph_clone(g);
    assert_int_equal(sf__graph_compile(c, &o, &r, &err), 0);
    assert_int_equal(c->tensors[c->outputs[0]].t.dims[0], 3);
    sf__graph_free(c);
  }
  sf__graph_free(g);
}

/* Conv -> BatchNormalization -> Relu folds into one convolution with the same result. */
static void test_fusion_and_layout(void **st) {
  (void)st;
  if (!sf__op_find("", "Conv") || !sf__op_find("", "BatchNormalization") ||
      !sf__op_find("", "Transpose"))
    skip();
  sf_graph *g = sf__graph_new();
  int64_t xd[4] = {1, 3, 8, 8}, wd[4] = {4, 3, 3, 3}, cd[1] = {4};
  int x = tensor(g, "x", 4, xd);
  int w = sf__graph_tensor(g, "w"), s = sf__graph_tensor(g, "s"), b = sf__graph_tensor(g, "b"),
      m = sf__graph_tensor(g, "m"), v = sf__graph_tensor(g, "v");
  float wv[108], sv[4] = {1.5f, 0.5f, 2.0f, 1.0f}, bv[4] = {0.1f, -0.2f, 0.3f, 0},
                 mv[4] = {0.1f, 0.2f, -0.1f, 0}, vv[4] = {1.0f, 2.0f, 0.5f, 1.0f};
  for (int i = 0; i < 108; i++) wv[i] = (float)((i * 37) % 11 - 5) / 7.0f;
  sf__tensor_set_const(g, w, SF_F32, 4, wd, wv);
  sf__tensor_set_const(g, s, SF_F32, 1, cd, sv);
  sf__tensor_set_const(g, b, SF_F32, 1, cd, bv);
  sf__tensor_set_const(g, m, SF_F32, 1, cd, mv);
  sf__tensor_set_const(g, v, SF_F32, 1, cd, vv);
  int c1 = sf__graph_tensor(g, "c1"), bn = sf__graph_tensor(g, "bn"), y = sf__graph_tensor(g, "y");
  int cin[2] = {x, w}, cout[1] = {c1};
  int ni = sf__graph_add_node(g, "Conv", "conv", 2, cin, 1, cout);
  int64_t pads[4] = {1, 1, 1, 1};
  sf__node_set_ints(&g->nodes[ni], "pads", pads, 4);
  int bin[5] = {c1, s, b, m, v}, bout[1] = {bn};
  sf__graph_add_node(g, "BatchNormalization", "bn", 5, bin, 1, bout);
  node1(g, "Relu", bn, y);
  set_io(g, x, y);

  sf_model model = {.g = g};
  float out[2][256];
  for (int variant = 0; variant < 2; variant++) {
    sf_session_opts o = sf_session_opts_default();
    o.threads = 1;
    o.no_fold = variant;    /* 0: fused, 1: separate nodes */
    o.layout = variant ? 0 : -1;
    sf_session *sess = NULL;
    sf_err err = {0};
    assert_int_equal(sf_session_new(&sess, &model, &o, &err), 0);
    sf_session_stats stt;
    sf_session_get_stats(sess, &stt);
    if (variant == 0)
      assert_int_equal(stt.n_nodes, 3); /* to_nhwc, conv(+bn+relu), to_nchw */
    else
      assert_int_equal(stt.n_nodes, 3); /* conv, bn, relu */
    sf_tensor *in = sf_session_input(sess, 0);
    for (int i = 0; i < 192; i++) ((float *)in->data)[i] = (float)((i * 13) % 17 - 8) / 8.0f;
    assert_int_equal(sf_session_run(sess, &err), 0);
    const sf_tensor *o0 = sf_session_output(sess, 0);
    assert_int_equal(o0->rank, 4);
    assert_int_equal(o0->dims[1], 4);
    assert_int_equal(o0->layout, SF_LAYOUT_PLAIN);
    memcpy(out[variant], o0->data, 256 * sizeof(float));
    sf_session_free(sess);
  }
  int nonzero = 0;
  for (int i = 0; i < 256; i++) {
    assert_true(fabsf(out[0][i] - out[1][i]) <= 1e-4f * (1.0f + fabsf(out[1][i])));
    assert_true(out[0][i] >= 0.0f);
    nonzero += out[0][i] > 0;
  }
  assert_true(nonzero > 20);
  sf__graph_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_toposort_and_cycle),   cmocka_unit_test(test_prune),
      cmocka_unit_test(test_memory_plan_reuses),   cmocka_unit_test(test_missing_initializer),
      cmocka_unit_test(test_unsupported_op),       cmocka_unit_test(test_input_shape_checks),
      cmocka_unit_test(test_fusion_and_layout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
