/* Element-wise operators: the activations Relu, LeakyRelu, Clip, Sigmoid, HardSigmoid, HardSwish,
 * Tanh, Exp, Sqrt, Erf and the numpy-broadcasting binary operators Add, Sub, Mul, Div, Pow, PRelu.
 *
 * Layout: every op here is SF_OPF_AGNOSTIC | SF_OPF_BCAST and works on the physical dims it is
 * given (the compiler makes the layouts of the inputs consistent).
 *
 * Paths: float32 uses XNNPACK operators created and set up once in prepare() where XNNPACK has
 * the op (Relu, Clip with constant bounds, LeakyRelu, PRelu with a per-channel constant slope
 * over the last dim, Sigmoid, HardSwish, Sqrt, Add/Sub/Mul/Div up to XNN_MAX_TENSOR_DIMS
 * collapsed dims); everything else, and any case XNNPACK rejects, runs plain-C loops split over
 * the thread pool in chunks. The C broadcasting engine collapses the output shape to the fewest
 * dims (merging dims that are contiguous in both inputs or broadcast in both), so the inner loop
 * is always vector-vector, scalar-vector or vector-scalar. Tanh, Exp, Erf (and the Sigmoid
 * fallback) use the vectorisable approximations of ops/vmath.h.
 *
 * dtypes: float32 everywhere; Add/Sub/Mul/Div also float64, int8, uint8, int32, int64; Relu
 * int8/int32/int64; Clip int8/uint8/int32/int64; Pow float32/int32/int64 bases with any
 * numeric exponent.
 *
 * Fused activation: Add/Sub/Mul/Div/Pow/PRelu on float32 clamp their result to
 * [node->act_min, node->act_max] when node->fused_act == SF_ACT_CLAMP (ignored otherwise).
 *
 * Opsets < 7: Add/Sub/Mul/Div with broadcast=1 (and axis) and PRelu with a per-channel 1-D
 * slope are mapped onto numpy broadcasting by appending 1s to the second input's dims.
 *
 * Integers: Add/Sub/Mul wrap around (two's complement) like numpy; Div truncates toward zero like
 * C, x / 0 gives 0 and INT_MIN / -1 wraps to INT_MIN. Pow with an integer base and a negative
 * integer exponent gives the truncated value (0 unless the base is 1 or -1).
 *
 * In-place: every kernel reads element i of its inputs before writing element i of the output,
 * so the output may share a same-shaped input's buffer.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#pragma GCC optimize("O3", "no-trapping-math") /* vectorise the plain-C loops */
#endif

#include <float.h>
#include <math.h>
#include <string.h>

#include <xnnpack.h>

#include "runtime/op.h"
#include "runtime/ops/vkern.h"
#include "runtime/ops/vmath.h"

/* ---- parallel ranges -------------------------------------------------------------------- */

typedef void (*range_fn)(void *ctx, int64_t start, int64_t end);

typedef struct {
  range_fn fn;
  void *ctx;
  int64_t n, chunk;
} range_job;

static void range_task(void *p, size_t i) {
  const range_job *j = p;
  int64_t s = (int64_t)i * j->chunk, e = s + j->chunk;
  if (e > j->n) e = j->n;
  j->fn(j->ctx, s, e);
}

/* Run fn over [0, n) in chunks of at least min_chunk elements (about 4 chunks per thread). */
static void run_ranges(pthreadpool_t pool, int64_t n, int64_t min_chunk, range_fn fn, void *ctx) {
  if (n <= 0) return;
  size_t threads = pool ? pthreadpool_get_threads_count(pool) : 1;
  if (threads <= 1 || n <= min_chunk) {
    fn(ctx, 0, n);
    return;
  }
  int64_t chunk = (n + (int64_t)threads * 4 - 1) / ((int64_t)threads * 4);
  if (chunk < min_chunk) chunk = min_chunk;
  chunk = (chunk + 63) & ~(int64_t)63;
  range_job j = {fn, ctx, n, chunk};
  sf__parallel_for(pool, (size_t)((n + chunk - 1) / chunk), range_task, &j);
}

static inline float clampf(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

static int dtype_in(int dt, const int *list) {
  for (; *list; list++)
    if (*list == dt) return 1;
  return 0;
}

static int bad_dtype(sf_kctx *k, int dt, const char *what) {
  return sf__op_err(k, SF_EUNSUPPORTED, "unsupported %s dtype %s", what, sf_dtype_name(dt));
}

/* ---- unary operators -------------------------------------------------------------------- */

enum { U_RELU, U_LEAKY, U_CLIP, U_SIGMOID, U_HSIGMOID, U_HSWISH, U_TANH, U_EXP, U_SQRT, U_ERF, U_SWISH };

typedef struct {
  const char *op;
  int kind;
  const int *dtypes; /* 0-terminated */
  int64_t cost;      /* flops per element */
} unary_info;

static const int DT_F32[] = {SF_F32, 0};
static const int DT_RELU[] = {SF_F32, SF_I8, SF_I32, SF_I64, 0};
static const int DT_CLIP[] = {SF_F32, SF_I8, SF_U8, SF_I32, SF_I64, 0};

static const unary_info U_INFO[] = {
    [U_RELU] = {"Relu", U_RELU, DT_RELU, 1},
    [U_LEAKY] = {"LeakyRelu", U_LEAKY, DT_F32, 2},
    [U_CLIP] = {"Clip", U_CLIP, DT_CLIP, 2},
    [U_SIGMOID] = {"Sigmoid", U_SIGMOID, DT_F32, 4},
    [U_HSIGMOID] = {"HardSigmoid", U_HSIGMOID, DT_F32, 4},
    [U_HSWISH] = {"HardSwish", U_HSWISH, DT_F32, 5},
    [U_TANH] = {"Tanh", U_TANH, DT_F32, 4},
    [U_EXP] = {"Exp", U_EXP, DT_F32, 4},
    [U_SQRT] = {"Sqrt", U_SQRT, DT_F32, 1},
    [U_ERF] = {"Erf", U_ERF, DT_F32, 4},
    [U_SWISH] = {"Swish", U_SWISH, DT_F32, 5},
};

typedef struct {
  int kind, dtype;
  xnn_operator_t xop; /* NULL: plain C */
} unary_state;

/* Parameters of one run of the C path. */
typedef struct {
  int kind, dtype;
  const void *x;
  void *y;
  float alpha, beta; /* LeakyRelu alpha; HardSigmoid alpha, beta; Clip float bounds */
  int64_t ilo, ihi;  /* Clip integer bounds */
} unary_job;

static int unary_infer(sf_kctx *k, int kind) {
  const sf_node *n = k->node;
  sf_gtensor *x = sf__in(k->g, n, 0), *y = sf__out(k->g, n, 0);
  if (!x || !y) return sf__op_err(k, SF_EINVAL, "missing input or output");
  if (!dtype_in(x->t.dtype, U_INFO[kind].dtypes)) return bad_dtype(k, x->t.dtype, "input");
  if (kind == U_CLIP) {
    for (int i = 1; i <= 2; i++) {
      const sf_gtensor *b = sf__in(k->g, n, i);
      if (!b) continue;
      if (b->t.dtype != x->t.dtype)
        return sf__op_err(k, SF_EINVAL, "bound dtype %s differs from input dtype %s",
                          sf_dtype_name(b->t.dtype), sf_dtype_name(x->t.dtype));
      if (b->shape_known && sf_tensor_numel(&b->t) != 1)
        return sf__op_err(k, SF_ESHAPE, "bound %d is not a scalar", i);
    }
  }
  sf__tensor_set_shape(y, x->t.dtype, x->t.rank, x->t.dims);
  return 0;
}

/* Integer range of a dtype. */
static void int_range(int dt, int64_t *lo, int64_t *hi) {
  switch (dt) {
    case SF_I8: *lo = INT8_MIN, *hi = INT8_MAX; break;
    case SF_U8: *lo = 0, *hi = UINT8_MAX; break;
    case SF_I32: *lo = INT32_MIN, *hi = INT32_MAX; break;
    default: *lo = INT64_MIN, *hi = INT64_MAX; break;
  }
}

/* Clip bounds: attributes before opset 11, optional scalar inputs from 11. Sets *is_const when
 * the bounds cannot change between runs. */
static void clip_bounds(sf_kctx *k, unary_job *j, int *is_const) {
  const sf_node *n = k->node;
  j->alpha = -INFINITY, j->beta = INFINITY;
  int_range(j->dtype, &j->ilo, &j->ihi);
  if (is_const) *is_const = 1;
  if (k->g->opset < 11) {
    j->alpha = sf__attr_float(n, "min", -FLT_MAX);
    j->beta = sf__attr_float(n, "max", FLT_MAX);
  }
  for (int i = 1; i <= 2; i++) {
    const sf_gtensor *b = sf__in(k->g, n, i);
    if (!b || !b->t.data) continue;
    if (b->kind != SF_TK_CONST && is_const) *is_const = 0;
    if (j->dtype == SF_F32) {
      float v = ((const float *)b->t.data)[0];
      if (i == 1) j->alpha = v; else j->beta = v;
    } else {
      int64_t v = sf__int_at(&b->t, 0);
      if (i == 1) j->ilo = v; else j->ihi = v;
    }
  }
}

/* Clip of integers: max(x, lo) then min(., hi), so that lo > hi gives hi as ONNX specifies. */
#define CLIP_INT(T)                                                                            \
  do {                                                                                         \
    const T *x = (const T *)j->x;                                                              \
    T *y = (T *)j->y;                                                                          \
    T lo = (T)j->ilo, hi = (T)j->ihi;                                                          \
    for (int64_t i = s; i < e; i++) {                                                          \
      T v = x[i];                                                                              \
      v = v < lo ? lo : v;                                                                     \
      y[i] = v > hi ? hi : v;                                                                  \
    }                                                                                          \
  } while (0)

#define RELU_INT(T)                                                                            \
  do {                                                                                         \
    const T *x = (const T *)j->x;                                                              \
    T *y = (T *)j->y;                                                                          \
    for (int64_t i = s; i < e; i++) y[i] = x[i] < 0 ? 0 : x[i];                                \
  } while (0)

static void unary_int_range(void *ctx, int64_t s, int64_t e) {
  const unary_job *j = ctx;
  if (j->kind == U_RELU) {
    switch (j->dtype) {
      case SF_I8: RELU_INT(int8_t); break;
      case SF_I32: RELU_INT(int32_t); break;
      case SF_I64: RELU_INT(int64_t); break;
    }
    return;
  }
  switch (j->dtype) {
    case SF_I8: CLIP_INT(int8_t); break;
    case SF_U8: CLIP_INT(uint8_t); break;
    case SF_I32: CLIP_INT(int32_t); break;
    case SF_I64: CLIP_INT(int64_t); break;
  }
}

static void unary_f32_range(void *ctx, int64_t s, int64_t e) {
  const unary_job *j = ctx;
  const float *x = j->x;
  float *y = j->y;
  const float a = j->alpha, b = j->beta;
  switch (j->kind) {
    case U_RELU:
      for (int64_t i = s; i < e; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
      break;
    case U_LEAKY:
      for (int64_t i = s; i < e; i++) y[i] = x[i] < 0.0f ? x[i] * a : x[i];
      break;
    case U_CLIP:
      for (int64_t i = s; i < e; i++) y[i] = clampf(x[i], a, b);
      break;
    case U_SIGMOID: sf__vkern()->sigmoid(x + s, y + s, e - s); break;
    case U_HSIGMOID: sf__vkern()->hsigmoid(x + s, y + s, e - s, a, b); break;
    case U_HSWISH:
      for (int64_t i = s; i < e; i++) {
        float v = x[i];
        y[i] = v * clampf(v * (1.0f / 6.0f) + 0.5f, 0.0f, 1.0f);
      }
      break;
    case U_TANH: sf__vkern()->tanh(x + s, y + s, e - s); break;
    case U_EXP: sf__vkern()->exp(x + s, y + s, e - s); break;
    case U_SQRT:
      for (int64_t i = s; i < e; i++) y[i] = sqrtf(x[i]);
      break;
    case U_ERF: sf__vkern()->erf(x + s, y + s, e - s); break;
    case U_SWISH: sf__vkern()->swish(x + s, y + s, e - s); break; /* fused Sigmoid + Mul */
  }
}

static void unary_job_init(sf_kctx *k, int kind, unary_job *j, int *bounds_const) {
  const sf_node *n = k->node;
  const sf_gtensor *x = sf__in(k->g, n, 0), *y = sf__out(k->g, n, 0);
  memset(j, 0, sizeof *j);
  j->kind = kind;
  j->dtype = x->t.dtype;
  j->x = x->t.data;
  j->y = y->t.data;
  if (bounds_const) *bounds_const = 1;
  switch (kind) {
    case U_LEAKY: j->alpha = sf__attr_float(n, "alpha", 0.01f); break;
    case U_HSIGMOID:
      j->alpha = sf__attr_float(n, "alpha", 0.2f);
      j->beta = sf__attr_float(n, "beta", 0.5f);
      break;
    case U_CLIP: clip_bounds(k, j, bounds_const); break;
  }
}

static void unary_release(sf_node *n) {
  unary_state *st = n->state;
  if (!st) return;
  if (st->xop) xnn_delete_operator(st->xop);
  free(st);
  n->state = NULL;
}

static int unary_prepare(sf_kctx *k, int kind) {
  sf_node *n = k->node;
  const sf_gtensor *x = sf__in(k->g, n, 0);
  unary_state *st = sf__calloc(1, sizeof *st);
  if (!st) return sf__op_err(k, SF_ENOMEM, "out of memory");
  st->kind = kind;
  st->dtype = x->t.dtype;
  n->state = st;
  int64_t numel = sf_tensor_numel(&x->t);
  if (st->dtype != SF_F32 || numel <= 0) return 0;

  unary_job j;
  int bconst;
  unary_job_init(k, kind, &j, &bconst);
  size_t c = (size_t)numel;
  xnn_operator_t op = NULL;
  enum xnn_status s = xnn_status_unsupported_parameter;
  switch (kind) {
    case U_RELU: s = xnn_create_clamp_nc_f32(c, c, c, 0.0f, INFINITY, 0, &op); break;
    case U_CLIP:
      if (bconst && j.alpha < j.beta) s = xnn_create_clamp_nc_f32(c, c, c, j.alpha, j.beta, 0, &op);
      break;
    case U_LEAKY: s = xnn_create_leaky_relu_nc_f32(c, c, c, j.alpha, 0, &op); break;
    case U_SIGMOID: s = xnn_create_sigmoid_nc_f32(c, c, c, 0, &op); break;
    case U_HSWISH: s = xnn_create_hardswish_nc_f32(c, c, c, 0, &op); break;
    case U_SQRT: s = xnn_create_square_root_nc_f32(c, c, c, 0, &op); break;
  }
  if (s != xnn_status_success) return 0; /* C path */
  switch (kind) {
    case U_RELU:
    case U_CLIP: s = xnn_setup_clamp_nc_f32(op, 1, j.x, j.y, k->pool); break;
    case U_LEAKY: s = xnn_setup_leaky_relu_nc_f32(op, 1, j.x, j.y, k->pool); break;
    case U_SIGMOID: s = xnn_setup_sigmoid_nc_f32(op, 1, j.x, j.y, k->pool); break;
    case U_HSWISH: s = xnn_setup_hardswish_nc_f32(op, 1, j.x, j.y, k->pool); break;
    case U_SQRT: s = xnn_setup_square_root_nc_f32(op, 1, j.x, j.y, k->pool); break;
  }
  if (s != xnn_status_success) {
    xnn_delete_operator(op);
    return 0;
  }
  st->xop = op;
  return 0;
}

static int unary_run(sf_kctx *k, int kind) {
  const unary_state *st = k->node->state;
  if (st && st->xop) {
    if (xnn_run_operator(st->xop, k->pool) != xnn_status_success)
      return sf__op_err(k, SF_EINTERNAL, "XNNPACK operator failed");
    return 0;
  }
  const sf_gtensor *x = sf__in(k->g, k->node, 0);
  unary_job j;
  unary_job_init(k, kind, &j, NULL);
  int64_t numel = sf_tensor_numel(&x->t);
  if (j.dtype == SF_F32) {
    int cheap = kind == U_RELU || kind == U_CLIP || kind == U_LEAKY || kind == U_HSIGMOID ||
                kind == U_HSWISH || kind == U_SQRT;
    run_ranges(k->pool, numel, cheap ? 16384 : 2048, unary_f32_range, &j);
  } else {
    run_ranges(k->pool, numel, 16384, unary_int_range, &j);
  }
  return 0;
}

static int64_t unary_flops(sf_kctx *k, int kind) {
  const sf_gtensor *x = sf__in(k->g, k->node, 0);
  int64_t n = x ? sf_tensor_numel(&x->t) : 0;
  return n > 0 ? n * U_INFO[kind].cost : 0;
}

#define UNARY_DEF(Name, KIND)                                                                  \
  static int Name##_infer(sf_kctx *k) { return unary_infer(k, KIND); }                         \
  static int Name##_prepare(sf_kctx *k) { return unary_prepare(k, KIND); }                     \
  static int Name##_run(sf_kctx *k) { return unary_run(k, KIND); }                             \
  static int64_t Name##_flops(sf_kctx *k) { return unary_flops(k, KIND); }                     \
  const sf_op_def sf__op_##Name = {                                                            \
      .op_type = #Name,                                                                        \
      .flags = SF_OPF_AGNOSTIC | SF_OPF_BCAST | SF_OPF_INPLACE,                                \
      .infer = Name##_infer,                                                                   \
      .prepare = Name##_prepare,                                                               \
      .run = Name##_run,                                                                       \
      .release = unary_release,                                                                \
      .flops = Name##_flops,                                                                   \
  };

UNARY_DEF(Relu, U_RELU)
UNARY_DEF(LeakyRelu, U_LEAKY)
UNARY_DEF(Clip, U_CLIP)
UNARY_DEF(Sigmoid, U_SIGMOID)
UNARY_DEF(HardSigmoid, U_HSIGMOID)
UNARY_DEF(HardSwish, U_HSWISH)
UNARY_DEF(Tanh, U_TANH)
UNARY_DEF(Exp, U_EXP)
UNARY_DEF(Sqrt, U_SQRT)
UNARY_DEF(Erf, U_ERF)
/* seifer.Swish(x) = x * Sigmoid(x): one pass instead of two (compiler fusion, not an ONNX op). */
UNARY_DEF(Swish, U_SWISH)

/* ---- broadcasting ------------------------------------------------------------------------ */

/* The output shape collapsed to the fewest dims, with each input's element strides (0 where
 * the input is broadcast). The innermost stride of each input is 0 or 1. */
typedef struct {
  int rank;
  int64_t dims[SF_MAX_RANK], sa[SF_MAX_RANK], sb[SF_MAX_RANK];
  int64_t n;
} bplan;

static void input_strides(const sf_tensor *t, int rank, const int64_t *od, int64_t *s) {
  int64_t acc = 1;
  for (int i = rank - 1; i >= 0; i--) {
    int it = i - (rank - t->rank);
    int64_t d = it >= 0 ? t->dims[it] : 1;
    s[i] = (d == 1 || od[i] == 1) ? 0 : acc;
    acc *= d;
  }
}

static void bplan_init(bplan *p, const sf_tensor *a, const sf_tensor *b, int rank,
                       const int64_t *od) {
  int64_t fa[SF_MAX_RANK], fb[SF_MAX_RANK];
  input_strides(a, rank, od, fa);
  input_strides(b, rank, od, fb);
  int r = 0;
  p->n = 1;
  for (int i = 0; i < rank; i++) {
    p->n *= od[i];
    if (od[i] == 1) continue;
    if (r > 0 && p->sa[r - 1] == fa[i] * od[i] && p->sb[r - 1] == fb[i] * od[i]) {
      p->dims[r - 1] *= od[i];
      p->sa[r - 1] = fa[i];
      p->sb[r - 1] = fb[i];
    } else {
      p->dims[r] = od[i];
      p->sa[r] = fa[i];
      p->sb[r] = fb[i];
      r++;
    }
  }
  if (r == 0) {
    p->dims[0] = 1;
    p->sa[0] = p->sb[0] = 0;
    r = 1;
  }
  p->rank = r;
}

enum { M_VV, M_SV, M_VS }; /* inner loop: both vectors, a scalar, b scalar */

typedef struct bin_job bin_job;
typedef void (*bin_kernel)(const bin_job *j, void *y, const void *a, const void *b, int64_t n,
                           int mode);

struct bin_job {
  const bplan *p;
  bin_kernel fn;
  const char *a, *b;
  char *y;
  size_t ea, eb, ey; /* element sizes */
  int dta, dtb;
  float lo, hi;      /* fused clamp (float results) */
};

static void bin_range(void *ctx, int64_t s, int64_t e) {
  const bin_job *j = ctx;
  const bplan *p = j->p;
  int r = p->rank;
  int64_t inner = p->dims[r - 1], si = p->sa[r - 1], sbi = p->sb[r - 1];
  int mode = (si && !sbi) ? M_VS : (!si && sbi) ? M_SV : (!si && !sbi) ? M_SV : M_VV;
  int64_t idx[SF_MAX_RANK];
  int64_t q = s / inner, off = s % inner;
  int64_t oa = off * si, ob = off * sbi;
  for (int i = r - 2; i >= 0; i--) {
    idx[i] = q % p->dims[i];
    q /= p->dims[i];
    oa += idx[i] * p->sa[i];
    ob += idx[i] * p->sb[i];
  }
  int64_t pos = s;
  while (pos < e) {
    int64_t len = inner - off;
    if (len > e - pos) len = e - pos;
    j->fn(j, j->y + pos * (int64_t)j->ey, j->a + oa * (int64_t)j->ea, j->b + ob * (int64_t)j->eb,
          len, mode);
    pos += len;
    off += len;
    oa += len * si;
    ob += len * sbi;
    if (off == inner && pos < e) {
      off = 0;
      oa -= inner * si;
      ob -= inner * sbi;
      for (int i = r - 2; i >= 0; i--) {
        idx[i]++;
        oa += p->sa[i];
        ob += p->sb[i];
        if (idx[i] < p->dims[i]) break;
        oa -= p->dims[i] * p->sa[i];
        ob -= p->dims[i] * p->sb[i];
        idx[i] = 0;
      }
    }
  }
}

/* The three inner loops of one expression EXPR over x0 (from a) and x1 (from b). */
#define BIN_LOOPS(T, EXPR)                                                                     \
  do {                                                                                         \
    T *y = yv;                                                                                 \
    const T *a = av, *b = bv;                                                                  \
    if (mode == M_VV) {                                                                        \
      for (int64_t i = 0; i < n; i++) {                                                        \
        T x0 = a[i], x1 = b[i];                                                                \
        y[i] = (EXPR);                                                                         \
      }                                                                                        \
    } else if (mode == M_SV) {                                                                 \
      const T x0 = a[0];                                                                       \
      for (int64_t i = 0; i < n; i++) {                                                        \
        T x1 = b[i];                                                                           \
        y[i] = (EXPR);                                                                         \
      }                                                                                        \
    } else {                                                                                   \
      const T x1 = b[0];                                                                       \
      for (int64_t i = 0; i < n; i++) {                                                        \
        T x0 = a[i];                                                                           \
        y[i] = (EXPR);                                                                         \
      }                                                                                        \
    }                                                                                          \
  } while (0)

#define BIN_KERNEL(name, T, EXPR)                                                              \
  static void name(const bin_job *j, void *yv, const void *av, const void *bv, int64_t n,      \
                   int mode) {                                                                 \
    (void)j;                                                                                   \
    BIN_LOOPS(T, EXPR);                                                                        \
  }

/* float32: result clamped to the fused activation range (infinite when none). */
BIN_KERNEL(add_f32, float, clampf(x0 + x1, j->lo, j->hi))
BIN_KERNEL(sub_f32, float, clampf(x0 - x1, j->lo, j->hi))
BIN_KERNEL(mul_f32, float, clampf(x0 * x1, j->lo, j->hi))
BIN_KERNEL(div_f32, float, clampf(x0 / x1, j->lo, j->hi))
BIN_KERNEL(pow_f32, float, clampf(powf(x0, x1), j->lo, j->hi))
BIN_KERNEL(prelu_f32, float, clampf(x0 < 0.0f ? x0 * x1 : x0, j->lo, j->hi))

BIN_KERNEL(add_f64, double, x0 + x1)
BIN_KERNEL(sub_f64, double, x0 - x1)
BIN_KERNEL(mul_f64, double, x0 * x1)
BIN_KERNEL(div_f64, double, x0 / x1)

/* Integers: wrap-around arithmetic through the unsigned type of the same width. */
#define INT_KERNELS(sfx, T, U)                                                                 \
  BIN_KERNEL(add_##sfx, T, (T)((U)x0 + (U)x1))                                                 \
  BIN_KERNEL(sub_##sfx, T, (T)((U)x0 - (U)x1))                                                 \
  BIN_KERNEL(mul_##sfx, T, (T)((U)x0 * (U)x1))                                                 \
  BIN_KERNEL(div_##sfx, T, (T)(x1 == 0 ? 0 : x1 == (T)-1 ? (T)(0u - (U)x0) : x0 / x1))

INT_KERNELS(i8, int8_t, uint8_t)
INT_KERNELS(i32, int32_t, uint32_t)
INT_KERNELS(i64, int64_t, uint64_t)
BIN_KERNEL(add_u8, uint8_t, (uint8_t)(x0 + x1))
BIN_KERNEL(sub_u8, uint8_t, (uint8_t)(x0 - x1))
BIN_KERNEL(mul_u8, uint8_t, (uint8_t)(x0 * x1))
BIN_KERNEL(div_u8, uint8_t, (uint8_t)(x1 == 0 ? 0 : x0 / x1))

/* Pow with a scalar float exponent: common exponents avoid powf. */
static void pow_f32_scalar(const bin_job *j, void *yv, const void *av, const void *bv, int64_t n,
                           int mode) {
  if (mode != M_VS) {
    pow_f32(j, yv, av, bv, n, mode);
    return;
  }
  const float *a = av;
  float *y = yv;
  const float e = *(const float *)bv, lo = j->lo, hi = j->hi;
  if (e == 2.0f) {
    for (int64_t i = 0; i < n; i++) y[i] = clampf(a[i] * a[i], lo, hi);
  } else if (e == 1.0f) {
    for (int64_t i = 0; i < n; i++) y[i] = clampf(a[i], lo, hi);
  } else if (e == 0.5f) {
    for (int64_t i = 0; i < n; i++) {
      float v = a[i];
      /* pow(-inf, 0.5) = +inf and pow(-0, 0.5) = +0 where sqrt gives NaN and -0 */
      float r = v == -INFINITY ? INFINITY : v == 0.0f ? 0.0f : sqrtf(v);
      y[i] = clampf(r, lo, hi);
    }
  } else {
    pow_f32(j, yv, av, bv, n, mode);
  }
}

static double load_f(const void *p, int dt, int64_t i) {
  switch (dt) {
    case SF_F32: return ((const float *)p)[i];
    case SF_F64: return ((const double *)p)[i];
    case SF_I8: return ((const int8_t *)p)[i];
    case SF_U8: return ((const uint8_t *)p)[i];
    case SF_I16: return ((const int16_t *)p)[i];
    case SF_U16: return ((const uint16_t *)p)[i];
    case SF_I32: return ((const int32_t *)p)[i];
    case SF_I64: return (double)((const int64_t *)p)[i];
    case SF_U32: return ((const uint32_t *)p)[i];
    case SF_U64: return (double)((const uint64_t *)p)[i];
  }
  return NAN;
}

static int dt_is_float(int dt) { return dt == SF_F32 || dt == SF_F64; }

static int64_t load_i(const void *p, int dt, int64_t i) {
  switch (dt) {
    case SF_I8: return ((const int8_t *)p)[i];
    case SF_U8: return ((const uint8_t *)p)[i];
    case SF_I16: return ((const int16_t *)p)[i];
    case SF_U16: return ((const uint16_t *)p)[i];
    case SF_I32: return ((const int32_t *)p)[i];
    case SF_I64: return ((const int64_t *)p)[i];
    case SF_U32: return ((const uint32_t *)p)[i];
    case SF_U64: return (int64_t)((const uint64_t *)p)[i];
  }
  return 0;
}

/* Integer power by squaring, wrapping around; negative exponents truncate. */
static int64_t ipow(int64_t b, int64_t e) {
  if (e < 0) return b == 1 ? 1 : b == -1 ? ((e & 1) ? -1 : 1) : 0;
  uint64_t r = 1, x = (uint64_t)b;
  while (e) {
    if (e & 1) r *= x;
    x *= x;
    e >>= 1;
  }
  return (int64_t)r;
}

/* Saturating conversion of a double to an integer type's range (NaN gives 0). */
static int64_t sat_i64(double v, int dt) {
  int64_t lo, hi;
  int_range(dt, &lo, &hi);
  if (v != v) return 0;
  if (v <= (double)lo) return lo;
  if (v >= (double)hi) return hi;
  return (int64_t)v;
}

/* Pow of mixed dtypes (slow path: per-element conversions). */
static void pow_generic(const bin_job *j, void *yv, const void *av, const void *bv, int64_t n,
                        int mode) {
  for (int64_t i = 0; i < n; i++) {
    int64_t ia = mode == M_SV ? 0 : i, ib = mode == M_VS ? 0 : i;
    if (j->dta == SF_F32) {
      float r = (float)pow(((const float *)av)[ia], load_f(bv, j->dtb, ib));
      ((float *)yv)[i] = clampf(r, j->lo, j->hi);
      continue;
    }
    int64_t r;
    if (dt_is_float(j->dtb))
      r = sat_i64(pow((double)load_i(av, j->dta, ia), load_f(bv, j->dtb, ib)), j->dta);
    else
      r = ipow(load_i(av, j->dta, ia), load_i(bv, j->dtb, ib));
    if (j->dta == SF_I32)
      ((int32_t *)yv)[i] = (int32_t)(uint32_t)(uint64_t)r;
    else
      ((int64_t *)yv)[i] = r;
  }
}

enum { B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_PRELU };

static const int DT_ARITH[] = {SF_F32, SF_F64, SF_I8, SF_U8, SF_I32, SF_I64, 0};
static const int DT_POW_BASE[] = {SF_F32, SF_I32, SF_I64, 0};
static const int DT_POW_EXP[] = {SF_F32, SF_F64, SF_I8,  SF_U8,  SF_I16,
                                 SF_U16, SF_I32, SF_I64, SF_U32, SF_U64, 0};

static bin_kernel pick_kernel(int kind, int dta, int dtb) {
  if (kind == B_POW) {
    if (dta == SF_F32 && dtb == SF_F32) return pow_f32_scalar;
    return pow_generic;
  }
  if (kind == B_PRELU) return prelu_f32;
#define PICK(sfx)                                                                              \
  switch (kind) {                                                                              \
    case B_ADD: return add_##sfx;                                                              \
    case B_SUB: return sub_##sfx;                                                              \
    case B_MUL: return mul_##sfx;                                                              \
    default: return div_##sfx;                                                                 \
  }
  switch (dta) {
    case SF_F32: PICK(f32)
    case SF_F64: PICK(f64)
    case SF_I8: PICK(i8)
    case SF_U8: PICK(u8)
    case SF_I32: PICK(i32)
    default: PICK(i64)
  }
#undef PICK
}

typedef struct {
  bplan p;
  xnn_operator_t xop; /* NULL: plain C */
} bin_state;

/* Opsets < 7 did not broadcast numpy-style: Add/Sub/Mul/Div with broadcast=1 align B with A
 * at `axis` (default: trailing), and PRelu applies a 1-D slope of length C along dim 1. The
 * returned view of B has trailing 1s appended so that numpy broadcasting gives that result. */
static sf_tensor legacy_view(sf_kctx *k, int kind, const sf_tensor *a, const sf_tensor *b) {
  sf_tensor v = *b;
  if (k->g->opset >= 7 || b->rank >= a->rank) return v;
  int pad = 0;
  if (kind == B_PRELU) {
    int r, ok;
    int64_t dims[SF_MAX_RANK];
    ok = sf__broadcast_shape(a, b, &r, dims) == 0 && r == a->rank;
    for (int i = 0; ok && i < r; i++) ok = dims[i] == a->dims[i];
    if (!ok && b->rank == 1 && a->rank >= 2 && b->dims[0] == a->dims[1]) pad = a->rank - 2;
  } else if (sf__attr_int(k->node, "broadcast", 0)) {
    int64_t axis = sf__attr_int(k->node, "axis", a->rank - b->rank);
    if (axis < 0) axis += a->rank;
    if (axis >= 0 && axis + b->rank <= a->rank) pad = (int)(a->rank - axis - b->rank);
  }
  for (int i = 0; i < pad; i++) v.dims[v.rank++] = 1;
  return v;
}

static int bin_infer(sf_kctx *k, int kind) {
  const sf_node *n = k->node;
  sf_gtensor *a = sf__in(k->g, n, 0), *bg = sf__in(k->g, n, 1), *y = sf__out(k->g, n, 0);
  if (!a || !bg || !y) return sf__op_err(k, SF_EINVAL, "missing input or output");
  const sf_tensor bv = legacy_view(k, kind, &a->t, &bg->t), *b = &bv;
  int dta = a->t.dtype, dtb = b->dtype;
  if (kind == B_POW) {
    if (!dtype_in(dta, DT_POW_BASE)) return bad_dtype(k, dta, "base");
    if (!dtype_in(dtb, DT_POW_EXP)) return bad_dtype(k, dtb, "exponent");
  } else {
    if (!dtype_in(dta, kind == B_PRELU ? DT_F32 : DT_ARITH)) return bad_dtype(k, dta, "input");
    if (dtb != dta)
      return sf__op_err(k, SF_EINVAL, "input dtypes differ (%s, %s)", sf_dtype_name(dta),
                        sf_dtype_name(dtb));
  }
  int rank;
  int64_t dims[SF_MAX_RANK];
  char s1[128], s2[128];
  if (sf__broadcast_shape(&a->t, b, &rank, dims) < 0)
    return sf__op_err(k, SF_ESHAPE, "cannot broadcast %s and %s",
                      sf__shape_str(&a->t, s1, sizeof s1), sf__shape_str(b, s2, sizeof s2));
  if (kind == B_PRELU) {
    int same = rank == a->t.rank;
    for (int i = 0; same && i < rank; i++) same = dims[i] == a->t.dims[i];
    if (!same)
      return sf__op_err(k, SF_ESHAPE, "slope %s does not broadcast to input %s",
                        sf__shape_str(b, s2, sizeof s2), sf__shape_str(&a->t, s1, sizeof s1));
  }
  sf__tensor_set_shape(y, dta, rank, dims);
  return 0;
}

static void bin_release(sf_node *n) {
  bin_state *st = n->state;
  if (!st) return;
  if (st->xop) xnn_delete_operator(st->xop);
  free(st);
  n->state = NULL;
}

static void fused_range(const sf_node *n, float *lo, float *hi) {
  *lo = -INFINITY, *hi = INFINITY;
  if (n->fused_act == SF_ACT_CLAMP) *lo = n->act_min, *hi = n->act_max;
}

/* XNNPACK PRelu: a constant slope that varies only along X's last dim (length C). */
static xnn_operator_t prelu_xnn(sf_kctx *k, const sf_gtensor *x, const sf_gtensor *s,
                                const sf_tensor *sv, float *y) {
  if (s->kind != SF_TK_CONST || !s->t.data || x->t.rank < 1) return NULL;
  int64_t c = x->t.dims[x->t.rank - 1], numel = sf_tensor_numel(&x->t);
  if (c <= 0 || numel <= 0) return NULL;
  int64_t sn = sf_tensor_numel(&s->t);
  xnn_operator_t op = NULL;
  enum xnn_status st;
  if (sn == 1) {
    size_t n = (size_t)numel;
    st = xnn_create_leaky_relu_nc_f32(n, n, n, ((const float *)s->t.data)[0], 0, &op);
    if (st == xnn_status_success) st = xnn_setup_leaky_relu_nc_f32(op, 1, x->t.data, y, k->pool);
  } else {
    if (sv->rank < 1 || sv->dims[sv->rank - 1] != c || sn != c) return NULL;
    st = xnn_create_prelu_nc_f32((size_t)c, (size_t)c, (size_t)c, s->t.data, 0, &op);
    if (st == xnn_status_success)
      st = xnn_setup_prelu_nc_f32(op, (size_t)(numel / c), x->t.data, y, k->pool);
  }
  if (st != xnn_status_success) {
    if (op) xnn_delete_operator(op);
    return NULL;
  }
  return op;
}

static xnn_operator_t arith_xnn(sf_kctx *k, int kind, const bplan *p, const void *a,
                                const void *b, void *y) {
  if (p->rank > XNN_MAX_TENSOR_DIMS || p->n <= 0) return NULL;
  size_t sa[XNN_MAX_TENSOR_DIMS], sb[XNN_MAX_TENSOR_DIMS];
  for (int i = 0; i < p->rank; i++) {
    sa[i] = p->sa[i] ? (size_t)p->dims[i] : 1;
    sb[i] = p->sb[i] ? (size_t)p->dims[i] : 1;
  }
  float lo, hi;
  fused_range(k->node, &lo, &hi);
  xnn_operator_t op = NULL;
  enum xnn_status st = xnn_status_invalid_parameter;
  size_t r = (size_t)p->rank;
  switch (kind) {
    case B_ADD:
      st = xnn_create_add_nd_f32(lo, hi, 0, &op);
      if (st == xnn_status_success)
        st = xnn_setup_add_nd_f32(op, r, sa, r, sb, a, b, y, k->pool);
      break;
    case B_SUB:
      st = xnn_create_subtract_nd_f32(lo, hi, 0, &op);
      if (st == xnn_status_success)
        st = xnn_setup_subtract_nd_f32(op, r, sa, r, sb, a, b, y, k->pool);
      break;
    case B_MUL:
      st = xnn_create_multiply_nd_f32(lo, hi, 0, &op);
      if (st == xnn_status_success)
        st = xnn_setup_multiply_nd_f32(op, r, sa, r, sb, a, b, y, k->pool);
      break;
    case B_DIV:
      st = xnn_create_divide_nd_f32(lo, hi, 0, &op);
      if (st == xnn_status_success)
        st = xnn_setup_divide_nd_f32(op, r, sa, r, sb, a, b, y, k->pool);
      break;
  }
  if (st != xnn_status_success) {
    if (op) xnn_delete_operator(op);
    return NULL;
  }
  return op;
}

static int bin_prepare(sf_kctx *k, int kind) {
  sf_node *n = k->node;
  const sf_gtensor *a = sf__in(k->g, n, 0), *b = sf__in(k->g, n, 1), *y = sf__out(k->g, n, 0);
  const sf_tensor bv = legacy_view(k, kind, &a->t, &b->t);
  int rank;
  int64_t dims[SF_MAX_RANK];
  char s1[128], s2[128];
  if (sf__broadcast_shape(&a->t, &bv, &rank, dims) < 0)
    return sf__op_err(k, SF_ESHAPE, "cannot broadcast physical shapes %s and %s",
                      sf__shape_str(&a->t, s1, sizeof s1), sf__shape_str(&bv, s2, sizeof s2));
  bin_state *st = sf__calloc(1, sizeof *st);
  if (!st) return sf__op_err(k, SF_ENOMEM, "out of memory");
  n->state = st;
  bplan_init(&st->p, &a->t, &bv, rank, dims);
  if (st->p.n != sf_tensor_numel(&y->t))
    return sf__op_err(k, SF_ESHAPE, "output has %lld elements, broadcast gives %lld",
                      (long long)sf_tensor_numel(&y->t), (long long)st->p.n);
  if (a->t.dtype != SF_F32 || b->t.dtype != SF_F32) return 0;
  if (kind == B_PRELU) {
    if (n->fused_act == SF_ACT_NONE) st->xop = prelu_xnn(k, a, b, &bv, y->t.data);
  } else if (kind != B_POW) {
    st->xop = arith_xnn(k, kind, &st->p, a->t.data, b->t.data, y->t.data);
  }
  return 0;
}

static int bin_run(sf_kctx *k, int kind) {
  const sf_node *n = k->node;
  const bin_state *st = n->state;
  if (!st) return sf__op_err(k, SF_EINTERNAL, "not prepared");
  if (st->xop) {
    if (xnn_run_operator(st->xop, k->pool) != xnn_status_success)
      return sf__op_err(k, SF_EINTERNAL, "XNNPACK operator failed");
    return 0;
  }
  const sf_gtensor *a = sf__in(k->g, n, 0), *b = sf__in(k->g, n, 1), *y = sf__out(k->g, n, 0);
  bin_job j = {
      .p = &st->p,
      .fn = pick_kernel(kind, a->t.dtype, b->t.dtype),
      .a = a->t.data,
      .b = b->t.data,
      .y = y->t.data,
      .ea = sf_dtype_size(a->t.dtype),
      .eb = sf_dtype_size(b->t.dtype),
      .ey = sf_dtype_size(y->t.dtype),
      .dta = a->t.dtype,
      .dtb = b->t.dtype,
  };
  fused_range(n, &j.lo, &j.hi);
  run_ranges(k->pool, st->p.n, kind == B_POW ? 2048 : 16384, bin_range, &j);
  return 0;
}

static int64_t bin_flops(sf_kctx *k, int kind) {
  const sf_gtensor *y = sf__out(k->g, k->node, 0);
  int64_t n = y ? sf_tensor_numel(&y->t) : 0;
  return n > 0 ? n * (kind == B_POW ? 4 : 1) : 0;
}

#define BINARY_DEF(Name, KIND)                                                                 \
  static int Name##_infer(sf_kctx *k) { return bin_infer(k, KIND); }                           \
  static int Name##_prepare(sf_kctx *k) { return bin_prepare(k, KIND); }                       \
  static int Name##_run(sf_kctx *k) { return bin_run(k, KIND); }                               \
  static int64_t Name##_flops(sf_kctx *k) { return bin_flops(k, KIND); }                       \
  const sf_op_def sf__op_##Name = {                                                            \
      .op_type = #Name,                                                                        \
      .flags = SF_OPF_AGNOSTIC | SF_OPF_BCAST | SF_OPF_INPLACE,                                \
      .infer = Name##_infer,                                                                   \
      .prepare = Name##_prepare,                                                               \
      .run = Name##_run,                                                                       \
      .release = bin_release,                                                                  \
      .flops = Name##_flops,                                                                   \
  };

BINARY_DEF(Add, B_ADD)
BINARY_DEF(Sub, B_SUB)
BINARY_DEF(Mul, B_MUL)
BINARY_DEF(Div, B_DIV)
BINARY_DEF(Pow, B_POW)
BINARY_DEF(PRelu, B_PRELU)
