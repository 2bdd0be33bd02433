/* Graph IR: tensors, nodes and attributes of one ONNX graph, with indices instead of pointers
 * so that the arrays can grow.
 *
 * A tensor is referenced by its id (index into g->tensors); a node by its index into g->nodes.
 * Node inputs may be -1 for an omitted optional input (ONNX's empty name).
 *
 * Lifecycle: sf__graph_new -> loader adds tensors / nodes / attributes -> sf__graph_compile
 * (graph/compile.c: topological order, shape inference, constant folding, fusion, layout,
 * memory plan) -> runtime executes nodes in g->order.
 */
#ifndef SF_GRAPH_H
#define SF_GRAPH_H

#include "util/util.h"

/* Bytes readable past the end of every tensor buffer the runtime hands to kernels (XNNPACK's
 * XNN_EXTRA_BYTES): constants made by sf__tensor_set_const / sf__graph_clone and arena buffers
 * carry this slack. */
#define SF_READ_SLACK 16

/* Tensor kinds. */
enum {
  SF_TK_ACT = 0,   /* intermediate activation (arena) */
  SF_TK_INPUT = 1, /* graph input (arena) */
  SF_TK_CONST = 2, /* initializer or folded constant: data owned by the tensor */
};

typedef struct sf_gtensor {
  sf_tensor t;       /* name, dtype, rank, dims, layout, data */
  int kind;          /* SF_TK_* */
  int is_output;     /* graph output */
  int producer;      /* node index, -1 for inputs / constants */
  int n_consumers;   /* filled by sf__graph_index */
  int shape_known;   /* dims/dtype valid (set by inference or by the model's value_info) */
  char **dim_params; /* symbolic names of dims (SF_MAX_RANK entries, NULL where numeric); may be
                        NULL. shape_known with a dim of -1 means: rank known, that dim symbolic */
  /* memory plan (runtime) */
  int alias_of;      /* tensor id whose buffer this one shares (-1 none) */
  int64_t arena_off; /* offset into the arena, -1 if not in arena */
  int64_t first_use, last_use;
  int owns_data;     /* data is malloc'ed and owned (constants) */
  /* external data source (loader): if ext_path set, data is read lazily */
} sf_gtensor;

enum {
  SF_ATTR_UNDEF = 0,
  SF_ATTR_FLOAT = 1,
  SF_ATTR_INT = 2,
  SF_ATTR_STRING = 3,
  SF_ATTR_TENSOR = 4,
  SF_ATTR_GRAPH = 5,
  SF_ATTR_FLOATS = 6,
  SF_ATTR_INTS = 7,
  SF_ATTR_STRINGS = 8,
}; /* values are ONNX AttributeProto.AttributeType */

typedef struct sf_attr {
  char *name;
  int type;
  float f;
  int64_t i;
  char *s;          /* STRING (NUL-terminated; may contain no NUL in ONNX) */
  int n;            /* count for FLOATS / INTS / STRINGS */
  float *floats;
  int64_t *ints;
  char **strings;
  sf_tensor *tensor; /* TENSOR: owned (name, data malloc'ed) */
} sf_attr;

typedef struct sf_node {
  char *name;
  char *op_type;
  char *domain; /* "" for the default ONNX domain */
  int n_in, n_out;
  int *in, *out;
  int n_attr;
  sf_attr *attrs;
  /* compile / runtime */
  const struct sf_op_def *op;
  int dead;     /* removed by an optimisation pass */
  int layout;   /* SF_LAYOUT_NHWC when the node runs channels-last */
  int fused_act;      /* activation fused into this node by the compiler (SF_ACT_*) */
  float act_min, act_max; /* clamp bounds of a fused activation */
  void *state;  /* kernel state created by op->prepare; released by the session, not graph_free */
  uint32_t packed_inputs; /* set by prepare: bit j = constant input j was copied (e.g. packed
                             into an XNNPACK operator) and its data is no longer read */
  int64_t flops;
} sf_node;

enum { SF_ACT_NONE = 0, SF_ACT_CLAMP = 1, SF_ACT_SWISH = 2 /* x * sigmoid(x) */ };

typedef struct sf_graph {
  char *name;
  int64_t opset;      /* default ("" / "ai.onnx") domain */
  int64_t ir_version;
  char *producer_name, *producer_version;
  int n_tensors, cap_tensors;
  sf_gtensor *tensors;
  int n_nodes, cap_nodes;
  sf_node *nodes;
  int n_inputs, n_outputs;
  int *inputs, *outputs; /* tensor ids (inputs exclude initializers) */
  sf_strmap names;       /* tensor name -> id */
  int *order;            /* execution order (node indices), n_order entries */
  int n_order;
} sf_graph;

sf_graph *sf__graph_new(void);
void sf__graph_free(sf_graph *g);
/* Deep copy (constants' data copied). */
sf_graph *sf__graph_clone(const sf_graph *g);
/* Copy whose constants borrow the data of g (owns_data = 0): cheap, but g must outlive it and
 * nobody may write to constant data (passes that change a constant make a new tensor). */
sf_graph *sf__graph_clone_shared(const sf_graph *g);

/* Tensor by name: returns existing id, or creates an activation tensor with that name. */
int sf__graph_tensor(sf_graph *g, const char *name);
/* A new tensor with a fresh unique name derived from base. Returns id or negative error. */
int sf__graph_new_tensor(sf_graph *g, const char *base);
int sf__graph_find(const sf_graph *g, const char *name); /* id or -1 */
/* Add a node; in/out are tensor ids (-1 allowed for optional inputs). Returns node index. */
int sf__graph_add_node(sf_graph *g, const char *op_type, const char *name, int n_in,
                       const int *in, int n_out, const int *out);
/* Attributes (copied into the node). */
int sf__node_set_int(sf_node *n, const char *name, int64_t v);
int sf__node_set_float(sf_node *n, const char *name, float v);
int sf__node_set_ints(sf_node *n, const char *name, const int64_t *v, int cnt);
int sf__node_set_floats(sf_node *n, const char *name, const float *v, int cnt);
int sf__node_set_string(sf_node *n, const char *name, const char *s);
sf_attr *sf__node_add_attr(sf_node *n, const char *name, int type); /* zeroed attr */
/* Deep copy of an attribute (from another node or graph) into n. */
int sf__node_copy_attr(sf_node *n, const sf_attr *src);

/* Attribute getters: return the default when absent. */
const sf_attr *sf__attr(const sf_node *n, const char *name);
int64_t sf__attr_int(const sf_node *n, const char *name, int64_t def);
float sf__attr_float(const sf_node *n, const char *name, float def);
const char *sf__attr_string(const sf_node *n, const char *name, const char *def);
/* INTS: returns count (or -1 if absent) and sets *v to internal storage. */
int sf__attr_ints(const sf_node *n, const char *name, const int64_t **v);
int sf__attr_floats(const sf_node *n, const char *name, const float **v);

/* Make tensor id a constant holding a copy of data (dtype, dims). */
int sf__tensor_set_const(sf_graph *g, int id, int dtype, int rank, const int64_t *dims,
                         const void *data);
/* Set a tensor's dtype and shape (shape_known = 1). */
void sf__tensor_set_shape(sf_gtensor *t, int dtype, int rank, const int64_t *dims);

/* Input tensor i of node n, or NULL when absent (i >= n_in or id -1). */
static inline sf_gtensor *sf__in(sf_graph *g, const sf_node *n, int i) {
  return (i < n->n_in && n->in[i] >= 0) ? &g->tensors[n->in[i]] : NULL;
}
static inline sf_gtensor *sf__out(sf_graph *g, const sf_node *n, int i) {
  return (i < n->n_out && n->out[i] >= 0) ? &g->tensors[n->out[i]] : NULL;
}

/* Recount consumers, producers; sets producer / n_consumers of each tensor. */
void sf__graph_index(sf_graph *g);
/* Topological order of live nodes into g->order; error names a cycle or a missing input. */
int sf__graph_toposort(sf_graph *g, sf_err *err);
/* Remove nodes whose outputs reach no graph output; then drop unused constants' data. */
void sf__graph_prune(sf_graph *g);
/* Validate structure: every input of a live node is a graph input, a constant or produced. */
int sf__graph_validate(sf_graph *g, sf_err *err);

/* Human-readable shape "1x3x224x224" into buf. */
const char *sf__shape_str(const sf_tensor *t, char *buf, size_t n);

#endif
