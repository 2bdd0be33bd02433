/* The client side of the KServe v2 HTTP API (libcurl): one-shot calls for `seifer request`, and
 * the load generator behind `seifer loadgen`.
 *
 *     sf_kserve_meta meta;
 *     sf__kclient_metadata("http://127.0.0.1:8080", "resnet", 10, &meta, &err);
 *     sf_kserve_req *req = calloc(1, sizeof *req);
 *     sf__kclient_make_inputs(&meta, &(sf_kclient_input_opts){.random = 1}, req, &err);
 *     sf_buf body = {0};
 *     size_t json_len;
 *     sf__kserve_build_request(&body, &json_len, req, 1, &err);
 *     sf_loadgen_opts o = {.url = "http://127.0.0.1:8080", .model = "resnet", .body = body.data,
 *                          .body_len = body.len, .header_len = (long)json_len,
 *                          .concurrency = 8, .count = 1000, .timeout_s = 30};
 *     sf_loadgen_result res;
 *     sf__loadgen_run(&o, &res, &err);
 *
 * Every answer is checked: HTTP 200 and a body that parses as an inference response (binary
 * extension included) with at least one output; anything else counts as failed, by reason. */
#ifndef SF_CLIENT_H
#define SF_CLIENT_H

#include <signal.h>

#include "serve/kserve.h"

/* ---- one-shot HTTP ----------------------------------------------------------------------------
 */
typedef struct sf_http_resp {
  long status;     /* HTTP status */
  long header_len; /* Inference-Header-Content-Length of the answer, -1 when absent */
  sf_buf body;
} sf_http_resp;

/* GET (body NULL) or POST (JSON, or JSON + binary when header_len >= 0) to url. Transport
 * failures (connect, timeout) are errors (SF_EIO); any HTTP status is a success with
 * out->status set. Bodies above SF_KSERVE_MAX_BODY are refused (SF_ELIMIT). */
int sf__http_call(const char *url, const void *body, size_t len, long header_len, double timeout_s,
                  sf_http_resp *out, sf_err *err);
void sf__http_resp_deinit(sf_http_resp *r);

/* The message of a {"error": "..."} body, else the body's start (printable bytes), in out. */
void sf__http_error_text(const sf_http_resp *r, char *out, size_t cap);

/* Check a base URL ("http://host:port[/prefix]", trailing '/' dropped) and a model name, and
 * write base + "/v2/models/" + escaped model + suffix. */
int sf__kclient_url(char *out, size_t cap, const char *base, const char *model, const char *suffix,
                    sf_err *err);

/* GET /v2/models/MODEL and parse it. */
int sf__kclient_metadata(const char *base, const char *model, double timeout_s, sf_kserve_meta *m,
                         sf_err *err);

/* Inputs of a request, following the model's metadata: the tensor in `file` (.npy or .pb) for the
 * input `name` (or the only input when name is NULL), and random values (uniform [0,1) for
 * floats, 0..9 for integers, 0/1 for BOOL; dynamic dims become 1) for the other inputs when
 * `random`; an input left without data is an error naming it. */
typedef struct sf_kclient_input_opts {
  const char *file;
  const char *name;
  int random;
  uint64_t seed;
} sf_kclient_input_opts;
int sf__kclient_make_inputs(const sf_kserve_meta *m, const sf_kclient_input_opts *o,
                            sf_kserve_req *req, sf_err *err);

/* ---- load generator ---------------------------------------------------------------------------
 */
typedef struct sf_loadgen_opts {
  const char *url; /* base URL */
  const char *model;
  const uint8_t *body; /* the request sent every time */
  size_t body_len;
  long header_len;             /* JSON part length when the body has binary inputs, else -1 */
  int concurrency;             /* requests in flight (1..4096) */
  double duration_s;           /* stop starting requests after this long (0: use count) */
  int64_t count;               /* or after this many (0: use duration) */
  double timeout_s;            /* per request */
  int progress;                /* a line on stderr every second */
  volatile sig_atomic_t *stop; /* optional: set to end early (SIGINT) */
} sf_loadgen_opts;

#define SF_LOADGEN_MAX_REASONS 16
typedef struct sf_loadgen_reason {
  char name[48]; /* "http_503", "timeout", "connect", "transport", "bad_response", ... */
  int64_t count;
  char example[256]; /* the first message seen */
} sf_loadgen_reason;

typedef struct sf_loadgen_result {
  int64_t requests, ok, failed;
  double duration_s;                              /* first start to last answer */
  double throughput_per_s;                        /* ok / duration_s */
  double steady_throughput_per_s; /* (ok - 1) / (last answer - first answer): without the time
                                     the first request takes to fill the pipeline */
  double p50_ms, p90_ms, p99_ms, max_ms, mean_ms; /* latency of the successful requests */
  int n_reasons; /* failures by reason ("other" collects any beyond the table) */
  sf_loadgen_reason reasons[SF_LOADGEN_MAX_REASONS];
} sf_loadgen_result;

/* Run until count requests have been answered, the duration is over, or *stop. Requests in
 * flight at the end are awaited (bounded by timeout_s). Latency percentiles come from a log
 * histogram with 1% wide buckets (max and mean are exact). Returns 0 when the run could be
 * made (check r->failed), a negative code for bad options or setup failures. */
int sf__loadgen_run(const sf_loadgen_opts *o, sf_loadgen_result *r, sf_err *err);

/* The result as one JSON object (requests, failed, duration_s, throughput_per_s,
 * latency_ms{p50,p90,p99,max,mean}, errors{reason: count}). */
int sf__loadgen_json(const sf_loadgen_result *r, sf_buf *out);

#endif
