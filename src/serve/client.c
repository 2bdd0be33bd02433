/* KServe v2 client pieces: one-shot HTTP calls, URLs, metadata, request inputs. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "onnx/onnx.h"
#include "serve/client.h"
#include "serve/client_priv.h"
#include "util/util.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) {
  curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int sf__curl_global(sf_err *err) {
  pthread_once(&curl_once, curl_init);
  if (curl_init_rc != CURLE_OK)
    return sf__errf(err, SF_EIO, "libcurl: %s", curl_easy_strerror(curl_init_rc));
  return 0;
}

/* ---- response capture (shared with the load generator) --------------------------------------- */
size_t sf__curl_body_cb(char *p, size_t size, size_t n, void *ud) {
  sf__curl_sink *s = ud;
  size_t k = size * n;
  if (k > SF_KSERVE_MAX_BODY - s->body.len) {
    s->too_big = 1;
    return 0;
  }
  if (sf__buf_put(&s->body, p, k) < 0) {
    s->too_big = 1;
    return 0;
  }
  return k;
}

size_t sf__curl_header_cb(char *p, size_t size, size_t n, void *ud) {
  sf__curl_sink *s = ud;
  size_t k = size * n;
  static const char key[] = "inference-header-content-length:";
  if (k >= 5 && !memcmp(p, "HTTP/", 5)) s->header_len = -1; /* a new response (after 100) */
  if (k > sizeof key - 1 && !strncasecmp(p, key, sizeof key - 1)) {
    long v = 0;
    size_t i = sizeof key - 1;
    while (i < k && (p[i] == ' ' || p[i] == '\t')) i++;
    size_t d0 = i;
    while (i < k && p[i] >= '0' && p[i] <= '9' && v < (long)SF_KSERVE_MAX_BODY)
      v = v * 10 + (p[i++] - '0');
    while (i < k && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
    s->header_len = i == k && i > d0 ? v : -2; /* -2: malformed */
  }
  return k;
}

void sf__curl_setup(CURL *c, const char *url, const void *body, size_t len, struct curl_slist *hdrs,
                    double timeout_s, sf__curl_sink *sink) {
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_s < 10 ? timeout_s * 1000 : 10000));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sf__curl_body_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, sf__curl_header_cb);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, sink);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, sink->errbuf);
  if (body) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  } else {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
}

struct curl_slist *sf__curl_headers(long header_len) {
  struct curl_slist *h = NULL, *t;
  char v[80];
  if (header_len >= 0) {
    snprintf(v, sizeof v, "Inference-Header-Content-Length: %ld", header_len);
    if (!(t = curl_slist_append(h, "Content-Type: application/octet-stream"))) goto fail;
    h = t;
    if (!(t = curl_slist_append(h, v))) goto fail;
    h = t;
  } else {
    if (!(t = curl_slist_append(h, "Content-Type: application/json"))) goto fail;
    h = t;
  }
  if (!(t = curl_slist_append(h, "Expect:"))) goto fail; /* no 100-continue round trip */
  return t;
fail:
  curl_slist_free_all(h);
  return NULL;
}

int sf__http_call(const char *url, const void *body, size_t len, long header_len, double timeout_s,
                  sf_http_resp *out, sf_err *err) {
  sf__curl_sink sink = {.header_len = -1};
  CURL *c = NULL;
  struct curl_slist *hdrs = NULL;
  int rc;
  memset(out, 0, sizeof *out);
  out->header_len = -1;
  if ((rc = sf__curl_global(err)) < 0) return rc;
  if (!(c = curl_easy_init()) || !(hdrs = sf__curl_headers(header_len))) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto done;
  }
  sf__curl_setup(c, url, body, len, hdrs, timeout_s, &sink);
  CURLcode cc = curl_easy_perform(c);
  if (cc != CURLE_OK) {
    if (sink.too_big)
      rc = sf__errf(err, SF_ELIMIT, "%s: answer larger than %zu bytes", url, SF_KSERVE_MAX_BODY);
    else
      rc = sf__errf(err, SF_EIO, "%s: %s", url,
                    sink.errbuf[0] ? sink.errbuf : curl_easy_strerror(cc));
    goto done;
  }
  if (sink.header_len == -2) {
    rc = sf__errf(err, SF_EFORMAT, "%s: malformed Inference-Header-Content-Length", url);
    goto done;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
  out->header_len = sink.header_len;
  out->body = sink.body;
  sink.body = (sf_buf){0};
  rc = 0;
done:
  sf__buf_deinit(&sink.body);
  curl_slist_free_all(hdrs);
  if (c) curl_easy_cleanup(c);
  return rc;
}

void sf__http_resp_deinit(sf_http_resp *r) {
  if (r) sf__buf_deinit(&r->body);
}

void sf__http_error_text(const sf_http_resp *r, char *out, size_t cap) {
  out[0] = 0;
  if (!cap) return;
  cJSON *j = r->body.len ? cJSON_ParseWithLength((const char *)r->body.data, r->body.len) : NULL;
  const cJSON *e = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
  if (cJSON_IsString(e)) {
    snprintf(out, cap, "%s", e->valuestring);
  } else {
    size_t n = 0;
    for (size_t i = 0; i < r->body.len && n + 1 < cap && n < 200; i++) {
      char ch = (char)r->body.data[i];
      out[n++] = isprint((unsigned char)ch) ? ch : ' ';
    }
    out[n] = 0;
    if (!n) snprintf(out, cap, "(empty body)");
  }
  cJSON_Delete(j);
}

int sf__kclient_url(char *out, size_t cap, const char *base, const char *model, const char *suffix,
                    sf_err *err) {
  if (!base || (strncmp(base, "http://", 7) && strncmp(base, "https://", 8)))
    return sf__errf(err, SF_EINVAL, "--url: expected http://HOST:PORT, got '%s'", base ? base : "");
  const char *host = strstr(base, "://") + 3;
  if (!*host || *host == '/') return sf__errf(err, SF_EINVAL, "--url '%s': no host", base);
  for (const char *p = base; *p; p++)
    if ((unsigned char)*p <= ' ' || *p == '?' || *p == '#')
      return sf__errf(err, SF_EINVAL, "--url '%s': spaces, queries and fragments are not allowed",
                      base);
  if (!model || !*model || strlen(model) >= SF_KSERVE_MAX_NAME)
    return sf__errf(err, SF_EINVAL, "--model: expected a name of 1..%d bytes",
                    SF_KSERVE_MAX_NAME - 1);
  size_t bl = strlen(base);
  while (bl > 0 && base[bl - 1] == '/') bl--;
  char esc[3 * SF_KSERVE_MAX_NAME + 1];
  size_t e = 0;
  for (const unsigned char *p = (const unsigned char *)model; *p; p++) {
    if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
      esc[e++] = (char)*p;
    } else {
      snprintf(esc + e, 4, "%%%02X", *p);
      e += 3;
    }
  }
  esc[e] = 0;
  int n = snprintf(out, cap, "%.*s/v2/models/%s%s", (int)bl, base, esc, suffix ? suffix : "");
  if (n < 0 || (size_t)n >= cap) return sf__errf(err, SF_ELIMIT, "--url: too long");
  return 0;
}

int sf__kclient_metadata(const char *base, const char *model, double timeout_s, sf_kserve_meta *m,
                         sf_err *err) {
  char url[4096];
  sf_http_resp r;
  int rc;
  memset(m, 0, sizeof *m);
  if ((rc = sf__kclient_url(url, sizeof url, base, model, "", err)) < 0) return rc;
  if ((rc = sf__http_call(url, NULL, 0, -1, timeout_s, &r, err)) < 0) return rc;
  if (r.status != 200) {
    char msg[512];
    sf__http_error_text(&r, msg, sizeof msg);
    rc = sf__errf(err, r.status == 404 ? SF_ENOTFOUND : SF_EIO, "GET %s: HTTP %ld: %s", url,
                  r.status, msg);
  } else if ((rc = sf__kserve_parse_metadata(r.body.data, r.body.len, m, err)) < 0) {
    sf__errctx(err, rc, "GET %s", url);
  }
  sf__http_resp_deinit(&r);
  return rc;
}

/* splitmix64 */
static uint64_t rnd(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int fill_random(sf_tensor *t, uint64_t *seed, sf_err *err) {
  int64_t numel = 1, nbytes;
  for (int d = 0; d < t->rank; d++) {
    if (t->dims[d] < 0) t->dims[d] = 1;
    if (sf__mul_ok(numel, t->dims[d], SF_MAX_TENSOR_BYTES, &numel) < 0)
      return sf__errf(err, SF_ELIMIT, "input '%s': shape too large", t->name);
  }
  if (sf__mul_ok(numel, (int64_t)sf_dtype_size(t->dtype), (int64_t)SF_KSERVE_MAX_BODY, &nbytes) < 0)
    return sf__errf(err, SF_ELIMIT, "input '%s': more than %zu bytes", t->name, SF_KSERVE_MAX_BODY);
  if (!(t->data = sf__malloc((size_t)nbytes))) return sf__errf(err, SF_ENOMEM, "out of memory");
  for (int64_t i = 0; i < numel; i++) {
    uint64_t r = rnd(seed);
    double u = (double)(r >> 11) * 0x1p-53;
    switch (t->dtype) {
      case SF_F32:
        ((float *)t->data)[i] = (float)u;
        break;
      case SF_F64:
        ((double *)t->data)[i] = u;
        break;
      case SF_F16:
        ((uint16_t *)t->data)[i] = (uint16_t)(0x3c00 | (r & 0x3ff)) - 0x400;
        break; /* [0.5,1) */
      case SF_BOOL:
        ((uint8_t *)t->data)[i] = (uint8_t)(r & 1);
        break;
      case SF_U8:
      case SF_I8:
        ((uint8_t *)t->data)[i] = (uint8_t)(r % 10);
        break;
      case SF_U16:
      case SF_I16:
        ((uint16_t *)t->data)[i] = (uint16_t)(r % 10);
        break;
      case SF_U32:
      case SF_I32:
        ((uint32_t *)t->data)[i] = (uint32_t)(r % 10);
        break;
      default:
        ((uint64_t *)t->data)[i] = r % 10;
        break;
    }
  }
  return 0;
}

int sf__kclient_make_inputs(const sf_kserve_meta *m, const sf_kclient_input_opts *o,
                            sf_kserve_req *req, sf_err *err) {
  int rc = 0, target = -1;
  uint64_t seed = o->seed ? o->seed : 0x5e1fe5ull;
  memset(req, 0, sizeof *req);
  if (m->n_inputs < 1) return sf__errf(err, SF_EINVAL, "model '%s' lists no inputs", m->name);
  if (o->file || o->name) {
    if (o->name) {
      for (int i = 0; i < m->n_inputs && target < 0; i++)
        if (!strcmp(m->inputs[i].name, o->name)) target = i;
      if (target < 0) {
        char names[1024] = "";
        for (int i = 0; i < m->n_inputs; i++)
          snprintf(names + strlen(names), sizeof names - strlen(names), "%s'%s'", i ? ", " : "",
                   m->inputs[i].name);
        return sf__errf(err, SF_ENOTFOUND, "--input-name '%s': model '%s' has inputs %s", o->name,
                        m->name, names);
      }
    } else if (m->n_inputs == 1) {
      target = 0;
    } else {
      return sf__errf(err, SF_EINVAL,
                      "model '%s' has %d inputs: name the one in --input with --input-name",
                      m->name, m->n_inputs);
    }
    if (!o->file) return sf__errf(err, SF_EINVAL, "--input-name given without --input");
  }
  for (int i = 0; i < m->n_inputs; i++) {
    sf_tensor *t = &req->inputs[i];
    req->n_inputs = i + 1;
    if (i == target) {
      if ((rc = sf__tensor_load_file(o->file, t, err)) < 0) goto fail;
      free(t->name);
      t->layout = 0;
      if (!(t->name = sf__strdup(m->inputs[i].name))) goto nomem;
      continue;
    }
    if (!o->random) {
      rc = sf__errf(err, SF_EINVAL, "input '%s' has no data (give --input, or --random)",
                    m->inputs[i].name);
      goto fail;
    }
    *t = m->inputs[i];
    t->data = NULL;
    if (!(t->name = sf__strdup(m->inputs[i].name))) goto nomem;
    if ((rc = fill_random(t, &seed, err)) < 0) goto fail;
  }
  return 0;
nomem:
  rc = sf__errf(err, SF_ENOMEM, "out of memory");
fail:
  sf__kserve_req_deinit(req);
  return rc;
}
