/* Softmax (float32, plain ONNX layout).
 *
 * Opsets < 13 coerce the input to 2-D at `axis` (default 1) and normalise over the flattened
 * trailing dims; from opset 13 the normalisation is along `axis` only (default -1). Either way
 * the input is viewed as [outer, n, inner] and normalised over n:
 *   y = exp(x - max) / sum(exp(x - max)).
 * inner == 1 (normalising contiguous rows) uses XNNPACK softmax_nc_f32; otherwise plain C over
 * (outer row, block of 64 inner columns) tasks, vectorised across the columns. Rows are
 * read before they are written, so y may share x's buffer.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#pragma GCC optimize("O3", "no-trapping-math") /* vectorise the plain-C loops */
#endif

#include <math.h>
#include <string.h>

#include <xnnpack.h>

#include "runtime/op.h"
#include "runtime/ops/vmath.h"

#define COLS 64 /* inner columns per task */

typedef struct {
  int64_t outer, n, inner;
  xnn_operator_t xop; /* NULL: plain C */
} softmax_state;

/* [outer, n, inner] view of x for the node's opset and axis. */
static int softmax_view(sf_kctx *k, const sf_tensor *x, int64_t *outer, int64_t *n,
                        int64_t *inner) {
  int legacy = k->g->opset < 13;
  int64_t axis = sf__attr_int(k->node, "axis", legacy ? 1 : -1);
  int r = x->rank;
  *outer = *n = *inner = 1;
  if (r == 0) return 0;
  int a = sf__norm_axis(axis, r);
  if (a < 0 && legacy && axis == r) a = r; /* coerce to [numel, 1] */
  if (a < 0) return sf__op_err(k, SF_EINVAL, "axis %lld out of range for rank %d", (long long)axis, r);
  for (int i = 0; i < a; i++) *outer *= x->dims[i];
  if (legacy) {
    for (int i = a; i < r; i++) *n *= x->dims[i];
  } else {
    *n = x->dims[a];
    for (int i = a + 1; i < r; i++) *inner *= x->dims[i];
  }
  return 0;
}

static int softmax_infer(sf_kctx *k) {
  sf_gtensor *x = sf__in(k->g, k->node, 0), *y = sf__out(k->g, k->node, 0);
  if (!x || !y) return sf__op_err(k, SF_EINVAL, "missing input or output");
  if (x->t.dtype != SF_F32)
    return sf__op_err(k, SF_EUNSUPPORTED, "unsupported input dtype %s", sf_dtype_name(x->t.dtype));
  int64_t o, n, i;
  int rc = softmax_view(k, &x->t, &o, &n, &i);
  if (rc < 0) return rc;
  sf__tensor_set_shape(y, x->t.dtype, x->t.rank, x->t.dims);
  return 0;
}

static void softmax_release(sf_node *node) {
  softmax_state *st = node->state;
  if (!st) return;
  if (st->xop) xnn_delete_operator(st->xop);
  free(st);
  node->state = NULL;
}

static int softmax_prepare(sf_kctx *k) {
  const sf_gtensor *x = sf__in(k->g, k->node, 0), *y = sf__out(k->g, k->node, 0);
  softmax_state *st = sf__calloc(1, sizeof *st);
  if (!st) return sf__op_err(k, SF_ENOMEM, "out of memory");
  k->node->state = st;
  int rc = softmax_view(k, &x->t, &st->outer, &st->n, &st->inner);
  if (rc < 0) return rc;
  if (st->inner != 1 || st->n <= 0 || st->outer <= 0) return 0;
  size_t c = (size_t)st->n;
  xnn_operator_t op = NULL;
  if (xnn_create_softmax_nc_f32(c, c, c, 0, &op) != xnn_status_success) return 0;
  if (xnn_setup_softmax_nc_f32(op, (size_t)st->outer, x->t.data, y->t.data, k->pool) !=
      xnn_status_success) {
    xnn_delete_operator(op);
    return 0;
  }
  st->xop = op;
  return 0;
}

typedef struct {
  const softmax_state *st;
  const float *x;
  float *y;
  int64_t rows_per_task, blocks; /* inner == 1: rows per task; else column blocks per row */
} softmax_job;

static void softmax_rows(const float *x, float *y, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
  float s = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    float e = sf__vm_exp(x[i] - m);
    y[i] = e;
    s += e;
  }
  float inv = 1.0f / s;
  for (int64_t i = 0; i < n; i++) y[i] *= inv;
}

static void softmax_row_task(void *p, size_t t) {
  const softmax_job *j = p;
  const softmax_state *st = j->st;
  int64_t r0 = (int64_t)t * j->rows_per_task, r1 = r0 + j->rows_per_task;
  if (r1 > st->outer) r1 = st->outer;
  for (int64_t r = r0; r < r1; r++) softmax_rows(j->x + r * st->n, j->y + r * st->n, st->n);
}

/* One outer row, columns [c0, c0 + w) of the [n, inner] slab. */
static void softmax_col_task(void *p, size_t t) {
  const softmax_job *j = p;
  const softmax_state *st = j->st;
  int64_t o = (int64_t)t / j->blocks, c0 = ((int64_t)t % j->blocks) * COLS;
  int64_t w = st->inner - c0 < COLS ? st->inner - c0 : COLS, in = st->inner;
  const float *x = j->x + o * st->n * in + c0;
  float *y = j->y + o * st->n * in + c0;
  float m[COLS], s[COLS];
  for (int64_t c = 0; c < w; c++) m[c] = -INFINITY, s[c] = 0.0f;
  for (int64_t r = 0; r < st->n; r++)
    for (int64_t c = 0; c < w; c++) m[c] = x[r * in + c] > m[c] ? x[r * in + c] : m[c];
  for (int64_t r = 0; r < st->n; r++)
    for (int64_t c = 0; c < w; c++) {
      float e = sf__vm_exp(x[r * in + c] - m[c]);
      y[r * in + c] = e;
      s[c] += e;
    }
  for (int64_t c = 0; c < w; c++) s[c] = 1.0f / s[c];
  for (int64_t r = 0; r < st->n; r++)
    for (int64_t c = 0; c < w; c++) y[r * in + c] *= s[c];
}

static int softmax_run(sf_kctx *k) {
  const softmax_state *st = k->node->state;
  if (!st) return sf__op_err(k, SF_EINTERNAL, "not prepared");
  if (st->xop) {
    if (xnn_run_operator(st->xop, k->pool) != xnn_status_success)
      return sf__op_err(k, SF_EINTERNAL, "XNNPACK operator failed");
    return 0;
  }
  if (st->outer <= 0 || st->n <= 0 || st->inner <= 0) return 0;
  const sf_gtensor *x = sf__in(k->g, k->node, 0), *y = sf__out(k->g, k->node, 0);
  softmax_job j = {st, x->t.data, y->t.data, 1, 1};
  if (st->inner == 1) {
    j.rows_per_task = (4096 + st->n - 1) / st->n;
    sf__parallel_for(k->pool, (size_t)((st->outer + j.rows_per_task - 1) / j.rows_per_task),
                     softmax_row_task, &j);
  } else {
    j.blocks = (st->inner + COLS - 1) / COLS;
    sf__parallel_for(k->pool, (size_t)(st->outer * j.blocks), softmax_col_task, &j);
  }
  return 0;
}

static int64_t softmax_flops(sf_kctx *k) {
  const sf_gtensor *x = sf__in(k->g, k->node, 0);
  int64_t n = x ? sf_tensor_numel(&x->t) : 0;
  return n > 0 ? 5 * n : 0;
}

const sf_op_def sf__op_Softmax = {
    .op_type = "Softmax",
    .flags = 0,
    .infer = softmax_infer,
    .prepare = softmax_prepare,
    .run = softmax_run,
    .release = softmax_release,
    .flops = softmax_flops,
};
