/* Cluster description parser (format: docs/planner.md). Strict: unknown or duplicate keys,
 * wrong types, non-positive capacities and unresolved links are errors naming the field. */
#include <cJSON.h>
#include <math.h>
#include <string.h>

#include "plan/plan.h"

#define NAME_MAX_LEN 63

/* Every key of object o must be one of the NULL-terminated list, and appear once. */
static int check_keys(const cJSON *o, const char *const *allowed, const char *where,
                      sf_err *err) {
  for (const cJSON *k = o->child; k; k = k->next) {
    int ok = 0;
    for (int i = 0; allowed[i]; i++)
      if (!strcmp(k->string, allowed[i])) ok = 1;
    if (!ok) return sf__errf(err, SF_EFORMAT, "cluster: %s: unknown key '%s'", where, k->string);
    for (const cJSON *d = k->next; d; d = d->next)
      if (!strcmp(k->string, d->string))
        return sf__errf(err, SF_EFORMAT, "cluster: %s: duplicate key '%s'", where, k->string);
  }
  return 0;
}

/* Optional number field: 1 if present (value in *v), 0 if absent, <0 on a type error. */
static int get_num(const cJSON *o, const char *key, double *v, const char *where, sf_err *err) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!x) return 0;
  if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
    return sf__errf(err, SF_EFORMAT, "cluster: %s: '%s' must be a finite number", where, key);
  *v = x->valuedouble;
  return 1;
}

static int find_node(const sf_cluster *c, const char *name) {
  for (int i = 0; i < c->n; i++)
    if (!strcmp(c->nodes[i].name, name)) return i;
  return -1;
}

/* Link endpoint: a string naming a known node. */
static int link_end(const sf_cluster *c, const cJSON *l, const char *key, const char *where,
                    int *out, sf_err *err) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(l, key);
  if (!x) return sf__errf(err, SF_EFORMAT, "cluster: %s: missing '%s'", where, key);
  if (!cJSON_IsString(x))
    return sf__errf(err, SF_EFORMAT, "cluster: %s: '%s' must be a node name", where, key);
  *out = find_node(c, x->valuestring);
  if (*out < 0)
    return sf__errf(err, SF_EFORMAT, "cluster: %s: '%s' names unknown node '%.64s'", where, key,
                    x->valuestring);
  return 0;
}

static int parse_nodes(const cJSON *arr, sf_cluster *c, sf_err *err) {
  static const char *const keys[] = {"name", "memory_mb", "memory_bytes", "gflops", "labels",
                                     "address", NULL};
  if (!cJSON_IsArray(arr)) return sf__errf(err, SF_EFORMAT, "cluster: 'nodes' must be an array");
  int n = cJSON_GetArraySize(arr);
  if (n < 1) return sf__errf(err, SF_EFORMAT, "cluster: 'nodes' is empty");
  if (n > SF_PLAN_MAX_NODES)
    return sf__errf(err, SF_ELIMIT, "cluster: 'nodes' has %d entries, limit is %d", n,
                    SF_PLAN_MAX_NODES);
  c->nodes = sf__calloc((size_t)n, sizeof *c->nodes);
  if (!c->nodes) return sf__errf(err, SF_ENOMEM, "cluster: out of memory");
  int i = 0, rc;
  for (const cJSON *o = arr->child; o; o = o->next, i++) {
    char where[128];
    snprintf(where, sizeof where, "nodes[%d]", i);
    if (!cJSON_IsObject(o)) return sf__errf(err, SF_EFORMAT, "cluster: %s must be an object", where);
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!nm) return sf__errf(err, SF_EFORMAT, "cluster: %s: missing 'name'", where);
    if (!cJSON_IsString(nm) || !nm->valuestring[0])
      return sf__errf(err, SF_EFORMAT, "cluster: %s: 'name' must be a non-empty string", where);
    if (strlen(nm->valuestring) > NAME_MAX_LEN)
      return sf__errf(err, SF_ELIMIT, "cluster: %s: 'name' is longer than %d bytes", where,
                      NAME_MAX_LEN);
    snprintf(where, sizeof where, "nodes[%d] ('%s')", i, nm->valuestring);
    if ((rc = check_keys(o, keys, where, err))) return rc;
    if (find_node(c, nm->valuestring) >= 0)
      return sf__errf(err, SF_EFORMAT, "cluster: %s: duplicate node name", where);
    double mb = 0, by = 0, gf = 0;
    int has_mb, has_by, has_gf;
    if ((has_mb = get_num(o, "memory_mb", &mb, where, err)) < 0) return has_mb;
    if ((has_by = get_num(o, "memory_bytes", &by, where, err)) < 0) return has_by;
    if ((has_gf = get_num(o, "gflops", &gf, where, err)) < 0) return has_gf;
    if (has_mb == has_by)
      return sf__errf(err, SF_EFORMAT, "cluster: %s: give exactly one of 'memory_mb', 'memory_bytes'",
                      where);
    double bytes = has_mb ? mb * 1048576.0 : by;
    if (!(bytes > 0))
      return sf__errf(err, SF_EFORMAT, "cluster: %s: '%s' must be positive", where,
                      has_mb ? "memory_mb" : "memory_bytes");
    if (bytes > 4.0e18)
      return sf__errf(err, SF_ELIMIT, "cluster: %s: '%s' is too large", where,
                      has_mb ? "memory_mb" : "memory_bytes");
    if (has_by && by != floor(by))
      return sf__errf(err, SF_EFORMAT, "cluster: %s: 'memory_bytes' must be an integer", where);
    if (!has_gf) return sf__errf(err, SF_EFORMAT, "cluster: %s: missing 'gflops'", where);
    if (!(gf > 0)) return sf__errf(err, SF_EFORMAT, "cluster: %s: 'gflops' must be positive", where);
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(o, "labels");
    if (lb) {
      if (!cJSON_IsObject(lb))
        return sf__errf(err, SF_EFORMAT, "cluster: %s: 'labels' must be an object", where);
      for (const cJSON *l = lb->child; l; l = l->next)
        if (!cJSON_IsString(l))
          return sf__errf(err, SF_EFORMAT, "cluster: %s: label '%s' must be a string", where,
                          l->string);
    }
    const cJSON *ad = cJSON_GetObjectItemCaseSensitive(o, "address");
    if (ad && (!cJSON_IsString(ad) || !ad->valuestring[0] || strlen(ad->valuestring) > 255 ||
               !strchr(ad->valuestring, ':')))
      return sf__errf(err, SF_EFORMAT, "cluster: %s: 'address' must be a \"host:port\" string", where);
    c->nodes[i].name = sf__strdup(nm->valuestring);
    if (!c->nodes[i].name) return sf__errf(err, SF_ENOMEM, "cluster: out of memory");
    c->nodes[i].mem_bytes = (int64_t)bytes;
    c->nodes[i].flops_per_s = gf * 1e9;
    c->n = i + 1;
  }
  return 0;
}

/* Parse {"mbps": x, "rtt_ms": y} style fields of a link or default_link object. */
static int link_fields(const cJSON *o, const char *where, double *bw, double *rtt, int *has_rtt,
                       sf_err *err) {
  double mbps = 0, ms = 0;
  int r;
  if ((r = get_num(o, "mbps", &mbps, where, err)) < 0) return r;
  if (!r) return sf__errf(err, SF_EFORMAT, "cluster: %s: missing 'mbps'", where);
  if (!(mbps > 0)) return sf__errf(err, SF_EFORMAT, "cluster: %s: 'mbps' must be positive", where);
  if ((r = get_num(o, "rtt_ms", &ms, where, err)) < 0) return r;
  if (r && ms < 0) return sf__errf(err, SF_EFORMAT, "cluster: %s: 'rtt_ms' must be >= 0", where);
  *has_rtt = r;
  *bw = mbps * 1e6 / 8;
  *rtt = ms / 1000;
  return 0;
}

int sf__cluster_parse(const char *json, size_t len, sf_cluster *c, sf_err *err) {
  static const char *const top_keys[] = {"nodes", "links", "default_link", "gateway", NULL};
  static const char *const link_keys[] = {"from", "to", "mbps", "rtt_ms", "symmetric", NULL};
  static const char *const def_keys[] = {"mbps", "rtt_ms", NULL};
  memset(c, 0, sizeof *c);
  c->gateway = -1;
  cJSON *root = NULL;
  unsigned char *set = NULL;
  int rc = 0;
  if (!json) return sf__errf(err, SF_EINVAL, "cluster: no document");
  root = cJSON_ParseWithLength(json, len);
  if (!root) {
    const char *at = cJSON_GetErrorPtr();
    long off = at && at >= json && at <= json + len ? (long)(at - json) : -1;
    rc = sf__errf(err, SF_EFORMAT, "cluster: not valid JSON (near byte %ld)", off);
    goto fail;
  }
  if (!cJSON_IsObject(root)) {
    rc = sf__errf(err, SF_EFORMAT, "cluster: the document must be a JSON object");
    goto fail;
  }
  if ((rc = check_keys(root, top_keys, "top level", err))) goto fail;
  const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(root, "nodes");
  if (!nodes) {
    rc = sf__errf(err, SF_EFORMAT, "cluster: missing 'nodes'");
    goto fail;
  }
  if ((rc = parse_nodes(nodes, c, err))) goto fail;
  int n = c->n;
  size_t nn = (size_t)n * (size_t)n;
  c->bw = sf__calloc(nn, sizeof *c->bw);
  double *rtt = sf__calloc(nn, sizeof *rtt);
  set = sf__calloc(nn, 1);
  c->rtt = rtt;
  if (!c->bw || !rtt || !set) {
    rc = sf__errf(err, SF_ENOMEM, "cluster: out of memory for %d nodes", n);
    goto fail;
  }
  int any_rtt = 0;
  const cJSON *links = cJSON_GetObjectItemCaseSensitive(root, "links");
  if (links) {
    if (!cJSON_IsArray(links)) {
      rc = sf__errf(err, SF_EFORMAT, "cluster: 'links' must be an array");
      goto fail;
    }
    int i = 0;
    for (const cJSON *l = links->child; l; l = l->next, i++) {
      char where[200];
      snprintf(where, sizeof where, "links[%d]", i);
      if (!cJSON_IsObject(l)) {
        rc = sf__errf(err, SF_EFORMAT, "cluster: %s must be an object", where);
        goto fail;
      }
      int a, b, has_rtt;
      double bw, lr;
      if ((rc = check_keys(l, link_keys, where, err)) || (rc = link_end(c, l, "from", where, &a, err)) ||
          (rc = link_end(c, l, "to", where, &b, err)))
        goto fail;
      snprintf(where, sizeof where, "links[%d] (%s -> %s)", i, c->nodes[a].name, c->nodes[b].name);
      if (a == b) {
        rc = sf__errf(err, SF_EFORMAT, "cluster: %s: a link must join two different nodes", where);
        goto fail;
      }
      if ((rc = link_fields(l, where, &bw, &lr, &has_rtt, err))) goto fail;
      const cJSON *sym = cJSON_GetObjectItemCaseSensitive(l, "symmetric");
      if (sym && !cJSON_IsBool(sym)) {
        rc = sf__errf(err, SF_EFORMAT, "cluster: %s: 'symmetric' must be true or false", where);
        goto fail;
      }
      int both = !sym || cJSON_IsTrue(sym);
      for (int d = 0; d <= both; d++) {
        int u = d ? b : a, v = d ? a : b;
        size_t k = (size_t)u * n + v;
        if (set[k]) {
          rc = sf__errf(err, SF_EFORMAT, "cluster: %s: duplicate link %s -> %s", where,
                        c->nodes[u].name, c->nodes[v].name);
          goto fail;
        }
        set[k] = 1;
        c->bw[k] = bw;
        rtt[k] = lr;
      }
      any_rtt |= lr > 0;
    }
  }
  const cJSON *def = cJSON_GetObjectItemCaseSensitive(root, "default_link");
  double dbw = 0, drtt = 0;
  if (def) {
    int has_rtt;
    if (!cJSON_IsObject(def)) {
      rc = sf__errf(err, SF_EFORMAT, "cluster: 'default_link' must be an object");
      goto fail;
    }
    if ((rc = check_keys(def, def_keys, "default_link", err)) ||
        (rc = link_fields(def, "default_link", &dbw, &drtt, &has_rtt, err)))
      goto fail;
    any_rtt |= drtt > 0;
  }
  for (int u = 0; u < n; u++)
    for (int v = 0; v < n; v++) {
      size_t k = (size_t)u * n + v;
      if (u == v || set[k]) continue;
      if (!def) {
        rc = sf__errf(err, SF_EFORMAT, "cluster: no link from '%s' to '%s' and no 'default_link'",
                      c->nodes[u].name, c->nodes[v].name);
        goto fail;
      }
      c->bw[k] = dbw;
      rtt[k] = drtt;
    }
  if (!any_rtt) {
    free(rtt);
    c->rtt = NULL;
  }
  const cJSON *gw = cJSON_GetObjectItemCaseSensitive(root, "gateway");
  if (gw) {
    if (!cJSON_IsString(gw)) {
      rc = sf__errf(err, SF_EFORMAT, "cluster: 'gateway' must be a node name");
      goto fail;
    }
    c->gateway = find_node(c, gw->valuestring);
    if (c->gateway < 0) {
      rc = sf__errf(err, SF_EFORMAT, "cluster: 'gateway' names unknown node '%.64s'", gw->valuestring);
      goto fail;
    }
  }
  free(set);
  cJSON_Delete(root);
  return 0;
fail:
  free(set);
  cJSON_Delete(root);
  sf__cluster_deinit(c);
  return rc;
}

void sf__cluster_deinit(sf_cluster *c) {
  if (!c) return;
  if (c->nodes)
    for (int i = 0; i < c->n; i++) free(c->nodes[i].name);
  free(c->nodes);
  free(c->bw);
  free(c->rtt);
  memset(c, 0, sizeof *c);
  c->gateway = -1;
}
