/* Model zoo registry: names, input shapes, parameter counts and the build entry points. */
#include "zoo/zoo.h"

#include <string.h>

#include "onnx/onnx.h"
#include "zoo/models.h"

typedef struct zoo_model {
  sf_zoo_entry e;
  int (*build)(sf_zb *b);
} zoo_model;

/* params: float initializer elements of the generated model (checked by tests/unit_zoo.c).
 * They equal Keras' count_params() except for EfficientNetB1, whose Normalization layer also
 * counts its int64 sample `count` (1), which inference never reads (docs/zoo.md). */
static const zoo_model MODELS[] = {
    {{"resnet50", "Keras ResNet50 (v1, conv biases)", 3, 224, 224, 1000, 25636712, 25636712,
      "caffe-style: BGR pixels minus the ImageNet mean, about [-128, 128]"},
     sf__zoo_build_resnet50},
    {{"mobilenetv2", "Keras MobileNetV2 (alpha 1.0)", 3, 224, 224, 1000, 3538984, 3538984,
      "pixels scaled to [-1, 1]"},
     sf__zoo_build_mobilenetv2},
    {{"efficientnetb1", "Keras EfficientNetB1 (with its Rescaling and Normalization)", 3, 240, 240,
      1000, 7856238, 7856239, "pixels in [0, 255]"},
     sf__zoo_build_efficientnetb1},
    {{"inceptionresnetv2", "Keras InceptionResNetV2", 3, 299, 299, 1000, 55873736, 55873736,
      "pixels scaled to [-1, 1]"},
     sf__zoo_build_inceptionresnetv2},
    {{"tiny-cnn", "small CNN: conv/BN/ReLU, residual add, pooling, dense", 3, 32, 32, 10, 43066, 0,
      "values in [-1, 1]"},
     sf__zoo_build_tiny_cnn},
    {{"tiny-inception", "small Inception / Inception-ResNet style multi-branch model", 3, 32, 32,
      10, 56402, 0, "values in [-1, 1]"},
     sf__zoo_build_tiny_inception},
};

#define N_MODELS ((int)(sizeof MODELS / sizeof MODELS[0]))

int sf__zoo_count(void) {
  return N_MODELS;
}

const sf_zoo_entry *sf__zoo_get(int i) {
  return i >= 0 && i < N_MODELS ? &MODELS[i].e : NULL;
}

static const zoo_model *find(const char *name) {
  for (int i = 0; name && i < N_MODELS; i++)
    if (!strcmp(MODELS[i].e.name, name)) return &MODELS[i];
  return NULL;
}

const sf_zoo_entry *sf__zoo_find(const char *name) {
  const zoo_model *m = find(name);
  return m ? &m->e : NULL;
}

int sf__zoo_build(const char *name, uint64_t seed, sf_graph **out, sf_err *err) {
  *out = NULL;
  const zoo_model *m = find(name);
  if (!m) return sf__errf(err, SF_ENOTFOUND, "no model '%s' in the zoo", name ? name : "");
  sf_zb b;
  int rc = sf__zb_init(&b, name, seed, err);
  if (rc) return rc;
  int y = m->build(&b);
  rc = sf__zb_finish(&b, y, out);
  sf__zb_deinit(&b);
  return rc;
}

int64_t sf__zoo_params(const sf_graph *g) {
  int64_t n = 0;
  for (int i = 0; i < g->n_tensors; i++) {
    const sf_gtensor *t = &g->tensors[i];
    if (t->kind == SF_TK_CONST && t->t.dtype == SF_F32) n += sf_tensor_numel(&t->t);
  }
  return n;
}

int sf__zoo_serialize(const char *name, uint64_t seed, void **buf, size_t *len, sf_err *err) {
  *buf = NULL;
  *len = 0;
  sf_graph *g = NULL;
  int rc = sf__zoo_build(name, seed, &g, err);
  if (!rc) rc = sf__onnx_serialize(g, buf, len, err);
  sf__graph_free(g);
  return rc;
}

int sf__zoo_write(const char *name, uint64_t seed, const char *path, int64_t *params, sf_err *err) {
  sf_graph *g = NULL;
  void *buf = NULL;
  size_t len = 0;
  int rc = sf__zoo_build(name, seed, &g, err);
  if (!rc && params) *params = sf__zoo_params(g);
  if (!rc) rc = sf__onnx_serialize(g, &buf, &len, err);
  sf__graph_free(g);
  g = NULL;
  if (!rc) rc = sf__write_file(path, buf, len, err);
  free(buf);
  return rc;
}
