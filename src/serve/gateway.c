/* The gateway: the KServe v2 HTTP API (libmicrohttpd, a thread per connection) in front of one
 * or more pipelines.
 *
 * A request's life: the HTTP thread parses and validates the body (serve/kserve.c), encodes the
 * inputs as one INFER payload and puts the request in the in-flight table under a fresh id; the
 * dispatcher gives it to the pipeline with the most free room (each pipeline admits at most
 * `window` requests at once, enough to keep every stage busy); that pipeline's sender writes it
 * to the first stage. The last stage connects back to the data port and sends RESULT (or ERROR)
 * frames; the reader looks the id up, hands the payload to the waiting HTTP thread and wakes it.
 * Each request is answered exactly once: a result for an id no longer in the table (a duplicate
 * after a replay, or a request that timed out) is dropped.
 *
 * The controller (or `seifer up`) connects to the data port as "controller" and sends CONFIG:
 *   {"model": "name", "version": "1", "inputs": [{"name", "dtype", "shape"}], "outputs": [...],
 *    "pipelines": [{"id": 0, "first": "host:port", "codec": "raw", "tol": 0,
 *                   "rate_bytes_per_s": 0, "window": 6, "stages": 3}]}
 * A pipeline that disappears from a new CONFIG is closed and the requests it held are replayed
 * into the pipelines of the new one. A CONFIG without pipelines holds requests until the next
 * one (a switch in progress), unless it carries "reason": then the model is unavailable, ready
 * is false and every request is answered 503 with the reason at once.
 *
 * Results are accepted from the open pipelines. From a closed (retired) pipeline a RESULT counts
 * only when that pipeline served the current model version, and an ERROR never does: the request
 * was replayed and the new pipeline answers it (a stage that moved may fail requests of the old
 * layout). Results from pipeline ids this gateway never had are dropped. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "serve/kserve.h"
#include "serve/metrics.h"
#include "serve/serve.h"

#define MAX_PIPES 64
#define MAX_MON 256 /* monitored stages over all pipelines */
#define MAX_IO 64
#define TABLE_BITS 12
#define TABLE_SIZE (1 << TABLE_BITS)
#define MAX_RETIRED 64 /* closed pipelines remembered for late results */

/* ---- requests --------------------------------------------------------------------------------- */
typedef struct greq {
  uint64_t rid;
  atomic_int refs;
  sf_buf payload;     /* encoded inputs */
  int pipe;           /* index into gw->pipes while assigned, -1 pending */
  int done;           /* result arrived (or failed) */
  int status;         /* HTTP status when failed */
  int result_type;    /* SF_FR_RESULT or SF_FR_ERROR */
  uint8_t *result;    /* payload of the result frame (owned) */
  size_t result_len;
  char version[64];   /* model version of the pipeline that answered */
  pthread_cond_t cond;
  struct greq *next;  /* hash chain */
  double t0;
  double t_pipe;      /* when it was given to its pipeline */
} greq;

typedef struct gpipe {
  int used, closing;
  uint32_t id;
  char first[256];
  char version[64];
  int codec, window, stages;
  double tol, rate;
  int inflight;
  sf_queue q;         /* greq* to send */
  pthread_t th;
  sf_conn *conn;
  struct gateway *gw;
  atomic_uint_fast64_t sent, answered;
  int answered_any;                 /* the first answer was logged and timed */
  int n_stages_mon;                 /* stages listed for monitoring */
  char stage_addr[32][128], stage_node[32][64];
} gpipe;

/* A monitored stage: the gateway connects as "monitor" and reads the worker's heartbeats. */
typedef struct gmon {
  char addr[128], node[64], labels[512], link_labels[512];
  sf_conn *c;
  double last_seen, next_try;
  double processed, sent_bytes; /* last values seen (remote counters) */
} gmon;

typedef struct iospec {
  char name[256];
  int dtype, rank;
  int64_t dims[SF_MAX_RANK];
} iospec;

typedef struct gateway {
  const sf_gateway_opts *o;
  volatile sig_atomic_t *stop;
  pthread_mutex_t mu; /* everything below */
  pthread_cond_t room; /* a pipeline slot or a new config */
  int configured;
  char model[256], version[64];
  char reason[512];   /* unavailable: why (set by a CONFIG without pipelines) */
  char config_sha[65]; /* SHA-256 of the last CONFIG applied */
  struct {
    uint32_t id;
    char version[64];
  } retired[MAX_RETIRED];
  int n_retired;      /* total ever retired; slot = n % MAX_RETIRED */
  int n_in, n_out;
  iospec in[MAX_IO], out[MAX_IO];
  gpipe pipes[MAX_PIPES];
  greq *table[TABLE_SIZE];
  int n_table;
  sf_queue pending;   /* greq* waiting for a pipeline */
  uint64_t next_rid;
  int dfd;
  pthread_t dispatch_th;
  atomic_int n_conn_threads;
  sf_metrics *metrics;
  sf_counter *m_requests, *m_failed, *m_replayed, *m_dropped;
  sf_histogram *m_latency;
  pthread_t monitor_th;
  gmon mon[MAX_MON];
  int n_mon;
} gateway;

static void greq_unref(greq *r) {
  if (atomic_fetch_sub(&r->refs, 1) != 1) return;
  sf__buf_deinit(&r->payload);
  free(r->result);
  pthread_cond_destroy(&r->cond);
  free(r);
}

static void table_put(gateway *gw, greq *r) {
  unsigned h = (unsigned)(r->rid & (TABLE_SIZE - 1));
  r->next = gw->table[h];
  gw->table[h] = r;
  gw->n_table++;
}

static greq *table_get(gateway *gw, uint64_t rid) {
  for (greq *r = gw->table[rid & (TABLE_SIZE - 1)]; r; r = r->next)
    if (r->rid == rid) return r;
  return NULL;
}

static void table_del(gateway *gw, greq *r) {
  greq **pp = &gw->table[r->rid & (TABLE_SIZE - 1)];
  while (*pp && *pp != r) pp = &(*pp)->next;
  if (*pp) {
    *pp = r->next;
    gw->n_table--;
  }
}

/* Finish r under gw->mu: store the result (takes ownership of payload) and wake its waiter. */
static void finish_locked(gateway *gw, greq *r, int type, uint8_t *payload, size_t len, int status,
                          const char *version) {
  if (r->pipe >= 0) {
    gw->pipes[r->pipe].inflight--;
    pthread_cond_broadcast(&gw->room);
  }
  r->pipe = -1;
  r->done = 1;
  r->result_type = type;
  r->result = payload;
  r->result_len = len;
  r->status = status;
  snprintf(r->version, sizeof r->version, "%s", version ? version : "");
  table_del(gw, r);
  pthread_cond_signal(&r->cond);
  if (type == SF_FR_RESULT && version) {
    char lb[160], v[140];
    sf__metrics_label_value(version, v, sizeof v);
    snprintf(lb, sizeof lb, "version=\"%s\"", v);
    sf__counter_add(sf__metrics_counter(gw->metrics, "seifer_responses_total",
                                        "Successful answers, by the model version that computed them.", lb),
                    1);
  }
}

/* Any open pipeline (gw->mu held). */
static int any_open_locked(gateway *gw) {
  for (int i = 0; i < MAX_PIPES; i++)
    if (gw->pipes[i].used && !gw->pipes[i].closing) return 1;
  return 0;
}

/* Ready: configured, and either a pipeline is open or requests are only held for a switch in
 * progress (no pipeline, no reason); not while the model is unavailable (gw->mu held). */
static int ready_locked(gateway *gw) {
  return gw->configured && (any_open_locked(gw) || !gw->reason[0]);
}

/* Fail r with 503 and the reason the model is unavailable (gw->mu held). */
static void fail_unavailable_locked(gateway *gw, greq *r) {
  char msg[600];
  int n = snprintf(msg, sizeof msg, "model unavailable: %s", gw->reason);
  if (n >= (int)sizeof msg) n = (int)sizeof msg - 1;
  uint8_t *m = sf__malloc((size_t)n + 1);
  if (m) memcpy(m, msg, (size_t)n + 1);
  finish_locked(gw, r, SF_FR_ERROR, m, m ? (size_t)n : 0, 503, NULL);
}

/* ---- pipelines ------------------------------------------------------------------------------- */
static void *pipe_sender(void *arg) {
  gpipe *p = arg;
  gateway *gw = p->gw;
  char who[64];
  snprintf(who, sizeof who, "gateway pipeline %u", p->id);
  greq *r;
  while ((r = sf__queue_pop(&p->q, -1))) {
    double give_up = sf__now() + 5.0;
    int ok = 0;
    while (!ok && !p->closing) {
      sf_err err = {0};
      if (!p->conn) {
        sf_conn *c = NULL;
        if (sf__conn_connect(&c, p->first, 2000, &err) == 0 &&
            sf__auth_client(c, gw->o->secret, "gateway", 5000, &err) == 0) {
          sf__conn_set_rate(c, p->rate);
          pthread_mutex_lock(&gw->mu);
          p->conn = c;
          pthread_mutex_unlock(&gw->mu);
        } else {
          sf__logf(who, "first stage %s: %s", p->first, err.msg);
          sf__conn_free(c);
        }
      }
      if (p->conn) {
        sf_frame_hdr h = {.type = SF_FR_INFER, .request_id = r->rid, .pipeline = p->id};
        if (sf__frame_send(p->conn, &h, r->payload.data, r->payload.len, &err) == 0) {
          ok = 1;
          atomic_fetch_add(&p->sent, 1);
          break;
        }
        sf__logf(who, "send: %s; reconnecting", err.msg);
        pthread_mutex_lock(&gw->mu);
        sf__conn_free(p->conn);
        p->conn = NULL;
        pthread_mutex_unlock(&gw->mu);
      }
      if (sf__now() > give_up) break;
      usleep(100000);
    }
    if (!ok && !p->closing) {
      pthread_mutex_lock(&gw->mu);
      if (r->pipe == (int)(p - gw->pipes) && !r->done) {
        static const char msg[] = "pipeline unreachable";
        uint8_t *m = sf__malloc(sizeof msg);
        if (m) memcpy(m, msg, sizeof msg);
        finish_locked(gw, r, SF_FR_ERROR, m, m ? sizeof msg - 1 : 0, 502, NULL);
      }
      pthread_mutex_unlock(&gw->mu);
    }
    greq_unref(r);
  }
  return NULL;
}

/* Close pipeline p (gw->mu held): its queued and in-flight requests go back to pending. The
 * sender thread is joined by the caller after unlocking. */
static void pipe_close_locked(gateway *gw, gpipe *p) {
  p->closing = 1;
  int slot = gw->n_retired++ % MAX_RETIRED;
  gw->retired[slot].id = p->id;
  snprintf(gw->retired[slot].version, sizeof gw->retired[slot].version, "%s", p->version);
  sf__queue_close(&p->q);
  if (p->conn) sf__conn_shutdown(p->conn);
  int idx = (int)(p - gw->pipes);
  for (int h = 0; h < TABLE_SIZE; h++)
    for (greq *r = gw->table[h]; r; r = r->next)
      if (r->pipe == idx && !r->done) {
        r->pipe = -1;
        atomic_fetch_add(&r->refs, 1);
        if (sf__queue_push(&gw->pending, r, 0) < 0) {
          greq_unref(r);
        } else if (gw->m_replayed) {
          sf__counter_add(gw->m_replayed, 1);
        }
      }
  p->inflight = 0;
}

static void pipe_join(gpipe *p) {
  pthread_join(p->th, NULL);
  greq *r;
  while ((r = sf__queue_pop(&p->q, 0))) greq_unref(r);
  sf__queue_deinit(&p->q);
  sf__conn_free(p->conn);
  p->conn = NULL;
  p->used = 0;
}

/* Dispatcher: give each pending request to the open pipeline with the most free room. */
static void *dispatch_main(void *arg) {
  gateway *gw = arg;
  greq *r;
  while ((r = sf__queue_pop(&gw->pending, -1))) {
    pthread_mutex_lock(&gw->mu);
    for (;;) {
      if (r->done || *gw->stop) break;
      if (gw->reason[0] && !any_open_locked(gw)) {
        fail_unavailable_locked(gw, r);
        break;
      }
      int best = -1;
      double best_room = 0;
      for (int i = 0; i < MAX_PIPES; i++) {
        gpipe *p = &gw->pipes[i];
        if (!p->used || p->closing || p->inflight >= p->window) continue;
        double room = (double)(p->window - p->inflight) / p->window;
        if (best < 0 || room > best_room) best = i, best_room = room;
      }
      if (best >= 0) {
        gpipe *p = &gw->pipes[best];
        r->pipe = best;
        r->t_pipe = sf__now();
        p->inflight++;
        if (sf__queue_push(&p->q, r, 0) == 0) {
          r = NULL; /* the queue holds the reference now */
          break;
        }
        p->inflight--;
        r->pipe = -1;
      }
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 100000000L;
      if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
      pthread_cond_timedwait(&gw->room, &gw->mu, &ts);
    }
    pthread_mutex_unlock(&gw->mu);
    if (r) greq_unref(r);
  }
  return NULL;
}

/* ---- stage monitoring -------------------------------------------------------------------------- */
/* The list of stages to watch, from the open pipelines (gw->mu held). Connections to stages that
 * stay are kept; the monitor thread closes the others. */
static void rebuild_monitor_locked(gateway *gw) {
  gmon old[MAX_MON];
  int n_old = gw->n_mon;
  memcpy(old, gw->mon, sizeof(gmon) * (size_t)n_old);
  gw->n_mon = 0;
  for (int i = 0; i < MAX_PIPES; i++) {
    gpipe *p = &gw->pipes[i];
    if (!p->used || p->closing) continue;
    for (int k = 0; k < p->n_stages_mon && gw->n_mon < MAX_MON; k++) {
      gmon *m = &gw->mon[gw->n_mon++];
      memset(m, 0, sizeof *m);
      snprintf(m->addr, sizeof m->addr, "%s", p->stage_addr[k]);
      snprintf(m->node, sizeof m->node, "%s", p->stage_node[k]);
      char node[140];
      sf__metrics_label_value(m->node, node, sizeof node);
      snprintf(m->labels, sizeof m->labels, "pipeline=\"%u\",stage=\"%d\",node=\"%s\"", p->id, k + 1, node);
      const char *to = k + 1 < p->n_stages_mon ? p->stage_node[k + 1] : "gateway";
      char tob[140];
      sf__metrics_label_value(to, tob, sizeof tob);
      snprintf(m->link_labels, sizeof m->link_labels, "pipeline=\"%u\",from=\"%s\",to=\"%s\"", p->id, node, tob);
      for (int o = 0; o < n_old; o++)
        if (old[o].c && !strcmp(old[o].addr, m->addr)) {
          m->c = old[o].c;
          m->processed = old[o].processed;
          m->sent_bytes = old[o].sent_bytes;
          m->last_seen = old[o].last_seen;
          old[o].c = NULL;
        }
    }
  }
  for (int o = 0; o < n_old; o++) sf__conn_free(old[o].c);
}

static void monitor_status(gateway *gw, gmon *m, const uint8_t *p, size_t len) {
  cJSON *j = cJSON_ParseWithLength((const char *)p, len);
  if (!j) return;
  cJSON *pr = cJSON_GetObjectItem(j, "processed"), *sb = cJSON_GetObjectItem(j, "sent_bytes");
  cJSON *busy = cJSON_GetObjectItem(j, "busy_s"), *rss = cJSON_GetObjectItem(j, "peak_rss");
  cJSON *iq = cJSON_GetObjectItem(j, "in_queue"), *oq = cJSON_GetObjectItem(j, "out_queue");
  sf_metrics *M = gw->metrics;
  if (cJSON_IsNumber(pr)) {
    double d = pr->valuedouble - m->processed;
    if (d < 0) d = pr->valuedouble; /* the worker restarted */
    sf__counter_add(sf__metrics_counter(M, "seifer_stage_requests_total", "Requests computed by each stage.", m->labels), (uint64_t)d);
    m->processed = pr->valuedouble;
  }
  if (cJSON_IsNumber(sb)) {
    double d = sb->valuedouble - m->sent_bytes;
    if (d < 0) d = sb->valuedouble;
    sf__counter_add(sf__metrics_counter(M, "seifer_link_bytes_total", "Bytes sent on each pipeline link.", m->link_labels), (uint64_t)d);
    m->sent_bytes = sb->valuedouble;
  }
  if (cJSON_IsNumber(busy))
    sf__gauge_set(sf__metrics_gauge(M, "seifer_stage_busy_seconds", "Seconds each stage spent computing since it started.", m->labels), busy->valuedouble);
  if (cJSON_IsNumber(rss))
    sf__gauge_set(sf__metrics_gauge(M, "seifer_stage_peak_rss_bytes", "Peak resident memory of each stage's worker.", m->labels), rss->valuedouble);
  if (cJSON_IsNumber(iq) && cJSON_IsNumber(oq))
    sf__gauge_set(sf__metrics_gauge(M, "seifer_stage_queued", "Requests queued inside each stage.", m->labels), iq->valuedouble + oq->valuedouble);
  cJSON_Delete(j);
}

/* Every stage's heartbeats arrive on its monitor link; a stage silent for 3 s counts as down. */
static void *monitor_main(void *arg) {
  gateway *gw = arg;
  sf_frame f = {0};
  while (!*gw->stop) {
    pthread_mutex_lock(&gw->mu);
    struct pollfd pfd[MAX_MON];
    int idx[MAX_MON], n = 0;
    double now = sf__now();
    for (int i = 0; i < gw->n_mon; i++) {
      gmon *m = &gw->mon[i];
      if (!m->c && now >= m->next_try) {
        sf_err err = {0};
        m->next_try = now + 1.0;
        pthread_mutex_unlock(&gw->mu); /* connecting may take a while: the list may change */
        sf_conn *c = NULL;
        char addr[128];
        snprintf(addr, sizeof addr, "%s", m->addr);
        if (sf__conn_connect(&c, addr, 1000, &err) < 0 || sf__auth_client(c, gw->o->secret, "monitor", 2000, &err) < 0) {
          sf__conn_free(c);
          c = NULL;
        }
        pthread_mutex_lock(&gw->mu);
        if (i < gw->n_mon && !strcmp(gw->mon[i].addr, addr) && !gw->mon[i].c) gw->mon[i].c = c;
        else sf__conn_free(c);
      }
      if (i < gw->n_mon && gw->mon[i].c) {
        pfd[n].fd = sf__conn_fd(gw->mon[i].c);
        pfd[n].events = POLLIN;
        idx[n++] = i;
      }
    }
    for (int i = 0; i < gw->n_mon; i++) {
      gmon *m = &gw->mon[i];
      sf__gauge_set(sf__metrics_gauge(gw->metrics, "seifer_stage_up", "1 when the stage's heartbeats arrive.", m->labels),
                    m->c && now - m->last_seen < 3.0 ? 1 : 0);
    }
    pthread_mutex_unlock(&gw->mu);
    int pr = n ? poll(pfd, (nfds_t)n, 250) : (usleep(250000), 0);
    if (pr <= 0) continue;
    pthread_mutex_lock(&gw->mu);
    for (int k = 0; k < n; k++) {
      if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      int i = idx[k];
      if (i >= gw->n_mon || !gw->mon[i].c || sf__conn_fd(gw->mon[i].c) != pfd[k].fd) continue;
      gmon *m = &gw->mon[i];
      sf_err err = {0};
      if (sf__frame_recv(m->c, &f, 1 << 20, 200, &err) < 0) {
        sf__conn_free(m->c);
        m->c = NULL;
        continue;
      }
      if (f.hdr.type == SF_FR_HEARTBEAT) {
        m->last_seen = sf__now();
        monitor_status(gw, m, f.payload, f.hdr.payload_len);
      }
    }
    pthread_mutex_unlock(&gw->mu);
  }
  pthread_mutex_lock(&gw->mu);
  for (int i = 0; i < gw->n_mon; i++) {
    sf__conn_free(gw->mon[i].c);
    gw->mon[i].c = NULL;
  }
  pthread_mutex_unlock(&gw->mu);
  sf__frame_deinit(&f);
  return NULL;
}

/* ---- configuration --------------------------------------------------------------------------- */
static int parse_io(cJSON *arr, iospec *out, int *n, const char *what, sf_err *err) {
  if (!cJSON_IsArray(arr)) return sf__errf(err, SF_EFORMAT, "config: \"%s\" must be an array", what);
  int k = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, arr) {
    if (k >= MAX_IO) return sf__errf(err, SF_ELIMIT, "config: more than %d %s", MAX_IO, what);
    cJSON *nm = cJSON_GetObjectItem(e, "name"), *dt = cJSON_GetObjectItem(e, "dtype");
    cJSON *sh = cJSON_GetObjectItem(e, "shape");
    if (!cJSON_IsString(nm) || strlen(nm->valuestring) >= sizeof out[k].name || !cJSON_IsNumber(dt) ||
        !sf_dtype_size(dt->valueint) || !cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > SF_MAX_RANK)
      return sf__errf(err, SF_EFORMAT, "config: %s[%d] needs \"name\", a known \"dtype\" and \"shape\"", what, k);
    snprintf(out[k].name, sizeof out[k].name, "%s", nm->valuestring);
    out[k].dtype = dt->valueint;
    out[k].rank = 0;
    cJSON *d;
    cJSON_ArrayForEach(d, sh) {
      if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > (double)SF_MAX_DIM)
        return sf__errf(err, SF_EFORMAT, "config: %s[%d] has a bad dim", what, k);
      out[k].dims[out[k].rank++] = (int64_t)d->valuedouble;
    }
    k++;
  }
  *n = k;
  return 0;
}

static int apply_config(gateway *gw, const uint8_t *p, size_t len, sf_err *err) {
  cJSON *j = cJSON_ParseWithLength((const char *)p, len);
  int rc = 0, n_in = 0, n_out = 0;
  iospec in[MAX_IO], out[MAX_IO];
  gpipe *closed[MAX_PIPES];
  int n_closed = 0;
  if (!j || !cJSON_IsObject(j)) {
    rc = sf__errf(err, SF_EFORMAT, "config: not a JSON object");
    goto done;
  }
  cJSON *model = cJSON_GetObjectItem(j, "model"), *ver = cJSON_GetObjectItem(j, "version");
  cJSON *pipes = cJSON_GetObjectItem(j, "pipelines"), *why = cJSON_GetObjectItem(j, "reason");
  if (why && (!cJSON_IsString(why) || strlen(why->valuestring) >= sizeof gw->reason)) {
    rc = sf__errf(err, SF_EFORMAT, "config: \"reason\" must be a string of at most %zu bytes", sizeof gw->reason - 1);
    goto done;
  }
  if (!cJSON_IsString(model) || strlen(model->valuestring) >= sizeof gw->model || !model->valuestring[0]) {
    rc = sf__errf(err, SF_EFORMAT, "config: \"model\" must be a non-empty string");
    goto done;
  }
  if (ver && (!cJSON_IsString(ver) || strlen(ver->valuestring) >= sizeof gw->version)) {
    rc = sf__errf(err, SF_EFORMAT, "config: \"version\" must be a short string");
    goto done;
  }
  if ((rc = parse_io(cJSON_GetObjectItem(j, "inputs"), in, &n_in, "inputs", err)) < 0 ||
      (rc = parse_io(cJSON_GetObjectItem(j, "outputs"), out, &n_out, "outputs", err)) < 0)
    goto done;
  if (!cJSON_IsArray(pipes) || cJSON_GetArraySize(pipes) > MAX_PIPES) {
    rc = sf__errf(err, SF_EFORMAT, "config: \"pipelines\" must be an array of at most %d", MAX_PIPES);
    goto done;
  }
  /* Validate every pipeline before changing anything. */
  gpipe np[MAX_PIPES];
  int n_np = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, pipes) {
    gpipe *q = &np[n_np];
    memset(q, 0, sizeof *q);
    cJSON *id = cJSON_GetObjectItem(e, "id"), *first = cJSON_GetObjectItem(e, "first");
    cJSON *codec = cJSON_GetObjectItem(e, "codec"), *win = cJSON_GetObjectItem(e, "window");
    cJSON *rate = cJSON_GetObjectItem(e, "rate_bytes_per_s"), *tol = cJSON_GetObjectItem(e, "tol");
    cJSON *stages = cJSON_GetObjectItem(e, "stages"), *saddr = cJSON_GetObjectItem(e, "stage_addrs");
    cJSON *snode = cJSON_GetObjectItem(e, "stage_nodes");
    q->codec = SF_CODEC_RAW;
    if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > 4e9 || !cJSON_IsString(first) ||
        strlen(first->valuestring) >= sizeof q->first ||
        (codec && (!cJSON_IsString(codec) || (q->codec = sf__codec_parse(codec->valuestring)) < 0)) ||
        (win && (!cJSON_IsNumber(win) || win->valueint < 1 || win->valueint > 4096)) ||
        (rate && (!cJSON_IsNumber(rate) || rate->valuedouble < 0)) ||
        (tol && (!cJSON_IsNumber(tol) || tol->valuedouble < 0)) ||
        (stages && (!cJSON_IsNumber(stages) || stages->valueint < 1 || stages->valueint > 4096))) {
      rc = sf__errf(err, SF_EFORMAT, "config: pipelines[%d] needs \"id\", \"first\" (host:port), and valid "
                                     "\"codec\", \"window\", \"rate_bytes_per_s\", \"tol\", \"stages\"", n_np);
      goto done;
    }
    if (saddr && (!cJSON_IsArray(saddr) || cJSON_GetArraySize(saddr) > 32)) {
      rc = sf__errf(err, SF_EFORMAT, "config: pipelines[%d].stage_addrs: at most 32 host:port strings", n_np);
      goto done;
    }
    cJSON *sa;
    int ns = 0;
    cJSON_ArrayForEach(sa, saddr) {
      cJSON *nn = cJSON_GetArrayItem(snode, ns);
      if (!cJSON_IsString(sa) || strlen(sa->valuestring) >= sizeof q->stage_addr[0]) {
        rc = sf__errf(err, SF_EFORMAT, "config: pipelines[%d].stage_addrs[%d] must be host:port", n_np, ns);
        goto done;
      }
      snprintf(q->stage_addr[ns], sizeof q->stage_addr[ns], "%s", sa->valuestring);
      snprintf(q->stage_node[ns], sizeof q->stage_node[ns], "%s",
               cJSON_IsString(nn) ? nn->valuestring : sa->valuestring);
      ns++;
    }
    q->n_stages_mon = ns;
    q->id = (uint32_t)id->valuedouble;
    snprintf(q->first, sizeof q->first, "%s", first->valuestring);
    q->stages = stages ? stages->valueint : 1;
    q->window = win ? win->valueint : 2 * q->stages + 2;
    q->rate = rate ? rate->valuedouble : 0;
    q->tol = tol ? tol->valuedouble : 0;
    snprintf(q->version, sizeof q->version, "%s", ver ? ver->valuestring : "1");
    n_np++;
  }

  pthread_mutex_lock(&gw->mu);
  /* Keep pipelines that did not change; close the others (their requests are replayed). */
  for (int i = 0; i < MAX_PIPES; i++) {
    gpipe *p = &gw->pipes[i];
    if (!p->used || p->closing) continue;
    int keep = 0;
    for (int k = 0; k < n_np && !keep; k++)
      if (np[k].id == p->id && !strcmp(np[k].first, p->first) && np[k].codec == p->codec &&
          !strcmp(np[k].version, p->version)) {
        keep = 1;
        p->window = np[k].window;
        np[k].used = -1; /* already running */
      }
    if (!keep) {
      pipe_close_locked(gw, p);
      closed[n_closed++] = p;
    }
  }
  for (int k = 0; k < n_np; k++) {
    if (np[k].used == -1) continue;
    int slot = -1;
    for (int i = 0; i < MAX_PIPES && slot < 0; i++)
      if (!gw->pipes[i].used) slot = i;
    if (slot < 0) {
      rc = sf__errf(err, SF_ELIMIT, "config: no free pipeline slot");
      break;
    }
    gpipe *p = &gw->pipes[slot];
    *p = np[k];
    p->used = 1;
    p->gw = gw;
    if (sf__queue_init(&p->q, p->window + 1) < 0) {
      p->used = 0;
      rc = sf__errf(err, SF_ENOMEM, "out of memory");
      break;
    }
    pthread_create(&p->th, NULL, pipe_sender, p);
  }
  snprintf(gw->model, sizeof gw->model, "%s", model->valuestring);
  snprintf(gw->version, sizeof gw->version, "%s", ver ? ver->valuestring : "1");
  memcpy(gw->in, in, sizeof in);
  memcpy(gw->out, out, sizeof out);
  gw->n_in = n_in;
  gw->n_out = n_out;
  gw->configured = 1;
  snprintf(gw->reason, sizeof gw->reason, "%s", why && n_np == 0 ? why->valuestring : "");
  {
    uint8_t d[32];
    sf__sha256(p, len, d);
    sf__hex(d, 32, gw->config_sha);
  }
  rebuild_monitor_locked(gw);
  pthread_cond_broadcast(&gw->room);
  pthread_mutex_unlock(&gw->mu);
  for (int i = 0; i < n_closed; i++) pipe_join(closed[i]);
  if (n_np == 0 && why)
    sf__logf("gateway", "model %s unavailable: %s", model->valuestring, why->valuestring);
  else
    sf__logf("gateway", "configured model %s version %s: %d pipeline(s)%s", model->valuestring,
             ver ? ver->valuestring : "1", n_np, n_np ? "" : " (holding requests)");
done:
  cJSON_Delete(j);
  return rc;
}

/* ---- data port: controller and results -------------------------------------------------------- */
typedef struct dconn {
  gateway *gw;
  sf_conn *c;
} dconn;

static void results_loop(gateway *gw, sf_conn *c) {
  sf_frame f = {0};
  sf_err err = {0};
  for (;;) {
    if (sf__frame_recv(c, &f, SF_FRAME_MAX_PAYLOAD, -1, &err) < 0) {
      if (err.code != SF_EIO) sf__logf("gateway", "results from %s: %s; closing", sf__conn_peer(c), err.msg);
      break;
    }
    if (f.hdr.type == SF_FR_BYE) break;
    if (f.hdr.type != SF_FR_RESULT && f.hdr.type != SF_FR_ERROR) {
      sf__logf("gateway", "results from %s: unexpected %s frame; closing", sf__conn_peer(c),
               sf__frame_type_name(f.hdr.type));
      break;
    }
    pthread_mutex_lock(&gw->mu);
    greq *r = table_get(gw, f.hdr.request_id);
    const char *ver = NULL;
    gpipe *from = NULL;
    for (int i = 0; i < MAX_PIPES && !from; i++)
      if (gw->pipes[i].used && !gw->pipes[i].closing && gw->pipes[i].id == f.hdr.pipeline) from = &gw->pipes[i];
    if (from) {
      ver = from->version;
    } else { /* a retired pipeline (newest first), else unknown */
      int n = gw->n_retired < MAX_RETIRED ? gw->n_retired : MAX_RETIRED;
      for (int k = 0; k < n && !ver; k++) {
        int slot = (gw->n_retired - 1 - k) % MAX_RETIRED;
        if (gw->retired[slot].id == f.hdr.pipeline) ver = gw->retired[slot].version;
      }
      if (!ver || f.hdr.type != SF_FR_RESULT || strcmp(ver, gw->version)) {
        if (r && !r->done) sf__counter_add(gw->m_dropped, 1);
        r = NULL;
      }
    }
    if (r && !r->done) {
      if (from) {
        atomic_fetch_add(&from->answered, 1);
        if (!from->answered_any) {
          struct timespec ts;
          clock_gettime(CLOCK_REALTIME, &ts);
          double t = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
          char lb[200], v[140];
          sf__metrics_label_value(from->version, v, sizeof v);
          snprintf(lb, sizeof lb, "pipeline=\"%u\",version=\"%s\"", from->id, v);
          sf__gauge_set(sf__metrics_gauge(gw->metrics, "seifer_pipeline_first_answer_timestamp_seconds",
                                          "Unix time of the first answer each pipeline gave.", lb), t);
          sf__logf("gateway", "pipeline %u (version %s): first answer", from->id, from->version);
          from->answered_any = 1;
        }
      }
      /* hand the payload buffer over; the frame gets a fresh one */
      finish_locked(gw, r, f.hdr.type, f.payload, f.hdr.payload_len,
                    f.hdr.type == SF_FR_ERROR ? 500 : 200, ver);
      f.payload = NULL;
      f.cap = 0;
    }
    pthread_mutex_unlock(&gw->mu);
  }
  sf__frame_deinit(&f);
}

/* Status for the controller: requests in flight, the configuration in force (its SHA-256, the
 * version and the open pipelines, each with the age of its oldest unanswered request: a
 * pipeline whose requests stop coming back is stalled somewhere) and whether the model is
 * ready. */
static char *status_json(gateway *gw) {
  cJSON *j = cJSON_CreateObject();
  double oldest[MAX_PIPES] = {0}, now = sf__now();
  pthread_mutex_lock(&gw->mu);
  for (int b = 0; b < TABLE_SIZE; b++)
    for (const greq *r = gw->table[b]; r; r = r->next)
      if (r->pipe >= 0 && !r->done && now - r->t_pipe > oldest[r->pipe]) oldest[r->pipe] = now - r->t_pipe;
  cJSON_AddNumberToObject(j, "in_flight", gw->n_table);
  cJSON_AddBoolToObject(j, "configured", gw->configured);
  cJSON_AddStringToObject(j, "config_sha256", gw->config_sha);
  cJSON_AddStringToObject(j, "version", gw->version);
  cJSON_AddBoolToObject(j, "ready", ready_locked(gw));
  cJSON *ps = cJSON_AddArrayToObject(j, "pipelines");
  for (int i = 0; i < MAX_PIPES; i++) {
    gpipe *p = &gw->pipes[i];
    if (!p->used || p->closing) continue;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", p->id);
    cJSON_AddStringToObject(o, "version", p->version);
    cJSON_AddNumberToObject(o, "inflight", p->inflight);
    cJSON_AddNumberToObject(o, "answered", (double)atomic_load(&p->answered));
    cJSON_AddNumberToObject(o, "sent", (double)atomic_load(&p->sent));
    cJSON_AddNumberToObject(o, "oldest_s", oldest[i]);
    cJSON_AddItemToArray(ps, o);
  }
  pthread_mutex_unlock(&gw->mu);
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return s;
}

static void control_loop(gateway *gw, sf_conn *c) {
  sf_frame f = {0};
  sf_err err = {0};
  for (;;) {
    if (sf__frame_recv(c, &f, (uint64_t)1 << 24, -1, &err) < 0) break;
    if (f.hdr.type == SF_FR_BYE) break;
    int rc = 0;
    if (f.hdr.type == SF_FR_CONFIG) {
      if (apply_config(gw, f.payload, f.hdr.payload_len, &err) < 0) {
        sf__logf("gateway", "%s", err.msg);
        rc = sf__frame_send(c, &(sf_frame_hdr){.type = SF_FR_ERROR}, err.msg, strlen(err.msg), NULL);
      } else {
        rc = sf__frame_send(c, &(sf_frame_hdr){.type = SF_FR_CONFIG}, "{\"ok\":true}", 11, NULL);
      }
    } else if (f.hdr.type == SF_FR_HEARTBEAT) {
      char *s = status_json(gw);
      rc = s ? sf__frame_send(c, &(sf_frame_hdr){.type = SF_FR_HEARTBEAT}, s, strlen(s), NULL) : -1;
      free(s);
    } else {
      sf__logf("gateway", "control from %s: unexpected %s frame", sf__conn_peer(c), sf__frame_type_name(f.hdr.type));
      break;
    }
    if (rc < 0) break;
  }
  sf__frame_deinit(&f);
}

static void *dconn_main(void *arg) {
  dconn *d = arg;
  char role[80] = "";
  sf_err err = {0};
  if (sf__auth_server(d->c, d->gw->o->secret, 5000, role, sizeof role, &err) < 0)
    sf__logf("gateway", "refused %s: %s", sf__conn_peer(d->c), err.msg);
  else if (!strcmp(role, "controller"))
    control_loop(d->gw, d->c);
  else
    results_loop(d->gw, d->c);
  sf__conn_free(d->c);
  atomic_fetch_sub(&d->gw->n_conn_threads, 1);
  free(d);
  return NULL;
}

/* ---- HTTP -------------------------------------------------------------------------------------- */
typedef struct hconn {
  sf_buf body;
  int too_big;
} hconn;

static enum MHD_Result reply(struct MHD_Connection *mc, int status, sf_buf *b, size_t json_len,
                             const char *version) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(b->len, b->data, MHD_RESPMEM_MUST_FREE);
  b->data = NULL;
  b->len = b->cap = 0;
  if (!resp) return MHD_NO;
  if (json_len < (size_t)MHD_SIZE_UNKNOWN && resp && json_len != (size_t)-1) {
    char v[32];
    snprintf(v, sizeof v, "%zu", json_len);
    MHD_add_response_header(resp, "Inference-Header-Content-Length", v);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
  } else {
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  }
  (void)version;
  enum MHD_Result r = MHD_queue_response(mc, (unsigned)status, resp);
  MHD_destroy_response(resp);
  return r;
}

static enum MHD_Result reply_json(struct MHD_Connection *mc, int status, const char *json) {
  sf_buf b = {0};
  sf__buf_put(&b, json, strlen(json));
  return reply(mc, status, &b, (size_t)-1, NULL);
}

static enum MHD_Result reply_error(struct MHD_Connection *mc, int status, const char *msg) {
  sf_buf b = {0};
  sf__kserve_error_body(&b, msg);
  return reply(mc, status, &b, (size_t)-1, NULL);
}

static int http_status_of(int code) {
  switch (code) {
  case SF_ELIMIT: return 413;
  case SF_ENOTFOUND: return 400;
  case SF_ENOMEM: return 503;
  default: return 400;
  }
}

/* Match the request's inputs to the model's, in the model's order. */
static int match_inputs(gateway *gw, sf_kserve_req *kr, sf_tensor *ordered, sf_err *err) {
  for (int i = 0; i < gw->n_in; i++) {
    const iospec *sp = &gw->in[i];
    int k = -1;
    for (int t = 0; t < kr->n_inputs && k < 0; t++)
      if (!strcmp(kr->inputs[t].name, sp->name)) k = t;
    if (k < 0) return sf__errf(err, SF_EINVAL, "input '%s' missing", sp->name);
    sf_tensor *t = &kr->inputs[k];
    if (t->dtype != sp->dtype)
      return sf__errf(err, SF_EINVAL, "input '%s': datatype %s, the model takes %s", sp->name,
                      sf_dtype_name(t->dtype), sf_dtype_name(sp->dtype));
    int same = t->rank == sp->rank;
    for (int d = 0; same && d < t->rank; d++) same = t->dims[d] == sp->dims[d];
    if (!same) {
      char want[200] = "", got[200] = "";
      for (int d = 0; d < sp->rank; d++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)sp->dims[d]);
      for (int d = 0; d < t->rank; d++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)t->dims[d]);
      return sf__errf(err, SF_EINVAL, "input '%s': shape [%s], the model takes [%s]", sp->name, got, want);
    }
    ordered[i] = *t;
  }
  for (int t = 0; t < kr->n_inputs; t++) {
    int known = 0;
    for (int i = 0; i < gw->n_in && !known; i++) known = !strcmp(kr->inputs[t].name, gw->in[i].name);
    if (!known) return sf__errf(err, SF_EINVAL, "input '%s' is not an input of the model", kr->inputs[t].name);
  }
  return 0;
}

/* Build the HTTP answer from a finished request. */
static enum MHD_Result answer(gateway *gw, struct MHD_Connection *mc, greq *r, sf_kserve_req *kr,
                              const char *model) {
  char msg[1400];
  if (r->result_type == SF_FR_ERROR) {
    snprintf(msg, sizeof msg, "%s%.*s", r->status == 503 ? "" : "inference failed: ", (int)(r->result_len < 1200 ? r->result_len : 1200),
             r->result ? (const char *)r->result : "");
    return reply_error(mc, r->status ? r->status : 500, msg);
  }
  sf_err err = {0};
  sf_wire_tensor wt[MAX_IO];
  sf_tensor outs[MAX_IO];
  int n = sf__tensors_parse(r->result, r->result_len, wt, MAX_IO, &err), made = 0;
  if (n < 0) goto bad;
  for (; made < n; made++) {
    sf_tensor *t = &outs[made];
    memset(t, 0, sizeof *t);
    t->name = wt[made].name;
    t->dtype = wt[made].dtype;
    t->rank = wt[made].rank;
    memcpy(t->dims, wt[made].dims, sizeof t->dims);
    t->data = sf__malloc(wt[made].raw_bytes);
    if (!t->data) {
      sf__errf(&err, SF_ENOMEM, "out of memory");
      goto bad;
    }
    if (sf__tensor_decode(&wt[made], t->data, wt[made].raw_bytes, &err) < 0) {
      made++;
      goto bad;
    }
  }
  sf_buf b = {0};
  size_t json_len = 0;
  if (sf__kserve_build_response(&b, &json_len, model, r->version, kr, outs, n, &err) < 0) {
    sf__buf_deinit(&b);
    for (int i = 0; i < made; i++) free(outs[i].data);
    return reply_error(mc, err.code == SF_ENOTFOUND ? 400 : 500, err.msg);
  }
  for (int i = 0; i < made; i++) free(outs[i].data);
  return reply(mc, 200, &b, json_len == b.len ? (size_t)-1 : json_len, r->version);
bad:
  for (int i = 0; i < made; i++) free(outs[i].data);
  snprintf(msg, sizeof msg, "bad result from the pipeline: %s", err.msg);
  (void)gw;
  return reply_error(mc, 502, msg);
}

static enum MHD_Result infer(gateway *gw, struct MHD_Connection *mc, const char *model, hconn *hc) {
  sf_err err = {0};
  sf_kserve_req *kr = sf__calloc(1, sizeof *kr);
  greq *r = NULL;
  enum MHD_Result res;
  double t0 = sf__now();
  if (!kr) return reply_error(mc, 503, "out of memory");
  sf__counter_add(gw->m_requests, 1);
  const char *hl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Inference-Header-Content-Length");
  long header_len = -1;
  if (hl) {
    char *end;
    errno = 0;
    header_len = strtol(hl, &end, 10);
    if (errno || end == hl || *end || header_len < 0) {
      res = reply_error(mc, 400, "Inference-Header-Content-Length: not a non-negative integer");
      goto out;
    }
  }
  if (sf__kserve_parse_request(hc->body.data, hc->body.len, header_len, kr, &err) < 0) {
    res = reply_error(mc, http_status_of(err.code), err.msg);
    goto out;
  }
  sf_tensor ordered[MAX_IO];
  pthread_mutex_lock(&gw->mu);
  if (gw->configured && gw->reason[0] && !any_open_locked(gw)) {
    char msg[600];
    snprintf(msg, sizeof msg, "model unavailable: %s", gw->reason);
    pthread_mutex_unlock(&gw->mu);
    res = reply_error(mc, 503, msg);
    goto out;
  }
  int ok = gw->configured && match_inputs(gw, kr, ordered, &err) == 0;
  int codec = SF_CODEC_RAW;
  double tol = 0;
  for (int i = 0; i < MAX_PIPES; i++)
    if (gw->pipes[i].used && !gw->pipes[i].closing) codec = gw->pipes[i].codec, tol = gw->pipes[i].tol;
  int n_in = gw->n_in;
  pthread_mutex_unlock(&gw->mu);
  if (!ok) {
    res = reply_error(mc, err.code ? 400 : 503, err.code ? err.msg : "model not ready");
    goto out;
  }
  r = sf__calloc(1, sizeof *r);
  if (!r) {
    res = reply_error(mc, 503, "out of memory");
    goto out;
  }
  atomic_init(&r->refs, 1);
  r->pipe = -1;
  r->t0 = t0;
  pthread_cond_init(&r->cond, NULL);
  if (sf__tensors_encode(&r->payload, ordered, n_in, codec, tol, &err) < 0) {
    res = reply_error(mc, 400, err.msg);
    goto out;
  }
  pthread_mutex_lock(&gw->mu);
  r->rid = ++gw->next_rid;
  table_put(gw, r);
  atomic_fetch_add(&r->refs, 1);
  int queued = sf__queue_push(&gw->pending, r, 0) == 0;
  if (!queued) {
    atomic_fetch_sub(&r->refs, 1);
    table_del(gw, r);
    pthread_mutex_unlock(&gw->mu);
    res = reply_error(mc, 503, "gateway queue full");
    goto out;
  }
  /* Wait in slices so that a stopping gateway answers at once. */
  double give_up = t0 + (gw->o->timeout_ms > 0 ? gw->o->timeout_ms : 30000) / 1000.0;
  while (!r->done && !*gw->stop && sf__now() < give_up) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 200000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&r->cond, &gw->mu, &ts);
  }
  int done = r->done;
  if (!done) { /* give up: a late result is dropped because the id is gone */
    if (r->pipe >= 0) {
      gw->pipes[r->pipe].inflight--;
      pthread_cond_broadcast(&gw->room);
    }
    r->pipe = -1;
    r->done = 1;
    table_del(gw, r);
  }
  pthread_mutex_unlock(&gw->mu);
  if (!done) {
    res = *gw->stop ? reply_error(mc, 503, "gateway shutting down")
                    : reply_error(mc, 504, "timed out waiting for the pipeline");
  } else {
    res = answer(gw, mc, r, kr, model);
    sf__histogram_observe(gw->m_latency, sf__now() - t0);
    if (r->result_type == SF_FR_ERROR) done = 0;
  }
  if (!done) sf__counter_add(gw->m_failed, 1);
  goto out_nofail;
out:
  sf__counter_add(gw->m_failed, 1);
out_nofail:
  if (r) greq_unref(r);
  sf__kserve_req_deinit(kr);
  free(kr);
  return res;
}

static int io_tensors(const iospec *sp, int n, sf_tensor *t) {
  for (int i = 0; i < n; i++) {
    memset(&t[i], 0, sizeof t[i]);
    t[i].name = (char *)sp[i].name;
    t[i].dtype = sp[i].dtype;
    t[i].rank = sp[i].rank;
    memcpy(t[i].dims, sp[i].dims, sizeof t[i].dims);
  }
  return n;
}

/* Ready (ready_locked); otherwise 503 with the reason when there is one. */
static enum MHD_Result reply_ready(gateway *gw, struct MHD_Connection *mc) {
  pthread_mutex_lock(&gw->mu);
  int ready = ready_locked(gw);
  cJSON *j = cJSON_CreateObject();
  cJSON_AddBoolToObject(j, "ready", ready);
  if (!ready && gw->reason[0]) cJSON_AddStringToObject(j, "reason", gw->reason);
  pthread_mutex_unlock(&gw->mu);
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  enum MHD_Result r = reply_json(mc, ready ? 200 : 503, s ? s : "{\"ready\":false}");
  free(s);
  return r;
}

static enum MHD_Result route(gateway *gw, struct MHD_Connection *mc, const char *url,
                             const char *method, hconn *hc) {
  int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
  if (get && !strcmp(url, "/v2/health/live")) return reply_json(mc, 200, "{\"live\":true}");
  if (get && !strcmp(url, "/v2/health/ready")) return reply_ready(gw, mc);
  if (get && !strcmp(url, "/metrics")) {
    sf_buf b = {0};
    sf__metrics_render(gw->metrics, &b);
    struct MHD_Response *resp = MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_FREE);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
    enum MHD_Result r = MHD_queue_response(mc, 200, resp);
    MHD_destroy_response(resp);
    return r;
  }
  if (!strncmp(url, "/v2/models/", 11)) {
    char name[256];
    const char *rest = url + 11, *slash = strchr(rest, '/');
    size_t nl = slash ? (size_t)(slash - rest) : strlen(rest);
    if (nl == 0 || nl >= sizeof name) return reply_error(mc, 404, "no such model");
    memcpy(name, rest, nl);
    name[nl] = 0;
    const char *tail = slash ? slash : "";
    /* /versions/V... : accept the current version only */
    char vbuf[80];
    if (!strncmp(tail, "/versions/", 10)) {
      const char *v = tail + 10, *vs = strchr(v, '/');
      size_t vl = vs ? (size_t)(vs - v) : strlen(v);
      if (vl >= sizeof vbuf) return reply_error(mc, 404, "no such model version");
      memcpy(vbuf, v, vl);
      vbuf[vl] = 0;
      pthread_mutex_lock(&gw->mu);
      int same = !strcmp(vbuf, gw->version);
      pthread_mutex_unlock(&gw->mu);
      if (!same) return reply_error(mc, 404, "no such model version");
      tail = vs ? vs : "";
    }
    pthread_mutex_lock(&gw->mu);
    int known = gw->configured && !strcmp(name, gw->model);
    pthread_mutex_unlock(&gw->mu);
    if (!known) return reply_error(mc, 404, "no such model");
    if (get && !tail[0]) {
      sf_tensor ins[MAX_IO], outs[MAX_IO];
      sf_buf b = {0};
      sf_err err = {0};
      pthread_mutex_lock(&gw->mu);
      int ni = io_tensors(gw->in, gw->n_in, ins), no = io_tensors(gw->out, gw->n_out, outs);
      int rc = sf__kserve_metadata(&b, gw->model, gw->version, ins, ni, outs, no, &err);
      pthread_mutex_unlock(&gw->mu);
      if (rc < 0) {
        sf__buf_deinit(&b);
        return reply_error(mc, 500, err.msg);
      }
      return reply(mc, 200, &b, (size_t)-1, NULL);
    }
    if (get && !strcmp(tail, "/ready")) return reply_ready(gw, mc);
    if (post && !strcmp(tail, "/infer")) {
      if (hc->too_big) return reply_error(mc, 413, "request body too large");
      return infer(gw, mc, name, hc);
    }
    if (!strcmp(tail, "/infer") || !strcmp(tail, "/ready") || !tail[0])
      return reply_error(mc, 405, "method not allowed");
  }
  return reply_error(mc, 404, "not found");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  gateway *gw = cls;
  (void)version;
  hconn *hc = *con_cls;
  if (!hc) {
    hc = sf__calloc(1, sizeof *hc);
    if (!hc) return MHD_NO;
    *con_cls = hc;
    return MHD_YES;
  }
  if (*upload_size) {
    if (!hc->too_big) {
      if ((int64_t)(hc->body.len + *upload_size) > gw->o->max_body) {
        hc->too_big = 1;
        sf__buf_deinit(&hc->body);
      } else if (sf__buf_put(&hc->body, upload, *upload_size) < 0) {
        hc->too_big = 1;
      }
    }
    *upload_size = 0;
    return MHD_YES;
  }
  return route(gw, mc, url, method, hc);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)mc, (void)toe;
  hconn *hc = *con_cls;
  if (!hc) return;
  sf__buf_deinit(&hc->body);
  free(hc);
  *con_cls = NULL;
}

/* ---- main -------------------------------------------------------------------------------------- */
static int parse_port(const char *addr, const char *what, uint16_t *port, sf_err *err) {
  const char *c = strrchr(addr, ':');
  char *end;
  long p = c ? strtol(c + 1, &end, 10) : -1;
  if (!c || end == c + 1 || *end || p < 0 || p > 65535)
    return sf__errf(err, SF_EINVAL, "%s: '%s' is not host:port", what, addr);
  *port = (uint16_t)p;
  return 0;
}

int sf__gateway_run(const sf_gateway_opts *o, volatile sig_atomic_t *stop, sf_err *err) {
  gateway *gw = sf__calloc(1, sizeof *gw);
  struct MHD_Daemon *d = NULL;
  int rc = 0;
  if (!gw) return sf__errf(err, SF_ENOMEM, "out of memory");
  gw->o = o;
  gw->stop = stop;
  gw->dfd = -1;
  { /* request ids never repeat across restarts: a late result of an earlier run matches nothing */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    gw->next_rid = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
  }
  pthread_mutex_init(&gw->mu, NULL);
  pthread_cond_init(&gw->room, NULL);
  gw->metrics = sf__metrics_new();
  if (!gw->metrics || sf__queue_init(&gw->pending, o->max_queue > 0 ? o->max_queue : 256) < 0) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto done;
  }
  gw->m_requests = sf__metrics_counter(gw->metrics, "seifer_requests_total", "Inference requests received.", NULL);
  gw->m_failed = sf__metrics_counter(gw->metrics, "seifer_request_errors_total", "Inference requests that failed.", NULL);
  gw->m_replayed = sf__metrics_counter(gw->metrics, "seifer_requests_replayed_total",
                                       "Requests sent again into a new pipeline after a reconfiguration.", NULL);
  gw->m_dropped = sf__metrics_counter(gw->metrics, "seifer_results_dropped_total",
                                      "Results of a pending request dropped because they came from a retired pipeline of another version, were errors of a retired pipeline, or came from an unknown pipeline.", NULL);
  gw->m_latency = sf__metrics_histogram(gw->metrics, "seifer_request_duration_seconds",
                                        "Time from request arrival to answer.", NULL);
  uint16_t hport;
  if ((rc = parse_port(o->http_listen, "--listen", &hport, err)) < 0) goto done;
  if ((rc = sf__listen(o->data_listen, 64, &gw->dfd, err)) < 0) goto done;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons(hport);
  {
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(strrchr(o->http_listen, ':') - o->http_listen), o->http_listen);
    if (host[0] && inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
      rc = sf__errf(err, SF_EINVAL, "--listen: '%s' is not an IPv4 address", host);
      goto done;
    }
  }
  d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                       0, NULL, NULL, on_request, gw, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                       MHD_OPTION_NOTIFY_COMPLETED, on_completed, gw, MHD_OPTION_CONNECTION_LIMIT, 1000u,
                       MHD_OPTION_CONNECTION_TIMEOUT, 120u, MHD_OPTION_END);
  if (!d) {
    rc = sf__errf(err, SF_EIO, "HTTP server: cannot listen on %s", o->http_listen);
    goto done;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  int http_port = di ? di->port : hport, data_port = sf__listen_port(gw->dfd);
  if (o->port_file) {
    char buf[64], tmp[4200];
    int n = snprintf(buf, sizeof buf, "%d %d\n", http_port, data_port);
    snprintf(tmp, sizeof tmp, "%s.tmp", o->port_file);
    if ((rc = sf__write_file(tmp, buf, (size_t)n, err)) < 0) goto done;
    rename(tmp, o->port_file);
  }
  pthread_create(&gw->dispatch_th, NULL, dispatch_main, gw);
  pthread_create(&gw->monitor_th, NULL, monitor_main, gw);
  sf__logf("gateway", "HTTP on port %d, data port %d", http_port, data_port);
  while (!*stop) {
    sf_conn *c = NULL;
    sf_err aerr = {0};
    if (sf__conn_accept(gw->dfd, 200, &c, &aerr) < 0) {
      if (aerr.code != SF_ENOTFOUND) sf__logf("gateway", "accept: %s", aerr.msg);
      continue;
    }
    dconn *dc = sf__malloc(sizeof *dc);
    pthread_t th;
    if (!dc) {
      sf__conn_free(c);
      continue;
    }
    dc->gw = gw;
    dc->c = c;
    atomic_fetch_add(&gw->n_conn_threads, 1);
    if (pthread_create(&th, NULL, dconn_main, dc) != 0) {
      atomic_fetch_sub(&gw->n_conn_threads, 1);
      sf__conn_free(c);
      free(dc);
      continue;
    }
    pthread_detach(th);
  }
  sf__logf("gateway", "stopping");
  MHD_stop_daemon(d); /* waits for the HTTP threads; they see *stop and answer */
  d = NULL;
  sf__queue_close(&gw->pending);
  pthread_mutex_lock(&gw->mu);
  pthread_cond_broadcast(&gw->room);
  gpipe *closed[MAX_PIPES];
  int n_closed = 0;
  for (int i = 0; i < MAX_PIPES; i++)
    if (gw->pipes[i].used) {
      gw->pipes[i].closing = 1;
      sf__queue_close(&gw->pipes[i].q);
      if (gw->pipes[i].conn) sf__conn_shutdown(gw->pipes[i].conn);
      closed[n_closed++] = &gw->pipes[i];
    }
  pthread_mutex_unlock(&gw->mu);
  pthread_join(gw->dispatch_th, NULL);
  pthread_join(gw->monitor_th, NULL);
  for (int i = 0; i < n_closed; i++) pipe_join(closed[i]);
done:
  if (d) MHD_stop_daemon(d);
  if (gw->dfd >= 0) close(gw->dfd);
  if (atomic_load(&gw->n_conn_threads) == 0) {
    greq *r;
    while ((r = sf__queue_pop(&gw->pending, 0))) greq_unref(r);
    sf__queue_deinit(&gw->pending);
    sf__metrics_free(gw->metrics);
    free(gw);
  }
  return rc;
}
