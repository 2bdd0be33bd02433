/* Model builder for the zoo: Keras-style layers emitted as ONNX (opset 13) nodes into a graph IR,
 * with deterministic pseudo-random weights.
 *
 * Layers take and return tensor ids. Errors are sticky: the first failure is recorded in the
 * builder (b->rc, message in *b->err) and every later call returns -1 without doing anything,
 * so architecture code chains calls and checks once at the end (sf__zb_finish).
 *
 * Shapes are tracked per tensor (NCHW, batch 1) so that Keras 'same' padding can be computed;
 * only the graph input and output shapes are written to the graph.
 *
 * Weight scheme (one xoshiro256** stream seeded by splitmix64(seed), uniform distributions
 * only):
 *   conv / dense kernels  U(-a, a), a = sqrt(6 / fan_in)  (standard deviation sqrt(2 / fan_in))
 *   biases                U(-0.1, 0.1)
 *   BN gamma              U(0.8, 1.2)       beta U(-0.1, 0.1)
 * then sf__zb_finish calibrates (calib.c): it runs the graph in plain C on a batch of inputs
 * drawn uniformly from the declared input range and sets, per channel c of each BatchNorm
 * input x (statistics over the batch),
 *   moving_mean      = mean_c(x) + U(-0.1, 0.1) * std_c(x)
 *   moving_variance  = var_c(x) * U(0.5, 1.5)
 * so every BatchNorm really normalises and activations stay O(1) through any depth; and it
 * scales the classifier's kernel and centres its bias so that the softmax is input-dependent
 * with a mean entropy of 3/4 of the maximum, as a trained network's. The calibration is
 * deterministic on every IEEE-754 platform, so the same seed gives byte-identical weights.
 *
 * Non-trainable constants (Clip bounds, residual scales, the unit scale of BatchNorm layers
 * without a learned scale, the input rescaling) are stored as float64 initializers and Cast to
 * float: they are hyper-parameters in Keras, not weights, and this keeps the count of float
 * initializer elements equal to the Keras parameter count.
 */
#ifndef SF_ZOO_BUILDER_H
#define SF_ZOO_BUILDER_H

#include "graph/graph.h"

typedef struct sf_zb_info {
  int rank; /* 4 (N,C,H,W) or 2 (N,C) */
  int64_t d[4];
} sf_zb_info;

typedef struct sf_zb_cache {
  double v; /* hyper value, or channel count for unit-scale tensors */
  int id;
} sf_zb_cache;

typedef struct sf_zb {
  sf_graph *g;
  sf_err *err;
  int rc; /* first error, sticky */
  uint64_t seed;
  uint64_t s[4]; /* xoshiro256** state */
  float *buf;    /* scratch for weights */
  size_t cap;
  sf_zb_info *info; /* per tensor id */
  int cap_info;
  sf_zb_cache *hyper, *ones; /* shared non-trainable constants */
  int n_hyper, n_ones, cap_hyper, cap_ones;
  int input;           /* graph input id */
  double in_lo, in_hi; /* calibration input range */
  char names[4][256];  /* sf__zb_name ring */
  int name_i;
} sf_zb;

typedef struct sf_zb_pad {
  int t, l, b, r; /* top, left, bottom, right */
} sf_zb_pad;

int sf__zb_init(sf_zb *b, const char *model_name, uint64_t seed, sf_err *err);
/* Free everything (including the graph unless sf__zb_finish handed it out). */
void sf__zb_deinit(sf_zb *b);
/* Calibrate the BatchNorm statistics, set the single output and the graph metadata; on
 * success *out owns the graph. */
int sf__zb_finish(sf_zb *b, int out, sf_graph **g);

/* Graph input [1,c,h,w] named name; the weights are calibrated for inputs uniform in
 * [lo, hi). */
int sf__zb_input(sf_zb *b, const char *name, int c, int h, int w, double lo, double hi);

/* Padding: explicit, symmetric, or TensorFlow 'same' for the given input, kernel, stride. */
sf_zb_pad sf__zb_pads(int t, int l, int bt, int r);
sf_zb_pad sf__zb_sym(int p);
sf_zb_pad sf__zb_same(sf_zb *b, int x, int kh, int kw, int stride);
/* Keras imagenet_utils.correct_pad: the ZeroPadding2D before a stride-2 'valid' conv. */
sf_zb_pad sf__zb_correct_pad(sf_zb *b, int x, int k);
#define SF_ZB_VALID sf__zb_pads(0, 0, 0, 0)

/* Conv2D: oc filters, kernel kh x kw, stride, pads, groups (in_c for depthwise), bias. */
int sf__zb_conv(sf_zb *b, int x, const char *name, int oc, int kh, int kw, int stride,
                sf_zb_pad pad, int groups, int bias);
/* BatchNormalization (inference): gamma (unless !scale), beta, moving mean / variance. */
int sf__zb_bn(sf_zb *b, int x, const char *name, float eps, int scale);

int sf__zb_relu(sf_zb *b, int x, const char *name);
int sf__zb_relu6(sf_zb *b, int x, const char *name); /* Clip(x, 0, 6) */
int sf__zb_sigmoid(sf_zb *b, int x, const char *name);
int sf__zb_swish(sf_zb *b, int x, const char *name);     /* x * Sigmoid(x) */
int sf__zb_hardswish(sf_zb *b, int x, const char *name); /* x * HardSigmoid(x; 1/6, 1/2) */

int sf__zb_add(sf_zb *b, int x, int y, const char *name);
int sf__zb_mul(sf_zb *b, int x, int y, const char *name);      /* broadcasting (SE: [1,C,1,1]) */
int sf__zb_scale(sf_zb *b, int x, double s, const char *name); /* x * s */
int sf__zb_concat(sf_zb *b, int n, const int *xs, const char *name); /* channel axis */

int sf__zb_maxpool(sf_zb *b, int x, const char *name, int k, int stride, sf_zb_pad pad);
int sf__zb_avgpool(sf_zb *b, int x, const char *name, int k, int stride,
                   sf_zb_pad pad);                     /* pads excluded */
int sf__zb_gap(sf_zb *b, int x, const char *name);     /* [1,C,H,W] -> [1,C,1,1] */
int sf__zb_flatten(sf_zb *b, int x, const char *name); /* -> [1, C*H*W] */
int sf__zb_dense(sf_zb *b, int x, const char *name, int units,
                 int bias); /* Gemm, kernel [in,out] */
int sf__zb_softmax(sf_zb *b, int x, const char *name);
/* Keras Normalization: (x - mean) / Sqrt(var), mean and var constants broadcasting to x. */
int sf__zb_norm(sf_zb *b, int x, int mean, int var, const char *name);

/* A float initializer with explicit values (counted as parameters). */
int sf__zb_const(sf_zb *b, const char *name, int rank, const int64_t *dims, const float *v);
/* A float scalar hyper-parameter (Cast from a float64 initializer; shared per value). */
int sf__zb_hyper(sf_zb *b, double v);

/* Layer name from a format, in a ring of 4 buffers owned by b (valid for the next 3 calls). */
const char *sf__zb_name(sf_zb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The calibration pass (calib.c), run by sf__zb_finish. */
int sf__zb_calibrate(sf_zb *b);

static inline int sf__zb_channels(const sf_zb *b, int x) {
  return x >= 0 ? (int)b->info[x].d[1] : 0;
}
static inline int64_t sf__zb_dim(const sf_zb *b, int x, int i) {
  return x >= 0 ? b->info[x].d[i] : 0;
}

#endif
