/* seifer request / seifer loadgen: clients of a KServe v2 endpoint (a seifer gateway or any
 * Open Inference Protocol server). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "onnx/onnx.h"
#include "serve/client.h"
#include "util/util.h"

static void usage_request(void) {
  printf(
      "usage: seifer request --url URL --model NAME (--input FILE | --random) [--input-name NAME]\n"
      "                      [--binary] [-o OUT.npy] [--timeout S]\n"
      "Send one inference request (KServe v2 / Open Inference Protocol) and summarise the answer.\n"
      "  --url URL          the server, e.g. http://127.0.0.1:8080\n"
      "  --model NAME       model name; its inputs come from GET /v2/models/NAME\n"
      "  --input FILE       a .npy array (or ONNX TensorProto .pb) for the model's input\n"
      "  --input-name NAME  which input FILE is (needed when the model has several)\n"
      "  --random           random values for every input not given by --input\n"
      "                     (floats in [0,1), integers 0..9; dynamic dims become 1)\n"
      "  --binary           send inputs and ask for outputs in the binary tensor data extension\n"
      "  -o, --output FILE  write the first output to FILE (.npy)\n"
      "  --timeout S        seconds for each HTTP call (default 30)\n"
      "Prints each output's name, datatype, shape and a summary (min/max/mean; top-5 classes\n"
      "for 1-D and 2-D floating-point outputs). Exit status 1 when the server answers an error.\n");
}

static void usage_loadgen(void) {
  printf(
      "usage: seifer loadgen --url URL --model NAME (--input FILE | --random) [--input-name NAME]\n"
      "                      [--concurrency C] [--duration S | --count N] [--binary] [--json]\n"
      "                      [--timeout S]\n"
      "Send the same inference request as fast as answers come, C at a time (default 1), for S\n"
      "seconds (default 10) or N requests, over kept-alive connections. Every answer is checked\n"
      "(HTTP 200 and a response with outputs); anything else counts as failed, by reason.\n"
      "A progress line goes to stderr every second; then throughput (successful answers per\n"
      "second), latency percentiles in ms and the failures. --json prints one JSON object on\n"
      "stdout: {\"requests\",\"ok\",\"failed\",\"duration_s\",\"throughput_per_s\",\n"
      "\"steady_throughput_per_s\","
      "\"latency_ms\":{\"p50\",\"p90\",\"p99\",\"max\",\"mean\"},\"errors\":{reason: count}} (the\n"
      "readable summary then goes to stderr). Exit status 1 when any request failed.\n"
      "--input, --input-name, --random, --binary, --timeout: as for 'seifer request'.\n");
}

static int parse_seconds(const char *opt, const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v > lo) || v > hi) {
    sf_cli_err("%s: '%s' is not a number of seconds in (%g, %g]", opt, s, lo, hi);
    return -1;
  }
  *out = v;
  return 0;
}

/* Options both commands take. */
typedef struct kopts {
  const char *url, *model, *input, *input_name, *out;
  int random, binary, json;
  double timeout, duration;
  long concurrency, count;
} kopts;

/* 1: consumed argv[*i] (and its value), 0: not a common option, -1: error printed. */
static int common_opt(int argc, char **argv, int *i, kopts *k) {
  const char *a = argv[*i];
  const char **dst = !strcmp(a, "--url")          ? &k->url
                     : !strcmp(a, "--model")      ? &k->model
                     : !strcmp(a, "--input")      ? &k->input
                     : !strcmp(a, "--input-name") ? &k->input_name
                                                  : NULL;
  if (dst) {
    if (*dst) {
      sf_cli_err("%s given twice", a);
      return -1;
    }
    return (*dst = sf_cli_value(argc, argv, i)) ? 1 : -1;
  }
  if (!strcmp(a, "--random")) return k->random = 1;
  if (!strcmp(a, "--binary")) return k->binary = 1;
  if (!strcmp(a, "--timeout")) {
    const char *v = sf_cli_value(argc, argv, i);
    return v && parse_seconds("--timeout", v, 0, 86400, &k->timeout) == 0 ? 1 : -1;
  }
  return 0;
}

static int check_common(const kopts *k) {
  if (!k->url) {
    sf_cli_err("--url is required (e.g. --url http://127.0.0.1:8080)");
    return -1;
  }
  if (!k->model) {
    sf_cli_err("--model is required");
    return -1;
  }
  if (!k->input && !k->random) {
    sf_cli_err("give --input FILE or --random");
    return -1;
  }
  if (k->input_name && !k->input) {
    sf_cli_err("--input-name needs --input");
    return -1;
  }
  sf_err err = {0};
  char url[4096];
  if (sf__kclient_url(url, sizeof url, k->url, k->model, "", &err) < 0) {
    sf_cli_err("%s", err.msg);
    return -1;
  }
  return 0;
}

/* Metadata, inputs and the request body. */
static int prepare(const kopts *k, sf_kserve_meta *meta, sf_kserve_req *req, sf_buf *body,
                   long *header_len) {
  sf_err err = {0};
  size_t json_len = 0;
  if (sf__kclient_metadata(k->url, k->model, k->timeout, meta, &err) < 0) {
    sf_cli_err("model metadata: %s", err.msg);
    return -1;
  }
  sf_kclient_input_opts io = {.file = k->input, .name = k->input_name, .random = k->random};
  if (sf__kclient_make_inputs(meta, &io, req, &err) < 0) {
    sf_cli_err("%s", err.msg);
    return -1;
  }
  req->binary_default = k->binary;
  if (sf__kserve_build_request(body, &json_len, req, k->binary, &err) < 0) {
    sf_cli_err("%s", err.msg);
    return -1;
  }
  *header_len = k->binary ? (long)json_len : -1;
  return 0;
}

/* ---- request ------------------------------------------------------------------------------- */
static double elem(const sf_tensor *t, int64_t i) {
  const void *d = t->data;
  switch (t->dtype) {
    case SF_F32:
      return ((const float *)d)[i];
    case SF_F64:
      return ((const double *)d)[i];
    case SF_F16: {
      uint16_t h = ((const uint16_t *)d)[i];
      int e = (h >> 10) & 0x1f, m = h & 0x3ff;
      double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
      return h >> 15 ? -v : v;
    }
    case SF_BOOL:
    case SF_U8:
      return ((const uint8_t *)d)[i];
    case SF_I8:
      return ((const int8_t *)d)[i];
    case SF_U16:
      return ((const uint16_t *)d)[i];
    case SF_I16:
      return ((const int16_t *)d)[i];
    case SF_U32:
      return ((const uint32_t *)d)[i];
    case SF_I32:
      return ((const int32_t *)d)[i];
    case SF_U64:
      return (double)((const uint64_t *)d)[i];
    case SF_I64:
      return (double)((const int64_t *)d)[i];
  }
  return NAN;
}

static void summarise(const sf_tensor *t) {
  int64_t n = sf_tensor_numel(t), nan = 0, finite = 0;
  double mn = INFINITY, mx = -INFINITY, sum = 0;
  for (int64_t i = 0; i < n; i++) {
    double v = elem(t, i);
    if (isnan(v)) {
      nan++;
      continue;
    }
    if (v < mn) mn = v;
    if (v > mx) mx = v;
    if (isfinite(v)) sum += v, finite++;
  }
  if (n == 0) {
    printf("    (empty)\n");
    return;
  }
  printf("    min %.6g  max %.6g  mean %.6g", mn, mx, finite ? sum / (double)finite : NAN);
  if (nan) printf("  NaN %lld", (long long)nan);
  printf("\n");
  int fl = t->dtype == SF_F32 || t->dtype == SF_F64 || t->dtype == SF_F16;
  if (!fl || (t->rank != 1 && t->rank != 2)) return;
  int64_t rows = t->rank == 2 ? t->dims[0] : 1, cols = t->dims[t->rank - 1];
  for (int64_t r = 0; r < rows && r < 4 && cols > 0; r++) {
    int64_t top[5];
    double tv[5];
    int k = 0;
    for (int64_t c = 0; c < cols; c++) {
      double v = elem(t, r * cols + c);
      if (isnan(v)) continue;
      if (k < 5) {
        top[k] = c, tv[k] = v, k++;
      } else if (v > tv[4]) {
        top[4] = c, tv[4] = v;
      } else {
        continue;
      }
      for (int j = k - 1; j > 0 && tv[j] > tv[j - 1]; j--) {
        int64_t ti = top[j];
        double tt = tv[j];
        top[j] = top[j - 1], tv[j] = tv[j - 1];
        top[j - 1] = ti, tv[j - 1] = tt;
      }
    }
    if (rows > 1) printf("    row %lld", (long long)r);
    printf("    argmax %lld  top-%d:", (long long)(k ? top[0] : -1), k);
    for (int j = 0; j < k; j++) printf(" %lld (%.4g)", (long long)top[j], tv[j]);
    printf("\n");
  }
  if (rows > 4) printf("    ... %lld more rows\n", (long long)(rows - 4));
}

static int run_request(int argc, char **argv) {
  kopts k = {.timeout = 30};
  int rc = SF_EXIT_FAIL;
  for (int i = 1; i < argc; i++) {
    int c = common_opt(argc, argv, &i, &k);
    if (c < 0) return SF_EXIT_USAGE;
    if (c) continue;
    if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
      if (!(k.out = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else {
      sf_cli_err("request: unknown option '%s' (see seifer request --help)", argv[i]);
      return SF_EXIT_USAGE;
    }
  }
  if (check_common(&k) < 0) return SF_EXIT_USAGE;
  sf_kserve_meta *meta = sf__calloc(1, sizeof *meta);
  sf_kserve_req *req = sf__calloc(1, sizeof *req);
  sf_kserve_resp *resp = sf__calloc(1, sizeof *resp);
  sf_buf body = {0};
  sf_http_resp hr = {0};
  sf_err err = {0};
  long header_len = -1;
  char url[4096];
  if (!meta || !req || !resp) {
    sf_cli_err("out of memory");
    goto out;
  }
  if (prepare(&k, meta, req, &body, &header_len) < 0) goto out;
  sf__kclient_url(url, sizeof url, k.url, k.model, "/infer", NULL);
  double t0 = sf__now();
  if (sf__http_call(url, body.data, body.len, header_len, k.timeout, &hr, &err) < 0) {
    sf_cli_err("%s", err.msg);
    goto out;
  }
  double ms = (sf__now() - t0) * 1e3;
  if (hr.status != 200) {
    char msg[1024];
    sf__http_error_text(&hr, msg, sizeof msg);
    sf_cli_err("POST %s: HTTP %ld: %s", url, hr.status, msg);
    goto out;
  }
  if (sf__kserve_parse_response(hr.body.data, hr.body.len, hr.header_len, resp, &err) < 0) {
    sf_cli_err("POST %s: bad response: %s", url, err.msg);
    goto out;
  }
  printf("model %s%s%s: %d output%s in %.1f ms (%zu bytes sent, %zu received)\n",
         resp->model_name[0] ? resp->model_name : k.model,
         resp->model_version[0] ? " version " : "", resp->model_version, resp->n_outputs,
         resp->n_outputs == 1 ? "" : "s", ms, body.len, hr.body.len);
  for (int i = 0; i < resp->n_outputs; i++) {
    const sf_tensor *t = &resp->outputs[i];
    printf("  %s  %s [", t->name, sf__kserve_dtype_name(t->dtype));
    for (int d = 0; d < t->rank; d++) printf("%s%lld", d ? "," : "", (long long)t->dims[d]);
    printf("]\n");
    summarise(t);
  }
  if (k.out) {
    if (resp->n_outputs < 1) {
      sf_cli_err("-o %s: the response has no output", k.out);
      goto out;
    }
    if (sf__tensor_save_npy(k.out, &resp->outputs[0], &err) < 0) {
      sf_cli_err("%s", err.msg);
      goto out;
    }
    printf("wrote %s (%s)\n", k.out, resp->outputs[0].name);
  }
  rc = SF_EXIT_OK;
out:
  sf__http_resp_deinit(&hr);
  sf__buf_deinit(&body);
  if (resp) sf__kserve_resp_deinit(resp);
  if (req) sf__kserve_req_deinit(req);
  if (meta) sf__kserve_meta_deinit(meta);
  free(resp);
  free(req);
  free(meta);
  return rc;
}

/* ---- loadgen ------------------------------------------------------------------------------- */
static volatile sig_atomic_t lg_stop;
static void on_signal(int sig) {
  lg_stop = 1;
  signal(sig, SIG_DFL); /* a second Ctrl-C ends the program at once */
}

static void print_summary(FILE *f, const sf_loadgen_result *r) {
  fprintf(f, "requests   %lld (ok %lld, failed %lld) in %.2f s\n", (long long)r->requests,
          (long long)r->ok, (long long)r->failed, r->duration_s);
  fprintf(f, "throughput %.1f req/s (steady state, after the first answer: %.1f req/s)\n",
          r->throughput_per_s, r->steady_throughput_per_s);
  if (r->ok)
    fprintf(f, "latency ms p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  mean %.2f\n", r->p50_ms,
            r->p90_ms, r->p99_ms, r->max_ms, r->mean_ms);
  if (r->n_reasons) fprintf(f, "failures:\n");
  for (int i = 0; i < r->n_reasons; i++)
    fprintf(f, "  %-20s %8lld  (first: %s)\n", r->reasons[i].name, (long long)r->reasons[i].count,
            r->reasons[i].example);
}

static int run_loadgen(int argc, char **argv) {
  kopts k = {.timeout = 30, .concurrency = 1};
  int rc = SF_EXIT_FAIL, have_duration = 0, have_count = 0;
  for (int i = 1; i < argc; i++) {
    int c = common_opt(argc, argv, &i, &k);
    if (c < 0) return SF_EXIT_USAGE;
    if (c) continue;
    const char *a = argv[i], *v;
    if (!strcmp(a, "--json")) {
      k.json = 1;
    } else if (!strcmp(a, "--concurrency") || !strcmp(a, "-c")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int(a, v, 1, 4096, &k.concurrency) < 0)
        return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--duration")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || parse_seconds(a, v, 0, 7 * 86400, &k.duration) < 0)
        return SF_EXIT_USAGE;
      have_duration = 1;
    } else if (!strcmp(a, "--count") || !strcmp(a, "-n")) {
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int(a, v, 1, 1000000000L, &k.count) < 0)
        return SF_EXIT_USAGE;
      have_count = 1;
    } else {
      sf_cli_err("loadgen: unknown option '%s' (see seifer loadgen --help)", a);
      return SF_EXIT_USAGE;
    }
  }
  if (have_duration && have_count) {
    sf_cli_err("give --duration or --count, not both");
    return SF_EXIT_USAGE;
  }
  if (!have_duration && !have_count) k.duration = 10;
  if (check_common(&k) < 0) return SF_EXIT_USAGE;
  sf_kserve_meta *meta = sf__calloc(1, sizeof *meta);
  sf_kserve_req *req = sf__calloc(1, sizeof *req);
  sf_buf body = {0}, js = {0};
  sf_err err = {0};
  long header_len = -1;
  if (!meta || !req) {
    sf_cli_err("out of memory");
    goto out;
  }
  if (prepare(&k, meta, req, &body, &header_len) < 0) goto out;
  lg_stop = 0;
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  sf_loadgen_opts o = {.url = k.url,
                       .model = k.model,
                       .body = body.data,
                       .body_len = body.len,
                       .header_len = header_len,
                       .concurrency = (int)k.concurrency,
                       .duration_s = k.duration,
                       .count = k.count,
                       .timeout_s = k.timeout,
                       .progress = 1,
                       .stop = &lg_stop};
  fprintf(stderr, "loadgen: %s model %s, %zu-byte %s requests, concurrency %ld, %s\n", k.url,
          k.model, body.len, k.binary ? "binary" : "JSON", k.concurrency,
          have_count ? "count" : "duration");
  sf_loadgen_result r;
  if (sf__loadgen_run(&o, &r, &err) < 0) {
    sf_cli_err("%s", err.msg);
    goto out;
  }
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  print_summary(k.json ? stderr : stdout, &r);
  if (k.json) {
    if (sf__loadgen_json(&r, &js) < 0) {
      sf_cli_err("out of memory");
      goto out;
    }
    printf("%.*s\n", (int)js.len, (const char *)js.data);
  }
  rc = r.failed == 0 && r.ok > 0 ? SF_EXIT_OK : SF_EXIT_FAIL;
out:
  sf__buf_deinit(&js);
  sf__buf_deinit(&body);
  if (req) sf__kserve_req_deinit(req);
  if (meta) sf__kserve_meta_deinit(meta);
  free(req);
  free(meta);
  return rc;
}

const sf_cmd sf_cmd_request = {"request",
                               "send one KServe v2 inference request, summarise the answer",
                               run_request, usage_request};
const sf_cmd sf_cmd_loadgen = {"loadgen",
                               "load a KServe v2 endpoint: throughput, latency, failures",
                               run_loadgen, usage_loadgen};
