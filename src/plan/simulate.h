/* Simulation of SEIFER's evaluation: random edge networks, SEIFER's cost model, and a grid of
 * (capacity, nodes, trial) instances solved by every algorithm (the `seifer simulate` command).
 *
 *   sf_pcosts c;  sf__sim_seifer_costs(&partition, &c, err);   // or partition.costs (measured)
 *   sf_sim_grid g = {...};  sf_sim_result *r;
 *   sf__sim_run(&c, &g, NULL, NULL, &r, err);                   // r[(ci * nn + ni) * na + ai]
 *
 * See docs/planner.md ("Simulation") for the network, the cost models and the statistics.
 */
#ifndef SF_SIMULATE_H
#define SF_SIMULATE_H

#include "partition/partition.h"
#include "plan/plan.h"

/* SEIFER's random network: n nodes uniform in [1, 150)^2, complete graph, symmetric bandwidth
 * log2(1 + 283230 / d^2) Mbit/s (stored as bytes/s = Mbit/s * 1e6 / 8), every node mem_bytes of
 * memory and flops_per_s of speed, no gateway. Deterministic in seed. xy (may be NULL, 2n
 * entries) receives the coordinates x0, y0, x1, ... Cost O(n^2). */
int sf__sim_network(int n, int64_t mem_bytes, double flops_per_s, uint64_t seed, sf_cluster *out,
                    double *xy, sf_err *err);
/* Bandwidth in bytes/s of a pair at distance d > 0 under SEIFER's formula. */
double sf__sim_bandwidth(double d);
/* Seed of instance (capacity_mb, nodes, trial) of a grid with base seed: independent of the
 * model and of the algorithm, so every algorithm sees identical instances. */
uint64_t sf__sim_seed(uint64_t base, int capacity_mb, int nodes, int trial);

/* SEIFER's cost model over p's order: candidate cuts = positions 0 and L and every position
 * crossed by exactly one tensor (their "singleton" layers); cut bytes = sum over crossing
 * tensors of (consumers at or after the cut) x elements x 8 / 1.44; stage memory = sum over
 * the stage's operators of output elements x 4 + float parameter elements they read x
 * param_bytes (4 = float32 weights; SEIFER's text adds the bare parameter count, i.e. 1);
 * flops all 0 (compute ignored). out is malloc'ed (free with sf__pcosts_deinit). O(L + n^2). */
int sf__sim_seifer_costs(const sf_partition *p, int param_bytes, sf_pcosts *out, sf_err *err);

typedef struct sf_sim_grid {
  int n_caps;
  const int *caps_mb;   /* node memory capacities, MiB */
  int n_nodes;
  const int *nodes;     /* network sizes */
  int trials;
  uint64_t seed;
  int n_algs;
  const sf_solver *const *algs;
  double flops_per_s;   /* node speed */
} sf_sim_grid;

typedef struct sf_sim_result {
  int capacity_mb, nodes;
  const char *algorithm;
  int trials, feasible;
  double mean_bottleneck_s; /* over feasible trials; +inf when none is feasible */
  double mean_solve_s, p99_solve_s, max_solve_s;
  double *bottleneck_s;     /* per trial (+inf infeasible), trials entries, owned */
} sf_sim_result;

/* Progress callback: done / total instances-times-algorithms. */
typedef void (*sf_sim_progress)(void *ctx, long done, long total);

/* Solve every instance of g with every algorithm. *out gets n_caps * n_nodes * n_algs results
 * in order (capacity, nodes, algorithm); free with sf__sim_results_free. */
int sf__sim_run(const sf_pcosts *c, const sf_sim_grid *g, sf_sim_progress progress, void *ctx,
                sf_sim_result **out, sf_err *err);
void sf__sim_results_free(sf_sim_result *r, int n);

/* Mean over instances where both are feasible of (base - opt) / base (0 when base == 0), and
 * the number of such instances. Returns NaN when there is none. */
double sf__sim_improvement(const sf_sim_result *opt, const sf_sim_result *base, int *count);

/* CSV rows "model,capacity_mb,nodes,algorithm,mean_bottleneck_s,feasible_trials,mean_solve_s"
 * (header when header != 0; infinite means written as inf). */
void sf__sim_write_csv(FILE *f, int header, const char *model, const sf_sim_result *r, int n);

#endif
