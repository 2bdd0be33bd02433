/* BatchNorm calibration of zoo models: evaluate the built graph once, in node order, on an input
 * drawn uniformly from the model's declared range, and set every BatchNormalization's moving
 * statistics from the per-channel mean and variance of its actual input (times the jitter drawn
 * at build time, see builder.h).
 *
 * A plain-C reference evaluator of just the operators the builder emits (NCHW, batch 1). It is
 * independent of the runtime on purpose: the weights must not depend on kernels, threads or
 * CPU features. Summation order is fixed, no floating-point contraction, and exp is computed
 * here with exact operations only, so the results (and the files) are the same on every IEEE-754
 * platform. Activations are freed after their last use. Cost: one inference in naive C (about
 * a second per 4 GFLOPs).
 */
#include <math.h>
#include <string.h>

#include "zoo/builder.h"

/* No fused multiply-add: the weights must not depend on the compiler or the CPU's FMA. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

typedef struct val {
  float *d;
  int rank;
  int64_t dims[4];
  int owned;
} val;

typedef struct ev {
  sf_zb *b;
  sf_graph *g;
  val *v;
} ev;

static int64_t numel(const val *x) {
  int64_t n = 1;
  for (int i = 0; i < x->rank; i++) n *= x->dims[i];
  return n;
}

static int bad(ev *e, const sf_node *n, const char *why) {
  e->b->rc = SF_EINTERNAL;
  return sf__errf(e->b->err, SF_EINTERNAL, "zoo calibration: %s node '%s': %s", n->op_type, n->name,
                  why);
}

/* exp(x) from exact operations: Cody-Waite reduction by ln 2, Taylor series, ldexp. */
static double zexp(double x) {
  if (x > 700) x = 700;
  if (x < -700) x = -700;
  double k = floor(x * 1.4426950408889634 + 0.5);
  double r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
  double p = 1, t = 1;
  for (int i = 1; i <= 13; i++) {
    t = t * r / i;
    p += t;
  }
  return ldexp(p, (int)k);
}

static void splitmix_fill(float *d, int64_t n, uint64_t seed, double lo, double hi) {
  uint64_t x = seed ^ 0x5a6f6f43616c6962ULL; /* separate stream from the weights */
  for (int64_t i = 0; i < n; i++) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    d[i] = (float)(lo + (hi - lo) * ((double)(z >> 11) * 0x1p-53));
  }
}

/* Allocate the output value of a node with the given shape. */
static val *out_val(ev *e, const sf_node *n, int rank, const int64_t *dims) {
  val *y = &e->v[n->out[0]];
  y->rank = rank;
  for (int i = 0; i < rank; i++) y->dims[i] = dims[i];
  int64_t k = numel(y);
  y->d = sf__malloc(sizeof(float) * (size_t)(k > 0 ? k : 1));
  if (!y->d) {
    e->b->rc = SF_ENOMEM;
    sf__errf(e->b->err, SF_ENOMEM, "out of memory calibrating the model");
    return NULL;
  }
  y->owned = 1;
  return y;
}

static int attr4(const sf_node *n, int64_t *k, int64_t *s, int64_t *p) {
  const int64_t *v;
  if (sf__attr_ints(n, "kernel_shape", &v) != 2) return -1;
  k[0] = v[0], k[1] = v[1];
  if (sf__attr_ints(n, "strides", &v) != 2) return -1;
  s[0] = v[0], s[1] = v[1];
  if (sf__attr_ints(n, "pads", &v) != 4) return -1;
  for (int i = 0; i < 4; i++) p[i] = v[i];
  return 0;
}

/* Rows k = (ic, kh, kw) of the input patches of one group: col[k][oh * OW + ow], zero where the
 * window is in the padding. */
static void im2col(const float *x, int64_t icg, int64_t H, int64_t W, int64_t KH, int64_t KW,
                   int64_t sh, int64_t sw, const int64_t *p, int64_t OH, int64_t OW, float *col) {
  for (int64_t ic = 0; ic < icg; ic++)
    for (int64_t kh = 0; kh < KH; kh++)
      for (int64_t kw = 0; kw < KW; kw++) {
        float *c = col + ((ic * KH + kh) * KW + kw) * OH * OW;
        const float *xp = x + ic * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
          int64_t ih = oh * sh + kh - p[0];
          for (int64_t ow = 0; ow < OW; ow++) {
            int64_t iw = ow * sw + kw - p[1];
            c[oh * OW + ow] = ih >= 0 && ih < H && iw >= 0 && iw < W ? xp[ih * W + iw] : 0.0f;
          }
        }
      }
}

typedef float v4f __attribute__((vector_size(16)));

static inline v4f ld4(const float *p) {
  v4f v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void st4(float *p, v4f v) {
  memcpy(p, &v, sizeof v);
}

/* y[o][p] = bias[o] + sum_k w[o][k] * col[k][p] for o < no, in order of k; P tiled so that the
 * outputs stay in cache, 4 outputs per pass over col, 4 lanes (elementwise: the order of the
 * sum for each output is the same as a scalar loop). */
static void gemm_rows(const float *w, int64_t K, const float *col, int64_t P, const float *bias,
                      int64_t no, float *y) {
  enum { TP = 256 };
  for (int64_t p0 = 0; p0 < P; p0 += TP) {
    int64_t np = P - p0 < TP ? P - p0 : TP, nv = np & ~(int64_t)3;
    int64_t o = 0;
    for (; o + 4 <= no; o += 4) {
      float *y0 = y + o * P + p0, *y1 = y0 + P, *y2 = y1 + P, *y3 = y2 + P;
      const float *w0 = w + o * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
      for (int64_t i = 0; i < np; i++) {
        y0[i] = bias ? bias[o] : 0.0f;
        y1[i] = bias ? bias[o + 1] : 0.0f;
        y2[i] = bias ? bias[o + 2] : 0.0f;
        y3[i] = bias ? bias[o + 3] : 0.0f;
      }
      for (int64_t k = 0; k < K; k++) {
        const float *c = col + k * P + p0;
        float a0 = w0[k], a1 = w1[k], a2 = w2[k], a3 = w3[k];
        v4f b0 = {a0, a0, a0, a0}, b1 = {a1, a1, a1, a1}, b2 = {a2, a2, a2, a2},
            b3 = {a3, a3, a3, a3};
        int64_t i = 0;
        for (; i < nv; i += 4) {
          v4f v = ld4(c + i);
          st4(y0 + i, ld4(y0 + i) + b0 * v);
          st4(y1 + i, ld4(y1 + i) + b1 * v);
          st4(y2 + i, ld4(y2 + i) + b2 * v);
          st4(y3 + i, ld4(y3 + i) + b3 * v);
        }
        for (; i < np; i++) {
          float v = c[i];
          y0[i] += a0 * v;
          y1[i] += a1 * v;
          y2[i] += a2 * v;
          y3[i] += a3 * v;
        }
      }
    }
    for (; o < no; o++) {
      float *yo = y + o * P + p0;
      const float *wo = w + o * K;
      for (int64_t i = 0; i < np; i++) yo[i] = bias ? bias[o] : 0.0f;
      for (int64_t k = 0; k < K; k++) {
        const float *c = col + k * P + p0;
        float a = wo[k];
        v4f av = {a, a, a, a};
        int64_t i = 0;
        for (; i < nv; i += 4) st4(yo + i, ld4(yo + i) + av * ld4(c + i));
        for (; i < np; i++) yo[i] += a * c[i];
      }
    }
  }
}

static int conv(ev *e, const sf_node *n) {
  const val *x = &e->v[n->in[0]], *w = &e->v[n->in[1]];
  const val *bias = n->n_in > 2 && n->in[2] >= 0 ? &e->v[n->in[2]] : NULL;
  int64_t k[2], st[2], p[4];
  if (attr4(n, k, st, p) || x->rank != 4 || w->rank != 4) return bad(e, n, "bad attributes");
  int64_t groups = sf__attr_int(n, "group", 1);
  int64_t C = x->dims[1], H = x->dims[2], W = x->dims[3], OC = w->dims[0];
  int64_t KH = k[0], KW = k[1], sh = st[0], sw = st[1];
  int64_t OH = (H + p[0] + p[2] - KH) / sh + 1, OW = (W + p[1] + p[3] - KW) / sw + 1;
  int64_t icg = C / groups, ocg = OC / groups, K = icg * KH * KW, P = OH * OW;
  int64_t dims[4] = {1, OC, OH, OW};
  val *y = out_val(e, n, 4, dims);
  if (!y) return -1;
  int pointwise = KH == 1 && KW == 1 && sh == 1 && sw == 1 && !p[0] && !p[1] && !p[2] && !p[3];
  float *col = NULL;
  if (!pointwise && !(col = sf__malloc(sizeof(float) * (size_t)(K * P)))) {
    e->b->rc = SF_ENOMEM;
    return sf__errf(e->b->err, SF_ENOMEM, "out of memory calibrating the model");
  }
  for (int64_t gi = 0; gi < groups; gi++) {
    const float *xg = x->d + gi * icg * H * W;
    if (!pointwise) im2col(xg, icg, H, W, KH, KW, sh, sw, p, OH, OW, col);
    gemm_rows(w->d + gi * ocg * K, K, pointwise ? xg : col, P, bias ? bias->d + gi * ocg : NULL,
              ocg, y->d + gi * ocg * P);
  }
  free(col);
  return 0;
}

/* Set the moving statistics from x, then apply. */
static int batchnorm(ev *e, const sf_node *n) {
  const val *x = &e->v[n->in[0]], *sc = &e->v[n->in[1]], *bt = &e->v[n->in[2]];
  float *mean = e->g->tensors[n->in[3]].t.data, *var = e->g->tensors[n->in[4]].t.data;
  if (x->rank != 4 || !mean || !var) return bad(e, n, "bad inputs");
  float eps = sf__attr_float(n, "epsilon", 1e-5f);
  int64_t C = x->dims[1], HW = x->dims[2] * x->dims[3];
  val *y = out_val(e, n, 4, x->dims);
  if (!y) return -1;
  for (int64_t c = 0; c < C; c++) {
    const float *xp = x->d + c * HW;
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < HW; i++) s += xp[i];
    double m = s / (double)HW;
    for (int64_t i = 0; i < HW; i++) s2 += (xp[i] - m) * (xp[i] - m);
    double v = s2 / (double)HW;
    mean[c] = (float)(m + mean[c] * sqrt(v)); /* jitter U(-0.1, 0.1) standard deviations */
    var[c] = (float)(v * var[c]);             /* jitter U(0.5, 1.5) */
    float inv = (float)(1.0 / sqrt((double)var[c] + eps));
    float g = sc->d[c], bb = bt->d[c], mc = mean[c];
    for (int64_t i = 0; i < HW; i++) y->d[c * HW + i] = (xp[i] - mc) * inv * g + bb;
  }
  return 0;
}

static int pool(ev *e, const sf_node *n, int is_max) {
  const val *x = &e->v[n->in[0]];
  int64_t k[2], st[2], p[4];
  if (attr4(n, k, st, p) || x->rank != 4) return bad(e, n, "bad attributes");
  int64_t C = x->dims[1], H = x->dims[2], W = x->dims[3];
  int64_t OH = (H + p[0] + p[2] - k[0]) / st[0] + 1, OW = (W + p[1] + p[3] - k[1]) / st[1] + 1;
  int64_t dims[4] = {1, C, OH, OW};
  val *y = out_val(e, n, 4, dims);
  if (!y) return -1;
  for (int64_t c = 0; c < C; c++)
    for (int64_t oh = 0; oh < OH; oh++)
      for (int64_t ow = 0; ow < OW; ow++) {
        float acc = is_max ? -INFINITY : 0.0f;
        int cnt = 0;
        for (int64_t kh = 0; kh < k[0]; kh++)
          for (int64_t kw = 0; kw < k[1]; kw++) {
            int64_t ih = oh * st[0] + kh - p[0], iw = ow * st[1] + kw - p[1];
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            float v = x->d[(c * H + ih) * W + iw];
            if (is_max)
              acc = v > acc ? v : acc;
            else
              acc += v;
            cnt++;
          }
        y->d[(c * OH + oh) * OW + ow] = is_max ? acc : acc / (float)(cnt ? cnt : 1);
      }
  return 0;
}

/* Add Sub Mul Div: b is a scalar, the same shape as a, or per channel of a. */
static int binary(ev *e, const sf_node *n, char op) {
  const val *a = &e->v[n->in[0]], *b = &e->v[n->in[1]];
  if ((op == '+' || op == '*') && numel(b) > numel(a)) {
    const val *t = a;
    a = b;
    b = t;
  }
  int64_t na = numel(a), nb = numel(b);
  int64_t C = a->rank >= 2 ? a->dims[1] : 1, inner = a->rank == 4 ? a->dims[2] * a->dims[3] : 1;
  if (!(nb == 1 || nb == na || nb == C)) return bad(e, n, "unsupported broadcast");
  val *y = out_val(e, n, a->rank, a->dims);
  if (!y) return -1;
  for (int64_t i = 0; i < na; i++) {
    float u = a->d[i], v = b->d[nb == 1 ? 0 : nb == na ? i : (i / inner) % C];
    y->d[i] = op == '+' ? u + v : op == '-' ? u - v : op == '*' ? u * v : u / v;
  }
  return 0;
}

static int unary(ev *e, const sf_node *n) {
  const val *x = &e->v[n->in[0]];
  const char *op = n->op_type;
  val *y = out_val(e, n, x->rank, x->dims);
  if (!y) return -1;
  int64_t k = numel(x);
  if (!strcmp(op, "Relu")) {
    for (int64_t i = 0; i < k; i++) y->d[i] = x->d[i] > 0 ? x->d[i] : 0.0f;
  } else if (!strcmp(op, "Clip")) {
    float lo = e->v[n->in[1]].d[0], hi = e->v[n->in[2]].d[0];
    for (int64_t i = 0; i < k; i++) y->d[i] = x->d[i] < lo ? lo : x->d[i] > hi ? hi : x->d[i];
  } else if (!strcmp(op, "Sigmoid")) {
    for (int64_t i = 0; i < k; i++) y->d[i] = (float)(1.0 / (1.0 + zexp(-(double)x->d[i])));
  } else if (!strcmp(op, "HardSigmoid")) {
    float al = sf__attr_float(n, "alpha", 0.2f), be = sf__attr_float(n, "beta", 0.5f);
    for (int64_t i = 0; i < k; i++) {
      float v = al * x->d[i] + be;
      y->d[i] = v < 0 ? 0.0f : v > 1 ? 1.0f : v;
    }
  } else if (!strcmp(op, "Sqrt")) {
    for (int64_t i = 0; i < k; i++) y->d[i] = (float)sqrt((double)x->d[i]);
  } else if (!strcmp(op, "Softmax")) {
    if (x->rank != 2) return bad(e, n, "rank");
    double mx = -INFINITY, s = 0;
    for (int64_t i = 0; i < k; i++) mx = x->d[i] > mx ? x->d[i] : mx;
    for (int64_t i = 0; i < k; i++) s += zexp(x->d[i] - mx);
    for (int64_t i = 0; i < k; i++) y->d[i] = (float)(zexp(x->d[i] - mx) / s);
  } else {
    return bad(e, n, "unsupported operator");
  }
  return 0;
}

/* Cast of a float64 constant (the builder's hyper-parameters). */
static int cast(ev *e, const sf_node *n) {
  const sf_gtensor *src = &e->g->tensors[n->in[0]];
  if (src->kind != SF_TK_CONST || src->t.dtype != SF_F64 || !src->t.data || src->t.rank > 1)
    return bad(e, n, "not a float64 constant");
  val *y = out_val(e, n, src->t.rank, src->t.dims);
  if (!y) return -1;
  for (int64_t i = 0; i < numel(y); i++) y->d[i] = (float)((const double *)src->t.data)[i];
  return 0;
}

static int eval_node(ev *e, const sf_node *n) {
  const char *op = n->op_type;
  if (!strcmp(op, "Cast")) return cast(e, n);
  for (int i = 0; i < n->n_in; i++)
    if (n->in[i] >= 0 && !e->v[n->in[i]].d) return bad(e, n, "input not computed");
  if (!strcmp(op, "Conv")) return conv(e, n);
  if (!strcmp(op, "BatchNormalization")) return batchnorm(e, n);
  if (!strcmp(op, "MaxPool")) return pool(e, n, 1);
  if (!strcmp(op, "AveragePool")) return pool(e, n, 0);
  if (!strcmp(op, "Add")) return binary(e, n, '+');
  if (!strcmp(op, "Sub")) return binary(e, n, '-');
  if (!strcmp(op, "Mul")) return binary(e, n, '*');
  if (!strcmp(op, "Div")) return binary(e, n, '/');
  const val *x = &e->v[n->in[0]];
  if (!strcmp(op, "GlobalAveragePool")) {
    int64_t C = x->dims[1], HW = x->dims[2] * x->dims[3], d[4] = {1, C, 1, 1};
    val *y = out_val(e, n, 4, d);
    if (!y) return -1;
    for (int64_t c = 0; c < C; c++) {
      double s = 0;
      for (int64_t i = 0; i < HW; i++) s += x->d[c * HW + i];
      y->d[c] = (float)(s / (double)HW);
    }
    return 0;
  }
  if (!strcmp(op, "Flatten")) {
    int64_t d[2] = {1, numel(x)};
    val *y = out_val(e, n, 2, d);
    if (!y) return -1;
    memcpy(y->d, x->d, sizeof(float) * (size_t)d[1]);
    return 0;
  }
  if (!strcmp(op, "Concat")) {
    int64_t c = 0, HW = x->dims[2] * x->dims[3];
    for (int i = 0; i < n->n_in; i++) c += e->v[n->in[i]].dims[1];
    int64_t d[4] = {1, c, x->dims[2], x->dims[3]};
    val *y = out_val(e, n, 4, d);
    if (!y) return -1;
    float *o = y->d;
    for (int i = 0; i < n->n_in; i++) {
      const val *xi = &e->v[n->in[i]];
      memcpy(o, xi->d, sizeof(float) * (size_t)(xi->dims[1] * HW));
      o += xi->dims[1] * HW;
    }
    return 0;
  }
  if (!strcmp(op, "Gemm")) {
    const val *w = &e->v[n->in[1]];
    const val *bias = n->n_in > 2 && n->in[2] >= 0 ? &e->v[n->in[2]] : NULL;
    int64_t K = w->dims[0], N = w->dims[1], d[2] = {1, N};
    if (x->rank != 2 || x->dims[1] != K) return bad(e, n, "shape");
    val *y = out_val(e, n, 2, d);
    if (!y) return -1;
    for (int64_t j = 0; j < N; j++) y->d[j] = bias ? bias->d[j] : 0.0f;
    for (int64_t i = 0; i < K; i++)
      for (int64_t j = 0; j < N; j++) y->d[j] += x->d[i] * w->d[i * N + j];
    return 0;
  }
  return unary(e, n);
}

int sf__zb_calibrate(sf_zb *b) {
  sf_graph *g = b->g;
  ev e = {.b = b, .g = g};
  int rc = 0;
  e.v = sf__calloc((size_t)g->n_tensors, sizeof *e.v);
  int *uses = sf__calloc((size_t)g->n_tensors, sizeof *uses);
  if (!e.v || !uses) {
    rc = b->rc = SF_ENOMEM;
    sf__errf(b->err, SF_ENOMEM, "out of memory calibrating the model");
    goto done;
  }
  for (int i = 0; i < g->n_nodes; i++)
    for (int k = 0; k < g->nodes[i].n_in; k++)
      if (g->nodes[i].in[k] >= 0) uses[g->nodes[i].in[k]]++;
  for (int i = 0; i < g->n_tensors; i++) {
    const sf_gtensor *t = &g->tensors[i];
    if (t->kind != SF_TK_CONST || t->t.dtype != SF_F32) continue;
    e.v[i] = (val){.d = t->t.data, .rank = t->t.rank};
    for (int k = 0; k < t->t.rank && k < 4; k++) e.v[i].dims[k] = t->t.dims[k];
  }
  {
    const sf_zb_info *in = &b->info[b->input];
    val *x = &e.v[b->input];
    x->rank = 4;
    for (int k = 0; k < 4; k++) x->dims[k] = in->d[k];
    x->d = sf__malloc(sizeof(float) * (size_t)numel(x));
    if (!x->d) {
      rc = b->rc = SF_ENOMEM;
      sf__errf(b->err, SF_ENOMEM, "out of memory calibrating the model");
      goto done;
    }
    x->owned = 1;
    splitmix_fill(x->d, numel(x), b->seed, b->in_lo, b->in_hi);
  }
  for (int i = 0; i < g->n_nodes; i++) {
    const sf_node *n = &g->nodes[i];
    if ((rc = eval_node(&e, n))) goto done;
    for (int k = 0; k < n->n_in; k++) {
      int t = n->in[k];
      if (t >= 0 && --uses[t] == 0 && e.v[t].owned) {
        free(e.v[t].d);
        e.v[t].d = NULL;
        e.v[t].owned = 0;
      }
    }
  }
done:
  if (e.v)
    for (int i = 0; i < g->n_tensors; i++)
      if (e.v[i].owned) free(e.v[i].d);
  free(e.v);
  free(uses);
  return rc;
}
