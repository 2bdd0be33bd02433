/* The cost model shared by every solver: stage compute time, link transfer time, plan
 * evaluation (bottleneck = max over stage compute, stage output transfers and the gateway
 * transfers), and the solver registry. */
#include <math.h>
#include <string.h>

#include "plan/plan.h"

sf_plan_opts sf_plan_opts_default(void) {
  sf_plan_opts o;
  memset(&o, 0, sizeof o);
  o.max_stages = 0;
  o.time_limit_s = 0;
  o.seed = 1;
  o.distinct_nodes = 1;
  o.kpath_classes = 0;
  return o;
}

double sf__stage_compute_s(const sf_pcosts *c, const sf_cluster *cl, int i, int j, int node) {
  double f = cl->nodes[node].flops_per_s;
  if (c->measured_before)
    return (c->measured_before[j] - c->measured_before[i]) * c->ref_flops_per_s / f;
  if (c->measured_s) return c->measured_s[(size_t)i * c->n + j] * c->ref_flops_per_s / f;
  return (c->flops_before[j] - c->flops_before[i]) / f;
}

int sf__pcosts_set_op_times(sf_pcosts *c, const double *op_s, int n_ops, double ref_flops_per_s,
                            sf_err *err) {
  if (!c || c->n < 2 || !c->pos || !op_s) return sf__errf(err, SF_EINVAL, "measured costs: missing argument");
  if (n_ops != c->pos[c->n - 1])
    return sf__errf(err, SF_EINVAL, "measured costs: %d operator times for a model of %d operators",
                    n_ops, c->pos[c->n - 1]);
  if (!(ref_flops_per_s > 0) || !isfinite(ref_flops_per_s))
    return sf__errf(err, SF_EINVAL, "measured costs: reference speed must be positive");
  for (int q = 0; q < n_ops; q++)
    if (!(op_s[q] >= 0) || !isfinite(op_s[q]))
      return sf__errf(err, SF_EINVAL, "measured costs: operator %d: time %g is not a finite number >= 0", q,
                      op_s[q]);
  double *mb = sf__malloc(sizeof(double) * (size_t)c->n);
  if (!mb) return sf__errf(err, SF_ENOMEM, "measured costs: out of memory");
  double acc = 0;
  int q = 0;
  for (int i = 0; i < c->n; i++) {
    for (; q < c->pos[i]; q++) acc += op_s[q];
    mb[i] = acc;
  }
  free(c->measured_before);
  c->measured_before = mb;
  c->ref_flops_per_s = ref_flops_per_s;
  return 0;
}

double sf__link_s(const sf_pcosts *c, const sf_cluster *cl, int cut, int from, int to) {
  if (from == to) return 0;
  return c->cut_bytes[cut] / cl->bw[(size_t)from * cl->n + to];
}

void sf__plan_deinit(sf_plan *p) {
  if (!p) return;
  free(p->stages);
  p->stages = NULL;
  p->n_stages = 0;
}

int sf__plan_eval(const sf_pcosts *c, const sf_cluster *cl, int n_stages, const int *cuts,
                  const int *nodes, sf_plan *p, sf_err *err) {
  memset(p, 0, sizeof *p);
  if (n_stages < 1 || n_stages > cl->n || n_stages > c->n - 1)
    return sf__errf(err, SF_EINVAL, "plan: %d stages for %d cuts and %d nodes", n_stages, c->n,
                    cl->n);
  if (cuts[0] != 0 || cuts[n_stages] != c->n - 1)
    return sf__errf(err, SF_EINVAL, "plan: cuts must run from 0 to %d", c->n - 1);
  for (int t = 0; t < n_stages; t++) {
    if (cuts[t + 1] <= cuts[t])
      return sf__errf(err, SF_EINVAL, "plan: cuts not increasing at stage %d", t);
    if (nodes[t] < 0 || nodes[t] >= cl->n)
      return sf__errf(err, SF_EINVAL, "plan: stage %d: node %d out of range", t, nodes[t]);
    for (int u = 0; u < t; u++)
      if (nodes[u] == nodes[t])
        return sf__errf(err, SF_EINVAL, "plan: stages %d and %d both on node '%s'", u, t,
                        cl->nodes[nodes[t]].name);
  }
  p->stages = sf__calloc((size_t)n_stages, sizeof *p->stages);
  if (!p->stages) return sf__errf(err, SF_ENOMEM, "plan: out of memory");
  p->n_stages = n_stages;
  int gw = cl->gateway;
  double b = 0;
  int fits = 1;
  if (gw >= 0) p->gateway_in_s = sf__link_s(c, cl, 0, gw, nodes[0]);
  b = p->gateway_in_s;
  for (int t = 0; t < n_stages; t++) {
    sf_stage *s = &p->stages[t];
    s->cut_from = cuts[t];
    s->cut_to = cuts[t + 1];
    s->node = nodes[t];
    s->compute_s = sf__stage_compute_s(c, cl, s->cut_from, s->cut_to, s->node);
    s->mem_bytes = sf__pcosts_mem(c, s->cut_from, s->cut_to);
    s->out_bytes = c->cut_bytes[s->cut_to];
    if (t + 1 < n_stages)
      s->link_s = sf__link_s(c, cl, s->cut_to, s->node, nodes[t + 1]);
    else
      s->link_s = gw >= 0 ? sf__link_s(c, cl, s->cut_to, s->node, gw) : 0;
    if (s->mem_bytes > cl->nodes[s->node].mem_bytes) fits = 0;
    if (s->compute_s > b) b = s->compute_s;
    if (s->link_s > b) b = s->link_s;
  }
  p->bottleneck_s = fits ? b : INFINITY;
  p->throughput_per_s = p->bottleneck_s > 0 ? 1 / p->bottleneck_s : INFINITY;
  if (!fits) p->throughput_per_s = 0;
  return 0;
}

const sf_solver *sf__solver_find(const char *name) {
  static const sf_solver *const all[] = {&sf__solver_optimal, &sf__solver_kpath,
                                         &sf__solver_joint, &sf__solver_random};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    if (!strcmp(all[i]->name, name)) return all[i];
  return NULL;
}

int sf__plan_solve(const sf_solver *s, const sf_pcosts *c, const sf_cluster *cl,
                   const sf_plan_opts *o, sf_plan *out, sf_err *err) {
  memset(out, 0, sizeof *out);
  if (!s || !c || !cl || !o) return sf__errf(err, SF_EINVAL, "plan: missing argument");
  if (c->n < 2 || c->n > SF_PLAN_MAX_CUTS)
    return sf__errf(err, SF_EINVAL, "plan: %d candidate cuts (need 2..%d)", c->n, SF_PLAN_MAX_CUTS);
  if (!c->flops_before || !c->cut_bytes || !c->mem)
    return sf__errf(err, SF_EINVAL, "plan: incomplete model costs");
  if ((c->measured_s || c->measured_before) && !(c->ref_flops_per_s > 0))
    return sf__errf(err, SF_EINVAL, "plan: measured stage times need ref_flops_per_s > 0");
  if (c->measured_s && c->measured_before)
    return sf__errf(err, SF_EINVAL, "plan: both measured_s and measured_before are set");
  if (cl->n < 1 || cl->n > SF_PLAN_MAX_NODES || !cl->nodes || !cl->bw)
    return sf__errf(err, SF_EINVAL, "plan: cluster has %d nodes (need 1..%d)", cl->n,
                    SF_PLAN_MAX_NODES);
  if (cl->gateway < -1 || cl->gateway >= cl->n)
    return sf__errf(err, SF_EINVAL, "plan: gateway %d out of range", cl->gateway);
  if (o->max_stages < 0) return sf__errf(err, SF_EINVAL, "plan: max_stages %d < 0", o->max_stages);
  if (!o->distinct_nodes)
    return sf__errf(err, SF_EUNSUPPORTED, "plan: solvers place every stage on a distinct node");
  int n_usable = 0;
  for (int i = 0; i < cl->n; i++) {
    if (!(cl->nodes[i].flops_per_s > 0) || cl->nodes[i].mem_bytes <= 0)
      return sf__errf(err, SF_EINVAL, "plan: node '%s' has no speed or memory",
                      cl->nodes[i].name ? cl->nodes[i].name : "?");
    n_usable += sf__node_usable(o, i);
  }
  double t0 = sf__now();
  if (!n_usable) { /* nothing can run a stage: proven infeasible */
    out->bottleneck_s = INFINITY;
    out->optimal = 1;
    out->algorithm = s->name;
    return 0;
  }
  int rc = s->solve(c, cl, o, out, err);
  if (rc < 0) {
    sf__plan_deinit(out);
    return rc;
  }
  out->algorithm = s->name;
  out->solve_s = sf__now() - t0;
  return 0;
}
