/* Link probes, the workers' side (protocol and method: docs/probe.md).
 *
 * The controller asks worker A on its control link (SF_FR_PROBE, JSON request) to measure the
 * link to worker B. A connects to B's listen port, authenticates as "probe" and
 *   1. times `pings` ping-pongs of small SF_FR_PROBE_DATA frames (flag SF_PROBE_PING, echoed by
 *      B): the RTT is their median (the minimum is reported too);
 *   2. sends SF_FR_PROBE {"seconds": S, "bytes": M, "warmup": W} and then PROBE_DATA frames of
 *      CHUNK bytes back to back. B timestamps the completion of every frame; it stops after S
 *      seconds or M bytes and answers SF_FR_PROBE {"bytes", "seconds", "steady_bytes",
 *      "steady_seconds"}. The bandwidth is the steady part only: bytes of the frames completed
 *      after the warm-up (W seconds = ten RTTs within [S/4, S/2], or M/4 bytes: TCP slow start
 *      and the burst a token bucket lets through after idling) over the time they took;
 *   3. aborts the connection (RST: what is still buffered is dropped instead of keeping the link
 *      busy) and answers the controller with SF_FR_PROBE {"peer", "mbps", "rtt_ms",
 *      "rtt_min_ms", "bytes", "seconds", "steady_bytes", "steady_seconds"}, or SF_FR_ERROR.
 * Bytes are whole frames (48-byte headers included): the goodput the data plane gets, which is
 * what the planner divides transfer sizes by. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>

#include "serve/serve.h"

#define CHUNK ((size_t)16 << 10) /* bulk frame payload: >= 2 frames per steady window at 1 Mbit/s \
                                  */
#define PING_BYTES 8
#define MAX_PINGS 1000
#define PEER_MAX_PAYLOAD ((uint64_t)1 << 20)
#define PEER_IDLE_MS 10000 /* a silent prober is dropped after this */
#define CONNECT_MS 3000
#define AUTH_MS 5000
#define REPLY_MS 5000

/* ---- request / limits ---------------------------------------------------------------------- */
typedef struct probe_req {
  char peer[256];
  double seconds;
  double bytes;
  int pings;
} probe_req;

/* Optional number in [lo, hi]; 0 absent or fine, <0 (error set) otherwise. */
static int opt_num(const cJSON *j, const char *key, double lo, double hi, double *v, sf_err *err) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!x) return 0;
  if (!cJSON_IsNumber(x) || !(x->valuedouble >= lo && x->valuedouble <= hi))
    return sf__errf(err, SF_EFORMAT, "probe: \"%s\" must be a number in [%g, %g]", key, lo, hi);
  *v = x->valuedouble;
  return 0;
}

/* Bulk limits shared by the request and the peer's start frame. */
static int parse_limits(const cJSON *j, double *seconds, double *bytes, sf_err *err) {
  *seconds = SF_PROBE_DEFAULT_SECONDS;
  *bytes = SF_PROBE_DEFAULT_BYTES;
  int rc = opt_num(j, "seconds", SF_PROBE_MIN_SECONDS, SF_PROBE_MAX_SECONDS, seconds, err);
  if (rc == 0) rc = opt_num(j, "bytes", (double)CHUNK, SF_PROBE_MAX_BYTES, bytes, err);
  return rc;
}

static int parse_req(const uint8_t *p, size_t len, probe_req *q, sf_err *err) {
  cJSON *j = cJSON_ParseWithLength((const char *)p, len);
  int rc = 0;
  double pings = SF_PROBE_DEFAULT_PINGS;
  if (!j || !cJSON_IsObject(j)) {
    rc = sf__errf(err, SF_EFORMAT, "probe: the request is not a JSON object");
    goto out;
  }
  const cJSON *peer = cJSON_GetObjectItemCaseSensitive(j, "peer");
  if (!cJSON_IsString(peer) || !peer->valuestring[0] ||
      strlen(peer->valuestring) >= sizeof q->peer || !strchr(peer->valuestring, ':')) {
    rc = sf__errf(err, SF_EFORMAT, "probe: \"peer\" must be a \"host:port\" string");
    goto out;
  }
  snprintf(q->peer, sizeof q->peer, "%s", peer->valuestring);
  if ((rc = parse_limits(j, &q->seconds, &q->bytes, err)) < 0 ||
      (rc = opt_num(j, "pings", 1, MAX_PINGS, &pings, err)) < 0)
    goto out;
  q->pings = (int)pings;
out:
  cJSON_Delete(j);
  return rc;
}

/* Send j (not consumed; NULL = out of memory) as one frame. */
static int send_json(sf_conn *c, int type, uint64_t rid, const cJSON *j, sf_err *err) {
  char *s = j ? cJSON_PrintUnformatted(j) : NULL;
  int rc;
  if (!s) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
  } else {
    sf_frame_hdr h = {.type = (uint16_t)type, .request_id = rid};
    rc = sf__frame_send(c, &h, s, strlen(s), err);
  }
  free(s);
  return rc;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* ---- the peer (B) ---------------------------------------------------------------------------- */
typedef struct bulk_clock {
  double seconds, max_bytes, warmup; /* warm-up: seconds of the run left out of the rate */
  double t0, t_warm, t_last; /* completions: first frame, warm-up boundary frame, last frame */
  double bytes, b_warm;      /* bytes completed in all, and up to the boundary frame */
  int n_frames, warm;
} bulk_clock;

/* One bulk frame of len bytes completed now; returns 1 when the run is over. */
static int bulk_account(bulk_clock *k, double len) {
  double now = sf__now();
  k->bytes += len;
  k->t_last = now;
  if (k->n_frames++ == 0) {
    k->t0 = now;
    return k->bytes >= k->max_bytes;
  }
  if (!k->warm && (now - k->t0 >= k->warmup || k->bytes >= k->max_bytes / 4)) {
    k->warm = 1;
    k->t_warm = now;
    k->b_warm = k->bytes;
  }
  return now - k->t0 >= k->seconds || k->bytes >= k->max_bytes;
}

/* The receiver's verdict: the steady part after the warm-up boundary, else everything after the
 * first frame (too few frames for a boundary). */
static cJSON *bulk_result(const bulk_clock *k) {
  double sb = k->bytes - k->b_warm, ss = k->t_last - k->t_warm;
  if (!k->warm || !(ss > 0)) {
    sb = k->n_frames > 1 ? k->bytes * (double)(k->n_frames - 1) / k->n_frames : 0;
    ss = k->t_last - k->t0;
  }
  cJSON *j = cJSON_CreateObject();
  cJSON_AddNumberToObject(j, "bytes", k->bytes);
  cJSON_AddNumberToObject(j, "seconds", k->t_last - k->t0);
  cJSON_AddNumberToObject(j, "steady_bytes", sb);
  cJSON_AddNumberToObject(j, "steady_seconds", ss);
  return j;
}

/* The start frame: {"seconds", "bytes", "warmup"} (warmup in [S/4, S/2], default S/4). */
static int parse_start(const uint8_t *p, size_t len, bulk_clock *k, sf_err *err) {
  cJSON *j = cJSON_ParseWithLength((const char *)p, len);
  int rc = j && cJSON_IsObject(j) ? parse_limits(j, &k->seconds, &k->max_bytes, err)
                                  : sf__errf(err, SF_EFORMAT, "probe: start is not a JSON object");
  k->warmup = k->seconds / 4;
  if (rc == 0) rc = opt_num(j, "warmup", k->seconds / 4, k->seconds / 2, &k->warmup, err);
  cJSON_Delete(j);
  return rc;
}

void sf__probe_peer(sf_conn *c, const char *who) {
  enum { PINGS, BULK, DONE } phase = PINGS;
  sf_frame f = {0};
  sf_err err = {0};
  bulk_clock k = {0};
  int pings = 0;
  /* bounds for a prober that never stops: pings, the whole session, the discarding after DONE */
  double end = sf__now() + 2 * SF_PROBE_MAX_SECONDS + 60, done_end = 0;
  for (;;) {
    if (sf__frame_recv(c, &f, PEER_MAX_PAYLOAD, PEER_IDLE_MS, &err) < 0) {
      if (phase != DONE && err.code != SF_EIO)
        sf__logf(who, "probe from %s: %s", sf__conn_peer(c), err.msg);
      break;
    }
    int t = f.hdr.type, ping = t == SF_FR_PROBE_DATA && (f.hdr.flags & SF_PROBE_PING);
    double now = sf__now();
    if (t == SF_FR_BYE || (phase == DONE && now > done_end)) break;
    if (now > end) {
      sf__logf(who, "probe from %s: session too long; closing", sf__conn_peer(c));
      break;
    }
    if (phase == DONE && t == SF_FR_PROBE_DATA && !ping) continue; /* in flight when we stopped */
    if (phase == PINGS && ping && f.hdr.payload_len <= 64 && ++pings <= MAX_PINGS) {
      sf_frame_hdr h = {
          .type = SF_FR_PROBE_DATA, .flags = SF_PROBE_PING, .request_id = f.hdr.request_id};
      if (sf__frame_send(c, &h, f.payload, (size_t)f.hdr.payload_len, &err) < 0) break;
    } else if (phase == PINGS && t == SF_FR_PROBE) {
      if (parse_start(f.payload, (size_t)f.hdr.payload_len, &k, &err) < 0) {
        sf__logf(who, "probe from %s: %s", sf__conn_peer(c), err.msg);
        break;
      }
      phase = BULK;
    } else if (phase == BULK && t == SF_FR_PROBE_DATA && !ping) {
      if (bulk_account(&k, (double)(f.hdr.payload_len + SF_FRAME_HDR_BYTES))) {
        cJSON *res = bulk_result(&k);
        int rc = send_json(c, SF_FR_PROBE, 0, res, &err);
        cJSON_Delete(res);
        if (rc < 0) break;
        phase = DONE;
        done_end = sf__now() + 5;
      }
    } else {
      sf__logf(who, "probe from %s: unexpected %s frame; closing", sf__conn_peer(c),
               sf__frame_type_name(t));
      break;
    }
  }
  sf__frame_deinit(&f);
}

/* ---- the prober (A) -------------------------------------------------------------------------- */
typedef struct prober {
  const sf_probe_host *h;
  sf_conn *ctl;
  double next_tick;
  int ctl_failed;
} prober;

/* Between steps: the host's tick when due, the stop flag. <0 ends the probe. */
static int poll_host(prober *p, sf_err *err) {
  if (p->h->stop && *p->h->stop) return sf__errf(err, SF_EIO, "stopping");
  if (!p->h->tick || sf__now() < p->next_tick) return 0;
  p->next_tick = sf__now() + (p->h->tick_ms > 0 ? p->h->tick_ms : 500) / 1000.0;
  if (p->h->tick(p->h->ctx, p->ctl) < 0) {
    p->ctl_failed = 1;
    return sf__errf(err, SF_EIO, "control link lost");
  }
  return 0;
}

/* Ping-pong q->pings times; rtt[] gets each round trip in seconds. */
static int run_pings(prober *p, sf_conn *c, const probe_req *q, double *rtt, sf_frame *f,
                     sf_err *err) {
  for (int i = 0; i < q->pings; i++) {
    uint8_t b[PING_BYTES];
    for (int k = 0; k < PING_BYTES; k++) b[k] = (uint8_t)(i >> (8 * (k & 3)));
    sf_frame_hdr h = {
        .type = SF_FR_PROBE_DATA, .flags = SF_PROBE_PING, .request_id = (uint64_t)i + 1};
    double t0 = sf__now();
    int rc = sf__frame_send(c, &h, b, sizeof b, err);
    if (rc == 0) rc = sf__frame_recv(c, f, 1024, REPLY_MS, err);
    if (rc < 0) return rc;
    rtt[i] = sf__now() - t0;
    if (f->hdr.type != SF_FR_PROBE_DATA || !(f->hdr.flags & SF_PROBE_PING) ||
        f->hdr.request_id != h.request_id || f->hdr.payload_len != sizeof b ||
        memcmp(f->payload, b, sizeof b))
      return sf__errf(err, SF_EFORMAT, "ping %d: the peer answered with a wrong frame (%s)", i + 1,
                      sf__frame_type_name(f->hdr.type));
    if ((rc = poll_host(p, err)) < 0) return rc;
  }
  return 0;
}

/* Send bulk frames until the peer's result arrives; the result JSON is left in f. */
static int run_bulk(prober *p, sf_conn *c, const probe_req *q, double rtt, sf_frame *f,
                    sf_err *err) {
  /* TCP's slow start takes some round trips: leave out ten of them, a quarter to half the run */
  double warmup = fmin(fmax(10 * rtt, q->seconds / 4), q->seconds / 2);
  cJSON *start = cJSON_CreateObject();
  cJSON_AddNumberToObject(start, "seconds", q->seconds);
  cJSON_AddNumberToObject(start, "bytes", q->bytes);
  cJSON_AddNumberToObject(start, "warmup", warmup);
  int rc = send_json(c, SF_FR_PROBE, 0, start, err);
  cJSON_Delete(start);
  if (rc < 0) return rc;
  uint8_t *chunk = sf__malloc(CHUNK);
  if (!chunk) return sf__errf(err, SF_ENOMEM, "out of memory");
  for (size_t i = 0; i < CHUNK; i++) chunk[i] = (uint8_t)(i * 131 + 7); /* not all zeros */
  double give_up = sf__now() + 3 * q->seconds + 10, sent = 0;
  sf_frame_hdr h = {.type = SF_FR_PROBE_DATA};
  for (;;) {
    struct pollfd pf = {.fd = sf__conn_fd(c), .events = POLLIN};
    int more = sent < q->bytes + (double)(4 << 20); /* the peer stops at q->bytes: slack for loss */
    int pr = poll(&pf, 1, more ? 0 : 100);
    if (pr < 0 && errno != EINTR) {
      rc = sf__errf(err, SF_EIO, "poll: %s", strerror(errno));
      break;
    }
    if (pr > 0) {
      if ((rc = sf__frame_recv(c, f, PEER_MAX_PAYLOAD, REPLY_MS, err)) < 0) break;
      if (f->hdr.type != SF_FR_PROBE)
        rc = sf__errf(err, SF_EFORMAT, "the peer sent %s, expected its probe result",
                      sf__frame_type_name(f->hdr.type));
      break;
    }
    if (more) {
      if ((rc = sf__frame_send(c, &h, chunk, CHUNK, err)) < 0) break;
      sent += (double)(CHUNK + SF_FRAME_HDR_BYTES);
    }
    if ((rc = poll_host(p, err)) < 0) break;
    if (sf__now() > give_up) {
      rc = sf__errf(err, SF_EIO, "no result from the peer within %.0f s", 3 * q->seconds + 10);
      break;
    }
  }
  free(chunk);
  return rc;
}

/* Number field of the peer's result, finite and >= 0. */
static int res_num(const cJSON *j, const char *key, double *v, sf_err *err) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || x->valuedouble < 0)
    return sf__errf(err, SF_EFORMAT, "the peer's result has no valid \"%s\"", key);
  *v = x->valuedouble;
  return 0;
}

/* Measure the link to q->peer into a reply object. */
static int measure(prober *p, const probe_req *q, cJSON **out, sf_err *err) {
  sf_conn *c = NULL;
  sf_frame f = {0};
  cJSON *res = NULL;
  double *rtt = sf__calloc((size_t)q->pings, sizeof *rtt);
  int rc;
  if (!rtt) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto out;
  }
  if ((rc = sf__conn_connect(&c, q->peer, CONNECT_MS, err)) < 0 ||
      (rc = sf__auth_client(c, p->h->secret, "probe", AUTH_MS, err)) < 0)
    goto out;
  sf__conn_set_write_timeout(c, 10000);
  if ((rc = run_pings(p, c, q, rtt, &f, err)) < 0) goto out;
  qsort(rtt, (size_t)q->pings, sizeof *rtt, cmp_double);
  double med = q->pings % 2 ? rtt[q->pings / 2] : (rtt[q->pings / 2 - 1] + rtt[q->pings / 2]) / 2;
  if ((rc = run_bulk(p, c, q, med, &f, err)) < 0) goto out;
  res = cJSON_ParseWithLength((const char *)f.payload, (size_t)f.hdr.payload_len);
  double b, s, sb, ss;
  if (!res || !cJSON_IsObject(res)) {
    rc = sf__errf(err, SF_EFORMAT, "the peer's result is not a JSON object");
    goto out;
  }
  if ((rc = res_num(res, "bytes", &b, err)) < 0 || (rc = res_num(res, "seconds", &s, err)) < 0 ||
      (rc = res_num(res, "steady_bytes", &sb, err)) < 0 ||
      (rc = res_num(res, "steady_seconds", &ss, err)) < 0)
    goto out;
  if (!(sb > 0 && ss > 0)) {
    rc = sf__errf(err, SF_EIO, "too few bytes arrived to measure (%.0f in %.3f s); probe longer", b,
                  s);
    goto out;
  }
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "peer", q->peer);
  cJSON_AddNumberToObject(j, "mbps", sb * 8 / ss / 1e6);
  cJSON_AddNumberToObject(j, "rtt_ms", med * 1e3);
  cJSON_AddNumberToObject(j, "rtt_min_ms", rtt[0] * 1e3);
  cJSON_AddNumberToObject(j, "bytes", b);
  cJSON_AddNumberToObject(j, "seconds", s);
  cJSON_AddNumberToObject(j, "steady_bytes", sb);
  cJSON_AddNumberToObject(j, "steady_seconds", ss);
  *out = j;
out:
  if (c) { /* abort: what is still queued for the peer is dropped, not sent */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(sf__conn_fd(c), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  sf__conn_free(c);
  sf__frame_deinit(&f);
  cJSON_Delete(res);
  free(rtt);
  return rc;
}

int sf__probe_request(sf_conn *ctl, const sf_frame *req, const sf_probe_host *h) {
  probe_req q;
  memset(&q, 0, sizeof q);
  prober p = {
      .h = h, .ctl = ctl, .next_tick = sf__now() + (h->tick_ms > 0 ? h->tick_ms : 500) / 1000.0};
  sf_err err = {0};
  cJSON *res = NULL;
  uint64_t rid = req->hdr.request_id;
  int rc = parse_req(req->payload, (size_t)req->hdr.payload_len, &q, &err), parsed = rc == 0;
  if (parsed) rc = measure(&p, &q, &res, &err);
  if (p.ctl_failed) {
    cJSON_Delete(res);
    return -1;
  }
  if (rc < 0) {
    char msg[1400];
    if (parsed)
      snprintf(msg, sizeof msg, "probe to %.255s: %.1023s", q.peer, err.msg);
    else
      snprintf(msg, sizeof msg, "%.1023s", err.msg);
    sf__logf(h->who, "%s", msg);
    sf_frame_hdr eh = {.type = SF_FR_ERROR, .request_id = rid};
    return sf__frame_send(ctl, &eh, msg, strlen(msg), NULL) < 0 ? -1 : 0;
  }
  sf__logf(h->who, "probe to %s: %.2f Mbit/s, rtt %.3f ms", q.peer,
           cJSON_GetObjectItem(res, "mbps")->valuedouble,
           cJSON_GetObjectItem(res, "rtt_ms")->valuedouble);
  rc = send_json(ctl, SF_FR_PROBE, rid, res, NULL);
  cJSON_Delete(res);
  return rc < 0 ? -1 : 0;
}
