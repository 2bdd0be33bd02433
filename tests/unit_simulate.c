/* Simulation: the random network generator (determinism, SEIFER's bandwidth formula), SEIFER's
 * cost model on tiny-cnn, and a small grid on MobileNetV2 where the exact solver must be at least
 * as good as every baseline on every instance, written as CSV. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "onnx/onnx.h"
#include "partition/partition.h"
#include "plan/simulate.h"
#include "zoo/zoo.h"

#define assert_near(a, b, eps) assert_true(fabs((double)(a) - (double)(b)) <= (eps))

static void test_network(void **state) {
  (void)state;
  sf_err err = {0};
  for (int n = 1; n <= 20; n += 19) {
    sf_cluster a, b, c;
    double xy[40];
    assert_int_equal(sf__sim_network(n, 64 << 20, 1.0, 42, &a, xy, &err), 0);
    assert_int_equal(sf__sim_network(n, 64 << 20, 1.0, 42, &b, NULL, &err), 0);
    assert_int_equal(sf__sim_network(n, 64 << 20, 1.0, 43, &c, NULL, &err), 0);
    assert_int_equal(a.n, n);
    assert_int_equal(a.gateway, -1);
    assert_memory_equal(a.bw, b.bw, sizeof(double) * (size_t)(n * n));
    int differs = 0;
    for (int i = 0; i < n; i++) {
      assert_true(xy[2 * i] >= 1.0 && xy[2 * i] < 150.0);
      assert_true(xy[2 * i + 1] >= 1.0 && xy[2 * i + 1] < 150.0);
      assert_int_equal(a.nodes[i].mem_bytes, 64 << 20);
      for (int j = 0; j < n; j++) {
        if (i == j) continue;
        double dx = xy[2 * i] - xy[2 * j], dy = xy[2 * i + 1] - xy[2 * j + 1];
        double mbps = log2(1.0 + 283230.0 / (dx * dx + dy * dy));
        assert_near(a.bw[i * n + j], mbps * 1e6 / 8, 1e-9 * a.bw[i * n + j]);
        assert_true(a.bw[i * n + j] == a.bw[j * n + i]);
        differs |= a.bw[i * n + j] != c.bw[i * n + j];
      }
    }
    if (n > 1) assert_true(differs);
    sf__cluster_deinit(&a);
    sf__cluster_deinit(&b);
    sf__cluster_deinit(&c);
  }
  /* About 6.5 Mbit/s on average over the square (SEIFER's figure). */
  double sum = 0;
  int cnt = 0;
  for (int t = 0; t < 20; t++) {
    sf_cluster a;
    assert_int_equal(sf__sim_network(20, 1 << 20, 1.0, sf__sim_seed(1, 64, 20, t), &a, NULL,
                                     &err), 0);
    for (int i = 0; i < 20 * 20; i++)
      if (i / 20 != i % 20) sum += a.bw[i] * 8 / 1e6, cnt++;
    sf__cluster_deinit(&a);
  }
  assert_true(sum / cnt > 4.5 && sum / cnt < 9.0);
  assert_true(sf__sim_seed(1, 64, 5, 0) != sf__sim_seed(1, 64, 5, 1));
  assert_true(sf__sim_seed(1, 64, 5, 0) != sf__sim_seed(1, 128, 5, 0));
  assert_true(sf__sim_seed(1, 64, 5, 0) == sf__sim_seed(1, 64, 5, 0));
}

static int analyze(const char *name, sf_partition *pa) {
  sf_err err = {0};
  sf_graph *g = NULL;
  if (sf__zoo_build(name, 1, &g, &err) < 0) return -1;
  sf_model m = {.g = g};
  sf_partition_opts po = sf_partition_opts_default();
  int rc = sf__partition_analyze(&m, &po, pa, &err);
  sf__graph_free(g);
  return rc;
}

static void test_seifer_costs(void **state) {
  (void)state;
  sf_partition pa;
  memset(&pa, 0, sizeof pa);
  assert_int_equal(analyze("tiny-cnn", &pa), 0);
  sf_pcosts c;
  sf_err err = {0};
  assert_int_equal(sf__sim_seifer_costs(&pa, 4, &c, &err), 0);
  assert_true(c.n >= 3);
  assert_int_equal(c.pos[0], 0);
  assert_int_equal(c.pos[c.n - 1], pa.n_ops);
  /* The input [1,3,32,32] crosses cut 0 once per consumer. */
  const int *ids;
  assert_int_equal(sf__partition_crossing(&pa, 0, &ids), 1);
  assert_near(fmod(c.cut_bytes[0], 3 * 32 * 32 * 8 / 1.44), 0, 1e-6);
  assert_true(c.cut_bytes[0] > 0);
  for (int i = 1; i + 1 < c.n; i++) {
    assert_int_equal(sf__partition_crossing(&pa, c.pos[i], &ids), 1);
    assert_true(c.cut_bytes[i] > 0);
  }
  /* Memory is additive over consecutive stages and counts every parameter x 4. */
  for (int i = 0; i + 2 < c.n; i++)
    assert_int_equal(sf__pcosts_mem(&c, i, c.n - 1),
                     sf__pcosts_mem(&c, i, i + 1) + sf__pcosts_mem(&c, i + 1, c.n - 1));
  assert_true(sf__pcosts_mem(&c, 0, c.n - 1) > 4 * 43000);
  for (int i = 0; i < c.n; i++) assert_true(c.flops_before[i] == 0);
  sf__pcosts_deinit(&c);
  sf__partition_deinit(&pa);
}

static void test_grid(void **state) {
  (void)state;
  sf_partition pa;
  memset(&pa, 0, sizeof pa);
  assert_int_equal(analyze("mobilenetv2", &pa), 0);
  sf_pcosts c;
  sf_err err = {0};
  assert_int_equal(sf__sim_seifer_costs(&pa, 4, &c, &err), 0);
  const int caps[2] = {16, 64}, nodes[2] = {5, 10};
  const sf_solver *algs[4] = {&sf__solver_optimal, &sf__solver_kpath, &sf__solver_joint,
                              &sf__solver_random};
  sf_sim_grid g = {.n_caps = 2, .caps_mb = caps, .n_nodes = 2, .nodes = nodes, .trials = 5,
                   .seed = 7, .n_algs = 4, .algs = algs, .flops_per_s = 1.0};
  sf_sim_result *r = NULL;
  assert_int_equal(sf__sim_run(&c, &g, NULL, NULL, &r, &err), 0);
  int nontrivial = 0;
  for (int k = 0; k < 4; k++) {
    const sf_sim_result *row = &r[k * 4];
    assert_int_equal(row[0].capacity_mb, caps[k / 2]);
    assert_int_equal(row[0].nodes, nodes[k % 2]);
    assert_string_equal(row[0].algorithm, "optimal");
    for (int a = 1; a < 4; a++) {
      assert_true(row[0].feasible >= row[a].feasible);
      for (int t = 0; t < 5; t++) {
        double o = row[0].bottleneck_s[t], b = row[a].bottleneck_s[t];
        assert_true(o <= b * (1 + 1e-12));
        if (isfinite(o) && o > 0) nontrivial = 1;
      }
    }
    int cnt;
    double imp = sf__sim_improvement(&row[0], &row[1], &cnt);
    if (cnt) assert_true(imp >= 0);
  }
  assert_true(nontrivial);
  /* Same instances again: identical results. */
  sf_sim_result *r2 = NULL;
  assert_int_equal(sf__sim_run(&c, &g, NULL, NULL, &r2, &err), 0);
  for (int i = 0; i < 16; i++)
    assert_memory_equal(r[i].bottleneck_s, r2[i].bottleneck_s, 5 * sizeof(double));
  sf__sim_results_free(r2, 16);

  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  sf__sim_write_csv(f, 1, "mobilenetv2", r, 16);
  fclose(f);
  int lines = 0;
  for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
  assert_int_equal(lines, 17);
  assert_true(!strncmp(buf, "model,capacity_mb,nodes,algorithm,mean_bottleneck_s,"
                            "feasible_trials,mean_solve_s\nmobilenetv2,16,5,optimal,", 92));
  assert_non_null(strstr(buf, "\nmobilenetv2,64,10,random,"));
  free(buf);
  sf__sim_results_free(r, 16);
  sf__pcosts_deinit(&c);
  sf__partition_deinit(&pa);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_network),
      cmocka_unit_test(test_seifer_costs),
      cmocka_unit_test(test_grid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
