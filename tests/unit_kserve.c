/* KServe v2 bodies (serve/kserve.c), the Prometheus registry (serve/metrics.c) and the HTTP
 * clients (serve/client.c, serve/loadgen.c) against a small libmicrohttpd server in this file.
 *
 * The server echoes: POST /v2/models/<m>/infer parses the request with sf__kserve_parse_request
 * and answers the first input back as output "y" (binary when the request asks); model "slow"
 * answers after 1 s, model "garbage" answers 200 with a body that is no inference response.
 * `unit_kserve --serve PORT` runs only that server (for trying `seifer request` / `loadgen`
 * by hand: the model takes input "x", FP32, shape [-1,4]). */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "serve/client.h"
#include "serve/kserve.h"
#include "serve/metrics.h"
#include "util/util.h"

/* ---- helpers ------------------------------------------------------------------------------- */
/* Parse a request from a string copied into an exactly sized buffer (ASan sees overreads). */
static int parse_req(const char *json, const void *bin, size_t bin_len, sf_kserve_req *r,
                     sf_err *e) {
  size_t jl = strlen(json);
  uint8_t *b = malloc(jl + bin_len + 1);
  memcpy(b, json, jl);
  if (bin_len) memcpy(b + jl, bin, bin_len);
  memset(e, 0, sizeof *e);
  int rc = sf__kserve_parse_request(b, jl + bin_len, bin ? (long)jl : -1, r, e);
  free(b);
  return rc;
}

/* Expect failure with code and a substring of the message. */
static void expect_err(const char *json, const void *bin, size_t bin_len, int code,
                       const char *frag) {
  sf_kserve_req *r = calloc(1, sizeof *r);
  sf_err e;
  int rc = parse_req(json, bin, bin_len, r, &e);
  if (rc != code || !strstr(e.msg, frag))
    fail_msg("body %s\n  got rc %d msg '%s', want %d with '%s'", json, rc, e.msg, code, frag);
  assert_int_equal(r->n_inputs, 0); /* left empty */
  sf__kserve_req_deinit(r);
  free(r);
}

static sf_kserve_req *ok_req(const char *json, const void *bin, size_t bin_len) {
  sf_kserve_req *r = calloc(1, sizeof *r);
  sf_err e;
  int rc = parse_req(json, bin, bin_len, r, &e);
  if (rc != 0) fail_msg("body %s\n  rc %d: %s", json, rc, e.msg);
  return r;
}

static void free_req(sf_kserve_req *r) {
  sf__kserve_req_deinit(r);
  free(r);
}

/* ---- parsing ------------------------------------------------------------------------------- */
static void test_parse_flat_fp32(void **state) {
  (void)state;
  sf_kserve_req *r = ok_req(
      "{\"id\":\"req-1\",\"parameters\":{\"binary_data_output\":true},"
      "\"inputs\":[{\"name\":\"x\",\"shape\":[2,3],\"datatype\":\"FP32\","
      "\"data\":[1,-2.5,3e2,0.1,-0,1e-45]}],"
      "\"outputs\":[{\"name\":\"y\"},{\"name\":\"z\",\"parameters\":{\"binary_data\":false}}]}",
      NULL, 0);
  assert_string_equal(r->id, "req-1");
  assert_int_equal(r->n_inputs, 1);
  sf_tensor *t = &r->inputs[0];
  assert_string_equal(t->name, "x");
  assert_int_equal(t->dtype, SF_F32);
  assert_int_equal(t->rank, 2);
  assert_int_equal(t->dims[0], 2);
  assert_int_equal(t->dims[1], 3);
  assert_int_equal(t->layout, 0);
  const float *v = t->data;
  float want[6] = {1, -2.5f, 300, 0.1f, -0.0f, 1e-45f};
  for (int i = 0; i < 6; i++) assert_memory_equal(&v[i], &want[i], 4);
  assert_int_equal(r->binary_default, 1);
  assert_int_equal(r->n_outputs, 2);
  assert_string_equal(r->outputs[0].name, "y");
  assert_int_equal(r->outputs[0].binary, 1); /* inherits binary_data_output */
  assert_string_equal(r->outputs[1].name, "z");
  assert_int_equal(r->outputs[1].binary, 0);
  free_req(r);
}

static void test_parse_nested_types(void **state) {
  (void)state;
  sf_kserve_req *r = ok_req(
      "{\"inputs\":["
      "{\"name\":\"ids\",\"shape\":[2,2],\"datatype\":\"INT64\","
      "\"data\":[[9007199254740993,-9223372036854775808],[9223372036854775807, -0]]},"
      "{\"name\":\"mask\",\"shape\":[1,3],\"datatype\":\"BOOL\",\"data\":[[true,false,true]]},"
      "{\"name\":\"img\",\"shape\":[2,1,2],\"datatype\":\"UINT8\",\"data\":[[[0,255]],[[7,8]]]},"
      "{\"name\":\"f\",\"shape\":[3],\"datatype\":\"FP32\",\"data\":[NaN,Infinity,-Infinity]},"
      "{\"name\":\"d\",\"shape\":[2],\"datatype\":\"FP64\",\"data\":[null,0.30000000000000004]},"
      "{\"name\":\"h\",\"shape\":[2],\"datatype\":\"FP16\",\"data\":[65504,-0.5]},"
      "{\"name\":\"s\",\"shape\":[],\"datatype\":\"INT8\",\"data\":[-128]},"
      "{\"name\":\"e\",\"shape\":[0,3],\"datatype\":\"INT32\",\"data\":[]}]}",
      NULL, 0);
  assert_int_equal(r->n_inputs, 8);
  const int64_t *ids = r->inputs[0].data;
  assert_true(ids[0] == 9007199254740993LL); /* exact beyond 2^53 */
  assert_true(ids[1] == INT64_MIN);
  assert_true(ids[2] == INT64_MAX);
  assert_true(ids[3] == 0);
  const uint8_t *mask = r->inputs[1].data;
  assert_int_equal(mask[0], 1);
  assert_int_equal(mask[1], 0);
  assert_int_equal(mask[2], 1);
  const uint8_t *img = r->inputs[2].data;
  assert_int_equal(img[1], 255);
  assert_int_equal(img[3], 8);
  const float *f = r->inputs[3].data;
  assert_true(isnan(f[0]) && isinf(f[1]) && f[1] > 0 && isinf(f[2]) && f[2] < 0);
  const double *d = r->inputs[4].data;
  assert_true(isnan(d[0]));
  assert_true(d[1] == 0.30000000000000004);
  const uint16_t *h = r->inputs[5].data;
  assert_int_equal(h[0], 0x7bff);
  assert_int_equal(h[1], 0xb800);
  assert_int_equal(r->inputs[6].rank, 0);
  assert_int_equal(((int8_t *)r->inputs[6].data)[0], -128);
  assert_int_equal(r->inputs[7].dims[0], 0);
  free_req(r);
}

static void test_parse_binary(void **state) {
  (void)state;
  float b[4] = {1.5f, -2, NAN, 4};
  uint8_t bin[16 + 3];
  memcpy(bin, b, 16);
  bin[16] = 1, bin[17] = 0, bin[18] = 1;
  const char *json =
      "{\"inputs\":[{\"name\":\"a\",\"shape\":[2],\"datatype\":\"INT32\",\"data\":[5,6]},"
      "{\"name\":\"b\",\"shape\":[2,2],\"datatype\":\"FP32\",\"parameters\":{\"binary_data_size\":"
      "16}},"
      "{\"name\":\"c\",\"shape\":[3],\"datatype\":\"BOOL\",\"parameters\":{\"binary_data_size\":3}}"
      "]}";
  sf_kserve_req *r = ok_req(json, bin, sizeof bin);
  assert_int_equal(r->n_inputs, 3);
  assert_int_equal(((int32_t *)r->inputs[0].data)[1], 6);
  assert_memory_equal(r->inputs[1].data, b, 16);
  assert_memory_equal(r->inputs[2].data, bin + 16, 3);
  free_req(r);
  /* a header length equal to the body: JSON only, no binary section */
  r = ok_req("{\"inputs\":[{\"name\":\"a\",\"shape\":[1],\"datatype\":\"INT32\",\"data\":[5]}]}",
             "", 0);
  free_req(r);
}

static void test_parse_errors(void **state) {
  (void)state;
  const char *in1 =
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\",\"data\":[1,2]}]";
  expect_err(in1, NULL, 0, SF_EFORMAT, "invalid JSON"); /* missing brace */
  expect_err("", NULL, 0, SF_EFORMAT, "empty body");
  expect_err("[1]", NULL, 0, SF_EFORMAT, "must be a JSON object");
  expect_err("{\"inputs\":[]} x", NULL, 0, SF_EFORMAT, "text after");
  expect_err("{\"a\":tru}", NULL, 0, SF_EFORMAT, "invalid JSON");
  expect_err("{\"a\":\"\x01\"}", NULL, 0, SF_EFORMAT, "control character");
  expect_err("{\"a\":01}", NULL, 0, SF_EFORMAT, "invalid JSON");
  expect_err("{\"a\":NaN}", NULL, 0, SF_EFORMAT, "only inside tensor data");
  expect_err("{\"inputs\":{}}", NULL, 0, SF_EFORMAT, "inputs: expected an array");
  expect_err("{\"inputs\":[]}", NULL, 0, SF_EINVAL, "inputs: empty");
  expect_err("{}", NULL, 0, SF_EFORMAT, "inputs: missing");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP33\",\"data\":[1,2]}]}",
             NULL, 0, SF_EINVAL, "input 'x': datatype 'FP33' unknown");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"BYTES\",\"data\":[1,2]}]}",
             NULL, 0, SF_EINVAL, "BYTES is not supported");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[3],\"datatype\":\"FP32\",\"data\":[1,2]}]}",
             NULL, 0, SF_EINVAL, "input 'x': data has fewer values than the 3 of shape [3]");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[3],\"datatype\":\"FP32\",\"data\":[1,  2]}]}",
             NULL, 0, SF_EINVAL, "input 'x': data has 2 values, shape [3] needs 3");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1,2]}]}",
             NULL, 0, SF_EINVAL, "more than the 1 values");
  expect_err(
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,-1],\"datatype\":\"FP32\",\"data\":[1,2]}]}", NULL,
      0, SF_EINVAL, "input 'x': shape[1] = -1: dims must be >= 0");
  expect_err(
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[2147483648,2147483648,2147483648],"
      "\"datatype\":\"FP32\",\"data\":[1]}]}",
      NULL, 0, SF_ELIMIT, "too many elements");
  expect_err(
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[1073741824,2],\"datatype\":\"FP32\",\"data\":[1]}]}",
      NULL, 0, SF_ELIMIT, "larger than");
  expect_err(
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[100000000],\"datatype\":\"FP32\",\"data\":[1]}]}",
      NULL, 0, SF_EINVAL, "fewer values"); /* refused before allocating 400 MB */
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[1.5],\"datatype\":\"FP32\",\"data\":[1]}]}",
             NULL, 0, SF_EFORMAT, "shape[0]: expected a non-negative integer");
  expect_err(
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"INT64\",\"data\":[1,1.5]}]}", NULL,
      0, SF_EINVAL, "input 'x': data[1]: '1.5' is not an integer");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":[1e3]}]}",
             NULL, 0, SF_EINVAL, "not an integer");
  expect_err(
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT64\",\"data\":["
      "9223372036854775808]}]}",
      NULL, 0, SF_EINVAL, "out of the range of INT64");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"UINT8\",\"data\":[256]}]}",
             NULL, 0, SF_EINVAL, "256 is out of the range of UINT8");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"UINT8\",\"data\":[-1]}]}",
             NULL, 0, SF_EINVAL, "out of the range of UINT8");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT8\",\"data\":[-129]}]}",
             NULL, 0, SF_EINVAL, "out of the range of INT8");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1e39]}]}",
             NULL, 0, SF_EINVAL, "out of the range of FP32");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP16\",\"data\":[70000]}]}",
             NULL, 0, SF_EINVAL, "out of the range of FP16");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"INT32\",\"data\":[null]}]}",
             NULL, 0, SF_EINVAL, "not an integer");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"BOOL\",\"data\":[1]}]}",
             NULL, 0, SF_EINVAL, "not true or false");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[\"1\"]}]}",
             NULL, 0, SF_EINVAL, "expected a number");
  expect_err(
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,2],\"datatype\":\"FP32\",\"data\":[[1,2,3],[4]]}]"
      "}",
      NULL, 0, SF_EINVAL, "3 elements along dimension 1");
  expect_err(
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[4],\"datatype\":\"FP32\",\"data\":[[1,2],[3,4]]}]}",
      NULL, 0, SF_EINVAL, "nested 2 deep but the shape [4] has rank 1");
  expect_err(
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[2,2],\"datatype\":\"FP32\",\"data\":[1,2,[3,4]]}]}",
      NULL, 0, SF_EINVAL, "unexpected nested array");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\",\"data\":5}]}", NULL,
             0, SF_EFORMAT, "data: expected an array");
  expect_err("{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\"}]}", NULL, 0,
             SF_EINVAL, "input 'x': no data");
  expect_err(
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1],\"data\":[2]}]"
      "}",
      NULL, 0, SF_EFORMAT, "duplicate key 'data'");
  expect_err(
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]},"
      "{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[2]}]}",
      NULL, 0, SF_EINVAL, "inputs: duplicate name 'x'");
  expect_err(
      "{\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}],"
      "\"outputs\":[{\"name\":\"y\"},{\"name\":\"y\"}]}",
      NULL, 0, SF_EINVAL, "'y' requested twice");
  expect_err("{\"inputs\":[{\"name\":\"\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}",
             NULL, 0, SF_EFORMAT, "inputs[0].name");
  expect_err(
      "{\"id\":5,\"inputs\":[{\"name\":\"x\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}",
      NULL, 0, SF_EFORMAT, "id: expected a string");
  expect_err(
      "{\"parameters\":{\"binary_data_output\":1},\"inputs\":[{\"name\":\"x\",\"shape\":[1],"
      "\"datatype\":\"FP32\",\"data\":[1]}]}",
      NULL, 0, SF_EFORMAT, "parameters.binary_data_output: expected true or false");
  /* binary extension */
  uint8_t bin[16] = {0};
  const char *b8 =
      "{\"inputs\":[{\"name\":\"b\",\"shape\":[2],\"datatype\":\"FP32\","
      "\"parameters\":{\"binary_data_size\":8}}]}";
  expect_err(b8, bin, 4, SF_EINVAL, "only 4 bytes of binary data are left");
  expect_err(b8, bin, 12, SF_EINVAL, "4 bytes of binary data after the JSON");
  expect_err(
      "{\"inputs\":[{\"name\":\"b\",\"shape\":[3],\"datatype\":\"FP32\","
      "\"parameters\":{\"binary_data_size\":8}}]}",
      bin, 8, SF_EINVAL, "binary_data_size is 8 but shape [3] of FP32 takes 12 bytes");
  expect_err(
      "{\"inputs\":[{\"name\":\"b\",\"shape\":[2],\"datatype\":\"FP32\",\"data\":[1,2],"
      "\"parameters\":{\"binary_data_size\":8}}]}",
      bin, 8, SF_EINVAL, "both data and parameters.binary_data_size");
  expect_err(b8, NULL, 0, SF_EINVAL, "only 0 bytes"); /* no header: no binary section */
  uint8_t two = 2;
  expect_err(
      "{\"inputs\":[{\"name\":\"c\",\"shape\":[1],\"datatype\":\"BOOL\","
      "\"parameters\":{\"binary_data_size\":1}}]}",
      &two, 1, SF_EINVAL, "must be 0 or 1");
  /* header length larger than the body */
  sf_kserve_req *r = calloc(1, sizeof *r);
  sf_err e = {0};
  const char *js = "{\"inputs\":[]}";
  assert_int_equal(sf__kserve_parse_request((const uint8_t *)js, strlen(js), 100, r, &e),
                   SF_EINVAL);
  assert_non_null(strstr(e.msg, "Inference-Header-Content-Length 100 is larger than the body"));
  assert_int_equal(sf__kserve_parse_request((const uint8_t *)js, strlen(js), -5, r, &e), SF_EINVAL);
  /* too many inputs, too deep */
  sf_buf b = {0};
  sf__buf_put(&b, "{\"inputs\":[", 11);
  for (int i = 0; i < 65; i++) {
    char t[100];
    snprintf(t, sizeof t, "%s{\"name\":\"i%d\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}",
             i ? "," : "", i);
    sf__buf_put(&b, t, strlen(t));
  }
  sf__buf_put(&b, "]}", 3);
  expect_err((const char *)b.data, NULL, 0, SF_ELIMIT, "more than 64 tensors");
  b.len = 0;
  sf__buf_put(&b, "{\"a\":", 5);
  for (int i = 0; i < 100; i++) sf__buf_put(&b, "[", 1);
  sf__buf_put(&b, "", 1);
  expect_err((const char *)b.data, NULL, 0, SF_ELIMIT, "nested deeper than 64");
  sf__buf_deinit(&b);
  sf__kserve_req_deinit(r);
  free(r);
}

/* Escaped keys mean what cJSON decodes them to. */
static void test_parse_escaped_keys(void **state) {
  (void)state;
  sf_kserve_req *r = ok_req(
      "{\"\\u0069nputs\":[{\"n\\u0061me\":\"x\\\"y\",\"shape\":[2],"
      "\"datatype\":\"FP32\",\"d\\u0061ta\":[1 , 2 ]}]}",
      NULL, 0);
  assert_string_equal(r->inputs[0].name, "x\"y");
  assert_true(((float *)r->inputs[0].data)[1] == 2.0f);
  free_req(r);
}

/* ---- formatting ---------------------------------------------------------------------------- */
static void test_fmt_f32(void **state) {
  (void)state;
  uint64_t s = 12345;
  char a[40], b[40];
  float specials[] = {
      0.0f,         -0.0f,        1.0f,  0.1f,           1e-45f, 1.17549435e-38f, 3.40282347e38f,
      123456789.0f, 999999999.0f, 1e9f,  1e-5f,          1e-4f,  0.000123456789f, 100000000.0f,
      16777216.0f,  2.5f,         1e10f, 9.99999944e-41f};
  int n_special = (int)(sizeof specials / sizeof specials[0]);
  for (int i = 0; i < 400000 + n_special; i++) {
    float f;
    if (i < n_special) {
      f = specials[i];
    } else {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      uint32_t bits = (uint32_t)s;
      if (i & 1)
        bits = (bits & 0x807fffffu) | ((uint32_t)(100 + s % 56) << 23); /* |f| ~ 1e-8..1e8 */
      memcpy(&f, &bits, 4);
      if (!isfinite(f)) continue;
    }
    size_t n = sf__fmt_f32(a, f);
    a[n] = 0;
    snprintf(b, sizeof b, "%.9g", (double)f);
    if (strcmp(a, b)) fail_msg("float %a: got '%s', %%.9g gives '%s'", (double)f, a, b);
    float back = strtof(a, NULL);
    assert_memory_equal(&back, &f, 4);
  }
  size_t n = sf__fmt_f32(a, NAN);
  a[n] = 0;
  assert_string_equal(a, "NaN");
  n = sf__fmt_f32(a, -INFINITY);
  a[n] = 0;
  assert_string_equal(a, "-Infinity");
}

static void test_error_body(void **state) {
  (void)state;
  sf_buf b = {0};
  assert_int_equal(sf__kserve_error_body(&b, "bad \"x\"\\ \n\t\x01 \xff\xc3\xa9 end"), 0);
  sf__buf_put(&b, "", 1);
  assert_string_equal((char *)b.data,
                      "{\"error\":\"bad \\\"x\\\"\\\\ \\n\\t\\u0001 \\ufffd\xc3\xa9 end\"}");
  cJSON *j = cJSON_Parse((char *)b.data);
  assert_non_null(j);
  assert_string_equal(cJSON_GetObjectItem(j, "error")->valuestring,
                      "bad \"x\"\\ \n\t\x01 \xef\xbf\xbd\xc3\xa9 end");
  cJSON_Delete(j);
  sf__buf_deinit(&b);
}

/* ---- responses, requests, metadata round trips ------------------------------------------- */
typedef struct outs5 {
  float y[6];
  int64_t z[2];
  uint8_t bl[3];
  uint16_t h[2];
  uint8_t u8[2];
  sf_tensor t[5];
} outs5;

static void make_outs(outs5 *o) {
  float y[6] = {NAN, INFINITY, -INFINITY, -0.0f, 1e-45f, 0.1f};
  memcpy(o->y, y, sizeof y);
  o->z[0] = INT64_MIN, o->z[1] = INT64_MAX;
  o->bl[0] = 1, o->bl[1] = 0, o->bl[2] = 1;
  o->h[0] = 0x3555, o->h[1] = 0xfbff; /* 0.33325, -65504 */
  o->u8[0] = 0, o->u8[1] = 255;
  memset(o->t, 0, sizeof o->t);
  o->t[0] = (sf_tensor){.name = "y", .dtype = SF_F32, .rank = 2, .dims = {2, 3}, .data = o->y};
  o->t[1] = (sf_tensor){.name = "z", .dtype = SF_I64, .rank = 1, .dims = {2}, .data = o->z};
  o->t[2] = (sf_tensor){.name = "b", .dtype = SF_BOOL, .rank = 1, .dims = {3}, .data = o->bl};
  o->t[3] = (sf_tensor){.name = "h", .dtype = SF_F16, .rank = 1, .dims = {2}, .data = o->h};
  o->t[4] = (sf_tensor){.name = "u", .dtype = SF_U8, .rank = 2, .dims = {1, 2}, .data = o->u8};
}

static void same_tensor(const sf_tensor *a, const sf_tensor *b) {
  assert_string_equal(a->name, b->name);
  assert_int_equal(a->dtype, b->dtype);
  assert_int_equal(a->rank, b->rank);
  for (int d = 0; d < a->rank; d++) assert_int_equal(a->dims[d], b->dims[d]);
  size_t n = (size_t)sf_tensor_nbytes(a);
  if (a->dtype == SF_F32) {
    for (size_t i = 0; i < n / 4; i++) {
      float x = ((float *)a->data)[i], y = ((float *)b->data)[i];
      if (isnan(x))
        assert_true(isnan(y));
      else
        assert_memory_equal(&x, &y, 4);
    }
  } else {
    assert_memory_equal(a->data, b->data, n);
  }
}

static void test_response_roundtrip(void **state) {
  (void)state;
  outs5 o;
  make_outs(&o);
  sf_buf b = {0};
  size_t jl = 0;
  sf_err e = {0};
  /* all outputs, JSON */
  assert_int_equal(sf__kserve_build_response(&b, &jl, "m", "3", NULL, o.t, 5, &e), 0);
  assert_int_equal(jl, b.len);
  sf__buf_put(&b, "", 1);
  const char *txt = (const char *)b.data;
  assert_non_null(
      strstr(txt,
             "{\"model_name\":\"m\",\"model_version\":\"3\",\"outputs\":[{\"name\":\"y\","
             "\"datatype\":\"FP32\",\"shape\":[2,3],\"data\":[NaN,Infinity,-Infinity,-0,"
             "1.40129846e-45,0.100000001]}"));
  assert_non_null(strstr(txt, "\"data\":[-9223372036854775808,9223372036854775807]"));
  assert_non_null(strstr(txt, "\"data\":[true,false,true]"));
  assert_non_null(strstr(txt, "\"datatype\":\"FP16\",\"shape\":[2],\"data\":[0.33325,-65504]"));
  sf_kserve_resp *rp = calloc(1, sizeof *rp);
  assert_int_equal(sf__kserve_parse_response(b.data, jl, -1, rp, &e), 0);
  assert_string_equal(rp->model_name, "m");
  assert_string_equal(rp->model_version, "3");
  assert_int_equal(rp->n_outputs, 5);
  for (int i = 0; i < 5; i++) same_tensor(&o.t[i], &rp->outputs[i]);
  sf__kserve_resp_deinit(rp);
  /* requested outputs, in request order, some binary */
  sf_kserve_req *rq = calloc(1, sizeof *rq);
  strcpy(rq->id, "abc");
  rq->n_outputs = 3;
  strcpy(rq->outputs[0].name, "z");
  rq->outputs[0].binary = 1;
  strcpy(rq->outputs[1].name, "y");
  strcpy(rq->outputs[2].name, "b");
  rq->outputs[2].binary = 1;
  b.len = 0;
  assert_int_equal(sf__kserve_build_response(&b, &jl, "m", NULL, rq, o.t, 5, &e), 0);
  assert_int_equal(b.len, jl + 16 + 3);
  assert_memory_equal(b.data + jl, o.z, 16);
  assert_non_null(strstr((char *)b.data, "\"id\":\"abc\""));
  assert_null(memmem(b.data, jl, "model_version", 13));
  assert_int_equal(sf__kserve_parse_response(b.data, b.len, (long)jl, rp, &e), 0);
  assert_int_equal(rp->n_outputs, 3);
  assert_string_equal(rp->id, "abc");
  same_tensor(&o.t[1], &rp->outputs[0]);
  same_tensor(&o.t[0], &rp->outputs[1]);
  same_tensor(&o.t[2], &rp->outputs[2]);
  sf__kserve_resp_deinit(rp);
  /* binary_default with no list: every output binary */
  rq->n_outputs = 0;
  rq->binary_default = 1;
  b.len = 0;
  assert_int_equal(sf__kserve_build_response(&b, &jl, "m", "1", rq, o.t, 5, &e), 0);
  assert_int_equal(b.len - jl, 24 + 16 + 3 + 4 + 2);
  assert_int_equal(sf__kserve_parse_response(b.data, b.len, (long)jl, rp, &e), 0);
  for (int i = 0; i < 5; i++) same_tensor(&o.t[i], &rp->outputs[i]);
  sf__kserve_resp_deinit(rp);
  /* an unknown requested output */
  rq->n_outputs = 1;
  strcpy(rq->outputs[0].name, "nope");
  b.len = 0;
  assert_int_equal(sf__kserve_build_response(&b, &jl, "m", "1", rq, o.t, 5, &e), SF_ENOTFOUND);
  assert_non_null(strstr(e.msg, "requested output 'nope' is not an output of the model ('y', 'z'"));
  assert_int_equal(b.len, 0);
  /* an error body is not a response */
  b.len = 0;
  sf__kserve_error_body(&b, "model not ready");
  assert_int_equal(sf__kserve_parse_response(b.data, b.len, -1, rp, &e), SF_EINVAL);
  assert_non_null(strstr(e.msg, "model not ready"));
  free(rq);
  free(rp);
  sf__buf_deinit(&b);
}

static void test_request_roundtrip(void **state) {
  (void)state;
  outs5 o;
  make_outs(&o);
  for (int binary = 0; binary < 2; binary++) {
    sf_kserve_req *rq = calloc(1, sizeof *rq);
    strcpy(rq->id, "r\"1");
    rq->n_inputs = 5;
    memcpy(rq->inputs, o.t, sizeof o.t);
    rq->n_outputs = 1;
    strcpy(rq->outputs[0].name, "out");
    rq->outputs[0].binary = 1;
    rq->binary_default = binary;
    sf_buf b = {0};
    size_t jl;
    sf_err e = {0};
    assert_int_equal(sf__kserve_build_request(&b, &jl, rq, binary, &e), 0);
    assert_true(binary ? jl < b.len : jl == b.len);
    sf_kserve_req *back = calloc(1, sizeof *back);
    assert_int_equal(sf__kserve_parse_request(b.data, b.len, binary ? (long)jl : -1, back, &e), 0);
    assert_string_equal(back->id, "r\"1");
    assert_int_equal(back->n_inputs, 5);
    for (int i = 0; i < 5; i++) same_tensor(&o.t[i], &back->inputs[i]);
    assert_int_equal(back->n_outputs, 1);
    assert_string_equal(back->outputs[0].name, "out");
    assert_int_equal(back->outputs[0].binary, 1);
    assert_int_equal(back->binary_default, binary);
    free_req(back);
    sf__buf_deinit(&b);
    free(rq);
  }
}

static void test_metadata(void **state) {
  (void)state;
  sf_tensor in[2] = {{.name = "x", .dtype = SF_F32, .rank = 4, .dims = {-1, 3, 224, 224}},
                     {.name = "mask", .dtype = SF_BOOL, .rank = 1, .dims = {7}}};
  sf_tensor out[1] = {{.name = "probs", .dtype = SF_F32, .rank = 2, .dims = {-1, 1000}}};
  sf_buf b = {0};
  sf_err e = {0};
  assert_int_equal(sf__kserve_metadata(&b, "resnet", "2", in, 2, out, 1, &e), 0);
  sf__buf_put(&b, "", 1);
  assert_string_equal(
      (char *)b.data,
      "{\"name\":\"resnet\",\"versions\":[\"2\"],\"platform\":\"seifer\",\"inputs\":["
      "{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1,3,224,224]},"
      "{\"name\":\"mask\",\"datatype\":\"BOOL\",\"shape\":[7]}],\"outputs\":["
      "{\"name\":\"probs\",\"datatype\":\"FP32\",\"shape\":[-1,1000]}]}");
  sf_kserve_meta *m = calloc(1, sizeof *m);
  assert_int_equal(sf__kserve_parse_metadata(b.data, b.len - 1, m, &e), 0);
  assert_string_equal(m->name, "resnet");
  assert_string_equal(m->version, "2");
  assert_int_equal(m->n_inputs, 2);
  assert_int_equal(m->inputs[0].dims[0], -1);
  assert_int_equal(m->inputs[1].dtype, SF_BOOL);
  assert_int_equal(m->outputs[0].dims[1], 1000);
  sf__kserve_meta_deinit(m);
  free(m);
  sf_tensor bad = {.name = "s", .dtype = SF_STRING, .rank = 0};
  b.len = 0;
  assert_int_equal(sf__kserve_metadata(&b, "m", "1", &bad, 1, NULL, 0, &e), SF_EUNSUPPORTED);
  sf__buf_deinit(&b);
}

/* ---- fuzz ---------------------------------------------------------------------------------- */
static uint64_t frng = 0x243F6A8885A308D3ull;
static uint64_t fnext(void) {
  frng ^= frng << 13;
  frng ^= frng >> 7;
  frng ^= frng << 17;
  return frng;
}

static void test_fuzz(void **state) {
  (void)state;
  /* a request (JSON + binary), a response (binary + non-finite values), metadata */
  static const char *const jsons[] = {
      "{\"id\":\"f\",\"parameters\":{\"binary_data_output\":true},\"inputs\":["
      "{\"name\":\"a\",\"shape\":[2,2],\"datatype\":\"FP32\",\"data\":[[1.5,-2e-3],[NaN,4]]},"
      "{\"name\":\"b\",\"shape\":[3],\"datatype\":\"INT64\",\"data\":[1,-2,3]},"
      "{\"name\":\"c\",\"shape\":[2],\"datatype\":\"BOOL\",\"parameters\":{\"binary_data_size\":2}}"
      ","
      "{\"name\":\"d\",\"shape\":[1],\"datatype\":\"UINT8\",\"data\":[7]}],"
      "\"outputs\":[{\"name\":\"y\",\"parameters\":{\"binary_data\":false}}]}",
      "{\"model_name\":\"m\",\"model_version\":\"1\",\"outputs\":["
      "{\"name\":\"y\",\"datatype\":\"FP16\",\"shape\":[1],\"parameters\":{\"binary_data_size\":2}}"
      ","
      "{\"name\":\"z\",\"datatype\":\"FP64\",\"shape\":[1,2],\"data\":[[-Infinity,null]]}]}",
      "{\"name\":\"m\",\"versions\":[\"1\"],\"platform\":\"seifer\",\"inputs\":[{\"name\":\"x\","
      "\"datatype\":\"FP32\",\"shape\":[-1,3]}],\"outputs\":[{\"name\":\"y\",\"datatype\":\"INT8\","
      "\"shape\":[2]}]}"};
  static const char dict[] = "[]{}\",:-+.eE0919NI\\ tfnu";
  const char *env = getenv("SEIFER_FUZZ_ITERS");
  int iters = env ? atoi(env) : 30000, accepted = 0;
  sf_kserve_req *r = calloc(1, sizeof *r);
  sf_kserve_resp *rp = calloc(1, sizeof *rp);
  sf_kserve_meta *mt = calloc(1, sizeof *mt);
  for (int it = 0; it < iters; it++) {
    const char *json = jsons[fnext() % 3];
    size_t jl = strlen(json), base_len = jl + 2, len = base_len;
    uint8_t *b = malloc(base_len + 64);
    memcpy(b, json, jl);
    b[jl] = 1, b[jl + 1] = 0; /* the binary section */
    int nm = 1 + (int)(fnext() % 4);
    for (int k = 0; k < nm && len > 1; k++) {
      size_t pos = fnext() % len;
      switch (fnext() % 5) {
        case 0:
          b[pos] = (uint8_t)fnext();
          break;
        case 1:
          b[pos] = (uint8_t)dict[fnext() % (sizeof dict - 1)];
          break;
        case 2: /* delete */
          memmove(b + pos, b + pos + 1, len - pos - 1);
          len--;
          break;
        case 3: /* insert */
          if (len < base_len + 60) {
            memmove(b + pos + 1, b + pos, len - pos);
            b[pos] = (uint8_t)dict[fnext() % (sizeof dict - 1)];
            len++;
          }
          break;
        case 4:
          len = pos + 1;
          break; /* truncate */
      }
    }
    uint8_t *exact = malloc(len); /* exactly sized: any overread is an ASan error */
    memcpy(exact, b, len);
    free(b);
    long hl = (long)jl + (long)(fnext() % 5) - 2;
    if (fnext() % 4 == 0) hl = -1;
    sf_err e = {0};
    if (sf__kserve_parse_request(exact, len, hl, r, &e) == 0) {
      accepted++;
      sf__kserve_req_deinit(r);
    } else {
      assert_true(e.code < 0 && e.msg[0]);
    }
    if (sf__kserve_parse_response(exact, len, hl, rp, &e) == 0) {
      accepted++;
      sf__kserve_resp_deinit(rp);
    }
    if (sf__kserve_parse_metadata(exact, len, mt, &e) == 0) {
      accepted++;
      sf__kserve_meta_deinit(mt);
    }
    free(exact);
  }
  print_message("fuzz: %d mutated bodies, %d parses accepted\n", iters, accepted);
  assert_true(iters < 100 || accepted > 0); /* some mutations keep a body valid */
  free(r);
  free(rp);
  free(mt);
}

/* ---- metrics ------------------------------------------------------------------------------- */
static void test_metrics_render(void **state) {
  (void)state;
  sf_metrics *m = sf__metrics_new();
  sf_counter *c = sf__metrics_counter(m, "seifer_requests_total", "Requests.", NULL);
  sf_counter *c200 =
      sf__metrics_counter(m, "seifer_http_total", "By code\\status\nline.", "code=\"200\"");
  sf_counter *c503 = sf__metrics_counter(m, "seifer_http_total", "ignored", "code=\"503\"");
  sf_gauge *g = sf__metrics_gauge(m, "seifer_inflight", "In flight.", "");
  double bounds[2] = {0.1, 1};
  sf_histogram *h = sf__metrics_histogram_buckets(m, "lat", "Latency.", NULL, bounds, 2);
  sf_histogram *hd = sf__metrics_histogram(m, "seifer_stage_seconds", "Stage time.", "stage=\"1\"");
  assert_non_null(c);
  assert_non_null(c200);
  assert_non_null(c503);
  assert_non_null(g);
  assert_non_null(h);
  assert_non_null(hd);
  assert_ptr_equal(sf__metrics_counter(m, "seifer_http_total", "x", "code=\"200\""), c200);
  /* refused: another type, bad names, bad labels, le on a histogram, bad buckets */
  assert_null(sf__metrics_gauge(m, "seifer_requests_total", "x", NULL));
  assert_null(sf__metrics_counter(m, "9bad", "x", NULL));
  assert_null(sf__metrics_counter(m, "bad-name", "x", NULL));
  assert_null(sf__metrics_counter(m, "ok", "x", "code=200"));
  assert_null(sf__metrics_counter(m, "ok", "x", "code=\"2\"\""));
  assert_null(sf__metrics_counter(m, "ok", "x", "code=\"2\","));
  assert_null(sf__metrics_histogram(m, "h2", "x", "le=\"1\""));
  double nb[2] = {1, 0.5};
  assert_null(sf__metrics_histogram_buckets(m, "h3", "x", NULL, nb, 2));
  assert_null(sf__metrics_histogram_buckets(m, "lat", "x", "a=\"b\"", nb, 1));
  sf__counter_add(NULL, 1); /* no-ops */
  sf__histogram_observe(NULL, 1);
  sf__gauge_set(NULL, 1);
  sf__counter_add(c, 3);
  sf__counter_add(c200, 1);
  sf__counter_add(c503, 2);
  sf__gauge_set(g, 4);
  sf__gauge_add(g, -1.5);
  sf__histogram_observe(h, 0.0625);
  sf__histogram_observe(h, 0.1); /* le is inclusive */
  sf__histogram_observe(h, 0.5);
  sf__histogram_observe(h, 4);
  sf__histogram_observe(h, NAN); /* ignored */
  sf__histogram_observe(hd, 0.003);
  char lv[32];
  assert_int_equal(sf__metrics_label_value("a\"b\\c\nd", lv, sizeof lv), 0);
  assert_string_equal(lv, "a\\\"b\\\\c\\nd");
  assert_int_equal(sf__metrics_label_value("abcdef", lv, 4), -1);
  sf_buf b = {0};
  assert_int_equal(sf__metrics_render(m, &b), 0);
  sf__buf_put(&b, "", 1);
  const char *want =
      "# HELP seifer_requests_total Requests.\n"
      "# TYPE seifer_requests_total counter\n"
      "seifer_requests_total 3\n"
      "# HELP seifer_http_total By code\\\\status\\nline.\n"
      "# TYPE seifer_http_total counter\n"
      "seifer_http_total{code=\"200\"} 1\n"
      "seifer_http_total{code=\"503\"} 2\n"
      "# HELP seifer_inflight In flight.\n"
      "# TYPE seifer_inflight gauge\n"
      "seifer_inflight 2.5\n"
      "# HELP lat Latency.\n"
      "# TYPE lat histogram\n"
      "lat_bucket{le=\"0.1\"} 2\n"
      "lat_bucket{le=\"1\"} 3\n"
      "lat_bucket{le=\"+Inf\"} 4\n"
      "lat_sum 4.6625\n"
      "lat_count 4\n"
      "# HELP seifer_stage_seconds Stage time.\n"
      "# TYPE seifer_stage_seconds histogram\n"
      "seifer_stage_seconds_bucket{stage=\"1\",le=\"0.001\"} 0\n"
      "seifer_stage_seconds_bucket{stage=\"1\",le=\"0.0025\"} 0\n"
      "seifer_stage_seconds_bucket{stage=\"1\",le=\"0.005\"} 1\n";
  if (strncmp((char *)b.data, want, strlen(want))) fail_msg("rendered:\n%s", (char *)b.data);
  assert_non_null(strstr((char *)b.data,
                         "seifer_stage_seconds_bucket{stage=\"1\",le=\"60\"} 1\n"
                         "seifer_stage_seconds_bucket{stage=\"1\",le=\"+Inf\"} 1\n"
                         "seifer_stage_seconds_sum{stage=\"1\"} 0.003\n"
                         "seifer_stage_seconds_count{stage=\"1\"} 1\n"));
  assert_int_equal(sf__histogram_count(h), 4);
  sf__buf_deinit(&b);
  sf__metrics_free(m);
  sf__metrics_free(NULL);
}

typedef struct mt_arg {
  sf_counter *c;
  sf_histogram *h;
  sf_gauge *g;
} mt_arg;

static void *mt_worker(void *p) {
  mt_arg *a = p;
  for (int i = 0; i < 50000; i++) {
    sf__counter_add(a->c, 1);
    sf__histogram_observe(a->h, 0.25);
    sf__gauge_add(a->g, 1);
  }
  return NULL;
}

static void test_metrics_threads(void **state) {
  (void)state;
  sf_metrics *m = sf__metrics_new();
  mt_arg a = {sf__metrics_counter(m, "c_total", "c", NULL),
              sf__metrics_histogram(m, "h", "h", NULL), sf__metrics_gauge(m, "g", "g", NULL)};
  pthread_t th[4];
  for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, mt_worker, &a);
  sf_buf b = {0};
  for (int i = 0; i < 20; i++) { /* rendering while counting */
    b.len = 0;
    assert_int_equal(sf__metrics_render(m, &b), 0);
  }
  for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
  assert_int_equal(sf__counter_get(a.c), 200000);
  assert_int_equal(sf__histogram_count(a.h), 200000);
  assert_true(sf__histogram_sum(a.h) == 50000.0);
  assert_true(sf__gauge_get(a.g) == 200000.0);
  sf__buf_deinit(&b);
  sf__metrics_free(m);
}

/* ---- a small KServe server ------------------------------------------------------------------ */
typedef struct fake {
  struct MHD_Daemon *d;
  int port;
  atomic_int n_infer;
  int fail_every; /* answer 503 to every n-th inference request (0: never) */
} fake;

typedef struct upload {
  sf_buf b;
} upload;

static enum MHD_Result send_buf(struct MHD_Connection *c, int status, sf_buf *b, long json_len) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(b->len, b->data, MHD_RESPMEM_MUST_FREE);
  b->data = NULL;
  b->len = b->cap = 0;
  if (json_len >= 0) {
    char v[32];
    snprintf(v, sizeof v, "%ld", json_len);
    MHD_add_response_header(resp, "Inference-Header-Content-Length", v);
  }
  MHD_add_response_header(resp, "Content-Type",
                          json_len >= 0 ? "application/octet-stream" : "application/json");
  enum MHD_Result r = MHD_queue_response(c, (unsigned)status, resp);
  MHD_destroy_response(resp);
  return r;
}

static enum MHD_Result fake_handler(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version, const char *data,
                                    size_t *data_size, void **con_cls) {
  (void)version;
  fake *f = cls;
  upload *u = *con_cls;
  if (!u) {
    *con_cls = calloc(1, sizeof *u);
    return MHD_YES;
  }
  if (*data_size) {
    sf__buf_put(&u->b, data, *data_size);
    *data_size = 0;
    return MHD_YES;
  }
  sf_buf out = {0};
  sf_err e = {0};
  if (!strcmp(method, "GET") && !strncmp(url, "/v2/models/", 11) && !strchr(url + 11, '/')) {
    sf_tensor in = {.name = "x", .dtype = SF_F32, .rank = 2, .dims = {-1, 4}};
    sf_tensor o = {.name = "y", .dtype = SF_F32, .rank = 2, .dims = {-1, 4}};
    sf__kserve_metadata(&out, url + 11, "1", &in, 1, &o, 1, &e);
    return send_buf(c, 200, &out, -1);
  }
  if (strcmp(method, "POST") || strncmp(url, "/v2/models/", 11) || !strstr(url, "/infer")) {
    sf__kserve_error_body(&out, "not found");
    return send_buf(c, 404, &out, -1);
  }
  int n = atomic_fetch_add(&f->n_infer, 1) + 1;
  char model[64];
  snprintf(model, sizeof model, "%.*s", (int)strcspn(url + 11, "/"), url + 11);
  if (!strncmp(url + 11, "slow/", 5)) sleep(1);
  if (!strncmp(url + 11, "garbage/", 8)) {
    sf__buf_put(&out, "{\"outputs\":5}", 13);
    return send_buf(c, 200, &out, -1);
  }
  if (f->fail_every && n % f->fail_every == 0) {
    sf__kserve_error_body(&out, "overloaded");
    return send_buf(c, 503, &out, -1);
  }
  const char *hl =
      MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Inference-Header-Content-Length");
  sf_kserve_req *r = calloc(1, sizeof *r);
  int status = 200;
  size_t jl = 0;
  if (sf__kserve_parse_request(u->b.data, u->b.len, hl ? atol(hl) : -1, r, &e) < 0) {
    status = 400;
    sf__kserve_error_body(&out, e.msg);
  } else {
    sf_tensor y = r->inputs[0];
    y.name = "y";
    if (sf__kserve_build_response(&out, &jl, model, "1", r, &y, 1, &e) < 0) {
      status = 400;
      out.len = 0;
      sf__kserve_error_body(&out, e.msg);
    }
  }
  sf__kserve_req_deinit(r);
  free(r);
  return send_buf(c, status, &out, status == 200 && jl < out.len ? (long)jl : -1);
}

static void fake_done(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)c, (void)toe;
  upload *u = *con_cls;
  if (u) sf__buf_deinit(&u->b);
  free(u);
  *con_cls = NULL;
}

static fake *fake_start(int port) {
  fake *f = calloc(1, sizeof *f);
  f->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
                          (uint16_t)port, NULL, NULL, fake_handler, f, MHD_OPTION_NOTIFY_COMPLETED,
                          fake_done, f, MHD_OPTION_END);
  assert_non_null(f->d);
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
  f->port = di->port;
  return f;
}

static void fake_stop(fake *f) {
  MHD_stop_daemon(f->d);
  free(f);
}

static void test_client_request(void **state) {
  (void)state;
  fake *f = fake_start(0);
  char base[64], url[256];
  snprintf(base, sizeof base, "http://127.0.0.1:%d/", f->port);
  sf_err e = {0};
  sf_kserve_meta *m = calloc(1, sizeof *m);
  assert_int_equal(sf__kclient_metadata(base, "m", 5, m, &e), 0);
  assert_string_equal(m->name, "m");
  assert_int_equal(m->inputs[0].dims[0], -1);
  sf_kserve_req *rq = calloc(1, sizeof *rq);
  sf_kclient_input_opts io = {.random = 1};
  assert_int_equal(sf__kclient_make_inputs(m, &io, rq, &e), 0);
  assert_int_equal(rq->inputs[0].dims[0], 1); /* dynamic dim -> 1 */
  io = (sf_kclient_input_opts){.name = "nope", .file = "x.npy"};
  sf_kserve_req *r2 = calloc(1, sizeof *r2);
  assert_int_equal(sf__kclient_make_inputs(m, &io, r2, &e), SF_ENOTFOUND);
  assert_non_null(strstr(e.msg, "has inputs 'x'"));
  io = (sf_kclient_input_opts){0};
  assert_int_equal(sf__kclient_make_inputs(m, &io, r2, &e), SF_EINVAL);
  assert_non_null(strstr(e.msg, "input 'x' has no data"));
  free(r2);
  for (int binary = 0; binary < 2; binary++) {
    sf_buf body = {0};
    size_t jl;
    rq->binary_default = binary;
    assert_int_equal(sf__kserve_build_request(&body, &jl, rq, binary, &e), 0);
    assert_int_equal(sf__kclient_url(url, sizeof url, base, "m", "/infer", &e), 0);
    assert_non_null(strstr(url, "127.0.0.1"));
    assert_string_equal(strstr(url, "/v2/"), "/v2/models/m/infer");
    sf_http_resp hr;
    assert_int_equal(sf__http_call(url, body.data, body.len, binary ? (long)jl : -1, 5, &hr, &e),
                     0);
    assert_int_equal(hr.status, 200);
    assert_int_equal(hr.header_len >= 0, binary);
    sf_kserve_resp *rp = calloc(1, sizeof *rp);
    assert_int_equal(sf__kserve_parse_response(hr.body.data, hr.body.len, hr.header_len, rp, &e),
                     0);
    assert_int_equal(rp->n_outputs, 1);
    assert_string_equal(rp->model_name, "m");
    assert_string_equal(rp->outputs[0].name, "y");
    assert_memory_equal(rp->outputs[0].data, rq->inputs[0].data, 16);
    sf__kserve_resp_deinit(rp);
    free(rp);
    sf__http_resp_deinit(&hr);
    sf__buf_deinit(&body);
  }
  /* errors: 404 with its message, bad arguments, nothing listening */
  sf_http_resp hr;
  snprintf(url, sizeof url, "http://127.0.0.1:%d/v2/nothing", f->port);
  assert_int_equal(sf__http_call(url, NULL, 0, -1, 5, &hr, &e), 0);
  assert_int_equal(hr.status, 404);
  char msg[64];
  sf__http_error_text(&hr, msg, sizeof msg);
  assert_string_equal(msg, "not found");
  sf__http_resp_deinit(&hr);
  assert_int_equal(sf__kclient_url(url, sizeof url, "ftp://x", "m", "", &e), SF_EINVAL);
  assert_int_equal(sf__kclient_url(url, sizeof url, "http://", "m", "", &e), SF_EINVAL);
  assert_int_equal(sf__kclient_url(url, sizeof url, "http://h:1", "", "", &e), SF_EINVAL);
  assert_int_equal(sf__kclient_url(url, sizeof url, "http://h:1", "a b/c", "/infer", &e), 0);
  assert_string_equal(url, "http://h:1/v2/models/a%20b%2Fc/infer");
  assert_int_equal(sf__http_call("http://127.0.0.1:1/", NULL, 0, -1, 5, &hr, &e), SF_EIO);
  sf__kserve_req_deinit(rq);
  free(rq);
  sf__kserve_meta_deinit(m);
  free(m);
  fake_stop(f);
}

static void loadgen_body(int binary, sf_buf *body, long *hl) {
  sf_kserve_req *rq = calloc(1, sizeof *rq);
  float x[4] = {1, 2, 3, 4};
  rq->n_inputs = 1;
  rq->inputs[0] = (sf_tensor){.name = "x", .dtype = SF_F32, .rank = 2, .dims = {1, 4}, .data = x};
  rq->binary_default = binary;
  size_t jl;
  sf_err e;
  assert_int_equal(sf__kserve_build_request(body, &jl, rq, binary, &e), 0);
  *hl = binary ? (long)jl : -1;
  free(rq);
}

static void test_loadgen(void **state) {
  (void)state;
  fake *f = fake_start(0);
  f->fail_every = 4;
  char base[64];
  snprintf(base, sizeof base, "http://127.0.0.1:%d", f->port);
  sf_buf body = {0};
  long hl;
  loadgen_body(0, &body, &hl);
  sf_loadgen_opts o = {.url = base,
                       .model = "m",
                       .body = body.data,
                       .body_len = body.len,
                       .header_len = hl,
                       .concurrency = 4,
                       .count = 40,
                       .timeout_s = 10};
  sf_loadgen_result r;
  sf_err e = {0};
  assert_int_equal(sf__loadgen_run(&o, &r, &e), 0);
  assert_int_equal(r.requests, 40);
  assert_int_equal(r.ok, 30);
  assert_int_equal(r.failed, 10);
  assert_int_equal(r.n_reasons, 1);
  assert_string_equal(r.reasons[0].name, "http_503");
  assert_int_equal(r.reasons[0].count, 10);
  assert_string_equal(r.reasons[0].example, "overloaded");
  assert_true(r.p50_ms > 0 && r.p50_ms <= r.p90_ms && r.p90_ms <= r.p99_ms && r.p99_ms <= r.max_ms);
  sf_buf js = {0};
  assert_int_equal(sf__loadgen_json(&r, &js), 0);
  cJSON *j = cJSON_ParseWithLength((char *)js.data, js.len);
  assert_non_null(j);
  assert_int_equal(cJSON_GetObjectItem(j, "requests")->valueint, 40);
  assert_int_equal(cJSON_GetObjectItem(j, "failed")->valueint, 10);
  assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "errors"), "http_503")->valueint, 10);
  assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "latency_ms"), "p99"));
  cJSON_Delete(j);
  sf__buf_deinit(&js);
  /* binary both ways, all good; then by duration */
  f->fail_every = 0;
  sf__buf_deinit(&body);
  loadgen_body(1, &body, &hl);
  o.body = body.data, o.body_len = body.len, o.header_len = hl;
  assert_int_equal(sf__loadgen_run(&o, &r, &e), 0);
  assert_int_equal(r.ok, 40);
  assert_int_equal(r.failed, 0);
  o.count = 0;
  o.duration_s = 0.3;
  assert_int_equal(sf__loadgen_run(&o, &r, &e), 0);
  assert_true(r.ok > 0);
  assert_int_equal(r.failed, 0);
  assert_int_equal(r.requests, r.ok);
  /* answers that are no inference response; timeouts; nothing listening */
  o.duration_s = 0;
  o.count = 5;
  o.model = "garbage";
  assert_int_equal(sf__loadgen_run(&o, &r, &e), 0);
  assert_int_equal(r.failed, 5);
  assert_string_equal(r.reasons[0].name, "bad_response");
  o.model = "slow";
  o.count = 2;
  o.concurrency = 2;
  o.timeout_s = 0.2;
  assert_int_equal(sf__loadgen_run(&o, &r, &e), 0);
  assert_int_equal(r.failed, 2);
  assert_string_equal(r.reasons[0].name, "timeout");
  o.url = "http://127.0.0.1:1";
  o.model = "m";
  assert_int_equal(sf__loadgen_run(&o, &r, &e), 0);
  assert_int_equal(r.failed, 2);
  assert_string_equal(r.reasons[0].name, "connect");
  /* bad options */
  o.concurrency = 0;
  assert_int_equal(sf__loadgen_run(&o, &r, &e), SF_EINVAL);
  o.concurrency = 1;
  o.count = 0;
  assert_int_equal(sf__loadgen_run(&o, &r, &e), SF_EINVAL);
  o.count = 1;
  o.header_len = (long)body.len + 1;
  assert_int_equal(sf__loadgen_run(&o, &r, &e), SF_EINVAL);
  sf__buf_deinit(&body);
  fake_stop(f);
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "--serve")) {
    fake *f = fake_start(atoi(argv[2]));
    printf("serving on port %d\n", f->port);
    fflush(stdout);
    for (;;) pause();
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_flat_fp32),
      cmocka_unit_test(test_parse_nested_types),
      cmocka_unit_test(test_parse_binary),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_parse_escaped_keys),
      cmocka_unit_test(test_fmt_f32),
      cmocka_unit_test(test_error_body),
      cmocka_unit_test(test_response_roundtrip),
      cmocka_unit_test(test_request_roundtrip),
      cmocka_unit_test(test_metadata),
      cmocka_unit_test(test_fuzz),
      cmocka_unit_test(test_metrics_render),
      cmocka_unit_test(test_metrics_threads),
      cmocka_unit_test(test_client_request),
      cmocka_unit_test(test_loadgen),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
