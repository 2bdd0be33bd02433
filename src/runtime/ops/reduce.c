/* ReduceMean (float32) and ReduceSum (float32, int32, int64), plain ONNX layout.
 *
 * Axes come from the second input when present (ReduceSum from opset 13, ReduceMean from 18;
 * it must be a constant) and otherwise from the `axes` attribute. Negative axes count from the
 * end; no axes means all dims unless noop_with_empty_axes = 1, which makes the op an identity.
 * keepdims (default 1) keeps reduced dims as size 1.
 *
 * Kernel: dims of size 1 are dropped and neighbouring dims with the same role (kept / reduced)
 * merged, giving alternating kept and reduced dims. The output is zeroed, then every input run
 * along the innermost dim is accumulated: a reduced innermost dim sums a contiguous run into
 * one output, a kept one adds the run element-wise into an output row (vectorised). Work is
 * split over the outermost kept dim or over column blocks of a kept innermost dim, whichever
 * gives more tasks. Integer sums wrap around. Mean divides by the reduced element count (the
 * mean over zero elements is NaN). Cost: one pass over the input plus one over the output.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#pragma GCC optimize("O3", "no-trapping-math") /* vectorise the plain-C loops */
#endif

#include <math.h>
#include <string.h>

#include "runtime/op.h"

#define COLS 256 /* kept innermost columns per task */

typedef struct {
  int noop;                   /* identity (copy) */
  int rank;                   /* collapsed rank (0: everything had size 1) */
  int64_t dims[SF_MAX_RANK];  /* collapsed input dims */
  int red[SF_MAX_RANK];       /* 1 where reduced */
  int64_t ostr[SF_MAX_RANK];  /* output element stride per collapsed dim (0 where reduced) */
  int64_t in_n, out_n, count; /* input and output elements, elements per output */
  int split_dim0;             /* parallel over dim 0 (else over column blocks / serial) */
  int64_t ntasks;
} reduce_state;

/* Reduction mask over x's dims; *noop when the op is an identity. */
static int reduce_axes(sf_kctx *k, const sf_tensor *x, int *mask, int *noop) {
  const sf_node *n = k->node;
  const sf_gtensor *ax = sf__in(k->g, n, 1);
  int r = x->rank, cnt = 0;
  for (int i = 0; i < r; i++) mask[i] = 0;
  *noop = 0;
  if (ax) {
    if (ax->kind != SF_TK_CONST || !ax->t.data)
      return sf__op_err(k, SF_EUNSUPPORTED, "axes input must be a constant");
    if (ax->t.dtype != SF_I64 && ax->t.dtype != SF_I32)
      return sf__op_err(k, SF_EINVAL, "axes dtype %s", sf_dtype_name(ax->t.dtype));
    int64_t na = sf_tensor_numel(&ax->t);
    if (na < 0 || na > SF_MAX_RANK)
      return sf__op_err(k, SF_ESHAPE, "%lld axes for rank %d", (long long)na, r);
    for (int64_t i = 0; i < na; i++) {
      int64_t v = sf__int_at(&ax->t, i);
      int a = sf__norm_axis(v, r);
      if (a < 0) return sf__op_err(k, SF_ESHAPE, "axis %lld out of range for rank %d", (long long)v, r);
      mask[a] = 1;
      cnt++;
    }
  } else {
    const int64_t *v;
    int na = sf__attr_ints(n, "axes", &v);
    for (int i = 0; i < na; i++) {
      int a = sf__norm_axis(v[i], r);
      if (a < 0)
        return sf__op_err(k, SF_ESHAPE, "axis %lld out of range for rank %d", (long long)v[i], r);
      mask[a] = 1;
      cnt++;
    }
  }
  if (cnt == 0) {
    if (sf__attr_int(n, "noop_with_empty_axes", 0)) {
      *noop = 1;
    } else {
      for (int i = 0; i < r; i++) mask[i] = 1;
    }
  }
  return 0;
}

static int reduce_infer(sf_kctx *k, int is_mean) {
  sf_gtensor *x = sf__in(k->g, k->node, 0), *y = sf__out(k->g, k->node, 0);
  if (!x || !y) return sf__op_err(k, SF_EINVAL, "missing input or output");
  int dt = x->t.dtype;
  if (!(dt == SF_F32 || (!is_mean && (dt == SF_I32 || dt == SF_I64))))
    return sf__op_err(k, SF_EUNSUPPORTED, "unsupported input dtype %s", sf_dtype_name(dt));
  int mask[SF_MAX_RANK], noop;
  int rc = reduce_axes(k, &x->t, mask, &noop);
  if (rc < 0) return rc;
  if (noop) {
    sf__tensor_set_shape(y, dt, x->t.rank, x->t.dims);
    return 0;
  }
  int keep = sf__attr_int(k->node, "keepdims", 1) != 0, r = 0;
  int64_t dims[SF_MAX_RANK];
  for (int i = 0; i < x->t.rank; i++) {
    if (!mask[i])
      dims[r++] = x->t.dims[i];
    else if (keep)
      dims[r++] = 1;
  }
  sf__tensor_set_shape(y, dt, r, dims);
  return 0;
}

static int reduce_prepare(sf_kctx *k) {
  const sf_gtensor *x = sf__in(k->g, k->node, 0), *y = sf__out(k->g, k->node, 0);
  reduce_state *st = sf__calloc(1, sizeof *st);
  if (!st) return sf__op_err(k, SF_ENOMEM, "out of memory");
  k->node->state = st;
  int mask[SF_MAX_RANK];
  int rc = reduce_axes(k, &x->t, mask, &st->noop);
  if (rc < 0) return rc;
  st->in_n = sf_tensor_numel(&x->t);
  st->out_n = sf_tensor_numel(&y->t);
  st->count = 1;
  for (int i = 0; i < x->t.rank; i++)
    if (mask[i]) st->count *= x->t.dims[i];
  if (st->noop) return 0;
  if (st->in_n > 0 && st->out_n * st->count != st->in_n)
    return sf__op_err(k, SF_ESHAPE, "output has %lld elements, expected %lld",
                      (long long)st->out_n, (long long)(st->in_n / st->count));
  int r = 0;
  for (int i = 0; i < x->t.rank; i++) {
    int64_t d = x->t.dims[i];
    if (d == 1) continue;
    if (r > 0 && st->red[r - 1] == mask[i]) {
      st->dims[r - 1] *= d;
    } else {
      st->dims[r] = d;
      st->red[r] = mask[i];
      r++;
    }
  }
  st->rank = r;
  int64_t s = 1;
  for (int i = r - 1; i >= 0; i--) {
    st->ostr[i] = st->red[i] ? 0 : s;
    if (!st->red[i]) s *= st->dims[i];
  }
  /* parallel split */
  int64_t by_dim0 = (r > 1 && !st->red[0]) ? st->dims[0] : 1;
  int64_t by_cols = (r > 0 && !st->red[r - 1]) ? (st->dims[r - 1] + COLS - 1) / COLS : 1;
  st->split_dim0 = by_dim0 >= by_cols;
  st->ntasks = st->split_dim0 ? by_dim0 : by_cols;
  if (!k->pool || st->in_n < 65536) st->ntasks = 1;
  return 0;
}

typedef struct {
  const reduce_state *st;
  const void *x;
  void *y;
  int dtype;
} reduce_job;

static float sum_f32(const float *x, int64_t n) {
  float a[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) a[l] += x[i + l];
  float s = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
  for (; i < n; i++) s += x[i];
  return s;
}

#define ACCUM(T, U, SUM)                                                                       \
  do {                                                                                         \
    const T *x = (const T *)j->x + ioff;                                                       \
    T *y = (T *)j->y + ooff;                                                                   \
    if (last_red) {                                                                            \
      y[0] = (T)((U)y[0] + (U)(SUM));                                                          \
    } else {                                                                                   \
      for (int64_t c = c0; c < c1; c++) y[c] = (T)((U)y[c] + (U)x[c]);                         \
    }                                                                                          \
  } while (0)

static int64_t sum_i32(const int32_t *x, int64_t n) {
  uint32_t s = 0;
  for (int64_t i = 0; i < n; i++) s += (uint32_t)x[i];
  return (int32_t)s;
}

static int64_t sum_i64(const int64_t *x, int64_t n) {
  uint64_t s = 0;
  for (int64_t i = 0; i < n; i++) s += (uint64_t)x[i];
  return (int64_t)s;
}

/* Accumulate the prefix positions whose dim-0 index is in [p0, p1) (all when the split is
 * over columns) and innermost columns [c0, c1). */
static void reduce_part(const reduce_job *j, int64_t p0, int64_t p1, int64_t c0, int64_t c1) {
  const reduce_state *st = j->st;
  int r = st->rank, pr = r - 1;
  int64_t L = st->dims[r - 1];
  int last_red = st->red[r - 1];
  int64_t idx[SF_MAX_RANK] = {0};
  int64_t istr[SF_MAX_RANK];
  int64_t s = L;
  for (int i = pr - 1; i >= 0; i--) {
    istr[i] = s;
    s *= st->dims[i];
  }
  int64_t lim0 = pr > 0 ? p1 : 1;
  if (pr > 0) idx[0] = p0;
  for (;;) {
    if (pr > 0 && idx[0] >= lim0) break;
    int64_t ioff = 0, ooff = 0;
    for (int i = 0; i < pr; i++) {
      ioff += idx[i] * istr[i];
      ooff += idx[i] * st->ostr[i];
    }
    switch (j->dtype) {
      case SF_F32: ACCUM(float, float, sum_f32(x, L)); break;
      case SF_I32: ACCUM(int32_t, uint32_t, sum_i32(x, L)); break;
      case SF_I64: ACCUM(int64_t, uint64_t, sum_i64(x, L)); break;
    }
    if (pr == 0) break;
    int i = pr - 1;
    for (; i > 0; i--) {
      if (++idx[i] < st->dims[i]) break;
      idx[i] = 0;
    }
    if (i == 0) idx[0]++;
  }
}

static void reduce_task(void *p, size_t t) {
  const reduce_job *j = p;
  const reduce_state *st = j->st;
  int r = st->rank;
  int64_t L = st->dims[r - 1];
  if (st->ntasks <= 1) {
    reduce_part(j, 0, r > 1 ? st->dims[0] : 1, 0, L);
  } else if (st->split_dim0) {
    reduce_part(j, (int64_t)t, (int64_t)t + 1, 0, L);
  } else {
    int64_t c0 = (int64_t)t * COLS, c1 = c0 + COLS < L ? c0 + COLS : L;
    reduce_part(j, 0, r > 1 ? st->dims[0] : 1, c0, c1);
  }
}

static int reduce_run(sf_kctx *k, int is_mean) {
  const reduce_state *st = k->node->state;
  if (!st) return sf__op_err(k, SF_EINTERNAL, "not prepared");
  const sf_gtensor *x = sf__in(k->g, k->node, 0), *y = sf__out(k->g, k->node, 0);
  int dt = x->t.dtype;
  size_t es = sf_dtype_size(dt);
  if (st->out_n <= 0) return 0;
  if (st->noop) {
    if (y->t.data != x->t.data) memmove(y->t.data, x->t.data, (size_t)st->out_n * es);
    return 0;
  }
  memset(y->t.data, 0, (size_t)st->out_n * es);
  if (st->in_n > 0) {
    if (st->rank == 0) {
      memcpy(y->t.data, x->t.data, es); /* a single element */
    } else {
      reduce_job j = {st, x->t.data, y->t.data, dt};
      sf__parallel_for(k->pool, (size_t)st->ntasks, reduce_task, &j);
    }
  }
  if (is_mean) {
    float *o = y->t.data;
    float inv = st->count > 0 ? 1.0f / (float)st->count : NAN;
    if (st->count != 1)
      for (int64_t i = 0; i < st->out_n; i++) o[i] *= inv;
  }
  return 0;
}

static void reduce_release(sf_node *n) {
  free(n->state);
  n->state = NULL;
}

static int64_t reduce_flops(sf_kctx *k) {
  const sf_gtensor *x = sf__in(k->g, k->node, 0);
  int64_t n = x ? sf_tensor_numel(&x->t) : 0;
  return n > 0 ? n : 0;
}

static int mean_infer(sf_kctx *k) { return reduce_infer(k, 1); }
static int sum_infer(sf_kctx *k) { return reduce_infer(k, 0); }
static int mean_run(sf_kctx *k) { return reduce_run(k, 1); }
static int sum_run(sf_kctx *k) { return reduce_run(k, 0); }

const sf_op_def sf__op_ReduceMean = {
    .op_type = "ReduceMean",
    .flags = 0,
    .infer = mean_infer,
    .prepare = reduce_prepare,
    .run = mean_run,
    .release = reduce_release,
    .flops = reduce_flops,
};

const sf_op_def sf__op_ReduceSum = {
    .op_type = "ReduceSum",
    .flags = 0,
    .infer = sum_infer,
    .prepare = reduce_prepare,
    .run = sum_run,
    .release = reduce_release,
    .flops = reduce_flops,
};
