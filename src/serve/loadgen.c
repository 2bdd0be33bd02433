/* Load generator for the KServe v2 infer endpoint: `concurrency` requests kept in flight on one
 * thread with libcurl's multi interface (connections reused between requests), each answer
 * checked (HTTP 200, a response that parses with at least one output). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "serve/client.h"
#include "serve/client_priv.h"
#include "util/util.h"

/* Latency histogram: bucket i holds [LO * R^i, LO * R^(i+1)) ms. */
#define HIST_N 2400
#define HIST_LO 1e-3
#define HIST_R 1.01

typedef struct slot {
  CURL *c;
  sf__curl_sink sink;
  double t0;
  int active;
} slot;

typedef struct lg {
  const sf_loadgen_opts *o;
  sf_loadgen_result *r;
  uint64_t hist[HIST_N];
  double sum_ms;
  int64_t started;
  sf_kserve_resp resp; /* scratch for checking answers */
} lg;

static void add_reason(sf_loadgen_result *r, const char *name, const char *msg) {
  sf_loadgen_reason *x = NULL;
  r->failed++;
  for (int pass = 0; pass < 2 && !x; pass++) {
    for (int i = 0; i < r->n_reasons && !x; i++)
      if (!strcmp(r->reasons[i].name, name)) x = &r->reasons[i];
    if (!x && r->n_reasons >= SF_LOADGEN_MAX_REASONS - 1)
      name = "other"; /* the last slot */
    else
      break;
  }
  if (!x) {
    x = &r->reasons[r->n_reasons++];
    snprintf(x->name, sizeof x->name, "%s", name);
    snprintf(x->example, sizeof x->example, "%s", msg);
  }
  x->count++;
}

static void finish(lg *g, slot *s, CURLcode cc) {
  sf_loadgen_result *r = g->r;
  double ms = (sf__now() - s->t0) * 1000.0;
  char msg[512];
  r->requests++;
  if (cc != CURLE_OK) {
    const char *why = s->sink.too_big                  ? "response_too_large"
                      : cc == CURLE_OPERATION_TIMEDOUT ? "timeout"
                      : cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST
                          ? "connect"
                          : "transport";
    add_reason(r, why, s->sink.errbuf[0] ? s->sink.errbuf : curl_easy_strerror(cc));
    return;
  }
  long code = 0;
  curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &code);
  if (code != 200) {
    char name[32];
    sf_http_resp hr = {.status = code, .header_len = -1, .body = s->sink.body};
    snprintf(name, sizeof name, "http_%ld", code);
    sf__http_error_text(&hr, msg, sizeof msg);
    add_reason(r, name, msg);
    return;
  }
  if (s->sink.header_len == -2) {
    add_reason(r, "bad_response", "malformed Inference-Header-Content-Length");
    return;
  }
  sf_err err = {0};
  if (sf__kserve_parse_response(s->sink.body.data, s->sink.body.len, s->sink.header_len, &g->resp,
                                &err) < 0) {
    add_reason(r, "bad_response", err.msg);
    return;
  }
  int n = g->resp.n_outputs;
  sf__kserve_resp_deinit(&g->resp);
  if (n < 1) {
    add_reason(r, "bad_response", "the response has no outputs");
    return;
  }
  r->ok++;
  g->sum_ms += ms;
  if (ms > r->max_ms) r->max_ms = ms;
  int i = ms <= HIST_LO ? 0 : (int)(log(ms / HIST_LO) / log(HIST_R));
  g->hist[i < 0 ? 0 : i >= HIST_N ? HIST_N - 1 : i]++;
}

static double percentile(const lg *g, double q) {
  int64_t n = g->r->ok;
  if (n == 0) return 0;
  int64_t rank = (int64_t)ceil(q * (double)n);
  if (rank < 1) rank = 1;
  int64_t cum = 0;
  for (int i = 0; i < HIST_N; i++) {
    cum += (int64_t)g->hist[i];
    if (cum >= rank) {
      double v = HIST_LO * pow(HIST_R, i + 0.5);
      return v < g->r->max_ms ? v : g->r->max_ms;
    }
  }
  return g->r->max_ms;
}

static int can_start(const lg *g, double deadline) {
  const sf_loadgen_opts *o = g->o;
  if (o->stop && *o->stop) return 0;
  if (o->count > 0 && g->started >= o->count) return 0;
  return sf__now() < deadline;
}

static int start(lg *g, CURLM *m, slot *s) {
  s->sink.body.len = 0;
  s->sink.header_len = -1;
  s->sink.too_big = 0;
  s->sink.errbuf[0] = 0;
  s->t0 = sf__now();
  if (curl_multi_add_handle(m, s->c) != CURLM_OK) return -1;
  s->active = 1;
  g->started++;
  return 0;
}

int sf__loadgen_run(const sf_loadgen_opts *o, sf_loadgen_result *r, sf_err *err) {
  char url[4096];
  int rc, n_active = 0;
  CURLM *m = NULL;
  struct curl_slist *hdrs = NULL;
  slot *slots = NULL;
  lg *g = NULL;
  memset(r, 0, sizeof *r);
  if ((rc = sf__kclient_url(url, sizeof url, o->url, o->model, "/infer", err)) < 0) return rc;
  if (!o->body || !o->body_len || o->body_len > SF_KSERVE_MAX_BODY)
    return sf__errf(err, SF_EINVAL, "loadgen: request body of %zu bytes", o->body_len);
  if (o->header_len < -1 || (o->header_len >= 0 && (size_t)o->header_len > o->body_len))
    return sf__errf(err, SF_EINVAL, "loadgen: header length %ld for a body of %zu bytes",
                    o->header_len, o->body_len);
  if (o->concurrency < 1 || o->concurrency > 4096)
    return sf__errf(err, SF_EINVAL, "--concurrency: %d is not in [1, 4096]", o->concurrency);
  if (!(o->duration_s > 0) && o->count <= 0)
    return sf__errf(err, SF_EINVAL, "loadgen: give a duration or a count");
  if (!(o->timeout_s > 0) || o->timeout_s > 86400)
    return sf__errf(err, SF_EINVAL, "--timeout: %g is not in (0, 86400] seconds", o->timeout_s);
  if ((rc = sf__curl_global(err)) < 0) return rc;
  g = sf__calloc(1, sizeof *g);
  slots = sf__calloc((size_t)o->concurrency, sizeof *slots);
  m = curl_multi_init();
  hdrs = sf__curl_headers(o->header_len);
  if (!g || !slots || !m || !hdrs) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto done;
  }
  g->o = o;
  g->r = r;
  curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, (long)o->concurrency);
  for (int i = 0; i < o->concurrency; i++) {
    slot *s = &slots[i];
    if (!(s->c = curl_easy_init())) {
      rc = sf__errf(err, SF_ENOMEM, "out of memory");
      goto done;
    }
    sf__curl_setup(s->c, url, o->body, o->body_len, hdrs, o->timeout_s, &s->sink);
    curl_easy_setopt(s->c, CURLOPT_PRIVATE, s);
  }
  double t_start = sf__now(), t_end = t_start, t_first = -1;
  double deadline = o->duration_s > 0 ? t_start + o->duration_s : INFINITY;
  double next_progress = t_start + 1;
  int64_t last_requests = 0;
  for (int i = 0; i < o->concurrency && can_start(g, deadline); i++) {
    if (start(g, m, &slots[i]) < 0) {
      rc = sf__errf(err, SF_EIO, "libcurl: cannot add a transfer");
      goto done;
    }
    n_active++;
  }
  while (n_active > 0) {
    int running = 0, q;
    CURLMcode mc = curl_multi_perform(m, &running);
    if (mc != CURLM_OK) {
      rc = sf__errf(err, SF_EIO, "libcurl: %s", curl_multi_strerror(mc));
      goto done;
    }
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(m, &q))) {
      if (msg->msg != CURLMSG_DONE) continue;
      slot *s = NULL;
      CURL *c = msg->easy_handle;
      CURLcode cc = msg->data.result;
      curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **)&s);
      curl_multi_remove_handle(m, c); /* msg is invalid from here */
      s->active = 0;
      n_active--;
      finish(g, s, cc);
      t_end = sf__now();
      if (t_first < 0) t_first = t_end;
      if (can_start(g, deadline)) {
        if (start(g, m, s) < 0) {
          rc = sf__errf(err, SF_EIO, "libcurl: cannot add a transfer");
          goto done;
        }
        n_active++;
      }
    }
    if (n_active == 0) break;
    mc = curl_multi_poll(m, NULL, 0, 100, NULL);
    if (mc != CURLM_OK) {
      rc = sf__errf(err, SF_EIO, "libcurl: %s", curl_multi_strerror(mc));
      goto done;
    }
    double now = sf__now();
    if (o->progress && now >= next_progress) {
      fprintf(stderr, "loadgen: %4.0fs %10lld requests %9.1f req/s %8lld failed\n", now - t_start,
              (long long)r->requests,
              (double)(r->requests - last_requests) / (now - next_progress + 1.0),
              (long long)r->failed);
      last_requests = r->requests;
      next_progress = now + 1;
    }
  }
  r->duration_s = t_end - t_start;
  r->throughput_per_s = r->duration_s > 0 ? (double)r->ok / r->duration_s : 0;
  /* steady state: answers after the first one over the time they took (no pipeline fill) */
  r->steady_throughput_per_s = r->ok > 1 && t_end > t_first ? (double)(r->ok - 1) / (t_end - t_first)
                                                             : r->throughput_per_s;
  r->p50_ms = percentile(g, 0.50);
  r->p90_ms = percentile(g, 0.90);
  r->p99_ms = percentile(g, 0.99);
  r->mean_ms = r->ok ? g->sum_ms / (double)r->ok : 0;
  rc = 0;
done:
  for (int i = 0; slots && i < o->concurrency; i++) {
    if (slots[i].active) curl_multi_remove_handle(m, slots[i].c);
    if (slots[i].c) curl_easy_cleanup(slots[i].c);
    sf__buf_deinit(&slots[i].sink.body);
  }
  if (m) curl_multi_cleanup(m);
  curl_slist_free_all(hdrs);
  free(slots);
  free(g);
  return rc;
}

int sf__loadgen_json(const sf_loadgen_result *r, sf_buf *out) {
  char t[512];
  int bad = 0;
  snprintf(t, sizeof t,
           "{\"requests\":%lld,\"ok\":%lld,\"failed\":%lld,\"duration_s\":%.3f,"
           "\"throughput_per_s\":%.3f,\"steady_throughput_per_s\":%.3f,\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
           "\"max\":%.3f,\"mean\":%.3f},\"errors\":{",
           (long long)r->requests, (long long)r->ok, (long long)r->failed, r->duration_s,
           r->throughput_per_s, r->steady_throughput_per_s, r->p50_ms, r->p90_ms, r->p99_ms, r->max_ms, r->mean_ms);
  bad |= sf__buf_put(out, t, strlen(t)) < 0;
  for (int i = 0; i < r->n_reasons; i++) {
    if (i) bad |= sf__buf_put(out, ",", 1) < 0;
    bad |= sf__json_put_string(out, r->reasons[i].name) < 0;
    snprintf(t, sizeof t, ":%lld", (long long)r->reasons[i].count);
    bad |= sf__buf_put(out, t, strlen(t)) < 0;
  }
  bad |= sf__buf_put(out, "}}", 2) < 0;
  return bad ? SF_ENOMEM : 0;
}
