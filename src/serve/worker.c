/* The worker: runs one pipeline stage. Threads:
 *   accept    authenticates every connection, then hands it to a connection thread by role:
 *   control   ("controller") stage model (SF_FR_STAGE, cached by digest), configuration
 *             (SF_FR_CONFIG: next hop, codec, link rate), drain, link probes (SF_FR_PROBE,
 *             probe_srv.c), compute probes (SF_FR_PROBE {"compute"}: the loaded stage timed);
 *             sends heartbeats with status;
 *   probe     ("probe") another worker measuring its link to this one (probe_srv.c);
 *   upstream  (any other role) receives INFER / ERROR frames into jobs from a fixed pool;
 *   compute   decodes a job's tensors into the session inputs, runs, encodes the outputs;
 *   send      sends finished jobs to the next hop (another worker, or the gateway: RESULT).
 * Receive, compute and send overlap, so the stage works on three requests at once; the job pool
 * and the two queues are bounded, so a slow next hop stops the reads (TCP back-pressure) instead
 * of growing memory. No allocation on the steady-state path: job buffers are reused. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "onnx/onnx.h"
#include "probe/probe.h"
#include "serve/serve.h"

#define MAX_CONNS 64

typedef struct wjob {
  sf_frame f;     /* the received frame (INFER or ERROR) */
  sf_buf out;     /* encoded outputs (INFER/RESULT) or the error message (ERROR) */
  int kind;       /* frame type to send */
  uint64_t rid;
  uint32_t pipeline;
} wjob;

typedef struct worker {
  const sf_worker_opts *o;
  volatile sig_atomic_t *stop;
  char who[300];
  int lfd;
  wjob *jobs;
  int n_jobs;
  sf_queue free_q, in_q, out_q;
  pthread_t compute_th, send_th;

  pthread_mutex_t run_mu; /* the session: held while computing and while swapping stages */
  pthread_mutex_t mu;     /* config, digest and the connection registry (never held long) */
  sf_model *model;
  sf_session *sess;
  char digest[65];
  char next[256];
  int last, codec, cfg_gen;
  double tol, rate;
  double compute_s; /* emulated compute time per request (0 = as fast as this machine runs) */
  uint32_t stage, pipeline;
  sf_conn *conns[MAX_CONNS]; /* open connections (for shutdown) */
  sf_conn *next_conn;        /* the send thread's link to the next hop (shut down on rewiring) */
  int conn_is_up[MAX_CONNS];
  int n_threads;             /* live connection threads */

  atomic_int draining;
  atomic_uint_fast64_t processed, errors, sent, sent_bytes, recv_bytes;
  _Atomic double busy_s;
} worker;

/* ---- connection registry ------------------------------------------------------------------ */
static int reg_add(worker *w, sf_conn *c, int upstream) {
  pthread_mutex_lock(&w->mu);
  int slot = -1;
  for (int i = 0; i < MAX_CONNS && slot < 0; i++)
    if (!w->conns[i]) slot = i;
  if (slot >= 0) {
    w->conns[slot] = c;
    w->conn_is_up[slot] = upstream;
  }
  pthread_mutex_unlock(&w->mu);
  return slot;
}

static void reg_del(worker *w, int slot) {
  pthread_mutex_lock(&w->mu);
  w->conns[slot] = NULL;
  w->n_threads--;
  pthread_mutex_unlock(&w->mu);
}

static void reg_shutdown(worker *w, int upstream_only) {
  pthread_mutex_lock(&w->mu);
  for (int i = 0; i < MAX_CONNS; i++)
    if (w->conns[i] && (!upstream_only || w->conn_is_up[i])) sf__conn_shutdown(w->conns[i]);
  pthread_mutex_unlock(&w->mu);
}

static int live_threads(worker *w, int upstream_only) {
  pthread_mutex_lock(&w->mu);
  int n = 0;
  if (upstream_only) {
    for (int i = 0; i < MAX_CONNS; i++) n += w->conns[i] && w->conn_is_up[i];
  } else {
    n = w->n_threads;
  }
  pthread_mutex_unlock(&w->mu);
  return n;
}

/* ---- status ------------------------------------------------------------------------------- */
static int64_t current_rss(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, rss = 0;
  if (!f) return 0;
  if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
  fclose(f);
  return (int64_t)rss * sysconf(_SC_PAGESIZE);
}

static char *status_json(worker *w) {
  cJSON *j = cJSON_CreateObject();
  pthread_mutex_lock(&w->mu);
  cJSON_AddStringToObject(j, "node", w->o->name ? w->o->name : "");
  cJSON_AddStringToObject(j, "digest", w->digest);
  cJSON_AddNumberToObject(j, "stage", w->stage);
  cJSON_AddNumberToObject(j, "pipeline", w->pipeline);
  cJSON_AddStringToObject(j, "next", w->next);
  cJSON_AddBoolToObject(j, "last", w->last);
  cJSON_AddStringToObject(j, "codec", sf__codec_name(w->codec));
  cJSON_AddNumberToObject(j, "rate_bytes_per_s", w->rate);
  cJSON_AddNumberToObject(j, "compute_s", w->compute_s);
  pthread_mutex_unlock(&w->mu);
  cJSON_AddNumberToObject(j, "processed", (double)atomic_load(&w->processed));
  cJSON_AddNumberToObject(j, "errors", (double)atomic_load(&w->errors));
  cJSON_AddNumberToObject(j, "sent", (double)atomic_load(&w->sent));
  cJSON_AddNumberToObject(j, "sent_bytes", (double)atomic_load(&w->sent_bytes));
  cJSON_AddNumberToObject(j, "recv_bytes", (double)atomic_load(&w->recv_bytes));
  cJSON_AddNumberToObject(j, "busy_s", atomic_load(&w->busy_s));
  cJSON_AddNumberToObject(j, "in_queue", sf__queue_len(&w->in_q));
  cJSON_AddNumberToObject(j, "out_queue", sf__queue_len(&w->out_q));
  cJSON_AddNumberToObject(j, "peak_rss", (double)sf__peak_rss());
  cJSON_AddNumberToObject(j, "rss", (double)current_rss());
  cJSON_AddBoolToObject(j, "draining", atomic_load(&w->draining));
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return s;
}

static int send_json(sf_conn *c, int type, char *s, sf_err *err) {
  if (!s) return sf__errf(err, SF_ENOMEM, "out of memory");
  sf_frame_hdr h = {.type = (uint16_t)type};
  int rc = sf__frame_send(c, &h, s, strlen(s), err);
  free(s);
  return rc;
}

static int send_error(sf_conn *c, uint64_t rid, const char *msg) {
  sf_frame_hdr h = {.type = SF_FR_ERROR, .request_id = rid};
  return sf__frame_send(c, &h, msg, strlen(msg), NULL);
}

/* ---- the stage model ------------------------------------------------------------------------ */
static int mkdir_p(const char *dir) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", dir);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  return mkdir(tmp, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/* Load the stage in f's payload (digest + bytes, or digest only: from the cache). The payload
 * is freed once the model is in the cache, before the model is loaded (peak memory). */
static int load_stage(worker *w, sf_frame *f, sf_err *err) {
  const uint8_t *p = f->payload;
  size_t len = (size_t)f->hdr.payload_len;
  if (len < 32) return sf__errf(err, SF_EFORMAT, "stage frame: %zu bytes, need a 32-byte digest", len);
  char hex[65], path[4200], tmp[4300];
  sf__hex(p, 32, hex);
  snprintf(path, sizeof path, "%s/%s.onnx", w->o->cache_dir, hex);
  if (len > 32) {
    uint8_t d[32];
    sf__sha256(p + 32, len - 32, d);
    if (memcmp(d, p, 32)) return sf__errf(err, SF_EFORMAT, "stage model: digest mismatch (expected %s)", hex);
    if (mkdir_p(w->o->cache_dir) < 0)
      return sf__errf(err, SF_EIO, "cache %s: %s", w->o->cache_dir, strerror(errno));
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int rc = sf__write_file(tmp, p + 32, len - 32, err);
    if (rc < 0) return rc;
    if (rename(tmp, path) < 0) {
      unlink(tmp);
      return sf__errf(err, SF_EIO, "cache %s: %s", path, strerror(errno));
    }
  } else if (access(path, R_OK) < 0) {
    return sf__errf(err, SF_ENOTFOUND, "stage %s not in cache", hex);
  }
  sf__frame_deinit(f);
  double t0 = sf__now();
  sf_model *m = NULL;
  sf_session *s = NULL;
  int rc = sf_model_load(&m, path, err);
  if (rc < 0) return rc;
  sf_session_opts so = sf_session_opts_default();
  so.threads = w->o->threads;
  so.release_weights = 1;
  rc = sf_session_new(&s, m, &so, err);
  if (rc < 0) {
    sf_model_free(m);
    return rc;
  }
  pthread_mutex_lock(&w->run_mu);
  sf_session *old_s = w->sess;
  sf_model *old_m = w->model;
  w->sess = s;
  w->model = m;
  pthread_mutex_lock(&w->mu);
  snprintf(w->digest, sizeof w->digest, "%s", hex);
  pthread_mutex_unlock(&w->mu);
  pthread_mutex_unlock(&w->run_mu);
  sf_session_free(old_s);
  sf_model_free(old_m);
  sf__logf(w->who, "stage %.12s loaded in %.3f s (%d inputs, %d outputs, peak RSS %.1f MB)", hex,
           sf__now() - t0, sf_session_n_inputs(s), sf_session_n_outputs(s), sf__peak_rss() / 1e6);
  return 0;
}

static void add_tensor_desc(cJSON *arr, const sf_tensor *t) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", t->name);
  cJSON_AddNumberToObject(o, "dtype", t->dtype);
  cJSON *sh = cJSON_AddArrayToObject(o, "shape");
  for (int d = 0; d < t->rank; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->dims[d]));
  cJSON_AddItemToArray(arr, o);
}

static char *stage_json(worker *w) {
  cJSON *j = cJSON_CreateObject();
  pthread_mutex_lock(&w->run_mu);
  cJSON_AddStringToObject(j, "digest", w->digest);
  cJSON *in = cJSON_AddArrayToObject(j, "inputs"), *out = cJSON_AddArrayToObject(j, "outputs");
  for (int i = 0; i < sf_session_n_inputs(w->sess); i++) add_tensor_desc(in, sf_session_input(w->sess, i));
  for (int i = 0; i < sf_session_n_outputs(w->sess); i++) add_tensor_desc(out, sf_session_output(w->sess, i));
  sf_session_stats st;
  sf_session_get_stats(w->sess, &st);
  cJSON_AddNumberToObject(j, "arena_bytes", (double)st.arena_bytes);
  cJSON_AddNumberToObject(j, "weights_bytes", (double)st.weights_bytes);
  pthread_mutex_unlock(&w->run_mu);
  cJSON_AddNumberToObject(j, "peak_rss", (double)sf__peak_rss());
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return s;
}

/* CONFIG: {"stage":i,"pipeline":p,"next":"host:port","last":bool,"codec":"raw","tol":x,
 *          "rate_bytes_per_s":r,"compute_s":c} — every field optional, unknown fields ignored.
 * compute_s > 0 emulates a slower node: each request takes at least that long in compute. */
static int apply_config(worker *w, const uint8_t *p, size_t len, sf_err *err) {
  cJSON *j = cJSON_ParseWithLength((const char *)p, len);
  if (!j || !cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return sf__errf(err, SF_EFORMAT, "config: not a JSON object");
  }
  int rc = 0;
  cJSON *next = cJSON_GetObjectItem(j, "next"), *codec = cJSON_GetObjectItem(j, "codec");
  cJSON *rate = cJSON_GetObjectItem(j, "rate_bytes_per_s"), *tol = cJSON_GetObjectItem(j, "tol");
  cJSON *stage = cJSON_GetObjectItem(j, "stage"), *pipe = cJSON_GetObjectItem(j, "pipeline");
  cJSON *last = cJSON_GetObjectItem(j, "last"), *cs = cJSON_GetObjectItem(j, "compute_s");
  int cid = SF_CODEC_RAW;
  if (next && (!cJSON_IsString(next) || strlen(next->valuestring) >= sizeof w->next))
    rc = sf__errf(err, SF_EFORMAT, "config: \"next\" must be a \"host:port\" string");
  else if (codec && (!cJSON_IsString(codec) || (cid = sf__codec_parse(codec->valuestring)) < 0))
    rc = sf__errf(err, SF_EFORMAT, "config: unknown \"codec\"");
  else if (rate && (!cJSON_IsNumber(rate) || rate->valuedouble < 0))
    rc = sf__errf(err, SF_EFORMAT, "config: \"rate_bytes_per_s\" must be a number >= 0");
  else if (cs && (!cJSON_IsNumber(cs) || cs->valuedouble < 0 || cs->valuedouble > 3600))
    rc = sf__errf(err, SF_EFORMAT, "config: \"compute_s\" must be a number in [0, 3600]");
  else if (tol && (!cJSON_IsNumber(tol) || tol->valuedouble < 0))
    rc = sf__errf(err, SF_EFORMAT, "config: \"tol\" must be a number >= 0");
  else if ((stage && (!cJSON_IsNumber(stage) || stage->valuedouble < 0 || stage->valuedouble > 1e6)) ||
           (pipe && (!cJSON_IsNumber(pipe) || pipe->valuedouble < 0 || pipe->valuedouble > 4e9)))
    rc = sf__errf(err, SF_EFORMAT, "config: \"stage\" / \"pipeline\" out of range");
  if (rc == 0) {
    pthread_mutex_lock(&w->mu);
    if (next && strcmp(w->next, next->valuestring) && w->next_conn)
      sf__conn_shutdown(w->next_conn); /* a send blocked on the old next hop (a cut link) returns */
    if (next) snprintf(w->next, sizeof w->next, "%s", next->valuestring);
    if (codec) w->codec = cid;
    if (rate) w->rate = rate->valuedouble;
    if (tol) w->tol = tol->valuedouble;
    if (cs) w->compute_s = cs->valuedouble;
    if (stage) w->stage = (uint32_t)stage->valuedouble;
    if (pipe) w->pipeline = (uint32_t)pipe->valuedouble;
    if (last) w->last = cJSON_IsTrue(last);
    w->cfg_gen++;
    pthread_mutex_unlock(&w->mu);
  }
  cJSON_Delete(j);
  return rc;
}

/* ---- connection threads --------------------------------------------------------------------- */
typedef struct conn_arg {
  worker *w;
  sf_conn *c;
} conn_arg;

/* Heartbeats keep flowing while this worker measures a link (probe_srv.c). */
static int probe_tick(void *arg, sf_conn *c) {
  return send_json(c, SF_FR_HEARTBEAT, status_json(arg), NULL);
}

/* ---- compute probe ---------------------------------------------------------------------------
 * PROBE {"compute": {"iters": N, "seconds": S, "warmup": W}} on the control link: time the loaded
 * stage on deterministic inputs, W warm-up runs then runs until N runs or S seconds (at least
 * SF_COMPUTE_PROBE_MIN_RUNS), heartbeats flowing in between. Answer PROBE {"compute": {"digest",
 * "runs", "seconds", "mean_s", "median_s", "min_s", "threads"}} or ERROR. The stage's inputs are
 * overwritten: the controller probes only workers that serve no pipeline. */
#define SF_COMPUTE_PROBE_MIN_RUNS 3
#define SF_COMPUTE_PROBE_MAX_RUNS 10000

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int compute_probe(worker *w, sf_conn *c, const cJSON *q, uint64_t rid, int hb_ms, double *next_hb) {
  sf_err err = {0};
  double iters = 20, seconds = 1, warmup = 1;
  const char *keys[] = {"iters", "seconds", "warmup"};
  double *vals[] = {&iters, &seconds, &warmup};
  const double lo[] = {1, 0.01, 0}, hi[] = {SF_COMPUTE_PROBE_MAX_RUNS, 60, 100};
  for (int k = 0; k < 3; k++) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(q, keys[k]);
    if (!x) continue;
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= lo[k] && x->valuedouble <= hi[k])) {
      char msg[200];
      snprintf(msg, sizeof msg, "compute probe: \"%s\" must be a number in [%g, %g]", keys[k], lo[k], hi[k]);
      return send_error(c, rid, msg);
    }
    *vals[k] = x->valuedouble;
  }
  double *t = sf__malloc(sizeof(double) * SF_COMPUTE_PROBE_MAX_RUNS);
  if (!t) return send_error(c, rid, "compute probe: out of memory");
  int runs = 0, rc = 0;
  double total = 0, t_end = sf__now() + seconds;
  char digest[65];
  pthread_mutex_lock(&w->run_mu);
  pthread_mutex_lock(&w->mu);
  snprintf(digest, sizeof digest, "%s", w->digest);
  pthread_mutex_unlock(&w->mu);
  if (!w->sess) {
    rc = sf__errf(&err, SF_EINVAL, "compute probe: no stage loaded");
  } else {
    sf__probe_fill_inputs(w->sess);
    for (int k = 0; rc == 0; k++) {
      if (k >= (int)warmup && runs >= SF_COMPUTE_PROBE_MIN_RUNS &&
          (runs >= (int)iters || runs >= SF_COMPUTE_PROBE_MAX_RUNS || sf__now() >= t_end))
        break;
      double t0 = sf__now();
      rc = sf_session_run(w->sess, &err);
      double dt = sf__now() - t0;
      if (k >= (int)warmup) {
        t[runs++] = dt;
        total += dt;
      }
      if (rc == 0 && sf__now() >= *next_hb) { /* the controller must not take us for dead */
        if (send_json(c, SF_FR_HEARTBEAT, status_json(w), NULL) < 0) rc = SF_EIO;
        *next_hb = sf__now() + hb_ms / 1000.0;
      }
    }
  }
  pthread_mutex_unlock(&w->run_mu);
  if (rc == SF_EIO) {
    free(t);
    return -1;
  }
  if (rc < 0) {
    free(t);
    char msg[1200];
    snprintf(msg, sizeof msg, "compute probe: %s", err.msg);
    sf__logf(w->who, "%s", msg);
    return send_error(c, rid, msg);
  }
  qsort(t, (size_t)runs, sizeof *t, cmp_double);
  cJSON *j = cJSON_CreateObject(), *r = cJSON_AddObjectToObject(j, "compute");
  cJSON_AddStringToObject(r, "digest", digest);
  cJSON_AddNumberToObject(r, "runs", runs);
  cJSON_AddNumberToObject(r, "seconds", total);
  cJSON_AddNumberToObject(r, "mean_s", total / runs);
  cJSON_AddNumberToObject(r, "median_s", t[runs / 2]);
  cJSON_AddNumberToObject(r, "min_s", t[0]);
  cJSON_AddNumberToObject(r, "threads", w->o->threads);
  sf__logf(w->who, "compute probe of stage %.12s: %d runs, mean %.3f ms, median %.3f ms", digest, runs,
           total / runs * 1e3, t[runs / 2] * 1e3);
  free(t);
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (!s) return send_error(c, rid, "compute probe: out of memory");
  sf_frame_hdr h = {.type = SF_FR_PROBE, .request_id = rid};
  rc = sf__frame_send(c, &h, s, strlen(s), NULL);
  free(s);
  return rc;
}

/* A PROBE on the control link: a compute probe ({"compute": {...}}) or a link probe. */
static int probe_dispatch(worker *w, sf_conn *c, sf_frame *f, int hb, double *next_hb) {
  cJSON *j = cJSON_ParseWithLength((const char *)f->payload, f->hdr.payload_len);
  const cJSON *q = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "compute") : NULL;
  int rc;
  if (q) {
    rc = cJSON_IsObject(q) ? compute_probe(w, c, q, f->hdr.request_id, hb, next_hb)
                           : send_error(c, f->hdr.request_id, "compute probe: \"compute\" must be an object");
  } else {
    sf_probe_host ph = {w->o->secret, w->who, hb, probe_tick, w, w->stop};
    rc = sf__probe_request(c, f, &ph);
  }
  cJSON_Delete(j);
  *next_hb = sf__now() + hb / 1000.0;
  return rc;
}

static void control_loop(worker *w, sf_conn *c) {
  sf_frame f = {0};
  sf_err err = {0};
  int hb = w->o->heartbeat_ms > 0 ? w->o->heartbeat_ms : 500;
  double next_hb = sf__now() + hb / 1000.0;
  for (;;) {
    int wait = (int)((next_hb - sf__now()) * 1000);
    if (wait < 0) wait = 0;
    struct pollfd pfd = {.fd = sf__conn_fd(c), .events = POLLIN};
    int pr = poll(&pfd, 1, wait);
    if (pr == 0 || sf__now() >= next_hb) {
      if (send_json(c, SF_FR_HEARTBEAT, status_json(w), &err) < 0) break;
      next_hb = sf__now() + hb / 1000.0;
      if (pr == 0) continue;
    }
    if (pr < 0 && errno != EINTR) break;
    if (pr <= 0) continue;
    if (sf__frame_recv(c, &f, (uint64_t)w->o->max_model_bytes + 32, 30000, &err) < 0) {
      if (err.code != SF_EIO) sf__logf(w->who, "control link %s: %s", sf__conn_peer(c), err.msg);
      break;
    }
    int rc = 0;
    switch (f.hdr.type) {
    case SF_FR_STAGE: {
      uint64_t rid = f.hdr.request_id; /* load_stage frees the payload */
      rc = load_stage(w, &f, &err);
      if (rc == 0) rc = send_json(c, SF_FR_STAGE_OK, stage_json(w), &err);
      else if (send_error(c, rid, err.msg) == 0) rc = 0;
      if (err.code && err.code != SF_ENOTFOUND) sf__logf(w->who, "stage: %s", err.msg);
      err.code = 0;
      break;
    }
    case SF_FR_CONFIG:
      if (apply_config(w, f.payload, f.hdr.payload_len, &err) < 0) {
        sf__logf(w->who, "%s", err.msg);
        rc = send_error(c, f.hdr.request_id, err.msg);
      } else {
        rc = send_json(c, SF_FR_CONFIG, status_json(w), &err);
      }
      break;
    case SF_FR_HEARTBEAT:
      rc = send_json(c, SF_FR_HEARTBEAT, status_json(w), &err);
      break;
    case SF_FR_PROBE:
      rc = probe_dispatch(w, c, &f, hb, &next_hb);
      break;
    case SF_FR_DRAIN:
      atomic_store(&w->draining, 1);
      *w->stop = 1;
      break;
    case SF_FR_BYE:
      rc = -1;
      break;
    default:
      sf__logf(w->who, "control link %s: unexpected %s frame", sf__conn_peer(c),
               sf__frame_type_name(f.hdr.type));
      rc = -1;
    }
    if (rc < 0) break;
  }
  sf__frame_deinit(&f);
}

static void upstream_loop(worker *w, sf_conn *c) {
  sf_err err = {0};
  for (;;) {
    wjob *j = NULL;
    while (!j && !atomic_load(&w->draining)) j = sf__queue_pop(&w->free_q, 200);
    if (!j) break;
    if (sf__frame_recv(c, &j->f, SF_FRAME_MAX_PAYLOAD, -1, &err) < 0) {
      if (err.code != SF_EIO) sf__logf(w->who, "upstream %s: %s; closing", sf__conn_peer(c), err.msg);
      sf__queue_push(&w->free_q, j, -1);
      break;
    }
    int t = j->f.hdr.type;
    atomic_fetch_add(&w->recv_bytes, j->f.hdr.payload_len + SF_FRAME_HDR_BYTES);
    if (t == SF_FR_BYE) {
      sf__queue_push(&w->free_q, j, -1);
      break;
    }
    if (t != SF_FR_INFER && t != SF_FR_ERROR) {
      sf__logf(w->who, "upstream %s: unexpected %s frame; closing", sf__conn_peer(c),
               sf__frame_type_name(t));
      sf__queue_push(&w->free_q, j, -1);
      break;
    }
    if (sf__queue_push(&w->in_q, j, -1) < 0) {
      sf__queue_push(&w->free_q, j, -1);
      break;
    }
  }
}

static void *conn_main(void *arg) {
  conn_arg *a = arg;
  worker *w = a->w;
  sf_conn *c = a->c;
  free(a);
  char role[80] = "";
  sf_err err = {0};
  int slot = -1;
  if (sf__auth_server(c, w->o->secret, 5000, role, sizeof role, &err) < 0) {
    sf__logf(w->who, "refused %s: %s", sf__conn_peer(c), err.msg);
  } else {
    int up = strcmp(role, "controller") && strcmp(role, "monitor");
    slot = reg_add(w, c, up);
    if (slot < 0) {
      sf__logf(w->who, "refused %s: too many connections", sf__conn_peer(c));
    } else if (!strcmp(role, "probe")) {
      sf__probe_peer(c, w->who); /* a link probe from another worker (probe_srv.c) */
    } else if (up) {
      upstream_loop(w, c);
    } else {
      control_loop(w, c);
    }
  }
  if (slot >= 0) {
    reg_del(w, slot);
  } else {
    pthread_mutex_lock(&w->mu);
    w->n_threads--;
    pthread_mutex_unlock(&w->mu);
  }
  sf__conn_free(c);
  return NULL;
}

/* ---- compute and send ------------------------------------------------------------------------ */
static void job_error(wjob *j, uint64_t rid, const char *msg) {
  j->kind = SF_FR_ERROR;
  j->out.len = 0;
  sf__buf_put(&j->out, msg, strlen(msg));
  j->rid = rid;
}

/* Decode j's tensors into the session inputs (names, dtypes and shapes must match), run, encode. */
static int run_job(worker *w, wjob *j, int codec, double tol, sf_err *err) {
  sf_wire_tensor wt[SF_WIRE_MAX_TENSORS];
  int n = sf__tensors_parse(j->f.payload, j->f.hdr.payload_len, wt, SF_WIRE_MAX_TENSORS, err);
  if (n < 0) return n;
  sf_session *s = w->sess;
  if (!s) return sf__errf(err, SF_EINVAL, "no stage loaded");
  int nin = sf_session_n_inputs(s);
  unsigned char seen[SF_WIRE_MAX_TENSORS] = {0};
  for (int i = 0; i < n; i++) {
    int k = sf_session_input_index(s, wt[i].name);
    if (k < 0) return sf__errf(err, SF_EINVAL, "tensor '%s' is not an input of this stage", wt[i].name);
    if (k >= SF_WIRE_MAX_TENSORS || seen[k]) return sf__errf(err, SF_EINVAL, "tensor '%s' sent twice", wt[i].name);
    sf_tensor *t = sf_session_input(s, k);
    int same = wt[i].dtype == t->dtype && wt[i].rank == t->rank && wt[i].layout == t->layout;
    for (int d = 0; same && d < t->rank; d++) same = wt[i].dims[d] == t->dims[d];
    if (!same) return sf__errf(err, SF_ESHAPE, "tensor '%s': type or shape differs from the stage input", wt[i].name);
    int rc = sf__tensor_decode(&wt[i], t->data, (size_t)sf_tensor_nbytes(t), err);
    if (rc < 0) return rc;
    seen[k] = 1;
  }
  for (int k = 0; k < nin && k < SF_WIRE_MAX_TENSORS; k++)
    if (!seen[k]) return sf__errf(err, SF_EINVAL, "input '%s' missing", sf_session_input(s, k)->name);
  int rc = sf_session_run(s, err);
  if (rc < 0) return rc;
  int nout = sf_session_n_outputs(s);
  sf_tensor outs[SF_WIRE_MAX_TENSORS];
  if (nout > SF_WIRE_MAX_TENSORS) return sf__errf(err, SF_ELIMIT, "%d outputs", nout);
  for (int k = 0; k < nout; k++) outs[k] = *sf_session_output(s, k);
  j->out.len = 0;
  return sf__tensors_encode(&j->out, outs, nout, codec, tol, err);
}

static void *compute_main(void *arg) {
  worker *w = arg;
  wjob *j;
  while ((j = sf__queue_pop(&w->in_q, -1))) {
    j->rid = j->f.hdr.request_id;
    j->pipeline = j->f.hdr.pipeline;
    if (j->f.hdr.type == SF_FR_ERROR) { /* pass errors along to the gateway */
      j->kind = SF_FR_ERROR;
      j->out.len = 0;
      sf__buf_put(&j->out, j->f.payload, j->f.hdr.payload_len);
    } else {
      sf_err err = {0};
      double t0 = sf__now();
      pthread_mutex_lock(&w->mu);
      int codec = w->codec, last = w->last;
      double tol = w->tol, pad = w->compute_s;
      pthread_mutex_unlock(&w->mu);
      pthread_mutex_lock(&w->run_mu);
      int rc = run_job(w, j, codec, tol, &err);
      pthread_mutex_unlock(&w->run_mu);
      j->kind = last ? SF_FR_RESULT : SF_FR_INFER;
      double spent = sf__now() - t0;
      if (rc == 0 && pad > spent) usleep((useconds_t)((pad - spent) * 1e6));
      atomic_store(&w->busy_s, atomic_load(&w->busy_s) + (sf__now() - t0));
      if (rc < 0) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s (stage %u): %s", w->o->name ? w->o->name : "worker", w->stage, err.msg);
        job_error(j, j->rid, msg);
        atomic_fetch_add(&w->errors, 1);
      } else {
        atomic_fetch_add(&w->processed, 1);
      }
    }
    if (sf__queue_push(&w->out_q, j, -1) < 0) sf__queue_push(&w->free_q, j, -1);
  }
  sf__queue_close(&w->out_q);
  return NULL;
}

/* Connect to the configured next hop; NULL (and a log line) on failure. */
static sf_conn *connect_next(worker *w, int *gen) {
  char next[256];
  double rate;
  pthread_mutex_lock(&w->mu);
  snprintf(next, sizeof next, "%s", w->next);
  rate = w->rate;
  *gen = w->cfg_gen;
  pthread_mutex_unlock(&w->mu);
  if (!next[0]) return NULL;
  sf_conn *c = NULL;
  sf_err err = {0};
  if (sf__conn_connect(&c, next, 2000, &err) < 0 ||
      sf__auth_client(c, w->o->secret, "worker", 5000, &err) < 0) {
    sf__logf(w->who, "next hop %s: %s", next, err.msg);
    sf__conn_free(c);
    return NULL;
  }
  sf__conn_set_rate(c, rate);
  return c;
}

/* The next hop closed the connection (it died or restarted; it never sends on this link): a
 * frame written now would vanish, so reconnect first. */
static int peer_gone(sf_conn *c) {
  struct pollfd p = {.fd = sf__conn_fd(c), .events = POLLIN | POLLRDHUP};
  if (poll(&p, 1, 0) <= 0) return 0;
  if (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) return 1;
  char b;
  return recv(p.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* The send thread's connection, published so that rewiring can shut it down. */
static void set_next_conn(worker *w, sf_conn **c, sf_conn *nc) {
  pthread_mutex_lock(&w->mu);
  w->next_conn = nc;
  pthread_mutex_unlock(&w->mu);
  if (*c && *c != nc) sf__conn_free(*c);
  *c = nc;
}

static void *send_main(void *arg) {
  worker *w = arg;
  sf_conn *c = NULL;
  int gen = -1;
  wjob *j;
  while ((j = sf__queue_pop(&w->out_q, -1))) {
    /* Retry for up to 5 s: the next hop may be restarting; after that the request is dropped
     * (the gateway times it out, or replays it into a new pipeline). */
    double give_up = sf__now() + 5.0;
    for (;;) {
      pthread_mutex_lock(&w->mu);
      int cur = w->cfg_gen;
      uint32_t stage = w->stage;
      pthread_mutex_unlock(&w->mu);
      if (c && cur == gen && peer_gone(c)) {
        sf__logf(w->who, "next hop closed the connection; reconnecting");
        set_next_conn(w, &c, NULL);
      }
      if (c && cur != gen) {
        sf__frame_send(c, &(sf_frame_hdr){.type = SF_FR_BYE}, NULL, 0, NULL);
        set_next_conn(w, &c, NULL);
      }
      if (!c) set_next_conn(w, &c, connect_next(w, &gen));
      if (c) {
        sf_err err = {0};
        sf_frame_hdr h = {.type = (uint16_t)j->kind, .request_id = j->rid, .pipeline = j->pipeline,
                          .stage = stage};
        if (sf__frame_send(c, &h, j->out.data, j->out.len, &err) == 0) {
          atomic_fetch_add(&w->sent, 1);
          atomic_fetch_add(&w->sent_bytes, j->out.len + SF_FRAME_HDR_BYTES);
          break;
        }
        sf__logf(w->who, "next hop: %s; reconnecting", err.msg);
        set_next_conn(w, &c, NULL);
      }
      if (sf__now() > give_up) {
        sf__logf(w->who, "request %llu dropped: next hop unreachable", (unsigned long long)j->rid);
        break;
      }
      usleep(100000);
    }
    sf__queue_push(&w->free_q, j, -1);
  }
  if (c) sf__frame_send(c, &(sf_frame_hdr){.type = SF_FR_BYE}, NULL, 0, NULL);
  set_next_conn(w, &c, NULL);
  return NULL;
}

/* ---- main ------------------------------------------------------------------------------------ */
static int write_port_file(const char *path, int port, sf_err *err) {
  char buf[32], tmp[4200];
  int n = snprintf(buf, sizeof buf, "%d\n", port);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int rc = sf__write_file(tmp, buf, (size_t)n, err);
  if (rc == 0 && rename(tmp, path) < 0) rc = sf__errf(err, SF_EIO, "%s: %s", path, strerror(errno));
  return rc;
}

int sf__worker_run(const sf_worker_opts *o, volatile sig_atomic_t *stop, sf_err *err) {
  worker W, *w = &W;
  memset(w, 0, sizeof W);
  w->o = o;
  w->stop = stop;
  w->lfd = -1;
  w->tol = 0;
  snprintf(w->who, sizeof w->who, "worker %s", o->name ? o->name : "");
  int q = o->queue > 0 ? o->queue : 2;
  int rc = 0;
  pthread_mutex_init(&w->mu, NULL);
  pthread_mutex_init(&w->run_mu, NULL);
  w->n_jobs = 2 * q + 4;
  w->jobs = sf__calloc((size_t)w->n_jobs, sizeof(wjob));
  if (!w->jobs || sf__queue_init(&w->free_q, w->n_jobs) || sf__queue_init(&w->in_q, q) ||
      sf__queue_init(&w->out_q, q)) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto done;
  }
  for (int i = 0; i < w->n_jobs; i++) sf__queue_push(&w->free_q, &w->jobs[i], -1);
  if ((rc = sf__listen(o->listen, 64, &w->lfd, err)) < 0) goto done;
  int port = sf__listen_port(w->lfd);
  if (o->port_file && (rc = write_port_file(o->port_file, port, err)) < 0) goto done;
  pthread_create(&w->compute_th, NULL, compute_main, w);
  pthread_create(&w->send_th, NULL, send_main, w);
  sf__logf(w->who, "listening on port %d", port);

  while (!*stop) {
    sf_conn *c = NULL;
    sf_err aerr = {0};
    int ar = sf__conn_accept(w->lfd, 200, &c, &aerr);
    if (ar < 0) {
      if (aerr.code != SF_ENOTFOUND) sf__logf(w->who, "accept: %s", aerr.msg);
      continue;
    }
    conn_arg *a = sf__malloc(sizeof *a);
    pthread_t th;
    if (!a) {
      sf__conn_free(c);
      continue;
    }
    a->w = w;
    a->c = c;
    pthread_mutex_lock(&w->mu);
    w->n_threads++;
    pthread_mutex_unlock(&w->mu);
    if (pthread_create(&th, NULL, conn_main, a) != 0) {
      pthread_mutex_lock(&w->mu);
      w->n_threads--;
      pthread_mutex_unlock(&w->mu);
      sf__conn_free(c);
      free(a);
      continue;
    }
    pthread_detach(th);
  }

  /* Drain: stop receiving, finish and send what was received, then close everything. */
  sf__logf(w->who, "draining (%d queued)", sf__queue_len(&w->in_q) + sf__queue_len(&w->out_q));
  atomic_store(&w->draining, 1);
  close(w->lfd);
  w->lfd = -1;
  reg_shutdown(w, 1);
  for (int i = 0; i < 100 && live_threads(w, 1) > 0; i++) usleep(20000);
  sf__queue_close(&w->in_q);
  pthread_join(w->compute_th, NULL);
  pthread_join(w->send_th, NULL);
  reg_shutdown(w, 0);
  for (int i = 0; i < 250 && live_threads(w, 0) > 0; i++) usleep(20000);
  sf__logf(w->who, "stopped: %llu requests, %llu errors, peak RSS %.1f MB",
           (unsigned long long)atomic_load(&w->processed), (unsigned long long)atomic_load(&w->errors),
           sf__peak_rss() / 1e6);
done:
  if (w->lfd >= 0) close(w->lfd);
  if (live_threads(w, 0) == 0) { /* connection threads still running keep the state alive */
    for (int i = 0; w->jobs && i < w->n_jobs; i++) {
      sf__frame_deinit(&w->jobs[i].f);
      sf__buf_deinit(&w->jobs[i].out);
    }
    free(w->jobs);
    sf__queue_deinit(&w->free_q);
    sf__queue_deinit(&w->in_q);
    sf__queue_deinit(&w->out_q);
    sf_session_free(w->sess);
    sf_model_free(w->model);
  }
  return rc;
}
