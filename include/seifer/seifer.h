/* seifer — run deep neural networks as pipelines across small edge devices.
 *
 * Public API of the seifer library. The `seifer` command and the tests link it.
 *
 * Usage sketch (load a model, run it once):
 *
 *     sf_err err;
 *     sf_model *m = NULL;
 *     if (sf_model_load(&m, "model.onnx", &err) < 0) { fprintf(stderr, "%s\n", err.msg); ... }
 *     sf_session_opts o = sf_session_opts_default();
 *     sf_session *s = NULL;
 *     if (sf_session_new(&s, m, &o, &err) < 0) { ... }
 *     sf_tensor *in = sf_session_input(s, 0);     // arena-backed; fill in->data
 *     if (sf_session_run(s, &err) < 0) { ... }
 *     sf_tensor *out = sf_session_output(s, 0);   // valid until the next run
 *     sf_session_free(s);
 *     sf_model_free(m);
 */
#ifndef SEIFER_H
#define SEIFER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SF_VERSION "0.1.0"

/* ---- errors: 0 is success, negative is a named error ---------------------------------- */
#define SF_ERRNO_MAP(X)                                             \
  X(EINVAL, -1, "invalid argument")                                 \
  X(ENOMEM, -2, "out of memory")                                    \
  X(EIO, -3, "I/O error")                                           \
  X(EFORMAT, -4, "malformed model or data file")                    \
  X(EUNSUPPORTED, -5, "unsupported")                                \
  X(ESHAPE, -6, "shape mismatch")                                   \
  X(ELIMIT, -7, "size limit exceeded")                              \
  X(ENOTFOUND, -8, "not found")                                     \
  X(EINTERNAL, -9, "internal error")

enum {
  SF_OK = 0,
#define SF__ERR_ENUM(name, val, msg) SF_##name = val,
  SF_ERRNO_MAP(SF__ERR_ENUM)
#undef SF__ERR_ENUM
};

/* Static name of an error code ("invalid argument", ...). */
const char *sf_strerror(int code);

/* Error with context. Functions that can fail take an `sf_err *` (may be NULL) and return the code. */
typedef struct sf_err {
  int code;
  char msg[1024];
} sf_err;

/* ---- tensors --------------------------------------------------------------------------- */
/* Element types; the values are ONNX TensorProto.DataType. */
typedef enum sf_dtype {
  SF_UNDEFINED = 0,
  SF_F32 = 1,
  SF_U8 = 2,
  SF_I8 = 3,
  SF_U16 = 4,
  SF_I16 = 5,
  SF_I32 = 6,
  SF_I64 = 7,
  SF_STRING = 8,
  SF_BOOL = 9,
  SF_F16 = 10,
  SF_F64 = 11,
  SF_U32 = 12,
  SF_U64 = 13,
} sf_dtype;

#define SF_MAX_RANK 8

/* Limits on anything read from outside, checked before allocation. */
#define SF_MAX_DIM ((int64_t)1 << 31)            /* one dimension */
#define SF_MAX_TENSOR_BYTES ((int64_t)4 << 30)   /* one tensor: 4 GiB */
#define SF_MAX_NAME 4096                         /* names and strings */

/* Bytes of one element (0 for unknown / string). */
size_t sf_dtype_size(int dtype);
/* "float32", "int64", ... (NumPy-style names). */
const char *sf_dtype_name(int dtype);

/* Tensor layout. Shapes are always stored in physical order; SF_LAYOUT_NHWC marks a rank-3/4
 * tensor whose ONNX (logical) order is N,C,spatial... but which is stored channels-last. */
enum { SF_LAYOUT_PLAIN = 0, SF_LAYOUT_NHWC = 1 };

typedef struct sf_tensor {
  char *name;
  int dtype;
  int rank;
  int64_t dims[SF_MAX_RANK];
  int layout;
  void *data; /* may be NULL when not materialised */
} sf_tensor;

/* Number of elements; -1 if any dim is unknown (negative). */
int64_t sf_tensor_numel(const sf_tensor *t);
/* Bytes of the data; -1 if unknown. */
int64_t sf_tensor_nbytes(const sf_tensor *t);

/* ---- models and sessions --------------------------------------------------------------- */
typedef struct sf_model sf_model;     /* a loaded ONNX model (graph IR + weights) */
typedef struct sf_session sf_session; /* a model compiled for fixed input shapes */

/* Load a model: the weights are held once (see src/onnx/load.c). With glibc, the first load
 * sets M_MMAP_THRESHOLD to 64 KiB for the process: blocks from that size on are mapped on their
 * own, so weights freed later (sf_session_opts.release_weights) leave the resident set at once
 * instead of staying as holes in the heap. */
int sf_model_load(sf_model **out, const char *path, sf_err *err);
int sf_model_load_buffer(sf_model **out, const void *buf, size_t len, const char *base_dir,
                         sf_err *err);
void sf_model_free(sf_model *m);

/* An input shape override: name=dims (used to resolve dynamic dims). */
typedef struct sf_input_shape {
  const char *name;
  int rank;
  int64_t dims[SF_MAX_RANK];
} sf_input_shape;

typedef struct sf_session_opts {
  int threads;                         /* 0 = number of cores */
  int n_shapes;
  const sf_input_shape *shapes;        /* resolve dynamic input dims; unresolved ones become 1 */
  int n_values;
  const sf_tensor *values;             /* input values known when the session is created (by
                                          name): an input that determines shapes (a Reshape
                                          target, Slice bounds, Resize scales, Pad pads, ...)
                                          is frozen to its value; others are ignored */
  int no_fold;                         /* disable BatchNorm/activation folding (debug) */
  int release_weights;                 /* the session takes the model's weights and frees
                                          each once kernels have packed it (peak: about the
                                          larger of raw and packed weights, not their sum);
                                          the model can then create no further session */
  int layout;                          /* -1 auto: channels-last through convolutional trunks;
                                          0 plain NCHW everywhere (plain-C kernels);
                                          1 channels-last only inside convolution-like ops
                                          (a transpose pair around each; for comparison) */
} sf_session_opts;

sf_session_opts sf_session_opts_default(void);
/* Compile m for the options. The session borrows m's weights: free the session first. */
int sf_session_new(sf_session **out, sf_model *m, const sf_session_opts *o, sf_err *err);
void sf_session_free(sf_session *s);

int sf_session_n_inputs(const sf_session *s);
int sf_session_n_outputs(const sf_session *s);
/* Inputs: fill ->data (dims are fixed at session creation). */
sf_tensor *sf_session_input(sf_session *s, int i);
/* Outputs in ONNX (logical) layout; data valid until the next run. */
const sf_tensor *sf_session_output(sf_session *s, int i);
int sf_session_input_index(const sf_session *s, const char *name);
int sf_session_run(sf_session *s, sf_err *err);

/* Statistics of a compiled session. */
typedef struct sf_session_stats {
  int64_t arena_bytes;   /* planned activation arena */
  int64_t weights_bytes; /* constant tensors used by the compiled graph */
  int64_t kernel_bytes;  /* held by the prepared kernels: packed weights, indirection buffers,
                            scratch (measured from the allocator; raw packed bytes where it
                            cannot tell) */
  int64_t const_bytes;   /* constants still held after creation (with release_weights: those
                            no kernel packed) */
  int64_t params;        /* elements of float weights in the source model */
  int64_t flops;         /* per inference (multiply-add = 2) */
  int n_nodes;           /* nodes executed per inference */
} sf_session_stats;
void sf_session_get_stats(const sf_session *s, sf_session_stats *st);

/* Per-node profile: when enabled, every run adds each node's wall time to its entry. */
typedef struct sf_node_profile {
  const char *name, *op_type;
  double seconds; /* accumulated over runs */
  int64_t flops;  /* per run */
} sf_node_profile;
void sf_session_set_profiling(sf_session *s, int on);
/* Entries in execution order; valid for the session's lifetime. */
int sf_session_profile(const sf_session *s, const sf_node_profile **entries);

#ifdef __cplusplus
}
#endif
#endif
