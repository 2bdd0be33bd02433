/* MobileNetV2 as keras.applications.mobilenet_v2.MobileNetV2(alpha=1.0), 224x224: inverted
 * residual blocks, ReLU6 (Clip 0..6), BatchNorm epsilon 1e-3, no conv biases. */
#include "zoo/models.h"

#define EPS 1e-3f

static int make_divisible(double v, int divisor) {
  int nv = (int)(v + divisor / 2.0) / divisor * divisor;
  if (nv < divisor) nv = divisor;
  if (nv < 0.9 * v) nv += divisor;
  return nv;
}

/* keras mobilenet_v2._inverted_res_block (alpha 1) */
static int inverted_res_block(sf_zb *b, int inputs, int expansion, int stride, int filters,
                              int block_id) {
  int in_c = sf__zb_channels(b, inputs);
  int pw = make_divisible(filters, 8);
  int x = inputs;
  char prefix[32];
  if (block_id) {
    snprintf(prefix, sizeof prefix, "block_%d_", block_id);
    x = sf__zb_conv(b, x, sf__zb_name(b, "%sexpand", prefix), expansion * in_c, 1, 1, 1,
                    SF_ZB_VALID, 1, 0);
    x = sf__zb_bn(b, x, sf__zb_name(b, "%sexpand_BN", prefix), EPS, 1);
    x = sf__zb_relu6(b, x, sf__zb_name(b, "%sexpand_relu", prefix));
  } else {
    snprintf(prefix, sizeof prefix, "expanded_conv_");
  }
  int c = sf__zb_channels(b, x);
  /* stride 2: ZeroPadding2D(correct_pad) + valid; stride 1: 'same' */
  sf_zb_pad pad = stride == 2 ? sf__zb_correct_pad(b, x, 3) : sf__zb_same(b, x, 3, 3, 1);
  x = sf__zb_conv(b, x, sf__zb_name(b, "%sdepthwise", prefix), c, 3, 3, stride, pad, c, 0);
  x = sf__zb_bn(b, x, sf__zb_name(b, "%sdepthwise_BN", prefix), EPS, 1);
  x = sf__zb_relu6(b, x, sf__zb_name(b, "%sdepthwise_relu", prefix));
  x = sf__zb_conv(b, x, sf__zb_name(b, "%sproject", prefix), pw, 1, 1, 1, SF_ZB_VALID, 1, 0);
  x = sf__zb_bn(b, x, sf__zb_name(b, "%sproject_BN", prefix), EPS, 1);
  if (in_c == pw && stride == 1) x = sf__zb_add(b, inputs, x, sf__zb_name(b, "%sadd", prefix));
  return x;
}

int sf__zoo_build_mobilenetv2(sf_zb *b) {
  static const struct {
    int filters, stride, expansion;
  } blocks[17] = {{16, 1, 1}, {24, 2, 6},  {24, 1, 6},  {32, 2, 6},  {32, 1, 6}, {32, 1, 6},
                  {64, 2, 6}, {64, 1, 6},  {64, 1, 6},  {64, 1, 6},  {96, 1, 6}, {96, 1, 6},
                  {96, 1, 6}, {160, 2, 6}, {160, 1, 6}, {160, 1, 6}, {320, 1, 6}};
  /* 'tf' preprocessing: pixels scaled to [-1, 1] */
  int x = sf__zb_input(b, "input_1", 3, 224, 224, -1.0, 1.0);
  x = sf__zb_conv(b, x, "Conv1", make_divisible(32, 8), 3, 3, 2, sf__zb_same(b, x, 3, 3, 2), 1, 0);
  x = sf__zb_bn(b, x, "bn_Conv1", EPS, 1);
  x = sf__zb_relu6(b, x, "Conv1_relu");
  for (int i = 0; i < 17; i++)
    x = inverted_res_block(b, x, blocks[i].expansion, blocks[i].stride, blocks[i].filters, i);
  x = sf__zb_conv(b, x, "Conv_1", 1280, 1, 1, 1, SF_ZB_VALID, 1, 0);
  x = sf__zb_bn(b, x, "Conv_1_bn", EPS, 1);
  x = sf__zb_relu6(b, x, "out_relu");
  x = sf__zb_gap(b, x, "global_average_pooling2d");
  x = sf__zb_flatten(b, x, "global_average_pooling2d_flat");
  x = sf__zb_dense(b, x, "predictions", 1000, 1);
  return sf__zb_softmax(b, x, "predictions_softmax");
}
