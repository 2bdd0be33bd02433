/* BatchNorm calibration of zoo models: evaluate the built graph once, in node order, on a batch
 * of CALIB_BATCH inputs drawn uniformly from the model's declared range, and set every
 * BatchNormalization's moving statistics from the per-channel mean and variance of its actual
 * input over the batch (times the jitter drawn at build time, see builder.h). As with statistics
 * gathered over a data set, the variance then includes the variation between images, so that
 * a channel that is nearly constant within one image does not amplify another image's shift.
 * The classifier (the Gemm before the Softmax) is calibrated too, see gemm().
 *
 * A plain-C reference evaluator of just the operators the builder emits (NCHW). It is
 * independent of the runtime on purpose: the weights must not depend on kernels, threads or
 * CPU features. Summation order is fixed, no floating-point contraction, and exp and log are
 * computed here with exact operations only, so the results (and the files) are the same on every
 * IEEE-754 platform. Activations are freed after their last use. Cost: CALIB_BATCH inferences in
 * plain C (about 0.06 s per GFLOP on one core; the images of the batch run in parallel).
 */
#include <math.h>
#include <pthreadpool.h>
#include <string.h>

#include "zoo/builder.h"

/* No fused multiply-add: the weights must not depend on the compiler or the CPU's FMA. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

enum { CALIB_BATCH = 4 };

/* A value: activations are [N,C,H,W] or [N,K] with N = CALIB_BATCH; constants as stored. */
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
  pthreadpool_t pool; /* may be NULL: single-threaded */
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

/* exp(x) from exact operations: Cody-Waite reduction by ln 2 (|r| <= 0.35), a degree-13
 * Taylor polynomial by Horner's rule, and 2^k built from its bits. */
static double zexp(double x) {
  static const double c[14] = {1.0,
                               1.0,
                               1.0 / 2,
                               1.0 / 6,
                               1.0 / 24,
                               1.0 / 120,
                               1.0 / 720,
                               1.0 / 5040,
                               1.0 / 40320,
                               1.0 / 362880,
                               1.0 / 3628800,
                               1.0 / 39916800,
                               1.0 / 479001600,
                               1.0 / 6227020800.0};
  if (x > 700) x = 700;
  if (x < -700) x = -700;
  double k = floor(x * 1.4426950408889634 + 0.5);
  double r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
  double p = c[13];
  for (int i = 12; i >= 0; i--) p = p * r + c[i];
  uint64_t bits = (uint64_t)((int64_t)k + 1023) << 52; /* |k| <= 1010: a normal number */
  double two_k;
  memcpy(&two_k, &bits, sizeof two_k);
  return p * two_k;
}

/* log(x), x > 0, from exact operations: frexp, then 2 atanh((m - 1) / (m + 1)) as a series. */
static double zlog(double x) {
  int ex;
  double m = frexp(x, &ex), t = (m - 1) / (m + 1), t2 = t * t, p = t, s = 0;
  for (int i = 1; i < 60; i += 2) {
    s += p / i;
    p *= t2;
  }
  return 2 * s + ex * 0.69314718055994530942;
}

static double pow2(double x) {
  return zexp(x * 0.69314718055994530942);
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

/* y[o][p] = bias[o] + sum_k w[o][k] * col[k][p] for o < no, summed in order of k for every
 * output (so vector lanes and blocking do not change the result). P is tiled so that a panel of
 * col stays in cache; a 4 x 8 block of outputs is accumulated in registers over all k. */
static void gemm_rows(const float *w, int64_t K, const float *col, int64_t P, const float *bias,
                      int64_t no, float *y) {
  enum { TP = 128 };
  for (int64_t p0 = 0; p0 < P; p0 += TP) {
    int64_t pe = P - p0 < TP ? P : p0 + TP, p8 = p0 + ((pe - p0) & ~(int64_t)7);
    int64_t o = 0;
    for (; o + 4 <= no; o += 4) {
      const float *w0 = w + o * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
      float b0 = bias ? bias[o] : 0.0f, b1 = bias ? bias[o + 1] : 0.0f;
      float b2 = bias ? bias[o + 2] : 0.0f, b3 = bias ? bias[o + 3] : 0.0f;
      for (int64_t q = p0; q < p8; q += 8) {
        v4f a0 = {b0, b0, b0, b0}, a1 = {b1, b1, b1, b1}, a2 = {b2, b2, b2, b2};
        v4f a3 = {b3, b3, b3, b3}, e0 = a0, e1 = a1, e2 = a2, e3 = a3;
        const float *c = col + q;
        for (int64_t k = 0; k < K; k++, c += P) {
          v4f u = ld4(c), v = ld4(c + 4);
          v4f s0 = {w0[k], w0[k], w0[k], w0[k]}, s1 = {w1[k], w1[k], w1[k], w1[k]};
          v4f s2 = {w2[k], w2[k], w2[k], w2[k]}, s3 = {w3[k], w3[k], w3[k], w3[k]};
          a0 += s0 * u;
          e0 += s0 * v;
          a1 += s1 * u;
          e1 += s1 * v;
          a2 += s2 * u;
          e2 += s2 * v;
          a3 += s3 * u;
          e3 += s3 * v;
        }
        st4(y + o * P + q, a0);
        st4(y + o * P + q + 4, e0);
        st4(y + (o + 1) * P + q, a1);
        st4(y + (o + 1) * P + q + 4, e1);
        st4(y + (o + 2) * P + q, a2);
        st4(y + (o + 2) * P + q + 4, e2);
        st4(y + (o + 3) * P + q, a3);
        st4(y + (o + 3) * P + q + 4, e3);
      }
    }
    /* remaining outputs and columns */
    for (int64_t oo = 0; oo < no; oo++) {
      const float *wo = w + oo * K;
      for (int64_t q = oo < o ? p8 : p0; q < pe; q++) {
        float a = bias ? bias[oo] : 0.0f;
        for (int64_t k = 0; k < K; k++) a += wo[k] * col[k * P + q];
        y[oo * P + q] = a;
      }
    }
  }
}

/* One convolution of the batch; task b computes image b with its own patch buffer, so the
 * result does not depend on the number of threads. */
typedef struct conv_job {
  const float *x, *w, *bias;
  float *y, *col; /* col: N buffers of K * P floats (NULL for pointwise convs) */
  int64_t C, H, W, OC, KH, KW, sh, sw, groups, OH, OW;
  const int64_t *p;
} conv_job;

static void conv_image(void *ctx, size_t b) {
  const conv_job *j = ctx;
  int64_t icg = j->C / j->groups, ocg = j->OC / j->groups, K = icg * j->KH * j->KW;
  int64_t P = j->OH * j->OW;
  float *col = j->col ? j->col + (int64_t)b * K * P : NULL;
  for (int64_t gi = 0; gi < j->groups; gi++) {
    const float *xg = j->x + ((int64_t)b * j->C + gi * icg) * j->H * j->W;
    if (col) im2col(xg, icg, j->H, j->W, j->KH, j->KW, j->sh, j->sw, j->p, j->OH, j->OW, col);
    gemm_rows(j->w + gi * ocg * K, K, col ? col : xg, P, j->bias ? j->bias + gi * ocg : NULL, ocg,
              j->y + ((int64_t)b * j->OC + gi * ocg) * P);
  }
}

static int conv(ev *e, const sf_node *n) {
  const val *x = &e->v[n->in[0]], *w = &e->v[n->in[1]];
  const val *bias = n->n_in > 2 && n->in[2] >= 0 ? &e->v[n->in[2]] : NULL;
  int64_t k[2], st[2], p[4];
  if (attr4(n, k, st, p) || x->rank != 4 || w->rank != 4) return bad(e, n, "bad attributes");
  conv_job j = {.x = x->d,
                .w = w->d,
                .bias = bias ? bias->d : NULL,
                .C = x->dims[1],
                .H = x->dims[2],
                .W = x->dims[3],
                .OC = w->dims[0],
                .KH = k[0],
                .KW = k[1],
                .sh = st[0],
                .sw = st[1],
                .groups = sf__attr_int(n, "group", 1),
                .p = p};
  j.OH = (j.H + p[0] + p[2] - j.KH) / j.sh + 1;
  j.OW = (j.W + p[1] + p[3] - j.KW) / j.sw + 1;
  int64_t N = x->dims[0], dims[4] = {N, j.OC, j.OH, j.OW};
  val *y = out_val(e, n, 4, dims);
  if (!y) return -1;
  j.y = y->d;
  int pointwise =
      j.KH == 1 && j.KW == 1 && j.sh == 1 && j.sw == 1 && !p[0] && !p[1] && !p[2] && !p[3];
  if (!pointwise) {
    int64_t kp = j.C / j.groups * j.KH * j.KW * j.OH * j.OW;
    if (!(j.col = sf__malloc(sizeof(float) * (size_t)(N * kp)))) {
      e->b->rc = SF_ENOMEM;
      return sf__errf(e->b->err, SF_ENOMEM, "out of memory calibrating the model");
    }
  }
  if (e->pool)
    pthreadpool_parallelize_1d(e->pool, conv_image, &j, (size_t)N, 0);
  else
    for (int64_t b = 0; b < N; b++) conv_image(&j, (size_t)b);
  free(j.col);
  return 0;
}

/* Set the moving statistics from x, then apply. */
static int batchnorm(ev *e, const sf_node *n) {
  const val *x = &e->v[n->in[0]], *sc = &e->v[n->in[1]], *bt = &e->v[n->in[2]];
  float *mean = e->g->tensors[n->in[3]].t.data, *var = e->g->tensors[n->in[4]].t.data;
  if (x->rank != 4 || !mean || !var) return bad(e, n, "bad inputs");
  float eps = sf__attr_float(n, "epsilon", 1e-5f);
  int64_t N = x->dims[0], C = x->dims[1], HW = x->dims[2] * x->dims[3];
  val *y = out_val(e, n, 4, x->dims);
  if (!y) return -1;
  for (int64_t c = 0; c < C; c++) {
    double s = 0, s2 = 0;
    for (int64_t b = 0; b < N; b++)
      for (int64_t i = 0; i < HW; i++) s += x->d[(b * C + c) * HW + i];
    double m = s / (double)(N * HW);
    for (int64_t b = 0; b < N; b++)
      for (int64_t i = 0; i < HW; i++) {
        double dv = x->d[(b * C + c) * HW + i] - m;
        s2 += dv * dv;
      }
    double v = s2 / (double)(N * HW);
    mean[c] = (float)(m + mean[c] * sqrt(v)); /* jitter U(-0.1, 0.1) standard deviations */
    var[c] = (float)(v * var[c]);             /* jitter U(0.5, 1.5) */
    float inv = (float)(1.0 / sqrt((double)var[c] + eps));
    float g = sc->d[c], bb = bt->d[c], mc = mean[c];
    for (int64_t b = 0; b < N; b++) {
      const float *xp = x->d + (b * C + c) * HW;
      float *yp = y->d + (b * C + c) * HW;
      for (int64_t i = 0; i < HW; i++) yp[i] = (xp[i] - mc) * inv * g + bb;
    }
  }
  return 0;
}

static int pool(ev *e, const sf_node *n, int is_max) {
  const val *x = &e->v[n->in[0]];
  int64_t k[2], st[2], p[4];
  if (attr4(n, k, st, p) || x->rank != 4) return bad(e, n, "bad attributes");
  int64_t C = x->dims[0] * x->dims[1], H = x->dims[2], W = x->dims[3]; /* planes */
  int64_t OH = (H + p[0] + p[2] - k[0]) / st[0] + 1, OW = (W + p[1] + p[3] - k[1]) / st[1] + 1;
  int64_t dims[4] = {x->dims[0], x->dims[1], OH, OW};
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

/* Add Sub Mul Div: b is a scalar, the same shape as a, per channel ([1,C,1,1] constant) or per
 * image and channel ([N,C,1,1]) of a. */
static int binary(ev *e, const sf_node *n, char op) {
  const val *a = &e->v[n->in[0]], *b = &e->v[n->in[1]];
  if ((op == '+' || op == '*') && numel(b) > numel(a)) {
    const val *t = a;
    a = b;
    b = t;
  }
  int64_t na = numel(a), nb = numel(b);
  int64_t C = a->rank >= 2 ? a->dims[1] : 1, inner = a->rank == 4 ? a->dims[2] * a->dims[3] : 1;
  int per_image = b->rank == 4 && b->dims[0] == a->dims[0] && nb == a->dims[0] * C;
  if (!(nb == 1 || nb == na || per_image || (b->rank == 4 && b->dims[0] == 1 && nb == C)))
    return bad(e, n, "unsupported broadcast");
  val *y = out_val(e, n, a->rank, a->dims);
  if (!y) return -1;
  for (int64_t i = 0; i < na; i++) {
    int64_t j = nb == 1 ? 0 : nb == na ? i : per_image ? i / inner : (i / inner) % C;
    float u = a->d[i], v = b->d[j];
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
    for (int64_t r = 0; r < x->dims[0]; r++) {
      const float *xr = x->d + r * x->dims[1];
      float *yr = y->d + r * x->dims[1];
      double mx = -INFINITY, s = 0;
      for (int64_t i = 0; i < x->dims[1]; i++) mx = xr[i] > mx ? xr[i] : mx;
      for (int64_t i = 0; i < x->dims[1]; i++) s += zexp(xr[i] - mx);
      for (int64_t i = 0; i < x->dims[1]; i++) yr[i] = (float)(zexp(xr[i] - mx) / s);
    }
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

/* Mean entropy of softmax(k * z + bias) over the R rows of z [R, N]. */
static double mean_entropy(const float *z, const float *bias, int64_t R, int64_t N, double k) {
  double h = 0;
  for (int64_t r = 0; r < R; r++) {
    const float *zr = z + r * N;
    double mx = -INFINITY, s = 0, sl = 0;
    for (int64_t j = 0; j < N; j++) {
      double l = k * zr[j] + (bias ? bias[j] : 0.0);
      mx = l > mx ? l : mx;
    }
    for (int64_t j = 0; j < N; j++) {
      double l = k * zr[j] + (bias ? bias[j] : 0.0) - mx, p = zexp(l);
      s += p;
      sl += p * l;
    }
    h += zlog(s) - sl / s; /* H = log s - sum p l / s */
  }
  return h / (double)R;
}

/* Dense layer y = x W + bias. A classifier (output consumed by Softmax) is calibrated: its
 * kernel is scaled by k so that the mean softmax entropy over the batch is ENTROPY_FRAC of the
 * maximum log(classes). He scaling alone leaves the softmax nearly uniform once every BatchNorm
 * normalises. The logits are not centred on their batch mean: for random inputs the pooled
 * features share a large common part, and amplifying only the small input-dependent rest would
 * also amplify float32 rounding (runtimes then disagreed by 4e-4 of the top probability), so the
 * top class of a random input depends little on the input, as with a trained network. */
static int gemm(ev *e, const sf_node *n) {
  const double ENTROPY_FRAC = 0.6;
  const val *x = &e->v[n->in[0]], *w = &e->v[n->in[1]];
  const val *bias = n->n_in > 2 && n->in[2] >= 0 ? &e->v[n->in[2]] : NULL;
  int64_t K = w->dims[0], N = w->dims[1], R = x->dims[0], d[2] = {R, N};
  if (x->rank != 2 || w->rank != 2 || x->dims[1] != K) return bad(e, n, "shape");
  val *y = out_val(e, n, 2, d);
  if (!y) return -1;
  int classifier = 0;
  for (int i = 0; i < e->g->n_nodes; i++)
    classifier |= !strcmp(e->g->nodes[i].op_type, "Softmax") && e->g->nodes[i].in[0] == n->out[0];
  for (int pass = classifier ? 0 : 1; pass < 2; pass++) {
    for (int64_t r = 0; r < R; r++) {
      float *yr = y->d + r * N;
      for (int64_t j = 0; j < N; j++) yr[j] = bias && pass ? bias->d[j] : 0.0f;
      for (int64_t i = 0; i < K; i++)
        for (int64_t j = 0; j < N; j++) yr[j] += x->d[r * K + i] * w->d[i * N + j];
    }
    if (pass) break;
    /* the entropy decreases with the scale: bisect log2(k) in [-20, 20] */
    double target = ENTROPY_FRAC * zlog((double)N), lo = -20, hi = 20;
    for (int it = 0; it < 50; it++) {
      double mid = 0.5 * (lo + hi);
      if (mean_entropy(y->d, bias ? bias->d : NULL, R, N, pow2(mid)) > target)
        lo = mid;
      else
        hi = mid;
    }
    double k = pow2(0.5 * (lo + hi));
    for (int64_t i = 0; i < K * N; i++) w->d[i] = (float)(w->d[i] * k); /* initializer data */
  }
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
    int64_t C = x->dims[0] * x->dims[1], HW = x->dims[2] * x->dims[3];
    int64_t d[4] = {x->dims[0], x->dims[1], 1, 1};
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
    int64_t d[2] = {x->dims[0], numel(x) / x->dims[0]};
    val *y = out_val(e, n, 2, d);
    if (!y) return -1;
    memcpy(y->d, x->d, sizeof(float) * (size_t)numel(x));
    return 0;
  }
  if (!strcmp(op, "Concat")) {
    int64_t c = 0, HW = x->dims[2] * x->dims[3];
    for (int i = 0; i < n->n_in; i++) c += e->v[n->in[i]].dims[1];
    int64_t d[4] = {x->dims[0], c, x->dims[2], x->dims[3]};
    val *y = out_val(e, n, 4, d);
    if (!y) return -1;
    float *o = y->d;
    for (int64_t b = 0; b < x->dims[0]; b++)
      for (int i = 0; i < n->n_in; i++) {
        const val *xi = &e->v[n->in[i]];
        memcpy(o, xi->d + b * xi->dims[1] * HW, sizeof(float) * (size_t)(xi->dims[1] * HW));
        o += xi->dims[1] * HW;
      }
    return 0;
  }
  if (!strcmp(op, "Gemm")) return gemm(e, n);
  return unary(e, n);
}

int sf__zb_calibrate(sf_zb *b) {
  sf_graph *g = b->g;
  /* one thread per batch image at most; without a pool (creation failed) run serially */
  int nt = sf__ncpu() < CALIB_BATCH ? sf__ncpu() : CALIB_BATCH;
  ev e = {.b = b, .g = g, .pool = nt > 1 ? pthreadpool_create((size_t)nt) : NULL};
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
    x->dims[0] = CALIB_BATCH;
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
  if (e.pool) pthreadpool_destroy(e.pool);
  return rc;
}
