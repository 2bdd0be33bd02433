/* Private to src/serve/client.c and loadgen.c: libcurl plumbing shared by both. */
#ifndef SF_CLIENT_PRIV_H
#define SF_CLIENT_PRIV_H

#include <curl/curl.h>

#include "serve/client.h"

/* What one transfer collects. */
typedef struct sf__curl_sink {
  sf_buf body;
  long header_len; /* Inference-Header-Content-Length; -1 absent, -2 malformed */
  int too_big;     /* body over SF_KSERVE_MAX_BODY */
  char errbuf[CURL_ERROR_SIZE];
} sf__curl_sink;

/* curl_global_init once per process. */
int sf__curl_global(sf_err *err);
size_t sf__curl_body_cb(char *p, size_t size, size_t n, void *ud);
size_t sf__curl_header_cb(char *p, size_t size, size_t n, void *ud);
/* Content-Type (+ Inference-Header-Content-Length when header_len >= 0), no Expect. NULL: OOM. */
struct curl_slist *sf__curl_headers(long header_len);
/* URL, method (POST when body), body without copy, headers, timeouts, callbacks into sink. */
void sf__curl_setup(CURL *c, const char *url, const void *body, size_t len, struct curl_slist *hdrs,
                    double timeout_s, sf__curl_sink *sink);

#endif
