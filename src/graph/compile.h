/* Compilation of a graph for execution: input shapes, operator binding, shape inference with
 * constant folding, BatchNormalization/activation fusion, channels-last layout assignment and
 * the arena memory plan. The graph is modified in place (compile a clone).
 *
 *   sf_compile_opts o = {...};
 *   sf__graph_compile(g, &o, &plan, err);   // g->order = nodes to run, every tensor has data
 *                                            // (constants) or an arena offset
 */
#ifndef SF_COMPILE_H
#define SF_COMPILE_H

#include <pthreadpool.h>

#include "graph/graph.h"

typedef struct sf_compile_opts {
  int n_shapes;
  const sf_input_shape *shapes;
  int n_values;
  const sf_tensor *values; /* see sf_session_opts.values */
  int no_fuse;   /* keep BatchNormalization and activations as separate nodes */
  int layout;    /* -1 auto, 0 plain NCHW only, 1 channels-last inside convolutions only */
  pthreadpool_t pool;
} sf_compile_opts;

typedef struct sf_compile_result {
  int64_t arena_bytes;   /* bytes the arena needs (with XNNPACK slack) */
  int64_t flops;         /* per inference, logical shapes */
  int n_folded, n_fused, n_transposes, n_inplace;
  int defaulted_input;   /* 1 + index of an input whose dynamic dims were taken as 1, or 0 */
} sf_compile_result;

/* Everything up to and including the memory plan (offsets in t->arena_off). */
int sf__graph_compile(sf_graph *g, const sf_compile_opts *o, sf_compile_result *res, sf_err *err);

/* Partitioning support (src/partition/): only the analysis steps of sf__graph_compile - input
 * shapes, operator binding, topological order, shape inference with constant folding (node->flops
 * set) and pruning; no fusion, layout or memory plan, so the graph stays plain ONNX. */
int sf__graph_infer_only(sf_graph *g, const sf_compile_opts *o, sf_compile_result *res,
                         sf_err *err);

/* Given a base address, point every arena tensor's data into it. */
void sf__graph_bind_arena(sf_graph *g, void *arena);

#endif
