/* seifer plan MODEL CLUSTER [-o plan.json] [--algorithm A] [--explain] ...: choose the cuts and
 * the node of every stage (see docs/planner.md), print the plan and write plan.json. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "onnx/onnx.h"
#include "partition/partition.h"
#include "plan/plan.h"

static void usage(void) {
  printf(
      "usage: seifer plan MODEL CLUSTER.json [-o plan.json] [--algorithm optimal|kpath|joint|random]\n"
      "                   [--objective throughput] [--max-stages K] [--time-limit S] [--seed N]\n"
      "                   [--thin] [--explain] [--input-shape NAME=DIMS]...\n"
      "Chooses where to cut MODEL and which cluster node runs each stage so that the pipeline's\n"
      "bottleneck (slowest stage compute or link transfer) is as small as possible; prints the\n"
      "plan and writes plan.json. --explain adds every candidate cut with its costs. --thin keeps\n"
      "only the cuts that can matter (local minima of the bytes crossing, single-tensor cuts).\n");
}

static cJSON *plan_json(const char *model, const char *cluster_path, const sf_partition *pa,
                        const sf_cluster *cl, const sf_plan *p, int explain) {
  const sf_pcosts *c = &pa->costs;
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "model", model);
  cJSON_AddStringToObject(root, "cluster", cluster_path);
  cJSON_AddStringToObject(root, "algorithm", p->algorithm ? p->algorithm : "");
  cJSON_AddStringToObject(root, "objective", "throughput");
  cJSON_AddNumberToObject(root, "operators", pa->n_ops);
  cJSON *st = cJSON_AddArrayToObject(root, "stages");
  for (int i = 0; i < p->n_stages; i++) {
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
  int fin = isfinite(p->bottleneck_s);
  if (fin)
    cJSON_AddNumberToObject(root, "bottleneck_s", p->bottleneck_s);
  else
    cJSON_AddNullToObject(root, "bottleneck_s");
  cJSON_AddNumberToObject(root, "throughput_per_s", fin ? p->throughput_per_s : 0);
  cJSON_AddBoolToObject(root, "optimal", p->optimal);
  if (isfinite(p->gap))
    cJSON_AddNumberToObject(root, "gap", p->gap);
  else
    cJSON_AddNullToObject(root, "gap"); /* heuristics prove no bound */
  cJSON_AddNumberToObject(root, "solve_s", p->solve_s);
  cJSON *pipes = cJSON_AddArrayToObject(root, "pipelines");
  cJSON *pl = cJSON_CreateObject();
  cJSON_AddNumberToObject(pl, "first_stage", 0);
  cJSON_AddNumberToObject(pl, "stages", p->n_stages);
  cJSON_AddNumberToObject(pl, "throughput_per_s", fin ? p->throughput_per_s : 0);
  cJSON_AddItemToArray(pipes, pl);
  if (explain) {
    cJSON *cuts = cJSON_AddArrayToObject(root, "candidate_cuts");
    for (int i = 0; i < c->n; i++) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddNumberToObject(o, "index", i);
      cJSON_AddNumberToObject(o, "position", c->pos[i]);
      cJSON_AddNumberToObject(o, "bytes", c->cut_bytes[i]);
      cJSON_AddNumberToObject(o, "flops_before", c->flops_before[i]);
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

static void print_plan(const sf_partition *pa, const sf_cluster *cl, const sf_plan *p) {
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
  if (isfinite(p->bottleneck_s))
    printf("bottleneck %.3f ms, predicted throughput %.2f inferences/s (%s, %s, solved in %.3f s)\n",
           p->bottleneck_s * 1e3, p->throughput_per_s, p->algorithm,
           p->optimal ? "proven optimal" : "not proven optimal", p->solve_s);
  else
    printf("no feasible plan: the model does not fit the cluster's memory\n");
  if (!p->optimal && p->gap > 0 && isfinite(p->gap))
    printf("optimality gap at most %.1f%%\n", p->gap * 100);
}

static int run(int argc, char **argv) {
  const char *model = NULL, *cluster_path = NULL, *out = NULL, *alg = "optimal";
  int explain = 0, nsh = 0, thin = 0;
  long max_stages = 0, seed = 1;
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
  sf_plan_opts o = sf_plan_opts_default();
  o.max_stages = (int)max_stages;
  o.time_limit_s = time_limit;
  o.seed = (uint64_t)seed;
  if (sf__plan_solve(solver, &pa.costs, &cl, &o, &p, &err) < 0) {
    sf_cli_err("plan: %s", err.msg);
    goto out;
  }
  printf("model %s: %d operators, %d candidate cuts (%d single-tensor); cluster %s: %d nodes\n",
         model, pa.n_ops, pa.costs.n, pa.n_singleton, cluster_path, cl.n);
  print_plan(&pa, &cl, &p);
  if (out) {
    cJSON *j = plan_json(model, cluster_path, &pa, &cl, &p, explain);
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
  rc = isfinite(p.bottleneck_s) ? SF_EXIT_OK : SF_EXIT_FAIL;
out:
  sf__plan_deinit(&p);
  if (have_pa) sf__partition_deinit(&pa);
  if (have_cl) sf__cluster_deinit(&cl);
  sf_model_free(m);
  free(txt);
  return rc;
}

const sf_cmd sf_cmd_plan = {"plan", "choose cuts and nodes for a model on a cluster (plan.json)",
                            run, usage};
