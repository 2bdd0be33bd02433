/* Model zoo: generators for reference CNN architectures (the Keras applications, layer for
 * layer) and small test models, as standard ONNX models (opset 13, NCHW, input [1,3,H,W],
 * softmax output [1,classes]) with deterministic pseudo-random weights. Nothing is downloaded.
 *
 * The same name and seed always give the same graph and byte-identical serialized files.
 * Generation cost: the weights (linear in the parameter count) plus a calibration pass of a few
 * naive inferences (zoo/calib.c): 0.4 s for MobileNetV2 to about 4 s for InceptionResNetV2 on
 * two cores. See docs/zoo.md for the architectures and the weight scheme.
 */
#ifndef SF_ZOO_H
#define SF_ZOO_H

#include "graph/graph.h"

typedef struct sf_zoo_entry {
  const char *name;        /* "resnet50", ... */
  const char *title;       /* what it reproduces */
  int c, h, w;             /* input [1,c,h,w] */
  int classes;             /* output [1,classes] */
  int64_t params;          /* float parameters of the generated model (initializer elements) */
  int64_t keras_params;    /* Keras count_params() of the reference model; 0 if none */
  const char *input_range; /* the inputs the weights are calibrated for */
} sf_zoo_entry;

/* Number of models and the i-th (0 <= i < count), in listing order. */
int sf__zoo_count(void);
const sf_zoo_entry *sf__zoo_get(int i);
/* Entry by name, NULL if unknown. */
const sf_zoo_entry *sf__zoo_find(const char *name);

/* Build the graph of model name with weights from seed. *out is a new graph (not compiled). */
int sf__zoo_build(const char *name, uint64_t seed, sf_graph **out, sf_err *err);
/* Elements of all float32 constant tensors of g: the parameter count. */
int64_t sf__zoo_params(const sf_graph *g);
/* Build and serialize to a ModelProto (*buf malloc'ed). */
int sf__zoo_serialize(const char *name, uint64_t seed, void **buf, size_t *len, sf_err *err);
/* Build, serialize and write to path. *params (may be NULL) receives the parameter count. */
int sf__zoo_write(const char *name, uint64_t seed, const char *path, int64_t *params, sf_err *err);

#endif
