/* Probing: measurements the planner uses instead of estimates. Compute: the time of every
 * operator of a model on this machine, measured once by running the whole model with the
 * runtime's per-node profiling; a stage's time is then the sum over its operators (the planner's
 * sf_pcosts.measured_before prefix array), so all n^2 stages cost one measurement.
 *
 *   sf_op_times t;
 *   sf_probe_compute_opts o = sf_probe_compute_opts_default();
 *   sf__probe_compute(model, &partition, &o, &t, err);    // or sf__op_times_parse(costs.json)
 *   sf__op_times_apply(&t, &partition, &partition.costs, err);  // fills measured_before
 *   char *json = sf__op_times_json(&t, "model.onnx");      // the costs file (docs/planner.md)
 *   sf__op_times_deinit(&t);
 */
#ifndef SF_PROBE_H
#define SF_PROBE_H

#include "partition/partition.h"

#define SF_PROBE_MAX_OPS 1000000         /* operators in a costs file */
#define SF_PROBE_MAX_SAMPLES (4 << 20)   /* operators x iterations kept while measuring */
#define SF_COSTS_KIND "seifer-compute-costs"

typedef struct sf_probe_compute_opts {
  int threads; /* 0 = all cores */
  int iters;   /* measured inferences (default 20) */
  int warmup;  /* inferences before measuring (default 2, at least 1 is run) */
  int n_shapes;
  const sf_input_shape *shapes;
} sf_probe_compute_opts;

sf_probe_compute_opts sf_probe_compute_opts_default(void);

/* Per-operator times in the partition's operator order. */
typedef struct sf_op_times {
  int n_ops;
  char **names;        /* operator (ONNX node) names */
  char **op_types;
  double *seconds;     /* per inference */
  double total_s;      /* sum of seconds */
  double unmatched_s;  /* runtime nodes of no operator of their own (layout conversions),
                          included in the times of their neighbours */
  double flops;        /* of one inference */
  double ref_flops_per_s; /* the speed at which the times hold: see sf__probe_compute */
  char reference[96];     /* how ref_flops_per_s was chosen ("measured", "node NAME", ...) */
  int threads, iters;
} sf_op_times;

/* Run m (pa = its partition analysis, same input shapes) warmup + iters times with profiling and
 * attribute each runtime node's time to its operator position (by node name; fused activations
 * and folded BatchNorms count 0, their time is in the node they were fused into; inserted
 * layout conversions go to the operator run before them). Each operator's time is the mean over
 * the faster half of the inferences (by total time: robust to interference). ref_flops_per_s is
 * set to the measured speed flops / total_s (1 GFLOP/s when the model has no flops), reference
 * "measured"; the caller may replace both (e.g. by a cluster node's speed). */
int sf__probe_compute(sf_model *m, const sf_partition *pa, const sf_probe_compute_opts *o,
                      sf_op_times *out, sf_err *err);

/* Fill every input of s with deterministic pseudo-random values: floats in [-1, 1), other types
 * zeros (input i seeded with i + 1). For timing runs. */
void sf__probe_fill_inputs(sf_session *s);

/* The costs file (JSON, malloc'ed string; NULL when out of memory). */
char *sf__op_times_json(const sf_op_times *t, const char *model);
/* Parse and validate a costs file; errors name the field and the operator. */
int sf__op_times_parse(const char *json, size_t len, sf_op_times *out, sf_err *err);
/* Match the operators of t to pa's order (by position when the names agree, else by name) and
 * fill c->measured_before and c->ref_flops_per_s (c: pa's costs or a copy with the same pos). */
int sf__op_times_apply(const sf_op_times *t, const sf_partition *pa, sf_pcosts *c, sf_err *err);
void sf__op_times_deinit(sf_op_times *t);

#endif
