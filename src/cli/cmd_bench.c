/* seifer bench MODEL [--threads N] [--iters N] [--warmup N] [--json]: latency and throughput. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "onnx/onnx.h"
#include "probe/probe.h"

static void usage(void) {
  printf(
      "usage: seifer bench MODEL [--threads N] [--iters N] [--warmup N] [--input-shape NAME=DIMS]\n"
      "                    [--layout auto|conv-only|nchw] [--profile] [--json]\n"
      "Runs the model at batch 1 on deterministic pseudo-random inputs after warm-up and reports\n"
      "latency p50/p99, throughput (inferences/s), model load time (file to first inference) and\n"
      "peak RSS. Defaults: --threads 0 (all cores), --iters 30, --warmup 3.\n"
      "--layout compares layouts: auto (channels-last through convolutional trunks), conv-only\n"
      "(a transpose pair around each convolution), nchw (plain-C kernels, no XNNPACK layout).\n"
      "--profile prints the time per operator type and the slowest nodes (on stderr).\n");
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(const double *v, int n, double p) {
  double idx = p * (n - 1);
  int lo = (int)floor(idx), hi = (int)ceil(idx);
  return v[lo] + (v[hi] - v[lo]) * (idx - lo);
}

typedef struct prof_row {
  const char *op;
  int count;
  double seconds;
  int64_t flops;
} prof_row;

static int cmp_prof(const void *a, const void *b) {
  const prof_row *x = a, *y = b;
  return x->seconds < y->seconds ? 1 : x->seconds > y->seconds ? -1 : 0;
}

/* Time per operator type, and the slowest nodes. */
static void print_profile(const sf_session *s, long iters) {
  const sf_node_profile *p;
  int n = sf_session_profile(s, &p);
  prof_row *rows = sf__calloc((size_t)n + 1, sizeof *rows);
  int *idx = sf__malloc(sizeof(int) * (size_t)(n + 1));
  if (!rows || !idx || !n) goto out;
  int nr = 0;
  double total = 0;
  for (int i = 0; i < n; i++) {
    int r;
    for (r = 0; r < nr; r++)
      if (!strcmp(rows[r].op, p[i].op_type)) break;
    if (r == nr) rows[nr++].op = p[i].op_type;
    rows[r].count++;
    rows[r].seconds += p[i].seconds;
    rows[r].flops += p[i].flops;
    total += p[i].seconds;
  }
  qsort(rows, (size_t)nr, sizeof *rows, cmp_prof);
  fprintf(stderr, "\n%-22s %6s %10s %7s %9s\n", "operator", "nodes", "ms/run", "share", "GFLOP/s");
  for (int r = 0; r < nr; r++)
    fprintf(stderr, "%-22s %6d %10.3f %6.1f%% %9.1f\n", rows[r].op, rows[r].count,
            rows[r].seconds * 1e3 / (double)iters, 100.0 * rows[r].seconds / total,
            rows[r].seconds > 0 ? (double)rows[r].flops * (double)iters / rows[r].seconds / 1e9 : 0);
  for (int i = 0; i < n; i++) idx[i] = i;
  for (int a = 0; a < n && a < 12; a++) /* partial selection of the 12 slowest nodes */
    for (int b = a + 1; b < n; b++)
      if (p[idx[b]].seconds > p[idx[a]].seconds) {
        int t = idx[a];
        idx[a] = idx[b];
        idx[b] = t;
      }
  fprintf(stderr, "\nslowest nodes:\n");
  for (int a = 0; a < n && a < 12; a++) {
    const sf_node_profile *e = &p[idx[a]];
    fprintf(stderr, "  %-18s %-34s %8.3f ms %7.1f GFLOP/s\n", e->op_type, e->name,
            e->seconds * 1e3 / (double)iters,
            e->seconds > 0 ? (double)e->flops * (double)iters / e->seconds / 1e9 : 0);
  }
out:
  free(rows);
  free(idx);
}

static int run(int argc, char **argv) {
  const char *path = NULL;
  long threads = 0, iters = 30, warmup = 3;
  int json = 0, nsh = 0, layout = -1, profile = 0;
  sf_input_shape shapes[16];
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else if (!strcmp(argv[i], "--profile")) {
      profile = 1;
    } else if (!strcmp(argv[i], "--threads")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int("--threads", v, 0, 1024, &threads))
        return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--iters")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int("--iters", v, 1, 10000000, &iters))
        return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--warmup")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int("--warmup", v, 0, 1000000, &warmup))
        return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--layout")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (!strcmp(v, "auto"))
        layout = -1;
      else if (!strcmp(v, "nchw"))
        layout = 0;
      else if (!strcmp(v, "conv-only"))
        layout = 1;
      else {
        sf_cli_err("--layout: expected auto, conv-only or nchw, got '%s'", v);
        return SF_EXIT_USAGE;
      }
    } else if (!strcmp(argv[i], "--input-shape")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (nsh >= 16) {
        sf_cli_err("too many --input-shape options (max 16)");
        return SF_EXIT_USAGE;
      }
      if (sf_cli_shape(v, &shapes[nsh++])) return SF_EXIT_USAGE;
    } else if (argv[i][0] == '-') {
      sf_cli_err("bench: unknown option '%s'", argv[i]);
      return SF_EXIT_USAGE;
    } else if (!path) {
      path = argv[i];
    } else {
      sf_cli_err("bench: more than one model given ('%s')", argv[i]);
      return SF_EXIT_USAGE;
    }
  }
  if (!path) {
    usage();
    return SF_EXIT_USAGE;
  }
  sf_session_opts o = sf_session_opts_default();
  o.threads = (int)threads;
  o.n_shapes = nsh;
  o.shapes = shapes;
  o.layout = layout;
  o.release_weights = 1; /* one session per process: keep only the packed weights */
  sf_model *m = NULL;
  sf_session *s = NULL;
  sf_err err = {0};
  double t0 = sf__now();
  if (sf_cli_open(path, &o, &m, &s)) return SF_EXIT_FAIL;
  sf__probe_fill_inputs(s);
  int rc = SF_EXIT_FAIL;
  double *lat = sf__malloc(sizeof(double) * (size_t)iters);
  if (!lat) goto out;
  if (sf_session_run(s, &err) < 0) goto fail;
  double load_ms = (sf__now() - t0) * 1e3;
  for (long i = 1; i < warmup; i++)
    if (sf_session_run(s, &err) < 0) goto fail;
  if (profile) sf_session_set_profiling(s, 1);
  double start = sf__now();
  for (long i = 0; i < iters; i++) {
    double a = sf__now();
    if (sf_session_run(s, &err) < 0) goto fail;
    lat[i] = (sf__now() - a) * 1e3;
  }
  double total = sf__now() - start;
  qsort(lat, (size_t)iters, sizeof *lat, cmp_double);
  double p50 = pct(lat, (int)iters, 0.50), p99 = pct(lat, (int)iters, 0.99);
  double tput = (double)iters / total;
  int64_t rss = sf__peak_rss();
  int nthreads = threads ? (int)threads : sf__ncpu();
  sf_session_stats st;
  sf_session_get_stats(s, &st);
  if (json) {
    printf("{\"model\": \"%s\", \"threads\": %d, \"iters\": %ld, \"throughput_per_s\": %.4f, "
           "\"p50_ms\": %.4f, \"p99_ms\": %.4f, \"mean_ms\": %.4f, \"load_ms\": %.3f, "
           "\"peak_rss_bytes\": %lld, \"arena_bytes\": %lld, \"weights_bytes\": %lld, "
           "\"flops\": %lld, \"gflops_per_s\": %.3f}\n",
           path, nthreads, iters, tput, p50, p99, total * 1e3 / (double)iters, load_ms,
           (long long)rss, (long long)st.arena_bytes, (long long)st.weights_bytes,
           (long long)st.flops, (double)st.flops * tput / 1e9);
  } else {
    printf("model         %s\n", path);
    printf("threads       %d\n", nthreads);
    printf("iterations    %ld (after %ld warm-up)\n", iters, warmup > 1 ? warmup : 1);
    printf("latency       p50 %.3f ms   p99 %.3f ms   mean %.3f ms\n", p50, p99,
           total * 1e3 / (double)iters);
    printf("throughput    %.2f inferences/s   (%.2f GFLOP/s)\n", tput,
           (double)st.flops * tput / 1e9);
    printf("load          %.1f ms (file to first inference)\n", load_ms);
    printf("peak RSS      %.1f MiB\n", (double)rss / 1048576.0);
  }
  if (profile) print_profile(s, iters);
  rc = SF_EXIT_OK;
  goto out;
fail:
  sf_cli_err("inference failed: %s", err.msg);
out:
  free(lat);
  sf_session_free(s);
  sf_model_free(m);
  return rc;
}

const sf_cmd sf_cmd_bench = {"bench", "measure latency, throughput and memory of a model", run,
                             usage};
