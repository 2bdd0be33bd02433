/* Robustness: real models (the ONNX conformance models) with mutated attributes and input
 * shapes must compile and run or fail with an error code - never crash, hang or read out of
 * bounds (this test matters most under ASan+UBSan). Deterministic: a fixed seed. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "onnx/onnx.h"
#include "runtime/op.h"

#define DATA "/usr/share/libonnx-testdata/data/node"
#define MUTATIONS 10

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static const int64_t interesting[] = {-3, -1, 0, 1, 2, 3, 5, 64, 1 << 20, -(1 << 20), INT64_MAX,
                                      INT64_MIN};

static int all_supported(const sf_graph *g) {
  for (int i = 0; i < g->n_nodes; i++)
    if (!sf__op_find(g->nodes[i].domain, g->nodes[i].op_type)) return 0;
  return 1;
}

/* Mutate one integer attribute (or one element of an INTS attribute) of a random node. */
static void mutate_attr(sf_graph *g) {
  if (!g->n_nodes) return;
  sf_node *n = &g->nodes[next() % (uint64_t)g->n_nodes];
  if (!n->n_attr) return;
  sf_attr *a = &n->attrs[next() % (uint64_t)n->n_attr];
  int64_t v = interesting[next() % (sizeof interesting / sizeof interesting[0])];
  if (a->type == SF_ATTR_INT) a->i = v;
  if (a->type == SF_ATTR_FLOAT) a->f = (float)v;
  if (a->type == SF_ATTR_INTS && a->n) a->ints[next() % (uint64_t)a->n] = v;
  if (a->type == SF_ATTR_FLOATS && a->n) a->floats[next() % (uint64_t)a->n] = (float)v;
}

static void try_run(sf_model *m, int mutate_shapes) {
  sf_graph *g = m->g;
  sf_input_shape shapes[8];
  int ns = 0;
  for (int i = 0; i < g->n_inputs && ns < 8; i++) {
    sf_gtensor *t = &g->tensors[g->inputs[i]];
    if (!t->shape_known) continue;
    shapes[ns].name = t->t.name;
    shapes[ns].rank = t->t.rank;
    for (int d = 0; d < t->t.rank; d++) {
      int64_t v = t->t.dims[d] < 0 ? 1 : t->t.dims[d];
      if (mutate_shapes && next() % 3 == 0) v = (int64_t)(next() % 9);
      shapes[ns].dims[d] = v;
    }
    ns++;
  }
  sf_session_opts o = sf_session_opts_default();
  o.threads = 1;
  o.n_shapes = ns;
  o.shapes = shapes;
  sf_session *s = NULL;
  sf_err err = {0};
  if (sf_session_new(&s, m, &o, &err) < 0) {
    assert_true(err.code < 0);
    assert_true(err.msg[0] != 0);
    return;
  }
  for (int i = 0; i < sf_session_n_inputs(s); i++) {
    sf_tensor *t = sf_session_input(s, i);
    int64_t nb = sf_tensor_nbytes(t);
    if (t->data && nb > 0) memset(t->data, 0, (size_t)nb);
  }
  int rc = sf_session_run(s, &err);
  if (rc < 0) assert_true(err.msg[0] != 0);
  sf_session_free(s);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_mutations(void **st) {
  (void)st;
  DIR *d = opendir(DATA);
  if (!d) skip();
  char *names[2048];
  int nn = 0;
  struct dirent *e;
  while ((e = readdir(d)) && nn < 2048)
    if (e->d_name[0] != '.') names[nn++] = strdup(e->d_name);
  closedir(d);
  qsort(names, (size_t)nn, sizeof names[0], cmp_str);
  int models = 0, runs = 0;
  for (int i = 0; i < nn; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/model.onnx", DATA, names[i]);
    sf_model *m = NULL;
    sf_err err = {0};
    if (sf_model_load(&m, path, &err) < 0) continue;
    if (!all_supported(m->g)) {
      sf_model_free(m);
      continue;
    }
    models++;
    for (int k = 0; k < MUTATIONS; k++) {
      sf_model mm = {.g = sf__graph_clone(m->g), .path = NULL, .weights_released = 0};
      assert_non_null(mm.g);
      mutate_attr(mm.g);
      if (k & 1) mutate_attr(mm.g);
      try_run(&mm, k % 3 == 2);
      sf__graph_free(mm.g);
      runs++;
    }
    sf_model_free(m);
  }
  for (int i = 0; i < nn; i++) free(names[i]);
  print_message("%d models, %d mutated runs without a crash\n", models, runs);
  assert_true(models > 100);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_mutations)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
