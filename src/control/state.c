/* The controller's state in DIR/controller.json, written atomically (temporary file, fsync,
 * rename) after every change: the serving pipeline (version, id, stages with their node, cuts
 * and digest), the nodes and processes, rejected versions, and the recent events and
 * recoveries. A restarted controller reads it back (sf__ctl_state_load) and adopts the running
 * processes instead of restarting them. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "control/controller.h"

static cJSON *proc_json(const sf_proc *p, int have) {
  cJSON *o = cJSON_CreateObject();
  if (!have) return o;
  cJSON_AddNumberToObject(o, "pid", (double)p->pid);
  cJSON_AddStringToObject(o, "address", p->addr);
  if (p->url[0]) cJSON_AddStringToObject(o, "url", p->url);
  return o;
}

int sf__ctl_state_save(ctl *C, sf_err *err) {
  cJSON *j = cJSON_CreateObject();
  if (!j) return sf__errf(err, SF_ENOMEM, "out of memory");
  cJSON_AddNumberToObject(j, "controller_pid", (double)getpid());
  cJSON_AddNumberToObject(j, "updated", sf__wall());
  cJSON_AddStringToObject(j, "model", C->name);
  cJSON_AddStringToObject(j, "repo", C->repo);
  cJSON_AddStringToObject(j, "cluster", C->o->cluster);
  cJSON_AddStringToObject(j, "codec", sf__codec_name(C->o->codec));
  cJSON_AddStringToObject(j, "status", C->status);
  if (C->reason[0]) cJSON_AddStringToObject(j, "reason", C->reason);
  cJSON_AddStringToObject(j, "version", C->cur.open ? C->cur.version : "");
  cJSON_AddNumberToObject(j, "generation", C->gen);
  if (C->gw_have) cJSON_AddStringToObject(j, "url", C->gw.url);
  cJSON *g = proc_json(&C->gw, C->gw_have);
  cJSON_AddBoolToObject(g, "up", C->gw_up);
  cJSON_AddItemToObject(j, "gateway", g);

  const cdeploy *d = &C->dep;
  if (d->n > 0) {
    cJSON *pj = cJSON_CreateObject();
    cJSON_AddBoolToObject(pj, "active", d->active);
    cJSON_AddNumberToObject(pj, "id", d->id);
    cJSON_AddStringToObject(pj, "version", d->version);
    cJSON_AddStringToObject(pj, "dir", d->dir);
    cJSON_AddNumberToObject(pj, "predicted_throughput_per_s", d->throughput);
    cJSON_AddNumberToObject(pj, "bottleneck_s", d->bottleneck_s);
    cJSON *st = cJSON_AddArrayToObject(pj, "stages");
    for (int i = 0; i < d->n; i++) {
      cJSON *s = cJSON_CreateObject();
      cJSON_AddStringToObject(s, "node", C->cl.nodes[d->nodes[i]].name);
      cJSON_AddNumberToObject(s, "cut_from", d->cuts[i]);
      cJSON_AddNumberToObject(s, "cut_to", d->cuts[i + 1]);
      if (C->cur.open && d->cuts[i + 1] < C->cur.dm.pa.costs.n) {
        cJSON *ops = cJSON_AddArrayToObject(s, "ops");
        cJSON_AddItemToArray(ops, cJSON_CreateNumber(C->cur.dm.pa.costs.pos[d->cuts[i]]));
        cJSON_AddItemToArray(ops, cJSON_CreateNumber(C->cur.dm.pa.costs.pos[d->cuts[i + 1]] - 1));
      }
      cJSON_AddStringToObject(s, "digest", d->digest[i]);
      cJSON_AddStringToObject(s, "address", C->nodes[d->nodes[i]].proc.addr);
      cJSON_AddNumberToObject(s, "compute_s", d->compute_s[i]);
      cJSON_AddItemToArray(st, s);
    }
    cJSON_AddItemToObject(j, "pipeline", pj);
  }

  cJSON *nodes = cJSON_AddArrayToObject(j, "nodes");
  for (int i = 0; i < C->cl.n; i++) {
    const cnode *n = &C->nodes[i];
    cJSON *o = proc_json(&n->proc, n->have_proc);
    cJSON_AddStringToObject(o, "name", C->cl.nodes[i].name);
    cJSON_AddBoolToObject(o, "up", n->up);
    cJSON_AddNumberToObject(o, "restarts", n->restarts);
    if (n->have_st && n->st.digest[0]) cJSON_AddStringToObject(o, "stage_digest", n->st.digest);
    if (!n->up && n->why[0]) cJSON_AddStringToObject(o, "reason", n->why);
    /* the speed plans use: measured on a stage (controller.c, compute probes) or the file's */
    if (C->file_speed) {
      cJSON_AddNumberToObject(o, "gflops", C->cl.nodes[i].flops_per_s / 1e9);
      cJSON_AddStringToObject(o, "speed_source", C->speed_t[i] > 0 ? "measured" : "cluster file");
      cJSON_AddNumberToObject(o, "file_gflops", C->file_speed[i] / 1e9);
      if (C->speed_t[i] > 0) {
        cJSON_AddNumberToObject(o, "speed_measured_at", C->speed_t[i]);
        cJSON_AddStringToObject(o, "speed_stage", C->speed_stage[i]);
        cJSON_AddNumberToObject(o, "speed_stage_ms", C->speed_stage_s[i] * 1e3);
        cJSON_AddNumberToObject(o, "speed_stage_predicted_ms", C->speed_pred_s[i] * 1e3);
      }
    }
    cJSON_AddItemToArray(nodes, o);
  }

  /* the links plans use: measured (docs/operations.md) or the cluster file's */
  if (C->file_bw && C->cl.rtt) {
    cJSON *lk = cJSON_AddObjectToObject(j, "links");
    cJSON_AddStringToObject(lk, "source", C->probe_note);
    if (C->probe)
      cJSON_AddNumberToObject(lk, "probe_seconds",
                              C->o->probe_seconds > 0 ? C->o->probe_seconds : 0.3);
    cJSON *pairs = cJSON_AddArrayToObject(lk, "pairs");
    for (int a = 0; a < C->cl.n; a++)
      for (int b = 0; b < C->cl.n; b++) {
        if (a == b) continue;
        size_t k = (size_t)a * (size_t)C->cl.n + (size_t)b;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "from", C->cl.nodes[a].name);
        cJSON_AddStringToObject(o, "to", C->cl.nodes[b].name);
        cJSON_AddNumberToObject(o, "mbps", round(C->cl.bw[k] * 8 / 1e6 * 1000) / 1000);
        cJSON_AddNumberToObject(o, "rtt_ms", round(C->cl.rtt[k] * 1e6) / 1000);
        cJSON_AddStringToObject(o, "source", C->meas_t[k] > 0 ? "measured" : "cluster file");
        if (C->meas_t[k] > 0) cJSON_AddNumberToObject(o, "measured_at", C->meas_t[k]);
        cJSON_AddNumberToObject(o, "file_mbps", round(C->file_bw[k] * 8 / 1e6 * 1000) / 1000);
        if (C->link_fail_t && C->link_fail_t[k] > 0)
          cJSON_AddNumberToObject(o, "broken_at", C->link_fail_t[k]);
        cJSON_AddItemToArray(pairs, o);
      }
  }

  cJSON *rj = cJSON_AddArrayToObject(j, "rejected");
  int nr = C->n_rej < CTL_MAX_REJECTED ? C->n_rej : CTL_MAX_REJECTED;
  for (int i = 0; i < nr; i++) {
    const crejected *r = &C->rej[(C->n_rej - nr + i) % CTL_MAX_REJECTED];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "version", r->version);
    cJSON_AddStringToObject(o, "reason", r->reason);
    cJSON_AddNumberToObject(o, "size", (double)r->size);
    char mt[32]; /* a string: nanoseconds since 1970 exceed a double's exact integers */
    snprintf(mt, sizeof mt, "%lld", (long long)r->mtime_ns);
    cJSON_AddStringToObject(o, "mtime_ns", mt);
    cJSON_AddNumberToObject(o, "at", r->t);
    cJSON_AddItemToArray(rj, o);
  }

  cJSON *rec = cJSON_AddArrayToObject(j, "records");
  int nk = C->n_rec < CTL_MAX_RECORDS ? C->n_rec : CTL_MAX_RECORDS;
  for (int i = 0; i < nk; i++) {
    const crecord *r = &C->rec[(C->n_rec - nk + i) % CTL_MAX_RECORDS];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", r->kind);
    cJSON_AddStringToObject(o, "what", r->what);
    cJSON_AddNumberToObject(o, "started_at", r->t_start);
    cJSON_AddNumberToObject(o, "done_at", r->t_done);
    cJSON_AddNumberToObject(o, "seconds", r->t_done - r->t_start);
    cJSON_AddNumberToObject(o, "pipeline", r->pipeline);
    cJSON_AddNumberToObject(o, "stages_shipped", r->moved);
    if (r->mode[0]) cJSON_AddStringToObject(o, "mode", r->mode);
    cJSON_AddItemToArray(rec, o);
  }

  cJSON *ev = cJSON_AddArrayToObject(j, "events");
  int ne = C->n_ev < CTL_MAX_EVENTS ? C->n_ev : CTL_MAX_EVENTS;
  for (int i = 0; i < ne; i++) {
    const cevent *e = &C->ev[(C->n_ev - ne + i) % CTL_MAX_EVENTS];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "at", e->t);
    cJSON_AddStringToObject(o, "event", e->text);
    cJSON_AddItemToArray(ev, o);
  }
  char *s = cJSON_Print(j);
  cJSON_Delete(j);
  if (!s) return sf__errf(err, SF_ENOMEM, "out of memory");
  int rc = sf__write_file_atomic(C->state_path, s, strlen(s), err);
  free(s);
  return rc;
}

static int node_index(const ctl *C, const char *name) {
  for (int i = 0; i < C->cl.n; i++)
    if (!strcmp(C->cl.nodes[i].name, name)) return i;
  return -1;
}

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(x) ? x->valuestring : NULL;
}

static int jnum(const cJSON *o, const char *k, double lo, double hi, double *out) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsNumber(x) || !(x->valuedouble >= lo && x->valuedouble <= hi)) return 0;
  *out = x->valuedouble;
  return 1;
}

/* The saved pipeline; a pipeline that does not match this cluster is dropped (re-planned). */
static void load_pipeline(ctl *C, const cJSON *pj) {
  cdeploy *d = &C->dep;
  memset(d, 0, sizeof *d);
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(pj, "stages"), *e;
  const char *ver = jstr(pj, "version"), *dir = jstr(pj, "dir");
  double id = 0;
  if (!ver || strlen(ver) >= sizeof d->version || !dir || strlen(dir) >= sizeof d->dir ||
      !jnum(pj, "id", 0, 4e9, &id) || !cJSON_IsArray(st) || cJSON_GetArraySize(st) < 1 ||
      cJSON_GetArraySize(st) > CTL_MAX_STAGES)
    return;
  int n = 0;
  cJSON_ArrayForEach(e, st) {
    const char *node = jstr(e, "node"), *dg = jstr(e, "digest");
    double a = 0, b = 0;
    int idx = node ? node_index(C, node) : -1;
    if (idx < 0 || !dg || strlen(dg) != 64 || !jnum(e, "cut_from", 0, SF_PLAN_MAX_CUTS, &a) ||
        !jnum(e, "cut_to", 0, SF_PLAN_MAX_CUTS, &b) || b <= a || (n > 0 && (int)a != d->cuts[n]))
      return;
    d->nodes[n] = idx;
    d->cuts[n] = (int)a;
    d->cuts[n + 1] = (int)b;
    snprintf(d->digest[n], sizeof d->digest[n], "%s", dg);
    n++;
  }
  d->n = n;
  d->id = (uint32_t)id;
  snprintf(d->version, sizeof d->version, "%s", ver);
  snprintf(d->dir, sizeof d->dir, "%s", dir);
  d->active = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pj, "active"));
}

/* Links measured by an earlier controller (when this one probes): kept, not probed again. */
static void load_links(ctl *C, const cJSON *lk) {
  const cJSON *e;
  if (!C->probe || !C->meas_t || !C->cl.rtt) return;
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(lk, "pairs")) {
    const char *from = jstr(e, "from"), *to = jstr(e, "to"), *src = jstr(e, "source");
    int a = from ? node_index(C, from) : -1, b = to ? node_index(C, to) : -1;
    double mbps = 0, rtt_ms = 0, at = 0;
    if (a < 0 || b < 0 || a == b || !src || strcmp(src, "measured") ||
        !jnum(e, "mbps", 1e-6, 1e9, &mbps) || !jnum(e, "rtt_ms", 0, 1e6, &rtt_ms) ||
        !jnum(e, "measured_at", 1, 1e12, &at))
      continue;
    size_t k = (size_t)a * (size_t)C->cl.n + (size_t)b;
    C->cl.bw[k] = mbps * 1e6 / 8;
    C->cl.rtt[k] = rtt_ms / 1e3;
    C->meas_mbps[k] = mbps;
    C->meas_rtt[k] = rtt_ms / 1e3;
    C->meas_t[k] = at;
  }
}

/* Speeds measured by an earlier controller (when this one measures): kept, not probed again. */
static void load_speeds(ctl *C, const cJSON *nodes) {
  const cJSON *e;
  if (!C->cprobe || !C->speed_t) return;
  cJSON_ArrayForEach(e, nodes) {
    const char *name = jstr(e, "name"), *src = jstr(e, "speed_source"), *st = jstr(e, "speed_stage");
    int i = name ? node_index(C, name) : -1;
    double g = 0, at = 0, ms = 0, pms = 0;
    if (i < 0 || !src || strcmp(src, "measured") || !jnum(e, "gflops", 1e-9, 1e9, &g) ||
        !jnum(e, "speed_measured_at", 1, 1e12, &at))
      continue;
    C->cl.nodes[i].flops_per_s = g * 1e9;
    C->speed_t[i] = at;
    if (jnum(e, "speed_stage_ms", 0, 1e9, &ms)) C->speed_stage_s[i] = ms / 1e3;
    if (jnum(e, "speed_stage_predicted_ms", 0, 1e9, &pms)) C->speed_pred_s[i] = pms / 1e3;
    snprintf(C->speed_stage[i], sizeof C->speed_stage[i], "%s", st ? st : "?");
  }
}

int sf__ctl_state_load(ctl *C, long *pid, sf_err *err) {
  void *txt = NULL;
  size_t len = 0;
  *pid = 0;
  if (access(C->state_path, F_OK) < 0) return 0;
  int rc = sf__read_file(C->state_path, 16 << 20, &txt, &len, err);
  if (rc < 0) return rc;
  cJSON *j = cJSON_ParseWithLength(txt, len);
  free(txt);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return sf__errf(err, SF_EFORMAT, "%s: not a JSON object (remove it to start afresh)",
                    C->state_path);
  }
  double v = 0;
  if (jnum(j, "controller_pid", 0, 4194304, &v)) *pid = (long)v;
  const char *model = jstr(j, "model");
  if (model && strcmp(model, C->name)) {
    sf__errf(err, SF_EINVAL,
             "%s: the state is for model '%.200s', not '%s' (seifer down --dir, or another --dir)",
             C->state_path, model, C->name);
    cJSON_Delete(j);
    return SF_EINVAL;
  }
  if (jnum(j, "generation", 0, 4e9, &v)) C->gen = (uint32_t)v;
  const cJSON *pj = cJSON_GetObjectItemCaseSensitive(j, "pipeline"), *e;
  if (cJSON_IsObject(pj)) load_pipeline(C, pj);
  const cJSON *lk = cJSON_GetObjectItemCaseSensitive(j, "links");
  if (cJSON_IsObject(lk)) load_links(C, lk);
  load_speeds(C, cJSON_GetObjectItemCaseSensitive(j, "nodes"));
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "rejected")) {
    const char *ver = jstr(e, "version"), *why = jstr(e, "reason"), *mts = jstr(e, "mtime_ns");
    double size = 0, at = 0;
    char *end = NULL;
    long long mt = mts ? strtoll(mts, &end, 10) : -1;
    if (!ver || strlen(ver) >= 32 || !why || !jnum(e, "size", 0, 9e18, &size) || !end || *end ||
        mt < 0)
      continue;
    jnum(e, "at", 0, 1e12, &at);
    crejected *r = &C->rej[C->n_rej++ % CTL_MAX_REJECTED];
    memset(r, 0, sizeof *r);
    snprintf(r->version, sizeof r->version, "%s", ver);
    snprintf(r->reason, sizeof r->reason, "%s", why);
    r->size = (int64_t)size;
    r->mtime_ns = (int64_t)mt;
    r->t = at;
  }
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "records")) {
    const char *kind = jstr(e, "kind"), *what = jstr(e, "what"), *mode = jstr(e, "mode");
    double a = 0, b = 0, p = 0, mv = 0;
    if (!kind || !what || !jnum(e, "started_at", 0, 1e12, &a) || !jnum(e, "done_at", 0, 1e12, &b))
      continue;
    jnum(e, "pipeline", 0, 4e9, &p);
    jnum(e, "stages_shipped", 0, 1e6, &mv);
    crecord *r = &C->rec[C->n_rec++ % CTL_MAX_RECORDS];
    memset(r, 0, sizeof *r);
    snprintf(r->kind, sizeof r->kind, "%s", kind);
    snprintf(r->what, sizeof r->what, "%s", what);
    snprintf(r->mode, sizeof r->mode, "%s", mode ? mode : "");
    r->t_start = a;
    r->t_done = b;
    r->pipeline = (uint32_t)p;
    r->moved = (int)mv;
  }
  cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(j, "events")) {
    const char *text = jstr(e, "event");
    double at = 0;
    if (!text || !jnum(e, "at", 0, 1e12, &at)) continue;
    cevent *ev = &C->ev[C->n_ev++ % CTL_MAX_EVENTS];
    snprintf(ev->text, sizeof ev->text, "%s", text);
    ev->t = at;
  }
  cJSON_Delete(j);
  return 1;
}
