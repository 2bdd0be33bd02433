/* Model zoo: every model builds with the Keras parameter count and layer structure, files are
 * deterministic, and the models load and run through a session with sane outputs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "onnx/onnx.h"
#include "zoo/zoo.h"

static void run_graph(const sf_graph *g, const char *name, float lo, float hi);

static sf_graph *build(const char *name, uint64_t seed) {
  sf_err err = {0};
  sf_graph *g = NULL;
  int rc = sf__zoo_build(name, seed, &g, &err);
  if (rc) print_error("%s: %s\n", name, err.msg);
  assert_int_equal(rc, 0);
  assert_non_null(g);
  return g;
}

static int count_op(const sf_graph *g, const char *op) {
  int n = 0;
  for (int i = 0; i < g->n_nodes; i++) n += !strcmp(g->nodes[i].op_type, op);
  return n;
}

static const sf_node *node_named(const sf_graph *g, const char *name) {
  for (int i = 0; i < g->n_nodes; i++)
    if (!strcmp(g->nodes[i].name, name)) return &g->nodes[i];
  fail_msg("no node '%s'", name);
  return NULL;
}

static void assert_pads(const sf_graph *g, const char *node, int t, int l, int b, int r) {
  const int64_t *p;
  assert_int_equal(sf__attr_ints(node_named(g, node), "pads", &p), 4);
  if (p[0] != t || p[1] != l || p[2] != b || p[3] != r)
    fail_msg("%s pads %d,%d,%d,%d, want %d,%d,%d,%d", node, (int)p[0], (int)p[1], (int)p[2],
             (int)p[3], t, l, b, r);
}

/* Input [1,c,h,w], output [1,classes], opset 13, the listed parameter count. */
static void check_common(const sf_graph *g, const sf_zoo_entry *e) {
  assert_int_equal(g->opset, 13);
  assert_int_equal(g->n_inputs, 1);
  assert_int_equal(g->n_outputs, 1);
  const sf_gtensor *in = &g->tensors[g->inputs[0]], *out = &g->tensors[g->outputs[0]];
  assert_int_equal(in->t.rank, 4);
  assert_int_equal(in->t.dims[0], 1);
  assert_int_equal(in->t.dims[1], e->c);
  assert_int_equal(in->t.dims[2], e->h);
  assert_int_equal(in->t.dims[3], e->w);
  assert_int_equal(out->t.rank, 2);
  assert_int_equal(out->t.dims[1], e->classes);
  assert_int_equal(sf__zoo_params(g), e->params);
  /* the calibrated BatchNorm statistics are finite, variances positive */
  for (int i = 0; i < g->n_nodes; i++) {
    const sf_node *n = &g->nodes[i];
    if (strcmp(n->op_type, "BatchNormalization")) continue;
    const sf_gtensor *m = &g->tensors[n->in[3]], *v = &g->tensors[n->in[4]];
    for (int64_t c = 0; c < v->t.dims[0]; c++) {
      assert_true(isfinite(((float *)m->t.data)[c]));
      assert_true(((float *)v->t.data)[c] > 0 && isfinite(((float *)v->t.data)[c]));
    }
  }
}

static void test_registry(void **st) {
  (void)st;
  assert_int_equal(sf__zoo_count(), 6);
  for (int i = 0; i < sf__zoo_count(); i++) {
    const sf_zoo_entry *e = sf__zoo_get(i);
    assert_ptr_equal(sf__zoo_find(e->name), e);
    assert_true(e->params > 0);
  }
  assert_null(sf__zoo_get(sf__zoo_count()));
  assert_null(sf__zoo_find("resnet51"));
  sf_err err = {0};
  sf_graph *g = NULL;
  assert_int_equal(sf__zoo_build("resnet51", 1, &g, &err), SF_ENOTFOUND);
  assert_null(g);
  assert_non_null(strstr(err.msg, "resnet51"));
}

/* Keras count_params() of the reference models. */
static void test_keras_counts(void **st) {
  (void)st;
  assert_int_equal(sf__zoo_find("resnet50")->keras_params, 25636712);
  assert_int_equal(sf__zoo_find("mobilenetv2")->keras_params, 3538984);
  assert_int_equal(sf__zoo_find("efficientnetb1")->keras_params, 7856239);
  assert_int_equal(sf__zoo_find("inceptionresnetv2")->keras_params, 55873736);
  assert_int_equal(sf__zoo_find("resnet50")->params, 25636712);
  assert_int_equal(sf__zoo_find("mobilenetv2")->params, 3538984);
  /* Keras also counts the Normalization layer's int64 sample count (docs/zoo.md) */
  assert_int_equal(sf__zoo_find("efficientnetb1")->params, 7856239 - 1);
  assert_int_equal(sf__zoo_find("inceptionresnetv2")->params, 55873736);
}

static void test_resnet50(void **st) {
  (void)st;
  sf_graph *g = build("resnet50", 1);
  check_common(g, sf__zoo_find("resnet50"));
  assert_int_equal(count_op(g, "Conv"), 53);
  assert_int_equal(count_op(g, "BatchNormalization"), 53);
  assert_int_equal(count_op(g, "Add"), 16);
  assert_int_equal(count_op(g, "Gemm"), 1);
  assert_int_equal(node_named(g, "conv1_conv")->n_in, 3); /* conv biases as in Keras */
  assert_pads(g, "conv1_conv", 3, 3, 3, 3);
  assert_pads(g, "conv4_block1_1_conv", 0, 0, 0, 0);
  assert_pads(g, "conv4_block1_2_conv", 1, 1, 1, 1);
  const int64_t *s;
  assert_int_equal(sf__attr_ints(node_named(g, "conv4_block1_1_conv"), "strides", &s), 2);
  assert_int_equal(s[0], 2); /* v1: the stride is on the first 1x1 conv */
  assert_float_equal(sf__attr_float(node_named(g, "conv1_bn"), "epsilon", 0), 1.001e-5f, 1e-12);
  run_graph(g, "resnet50", -128, 128); /* the one large model run in the unit tests */
  sf__graph_free(g);
}

static void test_mobilenetv2(void **st) {
  (void)st;
  sf_graph *g = build("mobilenetv2", 1);
  check_common(g, sf__zoo_find("mobilenetv2"));
  assert_int_equal(count_op(g, "Conv"), 52);
  assert_int_equal(count_op(g, "Clip"), 35);
  assert_int_equal(count_op(g, "Add"), 10);
  assert_pads(g, "Conv1", 0, 0, 1, 1);             /* TF 'same', stride 2, even input */
  assert_pads(g, "block_1_depthwise", 0, 0, 1, 1); /* ZeroPadding2D(correct_pad) */
  assert_pads(g, "block_2_depthwise", 1, 1, 1, 1);
  assert_int_equal(sf__attr_int(node_named(g, "block_2_depthwise"), "group", 0), 144);
  sf__graph_free(g);
}

static void test_efficientnetb1(void **st) {
  (void)st;
  sf_graph *g = build("efficientnetb1", 1);
  check_common(g, sf__zoo_find("efficientnetb1"));
  /* 23 blocks: stem + top + 2 x 4 (expand ratio 1) + 21 x 5 */
  assert_int_equal(count_op(g, "Conv"), 115);
  assert_int_equal(count_op(g, "GlobalAveragePool"), 24);
  assert_int_equal(count_op(g, "Add"), 16);
  assert_pads(g, "stem_conv", 0, 0, 1, 1);
  assert_pads(g, "block3a_dwconv", 1, 1, 2, 2); /* 5x5 stride 2 on 60x60 */
  assert_pads(g, "block5a_dwconv", 2, 2, 2, 2);
  node_named(g, "block7b_add");
  sf__graph_free(g);
}

static void test_inceptionresnetv2(void **st) {
  (void)st;
  sf_graph *g = build("inceptionresnetv2", 1);
  check_common(g, sf__zoo_find("inceptionresnetv2"));
  assert_int_equal(count_op(g, "Conv"), 244);
  assert_int_equal(count_op(g, "BatchNormalization"), 204);
  assert_int_equal(count_op(g, "Concat"), 43);
  assert_int_equal(count_op(g, "Add"), 40);
  assert_int_equal(count_op(g, "AveragePool"), 1);
  assert_pads(g, "conv2d", 0, 0, 0, 0);
  assert_pads(g, "block17_1_conv", 0, 0, 0, 0);
  assert_int_equal(node_named(g, "block17_1_conv")->n_in, 3); /* "up" convs have a bias */
  assert_pads(g, "conv2d_7", 2, 2, 2, 2);                     /* mixed_5b 5x5 'same' */
  sf__graph_free(g);
}

static void test_deterministic(void **st) {
  (void)st;
  const char *names[] = {"tiny-cnn", "tiny-inception", "mobilenetv2"};
  for (int i = 0; i < 3; i++) {
    sf_err err = {0};
    void *a = NULL, *b = NULL, *c = NULL;
    size_t la = 0, lb = 0, lc = 0;
    assert_int_equal(sf__zoo_serialize(names[i], 1, &a, &la, &err), 0);
    assert_int_equal(sf__zoo_serialize(names[i], 1, &b, &lb, &err), 0);
    assert_int_equal(sf__zoo_serialize(names[i], 2, &c, &lc, &err), 0);
    assert_true(la > 0 && la == lb);
    assert_memory_equal(a, b, la);
    assert_true(lc != la || memcmp(a, c, la) != 0);
    free(a);
    free(b);
    free(c);
  }
}

/* Serialize g, load it from the bytes, run once on inputs in the calibrated range [lo, hi). */
static void run_graph(const sf_graph *g, const char *name, float lo, float hi) {
  const sf_zoo_entry *e = sf__zoo_find(name);
  sf_err err = {0};
  void *buf = NULL;
  size_t len = 0;
  assert_int_equal(sf__onnx_serialize(g, &buf, &len, &err), 0);
  sf_model *m = NULL;
  sf_session *s = NULL;
  if (sf_model_load_buffer(&m, buf, len, NULL, &err) < 0) fail_msg("%s: %s", name, err.msg);
  free(buf);
  sf_session_opts o = sf_session_opts_default();
  o.threads = 2;
  if (sf_session_new(&s, m, &o, &err) < 0) fail_msg("%s: %s", name, err.msg);
  sf_session_stats stt;
  sf_session_get_stats(s, &stt);
  assert_int_equal(stt.params, e->params); /* the float64 hyper-constants are not counted */
  sf_tensor *in = sf_session_input(s, 0);
  int64_t n = sf_tensor_numel(in);
  assert_int_equal(n, (int64_t)e->c * e->h * e->w);
  uint64_t x = 88172645463325252ULL;
  for (int64_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ((float *)in->data)[i] = lo + (hi - lo) * (float)((x >> 40) * 0x1p-24);
  }
  if (sf_session_run(s, &err) < 0) fail_msg("%s: %s", name, err.msg);
  const sf_tensor *out = sf_session_output(s, 0);
  assert_int_equal(sf_tensor_numel(out), e->classes);
  const float *p = out->data;
  double sum = 0, mx = 0, ent = 0;
  for (int i = 0; i < e->classes; i++) {
    assert_true(isfinite(p[i]) && p[i] >= 0);
    sum += p[i];
    mx = p[i] > mx ? p[i] : mx;
    if (p[i] > 0) ent -= p[i] * log(p[i]);
  }
  assert_float_equal(sum, 1.0, 1e-4);
  /* neither one-hot nor uniform */
  if (!(mx < 0.99 && mx > 2.0 / e->classes && ent < 0.99 * log(e->classes)))
    fail_msg("%s: degenerate softmax (max %g, entropy %g)", name, mx, ent);
  sf_session_free(s);
  sf_model_free(m);
}

static void run_model(const char *name, float lo, float hi) {
  sf_graph *g = build(name, 1);
  run_graph(g, name, lo, hi);
  sf__graph_free(g);
}

static void test_run_tiny_cnn(void **st) {
  (void)st;
  run_model("tiny-cnn", -1, 1);
}
static void test_run_tiny_inception(void **st) {
  (void)st;
  run_model("tiny-inception", -1, 1);
}
static void test_run_mobilenetv2(void **st) {
  (void)st;
  run_model("mobilenetv2", -1, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),           cmocka_unit_test(test_keras_counts),
      cmocka_unit_test(test_resnet50),           cmocka_unit_test(test_mobilenetv2),
      cmocka_unit_test(test_efficientnetb1),     cmocka_unit_test(test_inceptionresnetv2),
      cmocka_unit_test(test_deterministic),      cmocka_unit_test(test_run_tiny_cnn),
      cmocka_unit_test(test_run_tiny_inception), cmocka_unit_test(test_run_mobilenetv2),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
