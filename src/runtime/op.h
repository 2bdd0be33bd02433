/* Operator interface: every ONNX operator the runtime supports is one sf_op_def, registered in
 * runtime/registry.c. Kernels live in runtime/ops/, grouped by family.
 *
 * Contract of the callbacks (k->g is the graph, k->node the node):
 *
 *   infer(k)   Shape inference. Inputs have dtype and dims in ONNX (logical) order; constant
 *              inputs (kind SF_TK_CONST) have ->t.data. Set every output's dtype and dims with
 *              sf__tensor_set_shape. Reject unsupported dtypes / attributes with SF_EUNSUPPORTED
 *              and bad shapes with SF_ESHAPE, naming the node (sf__op_err). Must not allocate
 *              output data. May read constant input values (Reshape target, Slice starts, ...);
 *              if such an input is not constant, fail with SF_EUNSUPPORTED.
 *
 *   prepare(k) After layout and memory planning: every input and output ->t.data points to its
 *              buffer and dims are PHYSICAL (channels-last if t.layout == SF_LAYOUT_NHWC).
 *              Create kernel state in k->node->state (e.g. an XNNPACK operator, set up once
 *              since buffer addresses never change). Optional.
 *
 *   run(k)     Compute outputs from inputs. No allocation. Required.
 *
 *   release(n) Free n->state. Optional.
 *
 *   flops(k)   Floating-point operations per inference (multiply-add = 2), logical shapes.
 *              Optional (0).
 *
 * Layout: ops with SF_OPF_NHWC get rank-3/4 float activations channels-last (N,[H,]W,C) in
 * prepare/run: the compiler inserts Transposes around them. Ops with SF_OPF_AGNOSTIC may be
 * placed in channels-last mode when a neighbour is; then the compiler permutes their constant
 * inputs to physical order and remaps "axis"-style attributes for them (see graph/layout.c),
 * and the kernel simply works on physical dims (SF_OPF_BCAST, SF_OPF_AXIS); an AGNOSTIC op
 * without those flags reads t.layout of its input itself (BatchNormalization: channel last).
 * Others always see plain ONNX layout.
 *
 * Constant folding runs infer + prepare + run + release on a node whose inputs are all
 * constant, with malloc'ed output buffers.
 */
#ifndef SF_OP_H
#define SF_OP_H

#include <pthreadpool.h>

#include "graph/graph.h"

typedef struct sf_kctx {
  sf_graph *g;
  sf_node *node;
  pthreadpool_t pool; /* may be NULL (single-threaded) */
  sf_err *err;
} sf_kctx;

enum {
  SF_OPF_NHWC = 1 << 0,     /* wants channels-last rank-3/4 float activations */
  SF_OPF_AGNOSTIC = 1 << 1, /* elementwise-like: can run in either layout */
  SF_OPF_ALIAS = 1 << 2,    /* output 0 may share input 0's buffer (reshape family) */
  SF_OPF_NOFOLD = 1 << 3,   /* never constant-fold */
  SF_OPF_BCAST = 1 << 4,    /* with AGNOSTIC: numpy-broadcast inputs; in channels-last mode the
                               compiler expands constant inputs to full rank and permutes them */
  SF_OPF_AXIS = 1 << 5,     /* with AGNOSTIC: the compiler remaps the "axis" attribute to the
                               physical order in channels-last mode (Concat) */
  SF_OPF_INPLACE = 1 << 6,  /* element-wise: output 0 may be given the buffer of an input of the
                               same size that nothing reads afterwards (the kernel reads element
                               i of its inputs before writing element i) */
};

typedef struct sf_op_def {
  const char *op_type;
  unsigned flags;
  int (*infer)(sf_kctx *k);
  int (*prepare)(sf_kctx *k);
  int (*run)(sf_kctx *k);
  void (*release)(sf_node *n);
  int64_t (*flops)(sf_kctx *k);
  /* Optional: per-node decision for SF_OPF_NHWC ops (e.g. Conv3d cannot) - return 1 to run
   * channels-last. NULL means "yes when the activation input has rank 3 or 4 and is float". */
  int (*wants_nhwc)(sf_kctx *k);
} sf_op_def;

/* Look up by op type in the default domain; NULL if unsupported. */
const sf_op_def *sf__op_find(const char *domain, const char *op_type);
/* All supported op type names, NULL-terminated. */
const char *const *sf__op_names(void);

/* Error naming the node: "Conv node 'conv1': <formatted>". Returns code. */
int sf__op_err(sf_kctx *k, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Shape helpers for kernels. */
/* Numpy broadcast of a and b into out (rank = max); SF_ESHAPE on mismatch. */
int sf__broadcast_shape(const sf_tensor *a, const sf_tensor *b, int *rank, int64_t *dims);
/* Normalise a possibly negative axis against rank; -1 if out of range. */
int sf__norm_axis(int64_t axis, int rank);
/* Read element i of an integer tensor (int32 or int64) as int64. */
int64_t sf__int_at(const sf_tensor *t, int64_t i);
/* Element i of a numeric tensor as double (f32, f64, i32, i64, bool, u8, i8). */
double sf__num_at(const sf_tensor *t, int64_t i);

/* Parallel for over [0, n) using the pool (serial if pool is NULL). */
typedef void (*sf_task_fn)(void *ctx, size_t i);
void sf__parallel_for(pthreadpool_t pool, size_t n, sf_task_fn fn, void *ctx);

/* Declarations of every op definition (one per kernel file entry). */
#define SF_OP_LIST(X)                                                                          \
  X(Conv) X(ConvTranspose) X(BatchNormalization) X(Relu) X(LeakyRelu) X(PRelu) X(Clip)          \
  X(Sigmoid) X(HardSigmoid) X(HardSwish) X(Tanh) X(Exp) X(Add) X(Sub) X(Mul) X(Div) X(Pow)      \
  X(Sqrt) X(MaxPool) X(AveragePool) X(GlobalAveragePool) X(GlobalMaxPool) X(Gemm) X(MatMul)    \
  X(Concat) X(Split) X(Reshape) X(Flatten) X(Transpose) X(Squeeze) X(Unsqueeze) X(Slice)        \
  X(Gather) X(Shape) X(Cast) X(Constant) X(ConstantOfShape) X(Identity) X(Dropout) X(Pad)       \
  X(Resize) X(Upsample) X(Softmax) X(ReduceMean) X(ReduceSum) X(Erf)

/* Operators the compiler creates by fusion, in the "seifer" domain (never in model files). */
#define SF_INTERNAL_OP_LIST(X) X(Swish)

#define SF__OP_DECL(name) extern const sf_op_def sf__op_##name;
SF_OP_LIST(SF__OP_DECL)
SF_INTERNAL_OP_LIST(SF__OP_DECL)
#undef SF__OP_DECL

#endif
