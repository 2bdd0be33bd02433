/* Planner: cluster parsing (good file and every error), plan evaluation on a hand-computed
 * example with a gateway, the exact solver against brute force on random small instances (also
 * restricted to a subset of usable nodes), the exact solver against SEIFER's heuristics on
 * SEIFER-like instances, a 50-node run, measured per-operator costs, and several pipelines:
 * hand-computed cases and brute force over every set of up to 2 (3) disjoint pipelines. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "plan/plan.h"

/* ---- helpers ------------------------------------------------------------------------------ */
static uint64_t rs = 12345;
static uint64_t rnd(void) {
  uint64_t z = (rs += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static double unif(double a, double b) { return a + (b - a) * (double)(rnd() >> 11) / 9007199254740992.0; }
static int irand(int a, int b) { return a + (int)(rnd() % (uint64_t)(b - a + 1)); }

typedef struct inst {
  sf_pcosts c;
  sf_cluster cl;
} inst;

static void inst_alloc(inst *I, int n, int m) {
  memset(I, 0, sizeof *I);
  I->c.n = n;
  I->c.pos = calloc((size_t)n, sizeof(int));
  I->c.flops_before = calloc((size_t)n, sizeof(double));
  I->c.cut_bytes = calloc((size_t)n, sizeof(double));
  I->c.mem = calloc((size_t)n * n, sizeof(int64_t));
  I->cl.n = m;
  I->cl.nodes = calloc((size_t)m, sizeof(sf_cnode));
  I->cl.bw = calloc((size_t)m * m, sizeof(double));
  I->cl.gateway = -1;
  for (int i = 0; i < n; i++) I->c.pos[i] = i;
  for (int v = 0; v < m; v++) {
    char nm[16];
    snprintf(nm, sizeof nm, "n%d", v);
    I->cl.nodes[v].name = strdup(nm);
  }
}

static void inst_free(inst *I) {
  free(I->c.pos);
  free(I->c.flops_before);
  free(I->c.cut_bytes);
  free(I->c.mem);
  free(I->c.measured_s);
  free(I->c.measured_before);
  sf__cluster_deinit(&I->cl);
}

/* Stage memory = sum of per-segment weights (+ a per-stage overhead). */
static void fill_mem(inst *I, const double *seg, double overhead) {
  int n = I->c.n;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) {
      double s = overhead;
      for (int k = i; k < j; k++) s += seg[k];
      I->c.mem[i * n + j] = (int64_t)s;
    }
}

/* Random small instance: memory, speeds, asymmetric bandwidths, measured or flops costs. */
static void gen_small(inst *I, int n, int m) {
  inst_alloc(I, n, m);
  double seg[16];
  double tot = 0;
  for (int k = 0; k < n - 1; k++) tot += seg[k] = unif(1, 10) * 1e6;
  fill_mem(I, seg, unif(0, 2e6));
  for (int i = 0; i < n; i++) I->c.cut_bytes[i] = unif(0.1, 5) * 1e6;
  for (int i = 1; i < n; i++) I->c.flops_before[i] = I->c.flops_before[i - 1] + unif(0, 3e9);
  if (rnd() & 1) {
    I->c.measured_s = calloc((size_t)n * n, sizeof(double));
    I->c.ref_flops_per_s = 1e9;
    for (int i = 0; i < n; i++)
      for (int j = i + 1; j < n; j++) I->c.measured_s[i * n + j] = unif(0.05, 3);
  }
  int equal_speed = rnd() % 3 == 0;
  for (int v = 0; v < m; v++) {
    I->cl.nodes[v].mem_bytes = (int64_t)(tot * unif(0.2, 1.2));
    I->cl.nodes[v].flops_per_s = equal_speed ? 1e9 : unif(0.5, 4) * 1e9;
  }
  int sym = rnd() % 3 == 0;
  for (int u = 0; u < m; u++)
    for (int v = 0; v < m; v++)
      if (u != v) I->cl.bw[u * m + v] = sym && v < u ? I->cl.bw[v * m + u] : unif(0.2, 5) * 1e6;
  if (rnd() & 1) I->cl.gateway = irand(0, m - 1);
}

/* SEIFER's network: positions in [1,150)^2, bandwidth log2(1 + 283230/d^2) Mbit/s, equal
 * memory; compute ignored (zero flops); transfer sizes shrinking with depth. */
static void gen_seifer(inst *I, int n, int m, double cap_mb, double stages) {
  inst_alloc(I, n, m);
  double *seg = calloc((size_t)n, sizeof(double)), tot = 0;
  for (int k = 0; k < n - 1; k++) tot += seg[k] = unif(0.2, 2);
  double cap = cap_mb * 1048576.0, scale = cap * stages * 0.9 / tot;
  for (int k = 0; k < n - 1; k++) seg[k] *= scale;
  fill_mem(I, seg, 0);
  free(seg);
  for (int i = 0; i < n; i++)
    I->c.cut_bytes[i] = 8.0 / 1.44 * 112 * 112 * 64 * exp(-3.0 * i / n) * unif(0.2, 1.5) * irand(1, 2);
  double *x = calloc((size_t)m, sizeof(double)), *y = calloc((size_t)m, sizeof(double));
  for (int v = 0; v < m; v++) {
    x[v] = unif(1, 150);
    y[v] = unif(1, 150);
    I->cl.nodes[v].mem_bytes = (int64_t)cap;
    I->cl.nodes[v].flops_per_s = 1e9;
  }
  for (int u = 0; u < m; u++)
    for (int v = 0; v < m; v++)
      if (u != v) {
        double d2 = (x[u] - x[v]) * (x[u] - x[v]) + (y[u] - y[v]) * (y[u] - y[v]);
        if (d2 < 1e-6) d2 = 1e-6;
        I->cl.bw[u * m + v] = log2(1 + 283230 / d2) * 1e6 / 8;
      }
  free(x);
  free(y);
}

/* ---- brute force -------------------------------------------------------------------------- */
typedef struct brute {
  const inst *I;
  unsigned used0; /* nodes that may not run a stage */
  int K;
  double best;
  int best_k; /* fewest stages among the plans of least bottleneck */
} brute;

static void bf(brute *B, int c, int v, unsigned used, int t, double cur) {
  const sf_pcosts *c_ = &B->I->c;
  const sf_cluster *cl = &B->I->cl;
  int n = c_->n, m = cl->n;
  if (c == n - 1) {
    double x = cur;
    if (cl->gateway >= 0) x = fmax(x, sf__link_s(c_, cl, n - 1, v, cl->gateway));
    if (x < B->best || (x == B->best && t < B->best_k)) B->best = x, B->best_k = t;
    return;
  }
  if (t == B->K) return;
  for (int w = 0; w < m; w++) {
    if (used >> w & 1) continue;
    double l = v < 0 ? (cl->gateway >= 0 ? sf__link_s(c_, cl, 0, cl->gateway, w) : 0)
                     : sf__link_s(c_, cl, c, v, w);
    for (int j = c + 1; j < n; j++) {
      if (sf__pcosts_mem(c_, c, j) > cl->nodes[w].mem_bytes) continue;
      double x = fmax(fmax(cur, l), sf__stage_compute_s(c_, cl, c, j, w));
      bf(B, j, w, used | 1u << w, t + 1, x);
    }
  }
}

static double brute_force_k(const inst *I, int max_stages, int *k) {
  brute B = {I, 0, max_stages > 0 && max_stages < I->cl.n ? max_stages : I->cl.n, INFINITY, 0};
  bf(&B, 0, -1, 0, 0, 0);
  if (k) *k = B.best_k;
  return B.best;
}
static double brute_force(const inst *I, int max_stages) { return brute_force_k(I, max_stages, NULL); }

static double solve(const sf_solver *s, const inst *I, const sf_plan_opts *o, sf_plan *p) {
  sf_err err = {0};
  int rc = sf__plan_solve(s, &I->c, &I->cl, o, p, &err);
  if (rc) fail_msg("%s: %s", s->name, err.msg);
  /* every plan re-evaluates to its reported bottleneck */
  if (p->n_stages > 0) {
    int cuts[64], nodes[64];
    sf_plan q;
    for (int t = 0; t < p->n_stages; t++) {
      cuts[t] = p->stages[t].cut_from;
      nodes[t] = p->stages[t].node;
    }
    cuts[p->n_stages] = p->stages[p->n_stages - 1].cut_to;
    assert_int_equal(sf__plan_eval(&I->c, &I->cl, p->n_stages, cuts, nodes, &q, &err), 0);
    assert_true(q.bottleneck_s == p->bottleneck_s);
    sf__plan_deinit(&q);
  }
  return p->bottleneck_s;
}

/* ---- cluster parsing ---------------------------------------------------------------------- */
static void test_cluster_good(void **st) {
  const char *js =
      "{\"nodes\": [{\"name\": \"n1\", \"memory_mb\": 128, \"gflops\": 2.5, \"labels\": {\"zone\": \"a\"}},"
      "             {\"name\": \"n2\", \"memory_bytes\": 1000000, \"gflops\": 1},"
      "             {\"name\": \"n3\", \"memory_mb\": 64, \"gflops\": 4}],"
      " \"links\": [{\"from\": \"n1\", \"to\": \"n2\", \"mbps\": 8, \"rtt_ms\": 2},"
      "             {\"from\": \"n2\", \"to\": \"n3\", \"mbps\": 16, \"symmetric\": false}],"
      " \"default_link\": {\"mbps\": 80, \"rtt_ms\": 1}, \"gateway\": \"n3\"}";
  sf_cluster c;
  sf_err err = {0};
  int rc = sf__cluster_parse(js, strlen(js), &c, &err);
  if (rc) fail_msg("%s", err.msg);
  assert_int_equal(c.n, 3);
  assert_string_equal(c.nodes[1].name, "n2");
  assert_true(c.nodes[0].mem_bytes == 128LL << 20);
  assert_true(c.nodes[1].mem_bytes == 1000000);
  assert_true(c.nodes[0].flops_per_s == 2.5e9);
  assert_int_equal(c.gateway, 2);
  assert_true(c.bw[0 * 3 + 1] == 1e6 && c.bw[1 * 3 + 0] == 1e6);
  assert_true(c.bw[1 * 3 + 2] == 2e6 && c.bw[2 * 3 + 1] == 1e7);
  assert_true(c.bw[0 * 3 + 2] == 1e7 && c.bw[2 * 3 + 0] == 1e7);
  assert_non_null(c.rtt);
  assert_true(fabs(c.rtt[0 * 3 + 1] - 0.002) < 1e-15 && fabs(c.rtt[0 * 3 + 2] - 0.001) < 1e-15);
  sf__cluster_deinit(&c);
}

static void expect_err(const char *js, int code, const char *needle) {
  sf_cluster c;
  sf_err err = {0};
  int rc = sf__cluster_parse(js, strlen(js), &c, &err);
  if (rc != code || !strstr(err.msg, needle))
    fail_msg("want %d '%s', got %d '%s' for %.200s", code, needle, rc, err.msg, js);
  assert_int_equal(c.n, 0);
  assert_null(c.nodes);
}

#define N2 "{\"name\": \"a\", \"memory_mb\": 64, \"gflops\": 1}, {\"name\": \"b\", \"memory_mb\": 64, \"gflops\": 1}"

static void test_cluster_errors(void **st) {
  expect_err("{\"nodes\": [", SF_EFORMAT, "not valid JSON");
  expect_err("[1, 2]", SF_EFORMAT, "must be a JSON object");
  expect_err("{}", SF_EFORMAT, "missing 'nodes'");
  expect_err("{\"nodes\": []}", SF_EFORMAT, "'nodes' is empty");
  expect_err("{\"nodes\": [" N2 "], \"default_link\": {\"mbps\": 1}, \"extra\": 1}", SF_EFORMAT,
             "top level: unknown key 'extra'");
  expect_err("{\"nodes\": [{\"name\": \"a\", \"memory_mb\": 64, \"gflops\": 1, \"cpu\": 4}], "
             "\"default_link\": {\"mbps\": 1}}",
             SF_EFORMAT, "nodes[0] ('a'): unknown key 'cpu'");
  expect_err("{\"nodes\": [" N2 ", {\"name\": \"a\", \"memory_mb\": 64, \"gflops\": 1}], "
             "\"default_link\": {\"mbps\": 1}}",
             SF_EFORMAT, "nodes[2] ('a'): duplicate node name");
  expect_err("{\"nodes\": [" N2 "], \"links\": [{\"from\": \"a\", \"to\": \"zz\", \"mbps\": 5}]}",
             SF_EFORMAT, "links[0]: 'to' names unknown node 'zz'");
  expect_err("{\"nodes\": [{\"name\": \"a\", \"memory_mb\": 0, \"gflops\": 1}]}", SF_EFORMAT,
             "nodes[0] ('a'): 'memory_mb' must be positive");
  expect_err("{\"nodes\": [{\"name\": \"a\", \"memory_bytes\": -5, \"gflops\": 1}]}", SF_EFORMAT,
             "'memory_bytes' must be positive");
  expect_err("{\"nodes\": [{\"name\": \"a\", \"memory_mb\": 1, \"memory_bytes\": 5, \"gflops\": 1}]}",
             SF_EFORMAT, "exactly one of");
  expect_err("{\"nodes\": [{\"name\": \"a\", \"memory_mb\": 1, \"gflops\": -2}]}", SF_EFORMAT,
             "nodes[0] ('a'): 'gflops' must be positive");
  expect_err("{\"nodes\": [{\"name\": \"a\", \"memory_mb\": 1}]}", SF_EFORMAT, "missing 'gflops'");
  expect_err("{\"nodes\": [" N2 "], \"links\": [{\"from\": \"a\", \"to\": \"b\", \"mbps\": 0}]}",
             SF_EFORMAT, "links[0] (a -> b): 'mbps' must be positive");
  expect_err("{\"nodes\": [" N2 "], \"default_link\": {\"mbps\": -1}}", SF_EFORMAT,
             "default_link: 'mbps' must be positive");
  expect_err("{\"nodes\": [" N2 "], \"links\": [{\"from\": \"a\", \"to\": \"b\", \"mbps\": 5, "
             "\"symmetric\": false}]}",
             SF_EFORMAT, "no link from 'b' to 'a' and no 'default_link'");
  expect_err("{\"nodes\": [" N2 "], \"links\": [{\"from\": \"a\", \"to\": \"b\", \"mbps\": 5}, "
             "{\"from\": \"b\", \"to\": \"a\", \"mbps\": 5}]}",
             SF_EFORMAT, "duplicate link b -> a");
  expect_err("{\"nodes\": [" N2 "], \"links\": [{\"from\": \"a\", \"to\": \"a\", \"mbps\": 5}]}",
             SF_EFORMAT, "two different nodes");
  expect_err("{\"nodes\": [" N2 "], \"default_link\": {\"mbps\": 1}, \"gateway\": \"q\"}", SF_EFORMAT,
             "'gateway' names unknown node 'q'");
  expect_err("{\"nodes\": [{\"name\": \"a\", \"memory_mb\": 1, \"gflops\": 1, \"name\": \"b\"}]}",
             SF_EFORMAT, "duplicate key 'name'");
  expect_err("{\"nodes\": [{\"name\": \"a\", \"memory_mb\": \"64\", \"gflops\": 1}]}", SF_EFORMAT,
             "'memory_mb' must be a finite number");
  expect_err("{\"nodes\": [{\"name\": \"0123456789012345678901234567890123456789012345678901234567890123\","
             " \"memory_mb\": 1, \"gflops\": 1}]}",
             SF_ELIMIT, "'name' is longer than 63 bytes");
  /* 4097 nodes */
  size_t cap = 4200 * 64, len = 0;
  char *big = malloc(cap);
  len += (size_t)sprintf(big + len, "{\"nodes\": [");
  for (int i = 0; i < 4097; i++)
    len += (size_t)sprintf(big + len, "%s{\"name\":\"n%d\",\"memory_mb\":1,\"gflops\":1}", i ? "," : "", i);
  sprintf(big + len, "], \"default_link\": {\"mbps\": 1}}");
  expect_err(big, SF_ELIMIT, "'nodes' has 4097 entries, limit is 4096");
  free(big);
}

/* ---- evaluation --------------------------------------------------------------------------- */
/* Nodes A (1 GFLOP/s, 100 MB), B (2 GFLOP/s, 100 MB), C (1 GFLOP/s, 5 MB, gateway); links
 * 1e6 B/s except A->B 4e6 B/s. Cuts 0..3: flops before 0, 2e9, 3e9, 6e9; bytes 3e6, 4e6,
 * 2e6, 5e5; stage memory 10 MB except (0,1) 4 MB. */
static void make_eval(inst *I) {
  inst_alloc(I, 4, 3);
  double fb[4] = {0, 2e9, 3e9, 6e9}, cb[4] = {3e6, 4e6, 2e6, 5e5};
  memcpy(I->c.flops_before, fb, sizeof fb);
  memcpy(I->c.cut_bytes, cb, sizeof cb);
  for (int i = 0; i < 4; i++)
    for (int j = i + 1; j < 4; j++) I->c.mem[i * 4 + j] = 10 << 20;
  I->c.mem[0 * 4 + 1] = 4 << 20;
  double sp[3] = {1e9, 2e9, 1e9};
  int64_t mem[3] = {100 << 20, 100 << 20, 5 << 20};
  for (int v = 0; v < 3; v++) {
    I->cl.nodes[v].flops_per_s = sp[v];
    I->cl.nodes[v].mem_bytes = mem[v];
    for (int w = 0; w < 3; w++) I->cl.bw[v * 3 + w] = 1e6;
  }
  I->cl.bw[0 * 3 + 1] = 4e6;
  I->cl.gateway = 2;
}

static void test_eval(void **st) {
  inst I;
  make_eval(&I);
  sf_plan p;
  sf_err err = {0};
  int cuts[3] = {0, 1, 3}, nodes[2] = {0, 1};
  assert_int_equal(sf__plan_eval(&I.c, &I.cl, 2, cuts, nodes, &p, &err), 0);
  assert_true(p.gateway_in_s == 3.0);        /* 3e6 B from C to A at 1e6 B/s */
  assert_true(p.stages[0].compute_s == 2.0); /* 2e9 flops at 1e9 */
  assert_true(p.stages[0].link_s == 1.0);    /* 4e6 B A->B at 4e6 B/s */
  assert_true(p.stages[1].compute_s == 2.0); /* 4e9 flops at 2e9 */
  assert_true(p.stages[1].link_s == 0.5);    /* 5e5 B B->C (gateway) */
  assert_true(p.bottleneck_s == 3.0);
  assert_true(fabs(p.throughput_per_s - 1 / 3.0) < 1e-15);
  sf__plan_deinit(&p);
  /* first stage on the gateway: no input transfer; C->B carries 4e6 at 1e6 */
  nodes[0] = 2;
  assert_int_equal(sf__plan_eval(&I.c, &I.cl, 2, cuts, nodes, &p, &err), 0);
  assert_true(p.gateway_in_s == 0 && p.stages[0].link_s == 4.0 && p.bottleneck_s == 4.0);
  sf__plan_deinit(&p);
  /* whole model on C: 10 MB > 5 MB */
  int c1[2] = {0, 3}, n1[1] = {2};
  assert_int_equal(sf__plan_eval(&I.c, &I.cl, 1, c1, n1, &p, &err), 0);
  assert_true(isinf(p.bottleneck_s) && p.throughput_per_s == 0);
  sf__plan_deinit(&p);
  /* malformed plans */
  int bad[3] = {0, 2, 2};
  assert_int_equal(sf__plan_eval(&I.c, &I.cl, 2, bad, nodes, &p, &err), SF_EINVAL);
  int same[2] = {1, 1};
  assert_int_equal(sf__plan_eval(&I.c, &I.cl, 2, cuts, same, &p, &err), SF_EINVAL);
  assert_non_null(strstr(err.msg, "both on node"));
  /* the exact solver: (0,1) on A, (1,3) on B costs 3 (gateway input); C-first costs 4;
   * A alone costs 6 compute; B alone 3 s compute + 1.5 s input from C: 3; so 3 is optimal
   * and beats nothing smaller: brute force agrees */
  sf_plan_opts o = sf_plan_opts_default();
  double b = solve(&sf__solver_optimal, &I, &o, &p);
  assert_true(b == brute_force(&I, 0));
  assert_true(b == 3.0);
  assert_int_equal(p.optimal, 1);
  assert_true(p.gap == 0);
  assert_string_equal(p.algorithm, "optimal");
  sf__plan_deinit(&p);
  assert_ptr_equal(sf__solver_find("kpath"), &sf__solver_kpath);
  assert_null(sf__solver_find("nope"));
  o.distinct_nodes = 0;
  assert_int_equal(sf__plan_solve(&sf__solver_optimal, &I.c, &I.cl, &o, &p, &err), SF_EUNSUPPORTED);
  inst_free(&I);
}

/* ---- exact solver == brute force ---------------------------------------------------------- */
static void test_brute_force(void **st) {
  rs = 777;
  int agree = 0, infeasible = 0, with_gw = 0, multi = 0;
  for (int it = 0; it < 400; it++) {
    int m = irand(1, 7), n = irand(2, 12);
    if (m >= 6 && n > 9) n = 9; /* keep the enumeration small */
    inst I;
    gen_small(&I, n, m);
    sf_plan_opts o = sf_plan_opts_default();
    if (rnd() % 4 == 0) o.max_stages = irand(1, 4);
    int want_k;
    double want = brute_force_k(&I, o.max_stages, &want_k);
    sf_plan p;
    double got = solve(&sf__solver_optimal, &I, &o, &p);
    if (!(got == want || (isinf(got) && isinf(want))))
      fail_msg("instance %d (n=%d m=%d gw=%d K=%d): optimal %.17g, brute force %.17g", it, n, m,
               I.cl.gateway, o.max_stages, got, want);
    assert_int_equal(p.optimal, 1);
    if (isfinite(want)) assert_int_equal(p.n_stages, want_k); /* ties: fewest stages */
    multi += p.n_stages > 1;
    if (o.max_stages) assert_true(p.n_stages <= o.max_stages);
    /* the baselines never beat it */
    for (int s = 0; s < 3; s++) {
      const sf_solver *h[3] = {&sf__solver_random, &sf__solver_joint, &sf__solver_kpath};
      sf_plan q;
      double hb = solve(h[s], &I, &o, &q);
      assert_true(hb >= got);
      sf__plan_deinit(&q);
    }
    agree++;
    infeasible += isinf(want);
    with_gw += I.cl.gateway >= 0;
    sf__plan_deinit(&p);
    inst_free(&I);
  }
  print_message("brute force: %d/%d agree (%d infeasible, %d with gateway, %d multi-stage)\n",
                agree, 400, infeasible, with_gw, multi);
}

/* ---- SEIFER-like instances ---------------------------------------------------------------- */
static void test_seifer_like(void **st) {
  rs = 4242;
  static const int ms[] = {5, 10, 15, 20};
  static const double caps[] = {64, 128, 256, 512};
  double sum[4] = {0}; /* optimal, kpath, joint, random */
  int cnt = 0;
  for (int it = 0; it < 48; it++) {
    int m = ms[it % 4], n = irand(50, 120);
    inst I;
    gen_seifer(&I, n, m, caps[(it / 4) % 4], unif(1, m < 8 ? m : 8));
    sf_plan_opts o = sf_plan_opts_default();
    o.seed = (uint64_t)it;
    sf_plan p;
    double opt = solve(&sf__solver_optimal, &I, &o, &p);
    assert_int_equal(p.optimal, 1);
    const sf_solver *h[3] = {&sf__solver_kpath, &sf__solver_joint, &sf__solver_random};
    double hb[3];
    for (int s = 0; s < 3; s++) {
      sf_plan q;
      hb[s] = solve(h[s], &I, &o, &q);
      if (!(hb[s] >= opt)) fail_msg("%s %.17g beats optimal %.17g", h[s]->name, hb[s], opt);
      sf__plan_deinit(&q);
    }
    if (isfinite(opt) && isfinite(hb[2])) {
      sum[0] += opt, sum[1] += hb[0], sum[2] += hb[1], sum[3] += hb[2];
      cnt++;
    }
    sf__plan_deinit(&p);
    inst_free(&I);
  }
  print_message("SEIFER-like (%d finite): mean bottleneck optimal %.3f s, kpath %.3f, joint %.3f, random %.3f\n",
                cnt, sum[0] / cnt, sum[1] / cnt, sum[2] / cnt, sum[3] / cnt);
}

static void test_large(void **st) {
  rs = 99;
  inst I;
  gen_seifer(&I, 200, 50, 64, 8);
  sf_plan_opts o = sf_plan_opts_default();
  o.time_limit_s = 30;
  sf_plan p;
  double b = solve(&sf__solver_optimal, &I, &o, &p);
  print_message("50 nodes, 200 cuts: bottleneck %.4f s, %d stages, optimal %d, gap %.3g, %.3f s\n", b,
                p.n_stages, p.optimal, p.gap, p.solve_s);
  assert_true(isfinite(b));
  sf__plan_deinit(&p);
  inst_free(&I);
}

/* ---- usable nodes ------------------------------------------------------------------------- */
static void test_usable(void **st) {
  rs = 31337;
  int restricted = 0;
  for (int it = 0; it < 200; it++) {
    int m = irand(2, 7), n = irand(2, 9);
    inst I;
    gen_small(&I, n, m);
    unsigned char us[8];
    unsigned used0 = 0;
    for (int v = 0; v < m; v++) {
      us[v] = rnd() % 3 != 0;
      if (!us[v]) used0 |= 1u << v;
    }
    restricted += used0 != 0;
    sf_plan_opts o = sf_plan_opts_default();
    o.usable = us;
    brute B = {&I, used0, m, INFINITY, 0};
    bf(&B, 0, -1, used0, 0, 0);
    sf_plan p;
    double got = solve(&sf__solver_optimal, &I, &o, &p);
    if (!(got == B.best || (isinf(got) && isinf(B.best))))
      fail_msg("instance %d (n=%d m=%d unusable %#x): optimal %.17g, brute force %.17g", it, n, m,
               used0, got, B.best);
    assert_int_equal(p.optimal, 1);
    for (int t = 0; t < p.n_stages; t++) assert_true(us[p.stages[t].node]);
    sf__plan_deinit(&p);
    const sf_solver *h[3] = {&sf__solver_random, &sf__solver_joint, &sf__solver_kpath};
    for (int k = 0; k < 3; k++) {
      double hb = solve(h[k], &I, &o, &p);
      assert_true(hb >= got);
      for (int t = 0; t < p.n_stages; t++) assert_true(us[p.stages[t].node]);
      sf__plan_deinit(&p);
    }
    inst_free(&I);
  }
  print_message("usable nodes: 200 instances agree with brute force (%d restricted)\n", restricted);
}

/* ---- measured per-operator costs ---------------------------------------------------------- */
static void test_measured_ops(void **st) {
  inst I;
  inst_alloc(&I, 3, 2);
  I.c.pos[1] = 2;
  I.c.pos[2] = 5;
  for (int v = 0; v < 2; v++) {
    I.cl.nodes[v].mem_bytes = 1 << 20;
    I.cl.bw[v * 2 + (1 - v)] = 1e9;
  }
  I.cl.nodes[0].flops_per_s = 1e9;
  I.cl.nodes[1].flops_per_s = 2e9;
  double ops[5] = {1, 2, 3, 4, 5};
  sf_err err = {0};
  assert_int_equal(sf__pcosts_set_op_times(&I.c, ops, 5, 1e9, &err), 0);
  assert_true(I.c.measured_before[0] == 0 && I.c.measured_before[1] == 3 &&
              I.c.measured_before[2] == 15);
  assert_true(sf__stage_compute_s(&I.c, &I.cl, 0, 1, 0) == 3);
  assert_true(sf__stage_compute_s(&I.c, &I.cl, 1, 2, 0) == 12);
  assert_true(sf__stage_compute_s(&I.c, &I.cl, 0, 2, 1) == 7.5); /* twice the reference speed */
  /* the best plan: 12 s stage on the fast node, 3 s on the other -> 6 s */
  sf_plan_opts o = sf_plan_opts_default();
  sf_plan p;
  assert_true(solve(&sf__solver_optimal, &I, &o, &p) == 6);
  sf__plan_deinit(&p);
  assert_int_equal(sf__pcosts_set_op_times(&I.c, ops, 4, 1e9, &err), SF_EINVAL);
  assert_non_null(strstr(err.msg, "4 operator times for a model of 5 operators"));
  ops[3] = -1;
  assert_int_equal(sf__pcosts_set_op_times(&I.c, ops, 5, 1e9, &err), SF_EINVAL);
  assert_non_null(strstr(err.msg, "operator 3"));
  ops[3] = 4;
  assert_int_equal(sf__pcosts_set_op_times(&I.c, ops, 5, 0, &err), SF_EINVAL);
  I.c.measured_s = calloc(9, sizeof(double));
  assert_int_equal(sf__plan_solve(&sf__solver_optimal, &I.c, &I.cl, &o, &p, &err), SF_EINVAL);
  assert_non_null(strstr(err.msg, "both"));
  inst_free(&I);
}

/* ---- several pipelines -------------------------------------------------------------------- */
typedef struct pipe {
  double b, a, d;
  unsigned mask;
} pipe;

typedef struct pipes {
  pipe *v;
  int n, cap;
} pipes;

/* Every feasible pipeline of I (cuts, distinct nodes), evaluated by sf__plan_eval. */
static void enum_pipes(const inst *I, pipes *P, int c, int v, unsigned used, int t, int *cuts,
                       int *nodes) {
  int n = I->c.n, m = I->cl.n;
  if (c == n - 1) {
    sf_plan p;
    sf_err err = {0};
    assert_int_equal(sf__plan_eval(&I->c, &I->cl, t, cuts, nodes, &p, &err), 0);
    if (isfinite(p.bottleneck_s)) {
      if (P->n == P->cap) P->v = realloc(P->v, sizeof *P->v * (size_t)(P->cap = P->cap ? 2 * P->cap : 256));
      P->v[P->n++] = (pipe){p.bottleneck_s, p.gateway_in_s,
                            I->cl.gateway >= 0 ? p.stages[t - 1].link_s : 0, used};
    }
    sf__plan_deinit(&p);
    return;
  }
  (void)v;
  for (int w = 0; w < m; w++) {
    if (used >> w & 1) continue;
    for (int j = c + 1; j < n; j++) {
      if (sf__pcosts_mem(&I->c, c, j) > I->cl.nodes[w].mem_bytes) continue;
      cuts[t + 1] = j;
      nodes[t] = w;
      enum_pipes(I, P, j, w, used | 1u << w, t + 1, cuts, nodes);
    }
  }
}

/* The shared-gateway total, computed independently of the library. */
static double set_total(const inst *I, const pipe *const *ps, int k) {
  double A = 0, D = 0, T = 0;
  for (int i = 0; i < k && I->cl.gateway >= 0; i++) A += ps[i]->a, D += ps[i]->d;
  double R = fmax(A, D);
  for (int i = 0; i < k; i++) T += 1 / fmax(ps[i]->b, R);
  return T;
}

static void best_set(const inst *I, const pipes *P, int start, unsigned used, int k, int K,
                     const pipe **chosen, double *best) {
  if (k > 0) {
    double T = set_total(I, chosen, k);
    if (T > *best) *best = T;
  }
  if (k == K) return;
  for (int i = start; i < P->n; i++) {
    if (P->v[i].mask & used) continue;
    chosen[k] = &P->v[i];
    best_set(I, P, i + 1, used | P->v[i].mask, k + 1, K, chosen, best);
  }
}

/* Checks every multi-plan invariant; returns the total. */
static double check_multi(const inst *I, const sf_multiplan *mp, int K) {
  assert_true(mp->n_pipelines <= K || K == 0);
  unsigned seen = 0;
  pipe pp[64];
  const pipe *pl[64];
  double rates = 0;
  for (int k = 0; k < mp->n_pipelines; k++) {
    const sf_plan *p = &mp->pipelines[k];
    int cuts[64], nodes[64];
    assert_true(p->n_stages >= 1 && p->n_stages < 64);
    for (int t = 0; t < p->n_stages; t++) {
      cuts[t] = p->stages[t].cut_from;
      nodes[t] = p->stages[t].node;
      assert_false(seen >> nodes[t] & 1); /* disjoint */
      seen |= 1u << nodes[t];
    }
    cuts[p->n_stages] = p->stages[p->n_stages - 1].cut_to;
    sf_plan q;
    sf_err err = {0};
    assert_int_equal(sf__plan_eval(&I->c, &I->cl, p->n_stages, cuts, nodes, &q, &err), 0);
    assert_true(isfinite(q.bottleneck_s) && q.bottleneck_s == p->bottleneck_s); /* fits memory */
    pp[k] = (pipe){q.bottleneck_s, q.gateway_in_s,
                   I->cl.gateway >= 0 ? q.stages[q.n_stages - 1].link_s : 0, 0};
    pl[k] = &pp[k];
    sf__plan_deinit(&q);
    rates += mp->rate_per_s[k];
    if (k) assert_true(mp->pipelines[k - 1].bottleneck_s <= p->bottleneck_s); /* best first */
  }
  double T = set_total(I, pl, mp->n_pipelines);
  assert_true(fabs(T - mp->throughput_per_s) <= 1e-12 * T);
  assert_true(fabs(rates - mp->throughput_per_s) <= 1e-12 * T);
  assert_true(mp->upper_bound_per_s >= T);
  if (mp->optimal) assert_true(mp->gap == 0);
  return T;
}

static void test_multi_brute(void **st) {
  rs = 2024;
  int opt = 0, multi = 0, total = 0, three = 0;
  for (int it = 0; it < 150; it++) {
    int m = irand(2, 6), n = irand(2, 5);
    inst I;
    gen_small(&I, n, m);
    int K = m <= 5 && n <= 4 && (rnd() & 1) ? 3 : 2;
    three += K == 3;
    pipes P = {0};
    int cuts[8] = {0}, nodes[8];
    enum_pipes(&I, &P, 0, -1, 0, 0, cuts, nodes);
    const pipe *chosen[3];
    double want = 0;
    best_set(&I, &P, 0, 0, 0, K, chosen, &want);
    sf_plan_opts o = sf_plan_opts_default();
    sf_plan p1;
    double b1 = solve(&sf__solver_optimal, &I, &o, &p1);
    sf__plan_deinit(&p1);
    sf_multiplan mp;
    sf_err err = {0};
    if (sf__plan_multi(&sf__solver_optimal, &I.c, &I.cl, &o, K, &mp, &err))
      fail_msg("instance %d: %s", it, err.msg);
    double T = check_multi(&I, &mp, K);
    if (isinf(b1)) {
      assert_int_equal(mp.n_pipelines, 0);
      assert_true(want == 0 && T == 0);
    } else {
      total++;
      assert_true(T >= (1 / b1) * (1 - 1e-12)); /* never below the single pipeline */
      if (!(T <= want * (1 + 1e-9)))
        fail_msg("instance %d: total %.17g above the brute force %.17g", it, T, want);
      if (!(mp.upper_bound_per_s >= want * (1 - 1e-9)))
        fail_msg("instance %d: bound %.17g below the brute force %.17g", it, mp.upper_bound_per_s, want);
      if (mp.optimal) {
        if (!(T >= want * (1 - 1e-9)))
          fail_msg("instance %d (m=%d n=%d gw=%d K=%d): claims optimal %.17g, brute force %.17g",
                   it, m, n, I.cl.gateway, K, T, want);
        opt++;
      }
      multi += mp.n_pipelines > 1;
    }
    sf__multiplan_deinit(&mp);
    /* one pipeline: the single-pipeline optimum, proven */
    if (sf__plan_multi(&sf__solver_optimal, &I.c, &I.cl, &o, 1, &mp, &err)) fail_msg("%s", err.msg);
    if (isfinite(b1)) {
      assert_int_equal(mp.n_pipelines, 1);
      assert_true(fabs(mp.throughput_per_s - 1 / b1) <= 1e-12 / b1);
      assert_int_equal(mp.optimal, 1);
    }
    sf__multiplan_deinit(&mp);
    /* the heuristics give feasible sets too */
    if (sf__plan_multi(&sf__solver_joint, &I.c, &I.cl, &o, K, &mp, &err)) fail_msg("%s", err.msg);
    T = check_multi(&I, &mp, K);
    assert_true(T <= want * (1 + 1e-9) && mp.upper_bound_per_s >= want * (1 - 1e-9));
    sf__multiplan_deinit(&mp);
    free(P.v);
    inst_free(&I);
  }
  print_message("several pipelines: %d feasible instances (%d with up to 3), %d use several, %d proven "
                "optimal, all within brute force\n", total, three, multi, opt);
  assert_true(multi > 0 && opt > total / 2);
}

/* Identical nodes, fast links, no gateway: six 1 GFLOP segments, a node holds at most three.
 * Every even split runs at 2 inferences/s on 12 nodes (their total speed / the work): proven. */
static void test_multi_homogeneous(void **st) {
  for (int measured = 0; measured < 2; measured++) {
    inst I;
    inst_alloc(&I, 7, 12);
    double seg[6] = {1, 1, 1, 1, 1, 1};
    fill_mem(&I, seg, 0);
    for (int i = 0; i < 7; i++) I.c.flops_before[i] = 1e9 * i, I.c.cut_bytes[i] = 1;
    if (measured) { /* the same costs, measured per operator on a 2 GFLOP/s reference */
      double ops[6] = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5};
      sf_err err = {0};
      assert_int_equal(sf__pcosts_set_op_times(&I.c, ops, 6, 2e9, &err), 0);
    }
    for (int v = 0; v < 12; v++) {
      I.cl.nodes[v].mem_bytes = 3;
      I.cl.nodes[v].flops_per_s = 1e9;
      for (int w = 0; w < 12; w++) I.cl.bw[v * 12 + w] = 1e9;
    }
    sf_plan_opts o = sf_plan_opts_default();
    sf_multiplan mp;
    sf_err err = {0};
    assert_int_equal(sf__plan_multi(&sf__solver_optimal, &I.c, &I.cl, &o, 0, &mp, &err), 0);
    check_multi(&I, &mp, 0);
    assert_true(fabs(mp.throughput_per_s - 2) < 1e-6);
    assert_int_equal(mp.optimal, 1);
    assert_true(mp.n_pipelines >= 2);
    print_message("homogeneous 12 nodes: %d pipelines, %.6f /s, bound %.6f, %d solves, %.3f s\n",
                  mp.n_pipelines, mp.throughput_per_s, mp.upper_bound_per_s, mp.solves, mp.solve_s);
    sf__multiplan_deinit(&mp);
    /* at most 2 pipelines: 2 x 6 nodes, 2 /s again */
    assert_int_equal(sf__plan_multi(&sf__solver_optimal, &I.c, &I.cl, &o, 2, &mp, &err), 0);
    check_multi(&I, &mp, 2);
    assert_int_equal(mp.n_pipelines, 2);
    assert_true(fabs(mp.throughput_per_s - 2) < 1e-9 && mp.optimal);
    sf__multiplan_deinit(&mp);
    /* 7 usable nodes: their speed bounds the total by 7/6, met by 2 + 2 + 3 stages (3 s, 3 s,
     * 2 s stages), not by the even splits (6 stages: 1 /s; 3 + 3: 1 /s) */
    unsigned char us[12] = {1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1};
    o.usable = us;
    assert_int_equal(sf__plan_multi(&sf__solver_optimal, &I.c, &I.cl, &o, 0, &mp, &err), 0);
    check_multi(&I, &mp, 0);
    for (int k = 0; k < mp.n_pipelines; k++)
      for (int t = 0; t < mp.pipelines[k].n_stages; t++) assert_true(us[mp.pipelines[k].stages[t].node]);
    print_message("7 of 12 nodes: %d pipelines, %.6f /s, bound %.6f (%s)\n", mp.n_pipelines,
                  mp.throughput_per_s, mp.upper_bound_per_s, mp.optimal ? "optimal" : "not proven");
    assert_true(fabs(mp.throughput_per_s - 7 / 6.0) < 1e-9 && mp.optimal && mp.n_pipelines == 3);
    sf__multiplan_deinit(&mp);
    inst_free(&I);
  }
}

/* The gateway's link is shared: six 1 s single-stage pipelines are possible, but every input
 * sent to another node takes 0.5 s of the gateway's link (none to the gateway itself). k
 * pipelines: k / max(1, 0.5 (k - 1)) = 1, 2, 3, 2.67, 2.5, 2.4: three pipelines, proven. */
static void test_multi_gateway(void **st) {
  inst I;
  inst_alloc(&I, 2, 6);
  I.c.flops_before[1] = 1e9;
  I.c.cut_bytes[0] = 1e6;
  I.c.cut_bytes[1] = 0;
  I.c.mem[1] = 1;
  for (int v = 0; v < 6; v++) {
    I.cl.nodes[v].mem_bytes = 1;
    I.cl.nodes[v].flops_per_s = 1e9;
    for (int w = 0; w < 6; w++) I.cl.bw[v * 6 + w] = 2e6;
  }
  I.cl.gateway = 0;
  sf_plan_opts o = sf_plan_opts_default();
  sf_multiplan mp;
  sf_err err = {0};
  for (int K = 0; K <= 6; K++) {
    assert_int_equal(sf__plan_multi(&sf__solver_optimal, &I.c, &I.cl, &o, K, &mp, &err), 0);
    check_multi(&I, &mp, K);
    int want_k = K == 0 || K >= 3 ? 3 : K;
    assert_int_equal(mp.n_pipelines, want_k);
    assert_true(fabs(mp.throughput_per_s - want_k) < 1e-12);
    assert_true(mp.gateway_round_s == 0.5 * (want_k - 1));
    assert_int_equal(mp.optimal, 1);
    if (K == 0) { /* the gateway node runs one of them */
      int on_gw = 0;
      for (int k = 0; k < mp.n_pipelines; k++) on_gw += mp.pipelines[k].stages[0].node == 0;
      assert_int_equal(on_gw, 1);
    }
    sf__multiplan_deinit(&mp);
  }
  /* nothing fits: no pipeline, proven */
  for (int v = 0; v < 6; v++) I.cl.nodes[v].mem_bytes = 1;
  I.c.mem[1] = 2;
  assert_int_equal(sf__plan_multi(&sf__solver_optimal, &I.c, &I.cl, &o, 0, &mp, &err), 0);
  assert_int_equal(mp.n_pipelines, 0);
  assert_true(mp.throughput_per_s == 0 && mp.optimal);
  sf__multiplan_deinit(&mp);
  assert_int_equal(sf__plan_multi(&sf__solver_optimal, &I.c, &I.cl, &o, -1, &mp, &err), SF_EINVAL);
  inst_free(&I);
}

/* 30 SEIFER-like nodes, every pipeline count: feasible, at least the single pipeline. */
static void test_multi_seifer(void **st) {
  rs = 555;
  inst I;
  gen_seifer(&I, 80, 30, 128, 3);
  sf_plan_opts o = sf_plan_opts_default();
  sf_plan p1;
  double b1 = solve(&sf__solver_optimal, &I, &o, &p1);
  sf__plan_deinit(&p1);
  sf_multiplan mp;
  sf_err err = {0};
  assert_int_equal(sf__plan_multi(&sf__solver_optimal, &I.c, &I.cl, &o, 0, &mp, &err), 0);
  double T = check_multi(&I, &mp, 0);
  assert_true(T >= 1 / b1 && mp.n_pipelines >= 2);
  print_message("SEIFER-like 30 nodes: single %.3f /s; %d pipelines %.3f /s, bound %.3f (%s), %d "
                "solves, %.3f s\n", 1 / b1, mp.n_pipelines, T, mp.upper_bound_per_s,
                mp.optimal ? "optimal" : "not proven", mp.solves, mp.solve_s);
  sf__multiplan_deinit(&mp);
  inst_free(&I);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cluster_good), cmocka_unit_test(test_cluster_errors),
      cmocka_unit_test(test_eval),         cmocka_unit_test(test_brute_force),
      cmocka_unit_test(test_seifer_like),  cmocka_unit_test(test_large),
      cmocka_unit_test(test_usable),       cmocka_unit_test(test_measured_ops),
      cmocka_unit_test(test_multi_brute),  cmocka_unit_test(test_multi_homogeneous),
      cmocka_unit_test(test_multi_gateway), cmocka_unit_test(test_multi_seifer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
