/* Small test models (32x32 inputs, 10 classes): quick to run, yet with the structures that
 * matter to the runtime and to pipeline cuts (BatchNorm, fusable activations, residual adds,
 * multi-branch concatenations, scaled residuals, pooling, dense head). Weights are calibrated
 * for inputs in [-1, 1]. */
#include "zoo/models.h"

#define EPS 1e-3f

static int conv_bn_relu(sf_zb *b, int x, const char *name, int oc, int k, int stride) {
  x = sf__zb_conv(b, x, name, oc, k, k, stride, sf__zb_same(b, x, k, k, stride), 1, 0);
  x = sf__zb_bn(b, x, sf__zb_name(b, "%s_bn", name), EPS, 1);
  return sf__zb_relu(b, x, sf__zb_name(b, "%s_relu", name));
}

/* tiny-cnn: conv-bn-relu stem, a residual block, max pool, conv with bias + relu, head. */
int sf__zoo_build_tiny_cnn(sf_zb *b) {
  int x = sf__zb_input(b, "input", 3, 32, 32, -1.0, 1.0);
  x = conv_bn_relu(b, x, "conv1", 16, 3, 1); /* 16 x 32 x 32 */
  x = conv_bn_relu(b, x, "conv2", 32, 3, 2); /* 32 x 16 x 16 */
  int r = conv_bn_relu(b, x, "res_a", 32, 3, 1);
  r = sf__zb_conv(b, r, "res_b", 32, 3, 3, 1, sf__zb_same(b, r, 3, 3, 1), 1, 0);
  r = sf__zb_bn(b, r, "res_b_bn", EPS, 1);
  x = sf__zb_add(b, x, r, "res_add");
  x = sf__zb_relu(b, x, "res_relu");
  x = sf__zb_maxpool(b, x, "pool", 2, 2, SF_ZB_VALID); /* 32 x 8 x 8 */
  x = sf__zb_conv(b, x, "conv3", 64, 3, 3, 1, sf__zb_same(b, x, 3, 3, 1), 1, 1);
  x = sf__zb_relu(b, x, "conv3_relu"); /* 64 x 8 x 8 */
  x = sf__zb_gap(b, x, "gap");
  x = sf__zb_flatten(b, x, "flatten");
  x = sf__zb_dense(b, x, "dense", 10, 1);
  return sf__zb_softmax(b, x, "softmax");
}

/* conv + BatchNorm(scale=False) + ReLU, Inception style */
static int cbn(sf_zb *b, int x, const char *name, int oc, int kh, int kw, int stride, int same) {
  sf_zb_pad pad = same ? sf__zb_same(b, x, kh, kw, stride) : SF_ZB_VALID;
  x = sf__zb_conv(b, x, name, oc, kh, kw, stride, pad, 1, 0);
  x = sf__zb_bn(b, x, sf__zb_name(b, "%s_bn", name), EPS, 0);
  return sf__zb_relu(b, x, sf__zb_name(b, "%s_ac", name));
}

/* tiny-inception: stem, an Inception-A module (4 branches), a reduction (3 branches), an
 * Inception-ResNet module with a scaled residual, hard-swish, head. Every cut through a module
 * is crossed by several tensors. */
int sf__zoo_build_tiny_inception(sf_zb *b) {
  int x = sf__zb_input(b, "input", 3, 32, 32, -1.0, 1.0);
  x = cbn(b, x, "stem", 16, 3, 3, 2, 1); /* 16 x 16 x 16 */

  int br[4];
  br[0] = cbn(b, x, "a_b0", 16, 1, 1, 1, 1);
  br[1] = cbn(b, cbn(b, x, "a_b1_1", 12, 1, 1, 1, 1), "a_b1_2", 16, 3, 3, 1, 1);
  br[2] = cbn(b, x, "a_b2_1", 8, 1, 1, 1, 1);
  br[2] = cbn(b, br[2], "a_b2_2", 12, 3, 3, 1, 1);
  br[2] = cbn(b, br[2], "a_b2_3", 12, 3, 3, 1, 1);
  br[3] = sf__zb_avgpool(b, x, "a_pool", 3, 1, sf__zb_same(b, x, 3, 3, 1));
  br[3] = cbn(b, br[3], "a_b3", 8, 1, 1, 1, 1);
  x = sf__zb_concat(b, 4, br, "mixed_a"); /* 52 x 16 x 16 */

  br[0] = cbn(b, x, "r_b0", 32, 3, 3, 2, 0);
  br[1] = cbn(b, cbn(b, x, "r_b1_1", 16, 1, 1, 1, 1), "r_b1_2", 24, 3, 3, 2, 0);
  br[2] = sf__zb_maxpool(b, x, "r_pool", 3, 2, SF_ZB_VALID);
  x = sf__zb_concat(b, 3, br, "mixed_r"); /* 108 x 7 x 7 */

  br[0] = cbn(b, x, "b_b0", 32, 1, 1, 1, 1);
  br[1] = cbn(b, x, "b_b1_1", 16, 1, 1, 1, 1);
  br[1] = cbn(b, br[1], "b_b1_2", 24, 1, 3, 1, 1);
  br[1] = cbn(b, br[1], "b_b1_3", 32, 3, 1, 1, 1);
  int mixed = sf__zb_concat(b, 2, br, "b_mixed");
  int up = sf__zb_conv(b, mixed, "b_up", sf__zb_channels(b, x), 1, 1, 1, SF_ZB_VALID, 1, 1);
  up = sf__zb_scale(b, up, 0.2, "b_scale");
  x = sf__zb_add(b, x, up, "b_add");
  x = sf__zb_relu(b, x, "b_ac"); /* 108 x 7 x 7 */

  x = sf__zb_conv(b, x, "top", 128, 1, 1, 1, SF_ZB_VALID, 1, 0);
  x = sf__zb_bn(b, x, "top_bn", EPS, 1);
  x = sf__zb_hardswish(b, x, "top_hswish");
  x = sf__zb_gap(b, x, "gap");
  x = sf__zb_flatten(b, x, "flatten");
  x = sf__zb_dense(b, x, "dense", 10, 1);
  return sf__zb_softmax(b, x, "softmax");
}
