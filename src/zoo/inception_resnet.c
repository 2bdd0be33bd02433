/* InceptionResNetV2 as keras.applications.inception_resnet_v2.InceptionResNetV2, 299x299:
 * conv2d_bn = Conv2D without bias + BatchNormalization(scale=False, epsilon 1e-3) + ReLU; the
 * residual "up" convs of the block35/17/8 have a bias and no BatchNorm; residuals are scaled
 * (x + scale * up) before the block's ReLU. Layer names follow Keras' automatic naming. */
#include "zoo/models.h"

#define EPS 1e-3f

typedef struct irv2 {
  sf_zb *b;
  int n_conv; /* Keras auto-name counter (conv2d_N) */
} irv2;

/* keras inception_resnet_v2.conv2d_bn: padding 1 = 'same', 0 = 'valid' */
static int conv2d_bn(irv2 *m, int x, int filters, int kh, int kw, int strides, int same, int relu,
                     int use_bias, const char *name) {
  sf_zb *b = m->b;
  char cn[64];
  if (name)
    snprintf(cn, sizeof cn, "%s", name);
  else if (m->n_conv)
    snprintf(cn, sizeof cn, "conv2d_%d", m->n_conv);
  else
    snprintf(cn, sizeof cn, "conv2d");
  m->n_conv++;
  sf_zb_pad pad = same ? sf__zb_same(b, x, kh, kw, strides) : SF_ZB_VALID;
  x = sf__zb_conv(b, x, cn, filters, kh, kw, strides, pad, 1, use_bias);
  if (!use_bias) x = sf__zb_bn(b, x, sf__zb_name(b, "%s_bn", cn), EPS, 0);
  if (relu) x = sf__zb_relu(b, x, sf__zb_name(b, "%s_ac", cn));
  return x;
}

#define CBN(x, f, kh, kw) conv2d_bn(m, x, f, kh, kw, 1, 1, 1, 0, NULL)
#define CBN_V(x, f, kh, kw, s) conv2d_bn(m, x, f, kh, kw, s, 0, 1, 0, NULL)

static int ir_block(irv2 *m, int x, double scale, int type, int idx, int activation) {
  sf_zb *b = m->b;
  int br[3], n;
  const char *tn = type == 35 ? "block35" : type == 17 ? "block17" : "block8";
  if (type == 35) {
    br[0] = CBN(x, 32, 1, 1);
    br[1] = CBN(CBN(x, 32, 1, 1), 32, 3, 3);
    br[2] = CBN(CBN(CBN(x, 32, 1, 1), 48, 3, 3), 64, 3, 3);
    n = 3;
  } else if (type == 17) {
    br[0] = CBN(x, 192, 1, 1);
    br[1] = CBN(CBN(CBN(x, 128, 1, 1), 160, 1, 7), 192, 7, 1);
    n = 2;
  } else {
    br[0] = CBN(x, 192, 1, 1);
    br[1] = CBN(CBN(CBN(x, 192, 1, 1), 224, 1, 3), 256, 3, 1);
    n = 2;
  }
  char bn[32];
  snprintf(bn, sizeof bn, "%s_%d", tn, idx);
  int mixed = sf__zb_concat(b, n, br, sf__zb_name(b, "%s_mixed", bn));
  int up =
      conv2d_bn(m, mixed, sf__zb_channels(b, x), 1, 1, 1, 1, 0, 1, sf__zb_name(b, "%s_conv", bn));
  /* Lambda: inputs[0] + inputs[1] * scale (a multiply by 1.0 is left out) */
  if (scale != 1.0) up = sf__zb_scale(b, up, scale, sf__zb_name(b, "%s_scale", bn));
  x = sf__zb_add(b, x, up, bn);
  if (activation) x = sf__zb_relu(b, x, sf__zb_name(b, "%s_ac", bn));
  return x;
}

int sf__zoo_build_inceptionresnetv2(sf_zb *b) {
  irv2 mm = {.b = b}, *m = &mm;
  /* 'tf' preprocessing: pixels scaled to [-1, 1] */
  int x = sf__zb_input(b, "input_1", 3, 299, 299, -1.0, 1.0);
  /* stem: 35 x 35 x 192 */
  x = CBN_V(x, 32, 3, 3, 2);
  x = CBN_V(x, 32, 3, 3, 1);
  x = CBN(x, 64, 3, 3);
  x = sf__zb_maxpool(b, x, "max_pooling2d", 3, 2, SF_ZB_VALID);
  x = CBN_V(x, 80, 1, 1, 1);
  x = CBN_V(x, 192, 3, 3, 1);
  x = sf__zb_maxpool(b, x, "max_pooling2d_1", 3, 2, SF_ZB_VALID);

  /* mixed 5b (Inception-A): 35 x 35 x 320 */
  int br[4];
  br[0] = CBN(x, 96, 1, 1);
  br[1] = CBN(CBN(x, 48, 1, 1), 64, 5, 5);
  br[2] = CBN(CBN(CBN(x, 64, 1, 1), 96, 3, 3), 96, 3, 3);
  /* AveragePooling2D(3, 1, 'same'): TensorFlow excludes the padding from the average */
  br[3] =
      CBN(sf__zb_avgpool(b, x, "average_pooling2d", 3, 1, sf__zb_same(b, x, 3, 3, 1)), 64, 1, 1);
  x = sf__zb_concat(b, 4, br, "mixed_5b");

  for (int i = 1; i <= 10; i++) x = ir_block(m, x, 0.17, 35, i, 1);

  /* mixed 6a (Reduction-A): 17 x 17 x 1088 */
  br[0] = CBN_V(x, 384, 3, 3, 2);
  br[1] = CBN_V(CBN(CBN(x, 256, 1, 1), 256, 3, 3), 384, 3, 3, 2);
  br[2] = sf__zb_maxpool(b, x, "max_pooling2d_2", 3, 2, SF_ZB_VALID);
  x = sf__zb_concat(b, 3, br, "mixed_6a");

  for (int i = 1; i <= 20; i++) x = ir_block(m, x, 0.1, 17, i, 1);

  /* mixed 7a (Reduction-B): 8 x 8 x 2080 */
  br[0] = CBN_V(CBN(x, 256, 1, 1), 384, 3, 3, 2);
  br[1] = CBN_V(CBN(x, 256, 1, 1), 288, 3, 3, 2);
  br[2] = CBN_V(CBN(CBN(x, 256, 1, 1), 288, 3, 3), 320, 3, 3, 2);
  br[3] = sf__zb_maxpool(b, x, "max_pooling2d_3", 3, 2, SF_ZB_VALID);
  x = sf__zb_concat(b, 4, br, "mixed_7a");

  for (int i = 1; i <= 9; i++) x = ir_block(m, x, 0.2, 8, i, 1);
  x = ir_block(m, x, 1.0, 8, 10, 0);

  /* final convolution block: 8 x 8 x 1536 */
  x = conv2d_bn(m, x, 1536, 1, 1, 1, 1, 1, 0, "conv_7b");
  x = sf__zb_gap(b, x, "avg_pool");
  x = sf__zb_flatten(b, x, "avg_pool_flat");
  x = sf__zb_dense(b, x, "predictions", 1000, 1);
  return sf__zb_softmax(b, x, "predictions_softmax");
}
