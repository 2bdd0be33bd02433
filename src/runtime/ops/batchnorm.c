/* BatchNormalization, inference mode (float32): y = (x - mean) / sqrt(var + epsilon) * scale + B,
 * computed as y = x * a[c] + b[c]. The compiler usually folds BN into the preceding Conv; this
 * kernel handles the rest.
 *
 * Layout-agnostic without broadcasting: in channels-last mode (input t.layout NHWC) the channel is
 * the last physical axis, otherwise axis 1. a and b are computed in prepare when the statistics
 * are constant, else at the start of every run (into buffers allocated in prepare).
 * training_mode=1, the training outputs (running / saved mean and variance) and the opset < 9
 * spatial=0 form are not supported.
 */
#include <math.h>
#include <string.h>

#include "runtime/op.h"

static int bn_infer(sf_kctx *k) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  if (n->n_in < 5) return sf__op_err(k, SF_EFORMAT, "needs 5 inputs (X, scale, B, mean, var)");
  for (int i = 0; i < 5; i++) {
    sf_gtensor *t = sf__in(g, n, i);
    if (!t) return sf__op_err(k, SF_EFORMAT, "input %d is missing", i);
    if (t->t.dtype != SF_F32)
      return sf__op_err(k, SF_EUNSUPPORTED, "input %d has dtype %s (only float32 is supported)",
                        i, sf_dtype_name(t->t.dtype));
  }
  if (sf__attr_int(n, "training_mode", 0))
    return sf__op_err(k, SF_EUNSUPPORTED, "training_mode=1 is not supported");
  if (g->opset < 9 && sf__attr_int(n, "spatial", 1) != 1)
    return sf__op_err(k, SF_EUNSUPPORTED, "spatial=0 is not supported");
  if (n->n_out < 1 || !sf__out(g, n, 0)) return sf__op_err(k, SF_EFORMAT, "needs an output");
  for (int i = 1; i < n->n_out; i++)
    if (sf__out(g, n, i))
      return sf__op_err(k, SF_EUNSUPPORTED, "training output %d is not supported", i);
  const sf_tensor *x = &sf__in(g, n, 0)->t;
  if (x->rank < 2) return sf__op_err(k, SF_ESHAPE, "input must have rank >= 2");
  int64_t C = x->dims[1];
  for (int i = 1; i < 5; i++) {
    const sf_tensor *t = &sf__in(g, n, i)->t;
    if (sf_tensor_numel(t) != C)
      return sf__op_err(k, SF_ESHAPE, "input %d has %lld elements, expected %lld channels", i,
                        (long long)sf_tensor_numel(t), (long long)C);
  }
  sf__tensor_set_shape(sf__out(g, n, 0), SF_F32, x->rank, x->dims);
  return 0;
}

typedef struct bn_state {
  int64_t C;
  int constant; /* a, b computed once */
  float *a, *b;
} bn_state;

static void bn_release(sf_node *n) {
  bn_state *s = n->state;
  if (s) {
    free(s->a);
    free(s->b);
    free(s);
  }
  n->state = NULL;
}

static void bn_coeffs(sf_kctx *k, bn_state *s) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  const float *sc = sf__in(g, n, 1)->t.data, *be = sf__in(g, n, 2)->t.data,
              *mu = sf__in(g, n, 3)->t.data, *va = sf__in(g, n, 4)->t.data;
  float eps = sf__attr_float(n, "epsilon", 1e-5f);
  for (int64_t c = 0; c < s->C; c++) {
    float a = sc[c] / sqrtf(va[c] + eps);
    s->a[c] = a;
    s->b[c] = be[c] - mu[c] * a;
  }
}

static int bn_prepare(sf_kctx *k) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  bn_state *s = sf__calloc(1, sizeof *s);
  if (!s) return sf__op_err(k, SF_ENOMEM, "out of memory");
  n->state = s;
  const sf_tensor *x = &sf__in(g, n, 0)->t;
  s->C = x->layout == SF_LAYOUT_NHWC ? x->dims[x->rank - 1] : x->dims[1];
  if (sf_tensor_numel(&sf__in(g, n, 1)->t) != s->C)
    return sf__op_err(k, SF_EINTERNAL, "channel count changed");
  size_t nb = sizeof(float) * (size_t)(s->C ? s->C : 1);
  if (!(s->a = sf__malloc(nb)) || !(s->b = sf__malloc(nb)))
    return sf__op_err(k, SF_ENOMEM, "out of memory");
  s->constant = 1;
  for (int i = 1; i < 5; i++)
    if (sf__in(g, n, i)->kind != SF_TK_CONST) s->constant = 0;
  if (s->constant) bn_coeffs(k, s);
  return 0;
}

typedef struct bn_job {
  const bn_state *s;
  const float *x;
  float *y;
  int64_t inner; /* plain: elements per (n, c) plane; channels-last: pixels per task */
  int64_t total; /* channels-last: total pixels */
  int nhwc;
  float lo, hi;
} bn_job;

static void bn_task(void *ctx, size_t t) {
  const bn_job *j = ctx;
  const bn_state *s = j->s;
  float lo = j->lo, hi = j->hi;
  if (j->nhwc) {
    int64_t p0 = (int64_t)t * j->inner, p1 = p0 + j->inner < j->total ? p0 + j->inner : j->total;
    for (int64_t p = p0; p < p1; p++) {
      const float *x = j->x + p * s->C;
      float *y = j->y + p * s->C;
      for (int64_t c = 0; c < s->C; c++) {
        float v = x[c] * s->a[c] + s->b[c];
        y[c] = v < lo ? lo : (v > hi ? hi : v);
      }
    }
    return;
  }
  int64_t c = (int64_t)t % s->C;
  const float *x = j->x + (int64_t)t * j->inner;
  float *y = j->y + (int64_t)t * j->inner;
  float a = s->a[c], b = s->b[c];
  for (int64_t i = 0; i < j->inner; i++) {
    float v = x[i] * a + b;
    y[i] = v < lo ? lo : (v > hi ? hi : v);
  }
}

static int bn_run(sf_kctx *k) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  bn_state *s = n->state;
  if (!s) return sf__op_err(k, SF_EINTERNAL, "not prepared");
  if (!s->constant) bn_coeffs(k, s);
  const sf_tensor *x = &sf__in(g, n, 0)->t;
  int64_t total = sf_tensor_numel(x);
  if (total <= 0 || s->C == 0) return 0;
  bn_job j = {.s = s, .x = x->data, .y = sf__out(g, n, 0)->t.data,
              .nhwc = x->layout == SF_LAYOUT_NHWC,
              .lo = n->fused_act == SF_ACT_CLAMP ? n->act_min : -INFINITY,
              .hi = n->fused_act == SF_ACT_CLAMP ? n->act_max : INFINITY};
  size_t tasks;
  if (j.nhwc) {
    j.total = total / s->C;
    j.inner = (4096 + s->C - 1) / s->C; /* ~4k elements per task */
    tasks = (size_t)((j.total + j.inner - 1) / j.inner);
  } else {
    j.inner = total / (x->dims[0] * s->C);
    tasks = (size_t)(x->dims[0] * s->C);
  }
  sf__parallel_for(total > 16384 ? k->pool : NULL, tasks, bn_task, &j);
  return 0;
}

static int64_t bn_flops(sf_kctx *k) { return 2 * sf_tensor_numel(&sf__in(k->g, k->node, 0)->t); }

const sf_op_def sf__op_BatchNormalization = {
    .op_type = "BatchNormalization",
    .flags = SF_OPF_AGNOSTIC,
    .infer = bn_infer,
    .prepare = bn_prepare,
    .run = bn_run,
    .release = bn_release,
    .flops = bn_flops,
};
