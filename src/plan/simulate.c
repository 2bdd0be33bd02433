/* Simulation of SEIFER's evaluation (see simulate.h and docs/planner.md, "Simulation"). */
#include "plan/simulate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* Uniform double in [0, 1) from a splitmix64 stream. */
static double rng_unit(uint64_t *s) {
  *s += 0x9e3779b97f4a7c15ULL;
  uint64_t z = *s;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t sf__sim_seed(uint64_t base, int capacity_mb, int nodes, int trial) {
  uint64_t h = mix64(base);
  h = mix64(h ^ (uint64_t)(uint32_t)capacity_mb);
  h = mix64(h ^ ((uint64_t)(uint32_t)nodes << 20));
  return mix64(h ^ ((uint64_t)(uint32_t)trial << 40));
}

double sf__sim_bandwidth(double d) { return log2(1.0 + 283230.0 / (d * d)) * 1e6 / 8.0; }

int sf__sim_network(int n, int64_t mem_bytes, double flops_per_s, uint64_t seed, sf_cluster *out,
                    double *xy_out, sf_err *err) {
  memset(out, 0, sizeof *out);
  out->gateway = -1;
  if (n < 1 || n > SF_PLAN_MAX_NODES || mem_bytes <= 0 || !(flops_per_s > 0))
    return sf__errf(err, SF_EINVAL, "simulate: bad network (nodes %d, memory %lld, speed %g)", n,
                    (long long)mem_bytes, flops_per_s);
  double *xy = sf__malloc(sizeof(double) * 2 * (size_t)n);
  out->nodes = sf__calloc((size_t)n, sizeof *out->nodes);
  out->bw = sf__calloc((size_t)n * (size_t)n, sizeof(double));
  if (!xy || !out->nodes || !out->bw) goto oom;
  out->n = n;
  uint64_t s = seed;
  for (int i = 0; i < 2 * n; i++) xy[i] = 1.0 + 149.0 * rng_unit(&s);
  for (int i = 0; i < n; i++) {
    char name[24];
    snprintf(name, sizeof name, "n%d", i + 1);
    out->nodes[i].name = sf__malloc(strlen(name) + 1);
    if (!out->nodes[i].name) goto oom;
    memcpy(out->nodes[i].name, name, strlen(name) + 1);
    out->nodes[i].mem_bytes = mem_bytes;
    out->nodes[i].flops_per_s = flops_per_s;
  }
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) {
      double dx = xy[2 * i] - xy[2 * j], dy = xy[2 * i + 1] - xy[2 * j + 1];
      double d = sqrt(dx * dx + dy * dy);
      if (d < 1e-9) d = 1e-9; /* coincident points: a very fast link */
      out->bw[i * n + j] = out->bw[j * n + i] = sf__sim_bandwidth(d);
    }
  if (xy_out) memcpy(xy_out, xy, sizeof(double) * 2 * (size_t)n);
  free(xy);
  return 0;
oom:
  free(xy);
  sf__cluster_deinit(out);
  return sf__errf(err, SF_ENOMEM, "simulate: out of memory for a %d-node network", n);
}

int sf__sim_seifer_costs(const sf_partition *p, int param_bytes, sf_pcosts *out, sf_err *err) {
  memset(out, 0, sizeof *out);
  const sf_graph *g = p->g;
  int L = p->n_ops;
  int64_t *opmem = sf__calloc((size_t)L + 1, sizeof(int64_t)); /* prefix sums of op memory */
  int *pos = sf__malloc(sizeof(int) * ((size_t)L + 1));
  if (!opmem || !pos) goto oom;
  for (int q = 0; q < L; q++) {
    const sf_node *nd = &g->nodes[p->ops[q]];
    int64_t b = 0;
    for (int k = 0; k < nd->n_out; k++) {
      if (nd->out[k] < 0) continue;
      int64_t e = sf_tensor_numel(&g->tensors[nd->out[k]].t);
      if (e > 0) b += 4 * e;
    }
    for (int k = 0; k < nd->n_in; k++) {
      int t = nd->in[k];
      if (t < 0 || g->tensors[t].kind != SF_TK_CONST || g->tensors[t].t.dtype != SF_F32) continue;
      int64_t e = sf_tensor_numel(&g->tensors[t].t);
      if (e > 0) b += param_bytes * e;
    }
    opmem[q + 1] = opmem[q] + b;
  }
  int n = 0;
  for (int q = 0; q <= L; q++) {
    const int *ids;
    if (q == 0 || q == L || sf__partition_crossing(p, q, &ids) == 1) pos[n++] = q;
  }
  if (n < 2) {
    free(opmem);
    free(pos);
    return sf__errf(err, SF_EINVAL, "simulate: model has no operators to place");
  }
  out->n = n;
  out->pos = pos;
  pos = NULL;
  out->flops_before = sf__calloc((size_t)n, sizeof(double));
  out->cut_bytes = sf__calloc((size_t)n, sizeof(double));
  out->mem = sf__calloc((size_t)n * (size_t)n, sizeof(int64_t));
  if (!out->flops_before || !out->cut_bytes || !out->mem) goto oom;
  out->ref_flops_per_s = 1e9;
  for (int i = 0; i < n; i++) {
    int q = out->pos[i];
    const int *ids;
    int nt = sf__partition_crossing(p, q, &ids);
    double bytes = 0;
    for (int k = 0; k < nt; k++) {
      int t = ids[k], consumers = 0;
      for (int r = q; r < L; r++) {
        const sf_node *nd = &g->nodes[p->ops[r]];
        for (int a = 0; a < nd->n_in; a++)
          if (nd->in[a] == t) {
            consumers++;
            break;
          }
      }
      if (consumers == 0) consumers = 1; /* a graph output */
      int64_t e = sf_tensor_numel(&g->tensors[t].t);
      if (e > 0) bytes += (double)consumers * (double)e * 8.0 / 1.44;
    }
    out->cut_bytes[i] = bytes;
    for (int j = i + 1; j < n; j++) out->mem[i * n + j] = opmem[out->pos[j]] - opmem[q];
  }
  free(opmem);
  return 0;
oom:
  free(opmem);
  free(pos);
  sf__pcosts_deinit(out);
  return sf__errf(err, SF_ENOMEM, "simulate: out of memory for the cost tables");
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

void sf__sim_results_free(sf_sim_result *r, int n) {
  if (!r) return;
  for (int i = 0; i < n; i++) free(r[i].bottleneck_s);
  free(r);
}

int sf__sim_run(const sf_pcosts *c, const sf_sim_grid *g, sf_sim_progress progress, void *ctx,
                sf_sim_result **out, sf_err *err) {
  *out = NULL;
  if (g->n_caps < 1 || g->n_nodes < 1 || g->n_algs < 1 || g->trials < 1 || g->trials > 1000000 ||
      !(g->flops_per_s > 0))
    return sf__errf(err, SF_EINVAL, "simulate: empty or invalid grid");
  int nr = g->n_caps * g->n_nodes * g->n_algs, rc = 0;
  sf_sim_result *r = sf__calloc((size_t)nr, sizeof *r);
  double *times = sf__malloc(sizeof(double) * (size_t)g->trials);
  sf_cluster cl;
  memset(&cl, 0, sizeof cl);
  sf_plan p;
  memset(&p, 0, sizeof p);
  if (!r || !times) {
    rc = sf__errf(err, SF_ENOMEM, "simulate: out of memory");
    goto done;
  }
  for (int i = 0; i < nr; i++) {
    r[i].bottleneck_s = sf__malloc(sizeof(double) * (size_t)g->trials);
    if (!r[i].bottleneck_s) {
      rc = sf__errf(err, SF_ENOMEM, "simulate: out of memory");
      goto done;
    }
  }
  long total = (long)nr * g->trials, done_n = 0;
  for (int ci = 0; ci < g->n_caps; ci++)
    for (int ni = 0; ni < g->n_nodes; ni++) {
      sf_sim_result *row = &r[(ci * g->n_nodes + ni) * g->n_algs];
      double *solve = NULL;
      solve = sf__calloc((size_t)g->n_algs * (size_t)g->trials, sizeof(double));
      if (!solve) {
        rc = sf__errf(err, SF_ENOMEM, "simulate: out of memory");
        goto done;
      }
      for (int t = 0; t < g->trials; t++) {
        uint64_t seed = sf__sim_seed(g->seed, g->caps_mb[ci], g->nodes[ni], t);
        if ((rc = sf__sim_network(g->nodes[ni], (int64_t)g->caps_mb[ci] << 20, g->flops_per_s,
                                  seed, &cl, NULL, err)) < 0) {
          free(solve);
          goto done;
        }
        for (int a = 0; a < g->n_algs; a++) {
          sf_plan_opts o = sf_plan_opts_default();
          o.seed = seed;
          if ((rc = sf__plan_solve(g->algs[a], c, &cl, &o, &p, err)) < 0) {
            free(solve);
            goto done;
          }
          row[a].bottleneck_s[t] = p.n_stages > 0 ? p.bottleneck_s : INFINITY;
          solve[a * g->trials + t] = p.solve_s;
          sf__plan_deinit(&p);
          if (progress) progress(ctx, ++done_n, total);
        }
        sf__cluster_deinit(&cl);
      }
      for (int a = 0; a < g->n_algs; a++) {
        sf_sim_result *x = &row[a];
        x->capacity_mb = g->caps_mb[ci];
        x->nodes = g->nodes[ni];
        x->algorithm = g->algs[a]->name;
        x->trials = g->trials;
        double sum = 0, ssum = 0;
        for (int t = 0; t < g->trials; t++) {
          if (isfinite(x->bottleneck_s[t])) {
            x->feasible++;
            sum += x->bottleneck_s[t];
          }
          times[t] = solve[a * g->trials + t];
          ssum += times[t];
        }
        x->mean_bottleneck_s = x->feasible ? sum / x->feasible : INFINITY;
        x->mean_solve_s = ssum / g->trials;
        qsort(times, (size_t)g->trials, sizeof(double), cmp_double);
        int k = (int)ceil(0.99 * g->trials) - 1;
        x->p99_solve_s = times[k < 0 ? 0 : k];
        x->max_solve_s = times[g->trials - 1];
      }
      free(solve);
    }
done:
  sf__plan_deinit(&p);
  sf__cluster_deinit(&cl);
  free(times);
  if (rc < 0) {
    sf__sim_results_free(r, nr);
    return rc;
  }
  *out = r;
  return 0;
}

double sf__sim_improvement(const sf_sim_result *opt, const sf_sim_result *base, int *count) {
  int k = 0;
  double s = 0;
  int n = opt->trials < base->trials ? opt->trials : base->trials;
  for (int t = 0; t < n; t++) {
    double o = opt->bottleneck_s[t], b = base->bottleneck_s[t];
    if (!isfinite(o) || !isfinite(b)) continue;
    s += b > 0 ? (b - o) / b : 0;
    k++;
  }
  if (count) *count = k;
  return k ? s / k : NAN;
}

void sf__sim_write_csv(FILE *f, int header, const char *model, const sf_sim_result *r, int n) {
  if (header)
    fprintf(f, "model,capacity_mb,nodes,algorithm,mean_bottleneck_s,feasible_trials,"
               "mean_solve_s\n");
  for (int i = 0; i < n; i++) {
    fprintf(f, "%s,%d,%d,%s,", model, r[i].capacity_mb, r[i].nodes, r[i].algorithm);
    if (isfinite(r[i].mean_bottleneck_s))
      fprintf(f, "%.9g", r[i].mean_bottleneck_s);
    else
      fprintf(f, "inf");
    fprintf(f, ",%d,%.6g\n", r[i].feasible, r[i].mean_solve_s);
  }
}
