/* ResNet50 (v1) as keras.applications.resnet.ResNet50: conv layers with bias, BatchNorm
 * epsilon 1.001e-5, stride on the first 1x1 conv of each projection block, 224x224. */
#include "zoo/models.h"

#define EPS 1.001e-5f

/* keras resnet.block1 */
static int block1(sf_zb *b, int x, int filters, int stride, int conv_shortcut, const char *name) {
  int sc = x;
  if (conv_shortcut) {
    sc = sf__zb_conv(b, x, sf__zb_name(b, "%s_0_conv", name), 4 * filters, 1, 1, stride,
                     SF_ZB_VALID, 1, 1);
    sc = sf__zb_bn(b, sc, sf__zb_name(b, "%s_0_bn", name), EPS, 1);
  }
  x = sf__zb_conv(b, x, sf__zb_name(b, "%s_1_conv", name), filters, 1, 1, stride, SF_ZB_VALID, 1,
                  1);
  x = sf__zb_bn(b, x, sf__zb_name(b, "%s_1_bn", name), EPS, 1);
  x = sf__zb_relu(b, x, sf__zb_name(b, "%s_1_relu", name));
  x = sf__zb_conv(b, x, sf__zb_name(b, "%s_2_conv", name), filters, 3, 3, 1,
                  sf__zb_same(b, x, 3, 3, 1), 1, 1);
  x = sf__zb_bn(b, x, sf__zb_name(b, "%s_2_bn", name), EPS, 1);
  x = sf__zb_relu(b, x, sf__zb_name(b, "%s_2_relu", name));
  x = sf__zb_conv(b, x, sf__zb_name(b, "%s_3_conv", name), 4 * filters, 1, 1, 1, SF_ZB_VALID, 1, 1);
  x = sf__zb_bn(b, x, sf__zb_name(b, "%s_3_bn", name), EPS, 1);
  x = sf__zb_add(b, sc, x, sf__zb_name(b, "%s_add", name));
  return sf__zb_relu(b, x, sf__zb_name(b, "%s_out", name));
}

/* keras resnet.stack1 */
static int stack1(sf_zb *b, int x, int filters, int blocks, int stride1, const char *name) {
  char nm[64];
  snprintf(nm, sizeof nm, "%s_block1", name);
  x = block1(b, x, filters, stride1, 1, nm);
  for (int i = 2; i <= blocks; i++) {
    snprintf(nm, sizeof nm, "%s_block%d", name, i);
    x = block1(b, x, filters, 1, 0, nm);
  }
  return x;
}

int sf__zoo_build_resnet50(sf_zb *b) {
  /* caffe-style preprocessed input: BGR pixels minus the ImageNet mean */
  int x = sf__zb_input(b, "input_1", 3, 224, 224, -128.0, 128.0);
  /* conv1_pad (ZeroPadding2D 3) + valid conv = conv with pads 3 */
  x = sf__zb_conv(b, x, "conv1_conv", 64, 7, 7, 2, sf__zb_sym(3), 1, 1);
  x = sf__zb_bn(b, x, "conv1_bn", EPS, 1);
  x = sf__zb_relu(b, x, "conv1_relu");
  /* pool1_pad (ZeroPadding2D 1) + MaxPooling2D(3, 2): the input is >= 0 after ReLU, so zero
   * padding equals MaxPool's own padding */
  x = sf__zb_maxpool(b, x, "pool1_pool", 3, 2, sf__zb_sym(1));
  x = stack1(b, x, 64, 3, 1, "conv2");
  x = stack1(b, x, 128, 4, 2, "conv3");
  x = stack1(b, x, 256, 6, 2, "conv4");
  x = stack1(b, x, 512, 3, 2, "conv5");
  x = sf__zb_gap(b, x, "avg_pool");
  x = sf__zb_flatten(b, x, "avg_pool_flat");
  x = sf__zb_dense(b, x, "predictions", 1000, 1);
  return sf__zb_softmax(b, x, "predictions_softmax");
}
