/* seifer probe SUBCOMMAND ...: measurements for the planner. `compute` times every operator of a
 * model on this machine and writes a costs file for `seifer plan --costs` (docs/planner.md). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "onnx/onnx.h"
#include "partition/partition.h"
#include "plan/plan.h"
#include "probe/probe.h"

void sf_cli_probe_links_usage(void); /* cmd_probe_links.c */

static void usage(void) {
  printf(
      "usage: seifer probe compute MODEL [-o costs.json] [--cluster CLUSTER.json [--node NAME]]\n"
      "                            [--threads N] [--iters N] [--warmup N] [--input-shape NAME=DIMS]...\n"
      "compute: runs MODEL on this machine with per-operator profiling (defaults: --threads 0 =\n"
      "all cores, --iters 20, --warmup 2), prints the slowest operators and writes the time of\n"
      "every operator to costs.json; `seifer plan MODEL CLUSTER --costs costs.json` then uses\n"
      "measured stage times. The times hold for a node of the speed written as ref_gflops: this\n"
      "machine's measured GFLOP/s, or with --cluster the 'gflops' of node NAME of the cluster\n"
      "(default: the node named like this host), i.e. this machine is that node.\n");
  sf_cli_probe_links_usage();
}

static int cmp_desc(const void *a, const void *b) {
  const double *x = a, *y = b;
  return x[0] < y[0] ? 1 : x[0] > y[0] ? -1 : (x[1] > y[1]) - (x[1] < y[1]);
}

static void print_times(const sf_op_times *t) {
  printf("%d operators, %.3f ms per inference (%d threads, mean of the faster half of %d runs)\n",
         t->n_ops, t->total_s * 1e3, t->threads, t->iters);
  printf("%.3f GFLOP per inference: %.2f GFLOP/s measured; times hold at %.2f GFLOP/s (%s)\n",
         t->flops / 1e9, t->total_s > 0 ? t->flops / t->total_s / 1e9 : 0, t->ref_flops_per_s / 1e9,
         t->reference);
  if (t->unmatched_s > 0)
    printf("layout conversions (%.3f ms) are counted in the operators run before them\n",
           t->unmatched_s * 1e3);
  double *o = sf__malloc(sizeof *o * 2 * (size_t)t->n_ops);
  if (!o) return;
  for (int q = 0; q < t->n_ops; q++) o[2 * q] = t->seconds[q], o[2 * q + 1] = q;
  qsort(o, (size_t)t->n_ops, 2 * sizeof *o, cmp_desc);
  printf("%-8s %-18s %-32s %10s %7s\n", "position", "op_type", "name", "ms", "share");
  for (int k = 0; k < t->n_ops && k < 10; k++) {
    int q = (int)o[2 * k + 1];
    printf("%-8d %-18.18s %-32.32s %10.4f %6.1f%%\n", q, t->op_types[q], t->names[q],
           t->seconds[q] * 1e3, t->total_s > 0 ? 100 * t->seconds[q] / t->total_s : 0);
  }
  free(o);
}

static int compute(int argc, char **argv) {
  const char *model = NULL, *out = NULL, *cluster_path = NULL, *node = NULL;
  long threads = 0, iters = 20, warmup = 2;
  int nsh = 0;
  sf_input_shape shapes[16];
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
      if (!(out = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--cluster")) {
      if (!(cluster_path = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--node")) {
      if (!(node = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--threads")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int("--threads", v, 0, 1024, &threads))
        return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--iters")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int("--iters", v, 1, 100000, &iters))
        return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--warmup")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int("--warmup", v, 0, 100000, &warmup))
        return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--input-shape")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (nsh >= 16 || sf_cli_shape(v, &shapes[nsh++])) return SF_EXIT_USAGE;
    } else if (argv[i][0] == '-') {
      sf_cli_err("probe compute: unknown option '%s'", argv[i]);
      return SF_EXIT_USAGE;
    } else if (!model) {
      model = argv[i];
    } else {
      sf_cli_err("probe compute: unexpected argument '%s'", argv[i]);
      return SF_EXIT_USAGE;
    }
  }
  if (!model) {
    usage();
    return SF_EXIT_USAGE;
  }
  if (node && !cluster_path) {
    sf_cli_err("probe compute: --node names a node of --cluster, which is missing");
    return SF_EXIT_USAGE;
  }
  int rc = SF_EXIT_FAIL, have_pa = 0, have_cl = 0;
  sf_err err = {0};
  sf_model *m = NULL;
  sf_partition pa;
  memset(&pa, 0, sizeof pa);
  sf_cluster cl;
  memset(&cl, 0, sizeof cl);
  sf_op_times t;
  memset(&t, 0, sizeof t);
  void *txt = NULL;
  size_t len = 0;
  char *json = NULL;
  double ref = 0;
  char host[256] = "";
  if (cluster_path) {
    if (sf__read_file(cluster_path, 64 << 20, &txt, &len, &err) < 0 ||
        sf__cluster_parse(txt, len, &cl, &err) < 0) {
      sf_cli_err("%s: %s", cluster_path, err.msg);
      goto out;
    }
    have_cl = 1;
    if (!node) {
      if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
      node = host;
    }
    for (int v = 0; v < cl.n && !(ref > 0); v++)
      if (!strcmp(cl.nodes[v].name, node)) ref = cl.nodes[v].flops_per_s;
    if (!(ref > 0)) {
      sf_cli_err("%s: no node named '%s'%s", cluster_path, node,
                 node == host ? " (this host); name this machine's node with --node" : "");
      goto out;
    }
  }
  if (sf_cli_open(model, NULL, &m, NULL)) goto out;
  sf_partition_opts po = sf_partition_opts_default();
  po.n_shapes = nsh;
  po.shapes = shapes;
  po.thin = 1; /* only the operator order matters here */
  if (sf__partition_analyze(m, &po, &pa, &err) < 0) {
    sf_cli_err("%s: %s", model, err.msg);
    goto out;
  }
  have_pa = 1;
  sf_probe_compute_opts o = sf_probe_compute_opts_default();
  o.threads = (int)threads;
  o.iters = (int)iters;
  o.warmup = (int)warmup;
  o.n_shapes = nsh;
  o.shapes = shapes;
  if (sf__probe_compute(m, &pa, &o, &t, &err) < 0) {
    sf_cli_err("%s: %s", model, err.msg);
    goto out;
  }
  if (ref > 0) {
    t.ref_flops_per_s = ref;
    snprintf(t.reference, sizeof t.reference, "node %.80s", node);
  }
  printf("model %s\n", model);
  print_times(&t);
  if (out) {
    if (!(json = sf__op_times_json(&t, model)) ||
        sf__write_file(out, json, strlen(json), &err) < 0) {
      sf_cli_err("%s", json ? err.msg : "out of memory");
      goto out;
    }
    printf("wrote %s\n", out);
  }
  rc = SF_EXIT_OK;
out:
  free(json);
  sf__op_times_deinit(&t);
  if (have_pa) sf__partition_deinit(&pa);
  if (have_cl) sf__cluster_deinit(&cl);
  sf_model_free(m);
  free(txt);
  return rc;
}

int sf_cli_probe_links(int argc, char **argv); /* cmd_probe_links.c */

static int run(int argc, char **argv) {
  if (argc < 2) {
    usage();
    return SF_EXIT_USAGE;
  }
  if (!strcmp(argv[1], "compute")) return compute(argc - 1, argv + 1);
  if (!strcmp(argv[1], "links")) return sf_cli_probe_links(argc - 1, argv + 1);
  sf_cli_err("probe: unknown measurement '%s' (available: compute, links)", argv[1]);
  return SF_EXIT_USAGE;
}

const sf_cmd sf_cmd_probe = {"probe", "measure the cluster and models for the planner (compute, links)",
                             run, usage};
