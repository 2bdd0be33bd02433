/* Placement: choose the cuts of a model and the node of each stage so that the pipeline's
 * bottleneck (slowest stage compute or link transfer) is as small as possible.
 *
 * The planner sees a model only through sf_pcosts (built by partition/ from the graph: candidate
 * cuts along a topological order with the cost of every stage between two cuts) and a cluster
 * through sf_cluster (nodes with memory and speed, pairwise links). Solvers plug in as vtables.
 *
 *   sf_plan_opts o = sf_plan_opts_default();
 *   sf_plan p;
 *   sf__plan_solve(&sf__solver_optimal, costs, cluster, &o, &p, err);
 *   ... p.stages[i].node, p.bottleneck_s, p.optimal, p.gap ...
 *   sf__plan_deinit(&p);
 *
 * Several disjoint pipelines behind one gateway (when nodes are plentiful):
 *   sf_multiplan mp;
 *   sf__plan_multi(&sf__solver_optimal, costs, cluster, &o, 0, &mp, err);  // 0: as many as help
 *   ... mp.pipelines[k], mp.rate_per_s[k], mp.throughput_per_s, mp.upper_bound_per_s ...
 *   sf__multiplan_deinit(&mp);
 */
#ifndef SF_PLAN_H
#define SF_PLAN_H

#include "util/util.h"

/* ---- the model side ---------------------------------------------------------------------- */
/* Candidate cuts 0..n-1 in increasing topological position; cut 0 is before the first operator
 * (the model input) and cut n-1 after the last (the model output). A stage is the operators
 * between two cuts i < j; a plan is an increasing sequence of cuts from 0 to n-1. */
typedef struct sf_pcosts {
  int n;                /* number of candidate cuts (>= 2) */
  int *pos;             /* operator position of each cut (pos[0] = 0, pos[n-1] = #operators) */
  double *flops_before; /* flops of all operators before cut i: stage flops = fb[j] - fb[i] */
  double *cut_bytes;    /* bytes that cross cut i (cut 0: model inputs, cut n-1: outputs) */
  int64_t *mem;         /* n*n: memory bytes a node needs to run stage (i, j), i < j; the
                           entries with i >= j are unused */
  double *measured_s;   /* optional n*n: measured seconds of stage (i, j) on a reference node of
                           speed ref_flops_per_s; NULL = use flops / node speed */
  double *measured_before; /* optional n: measured seconds of all operators before cut i on the
                              reference node (stage time = mb[j] - mb[i], scaled like
                              measured_s); at most one of measured_s / measured_before is set */
  double ref_flops_per_s;
} sf_pcosts;

/* Fill c->measured_before from per-operator seconds (op_s[q] for operator position q, n_ops =
 * c->pos[c->n - 1] entries, finite and >= 0) measured on a node of speed ref_flops_per_s;
 * replaces an earlier measured_before. */
int sf__pcosts_set_op_times(sf_pcosts *c, const double *op_s, int n_ops, double ref_flops_per_s,
                            sf_err *err);

static inline int64_t sf__pcosts_mem(const sf_pcosts *c, int i, int j) { return c->mem[i * c->n + j]; }

/* ---- the cluster side -------------------------------------------------------------------- */
typedef struct sf_cnode {
  char *name;
  int64_t mem_bytes;
  double flops_per_s; /* compute speed */
} sf_cnode;

typedef struct sf_cluster {
  int n;
  sf_cnode *nodes;
  double *bw;   /* n*n bytes/s from i to j (may be asymmetric); diagonal unused */
  double *rtt;  /* n*n seconds; may be NULL (0) */
  int gateway;  /* node index hosting the gateway, or -1 (no gateway transfers counted) */
} sf_cluster;

/* Parse and validate a cluster JSON document (see docs/planner.md for the format); errors name
 * the field and the node / link at fault. */
int sf__cluster_parse(const char *json, size_t len, sf_cluster *c, sf_err *err);
void sf__cluster_deinit(sf_cluster *c);

/* ---- plans ------------------------------------------------------------------------------- */
typedef struct sf_stage {
  int cut_from, cut_to; /* indices into sf_pcosts */
  int node;             /* index into sf_cluster.nodes */
  double compute_s;     /* stage compute time on its node */
  double link_s;        /* transfer time of its output to the next stage (or the gateway) */
  int64_t mem_bytes;
  double out_bytes;
} sf_stage;

typedef struct sf_plan {
  int n_stages;
  sf_stage *stages;
  double bottleneck_s; /* max over stage compute and link times; +inf if infeasible */
  double throughput_per_s;
  int optimal;         /* proven optimal */
  double gap;          /* (bottleneck - proven lower bound) / bottleneck; 0 when optimal */
  const char *algorithm;
  double solve_s;      /* wall time of the solver */
  double gateway_in_s; /* transfer of the model input (cut 0) from the gateway to the first
                          stage; 0 without a gateway or when the first stage runs on it */
} sf_plan;
/* A solver that finds no plan fitting memory returns 0 with n_stages = 0, stages = NULL,
 * bottleneck_s = +inf, throughput_per_s = 0 (optimal = 1 when infeasibility is proven). */

typedef struct sf_plan_opts {
  int max_stages;      /* 0 = up to the number of nodes */
  double time_limit_s; /* 0 = none: exact solvers run to proof */
  uint64_t seed;       /* randomised baselines */
  int distinct_nodes;  /* 1 (default): every stage on a different node (the only mode the
                          solvers implement; 0 is rejected with SF_EUNSUPPORTED) */
  int kpath_classes;   /* kpath: number of transfer-size classes (0 = 5) */
  const unsigned char *usable; /* optional cluster->n flags: only nodes with usable[v] != 0 may
                                  run a stage (the gateway still sends and receives); NULL = all */
} sf_plan_opts;

sf_plan_opts sf_plan_opts_default(void);
static inline int sf__node_usable(const sf_plan_opts *o, int v) { return !o->usable || o->usable[v]; }

/* Cost of a stage / link under the model: shared by every solver so they agree exactly. */
double sf__stage_compute_s(const sf_pcosts *c, const sf_cluster *cl, int i, int j, int node);
double sf__link_s(const sf_pcosts *c, const sf_cluster *cl, int cut, int from, int to);
/* Evaluate a plan given as cuts (n_stages + 1 entries, cuts[0] = 0, last = n-1) and nodes:
 * fills stages, bottleneck, throughput; +inf bottleneck when memory does not fit. */
int sf__plan_eval(const sf_pcosts *c, const sf_cluster *cl, int n_stages, const int *cuts,
                  const int *nodes, sf_plan *p, sf_err *err);
void sf__plan_deinit(sf_plan *p);

/* Solvers. */
typedef struct sf_solver {
  const char *name; /* "optimal", "kpath", "joint", "random" */
  int (*solve)(const sf_pcosts *c, const sf_cluster *cl, const sf_plan_opts *o, sf_plan *out,
               sf_err *err);
} sf_solver;

extern const sf_solver sf__solver_optimal, sf__solver_kpath, sf__solver_joint, sf__solver_random;
const sf_solver *sf__solver_find(const char *name);
/* Validate the inputs, run s->solve, set out->algorithm and out->solve_s. */
int sf__plan_solve(const sf_solver *s, const sf_pcosts *c, const sf_cluster *cl,
                   const sf_plan_opts *o, sf_plan *out, sf_err *err);
/* Largest plan problem accepted: cuts and nodes. */
#define SF_PLAN_MAX_CUTS 4096
#define SF_PLAN_MAX_NODES 4096

/* ---- several pipelines --------------------------------------------------------------------
 * k pipelines on disjoint node sets behind one gateway; the gateway spreads requests over them.
 * Pipeline p alone has bottleneck b_p (sf__plan_eval). The gateway's outgoing link is shared:
 * sending one input to pipeline p occupies it for a_p = p.gateway_in_s seconds, and its incoming
 * link for d_p = the output transfer of p's last stage. One request to every pipeline in turn
 * (a round) needs A = sum a_p on the outgoing and D = sum d_p on the incoming link, so with
 * R = max(A, D) pipeline p gets rate_p = 1 / max(b_p, R) and the total is sum rate_p (a
 * feasible schedule: at rate_p every pipeline sends at most one request per round). With one
 * pipeline this is 1 / b_1, as sf__plan_eval. Without a gateway R = 0. See docs/planner.md. */
typedef struct sf_multiplan {
  int n_pipelines;          /* 0 when nothing fits */
  sf_plan *pipelines;       /* each scored alone by sf__plan_eval; sorted by rate, best first */
  double *rate_per_s;       /* per pipeline: requests/s it is given */
  double throughput_per_s;  /* total: sum of rate_per_s */
  double gateway_round_s;   /* R (0 without a gateway) */
  double upper_bound_per_s; /* proven bound on the total of any plan with at most max_pipelines
                               pipelines (+inf when none is known) */
  int optimal;              /* throughput_per_s meets upper_bound_per_s (relative 1e-9) */
  double gap;               /* (upper bound - total) / upper bound; +inf unknown */
  const char *algorithm;
  double solve_s;
  int solves;               /* single-pipeline solves run */
} sf_multiplan;

/* Total throughput of k pipelines under the shared-gateway model above; rates (k entries) and
 * round_s may be NULL. Pipelines must be feasible (finite bottleneck). */
double sf__multi_score(const sf_cluster *cl, int k, const sf_plan *p, double *rates,
                       double *round_s);

/* Plan up to max_pipelines (0 = as many as raise the total) disjoint pipelines maximising the
 * total throughput; each pipeline is found by s (o->max_stages caps each pipeline, o->usable
 * restricts the nodes). Algorithm (docs/planner.md): the best single pipeline of at most s
 * stages for every s; greedy peeling (solve, remove its nodes, solve again) with every stage
 * cap; on clusters of at most 10 usable nodes and the exact solver, a DP over node subsets.
 * The upper bound combines the total compute of the nodes, the best bottleneck per stage count
 * and the gateway's round, and the subset DP. */
int sf__plan_multi(const sf_solver *s, const sf_pcosts *c, const sf_cluster *cl,
                   const sf_plan_opts *o, int max_pipelines, sf_multiplan *out, sf_err *err);
void sf__multiplan_deinit(sf_multiplan *mp);

#endif
