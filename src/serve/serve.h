/* Serving: the worker (one pipeline stage on its node) and the gateway (the KServe v2 HTTP API in
 * front of one or more pipelines), plus the small pieces they share: a log line format, a bounded
 * blocking queue (back-pressure between receive, compute and send), and worker/gateway
 * configuration messages.
 *
 * Topology of one pipeline with k stages:
 *
 *   client -HTTP-> gateway -INFER-> worker 1 -INFER-> ... -> worker k -RESULT-> gateway -> client
 *
 * Every arrow is an authenticated sf_conn (net/net.h). A deployer (`seifer up`, the controller)
 * connects to each worker as "controller", ships the stage model (SF_FR_STAGE, cached by digest)
 * and its place in the pipeline (SF_FR_CONFIG), then configures the gateway the same way. */
#ifndef SF_SERVE_H
#define SF_SERVE_H

#include <pthread.h>
#include <signal.h>

#include "net/net.h"
#include "util/util.h"

/* ---- logging ------------------------------------------------------------------------------ */
/* "2026-11-28T10:00:00.123Z seifer <who>: message" on stderr (one write per line). */
void sf__logf(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- bounded blocking queue of pointers --------------------------------------------------- */
typedef struct sf_queue {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full;
  void **items;
  int cap, head, n;
  int closed; /* push fails, pop drains then returns NULL */
} sf_queue;
int sf__queue_init(sf_queue *q, int cap);
void sf__queue_deinit(sf_queue *q);
/* Block while full; 0 on success, -1 when closed. timeout_ms < 0 waits forever; on timeout -2. */
int sf__queue_push(sf_queue *q, void *item, int timeout_ms);
/* Block while empty; NULL when closed and empty, or on timeout (timeout_ms >= 0). */
void *sf__queue_pop(sf_queue *q, int timeout_ms);
void sf__queue_close(sf_queue *q);
int sf__queue_len(sf_queue *q);

/* ---- worker ------------------------------------------------------------------------------- */
typedef struct sf_worker_opts {
  const char *listen;     /* "host:port" */
  const char *name;       /* node name for logs and status */
  const char *cache_dir;  /* stage models cached by digest; created if missing */
  const sf_secret *secret;
  int threads;            /* runtime threads (0 = all cores) */
  int queue;              /* frames queued between receive/compute/send (default 2) */
  int heartbeat_ms;       /* status to the controller link (default 500) */
  int64_t max_model_bytes; /* largest stage model accepted (default 2 GiB) */
  const char *port_file;  /* when set, the bound port is written there once listening */
} sf_worker_opts;

/* Serve until SIGTERM/SIGINT (then drain: finish queued requests, send them, exit) or until
 * *stop becomes nonzero (tests). Returns 0 after a clean drain. */
int sf__worker_run(const sf_worker_opts *o, volatile sig_atomic_t *stop, sf_err *err);

/* ---- link probes (probe_srv.c, docs/probe.md) ---------------------------------------------- */
/* What the prober needs from its worker. */
typedef struct sf_probe_host {
  const sf_secret *secret;
  const char *who;                       /* log prefix */
  int tick_ms;                           /* call tick this often while measuring (default 500) */
  int (*tick)(void *ctx, sf_conn *ctl);  /* e.g. a heartbeat on the control link; < 0: link lost */
  void *ctx;
  volatile sig_atomic_t *stop;           /* nonzero: give up (may be NULL) */
} sf_probe_host;
/* Control link got SF_FR_PROBE req ({"peer": "host:port", "seconds", "bytes", "pings"}): measure
 * the link to the peer worker and answer on ctl with SF_FR_PROBE {"peer", "mbps", "rtt_ms",
 * "rtt_min_ms", "bytes", "seconds", "steady_bytes", "steady_seconds"} or SF_FR_ERROR (same
 * request_id). Takes about "seconds" plus the pings. Returns < 0 only when ctl failed. */
int sf__probe_request(sf_conn *ctl, const sf_frame *req, const sf_probe_host *h);
/* Serve one authenticated "probe" connection: echo pings, time the bulk bytes, send the result. */
void sf__probe_peer(sf_conn *c, const char *who);

/* ---- gateway ------------------------------------------------------------------------------ */
typedef struct sf_gateway_opts {
  const char *http_listen; /* "host:port" of the HTTP API */
  const char *data_listen; /* "host:port" where the controller and the last stages connect */
  const sf_secret *secret;
  int timeout_ms;          /* per request, from arrival to answer (default 30000) */
  int max_queue;           /* requests waiting for a pipeline slot before 503 (default 256) */
  int64_t max_body;        /* largest HTTP body (default 256 MiB) */
  const char *port_file;   /* "http_port data_port\n" written once listening */
} sf_gateway_opts;

int sf__gateway_run(const sf_gateway_opts *o, volatile sig_atomic_t *stop, sf_err *err);

/* Install SIGTERM/SIGINT handlers that set *flag (and ignore SIGPIPE). */
void sf__serve_signals(volatile sig_atomic_t *flag);

#endif
