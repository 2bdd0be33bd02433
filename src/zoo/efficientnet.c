/* EfficientNetB1 as keras.applications.efficientnet.EfficientNetB1 (width 1.0, depth 1.1),
 * 240x240, inputs are pixels in [0, 255]: Rescaling(1/255) and Normalization (ImageNet mean and
 * variance) inside the model, swish activations, squeeze-and-excitation, Keras 'same' padding
 * (ZeroPadding2D(correct_pad) before stride-2 depthwise convs), BatchNorm epsilon 1e-3.
 * Dropout and drop-connect are the identity at inference and emit no nodes. */
#include <math.h>

#include "zoo/models.h"

#define EPS 1e-3f

typedef struct block_args {
  int kernel_size, repeats, filters_in, filters_out, expand_ratio, strides;
  double se_ratio;
} block_args;

static const block_args DEFAULT_BLOCKS_ARGS[7] = {
    {3, 1, 32, 16, 1, 1, 0.25},   {3, 2, 16, 24, 6, 2, 0.25},  {5, 2, 24, 40, 6, 2, 0.25},
    {3, 3, 40, 80, 6, 2, 0.25},   {5, 3, 80, 112, 6, 1, 0.25}, {5, 4, 112, 192, 6, 2, 0.25},
    {3, 1, 192, 320, 6, 1, 0.25},
};

static int round_filters(int filters, double width) {
  const int divisor = 8;
  double f = filters * width;
  int nf = (int)(f + divisor / 2.0) / divisor * divisor;
  if (nf < divisor) nf = divisor;
  if (nf < 0.9 * f) nf += divisor;
  return nf;
}

static int round_repeats(int repeats, double depth) {
  return (int)ceil(depth * repeats);
}

/* keras efficientnet.block (id_skip True) */
static int block(sf_zb *b, int inputs, const char *name, int filters_in, int filters_out,
                 int kernel_size, int strides, int expand_ratio, double se_ratio) {
  int filters = filters_in * expand_ratio, x = inputs;
  if (expand_ratio != 1) {
    x = sf__zb_conv(b, x, sf__zb_name(b, "%sexpand_conv", name), filters, 1, 1, 1, SF_ZB_VALID, 1,
                    0);
    x = sf__zb_bn(b, x, sf__zb_name(b, "%sexpand_bn", name), EPS, 1);
    x = sf__zb_swish(b, x, sf__zb_name(b, "%sexpand_activation", name));
  }
  sf_zb_pad pad = strides == 2 ? sf__zb_correct_pad(b, x, kernel_size)
                               : sf__zb_same(b, x, kernel_size, kernel_size, 1);
  x = sf__zb_conv(b, x, sf__zb_name(b, "%sdwconv", name), filters, kernel_size, kernel_size,
                  strides, pad, filters, 0);
  x = sf__zb_bn(b, x, sf__zb_name(b, "%sbn", name), EPS, 1);
  x = sf__zb_swish(b, x, sf__zb_name(b, "%sactivation", name));
  if (se_ratio > 0 && se_ratio <= 1) {
    int filters_se = (int)(filters_in * se_ratio);
    if (filters_se < 1) filters_se = 1;
    /* GlobalAveragePooling2D + Reshape(1,1,C) = GlobalAveragePool keeping [1,C,1,1] */
    int se = sf__zb_gap(b, x, sf__zb_name(b, "%sse_squeeze", name));
    se = sf__zb_conv(b, se, sf__zb_name(b, "%sse_reduce", name), filters_se, 1, 1, 1, SF_ZB_VALID,
                     1, 1);
    se = sf__zb_swish(b, se, sf__zb_name(b, "%sse_reduce_activation", name));
    se = sf__zb_conv(b, se, sf__zb_name(b, "%sse_expand", name), filters, 1, 1, 1, SF_ZB_VALID, 1,
                     1);
    se = sf__zb_sigmoid(b, se, sf__zb_name(b, "%sse_expand_activation", name));
    x = sf__zb_mul(b, x, se, sf__zb_name(b, "%sse_excite", name));
  }
  x = sf__zb_conv(b, x, sf__zb_name(b, "%sproject_conv", name), filters_out, 1, 1, 1, SF_ZB_VALID,
                  1, 0);
  x = sf__zb_bn(b, x, sf__zb_name(b, "%sproject_bn", name), EPS, 1);
  if (strides == 1 && filters_in == filters_out)
    x = sf__zb_add(b, x, inputs, sf__zb_name(b, "%sadd", name));
  return x;
}

static int efficientnet(sf_zb *b, double width, double depth, int size) {
  int x = sf__zb_input(b, "input_1", 3, size, size, 0.0, 255.0);
  /* Rescaling(1/255) */
  x = sf__zb_scale(b, x, 1.0 / 255.0, "rescaling");
  /* Normalization(axis=-1): (x - mean) / sqrt(variance), with the ImageNet statistics; Keras
   * also takes max(sqrt(variance), 1e-7), a no-op for these values */
  static const float mean[3] = {0.485f, 0.456f, 0.406f};
  static const float var[3] = {0.229f * 0.229f, 0.224f * 0.224f, 0.225f * 0.225f};
  int64_t d[4] = {1, 3, 1, 1};
  int m = sf__zb_const(b, "normalization/mean", 4, d, mean);
  int v = sf__zb_const(b, "normalization/variance", 4, d, var);
  x = sf__zb_norm(b, x, m, v, "normalization");
  x = sf__zb_conv(b, x, "stem_conv", round_filters(32, width), 3, 3, 2, sf__zb_correct_pad(b, x, 3),
                  1, 0);
  x = sf__zb_bn(b, x, "stem_bn", EPS, 1);
  x = sf__zb_swish(b, x, "stem_activation");
  for (int i = 0; i < 7; i++) {
    block_args a = DEFAULT_BLOCKS_ARGS[i];
    a.filters_in = round_filters(a.filters_in, width);
    a.filters_out = round_filters(a.filters_out, width);
    int reps = round_repeats(a.repeats, depth);
    for (int j = 0; j < reps; j++) {
      if (j > 0) {
        a.strides = 1;
        a.filters_in = a.filters_out;
      }
      char name[32];
      snprintf(name, sizeof name, "block%d%c_", i + 1, 'a' + j);
      x = block(b, x, name, a.filters_in, a.filters_out, a.kernel_size, a.strides, a.expand_ratio,
                a.se_ratio);
    }
  }
  x = sf__zb_conv(b, x, "top_conv", round_filters(1280, width), 1, 1, 1, SF_ZB_VALID, 1, 0);
  x = sf__zb_bn(b, x, "top_bn", EPS, 1);
  x = sf__zb_swish(b, x, "top_activation");
  x = sf__zb_gap(b, x, "avg_pool");
  x = sf__zb_flatten(b, x, "avg_pool_flat");
  x = sf__zb_dense(b, x, "predictions", 1000, 1);
  return sf__zb_softmax(b, x, "predictions_softmax");
}

int sf__zoo_build_efficientnetb1(sf_zb *b) {
  return efficientnet(b, 1.0, 1.1, 240);
}
