/* The Open Inference Protocol (KServe v2) REST bodies: inference requests and responses (JSON
 * tensors and the binary tensor data extension), model metadata and error bodies.
 *
 * Server side (the gateway):
 *
 *     sf_kserve_req *r = calloc(1, sizeof *r);
 *     if (sf__kserve_parse_request(body, len, header_len, r, &err) < 0) -> 400 with err.msg
 *     ... run r->inputs ...
 *     sf_buf b = {0};
 *     size_t json_len;
 *     sf__kserve_build_response(&b, &json_len, "model", "1", r, outs, n, &err);
 *     // json_len < b.len: send "Inference-Header-Content-Length: json_len"
 *     sf__kserve_req_deinit(r);
 *
 * Client side (`seifer request`, `seifer loadgen`): sf__kserve_build_request() writes a body from
 * the same struct, sf__kserve_parse_response() checks and decodes the answer.
 *
 * Wire rules (https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol
 * and the binary tensor data extension):
 *  - a tensor is {"name", "datatype", "shape", "data"} or, in binary form,
 *    {"name", "datatype", "shape", "parameters": {"binary_data_size": N}} with its N bytes
 *    (little-endian, row-major, BOOL one byte 0/1) after the JSON, in the order of the tensors;
 *    the JSON part's length is the Inference-Header-Content-Length header;
 *  - "data" is flat (numel values in row-major order) or nested exactly as the shape;
 *  - requested outputs: "outputs": [{"name", "parameters": {"binary_data": bool}}], and
 *    "parameters": {"binary_data_output": bool} for every output not saying otherwise.
 *  - datatypes: BOOL UINT8 UINT16 UINT32 UINT64 INT8 INT16 INT32 INT64 FP16 FP32 FP64 (BYTES and
 *    BF16 are refused).
 *  - JSON has no NaN or infinities. Like Triton (rapidjson with kWriteNanAndInfFlag /
 *    kParseNanAndInfFlag, triton-inference-server/server#3870), responses write the bare tokens
 *    NaN, Infinity and -Infinity, which Python's json module and Triton's clients read; inside
 *    tensor data the parsers accept those tokens and also null (what KServe's Python server
 *    writes for NaN) for floating-point datatypes. Clients needing strict JSON ask for binary
 *    outputs.
 *
 * Parsing never builds a JSON node per number: a scanner validates the whole JSON text and finds
 * the "data" arrays of the tensors, cJSON parses a copy of the rest (those arrays left out), and
 * the values are read straight from the text into the tensor (integers exactly, 64-bit ones
 * included). Allocation is bounded by the body: a tensor's byte size is checked against
 * SF_MAX_TENSOR_BYTES and against the values (or binary bytes) actually present before its
 * buffer is allocated. */
#ifndef SF_KSERVE_H
#define SF_KSERVE_H

#include <stddef.h>
#include <stdint.h>

#include "net/net.h"

#define SF_KSERVE_MAX_TENSORS 64
#define SF_KSERVE_MAX_BODY ((size_t)1 << 30)
#define SF_KSERVE_MAX_NAME 256 /* names and ids: at most 255 bytes */

typedef struct sf_kserve_output_req {
  char name[SF_KSERVE_MAX_NAME];
  int binary; /* resolved: the output's own binary_data, else the request's binary_data_output */
} sf_kserve_output_req;

typedef struct sf_kserve_req {
  char id[SF_KSERVE_MAX_NAME]; /* "id" ("" when absent) */
  int n_inputs;
  sf_tensor inputs[SF_KSERVE_MAX_TENSORS]; /* name and data malloc'd, owned */
  int n_outputs;
  sf_kserve_output_req outputs[SF_KSERVE_MAX_TENSORS]; /* requested outputs; 0 = all */
  int binary_default;                                  /* parameters.binary_data_output */
} sf_kserve_req;

/* Parse and validate a whole inference request body. header_len: the Inference-Header-Content-
 * Length value, or -1 when absent (the body is JSON only). Fills *r (zeroed first; on failure
 * it is left empty). Errors: SF_EFORMAT (JSON syntax, wrong types), SF_EINVAL (unknown datatype,
 * shape/data mismatch, value not representable, duplicate names, binary sizes inconsistent),
 * SF_ELIMIT (body, tensor count, tensor bytes, name length), SF_ENOMEM; the message names the
 * input and the field. */
int sf__kserve_parse_request(const uint8_t *body, size_t len, long header_len, sf_kserve_req *r,
                             sf_err *err);
void sf__kserve_req_deinit(sf_kserve_req *r);

/* Response body: {"model_name","model_version","id","outputs":[{"name","datatype","shape",
 * "data"|"parameters":{"binary_data_size"}}]} (model_version and id omitted when empty). The
 * outputs are those listed in req->outputs, in that order, or all of outs when none is listed
 * (req may be NULL: all outputs, JSON). A requested name missing from outs -> SF_ENOTFOUND.
 * Binary outputs follow the JSON in order; *json_len is the JSON part's length (== out->len when
 * nothing is binary). Appends to out. FP32 values are printed as by "%.9g" (they read back to the
 * same float), FP16 as "%.5g", FP64 as "%.17g". */
int sf__kserve_build_response(sf_buf *out, size_t *json_len, const char *model, const char *version,
                              const sf_kserve_req *req, const sf_tensor *outs, int n_outs,
                              sf_err *err);

/* {"error": "<msg>"} with JSON escaping (bytes that are not UTF-8 become U+FFFD). 0 or SF_ENOMEM.
 */
int sf__kserve_error_body(sf_buf *out, const char *msg);

/* Model metadata: {"name","versions":[version],"platform":"seifer","inputs":[{"name","datatype",
 * "shape"}],"outputs":[...]}; negative (dynamic) dims are written as -1. Appends to out. */
int sf__kserve_metadata(sf_buf *out, const char *model, const char *version, const sf_tensor *ins,
                        int n_in, const sf_tensor *outs, int n_out, sf_err *err);

/* ---- client side ---------------------------------------------------------------------------- */
/* Request body from req (inputs with data, requested outputs, binary_default, id): every input
 * in binary form when binary_inputs, else as JSON "data". *json_len as for the response. */
int sf__kserve_build_request(sf_buf *out, size_t *json_len, const sf_kserve_req *req,
                             int binary_inputs, sf_err *err);

typedef struct sf_kserve_resp {
  char model_name[SF_KSERVE_MAX_NAME];
  char model_version[SF_KSERVE_MAX_NAME];
  char id[SF_KSERVE_MAX_NAME];
  int n_outputs;
  sf_tensor outputs[SF_KSERVE_MAX_TENSORS]; /* name and data malloc'd, owned */
} sf_kserve_resp;

/* Parse and validate a response body (same rules as requests; "outputs" may be empty). */
int sf__kserve_parse_response(const uint8_t *body, size_t len, long header_len, sf_kserve_resp *r,
                              sf_err *err);
void sf__kserve_resp_deinit(sf_kserve_resp *r);

/* Model metadata as read back by a client: tensors without data (dims -1 when dynamic). */
typedef struct sf_kserve_meta {
  char name[SF_KSERVE_MAX_NAME];
  char version[SF_KSERVE_MAX_NAME]; /* first of "versions", "" when absent */
  int n_inputs, n_outputs;
  sf_tensor inputs[SF_KSERVE_MAX_TENSORS], outputs[SF_KSERVE_MAX_TENSORS]; /* names owned */
} sf_kserve_meta;
int sf__kserve_parse_metadata(const uint8_t *body, size_t len, sf_kserve_meta *m, sf_err *err);
void sf__kserve_meta_deinit(sf_kserve_meta *m);

/* Datatype names <-> sf_dtype: "FP32" -> SF_F32 ...; unknown -> SF_UNDEFINED / NULL. */
int sf__kserve_dtype(const char *name);
const char *sf__kserve_dtype_name(int dtype);

/* Append a JSON string literal (quotes, escapes; invalid UTF-8 -> U+FFFD). 0 or SF_ENOMEM. */
int sf__json_put_string(sf_buf *b, const char *s);
/* Write a float as "%.9g" prints it (a fast path with an exact fallback), non-finite values as
 * NaN, Infinity, -Infinity; p needs 32 bytes; returns the length (no terminator). */
size_t sf__fmt_f32(char *p, float f);

#endif
