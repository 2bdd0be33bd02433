/* ONNX model and tensor I/O: ModelProto <-> graph IR, TensorProto <-> sf_tensor, .npy files.
 *
 * The protobuf code is generated at build time by protoc-c from the system's onnx.proto;
 * nothing here hand-parses protobuf. Every count and size read from a file is bounded before
 * allocation; errors name the file and the element (node, tensor, attribute) at fault.
 */
#ifndef SF_ONNX_H
#define SF_ONNX_H

#include "graph/graph.h"

struct sf_model {
  sf_graph *g;          /* as loaded: not compiled */
  char *path;           /* may be NULL for buffers */
  int weights_released; /* a session with release_weights freed packed weights */
};

/* Parse a serialized ModelProto into a new graph. base_dir resolves external data files
 * (NULL: external data is an error). Initializers become SF_TK_CONST tensors with data;
 * graph inputs that are also initializers are constants, not inputs. value_info / input /
 * output type information sets dtype and dims (symbolic dims: dim = -1, name kept in
 * dim_params). Accepts opsets 1..21 of the default domain (kernels implement 7..17 and the later
 * changes to their operators). */
int sf__onnx_parse(const void *buf, size_t len, const char *base_dir, sf_graph **out, sf_err *err);

/* Serialize a graph (live nodes, constants used, inputs, outputs, value_info of known shapes)
 * to a ModelProto. *buf is malloc'ed. */
int sf__onnx_serialize(const sf_graph *g, void **buf, size_t *len, sf_err *err);

/* TensorProto <-> tensor (data malloc'ed into t->data, t->name malloc'ed). */
int sf__tensorproto_parse(const void *buf, size_t len, sf_tensor *t, sf_err *err);
int sf__tensorproto_serialize(const sf_tensor *t, void **buf, size_t *len, sf_err *err);

/* NumPy .npy (version 1/2/3, little-endian, C order; f32 f64 i64 i32 i8 u8 bool f16). */
int sf__npy_parse(const void *buf, size_t len, sf_tensor *t, sf_err *err);
int sf__npy_serialize(const sf_tensor *t, void **buf, size_t *len, sf_err *err);

/* Load a tensor from a file by extension: .npy or .pb (TensorProto). */
int sf__tensor_load_file(const char *path, sf_tensor *t, sf_err *err);
int sf__tensor_save_npy(const char *path, const sf_tensor *t, sf_err *err);

/* With glibc (not under a sanitizer): M_MMAP_THRESHOLD fixed at 64 KiB for the process, once.
 * Called by the model loaders; see sf_model_load in seifer.h. */
void sf__malloc_policy(void);

/* Free name and data of a tensor filled by the functions above (not the struct). */
void sf__tensor_deinit(sf_tensor *t);

/* Internal to src/onnx/ (load.c, save.c, tensorio.c): conversion between a decoded protobuf-c
 * TensorProto and a tensor.
 * decode: validates dtype, dims (each in [0, SF_MAX_DIM], rank <= SF_MAX_RANK, total bytes <=
 *   SF_MAX_TENSOR_BYTES) and the data size; reads raw_data, the typed fields or external data
 *   (relative to base_dir, NULL: external data is an error). t->name and t->data are malloc'ed
 *   (data with SF_READ_SLACK zero bytes after it); errors name the tensor.
 * encode: fills *tp (initialised by the caller) with name, dtype, dims and raw_data pointing
 *   into *t (no copy: t must outlive tp); t must be in plain layout with data. */
struct Onnx__TensorProto;
int sf__tensorproto_decode(const struct Onnx__TensorProto *tp, const char *base_dir, sf_tensor *t,
                           sf_err *err);
int sf__tensorproto_encode(const sf_tensor *t, struct Onnx__TensorProto *tp, sf_err *err);

#endif
