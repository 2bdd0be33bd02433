/* Helpers shared by kernels: errors naming the node, broadcasting, axis handling, parallel for. */
#include <math.h>
#include <string.h>

#include "runtime/op.h"

int sf__op_err(sf_kctx *k, int code, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const sf_node *n = k->node;
  return sf__errf(k->err, code, "%s node '%s': %s", n->op_type, n->name ? n->name : "", msg);
}

int sf__broadcast_shape(const sf_tensor *a, const sf_tensor *b, int *rank, int64_t *dims) {
  int r = a->rank > b->rank ? a->rank : b->rank;
  for (int i = 0; i < r; i++) {
    int ia = i - (r - a->rank), ib = i - (r - b->rank);
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    if (da == db || db == 1)
      dims[i] = da;
    else if (da == 1)
      dims[i] = db;
    else
      return SF_ESHAPE;
  }
  *rank = r;
  return 0;
}

int sf__norm_axis(int64_t axis, int rank) {
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) return -1;
  return (int)axis;
}

int64_t sf__int_at(const sf_tensor *t, int64_t i) {
  switch (t->dtype) {
    case SF_I64: return ((const int64_t *)t->data)[i];
    case SF_I32: return ((const int32_t *)t->data)[i];
    case SF_I8: return ((const int8_t *)t->data)[i];
    case SF_U8: return ((const uint8_t *)t->data)[i];
    case SF_BOOL: return ((const uint8_t *)t->data)[i];
    case SF_F32: return (int64_t)((const float *)t->data)[i];
    case SF_F64: return (int64_t)((const double *)t->data)[i];
  }
  return 0;
}

double sf__num_at(const sf_tensor *t, int64_t i) {
  switch (t->dtype) {
    case SF_F32: return ((const float *)t->data)[i];
    case SF_F64: return ((const double *)t->data)[i];
    case SF_I64: return (double)((const int64_t *)t->data)[i];
    case SF_I32: return ((const int32_t *)t->data)[i];
    case SF_I8: return ((const int8_t *)t->data)[i];
    case SF_U8: return ((const uint8_t *)t->data)[i];
    case SF_BOOL: return ((const uint8_t *)t->data)[i];
  }
  return NAN;
}

void sf__parallel_for(pthreadpool_t pool, size_t n, sf_task_fn fn, void *ctx) {
  if (!pool || n < 2) {
    for (size_t i = 0; i < n; i++) fn(ctx, i);
    return;
  }
  pthreadpool_parallelize_1d(pool, (pthreadpool_task_1d_t)fn, ctx, n, 0);
}
