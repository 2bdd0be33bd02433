/* The controller: a reconcile loop that keeps one pipeline of the newest valid model version
 * serving on the healthy nodes of a cluster.
 *
 * Every tick (about 50 ms) it reads the control links (each worker sends its status every
 * heartbeat interval; the gateway answers a ping), marks a node failed when its link breaks or
 * it misses `misses` heartbeats, and acts:
 *   - a stage's node failed: re-plan on the survivors. The cheapest repair (the same cuts, each
 *     lost stage moved to the best free node) wins when it is within --replan-gain of the best
 *     plan; otherwise the best plan. Stages a worker already holds (same digest) are not shipped
 *     again. The gateway first holds its requests (a CONFIG without pipelines: the requests of
 *     the old pipeline go back to its queue), the workers are rewired, then the gateway gets the
 *     new pipeline under a new id and replays what it held. Nothing fits: the gateway is told
 *     why (ready false, 503 with the reason) until capacity returns.
 *   - a node returned (the driver restarts dead processes after a back-off): the plan changes
 *     only when the best plan beats the current one by more than --replan-gain.
 *   - a new version in the repository: validate (loads, shapes, same inputs and outputs, a plan
 *     fits), deploy beside the serving pipeline on free nodes when that costs less than the gain
 *     threshold (else hold and switch), switch the gateway in one CONFIG; a version that fails
 *     is rejected with its reason and the serving one stays.
 * Links (docs/operations.md): unless they are emulated, the controller measures every pair of
 * workers (bandwidth and RTT, src/probe/link.h) after starting them and before the first plan,
 * and plans on the measured values (a pair whose probe fails keeps the cluster file's); a node
 * that returns gets its pairs probed again, one pair per tick, before the plan may change.
 * Compute, unless emulated, is measured too: each version's operators are profiled here for their
 * relative costs, and every node times the largest stage of the plan that fits it, at the first
 * plan and when it returns (docs/operations.md, "Measured compute").
 * Stalls: when the gateway's oldest unanswered request of the serving pipeline passes the stall
 * limit, every hop is probed; a broken link is planned around, else the pipeline is deployed
 * again so that the gateway replays what was lost.
 * State is saved atomically after every change (state.c); a restarted controller adopts the
 * running processes and reconfigures only what differs from the saved plan. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "control/controller.h"
#include "control/k8s_ctl.h"
#include "control/k8s_driver.h"
#include "probe/link.h"
#include "probe/probe.h"
#include "serve/serve.h"

#define WHO "controller"

double sf__wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void event(ctl *C, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void event(ctl *C, const char *fmt, ...) {
  cevent *e = &C->ev[C->n_ev++ % CTL_MAX_EVENTS];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->text, sizeof e->text, fmt, ap);
  va_end(ap);
  e->t = sf__wall();
  sf__logf(WHO, "%s", e->text);
  C->dirty = 1;
}

static crecord *record(ctl *C, const char *kind, const char *what, double t_start) {
  crecord *r = &C->rec[C->n_rec++ % CTL_MAX_RECORDS];
  memset(r, 0, sizeof *r);
  snprintf(r->kind, sizeof r->kind, "%s", kind);
  snprintf(r->what, sizeof r->what, "%s", what);
  r->t_start = t_start;
  r->t_done = sf__wall();
  C->dirty = 1;
  return r;
}

static void save(ctl *C) {
  sf_err err = {0};
  if (sf__ctl_state_save(C, &err) < 0)
    sf__logf(WHO, "saving state: %s", err.msg);
  else
    C->dirty = 0;
}

/* ---- nodes --------------------------------------------------------------------------------------
 */
static void node_close(cnode *n) {
  if (n->c) sf__frame_send(n->c, &(sf_frame_hdr){.type = SF_FR_BYE}, NULL, 0, NULL);
  sf__conn_free(n->c);
  n->c = NULL;
}

static int in_pipeline(const ctl *C, int idx) {
  for (int i = 0; C->dep.active && i < C->dep.n; i++)
    if (C->dep.nodes[i] == idx) return 1;
  return 0;
}

/* The node failed (link error, missed heartbeats, failed command). */
static void node_down(ctl *C, int idx, const char *why) {
  cnode *n = &C->nodes[idx];
  if (!n->up) return;
  node_close(n);
  n->up = 0;
  n->have_st = 0;
  snprintf(n->why, sizeof n->why, "%s", why);
  double base = C->o->restart_ms / 1000.0;
  if (sf__now() - n->up_since > 30) n->backoff_s = base; /* was healthy for a while: start over */
  n->retry_at = sf__now() + n->backoff_s;
  n->backoff_s = fmin(n->backoff_s * 2, base * 16);
  event(C, "node %s down: %s%s", C->cl.nodes[idx].name, why,
        in_pipeline(C, idx) ? " (it runs a stage)" : "");
  if (in_pipeline(C, idx) && C->failover_t0 == 0) {
    C->failover_t0 = sf__wall();
    snprintf(C->failover_what, sizeof C->failover_what, "%s", C->cl.nodes[idx].name);
  }
}

/* Connect to the node's worker and read its status. */
static int node_connect(ctl *C, int idx, sf_err *err) {
  cnode *n = &C->nodes[idx];
  char *reply = NULL;
  int rc = sf__ctl_connect_timeout(&n->c, n->proc.addr, &C->sec, 1000, err);
  if (rc == 0) rc = sf__ctl_status(n->c, 2000, &reply, err);
  if (rc == 0) rc = sf__wstatus_parse(reply, strlen(reply), &n->st, err);
  free(reply);
  if (rc < 0) {
    sf__conn_free(n->c);
    n->c = NULL;
    return rc;
  }
  n->have_st = 1;
  n->up = 1;
  n->last_seen = n->up_since = sf__now();
  n->why[0] = 0;
  return 0;
}

/* A down node: (re)start its process when it is gone, then connect. */
static void node_try(ctl *C, int idx) {
  cnode *n = &C->nodes[idx];
  const char *name = C->cl.nodes[idx].name;
  sf_err err = {0};
  int started = 0;
  int ready = C->k8s ? sf__driver_k8s_node_ready(&C->drv, name) : 1;
  if (ready != 1) { /* Kubernetes: no worker is started on a Node that is not Ready */
    n->retry_at = sf__now() + 0.5;
    if (ready < 0 && n->have_proc) { /* the Node is gone: so is the need for its Deployment */
      if (C->drv.ops->stop(C->drv.ctx, &n->proc, 0) < 0)
        event(C, "node %s: deleting the Deployment of a deleted Node failed", name);
      else
        event(C, "node %s: Node deleted, its worker's Deployment deleted", name);
      n->have_proc = 0;
    }
    return;
  }
  if (!n->have_proc || !C->drv.ops->alive(C->drv.ctx, &n->proc)) {
    sf_proc p;
    memset(&p, 0, sizeof p);
    p.role = SF_PROC_WORKER;
    snprintf(p.node, sizeof p.node, "%s", name);
    snprintf(p.listen, sizeof p.listen, "%s", n->listen);
    if (C->drv.ops->start(C->drv.ctx, &p, &err) < 0) {
      n->retry_at = sf__now() + n->backoff_s;
      n->backoff_s = fmin(n->backoff_s * 2, C->o->restart_ms / 1000.0 * 16);
      event(C, "node %s: starting its worker failed: %s", name, err.msg);
      return;
    }
    if (n->have_proc) n->restarts++;
    n->proc = p;
    n->have_proc = 1;
    started = 1;
  }
  if (node_connect(C, idx, &err) < 0) {
    n->retry_at = sf__now() + n->backoff_s;
    n->backoff_s = fmin(n->backoff_s * 2, C->o->restart_ms / 1000.0 * 16);
    snprintf(n->why, sizeof n->why, "%.250s", err.msg);
    if (started) event(C, "node %s: worker started but unreachable: %s", name, err.msg);
    return;
  }
  event(C, "node %s up (%s, worker %s%s)", name, n->proc.addr, started ? "started" : "adopted",
        n->restarts && started ? ", restarted" : "");
  C->health_changed = 1;
  if (C->probe && C->probed) { /* a new or returning node: its links are measured again */
    for (int j = 0; j < C->cl.n; j++)
      if (j != idx) C->probe_queued[idx * C->cl.n + j] = C->probe_queued[j * C->cl.n + idx] = 1;
  }
  if (C->cprobe && C->cur.open) C->speed_queued[idx] = 1; /* and its speed, on a stage */
}

/* ---- gateway -----------------------------------------------------------------------------------
 */
static void gw_down(ctl *C, const char *why) {
  if (!C->gw_up) return;
  sf__conn_free(C->gwc);
  C->gwc = NULL;
  C->gw_up = 0;
  C->gw_sha[0] = 0;
  C->gw_retry_at = sf__now() + C->gw_backoff_s;
  C->gw_backoff_s = fmin(C->gw_backoff_s * 2, C->o->restart_ms / 1000.0 * 16);
  event(C, "gateway down: %s", why);
}

static int gw_status_apply(ctl *C, const char *json, size_t len) {
  cJSON *j = cJSON_ParseWithLength(json, len), *e;
  cJSON *sha = j ? cJSON_GetObjectItem(j, "config_sha256") : NULL;
  if (cJSON_IsString(sha)) snprintf(C->gw_sha, sizeof C->gw_sha, "%s", sha->valuestring);
  C->gw_oldest_s = 0;
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "pipelines")) {
    const cJSON *id = cJSON_GetObjectItem(e, "id"), *old = cJSON_GetObjectItem(e, "oldest_s");
    if (C->dep.active && cJSON_IsNumber(id) && id->valuedouble == C->dep.id && cJSON_IsNumber(old) &&
        old->valuedouble >= 0 && old->valuedouble < 1e7)
      C->gw_oldest_s = old->valuedouble;
  }
  cJSON_Delete(j);
  return 0;
}

static int stage_addrs(const ctl *C, const cdeploy *d, const char **addrs, const char **names) {
  for (int i = 0; i < d->n; i++) {
    addrs[i] = C->nodes[d->nodes[i]].proc.addr;
    names[i] = C->cl.nodes[d->nodes[i]].name;
  }
  return d->n;
}

/* The gateway CONFIG for pipeline d (NULL: none; reason: why the model is unavailable). */
static char *gw_config(const ctl *C, const cdeploy *d, const cversion *v, const char *reason) {
  const char *addrs[CTL_MAX_STAGES], *names[CTL_MAX_STAGES];
  sf_gw_pipe gp = {0};
  int n = 0;
  if (d) {
    stage_addrs(C, d, addrs, names);
    gp = (sf_gw_pipe){
        .id = d->id,
        .codec = C->o->codec,
        .n_stages = d->n,
        .addrs = addrs,
        .nodes = names,
        .rate_bytes_per_s = C->emulate ? sf__emulated_rate(&C->cl, C->cl.gateway, d->nodes[0]) : 0};
    n = 1;
  }
  return sf__gateway_config_json(C->name, v && v->open ? v->version : "0", v ? v->in : NULL,
                                 v ? v->out : NULL, &gp, n, reason);
}

/* Send a CONFIG to the gateway (not up: it gets the desired one when it comes back). */
static int gw_send(ctl *C, const char *cfg, sf_err *err) {
  if (!C->gw_up) return sf__errf(err, SF_EIO, "gateway down");
  if (!cfg) return sf__errf(err, SF_ENOMEM, "out of memory");
  int rc = sf__ctl_config(C->gwc, cfg, 10000, NULL, err);
  if (rc == SF_EINVAL) return rc; /* refused: the link is fine */
  if (rc < 0) {
    char why[300];
    snprintf(why, sizeof why, "configuring: %.250s", err->msg);
    gw_down(C, why);
    return rc;
  }
  uint8_t d[32];
  sf__sha256(cfg, strlen(cfg), d);
  sf__hex(d, 32, C->gw_sha);
  return 0;
}

/* The configuration the gateway should have now. */
static char *gw_desired(const ctl *C) {
  if (C->dep.active) return gw_config(C, &C->dep, &C->cur, NULL);
  if (C->cur.open) return gw_config(C, NULL, &C->cur, C->reason[0] ? C->reason : "no pipeline");
  return NULL;
}

/* Bring the gateway's configuration in line (only when it differs). */
static void gw_sync(ctl *C) {
  char *cfg = gw_desired(C);
  if (!cfg || !C->gw_up) {
    free(cfg);
    return;
  }
  uint8_t d[32];
  char hex[65];
  sf__sha256(cfg, strlen(cfg), d);
  sf__hex(d, 32, hex);
  sf_err err = {0};
  if (strcmp(hex, C->gw_sha)) {
    if (gw_send(C, cfg, &err) < 0)
      sf__logf(WHO, "gateway: %s", err.msg);
    else
      event(C, "gateway configured (pipeline %u)", C->dep.active ? C->dep.id : 0);
  }
  free(cfg);
}

static void gw_try(ctl *C) {
  sf_err err = {0};
  int started = 0;
  if (!C->gw_have || !C->drv.ops->alive(C->drv.ctx, &C->gw)) {
    sf_proc p;
    memset(&p, 0, sizeof p);
    p.role = SF_PROC_GATEWAY;
    if (C->cl.gateway >= 0) snprintf(p.node, sizeof p.node, "%s", C->cl.nodes[C->cl.gateway].name);
    /* keep the URL and data port of an earlier gateway: clients and stages know them */
    const char *h = C->gw_have ? strstr(C->gw.url, "://") : NULL;
    snprintf(p.listen, sizeof p.listen, "%s", h ? h + 3 : C->o->listen);
    if (C->gw_have) {
      snprintf(p.listen2, sizeof p.listen2, "%s", C->gw.addr);
    } else if (C->cl.gateway >= 0 && C->addr[C->cl.gateway][0]) {
      const char *a = C->addr[C->cl.gateway], *colon = strrchr(a, ':');
      snprintf(p.listen2, sizeof p.listen2, "%.*s:0", (int)(colon - a), a);
    }
    if (C->drv.ops->start(C->drv.ctx, &p, &err) < 0) {
      C->gw_retry_at = sf__now() + C->gw_backoff_s;
      C->gw_backoff_s = fmin(C->gw_backoff_s * 2, C->o->restart_ms / 1000.0 * 16);
      event(C, "gateway: start failed: %s", err.msg);
      return;
    }
    C->gw = p;
    C->gw_have = 1;
    started = 1;
  }
  char *reply = NULL;
  int rc = sf__ctl_connect_timeout(&C->gwc, C->gw.addr, &C->sec, 1000, &err);
  if (rc == 0) rc = sf__ctl_status(C->gwc, 2000, &reply, &err);
  if (rc < 0) {
    sf__conn_free(C->gwc);
    C->gwc = NULL;
    C->gw_retry_at = sf__now() + C->gw_backoff_s;
    C->gw_backoff_s = fmin(C->gw_backoff_s * 2, C->o->restart_ms / 1000.0 * 16);
    if (started) event(C, "gateway started but unreachable: %s", err.msg);
    return;
  }
  gw_status_apply(C, reply, strlen(reply));
  free(reply);
  C->gw_up = 1;
  C->gw_last = sf__now();
  C->gw_ping_at = C->gw_last + C->hb_ms / 1000.0;
  C->gw_backoff_s = C->o->restart_ms / 1000.0;
  event(C, "gateway up (%s, data %s, %s)", C->gw.url, C->gw.addr, started ? "started" : "adopted");
  C->dirty = 1;
}

/* ---- links: heartbeats and failures ------------------------------------------------------------
 */
static void read_links(ctl *C, int timeout_ms) {
  struct pollfd pfd[CTL_MAX_NODES + 2];
  int who[CTL_MAX_NODES + 2], n = 0;
  for (int i = 0; i < C->cl.n; i++)
    if (C->nodes[i].up) {
      pfd[n] = (struct pollfd){.fd = sf__conn_fd(C->nodes[i].c), .events = POLLIN};
      who[n++] = i;
    }
  if (C->gw_up) {
    pfd[n] = (struct pollfd){.fd = sf__conn_fd(C->gwc), .events = POLLIN};
    who[n++] = -1;
  }
  if (C->k8s) { /* Kubernetes: the Node informer turns readable on every Node change */
    pfd[n] = (struct pollfd){.fd = sf__driver_k8s_fd(&C->drv), .events = POLLIN};
    who[n++] = -2;
  }
  int pr = n ? poll(pfd, (nfds_t)n, timeout_ms) : (usleep((useconds_t)timeout_ms * 1000), 0);
  if (pr <= 0) return;
  sf_frame f = {0};
  for (int k = 0; k < n; k++) {
    if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    if (who[k] == -2) {
      sf__k8s_ctl_nodes_changed(C);
      continue;
    }
    sf_err err = {0};
    sf_conn *c = who[k] >= 0 ? C->nodes[who[k]].c : C->gwc;
    if (!c) continue;
    if (sf__frame_recv(c, &f, 1 << 20, 1000, &err) < 0) {
      char why[300];
      snprintf(why, sizeof why, "control link: %.250s", err.msg);
      if (who[k] >= 0)
        node_down(C, who[k], why);
      else
        gw_down(C, why);
      continue;
    }
    if (who[k] >= 0) {
      cnode *nd = &C->nodes[who[k]];
      nd->last_seen = sf__now();
      if (f.hdr.type == SF_FR_HEARTBEAT &&
          sf__wstatus_parse((const char *)f.payload, f.hdr.payload_len, &nd->st, NULL) == 0)
        nd->have_st = 1;
    } else {
      C->gw_last = sf__now();
      if (f.hdr.type == SF_FR_HEARTBEAT)
        gw_status_apply(C, (const char *)f.payload, f.hdr.payload_len);
    }
  }
  sf__frame_deinit(&f);
}

static void check_deadlines(ctl *C) {
  double now = sf__now(), limit = C->o->misses * C->hb_ms / 1000.0;
  for (int i = 0; i < C->cl.n; i++) {
    cnode *n = &C->nodes[i];
    if (n->up && now - n->last_seen > limit) {
      char why[128];
      snprintf(why, sizeof why, "no heartbeat for %.1f s", now - n->last_seen);
      node_down(C, i, why);
    }
  }
  if (C->gw_up) {
    if (now >= C->gw_ping_at) {
      sf_err err = {0};
      if (sf__frame_send(C->gwc, &(sf_frame_hdr){.type = SF_FR_HEARTBEAT}, NULL, 0, &err) < 0) {
        char why[300];
        snprintf(why, sizeof why, "control link: %.250s", err.msg);
        gw_down(C, why);
      }
      C->gw_ping_at = now + C->hb_ms / 1000.0;
    }
    if (C->gw_up && now - C->gw_last > limit + C->hb_ms / 1000.0) gw_down(C, "no answer to pings");
  }
}


/* ---- link probes -------------------------------------------------------------------------------
 */
static int probe_setup(ctl *C, sf_err *err) {
  size_t nn = (size_t)C->cl.n * (size_t)C->cl.n;
  C->file_bw = sf__calloc(nn, sizeof *C->file_bw);
  C->file_rtt = sf__calloc(nn, sizeof *C->file_rtt);
  C->meas_mbps = sf__calloc(nn, sizeof *C->meas_mbps);
  C->meas_rtt = sf__calloc(nn, sizeof *C->meas_rtt);
  C->meas_t = sf__calloc(nn, sizeof *C->meas_t);
  C->probe_queued = sf__calloc(nn, 1);
  C->probe_one = sf__calloc(nn, 1);
  if (!C->cl.rtt && (C->cl.rtt = sf__calloc(nn, sizeof *C->cl.rtt)) == NULL)
    return sf__errf(err, SF_ENOMEM, "out of memory");
  size_t n = (size_t)C->cl.n;
  C->file_speed = sf__calloc(n, sizeof *C->file_speed);
  C->speed_t = sf__calloc(n, sizeof *C->speed_t);
  C->speed_stage_s = sf__calloc(n, sizeof *C->speed_stage_s);
  C->speed_pred_s = sf__calloc(n, sizeof *C->speed_pred_s);
  C->speed_stage = sf__calloc(n, sizeof *C->speed_stage);
  C->speed_queued = sf__calloc(n, 1);
  C->link_fail_t = sf__calloc(nn, sizeof *C->link_fail_t);
  C->link_retry_at = sf__calloc(nn, sizeof *C->link_retry_at);
  C->link_backoff_s = sf__calloc(nn, sizeof *C->link_backoff_s);
  if (!C->file_bw || !C->file_rtt || !C->meas_mbps || !C->meas_rtt || !C->meas_t ||
      !C->probe_queued || !C->probe_one || !C->file_speed || !C->speed_t || !C->speed_stage_s ||
      !C->speed_pred_s || !C->speed_stage || !C->speed_queued || !C->link_fail_t ||
      !C->link_retry_at || !C->link_backoff_s)
    return sf__errf(err, SF_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) C->file_speed[i] = C->cl.nodes[i].flops_per_s;
  /* compute is measured whenever it is real (emulated compute is padded to the file's speeds) */
  C->cprobe = C->o->probe != 0 && !C->emulate_compute;
  memcpy(C->file_bw, C->cl.bw, nn * sizeof *C->file_bw);
  memcpy(C->file_rtt, C->cl.rtt, nn * sizeof *C->file_rtt);
  for (size_t k = 0; k < nn; k++) C->meas_rtt[k] = -1;
  double s = C->o->probe_seconds > 0 ? C->o->probe_seconds : 0.3;
  if (!(s >= SF_PROBE_MIN_SECONDS && s <= SF_PROBE_MAX_SECONDS))
    return sf__errf(err, SF_EINVAL, "probe seconds must be in [%g, %g]", SF_PROBE_MIN_SECONDS,
                    SF_PROBE_MAX_SECONDS);
  C->probe = C->o->probe != 0 && !C->emulate && C->cl.n > 1;
  if (C->emulate)
    snprintf(C->probe_note, sizeof C->probe_note,
             "emulated: paced at the cluster file's rates, not probed");
  else if (C->o->probe == 0)
    snprintf(C->probe_note, sizeof C->probe_note, "cluster file (probing off)");
  else if (C->cl.n < 2)
    snprintf(C->probe_note, sizeof C->probe_note, "cluster file (one node: no links)");
  else
    snprintf(C->probe_note, sizeof C->probe_note, "measured");
  return 0;
}

static void probe_free(ctl *C) {
  free(C->file_bw);
  free(C->file_rtt);
  free(C->meas_mbps);
  free(C->meas_rtt);
  free(C->meas_t);
  free(C->probe_queued);
  free(C->probe_one);
  free(C->file_speed);
  free(C->speed_t);
  free(C->speed_stage_s);
  free(C->speed_pred_s);
  free(C->speed_stage);
  free(C->speed_queued);
  free(C->link_fail_t);
  free(C->link_retry_at);
  free(C->link_backoff_s);
}

static void probe_progress(void *ctx, int from, int to, const sf_probe_result *r,
                           const sf_err *e) {
  ctl *C = ctx;
  const char *a = C->cl.nodes[from].name, *b = C->cl.nodes[to].name;
  size_t k = (size_t)from * (size_t)C->cl.n + (size_t)to;
  if (r)
    sf__logf(WHO, "probe %s -> %s: %.3f Mbit/s, RTT %.3f ms", a, b, r->mbps, r->rtt_s * 1e3);
  else
    event(C, "probe %s -> %s failed: %.250s; planning with %.3f Mbit/s%s", a, b,
          e ? e->msg : "?", C->cl.bw[k] * 8 / 1e6,
          C->meas_t[k] > 0 ? " (an earlier measurement)" : " (the cluster file's)");
}

/* The links as plans see them, one log line per pair. */
static void probe_table(ctl *C) {
  int n = C->cl.n;
  sf__logf(WHO, "links (Mbit/s; RTT ms):  %-12s %-12s %10s %9s %10s  %s", "from", "to", "plan",
           "rtt", "file", "source");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      if (i == j) continue;
      size_t k = (size_t)i * (size_t)n + (size_t)j;
      sf__logf(WHO, "links (Mbit/s; RTT ms):  %-12s %-12s %10.3f %9.3f %10.3f  %s",
               C->cl.nodes[i].name, C->cl.nodes[j].name, C->cl.bw[k] * 8 / 1e6,
               C->cl.rtt[k] * 1e3, C->file_bw[k] * 8 / 1e6,
               C->meas_t[k] > 0 ? "measured" : "cluster file");
    }
}

/* The loop did not read the control links while a probe ran: their silence is ours. */
static void links_quiet(ctl *C) {
  double now = sf__now();
  for (int i = 0; i < C->cl.n; i++)
    if (C->nodes[i].up && C->nodes[i].last_seen < now) C->nodes[i].last_seen = now;
  if (C->gw_up) C->gw_last = C->gw_ping_at = now;
}

/* Probe the pairs flagged in only (both nodes up); measured pairs replace the links plans use.
 * Returns the number of pairs measured; *tried gets the number probed. */
static int probe_run(ctl *C, const unsigned char *only, int *tried) {
  int n = C->cl.n, measured = 0;
  size_t nn = (size_t)n * (size_t)n;
  const char **addrs = sf__calloc((size_t)n, sizeof *addrs);
  double *mbps = sf__calloc(nn, sizeof *mbps), *rtt = sf__calloc(nn, sizeof *rtt);
  unsigned char *mask = sf__calloc(nn, 1);
  *tried = 0;
  if (!addrs || !mbps || !rtt || !mask) {
    sf__logf(WHO, "probing: out of memory");
    goto out;
  }
  for (int i = 0; i < n; i++) addrs[i] = C->nodes[i].up ? C->nodes[i].proc.addr : "-:0";
  for (size_t k = 0; k < nn; k++) {
    int i = (int)(k / (size_t)n), j = (int)(k % (size_t)n);
    mask[k] = only[k] && i != j && C->nodes[i].up && C->nodes[j].up;
    *tried += mask[k];
  }
  if (!*tried) goto out;
  sf_probe_opts po = sf__probe_opts_default();
  po.seconds = C->o->probe_seconds > 0 ? C->o->probe_seconds : 0.3;
  po.pings = 5;
  po.timeout_ms = 2000;
  po.only = mask;
  po.progress = probe_progress;
  po.ctx = C;
  sf_err err = {0};
  int failed = sf__probe_links(addrs, n, &C->sec, &po, mbps, rtt, &err);
  if (failed < 0) {
    event(C, "probing: %s", err.msg);
    goto out;
  }
  double t = sf__wall();
  for (size_t k = 0; k < nn; k++) {
    if (!mask[k] || !(mbps[k] > 0) || !isfinite(mbps[k])) continue;
    C->meas_mbps[k] = mbps[k];
    C->meas_rtt[k] = rtt[k];
    C->meas_t[k] = t;
    C->link_fail_t[k] = 0; /* it carries data again */
    C->cl.bw[k] = mbps[k] * 1e6 / 8;
    if (rtt[k] >= 0 && isfinite(rtt[k])) C->cl.rtt[k] = rtt[k];
    measured++;
  }
  links_quiet(C);
  C->dirty = 1;
out:
  free(addrs);
  free(mbps);
  free(rtt);
  free(mask);
  return measured;
}

/* Before the first plan: every pair of the nodes that are up, except pairs a previous controller
 * on this directory measured (restored from the state file: probing them again would run under
 * the serving pipeline's traffic). */
static void probe_start(ctl *C) {
  if (!C->probe) {
    sf__logf(WHO, "links: %s", C->probe_note);
    return;
  }
  size_t nn = (size_t)C->cl.n * (size_t)C->cl.n;
  unsigned char *all = sf__calloc(nn, 1);
  if (!all) return;
  int kept = 0;
  for (size_t k = 0; k < nn; k++) {
    all[k] = !(C->meas_t[k] > 0);
    kept += k / (size_t)C->cl.n != k % (size_t)C->cl.n && !all[k];
  }
  double t0 = sf__now();
  int tried = 0, got = probe_run(C, all, &tried);
  free(all);
  C->probed = 1;
  char also[64] = "";
  if (kept) snprintf(also, sizeof also, "; %d kept from the state file", kept);
  if (!tried && kept)
    event(C, "links: %d pairs measured earlier kept from the state file, none to probe", kept);
  else
    event(C, "links probed: %d of %d pairs measured in %.1f s (%.2f s each)%s%s", got, tried,
          sf__now() - t0, C->o->probe_seconds > 0 ? C->o->probe_seconds : 0.3, also,
          got < tried ? "; the others keep the cluster file's values" : "");
  probe_table(C);
}

static int probe_pending(const ctl *C) {
  size_t nn = (size_t)C->cl.n * (size_t)C->cl.n;
  for (size_t k = 0; C->probe && k < nn; k++)
    if (C->probe_queued[k]) return 1;
  return 0;
}

/* One pair of a returning node (a probe keeps the loop for about probe_seconds). */
static void probe_step(ctl *C) {
  int n = C->cl.n;
  size_t nn = (size_t)n * (size_t)n, k;
  for (k = 0; k < nn && !C->probe_queued[k]; k++) {
  }
  if (k == nn) return;
  C->probe_queued[k] = 0;
  int tried = 0;
  C->probe_one[k] = 1;
  probe_run(C, C->probe_one, &tried);
  C->probe_one[k] = 0;
  if (tried && !probe_pending(C)) {
    event(C, "links re-probed after a node returned");
    probe_table(C);
  }
}

/* ---- plans -------------------------------------------------------------------------------------
 */
static void usable_nodes(const ctl *C, unsigned char *u) {
  for (int i = 0; i < C->cl.n; i++) u[i] = (unsigned char)C->nodes[i].up;
}

/* The best plan of v on the usable nodes (n_stages = 0 when nothing fits). */
static int plan_best(ctl *C, const cversion *v, const unsigned char *usable, double limit_s,
                     sf_plan *out, sf_err *err) {
  sf_plan_opts po = sf_plan_opts_default();
  po.time_limit_s = limit_s;
  po.usable = usable;
  memset(out, 0, sizeof *out);
  int rc = sf__plan_solve(C->solver, &v->dm.pa.costs, &C->cl, &po, out, err);
  if (rc == 0 && out->n_stages > CTL_MAX_STAGES) {
    sf__plan_deinit(out);
    memset(out, 0, sizeof *out);
    return sf__errf(err, SF_ELIMIT, "plan has more than %d stages", CTL_MAX_STAGES);
  }
  return rc;
}

/* The cheapest repair of the deployed pipeline: the same cuts, every stage on an unusable node
 * moved to the free usable node that keeps the bottleneck lowest (greedy, stage by stage). */
static int plan_patch(ctl *C, const unsigned char *usable, sf_plan *out, sf_err *err) {
  const cdeploy *d = &C->dep;
  int nodes[CTL_MAX_STAGES];
  unsigned char used[CTL_MAX_NODES] = {0};
  memset(out, 0, sizeof *out);
  memcpy(nodes, d->nodes, sizeof(int) * (size_t)d->n);
  for (int i = 0; i < d->n; i++)
    if (usable[nodes[i]]) used[nodes[i]] = 1;
  for (int i = 0; i < d->n; i++) {
    if (usable[nodes[i]]) continue;
    int best = -1;
    double best_b = INFINITY;
    for (int v = 0; v < C->cl.n; v++) {
      if (!usable[v] || used[v]) continue;
      nodes[i] = v;
      sf_plan t = {0};
      /* stages still on dead nodes are evaluated where they are: only memory and speed of v matter
       */
      if (sf__plan_eval(&C->cur.dm.pa.costs, &C->cl, d->n, d->cuts, nodes, &t, err) < 0)
        return err->code;
      if (t.bottleneck_s < best_b) best_b = t.bottleneck_s, best = v;
      sf__plan_deinit(&t);
    }
    if (best < 0 || !isfinite(best_b)) return 0; /* no repair */
    nodes[i] = best;
    used[best] = 1;
  }
  return sf__plan_eval(&C->cur.dm.pa.costs, &C->cl, d->n, d->cuts, nodes, out, err);
}

static void plan_to_deploy(const sf_plan *p, const sf_pcosts *c, cdeploy *d) {
  d->n = p->n_stages;
  for (int i = 0; i < p->n_stages; i++) {
    d->cuts[i] = p->stages[i].cut_from;
    d->nodes[i] = p->stages[i].node;
    d->compute_s[i] = p->stages[i].compute_s;
  }
  d->cuts[p->n_stages] = p->n_stages ? p->stages[p->n_stages - 1].cut_to : c->n - 1;
  d->bottleneck_s = p->bottleneck_s;
  d->throughput = p->throughput_per_s;
}

/* ---- deploying a pipeline ----------------------------------------------------------------------
 */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

/* Stage files of d for version v in DIR/stages/v<version>-<hash of the cuts and the file>:
 * split once, digests kept in digests.json beside them. */
static int stage_files(ctl *C, const cversion *v, cdeploy *d, sf_plan *p, sf_err *err) {
  uint64_t h = 1469598103934665603ull;
  h = fnv(h, d->cuts, sizeof(int) * (size_t)(d->n + 1));
  h = fnv(h, &v->size, sizeof v->size);
  h = fnv(h, &v->mtime_ns, sizeof v->mtime_ns);
  snprintf(d->dir, sizeof d->dir, "%.3800s/stages/v%s-%016llx", C->dir, v->version,
           (unsigned long long)h);
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/digests.json", d->dir);
  void *txt = NULL;
  size_t len = 0;
  if (sf__read_file(path, 1 << 20, &txt, &len, NULL) == 0) {
    cJSON *j = cJSON_ParseWithLength(txt, len), *e;
    free(txt);
    int k = 0;
    cJSON_ArrayForEach(e, j) {
      if (k < d->n && cJSON_IsString(e) && strlen(e->valuestring) == 64)
        snprintf(d->digest[k], 65, "%s", e->valuestring);
      k++;
    }
    cJSON_Delete(j);
    if (k == d->n) return 0;
  }
  int rc = sf__deploy_split(&v->dm, C->name, &C->cl, p, d->dir, d->digest, err);
  if (rc < 0) return rc;
  cJSON *j = cJSON_CreateArray();
  for (int i = 0; i < d->n; i++) cJSON_AddItemToArray(j, cJSON_CreateString(d->digest[i]));
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  rc = s ? sf__write_file_atomic(path, s, strlen(s), err)
         : sf__errf(err, SF_ENOMEM, "out of memory");
  free(s);
  return rc;
}

static void stage_cfg(const ctl *C, const cdeploy *d, int i, sf_wcfg *wc) {
  int last = i + 1 == d->n, from = d->nodes[i], to = last ? C->cl.gateway : d->nodes[i + 1];
  memset(wc, 0, sizeof *wc);
  wc->stage = i;
  wc->pipeline = d->id;
  wc->last = last;
  wc->codec = C->o->codec;
  wc->rate_bytes_per_s = C->emulate ? sf__emulated_rate(&C->cl, from, to) : 0;
  wc->compute_s = C->emulate_compute ? d->compute_s[i] : 0;
  snprintf(wc->next, sizeof wc->next, "%s",
           last ? C->gw.addr : C->nodes[d->nodes[i + 1]].proc.addr);
}

/* Put stage i of d on its node: ship the stage unless the worker holds it, configure unless it
 * has that configuration. *shipped counts stages sent. A link failure marks the node down. */
static int put_stage(ctl *C, const cdeploy *d, int i, int *shipped, sf_err *err) {
  int idx = d->nodes[i];
  cnode *n = &C->nodes[idx];
  const char *name = C->cl.nodes[idx].name;
  if (!n->up) return sf__errf(err, SF_EIO, "node %s is down", name);
  int rc = 0;
  if (!n->have_st || strcmp(n->st.digest, d->digest[i])) {
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/stage-%d.onnx", d->dir, i + 1);
    rc = sf__deploy_ship(n->c, path, 120000, NULL, err);
    if (rc < 0) {
      sf__errctx(err, rc, "stage %d on %s", i + 1, name);
      if (rc != SF_EINVAL)
        node_down(C, idx, err->msg); /* SF_EINVAL: the worker refused the stage */
      return rc;
    }
    snprintf(n->st.digest, sizeof n->st.digest, "%s", d->digest[i]);
    (*shipped)++;
  }
  sf_wcfg wc;
  stage_cfg(C, d, i, &wc);
  if (!n->have_st || !sf__wcfg_same(&wc, &n->st)) {
    char *cfg = sf__wcfg_json(&wc), *reply = NULL;
    rc = cfg ? sf__ctl_config(n->c, cfg, 10000, &reply, err)
             : sf__errf(err, SF_ENOMEM, "out of memory");
    free(cfg);
    if (rc == 0 && sf__wstatus_parse(reply, strlen(reply), &n->st, NULL) == 0) n->have_st = 1;
    free(reply);
    if (rc < 0) {
      sf__errctx(err, rc, "configuring stage %d on %s", i + 1, name);
      if (rc != SF_EINVAL) node_down(C, idx, err->msg);
      return rc;
    }
  }
  return 0;
}

/* Deploy plan p of version v as a new pipeline and switch the gateway to it. When the new
 * pipeline uses a node of the serving one, the gateway holds its requests first (*held = 1).
 * On success C->dep is the new pipeline. */
static int deploy(ctl *C, cversion *v, sf_plan *p, int *held, int *shipped, sf_err *err) {
  cdeploy nd;
  memset(&nd, 0, sizeof nd);
  *held = 0;
  *shipped = 0;
  if (p->n_stages < 1 || p->n_stages > CTL_MAX_STAGES) return sf__errf(err, SF_EINVAL, "no plan");
  plan_to_deploy(p, &v->dm.pa.costs, &nd);
  nd.id = ++C->gen;
  snprintf(nd.version, sizeof nd.version, "%s", v->version);
  C->dirty = 1;
  int rc = stage_files(C, v, &nd, p, err);
  if (rc < 0) return rc;
  int overlap = 0;
  for (int i = 0; i < nd.n && C->dep.active; i++)
    for (int k = 0; k < C->dep.n; k++) overlap |= nd.nodes[i] == C->dep.nodes[k];
  if (overlap) {
    char *hold = gw_config(C, NULL, C->cur.open ? &C->cur : v, NULL);
    rc = gw_send(C, hold, err);
    free(hold);
    if (rc < 0 && rc != SF_EIO) return rc;
    *held = 1;
  }
  if (C->k8s && (rc = sf__k8s_ctl_stages(C, &nd, p, err)) < 0) return rc; /* stage Deployments */
  for (int i = nd.n - 1; i >= 0;
       i--) /* last first: each stage's next hop is ready before it sends */
    if ((rc = put_stage(C, &nd, i, shipped, err)) < 0) return rc;
  char *cfg = gw_config(C, &nd, v, NULL);
  rc = gw_send(C, cfg, err);
  free(cfg);
  if (rc < 0 && (C->gw_up || rc == SF_EINVAL)) return rc;
  if (rc < 0) sf__logf(WHO, "gateway down: it gets pipeline %u when it returns", nd.id);
  nd.active = 1;
  C->dep = nd;
  snprintf(C->status, sizeof C->status, "serving");
  C->reason[0] = 0;
  C->dirty = 1;
  return 0;
}

static void plan_nodes_text(const ctl *C, const cdeploy *d, char *out, size_t cap) {
  size_t o = 0;
  out[0] = 0;
  for (int i = 0; i < d->n && o < cap; i++)
    o += (size_t)snprintf(out + o, cap - o, "%s%s", i ? "," : "", C->cl.nodes[d->nodes[i]].name);
}

static void set_unavailable(ctl *C, const char *reason) {
  int was = !strcmp(C->status, "unavailable") && !strcmp(C->reason, reason);
  C->dep.active = 0;
  snprintf(C->status, sizeof C->status, "unavailable");
  snprintf(C->reason, sizeof C->reason, "%s", reason);
  if (!was) {
    event(C, "model unavailable: %s", reason);
    record(C, "unavailable", reason, sf__wall());
  }
  gw_sync(C);
}

static int count_up(const ctl *C) {
  int k = 0;
  for (int i = 0; i < C->cl.n; i++) k += C->nodes[i].up;
  return k;
}

/* ---- compute probes -----------------------------------------------------------------------------
 * A node's speed is measured on a stage of the model it serves: the worker times the largest of
 * the plan's stages that fits its memory and the node's flops/s becomes (stage cost under the plan's cost model) / (measured seconds), so
 * the plan predicts exactly what was measured for that stage and scales it for the others. */
#define SPEED_PROBE_ITERS 1000
#define SPEED_PROBE_SECONDS 0.5

/* The stage of d to time on node idx: the costliest that fits its memory (-1 none). The largest
 * stage measures the node best: a small stage's time is dominated by what the operator costs do
 * not count (converting the activations at its two cuts between layouts). */
static int speed_stage_pick(const ctl *C, const cversion *v, const cdeploy *d, int idx) {
  int best = -1;
  double best_s = -1;
  for (int k = 0; k < d->n; k++) {
    if (sf__pcosts_mem(&v->dm.pa.costs, d->cuts[k], d->cuts[k + 1]) > C->cl.nodes[idx].mem_bytes)
      continue;
    double t = sf__stage_compute_s(&v->dm.pa.costs, &C->cl, d->cuts[k], d->cuts[k + 1], idx);
    if (t > best_s) best_s = t, best = k;
  }
  return best;
}

/* Ship stage k of d (files in d->dir) to node idx, time it there, set the node's speed. */
static int speed_probe_node(ctl *C, const cversion *v, const cdeploy *d, int k, int idx,
                            sf_err *err) {
  cnode *n = &C->nodes[idx];
  const char *name = C->cl.nodes[idx].name;
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/stage-%d.onnx", d->dir, k + 1);
  double t0 = sf__now();
  int rc = sf__deploy_ship(n->c, path, 120000, NULL, err);
  sf_compute_probe r;
  if (rc == 0) {
    snprintf(n->st.digest, sizeof n->st.digest, "%s", d->digest[k]);
    rc = sf__ctl_compute_probe(n->c, SPEED_PROBE_ITERS, SPEED_PROBE_SECONDS, 60000, &r, err);
  }
  links_quiet(C);
  if (rc < 0) {
    sf__errctx(err, rc, "timing a stage on %s", name);
    if (rc != SF_EINVAL && rc != SF_EFORMAT) node_down(C, idx, err->msg);
    return rc;
  }
  int ci = d->cuts[k], cj = d->cuts[k + 1];
  double before = C->cl.nodes[idx].flops_per_s;
  double pred = sf__stage_compute_s(&v->dm.pa.costs, &C->cl, ci, cj, idx);
  double speed = before * pred / r.mean_s;
  if (!(speed > 0) || !isfinite(speed))
    return sf__errf(err, SF_EFORMAT, "timing a stage on %s: %g s per run gives no speed", name,
                    r.mean_s);
  C->cl.nodes[idx].flops_per_s = speed;
  C->speed_t[idx] = sf__wall();
  C->speed_stage_s[idx] = r.mean_s;
  C->speed_pred_s[idx] = pred;
  snprintf(C->speed_stage[idx], sizeof C->speed_stage[idx], "v%s ops %d-%d", v->version,
           v->dm.pa.costs.pos[ci], v->dm.pa.costs.pos[cj] - 1);
  C->speed_queued[idx] = 0;
  C->dirty = 1;
  event(C,
        "node %s: %.3f GFLOP/s measured (stage %s: %.3f ms per run over %d runs, the plan "
        "predicted %.3f ms; cluster file %.3f GFLOP/s) in %.2f s",
        name, speed / 1e9, C->speed_stage[idx], r.mean_s * 1e3, r.runs, pred * 1e3,
        C->file_speed[idx] / 1e9, sf__now() - t0);
  return 0;
}

static void speed_table(const ctl *C) {
  sf__logf(WHO, "compute (GFLOP/s):  %-12s %10s %10s  %-8s %s", "node", "plan", "file", "source",
           "stage timed");
  for (int i = 0; i < C->cl.n; i++)
    sf__logf(WHO, "compute (GFLOP/s):  %-12s %10.3f %10.3f  %-8s %s", C->cl.nodes[i].name,
             C->cl.nodes[i].flops_per_s / 1e9, C->file_speed[i] / 1e9,
             C->speed_t[i] > 0 ? "measured" : "file", C->speed_t[i] > 0 ? C->speed_stage[i] : "-");
}

/* Node i is up, serves no pipeline, and its speed was never measured or it returned. */
static int speed_wanted(const ctl *C, int i) {
  return C->nodes[i].up && !in_pipeline(C, i) && (C->speed_t[i] == 0 || C->speed_queued[i]);
}

/* Before version v is planned: time a stage on every node that is up, serves no pipeline and was
 * never measured (or is queued: it returned). The stages are those of v's plan on the speeds
 * known so far; the plan made afterwards uses the measured speeds. */
static void speed_probe_version(ctl *C, const cversion *v) {
  if (!C->cprobe) return;
  int wanted = 0;
  for (int i = 0; i < C->cl.n; i++) wanted += speed_wanted(C, i);
  if (!wanted) return;
  unsigned char usable[CTL_MAX_NODES];
  usable_nodes(C, usable);
  sf_plan p = {0};
  sf_err err = {0};
  cdeploy d;
  memset(&d, 0, sizeof d);
  double t0 = sf__now();
  if (plan_best(C, v, usable, 10.0, &p, &err) < 0 || p.n_stages == 0) {
    event(C, "compute probes: no plan of version %s fits%s%.300s: speeds stay the cluster file's",
          v->version, err.code ? ": " : "", err.code ? err.msg : "");
    goto out;
  }
  plan_to_deploy(&p, &v->dm.pa.costs, &d);
  if (stage_files(C, v, &d, &p, &err) < 0) {
    event(C, "compute probes: %s", err.msg);
    goto out;
  }
  int got = 0;
  for (int i = 0; i < C->cl.n && !*C->stop; i++) {
    if (!speed_wanted(C, i)) continue;
    int k = speed_stage_pick(C, v, &d, i);
    if (k < 0) {
      event(C, "node %s: no stage of the plan fits its memory; its speed stays the cluster file's",
            C->cl.nodes[i].name);
      C->speed_queued[i] = 0;
      continue;
    }
    if (speed_probe_node(C, v, &d, k, i, &err) == 0)
      got++;
    else
      event(C, "compute probe: %s", err.msg);
  }
  event(C, "compute probed: %d of %d nodes measured in %.1f s", got, wanted, sf__now() - t0);
  speed_table(C);
out:
  sf__plan_deinit(&p);
}

static int speed_pending(const ctl *C) {
  for (int i = 0; C->cprobe && i < C->cl.n; i++)
    if (C->speed_queued[i]) return 1;
  return 0;
}

/* One returning node: time the costliest stage of the serving plan that fits it. */
static void speed_step(ctl *C) {
  int idx = 0;
  while (idx < C->cl.n && !C->speed_queued[idx]) idx++;
  if (idx == C->cl.n) return;
  C->speed_queued[idx] = 0;
  const cdeploy *d = &C->dep;
  if (!C->nodes[idx].up || in_pipeline(C, idx) || !C->cur.open || d->n < 1 ||
      strcmp(d->version, C->cur.version))
    return; /* serving already (its stage's time shows in its status), or nothing to time */
  int k = speed_stage_pick(C, &C->cur, d, idx);
  sf_err err = {0};
  if (k < 0)
    event(C, "node %s: no stage of the plan fits its memory; its speed is not measured again",
          C->cl.nodes[idx].name);
  else if (speed_probe_node(C, &C->cur, d, k, idx, &err) < 0)
    event(C, "compute probe: %s", err.msg);
  if (!speed_pending(C)) speed_table(C);
}

/* ---- failover and re-planning ------------------------------------------------------------------
 */
static int stage_node_down(const ctl *C) {
  for (int i = 0; C->dep.active && i < C->dep.n; i++)
    if (!C->nodes[C->dep.nodes[i]].up) return 1;
  return 0;
}

/* Choose and deploy a plan for the serving version on the healthy nodes; kind names the record. */
static void replan(ctl *C, const char *kind, int allow_patch) {
  unsigned char usable[CTL_MAX_NODES];
  sf_err err = {0};
  sf_plan best = {0}, patch = {0};
  double t0 = C->failover_t0 > 0 ? C->failover_t0 : sf__wall();
  usable_nodes(C, usable);
  if (plan_best(C, &C->cur, usable, 2.0, &best, &err) < 0) {
    event(C, "re-planning: %s", err.msg);
    C->next_try_at = sf__now() + 1;
    return;
  }
  if (allow_patch && C->dep.n > 0 && plan_patch(C, usable, &patch, &err) < 0) patch.n_stages = 0;
  sf_plan *p = &best;
  const char *how = "best plan";
  if (patch.n_stages > 0 && isfinite(patch.bottleneck_s) &&
      (best.n_stages == 0 || patch.bottleneck_s <= best.bottleneck_s * (1 + C->o->replan_gain))) {
    p = &patch;
    how = "lost stages moved";
  }
  if (p->n_stages == 0) {
    char why[600];
    snprintf(why, sizeof why,
             "the model does not fit the %d healthy node%s of %d (down: ", count_up(C),
             count_up(C) == 1 ? "" : "s", C->cl.n);
    int first = 1;
    for (int i = 0; i < C->cl.n; i++)
      if (!C->nodes[i].up && strlen(why) + 80 < sizeof why) {
        snprintf(why + strlen(why), sizeof why - strlen(why), "%s%s", first ? "" : ", ",
                 C->cl.nodes[i].name);
        first = 0;
      }
    snprintf(why + strlen(why), sizeof why - strlen(why), ")");
    set_unavailable(C, why);
    C->failover_t0 = 0;
    goto out;
  }
  int held = 0, shipped = 0;
  double old_tp = C->dep.active ? C->dep.throughput : 0;
  if (deploy(C, &C->cur, p, &held, &shipped, &err) < 0) {
    event(C, "%s: deploying pipeline %u failed: %s; retrying", kind, C->gen, err.msg);
    C->next_try_at = sf__now() + 0.2;
    goto out;
  }
  char nodes[400];
  plan_nodes_text(C, &C->dep, nodes, sizeof nodes);
  crecord *r = record(C, kind, C->failover_t0 > 0 ? C->failover_what : nodes, t0);
  r->pipeline = C->dep.id;
  r->moved = shipped;
  char was[64] = "";
  if (old_tp > 0) snprintf(was, sizeof was, ", was %.2f", old_tp);
  event(C, "%s: pipeline %u on %s (%s, %d stage%s shipped, %.2f req/s predicted%s) in %.3f s", kind,
        C->dep.id, nodes, how, shipped, shipped == 1 ? "" : "s", C->dep.throughput, was,
        r->t_done - t0);
  C->failover_t0 = 0;
out:
  sf__plan_deinit(&best);
  sf__plan_deinit(&patch);
}

/* A node came back: move only when the best plan gains more than the threshold. */
static void maybe_improve(ctl *C) {
  unsigned char usable[CTL_MAX_NODES];
  sf_err err = {0};
  sf_plan best = {0};
  usable_nodes(C, usable);
  sf_plan now = {0}; /* the serving plan under the links as they are now measured */
  if (sf__plan_eval(&C->cur.dm.pa.costs, &C->cl, C->dep.n, C->dep.cuts, C->dep.nodes, &now,
                    &err) == 0) {
    C->dep.throughput = isfinite(now.bottleneck_s) ? now.throughput_per_s : 0;
    C->dep.bottleneck_s = now.bottleneck_s;
  }
  sf__plan_deinit(&now);
  if (plan_best(C, &C->cur, usable, 2.0, &best, &err) == 0 && best.n_stages > 0 &&
      best.throughput_per_s > C->dep.throughput * (1 + C->o->replan_gain)) {
    sf__plan_deinit(&best);
    replan(C, "replan", 0);
    return;
  }
  sf__plan_deinit(&best);
}

/* ---- stalls and broken links -------------------------------------------------------------------
 * A link can break between two stages whose nodes both still reach the controller (heartbeats
 * flow, the pipeline does not). The gateway reports the age of the serving pipeline's oldest
 * unanswered request; past a limit the controller asks each hop's sending worker to probe the
 * next one (gateway node -> stage 1 -> ... -> gateway node). A hop that fails is marked broken
 * (planned as a 1 byte/s link, so plans route around it) and the pipeline is re-planned; the
 * gateway replays what it held. If every hop answers, requests were lost inside a stage: the
 * pipeline is deployed again under a new id, which makes the gateway replay them. A broken link
 * is probed again after 5 s (doubling to 2 min); when it answers it gets its measured (or the
 * cluster file's) rate back and the plan may move back above --replan-gain. */
#define LINK_BROKEN_BPS 1.0

/* The stall limit is never below one heartbeat past the failure detection. */
static double stall_floor(const ctl *C) { return (C->o->misses + 1) * C->hb_ms / 1000.0; }

/* How old the oldest request of a healthy pipeline can get: three times its latency with a full
 * window ahead of it, and at least one heartbeat past the failure detection. */
static double stall_limit(const ctl *C) {
  double lat = 0, b = C->dep.bottleneck_s;
  sf_plan p = {0};
  sf_err err = {0};
  if (sf__plan_eval(&C->cur.dm.pa.costs, &C->cl, C->dep.n, C->dep.cuts, C->dep.nodes, &p, &err) ==
      0) {
    lat = p.gateway_in_s;
    for (int i = 0; i < p.n_stages; i++) lat += p.stages[i].compute_s + p.stages[i].link_s;
  }
  sf__plan_deinit(&p);
  if (!isfinite(lat) || !isfinite(b)) return 3600;
  double limit = 3 * (lat + (2 * C->dep.n + 4) * b), floor_s = stall_floor(C);
  return limit > floor_s ? limit : floor_s;
}

/* Ask node a's worker to reach node b's (a short probe). */
static int link_check(ctl *C, int a, int b, sf_probe_result *r, sf_err *err) {
  sf_probe_opts po = sf__probe_opts_default();
  po.seconds = SF_PROBE_MIN_SECONDS;
  po.bytes = 64 << 10;
  po.pings = 2;
  po.timeout_ms = 1000;
  int rc = sf__probe_link(C->nodes[a].c, C->nodes[b].proc.addr, &po, r, err);
  links_quiet(C);
  return rc;
}

static void link_broken(ctl *C, int a, int b, const char *why) {
  size_t k = (size_t)a * (size_t)C->cl.n + (size_t)b;
  if (C->link_fail_t[k] == 0) {
    C->link_fail_t[k] = sf__wall();
    C->link_backoff_s[k] = 5;
  }
  C->link_retry_at[k] = sf__now() + C->link_backoff_s[k];
  C->cl.bw[k] = LINK_BROKEN_BPS;
  event(C, "link %s -> %s broken: %.300s", C->cl.nodes[a].name, C->cl.nodes[b].name, why);
}

static void check_stall(ctl *C) {
  if (!C->dep.active || !C->gw_up || C->gw_oldest_s < stall_floor(C) ||
      sf__now() < C->stall_next_check || stage_node_down(C))
    return;
  double limit = stall_limit(C);
  if (C->gw_oldest_s < limit) return;
  double t0 = sf__wall(), stalled = C->gw_oldest_s;
  C->stall_next_check = sf__now() + limit;
  int hop[CTL_MAX_STAGES + 2], n = 0, gw = C->cl.gateway, broken = 0;
  if (gw >= 0) hop[n++] = gw;
  for (int i = 0; i < C->dep.n; i++) hop[n++] = C->dep.nodes[i];
  if (gw >= 0) hop[n++] = gw;
  char what[96] = "";
  for (int h = 0; h + 1 < n; h++) {
    int a = hop[h], b = hop[h + 1];
    if (a == b || !C->nodes[a].up || !C->nodes[b].up) continue;
    sf_probe_result r;
    sf_err err = {0};
    if (link_check(C, a, b, &r, &err) == 0) continue;
    if (!C->nodes[a].up) continue; /* a's own link failed: node_down handles it */
    link_broken(C, a, b, err.msg);
    if (!broken++)
      snprintf(what, sizeof what, "link %s -> %s", C->cl.nodes[a].name, C->cl.nodes[b].name);
  }
  if (stage_node_down(C)) return; /* found while probing: the failover path takes it */
  C->failover_t0 = t0;
  if (broken) {
    event(C, "pipeline %u stalled (oldest request %.1f s, limit %.1f s): %d broken link%s", C->dep.id,
          stalled, limit, broken, broken == 1 ? "" : "s");
    snprintf(C->failover_what, sizeof C->failover_what, "%s", what);
    replan(C, "failover", 0);
  } else {
    event(C, "pipeline %u stalled (oldest request %.1f s, limit %.1f s) but every link answers: "
          "deploying it again so that the gateway replays what was lost", C->dep.id, stalled, limit);
    snprintf(C->failover_what, sizeof C->failover_what, "stall of pipeline %u", C->dep.id);
    replan(C, "stall", 0);
  }
}

/* One broken link due for a check: back at its rate when it answers. */
static void link_retry_step(ctl *C) {
  size_t nn = (size_t)C->cl.n * (size_t)C->cl.n;
  double now = sf__now();
  for (size_t k = 0; k < nn; k++) {
    int a = (int)(k / (size_t)C->cl.n), b = (int)(k % (size_t)C->cl.n);
    if (C->link_fail_t[k] == 0 || now < C->link_retry_at[k] || !C->nodes[a].up || !C->nodes[b].up)
      continue;
    sf_probe_result r;
    sf_err err = {0};
    if (link_check(C, a, b, &r, &err) < 0) {
      C->link_backoff_s[k] = fmin(C->link_backoff_s[k] * 2, 120);
      C->link_retry_at[k] = sf__now() + C->link_backoff_s[k];
      return;
    }
    C->link_fail_t[k] = 0;
    C->cl.bw[k] = C->meas_t[k] > 0 ? C->meas_mbps[k] * 1e6 / 8 : C->file_bw[k];
    event(C, "link %s -> %s answers again: planned at %.3f Mbit/s again", C->cl.nodes[a].name,
          C->cl.nodes[b].name, C->cl.bw[k] * 8 / 1e6);
    C->health_changed = 1;
    return;
  }
}

/* ---- model versions ----------------------------------------------------------------------------
 */
static void version_close(cversion *v) {
  if (v->open) sf__dmodel_deinit(&v->dm);
  cJSON_Delete(v->in);
  cJSON_Delete(v->out);
  memset(v, 0, sizeof *v);
}

/* When compute is measured: the relative cost of every operator, from profiled runs of the whole
 * version on this machine (src/probe/compute.c), so that one stage timed on a node prices every
 * other stage on it (a FLOP of a depthwise convolution costs more than one of a dense one). */
static int version_op_costs(ctl *C, cversion *v, sf_err *err) {
  sf_probe_compute_opts po = sf_probe_compute_opts_default();
  po.threads = C->o->threads;
  po.iters = 5;
  po.warmup = 1;
  sf_op_times t;
  memset(&t, 0, sizeof t);
  double t0 = sf__now();
  int rc = sf__probe_compute(v->dm.m, &v->dm.pa, &po, &t, err);
  if (rc == 0) rc = sf__op_times_apply(&t, &v->dm.pa, &v->dm.pa.costs, err);
  if (rc < 0) {
    sf__op_times_deinit(&t);
    return sf__errctx(err, rc, "measuring operator costs");
  }
  sf__logf(WHO,
           "version %s: operator costs measured here (%.3f ms per inference, %.2f GFLOP/s, %.1f s); "
           "stage times follow them",
           v->version, t.total_s * 1e3, t.ref_flops_per_s / 1e9, sf__now() - t0);
  sf__op_times_deinit(&t);
  return 0;
}

static int version_open(ctl *C, const sf_repo_version *rv, cversion *v, sf_err *err) {
  memset(v, 0, sizeof *v);
  snprintf(v->version, sizeof v->version, "%ld", rv->version);
  v->size = rv->size;
  v->mtime_ns = rv->mtime_ns;
  int rc = sf__dmodel_open(&v->dm, rv->path, C->o->codec, NULL, err);
  if (rc < 0) return rc;
  v->open = 1;
  v->in = sf__dmodel_io(&v->dm, 0);
  v->out = sf__dmodel_io(&v->dm, 1);
  if (!v->in || !v->out) {
    version_close(v);
    return sf__errf(err, SF_ENOMEM, "out of memory");
  }
  const sf_graph *g = v->dm.pa.g;
  for (int i = 0; i < g->n_inputs + g->n_outputs; i++) {
    const sf_gtensor *t = &g->tensors[i < g->n_inputs ? g->inputs[i] : g->outputs[i - g->n_inputs]];
    if (!t->shape_known || !sf_dtype_size(t->t.dtype)) {
      version_close(v);
      return sf__errf(err, SF_ESHAPE, "%s '%s': shape or type not known",
                      i < g->n_inputs ? "input" : "output", t->t.name);
    }
  }
  sf_err e2 = {0};
  if (C->cprobe && version_op_costs(C, v, &e2) < 0) /* it loaded and fits: plan on FLOPs then */
    event(C, "version %s: %.400s; stage costs follow FLOPs", v->version, e2.msg);
  return 0;
}

static const crejected *find_rejected(const ctl *C, const sf_repo_version *rv) {
  char ver[32];
  snprintf(ver, sizeof ver, "%ld", rv->version);
  for (int i = 0; i < C->n_rej && i < CTL_MAX_REJECTED; i++)
    if (!strcmp(C->rej[i].version, ver) && C->rej[i].size == rv->size &&
        C->rej[i].mtime_ns == rv->mtime_ns)
      return &C->rej[i];
  return NULL;
}

static void reject(ctl *C, const sf_repo_version *rv, const char *reason) {
  crejected *r = &C->rej[C->n_rej++ % CTL_MAX_REJECTED];
  memset(r, 0, sizeof *r);
  snprintf(r->version, sizeof r->version, "%ld", rv->version);
  r->size = rv->size;
  r->mtime_ns = rv->mtime_ns;
  snprintf(r->reason, sizeof r->reason, "%s", reason);
  r->t = sf__wall();
  event(C, "version %ld rejected: %s%s", rv->version, reason,
        C->cur.open ? " (the serving version stays)" : "");
  save(C);
}

/* Describe how two io lists differ ("" when equal). */
static void io_diff(const cJSON *a, const cJSON *b, const char *what, char *out, size_t cap) {
  out[0] = 0;
  if (cJSON_Compare(a, b, 1)) return;
  char *sa = cJSON_PrintUnformatted(a), *sb = cJSON_PrintUnformatted(b);
  snprintf(out, cap, "%s differ from the serving version: %.200s instead of %.200s", what,
           sb ? sb : "?", sa ? sa : "?");
  free(sa);
  free(sb);
}

/* Roll out version rv: validate, plan, deploy beside or switch; reject it on a fault of its own. */
static void rollout(ctl *C, const sf_repo_version *rv) {
  double t0 = sf__wall();
  sf_err err = {0};
  cversion nv;
  sf_plan best = {0}, side = {0};
  char why[700];
  event(C, "version %ld found: validating %s", rv->version, rv->path);
  if (version_open(C, rv, &nv, &err) < 0) {
    snprintf(why, sizeof why, "does not load: %.600s", err.msg);
    reject(C, rv, why);
    return;
  }
  if (C->cur.open) {
    io_diff(C->cur.in, nv.in, "inputs", why, sizeof why);
    if (!why[0]) io_diff(C->cur.out, nv.out, "outputs", why, sizeof why);
    if (why[0]) {
      reject(C, rv, why);
      version_close(&nv);
      return;
    }
  }
  speed_probe_version(C, &nv); /* nodes never measured (at the start: all) */
  unsigned char usable[CTL_MAX_NODES];
  usable_nodes(C, usable);
  if (plan_best(C, &nv, usable, 10.0, &best, &err) < 0 || best.n_stages == 0) {
    snprintf(why, sizeof why, "%s%.600s",
             err.code ? "planning: " : "does not fit the healthy nodes' memory",
             err.code ? err.msg : "");
    if (err.code == 0 &&
        count_up(C) < C->cl.n) { /* may fit when the nodes return: try again later */
      event(C, "version %ld waits: %s (%d of %d nodes up)", rv->version, why, count_up(C), C->cl.n);
      version_close(&nv);
      sf__plan_deinit(&best);
      return;
    }
    reject(C, rv, why);
    version_close(&nv);
    sf__plan_deinit(&best);
    return;
  }
  sf_plan *p = &best;
  const char *mode = C->dep.active ? "switch" : "initial";
  if (C->dep.active) {
    unsigned char free_nodes[CTL_MAX_NODES];
    memcpy(free_nodes, usable, sizeof free_nodes);
    for (int i = 0; i < C->dep.n; i++) free_nodes[C->dep.nodes[i]] = 0;
    sf_err e2 = {0};
    if (plan_best(C, &nv, free_nodes, 10.0, &side, &e2) == 0 && side.n_stages > 0 &&
        side.throughput_per_s * (1 + C->o->replan_gain) >= best.throughput_per_s) {
      p = &side;
      mode = "beside";
    }
  }
  cdeploy old = C->dep;
  int held = 0, shipped = 0;
  if (deploy(C, &nv, p, &held, &shipped, &err) < 0) {
    if (err.code == SF_EINVAL || err.code == SF_EFORMAT || err.code == SF_ESHAPE ||
        err.code == SF_EUNSUPPORTED) {
      snprintf(why, sizeof why, "a worker refused it: %.600s", err.msg);
      reject(C, rv, why);
    } else {
      event(C, "version %ld: deploying failed (%s); will try again", rv->version, err.msg);
    }
    if (held && old.active) { /* the gateway holds: bring the serving pipeline back */
      sf_plan op = {0};
      sf_err e3 = {0};
      int h2, s2;
      C->dep = old;
      if (sf__plan_eval(&C->cur.dm.pa.costs, &C->cl, old.n, old.cuts, old.nodes, &op, &e3) == 0 &&
          deploy(C, &C->cur, &op, &h2, &s2, &e3) == 0)
        event(C, "version %s serving again (pipeline %u)", C->cur.version, C->dep.id);
      else
        event(C, "restoring version %s: %s", C->cur.version, e3.msg);
      sf__plan_deinit(&op);
    }
    version_close(&nv);
    goto out;
  }
  char prev[32];
  snprintf(prev, sizeof prev, "%s", C->cur.open ? C->cur.version : "none");
  version_close(&C->cur);
  C->cur = nv;
  crecord *r = record(C, "rollout", C->cur.version, t0);
  r->pipeline = C->dep.id;
  r->moved = shipped;
  snprintf(r->mode, sizeof r->mode, "%s", mode);
  char nodes[400];
  plan_nodes_text(C, &C->dep, nodes, sizeof nodes);
  event(C, "version %s serving (was %s): pipeline %u on %s, %s, %.2f req/s predicted, %.3f s",
        C->cur.version, prev, C->dep.id, nodes, mode, C->dep.throughput, r->t_done - t0);
  save(C);
out:
  sf__plan_deinit(&best);
  sf__plan_deinit(&side);
}

/* Poll the repository; returns the number of versions above the serving one not rejected.
 * trusted: files are complete (a `seifer deploy` said so), no need to watch them settle. */
static int check_repo(ctl *C, int trusted) {
  sf_repo_version *vs = sf__calloc(SF_REPO_MAX_VERSIONS, sizeof *vs);
  sf_err err = {0};
  int pending = 0;
  if (!vs) return 0;
  int n = sf__repo_scan(C->repo, C->name, vs, SF_REPO_MAX_VERSIONS, &err);
  if (n < 0) {
    sf__logf(WHO, "repository: %s", err.msg);
    free(vs);
    return 0;
  }
  long serving = C->cur.open ? atol(C->cur.version) : 0;
  for (int i = 0; i < n; i++) {
    const sf_repo_version *rv = &vs[i];
    if (rv->version <= serving) break;
    if (find_rejected(C, rv)) continue;
    pending++;
    /* wait until the file stops changing: seen the same in two scans, or untouched for 1 s */
    int stable = trusted || sf__wall() - rv->mtime_ns / 1e9 > 1.0;
    for (int k = 0; k < C->n_seen; k++)
      if (C->seen[k].version == rv->version && C->seen[k].size == rv->size &&
          C->seen[k].mtime_ns == rv->mtime_ns)
        stable = 1;
    if (!stable) break;
    rollout(C, rv);
    if (C->cur.open && atol(C->cur.version) == rv->version) break;
    if (!find_rejected(C, rv)) break; /* not rejected, not serving: waits for capacity */
  }
  memcpy(C->seen, vs, sizeof *vs * (size_t)n);
  C->n_seen = n;
  free(vs);
  return pending;
}

/* ---- adoption
 * ------------------------------------------------------------------------------------ */
/* After a restart: the saved pipeline's version is opened and every stage's worker is checked
 * against it (digest and configuration); only what differs is sent again. */
static void adopt_pipeline(ctl *C) {
  sf_repo_version *vs = sf__calloc(SF_REPO_MAX_VERSIONS, sizeof *vs);
  sf_err err = {0};
  int n = vs ? sf__repo_scan(C->repo, C->name, vs, SF_REPO_MAX_VERSIONS, &err) : 0;
  const sf_repo_version *rv = NULL;
  for (int i = 0; i < n; i++)
    if (vs[i].version == atol(C->dep.version)) rv = &vs[i];
  int rc = rv ? version_open(C, rv, &C->cur, &err) : -1;
  free(vs);
  if (rc < 0) {
    event(C, "saved pipeline of version %s cannot be adopted: %s", C->dep.version,
          rv ? err.msg : "the version is not in the repository");
    C->dep.active = 0;
    return;
  }
  sf_plan p = {0};
  if (sf__plan_eval(&C->cur.dm.pa.costs, &C->cl, C->dep.n, C->dep.cuts, C->dep.nodes, &p, &err) <
          0 ||
      !isfinite(p.bottleneck_s)) {
    event(C, "saved pipeline %u does not fit any more: re-planning", C->dep.id);
    sf__plan_deinit(&p);
    C->dep.active = 0;
    return;
  }
  cdeploy *d = &C->dep;
  for (int i = 0; i < d->n; i++) d->compute_s[i] = p.stages[i].compute_s;
  d->bottleneck_s = p.bottleneck_s;
  d->throughput = p.throughput_per_s;
  sf__plan_deinit(&p);
  int fixed = 0, shipped = 0;
  for (int i = 0; i < d->n; i++) {
    cnode *nd = &C->nodes[d->nodes[i]];
    if (!nd->up) continue; /* the loop fails it over */
    sf_wcfg wc;
    stage_cfg(C, d, i, &wc);
    int same = nd->have_st && !strcmp(nd->st.digest, d->digest[i]) && sf__wcfg_same(&wc, &nd->st);
    if (same) continue;
    if (put_stage(C, d, i, &shipped, &err) < 0)
      event(C, "adopting stage %d: %s", i + 1, err.msg);
    else
      fixed++;
  }
  snprintf(C->status, sizeof C->status, "serving");
  event(C, "adopted pipeline %u (version %s): %d of %d stage%s reconfigured, %d shipped", d->id,
        d->version, fixed, d->n, d->n == 1 ? "" : "s", shipped);
}

/* Workers of the serving pipeline whose configuration drifted (e.g. the gateway moved). */
static void sync_workers(ctl *C) {
  int shipped = 0;
  for (int i = 0; C->dep.active && i < C->dep.n; i++) {
    cnode *nd = &C->nodes[C->dep.nodes[i]];
    if (!nd->up || !nd->have_st) continue;
    sf_wcfg wc;
    stage_cfg(C, &C->dep, i, &wc);
    if (!strcmp(nd->st.digest, C->dep.digest[i]) && sf__wcfg_same(&wc, &nd->st)) continue;
    sf_err err = {0};
    if (put_stage(C, &C->dep, i, &shipped, &err) < 0)
      sf__logf(WHO, "%s", err.msg);
    else
      event(C, "stage %d on %s reconfigured", i + 1, C->cl.nodes[C->dep.nodes[i]].name);
  }
}

/* ---- Kubernetes mode hooks (k8s_ctl.c) ---------------------------------------------------------
 */
void sf__ctl_node_down(ctl *C, int idx, const char *why) {
  node_down(C, idx, why);
}

int sf__ctl_node_reconnect(ctl *C, int idx, int timeout_ms, sf_err *err) {
  cnode *n = &C->nodes[idx];
  double end = sf__now() + timeout_ms / 1000.0;
  int rc;
  node_close(n);
  n->up = 0;
  n->have_st = 0;
  while ((rc = node_connect(C, idx, err)) < 0 && sf__now() < end && !*C->stop) usleep(100000);
  return rc;
}

void sf__ctl_event(ctl *C, const char *fmt, ...) {
  char text[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  event(C, "%s", text);
}

/* ---- setup -------------------------------------------------------------------------------------
 */
static int setup(ctl *C, sf_err *err) {
  const sf_controller_opts *o = C->o;
  int rc;
  snprintf(C->dir, sizeof C->dir, "%s", o->dir);
  snprintf(C->state_path, sizeof C->state_path, "%s/controller.json", o->dir);
  const char *subdirs[] = {"", "/stages", "/logs", "/run", "/cache", "/repo"};
  for (size_t i = 0; i < sizeof subdirs / sizeof *subdirs; i++) {
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s%s", o->dir, subdirs[i]);
    if (sf__mkdirs(path) < 0) return sf__errf(err, SF_EIO, "%s: %s", path, strerror(errno));
  }
  if ((rc = sf__self_exe(C->self, sizeof C->self, err)) < 0) return rc;
  char path[PATH_MAX + 16];
  if (o->kubernetes) { /* secret, nodes, model and driver from the API (k8s_ctl.c) */
    if ((rc = sf__k8s_ctl_setup(C, err)) < 0) return rc;
    o = C->o; /* with the SeiferModel's settings */
    goto nodes;
  }
  snprintf(path, sizeof path, "%s/secret", o->dir);
  if (access(path, F_OK) < 0 && (rc = sf__secret_generate(path, err)) < 0) return rc;
  if ((rc = sf__secret_load(&C->sec, path, err)) < 0) return rc;
  void *txt = NULL;
  size_t len = 0;
  if ((rc = sf__read_file(o->cluster, 64 << 20, &txt, &len, err)) < 0) return rc;
  rc = sf__cluster_parse(txt, len, &C->cl, err);
  if (rc < 0) {
    free(txt);
    return sf__errctx(err, rc, "%s", o->cluster);
  }
  C->have_cl = 1;
  if (C->cl.n > CTL_MAX_NODES) {
    free(txt);
    return sf__errf(err, SF_ELIMIT, "%s: %d nodes, the controller handles at most %d", o->cluster,
                    C->cl.n, CTL_MAX_NODES);
  }
  C->addr = sf__calloc((size_t)C->cl.n, sizeof *C->addr);
  rc = C->addr ? sf__cluster_addresses(txt, len, &C->cl, C->addr, err)
               : sf__errf(err, SF_ENOMEM, "out of memory");
  free(txt);
  if (rc < 0) return rc;
nodes:;
  int any_addr = 0;
  for (int i = 0; i < C->cl.n; i++) {
    any_addr |= C->addr[i][0] != 0;
    snprintf(C->nodes[i].listen, sizeof C->nodes[i].listen, "%s", C->addr[i]);
    C->nodes[i].backoff_s = o->restart_ms / 1000.0;
  }
  C->gw_backoff_s = o->restart_ms / 1000.0;
  C->emulate = o->emulate >= 0 ? o->emulate : !any_addr;
  C->emulate_compute = o->emulate_compute >= 0 ? o->emulate_compute : C->emulate;
  C->hb_ms = o->heartbeat_ms > 0 ? o->heartbeat_ms : 500;
  if ((rc = probe_setup(C, err)) < 0) return rc;
  if (!(C->solver = sf__solver_find(o->algorithm ? o->algorithm : "optimal")))
    return sf__errf(err, SF_EINVAL, "unknown planner '%s'", o->algorithm);
  snprintf(C->status, sizeof C->status, "starting");
  if (o->kubernetes) return 0;
  /* the repository and the model name */
  if (o->repo) {
    snprintf(C->repo, sizeof C->repo, "%s", o->repo);
    if (o->name)
      snprintf(C->name, sizeof C->name, "%s", o->name);
    else if ((rc = sf__repo_only_model(C->repo, C->name, sizeof C->name, err)) < 0)
      return rc;
  } else {
    snprintf(C->repo, sizeof C->repo, "%s/repo", o->dir);
    if (o->name)
      snprintf(C->name, sizeof C->name, "%s", o->name);
    else
      sf__model_name_from_path(o->model, C->name, sizeof C->name);
    sf_repo_version v1;
    if ((rc = sf__repo_scan(C->repo, C->name, &v1, 1, err)) < 0) return rc;
    if (rc == 0 && (rc = sf__repo_add(C->repo, C->name, 1, o->model, err)) < 0) return rc;
  }
  sf_local_opts lo = {.self = C->self,
                      .dir = o->dir,
                      .wrap = o->wrap,
                      .threads = o->threads,
                      .heartbeat_ms = C->hb_ms,
                      .gateway_timeout = o->gateway_timeout};
  snprintf(C->status, sizeof C->status, "starting");
  return sf__driver_local(&C->drv, &lo, err);
}

static void teardown(ctl *C) {
  for (int i = 0; C->have_cl && i < C->cl.n; i++) node_close(&C->nodes[i]);
  if (C->gwc) sf__frame_send(C->gwc, &(sf_frame_hdr){.type = SF_FR_BYE}, NULL, 0, NULL);
  sf__conn_free(C->gwc);
  C->gwc = NULL;
  version_close(&C->cur);
  sf__driver_free(&C->drv);
  if (C->k8s) sf__k8s_ctl_free(C);
  free(C->addr);
  probe_free(C);
  if (C->have_cl) sf__cluster_deinit(&C->cl);
}

int sf__controller_run(const sf_controller_opts *o, volatile sig_atomic_t *stop, sf_err *err) {
  ctl *C = sf__calloc(1, sizeof *C);
  if (!C) return sf__errf(err, SF_ENOMEM, "out of memory");
  C->o = o;
  C->stop = stop;
  int rc = setup(C, err);
  if (rc < 0) goto done;
  if (C->k8s && sf__k8s_ctl_wait_leader(C) < 0) goto done; /* a standby replica waits here */
  long other = 0;
  int restored = sf__ctl_state_load(C, &other, err);
  if (restored < 0) {
    rc = restored;
    goto done;
  }
  if (other > 0 && other != (long)getpid() && sf__process_is((pid_t)other, "controller")) {
    rc = sf__errf(err, SF_EINVAL, "%s: controller %ld is running on this directory", C->state_path,
                  other);
    goto done;
  }
  save(C); /* claims the directory */
  /* adopt what the driver still runs */
  sf_proc procs[CTL_MAX_NODES + 1];
  int np = C->drv.ops->list(C->drv.ctx, procs, CTL_MAX_NODES + 1);
  for (int k = 0; k < np; k++) {
    if (procs[k].role == SF_PROC_GATEWAY) {
      C->gw = procs[k];
      C->gw_have = 1;
      continue;
    }
    for (int i = 0; i < C->cl.n; i++)
      if (!strcmp(procs[k].node, C->cl.nodes[i].name)) {
        C->nodes[i].proc = procs[k];
        C->nodes[i].have_proc = 1;
      }
  }
  sf__logf(WHO, "model %s from %s; %d nodes; heartbeat %d ms, failure after %d misses; %s", C->name,
           C->repo, C->cl.n, C->hb_ms, o->misses, restored ? "state restored" : "fresh start");
  for (int i = 0; i < C->cl.n && !*stop; i++) node_try(C, i);
  if (!*stop) probe_start(C);
  gw_try(C);
  C->health_changed = 0;
  if (restored && C->dep.active) adopt_pipeline(C);
  if (C->gw_up) gw_sync(C);
  save(C);
  while (!*stop) {
    read_links(C, 50);
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    check_deadlines(C);
    if (C->k8s && sf__k8s_ctl_tick(C) < 0) { /* leadership lost: another replica acts now */
      rc = sf__errf(err, SF_EIO, "lost the leader lease; stopping");
      break;
    }
    double now = sf__now();
    for (int i = 0; i < C->cl.n; i++)
      if (!C->nodes[i].up && now >= C->nodes[i].retry_at) node_try(C, i);
    if (!C->gw_up && now >= C->gw_retry_at) {
      gw_try(C);
      if (C->gw_up) {
        sync_workers(C); /* a new gateway may have a new data port */
        gw_sync(C);
      }
    }
    if (C->cur.open && now >= C->next_try_at) {
      if (C->dep.active && stage_node_down(C)) {
        replan(C, "failover", 1);
        C->health_changed = 0;
      } else if (!C->dep.active && C->health_changed) {
        C->health_changed = 0;
        replan(C, "recovered", 0);
      } else if (C->dep.active && C->health_changed && !probe_pending(C) && !speed_pending(C)) {
        C->health_changed = 0; /* a returning node's links and speed are measured first */
        maybe_improve(C);
      }
    }
    if (C->cur.open && !*stop) check_stall(C);
    if (C->probe && !*stop && probe_pending(C))
      probe_step(C);
    else if (!*stop && speed_pending(C))
      speed_step(C);
    else if (!*stop)
      link_retry_step(C);
    int rescan = o->rescan && *o->rescan;
    if (now >= C->next_scan || rescan) {
      if (rescan) *o->rescan = 0;
      C->next_scan = now + (o->poll_ms > 0 ? o->poll_ms : 500) / 1000.0;
      int pending = check_repo(C, rescan);
      if (!C->cur.open && !pending && strcmp(C->status, "unavailable")) {
        snprintf(C->status, sizeof C->status, "unavailable");
        snprintf(C->reason, sizeof C->reason, "no valid version of model '%.200s' in %.300s",
                 C->name, C->repo);
        event(C, "%s", C->reason);
      }
    }
    if (C->dirty) save(C);
  }
  sf__logf(WHO,
           "stopping; the workers and the gateway keep running (seifer down --dir %s stops them)",
           o->dir);
  save(C);
done:
  teardown(C);
  free(C);
  return rc;
}
