/* Link probes, the controller's side (docs/probe.md): ask worker A on its control link to measure
 * its link to worker B (the measuring itself is the workers' job: src/serve/probe_srv.c), every
 * ordered pair in turn, and write the results into a cluster file. */
#include <math.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "probe/link.h"
#include "util/util.h"

#define MAX_WORKERS 1000

sf_probe_opts sf__probe_opts_default(void) {
  return (sf_probe_opts){.seconds = SF_PROBE_DEFAULT_SECONDS,
                         .bytes = SF_PROBE_DEFAULT_BYTES,
                         .pings = SF_PROBE_DEFAULT_PINGS,
                         .timeout_ms = 5000};
}

static int check_opts(const sf_probe_opts *o, sf_err *err) {
  if (!(o->seconds >= SF_PROBE_MIN_SECONDS && o->seconds <= SF_PROBE_MAX_SECONDS))
    return sf__errf(err, SF_EINVAL, "probe: seconds must be in [%g, %g]", SF_PROBE_MIN_SECONDS,
                    SF_PROBE_MAX_SECONDS);
  if (!(o->bytes >= 16384 && o->bytes <= SF_PROBE_MAX_BYTES))
    return sf__errf(err, SF_EINVAL, "probe: bytes must be in [16384, %.0f]", SF_PROBE_MAX_BYTES);
  if (o->pings < 1 || o->pings > 1000)
    return sf__errf(err, SF_EINVAL, "probe: pings must be in [1, 1000]");
  return 0;
}

/* A finite number >= 0 named key of j. */
static int num_field(const cJSON *j, const char *key, double *v, sf_err *err) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || x->valuedouble < 0)
    return sf__errf(err, SF_EFORMAT, "probe result: \"%s\" must be a number >= 0", key);
  *v = x->valuedouble;
  return 0;
}

int sf__probe_result_parse(const char *json, size_t len, sf_probe_result *r, sf_err *err) {
  memset(r, 0, sizeof *r);
  cJSON *j = cJSON_ParseWithLength(json, len);
  int rc = 0;
  double rtt = 0, rmin = 0;
  if (!j || !cJSON_IsObject(j)) {
    rc = sf__errf(err, SF_EFORMAT, "probe result: not a JSON object");
    goto out;
  }
  const cJSON *peer = cJSON_GetObjectItemCaseSensitive(j, "peer");
  if (!cJSON_IsString(peer) || strlen(peer->valuestring) >= sizeof r->peer) {
    rc = sf__errf(err, SF_EFORMAT, "probe result: \"peer\" must be a \"host:port\" string");
    goto out;
  }
  snprintf(r->peer, sizeof r->peer, "%s", peer->valuestring);
  if ((rc = num_field(j, "mbps", &r->mbps, err)) < 0 ||
      (rc = num_field(j, "rtt_ms", &rtt, err)) < 0 ||
      (rc = num_field(j, "rtt_min_ms", &rmin, err)) < 0 ||
      (rc = num_field(j, "bytes", &r->bytes, err)) < 0 ||
      (rc = num_field(j, "seconds", &r->seconds, err)) < 0 ||
      (rc = num_field(j, "steady_bytes", &r->steady_bytes, err)) < 0 ||
      (rc = num_field(j, "steady_seconds", &r->steady_seconds, err)) < 0)
    goto out;
  r->rtt_s = rtt / 1e3;
  r->rtt_min_s = rmin / 1e3;
out:
  cJSON_Delete(j);
  return rc;
}

/* The answer to request rid: PROBE (parsed into r) or ERROR; heartbeats are skipped. */
/* *reported = 1 when the worker answered (ERROR included): the control link is still in step. */
static int wait_result(sf_conn *c, uint64_t rid, double deadline, sf_probe_result *r, int *reported,
                       sf_err *err) {
  sf_frame f = {0};
  int rc;
  for (;;) {
    int left = (int)((deadline - sf__now()) * 1000);
    if (left <= 0) {
      rc = sf__errf(err, SF_EIO, "%s: no probe result in time", sf__conn_peer(c));
      break;
    }
    if ((rc = sf__frame_recv(c, &f, (uint64_t)1 << 20, left, err)) < 0) break;
    int t = f.hdr.type;
    if (t == SF_FR_HEARTBEAT || ((t == SF_FR_PROBE || t == SF_FR_ERROR) && f.hdr.request_id != rid))
      continue;
    *reported = t == SF_FR_ERROR || t == SF_FR_PROBE;
    if (t == SF_FR_ERROR) {
      size_t n = f.hdr.payload_len < 900 ? (size_t)f.hdr.payload_len : 900;
      rc = sf__errf(err, SF_EIO, "%.*s", (int)n, (const char *)f.payload);
    } else if (t == SF_FR_PROBE) {
      rc = sf__probe_result_parse((const char *)f.payload, (size_t)f.hdr.payload_len, r, err);
    } else {
      rc = sf__errf(err, SF_EFORMAT, "%s: expected the probe result, got %s", sf__conn_peer(c),
                    sf__frame_type_name(t));
    }
    break;
  }
  sf__frame_deinit(&f);
  return rc;
}

static int probe_pair(sf_conn *ctl, const char *peer, const sf_probe_opts *o, sf_probe_result *r,
                      int *reported, sf_err *err) {
  static _Atomic uint64_t next_rid = 1;
  *reported = 0;
  int rc = check_opts(o, err);
  if (rc < 0) return rc;
  if (!peer || !strchr(peer, ':') || strlen(peer) >= sizeof r->peer)
    return sf__errf(err, SF_EINVAL, "probe: peer must be a \"host:port\" string");
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "peer", peer);
  cJSON_AddNumberToObject(j, "seconds", o->seconds);
  cJSON_AddNumberToObject(j, "bytes", o->bytes);
  cJSON_AddNumberToObject(j, "pings", o->pings);
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (!s) return sf__errf(err, SF_ENOMEM, "out of memory");
  uint64_t rid = next_rid++;
  sf_frame_hdr h = {.type = SF_FR_PROBE, .request_id = rid};
  rc = sf__frame_send(ctl, &h, s, strlen(s), err);
  free(s);
  if (rc < 0) return rc;
  /* the worker bounds its own work: connect 3 s + auth 5 s + pings + 3 * seconds + 10 s */
  double deadline = sf__now() + 3 * o->seconds + 30 + o->pings * 5.0;
  return wait_result(ctl, rid, deadline, r, reported, err);
}

int sf__probe_link(sf_conn *ctl, const char *peer, const sf_probe_opts *o, sf_probe_result *r,
                   sf_err *err) {
  int reported;
  return probe_pair(ctl, peer, o, r, &reported, err);
}

/* Connect and authenticate to a worker as its controller. */
static int ctl_open(const char *addr, const sf_secret *s, int timeout_ms, sf_conn **out,
                    sf_err *err) {
  int rc = sf__conn_connect(out, addr, timeout_ms, err);
  if (rc == 0) rc = sf__auth_client(*out, s, "controller", timeout_ms, err);
  if (rc < 0) {
    sf__conn_free(*out);
    *out = NULL;
    sf__errctx(err, rc, "worker %s", addr);
  }
  return rc;
}

int sf__probe_links(const char **addrs, int n, const sf_secret *s, const sf_probe_opts *o,
                    double *mbps, double *rtt_s, sf_err *err) {
  if (n < 1 || n > MAX_WORKERS)
    return sf__errf(err, SF_EINVAL, "probe: %d workers (1..%d)", n, MAX_WORKERS);
  int rc = check_opts(o, err);
  if (rc < 0) return rc;
  for (int i = 0; i < n; i++)
    if (!addrs[i] || !strchr(addrs[i], ':'))
      return sf__errf(err, SF_EINVAL, "probe: worker %d has no \"host:port\" address", i);
  int failed = 0;
  sf_err first = {0};
  for (int i = 0; i < n; i++) {
    mbps[(size_t)i * n + i] = 0;
    rtt_s[(size_t)i * n + i] = 0;
  }
  for (int i = 0; i < n; i++) {
    sf_conn *ctl = NULL;
    sf_err cerr = {0};
    int crc = 0;
    for (int j = 0; j < n; j++) {
      size_t k = (size_t)i * n + j;
      if (j == i || (o->only && !o->only[k])) continue;
      sf_probe_result r;
      sf_err e = {0};
      int prc, reported = 0;
      if (!ctl && crc == 0) crc = ctl_open(addrs[i], s, o->timeout_ms, &ctl, &cerr);
      if (crc < 0) {
        prc = crc;
        e = cerr;
      } else {
        prc = probe_pair(ctl, addrs[j], o, &r, &reported, &e);
      }
      if (prc < 0) {
        mbps[k] = 0;
        rtt_s[k] = -1;
        if (!failed++) first = e;
        if (ctl && !reported) { /* control link lost or out of step: a new one for the next pair */
          sf__conn_free(ctl);
          ctl = NULL;
        }
      } else {
        mbps[k] = r.mbps;
        rtt_s[k] = r.rtt_s;
      }
      if (o->progress) o->progress(o->ctx, i, j, prc < 0 ? NULL : &r, prc < 0 ? &e : NULL);
    }
    if (ctl) sf__frame_send(ctl, &(sf_frame_hdr){.type = SF_FR_BYE}, NULL, 0, NULL);
    sf__conn_free(ctl);
  }
  if (failed && err) *err = first;
  return failed;
}

/* ---- cluster file with measured links ----------------------------------------------------------
 */

/* x rounded to d decimals. */
static double round_to(double x, int d) {
  double m = pow(10, d);
  return round(x * m) / m;
}

static cJSON *link_entry(const char *from, const char *to, double mbps, double rtt_ms,
                         int has_rtt) {
  cJSON *l = cJSON_CreateObject();
  cJSON_AddStringToObject(l, "from", from);
  cJSON_AddStringToObject(l, "to", to);
  cJSON_AddNumberToObject(l, "mbps", mbps);
  if (has_rtt) cJSON_AddNumberToObject(l, "rtt_ms", rtt_ms);
  cJSON_AddBoolToObject(l, "symmetric", 0);
  return l;
}

/* The entry of the given links covering from -> to (explicit or by symmetry), or NULL. */
static const cJSON *given_link(const cJSON *links, const char *from, const char *to) {
  const cJSON *l;
  cJSON_ArrayForEach(l, links) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(l, "from"),
                *t = cJSON_GetObjectItemCaseSensitive(l, "to");
    const cJSON *sym = cJSON_GetObjectItemCaseSensitive(l, "symmetric");
    if (!cJSON_IsString(f) || !cJSON_IsString(t)) continue;
    if (!strcmp(f->valuestring, from) && !strcmp(t->valuestring, to)) return l;
    if (!cJSON_IsFalse(sym) && !strcmp(f->valuestring, to) && !strcmp(t->valuestring, from))
      return l;
  }
  return NULL;
}

char *sf__probe_cluster_json(const char *cluster, size_t len, int n, const double *mbps,
                             const double *rtt_s, sf_err *err) {
  char *out = NULL;
  cJSON *root = cJSON_ParseWithLength(cluster, len), *links = NULL;
  const char **names = NULL;
  if (!root || !cJSON_IsObject(root)) {
    sf__errf(err, SF_EFORMAT, "cluster: not a JSON object");
    goto out;
  }
  const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(root, "nodes");
  if (!cJSON_IsArray(nodes) || cJSON_GetArraySize(nodes) != n || n < 1 || n > MAX_WORKERS) {
    sf__errf(err, SF_EFORMAT, "cluster: 'nodes' must be an array of the %d probed nodes", n);
    goto out;
  }
  names = sf__calloc((size_t)n, sizeof *names);
  links = cJSON_CreateArray();
  if (!names || !links) {
    sf__errf(err, SF_ENOMEM, "out of memory");
    goto out;
  }
  int i = 0;
  const cJSON *nd;
  cJSON_ArrayForEach(nd, nodes) {
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(nd, "name");
    if (!cJSON_IsString(nm)) {
      sf__errf(err, SF_EFORMAT, "cluster: nodes[%d] has no 'name'", i);
      goto out;
    }
    names[i++] = nm->valuestring;
  }
  const cJSON *given = cJSON_GetObjectItemCaseSensitive(root, "links");
  for (int a = 0; a < n; a++)
    for (int b = 0; b < n; b++) {
      size_t k = (size_t)a * n + b;
      if (a == b) continue;
      if (mbps[k] > 0 && isfinite(mbps[k])) {
        double r = rtt_s[k] >= 0 && isfinite(rtt_s[k]) ? rtt_s[k] * 1e3 : 0;
        cJSON_AddItemToArray(links, link_entry(names[a], names[b], round_to(mbps[k], 3),
                                               round_to(r, 4), rtt_s[k] >= 0));
        continue;
      }
      const cJSON *l = cJSON_IsArray(given) ? given_link(given, names[a], names[b]) : NULL;
      const cJSON *m = l ? cJSON_GetObjectItemCaseSensitive(l, "mbps") : NULL;
      const cJSON *r = l ? cJSON_GetObjectItemCaseSensitive(l, "rtt_ms") : NULL;
      if (cJSON_IsNumber(m))
        cJSON_AddItemToArray(links,
                             link_entry(names[a], names[b], m->valuedouble,
                                        cJSON_IsNumber(r) ? r->valuedouble : 0, cJSON_IsNumber(r)));
    }
  if (given)
    cJSON_ReplaceItemInObjectCaseSensitive(root, "links", links);
  else
    cJSON_AddItemToObject(root, "links", links);
  links = NULL;
  if (!(out = cJSON_Print(root))) sf__errf(err, SF_ENOMEM, "out of memory");
out:
  cJSON_Delete(links);
  cJSON_Delete(root);
  free(names);
  return out;
}
