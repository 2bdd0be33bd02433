/* seifer plan MODEL CLUSTER [-o plan.json] [--algorithm A] [--pipelines N|auto] [--costs F] ...:
 * choose the cuts and the node of every stage of one pipeline, or of several disjoint pipelines
 * (see docs/planner.md), print the plan and write plan.json. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "onnx/onnx.h"
#include "partition/partition.h"
#include "plan/plan.h"
#include "probe/probe.h"

static void usage(void) {
  printf(
      "usage: seifer plan MODEL CLUSTER.json [-o plan.json] [--algorithm optimal|kpath|joint|random]\n"
      "                   [--pipelines N|auto] [--compute flops|measured] [--costs costs.json]\n"
      "                   [--threads N] [--iters N] [--objective throughput] [--max-stages K]\n"
      "                   [--time-limit S] [--seed N] [--thin] [--explain] [--input-shape NAME=DIMS]...\n"
      "Chooses where to cut MODEL and which cluster node runs each stage so that the pipeline's\n"
      "bottleneck (slowest stage compute or link transfer) is as small as possible; prints the\n"
      "plan and writes plan.json. --explain adds every candidate cut with its costs. --thin keeps\n"
      "only the cuts that can matter (local minima of the bytes crossing, single-tensor cuts).\n"
      "--pipelines N plans up to N disjoint pipelines behind the gateway maximising the total\n"
      "throughput (auto: as many as raise it; default 1). Stage compute times come from FLOPs and\n"
      "node speeds (--compute flops, default), from a costs file of `seifer probe compute`\n"
      "(--costs), or are measured now on this machine (--compute measured, --threads, --iters).\n");
}

/* What is printed and written: one plan or several pipelines. */
typedef struct view {
  int k;                /* pipelines */
  const sf_plan *p;
  const double *rate;   /* per pipeline */
  double total, round_s, upper;
  int optimal, multi;
  double gap;
  const char *algorithm;
  double solve_s;
  int solves;
} view;

static void add_num_or_null(cJSON *o, const char *key, double v) {
  if (isfinite(v))
    cJSON_AddNumberToObject(o, key, v);
  else
    cJSON_AddNullToObject(o, key);
}

static cJSON *stages_json(const sf_pcosts *c, const sf_cluster *cl, const sf_plan *p) {
  cJSON *st = cJSON_CreateArray();
  for (int i = 0; st && i < p->n_stages; i++) {
    const sf_stage *s = &p->stages[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "node", cl->nodes[s->node].name);
    cJSON_AddNumberToObject(o, "first_op", c->pos[s->cut_from]);
    cJSON_AddNumberToObject(o, "last_op", c->pos[s->cut_to] - 1);
    cJSON_AddNumberToObject(o, "memory_bytes", (double)s->mem_bytes);
    cJSON_AddNumberToObject(o, "out_bytes", s->out_bytes);
    cJSON_AddNumberToObject(o, "compute_s", s->compute_s);
    cJSON_AddNumberToObject(o, "link_s", s->link_s);
    cJSON_AddItemToArray(st, o);
  }
  return st;
}

static cJSON *plan_json(const char *model, const char *cluster_path, const sf_partition *pa,
                        const sf_cluster *cl, const view *v, const char *compute, int explain) {
  const sf_pcosts *c = &pa->costs;
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "model", model);
  cJSON_AddStringToObject(root, "cluster", cluster_path);
  cJSON_AddStringToObject(root, "algorithm", v->algorithm ? v->algorithm : "");
  cJSON_AddStringToObject(root, "objective", "throughput");
  cJSON_AddStringToObject(root, "compute", compute);
  cJSON_AddNumberToObject(root, "operators", pa->n_ops);
  /* pipeline 0 at the top level (what `seifer split` reads by default) */
  static const sf_plan none = {0};
  const sf_plan *p0 = v->k > 0 ? &v->p[0] : &none;
  cJSON_AddItemToObject(root, "stages", stages_json(c, cl, p0));
  add_num_or_null(root, "bottleneck_s", v->k > 0 ? p0->bottleneck_s : INFINITY);
  cJSON_AddNumberToObject(root, "throughput_per_s", v->k > 0 && isfinite(v->rate[0]) ? v->rate[0] : 0);
  cJSON_AddBoolToObject(root, "optimal", v->optimal);
  add_num_or_null(root, "gap", v->gap); /* null: heuristics prove no bound */
  cJSON_AddNumberToObject(root, "solve_s", v->solve_s);
  cJSON_AddNumberToObject(root, "throughput_per_s_total", isfinite(v->total) ? v->total : 0);
  add_num_or_null(root, "upper_bound_per_s", v->upper);
  cJSON_AddNumberToObject(root, "gateway_round_s", v->round_s);
  cJSON *pipes = cJSON_AddArrayToObject(root, "pipelines");
  for (int k = 0; k < v->k; k++) {
    const sf_plan *p = &v->p[k];
    cJSON *pl = cJSON_CreateObject();
    cJSON_AddNumberToObject(pl, "id", k);
    cJSON *nodes = cJSON_AddArrayToObject(pl, "nodes");
    for (int i = 0; i < p->n_stages; i++)
      cJSON_AddItemToArray(nodes, cJSON_CreateString(cl->nodes[p->stages[i].node].name));
    cJSON_AddItemToObject(pl, "stages", stages_json(c, cl, p));
    add_num_or_null(pl, "bottleneck_s", p->bottleneck_s);
    cJSON_AddNumberToObject(pl, "throughput_per_s", isfinite(v->rate[k]) ? v->rate[k] : 0);
    cJSON_AddNumberToObject(pl, "gateway_in_s", p->gateway_in_s);
    cJSON_AddItemToArray(pipes, pl);
  }
  if (explain) {
    cJSON *cuts = cJSON_AddArrayToObject(root, "candidate_cuts");
    for (int i = 0; i < c->n; i++) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddNumberToObject(o, "index", i);
      cJSON_AddNumberToObject(o, "position", c->pos[i]);
      cJSON_AddNumberToObject(o, "bytes", c->cut_bytes[i]);
      cJSON_AddNumberToObject(o, "flops_before", c->flops_before[i]);
      if (c->measured_before) cJSON_AddNumberToObject(o, "measured_s_before", c->measured_before[i]);
      const int *ids;
      int nt = sf__partition_crossing(pa, c->pos[i], &ids);
      cJSON *names = cJSON_AddArrayToObject(o, "tensors");
      for (int k = 0; k < nt; k++)
        cJSON_AddItemToArray(names, cJSON_CreateString(pa->g->tensors[ids[k]].t.name));
      cJSON_AddItemToArray(cuts, o);
    }
  }
  return root;
}

static void print_stages(const sf_partition *pa, const sf_cluster *cl, const sf_plan *p) {
  const sf_pcosts *c = &pa->costs;
  printf("%-5s %-16s %-13s %10s %11s %11s %10s\n", "stage", "node", "operators", "memory MB",
         "out bytes", "compute ms", "link ms");
  for (int i = 0; i < p->n_stages; i++) {
    const sf_stage *s = &p->stages[i];
    char range[32];
    snprintf(range, sizeof range, "%d-%d", c->pos[s->cut_from], c->pos[s->cut_to] - 1);
    printf("%-5d %-16.16s %-13s %10.1f %11.0f %11.3f %10.3f\n", i + 1, cl->nodes[s->node].name,
           range, (double)s->mem_bytes / 1e6, s->out_bytes, s->compute_s * 1e3, s->link_s * 1e3);
  }
}

static void print_plan(const sf_partition *pa, const sf_cluster *cl, const view *v) {
  if (!v->multi) {
    const sf_plan *p = &v->p[0];
    print_stages(pa, cl, p);
    if (isfinite(p->bottleneck_s))
      printf("bottleneck %.3f ms, predicted throughput %.2f inferences/s (%s, %s, solved in %.3f s)\n",
             p->bottleneck_s * 1e3, p->throughput_per_s, p->algorithm,
             p->optimal ? "proven optimal" : "not proven optimal", p->solve_s);
    else
      printf("no feasible plan: the model does not fit the cluster's memory\n");
    if (!p->optimal && p->gap > 0 && isfinite(p->gap))
      printf("optimality gap at most %.1f%%\n", p->gap * 100);
    return;
  }
  if (v->k == 0) {
    printf("no feasible plan: the model does not fit the cluster's memory\n");
    return;
  }
  for (int k = 0; k < v->k; k++) {
    const sf_plan *p = &v->p[k];
    printf("pipeline %d: %d stage%s, bottleneck %.3f ms, %.2f inferences/s\n", k, p->n_stages,
           p->n_stages == 1 ? "" : "s", p->bottleneck_s * 1e3, v->rate[k]);
    print_stages(pa, cl, p);
  }
  printf("total: %.2f inferences/s over %d pipeline%s", v->total, v->k, v->k == 1 ? "" : "s");
  if (cl->gateway >= 0)
    printf(" (gateway round %.3f ms%s)", v->round_s * 1e3,
           v->round_s >= v->p[v->k - 1].bottleneck_s && v->k > 1 ? ", limits the total" : "");
  printf("\n%s, %s", v->algorithm, v->optimal ? "proven optimal" : "not proven optimal");
  if (!v->optimal && isfinite(v->gap)) printf(" (upper bound %.2f /s, gap at most %.1f%%)", v->upper, v->gap * 100);
  printf(", %d solves in %.3f s\n", v->solves, v->solve_s);
}

/* Stage compute times from a costs file or measured now (replaces flops / speed). */
static int measured_costs(sf_model *m, sf_partition *pa, const char *costs_path, int threads,
                          int iters, const sf_input_shape *shapes, int nsh) {
  sf_err err = {0};
  sf_op_times t;
  memset(&t, 0, sizeof t);
  void *txt = NULL;
  size_t len = 0;
  int rc = -1;
  if (costs_path) {
    if (sf__read_file(costs_path, 256 << 20, &txt, &len, &err) < 0 ||
        sf__op_times_parse(txt, len, &t, &err) < 0) {
      sf_cli_err("%s: %s", costs_path, err.msg);
      goto out;
    }
  } else {
    sf_probe_compute_opts o = sf_probe_compute_opts_default();
    o.threads = threads;
    o.iters = iters;
    o.n_shapes = nsh;
    o.shapes = shapes;
    if (sf__probe_compute(m, pa, &o, &t, &err) < 0) {
      sf_cli_err("measuring compute: %s", err.msg);
      goto out;
    }
    printf("measured %d operators: %.3f ms per inference on this machine (%.2f GFLOP/s)\n",
           t.n_ops, t.total_s * 1e3, t.ref_flops_per_s / 1e9);
  }
  if (sf__op_times_apply(&t, pa, &pa->costs, &err) < 0) {
    sf_cli_err("%s: %s", costs_path ? costs_path : "measured costs", err.msg);
    goto out;
  }
  rc = 0;
out:
  sf__op_times_deinit(&t);
  free(txt);
  return rc;
}

static int run(int argc, char **argv) {
  const char *model = NULL, *cluster_path = NULL, *out = NULL, *alg = "optimal", *costs = NULL;
  int explain = 0, nsh = 0, thin = 0, measured = 0, probe_opt = 0;
  long max_stages = 0, seed = 1, pipelines = 1, threads = 0, iters = 10;
  double time_limit = 0;
  sf_input_shape shapes[16];
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "--explain")) {
      explain = 1;
    } else if (!strcmp(argv[i], "--thin")) {
      thin = 1;
    } else if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
      if (!(out = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--algorithm")) {
      if (!(alg = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--objective")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (strcmp(v, "throughput")) {
        sf_cli_err("--objective: only 'throughput' is supported, got '%s'", v);
        return SF_EXIT_USAGE;
      }
    } else if (!strcmp(argv[i], "--pipelines")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (!strcmp(v, "auto"))
        pipelines = 0;
      else if (sf_cli_int("--pipelines", v, 1, SF_PLAN_MAX_NODES, &pipelines))
        return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--compute")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (!strcmp(v, "measured"))
        measured = 1;
      else if (!strcmp(v, "flops"))
        measured = -1;
      else {
        sf_cli_err("--compute: expected flops or measured, got '%s'", v);
        return SF_EXIT_USAGE;
      }
    } else if (!strcmp(argv[i], "--costs")) {
      if (!(costs = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--threads")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int("--threads", v, 0, 1024, &threads))
        return SF_EXIT_USAGE;
      probe_opt = 1;
    } else if (!strcmp(argv[i], "--iters")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int("--iters", v, 1, 100000, &iters))
        return SF_EXIT_USAGE;
      probe_opt = 1;
    } else if (!strcmp(argv[i], "--max-stages")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int("--max-stages", v, 1, 1000, &max_stages))
        return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--seed")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int("--seed", v, 0, 2147483647L, &seed))
        return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--time-limit")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      char *end;
      time_limit = strtod(v, &end);
      if (end == v || *end || !(time_limit >= 0) || time_limit > 1e6) {
        sf_cli_err("--time-limit: '%s' is not a number of seconds", v);
        return SF_EXIT_USAGE;
      }
    } else if (!strcmp(argv[i], "--input-shape")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (nsh >= 16 || sf_cli_shape(v, &shapes[nsh++])) return SF_EXIT_USAGE;
    } else if (argv[i][0] == '-') {
      sf_cli_err("plan: unknown option '%s'", argv[i]);
      return SF_EXIT_USAGE;
    } else if (!model) {
      model = argv[i];
    } else if (!cluster_path) {
      cluster_path = argv[i];
    } else {
      sf_cli_err("plan: unexpected argument '%s'", argv[i]);
      return SF_EXIT_USAGE;
    }
  }
  if (!model || !cluster_path) {
    usage();
    return SF_EXIT_USAGE;
  }
  if (costs && measured < 0) {
    sf_cli_err("plan: --costs gives measured compute times, --compute flops asks for none");
    return SF_EXIT_USAGE;
  }
  if (probe_opt && (measured <= 0 || costs)) {
    sf_cli_err("plan: --threads and --iters apply to --compute measured without --costs");
    return SF_EXIT_USAGE;
  }
  if (costs) measured = 1;
  const sf_solver *solver = sf__solver_find(alg);
  if (!solver) {
    sf_cli_err("--algorithm: expected optimal, kpath, joint or random, got '%s'", alg);
    return SF_EXIT_USAGE;
  }
  int rc = SF_EXIT_FAIL;
  sf_err err = {0};
  sf_model *m = NULL;
  sf_partition pa;
  memset(&pa, 0, sizeof pa);
  sf_cluster cl;
  memset(&cl, 0, sizeof cl);
  sf_plan p;
  memset(&p, 0, sizeof p);
  sf_multiplan mp;
  memset(&mp, 0, sizeof mp);
  void *txt = NULL;
  size_t len = 0;
  int have_pa = 0, have_cl = 0;
  if (sf__read_file(cluster_path, 64 << 20, &txt, &len, &err) < 0 ||
      sf__cluster_parse(txt, len, &cl, &err) < 0) {
    sf_cli_err("%s: %s", cluster_path, err.msg);
    goto out;
  }
  have_cl = 1;
  if (sf_cli_open(model, NULL, &m, NULL)) goto out;
  sf_partition_opts po = sf_partition_opts_default();
  po.n_shapes = nsh;
  po.shapes = shapes;
  po.thin = thin;
  if (sf__partition_analyze(m, &po, &pa, &err) < 0) {
    sf_cli_err("%s: %s", model, err.msg);
    goto out;
  }
  have_pa = 1;
  if (measured > 0 && measured_costs(m, &pa, costs, (int)threads, (int)iters, shapes, nsh)) goto out;
  sf_plan_opts o = sf_plan_opts_default();
  o.max_stages = (int)max_stages;
  o.time_limit_s = time_limit;
  o.seed = (uint64_t)seed;
  view v;
  memset(&v, 0, sizeof v);
  double rate0 = 0;
  if (pipelines == 1) {
    if (sf__plan_solve(solver, &pa.costs, &cl, &o, &p, &err) < 0) {
      sf_cli_err("plan: %s", err.msg);
      goto out;
    }
    rate0 = isfinite(p.bottleneck_s) ? p.throughput_per_s : 0;
    v = (view){.k = p.n_stages > 0 ? 1 : 0, .p = &p, .rate = &rate0, .total = rate0,
               .optimal = p.optimal, .gap = p.gap, .algorithm = p.algorithm,
               .solve_s = p.solve_s, .solves = 1};
    v.upper = !v.k ? (p.optimal ? 0 : INFINITY)
              : isfinite(p.gap) && p.gap < 1 ? rate0 / (1 - p.gap) : INFINITY;
    if (v.k && cl.gateway >= 0)
      v.round_s = fmax(p.gateway_in_s, p.stages[p.n_stages - 1].link_s);
  } else {
    if (sf__plan_multi(solver, &pa.costs, &cl, &o, (int)pipelines, &mp, &err) < 0) {
      sf_cli_err("plan: %s", err.msg);
      goto out;
    }
    v = (view){.k = mp.n_pipelines, .p = mp.pipelines, .rate = mp.rate_per_s,
               .total = mp.throughput_per_s, .round_s = mp.gateway_round_s,
               .upper = mp.upper_bound_per_s, .optimal = mp.optimal, .multi = 1, .gap = mp.gap,
               .algorithm = mp.algorithm, .solve_s = mp.solve_s, .solves = mp.solves};
  }
  printf("model %s: %d operators, %d candidate cuts (%d single-tensor); cluster %s: %d nodes\n",
         model, pa.n_ops, pa.costs.n, pa.n_singleton, cluster_path, cl.n);
  print_plan(&pa, &cl, &v);
  if (out) {
    cJSON *j = plan_json(model, cluster_path, &pa, &cl, &v, measured > 0 ? "measured" : "flops",
                         explain);
    char *s = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!s || sf__write_file(out, s, strlen(s), &err) < 0) {
      sf_cli_err("%s", s ? err.msg : "out of memory");
      free(s);
      goto out;
    }
    free(s);
    printf("wrote %s\n", out);
  }
  rc = v.k > 0 ? SF_EXIT_OK : SF_EXIT_FAIL;
out:
  sf__plan_deinit(&p);
  sf__multiplan_deinit(&mp);
  if (have_pa) sf__partition_deinit(&pa);
  if (have_cl) sf__cluster_deinit(&cl);
  sf_model_free(m);
  free(txt);
  return rc;
}

const sf_cmd sf_cmd_plan = {"plan", "choose cuts and nodes for a model on a cluster (plan.json)",
                            run, usage};
