/* kubeemu: an emulator of the Kubernetes API server subset seifer uses (see kubeemu.h). */
#include "kubeemu.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "control/k8s.h"

#define MAX_BODY (4u << 20)
#define MAX_TOKENS 8
#define LOG_REQS 512
#define MAX_DEPTH 40

/* ---- resources ------------------------------------------------------------------------------ */
typedef struct kres {
  const char *group, *version, *plural, *kind;
  int namespaced;
  int status_sub; /* has a status subresource */
  int generation; /* metadata.generation follows changes outside metadata and status */
  int builtin;    /* list items carry no kind/apiVersion (as the real server does) */
} kres;

static const kres RES[] = {
    {"", "v1", "nodes", "Node", 0, 1, 0, 1},
    {"", "v1", "namespaces", "Namespace", 0, 1, 0, 1},
    {"", "v1", "secrets", "Secret", 1, 0, 0, 1},
    {"", "v1", "serviceaccounts", "ServiceAccount", 1, 0, 0, 1},
    {"", "v1", "services", "Service", 1, 1, 0, 1},
    {"", "v1", "configmaps", "ConfigMap", 1, 0, 0, 1},
    {"", "v1", "pods", "Pod", 1, 1, 0, 1},
    {"apps", "v1", "deployments", "Deployment", 1, 1, 1, 1},
    {"apps", "v1", "daemonsets", "DaemonSet", 1, 1, 1, 1},
    {"coordination.k8s.io", "v1", "leases", "Lease", 1, 0, 0, 1},
    {"rbac.authorization.k8s.io", "v1", "roles", "Role", 1, 0, 0, 1},
    {"rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", 1, 0, 0, 1},
    {"rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", 0, 0, 0, 1},
    {"rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", 0, 0, 0, 1},
    {"apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", 0, 1, 1,
     1},
    {"seifer.dev", "v1alpha1", "seifermodels", "SeiferModel", 1, 1, 1, 0},
};
#define N_RES ((int)(sizeof RES / sizeof RES[0]))
enum { R_NODES = 0, R_NAMESPACES = 1, R_DEPLOYMENTS = 7 };

static void api_version(const kres *r, char *out, size_t cap) {
  if (r->group[0])
    snprintf(out, cap, "%s/%s", r->group, r->version);
  else
    snprintf(out, cap, "%s", r->version);
}

/* ---- state ---------------------------------------------------------------------------------- */
typedef struct kobj {
  int res;
  char ns[64];
  char name[256];
  cJSON *obj;
} kobj;

typedef struct kevent {
  int res;
  char type[12];
  int64_t rv;
  char ns[64];
  cJSON *obj;
} kevent;

typedef struct lreq {
  char method[8];
  char url[512];
  char ctype[64];
  int status;
} lreq;

typedef struct sel_req {
  char key[320];
  char val[64];
  int op; /* 0 =, 1 !=, 2 exists, 3 !exists */
} sel_req;
typedef struct selector {
  sel_req r[16];
  int n;
} selector;

struct watch;

typedef struct kpod {
  char ns[64], deploy[256], node[256], name[300];
  uint32_t hash;
  pid_t pid;        /* 0: not running */
  double restart_at;
  int restarts;
} kpod;

struct kemu {
  kemu_opts o;
  struct MHD_Daemon *d;
  char url[128];
  char *cert_pem, *key_pem;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stopping;
  int64_t rv, compacted;
  kobj *objs;
  int n_objs, cap_objs;
  kevent *ev; /* ring of cap_ev */
  int cap_ev, first_ev, n_ev;
  uint64_t expire_gen, bookmark_gen;
  int n_watches;
  /* tokens */
  char tokens[MAX_TOKENS][512];
  int n_tokens;
  struct timespec tok_mtime;
  off_t tok_size;
  ino_t tok_ino;
  int tok_loaded;
  /* counters */
  long n_requests, n_unauthorized, n_conflicts, n_applies, n_watch_started, n_gone, n_bookmarks;
  lreq log[LOG_REQS];
  long n_log;
  /* kubelet */
  kpod *pods;
  int n_pods, cap_pods;
  pthread_t kubelet;
  int kubelet_started;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void rfc3339(char *out, size_t cap) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- small JSON helpers -------------------------------------------------------------------- */
static cJSON *jget(const cJSON *o, const char *k) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}
static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = jget(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}
static void jset(cJSON *o, const char *k, cJSON *v) {
  if (cJSON_GetObjectItemCaseSensitive(o, k))
    cJSON_ReplaceItemInObjectCaseSensitive(o, k, v);
  else
    cJSON_AddItemToObject(o, k, v);
}
static cJSON *jobj(cJSON *o, const char *k) { /* get or add an object member */
  cJSON *v = jget(o, k);
  if (cJSON_IsObject(v)) return v;
  v = cJSON_CreateObject();
  jset(o, k, v);
  return v;
}
static int64_t rv_of(const cJSON *obj) {
  const char *s = jstr(jget(obj, "metadata"), "resourceVersion");
  return s ? strtoll(s, NULL, 10) : 0;
}
static void set_rv(cJSON *obj, int64_t rv) {
  char b[32];
  snprintf(b, sizeof b, "%" PRId64, rv);
  jset(jobj(obj, "metadata"), "resourceVersion", cJSON_CreateString(b));
}

static cJSON *status_obj(int code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static cJSON *status_obj(int code, const char *reason, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cJSON *s = cJSON_CreateObject();
  cJSON_AddStringToObject(s, "kind", "Status");
  cJSON_AddStringToObject(s, "apiVersion", "v1");
  cJSON_AddItemToObject(s, "metadata", cJSON_CreateObject());
  cJSON_AddStringToObject(s, "status", code < 300 ? "Success" : "Failure");
  cJSON_AddStringToObject(s, "message", msg);
  if (reason) cJSON_AddStringToObject(s, "reason", reason);
  cJSON_AddNumberToObject(s, "code", code);
  return s;
}
static void status_details(cJSON *s, const kres *r, const char *name) {
  cJSON *d = jobj(s, "details");
  if (name) cJSON_AddStringToObject(d, "name", name);
  if (r->group[0]) cJSON_AddStringToObject(d, "group", r->group);
  cJSON_AddStringToObject(d, "kind", r->plural);
}
/* "leases.coordination.k8s.io" / "nodes" */
static void qual(const kres *r, char *out, size_t cap) {
  if (r->group[0])
    snprintf(out, cap, "%s.%s", r->plural, r->group);
  else
    snprintf(out, cap, "%s", r->plural);
}

/* ---- names and labels ------------------------------------------------------------------------ */
static int dns_label(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0 && i + 1 < n);
    if (!ok) return 0;
  }
  return 1;
}
static int dns_subdomain(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 253) return 0;
  char buf[256];
  memcpy(buf, s, n + 1);
  for (char *save = NULL, *p = strtok_r(buf, ".", &save); p; p = strtok_r(NULL, ".", &save))
    if (!dns_label(p, 63)) return 0;
  return s[0] != '.' && s[n - 1] != '.' && !strstr(s, "..");
}
static int label_name(const char *s,
                      size_t n) { /* [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?, <= 63 */
  if (n > 63) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && !((c == '-' || c == '_' || c == '.') && i > 0 && i + 1 < n)) return 0;
  }
  return 1;
}
static int label_key(const char *k) {
  const char *slash = strchr(k, '/');
  if (slash) {
    char pre[256];
    size_t pn = (size_t)(slash - k);
    if (pn == 0 || pn > 253) return 0;
    memcpy(pre, k, pn);
    pre[pn] = 0;
    if (!dns_subdomain(pre)) return 0;
    k = slash + 1;
  }
  return k[0] && label_name(k, strlen(k));
}

/* Validation the real API server does on the fields seifer writes; NULL when fine. */
static const char *validate(const kres *r, const cJSON *obj, char *msg, size_t cap) {
  const cJSON *md = jget(obj, "metadata");
  const char *name = jstr(md, "name");
  if (!name) return snprintf(msg, cap, "metadata.name: Required value"), msg;
  int ok = r - RES == R_NAMESPACES          ? dns_label(name, 63)
           : !strcmp(r->plural, "services") ? (dns_label(name, 63) && name[0] >= 'a')
                                            : dns_subdomain(name);
  if (!ok)
    return snprintf(msg, cap,
                    "metadata.name: Invalid value: \"%s\": a lowercase RFC 1123 %s must "
                    "consist of lower case alphanumeric characters, '-' or '.'",
                    name, r - RES == R_NAMESPACES ? "label" : "subdomain"),
           msg;
  const cJSON *l;
  cJSON_ArrayForEach(l, jget(md, "labels")) {
    if (!label_key(l->string))
      return snprintf(msg, cap,
                      "metadata.labels: Invalid value: \"%s\": name part must consist of "
                      "alphanumeric characters, '-', '_' or '.'",
                      l->string),
             msg;
    if (!cJSON_IsString(l) ||
        (l->valuestring[0] && !label_name(l->valuestring, strlen(l->valuestring))))
      return snprintf(
                 msg, cap,
                 "metadata.labels: Invalid value: \"%s\": a valid label must be an "
                 "empty string or consist of alphanumeric characters, '-', '_' or '.' (at most 63)",
                 cJSON_IsString(l) ? l->valuestring : "?"),
             msg;
  }
  if (r - RES == R_DEPLOYMENTS) {
    const cJSON *spec = jget(obj, "spec");
    const cJSON *ml = jget(jget(spec, "selector"), "matchLabels");
    const cJSON *tl = jget(jget(jget(spec, "template"), "metadata"), "labels");
    if (!cJSON_IsObject(ml) || !ml->child)
      return snprintf(msg, cap, "spec.selector: Required value"), msg;
    cJSON_ArrayForEach(l, ml) {
      const char *v = jstr(tl, l->string);
      if (!v || !cJSON_IsString(l) || strcmp(v, l->valuestring))
        return snprintf(msg, cap,
                        "spec.template.metadata.labels: Invalid value: `selector` does "
                        "not match template `labels`"),
               msg;
    }
    const cJSON *cs = jget(jget(jget(spec, "template"), "spec"), "containers");
    if (!cJSON_IsArray(cs) || cJSON_GetArraySize(cs) == 0)
      return snprintf(msg, cap, "spec.template.spec.containers: Required value"), msg;
    const cJSON *c;
    cJSON_ArrayForEach(c, cs) {
      const char *cn = jstr(c, "name");
      if (!cn || !dns_label(cn, 63))
        return snprintf(msg, cap, "spec.template.spec.containers[].name: Invalid value"), msg;
      if (!jstr(c, "image"))
        return snprintf(msg, cap, "spec.template.spec.containers[].image: Required value"), msg;
      const char *rq = jstr(jget(jget(c, "resources"), "requests"), "memory");
      const char *lm = jstr(jget(jget(c, "resources"), "limits"), "memory");
      int64_t rb = 0, lb = 0;
      if ((rq && sf__k8s_quantity_bytes(rq, &rb, NULL) < 0) ||
          (lm && sf__k8s_quantity_bytes(lm, &lb, NULL) < 0))
        return snprintf(msg, cap,
                        "spec.template.spec.containers[].resources: quantities must match "
                        "the regular expression of a Quantity"),
               msg;
      if (rq && lm && rb > lb)
        return snprintf(msg, cap,
                        "spec.template.spec.containers[].resources.requests: Invalid value: "
                        "\"%s\": must be less than or equal to memory limit of %s",
                        rq, lm),
               msg;
    }
    const cJSON *st = jget(spec, "strategy");
    const char *type = jstr(st, "type");
    if (type && !strcmp(type, "Recreate") && jget(st, "rollingUpdate"))
      return snprintf(msg, cap,
                      "spec.strategy.rollingUpdate: Forbidden: may not be specified when "
                      "strategy `type` is 'Recreate'"),
             msg;
    const cJSON *rep = jget(spec, "replicas");
    if (rep && (!cJSON_IsNumber(rep) || rep->valuedouble < 0))
      return snprintf(msg, cap, "spec.replicas: Invalid value: must be greater than or equal to 0"),
             msg;
  }
  if (!strcmp(r->plural, "leases")) {
    const cJSON *d = jget(jget(obj, "spec"), "leaseDurationSeconds");
    if (d && (!cJSON_IsNumber(d) || d->valuedouble <= 0))
      return snprintf(msg, cap, "spec.leaseDurationSeconds: Invalid value: must be greater than 0"),
             msg;
  }
  return NULL;
}

/* Fields an update may not change (the real API server answers 422 "field is immutable"). */
static const char *immutable(const kres *r, const cJSON *old, const cJSON *obj, char *msg,
                             size_t cap) {
  if (strcmp(r->plural, "deployments") && strcmp(r->plural, "daemonsets")) return NULL;
  const cJSON *a = jget(jget(old, "spec"), "selector"), *b = jget(jget(obj, "spec"), "selector");
  if (a && !(b && cJSON_Compare(a, b, 1)))
    return snprintf(msg, cap, "spec.selector: Invalid value: field is immutable"), msg;
  return NULL;
}

/* ---- selectors --------------------------------------------------------------------------------
 */
static int sel_parse(const char *s, selector *out) {
  memset(out, 0, sizeof *out);
  if (!s || !*s) return 0;
  while (*s) {
    if (out->n == 16) return -1;
    sel_req *q = &out->r[out->n++];
    const char *end = strchr(s, ',');
    size_t n = end ? (size_t)(end - s) : strlen(s);
    char part[400];
    if (n >= sizeof part) return -1;
    memcpy(part, s, n);
    part[n] = 0;
    char *p = part;
    while (*p == ' ') p++;
    if (*p == '!') {
      q->op = 3;
      p++;
    } else
      q->op = 2;
    char *ne = strstr(p, "!="), *eq = strchr(p, '=');
    if (q->op == 3 && eq) return -1;
    if (ne) {
      *ne = 0;
      q->op = 1;
      snprintf(q->val, sizeof q->val, "%s", ne + 2);
    } else if (eq) {
      *eq = 0;
      q->op = 0;
      snprintf(q->val, sizeof q->val, "%s", eq[1] == '=' ? eq + 2 : eq + 1);
    }
    if (strchr(p, ' ') || strchr(p, '(')) return -1; /* set-based selectors are not emulated */
    snprintf(q->key, sizeof q->key, "%.319s", p);
    if (!q->key[0]) return -1;
    s = end ? end + 1 : s + n;
  }
  return 0;
}
static int sel_match(const selector *s, const cJSON *obj) {
  const cJSON *labels = jget(jget(obj, "metadata"), "labels");
  for (int i = 0; i < s->n; i++) {
    const char *v = jstr(labels, s->r[i].key);
    switch (s->r[i].op) {
      case 0:
        if (!v || strcmp(v, s->r[i].val)) return 0;
        break;
      case 1:
        if (v && !strcmp(v, s->r[i].val)) return 0;
        break;
      case 2:
        if (!v) return 0;
        break;
      default:
        if (v) return 0;
        break;
    }
  }
  return 1;
}

/* ---- store ------------------------------------------------------------------------------------
 */
static kobj *find(kemu *e, int res, const char *ns, const char *name) {
  for (int i = 0; i < e->n_objs; i++) {
    kobj *o = &e->objs[i];
    if (o->res == res && !strcmp(o->name, name) && (!RES[res].namespaced || !strcmp(o->ns, ns)))
      return o;
  }
  return NULL;
}

static void emit(kemu *e, int res, const char *type, const char *ns, const cJSON *obj) {
  if (e->n_ev == e->cap_ev) { /* the oldest event leaves the history: compacted */
    kevent *old = &e->ev[e->first_ev];
    if (old->rv > e->compacted) e->compacted = old->rv;
    cJSON_Delete(old->obj);
    e->first_ev = (e->first_ev + 1) % e->cap_ev;
    e->n_ev--;
  }
  kevent *v = &e->ev[(e->first_ev + e->n_ev) % e->cap_ev];
  v->res = res;
  snprintf(v->type, sizeof v->type, "%s", type);
  v->rv = e->rv;
  snprintf(v->ns, sizeof v->ns, "%s", ns ? ns : "");
  v->obj = cJSON_Duplicate(obj, 1);
  e->n_ev++;
  pthread_cond_broadcast(&e->cv);
}

static kobj *store_add(kemu *e, int res, const char *ns, const char *name, cJSON *obj) {
  if (e->n_objs == e->cap_objs) {
    int nc = e->cap_objs ? e->cap_objs * 2 : 64;
    kobj *n = realloc(e->objs, (size_t)nc * sizeof *n);
    if (!n) return NULL;
    e->objs = n;
    e->cap_objs = nc;
  }
  kobj *o = &e->objs[e->n_objs++];
  memset(o, 0, sizeof *o);
  o->res = res;
  snprintf(o->ns, sizeof o->ns, "%s", RES[res].namespaced ? ns : "");
  snprintf(o->name, sizeof o->name, "%s", name);
  o->obj = obj;
  return o;
}
static void store_del(kemu *e, kobj *o) {
  cJSON_Delete(o->obj);
  *o = e->objs[--e->n_objs];
}

static void new_uid(char *out) {
  unsigned char b[16];
  RAND_bytes(b, sizeof b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
}

/* ---- field sets (managedFields, FieldsV1)
 * --------------------------------------------------------- */
/* A field set is a cJSON object tree: {"f:spec": {"f:replicas": {}}}; an empty object is a leaf
 * (the whole value at that path: a scalar, an atomic list or an empty map). */
typedef struct fpath {
  const char *k[MAX_DEPTH];
  int n;
} fpath;

static int is_system_meta(const char *k) {
  static const char *sys[] = {"name",
                              "namespace",
                              "uid",
                              "resourceVersion",
                              "generation",
                              "creationTimestamp",
                              "managedFields",
                              "deletionTimestamp",
                              "deletionGracePeriodSeconds",
                              "selfLink",
                              "generateName"};
  for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++)
    if (!strcmp(k, sys[i])) return 1;
  return 0;
}

enum { SC_ALL, SC_MAIN, SC_STATUS };
/* The part of obj that field management covers in scope sc (a new tree; nulls dropped). */
static cJSON *scoped(const cJSON *obj, int sc) {
  cJSON *out = cJSON_CreateObject();
  const cJSON *c;
  cJSON_ArrayForEach(c, obj) {
    if (cJSON_IsNull(c) || !strcmp(c->string, "apiVersion") || !strcmp(c->string, "kind")) continue;
    if (sc == SC_STATUS && strcmp(c->string, "status")) continue;
    if (sc == SC_MAIN && !strcmp(c->string, "status")) continue;
    if (!strcmp(c->string, "metadata")) {
      cJSON *m = cJSON_CreateObject();
      const cJSON *mc;
      cJSON_ArrayForEach(mc, c) if (!is_system_meta(mc->string) && !cJSON_IsNull(mc))
          cJSON_AddItemToObject(m, mc->string, cJSON_Duplicate(mc, 1));
      if (m->child)
        cJSON_AddItemToObject(out, "metadata", m);
      else
        cJSON_Delete(m);
      continue;
    }
    cJSON_AddItemToObject(out, c->string, cJSON_Duplicate(c, 1));
  }
  return out;
}

static void fkey(char *out, size_t cap, const char *k) {
  snprintf(out, cap, "f:%s", k);
}

/* Field set of a (scoped) value tree. */
static cJSON *fs_of(const cJSON *v) {
  cJSON *fs = cJSON_CreateObject();
  const cJSON *c;
  cJSON_ArrayForEach(c, v) {
    if (cJSON_IsNull(c)) continue;
    char k[512];
    fkey(k, sizeof k, c->string);
    cJSON_AddItemToObject(fs, k, cJSON_IsObject(c) && c->child ? fs_of(c) : cJSON_CreateObject());
  }
  return fs;
}

typedef void (*leaf_fn)(const fpath *p, void *ud);
static void fs_leaves_rec(const cJSON *fs, fpath *p, leaf_fn fn, void *ud) {
  const cJSON *c;
  cJSON_ArrayForEach(c, fs) {
    if (p->n == MAX_DEPTH || strncmp(c->string, "f:", 2)) continue;
    p->k[p->n++] = c->string + 2;
    if (c->child)
      fs_leaves_rec(c, p, fn, ud);
    else
      fn(p, ud);
    p->n--;
  }
}
static void fs_leaves(const cJSON *fs, leaf_fn fn, void *ud) {
  fpath p = {.n = 0};
  if (fs && fs->child) fs_leaves_rec(fs, &p, fn, ud);
}

/* 1 when fs owns p, an ancestor of p, or something below p. */
static int fs_overlap(const cJSON *fs, const fpath *p) {
  const cJSON *node = fs;
  if (!node || !node->child) return 0;
  for (int i = 0; i < p->n; i++) {
    char k[512];
    fkey(k, sizeof k, p->k[i]);
    node = cJSON_GetObjectItemCaseSensitive(node, k);
    if (!node) return 0;
    if (!node->child) return 1;
  }
  return 1;
}

/* Remove p (and an owned ancestor of p) from the tree; returns 1 when node should go. */
static int fs_remove_rec(cJSON *node, const fpath *p, int i) {
  if (i == p->n) return 1;
  if (!node->child && i > 0) return 1;
  char k[512];
  fkey(k, sizeof k, p->k[i]);
  cJSON *c = cJSON_GetObjectItemCaseSensitive(node, k);
  if (!c) return 0;
  if (fs_remove_rec(c, p, i + 1)) {
    cJSON_DeleteItemFromObjectCaseSensitive(node, k);
    return i > 0 && !node->child;
  }
  return 0;
}
static void fs_remove(cJSON *fs, const fpath *p) {
  fs_remove_rec(fs, p, 0);
}

static void fs_add(cJSON *fs, const fpath *p) {
  cJSON *node = fs;
  for (int i = 0; i < p->n; i++) {
    char k[512];
    fkey(k, sizeof k, p->k[i]);
    cJSON *c = cJSON_GetObjectItemCaseSensitive(node, k);
    if (!c) {
      c = cJSON_CreateObject();
      cJSON_AddItemToObject(node, k, c);
    }
    node = c;
  }
  /* whatever was below p is now owned as one value */
  while (node->child) cJSON_DeleteItemFromObjectCaseSensitive(node, node->child->string);
}

static const cJSON *value_at(const cJSON *obj, const fpath *p) {
  const cJSON *v = obj;
  for (int i = 0; i < p->n && v; i++) v = jget(v, p->k[i]);
  return v;
}
static void delete_at(cJSON *obj, const fpath *p) {
  cJSON *v = obj;
  for (int i = 0; i + 1 < p->n && v; i++) v = jget(v, p->k[i]);
  if (cJSON_IsObject(v) && p->n > 0) cJSON_DeleteItemFromObjectCaseSensitive(v, p->k[p->n - 1]);
}
static void path_str(const fpath *p, char *out, size_t cap) {
  size_t o = 0;
  out[0] = 0;
  for (int i = 0; i < p->n && o < cap; i++) o += (size_t)snprintf(out + o, cap - o, ".%s", p->k[i]);
}

/* Merge src (a scoped value tree) into dst: maps recursively, anything else replaced. */
static void merge_into(cJSON *dst, const cJSON *src) {
  const cJSON *c;
  cJSON_ArrayForEach(c, src) {
    if (cJSON_IsNull(c)) continue;
    cJSON *d = jget(dst, c->string);
    if (cJSON_IsObject(c) && cJSON_IsObject(d))
      merge_into(d, c);
    else
      jset(dst, c->string, cJSON_Duplicate(c, 1));
  }
}

/* RFC 7386 JSON merge patch. */
static void merge_patch(cJSON *dst, const cJSON *patch) {
  const cJSON *c;
  cJSON_ArrayForEach(c, patch) {
    if (cJSON_IsNull(c)) {
      cJSON_DeleteItemFromObjectCaseSensitive(dst, c->string);
      continue;
    }
    cJSON *d = jget(dst, c->string);
    if (cJSON_IsObject(c)) {
      if (!cJSON_IsObject(d)) {
        d = cJSON_CreateObject();
        jset(dst, c->string, d);
      }
      merge_patch(d, c);
    } else
      jset(dst, c->string, cJSON_Duplicate(c, 1));
  }
}

/* Leaves that differ between two scoped trees: changed or added (in b) go to fn(..., 1), removed
 * (only in a) to fn(..., 0). */
typedef void (*diff_fn)(const fpath *p, int present, void *ud);
static void diff_rec(const cJSON *a, const cJSON *b, fpath *p, diff_fn fn, void *ud) {
  const cJSON *c;
  cJSON_ArrayForEach(c, b) {
    if (p->n == MAX_DEPTH) return;
    const cJSON *o = jget(a, c->string);
    p->k[p->n++] = c->string;
    if (cJSON_IsObject(c) && c->child && (cJSON_IsObject(o) || !o))
      diff_rec(o, c, p, fn, ud);
    else if (!o || !cJSON_Compare(o, c, 1))
      fn(p, 1, ud);
    p->n--;
  }
  cJSON_ArrayForEach(c, a) {
    if (p->n == MAX_DEPTH) return;
    if (jget(b, c->string) || !b) continue;
    p->k[p->n++] = c->string;
    fn(p, 0, ud);
    p->n--;
  }
}

/* managedFields entries */
static cJSON *mf_entry(cJSON *obj, const char *manager, const char *op, const char *sub, int create,
                       const char *api_ver) {
  cJSON *md = jobj(obj, "metadata");
  cJSON *mf = jget(md, "managedFields");
  if (!cJSON_IsArray(mf)) {
    mf = cJSON_CreateArray();
    jset(md, "managedFields", mf);
  }
  cJSON *e;
  cJSON_ArrayForEach(e, mf) {
    const char *s = jstr(e, "subresource");
    if (!strcmp(jstr(e, "manager") ? jstr(e, "manager") : "", manager) &&
        !strcmp(jstr(e, "operation") ? jstr(e, "operation") : "", op) && !strcmp(s ? s : "", sub))
      return e;
  }
  if (!create) return NULL;
  e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "manager", manager);
  cJSON_AddStringToObject(e, "operation", op);
  cJSON_AddStringToObject(e, "apiVersion", api_ver);
  char t[40];
  rfc3339(t, sizeof t);
  cJSON_AddStringToObject(e, "time", t);
  cJSON_AddStringToObject(e, "fieldsType", "FieldsV1");
  cJSON_AddItemToObject(e, "fieldsV1", cJSON_CreateObject());
  if (sub[0]) cJSON_AddStringToObject(e, "subresource", sub);
  cJSON_AddItemToArray(mf, e);
  return e;
}
static void mf_prune(cJSON *obj) {
  cJSON *mf = jget(jget(obj, "metadata"), "managedFields");
  if (!cJSON_IsArray(mf)) return;
  for (int i = cJSON_GetArraySize(mf) - 1; i >= 0; i--) {
    cJSON *e = cJSON_GetArrayItem(mf, i);
    cJSON *f = jget(e, "fieldsV1");
    if (!f || !f->child) cJSON_DeleteItemFromArray(mf, i);
  }
  if (cJSON_GetArraySize(mf) == 0)
    cJSON_DeleteItemFromObjectCaseSensitive(jget(obj, "metadata"), "managedFields");
}
static void mf_touch(cJSON *e) {
  char t[40];
  rfc3339(t, sizeof t);
  jset(e, "time", cJSON_CreateString(t));
}

/* An Update (PUT, merge patch, a controller's write) by manager: the fields it changed become
 * its own, taken from every other manager; removed fields leave every set. */
typedef struct upd_ctx {
  cJSON *obj, *mine;
} upd_ctx;
static void upd_leaf(const fpath *p, int present, void *ud) {
  upd_ctx *u = ud;
  cJSON *e;
  cJSON_ArrayForEach(e, jget(jget(u->obj, "metadata"), "managedFields")) {
    cJSON *f = jget(e, "fieldsV1");
    if (f && e != u->mine) fs_remove(f, p);
  }
  cJSON *mf = jget(u->mine, "fieldsV1");
  if (present)
    fs_add(mf, p);
  else
    fs_remove(mf, p);
}
static void manage_update(cJSON *old, cJSON *obj, const char *manager, int sc,
                          const char *api_ver) {
  cJSON *a = scoped(old, sc);
  cJSON *b = scoped(obj, sc);
  upd_ctx u = {obj, mf_entry(obj, manager, "Update", sc == SC_STATUS ? "status" : "", 1, api_ver)};
  cJSON *before = cJSON_Duplicate(jget(u.mine, "fieldsV1"), 1);
  fpath p = {.n = 0};
  diff_rec(a, b, &p, upd_leaf, &u);
  if (!cJSON_Compare(before, jget(u.mine, "fieldsV1"), 1)) mf_touch(u.mine);
  cJSON_Delete(before);
  cJSON_Delete(a);
  cJSON_Delete(b);
  mf_prune(obj);
}

/* outside metadata and status: what metadata.generation follows */
static int spec_changed(const cJSON *a, const cJSON *b) {
  cJSON *x = cJSON_Duplicate(a, 1), *y = cJSON_Duplicate(b, 1);
  cJSON_DeleteItemFromObjectCaseSensitive(x, "metadata");
  cJSON_DeleteItemFromObjectCaseSensitive(y, "metadata");
  cJSON_DeleteItemFromObjectCaseSensitive(x, "status");
  cJSON_DeleteItemFromObjectCaseSensitive(y, "status");
  int ch = !cJSON_Compare(x, y, 1);
  cJSON_Delete(x);
  cJSON_Delete(y);
  return ch;
}

/* A Secret's stringData is written into data (base64), as the API server does. */
static void normalize(int res, cJSON *obj) {
  if (strcmp(RES[res].plural, "secrets")) return;
  cJSON *sd = cJSON_DetachItemFromObjectCaseSensitive(obj, "stringData");
  if (!sd) return;
  cJSON *data = jobj(obj, "data");
  const cJSON *kv;
  cJSON_ArrayForEach(kv, sd) {
    if (!cJSON_IsString(kv)) continue;
    size_t n = strlen(kv->valuestring);
    char *b = malloc(4 * ((n + 2) / 3) + 1);
    if (!b) continue;
    EVP_EncodeBlock((unsigned char *)b, (const unsigned char *)kv->valuestring, (int)n);
    jset(data, kv->string, cJSON_CreateString(b));
    free(b);
  }
  cJSON_Delete(sd);
}

/* ---- writes -------------------------------------------------------------------------------------
 */
/* obj replaces o's object (which old is a copy of): a new resourceVersion and a MODIFIED event,
 * or nothing when nothing changed. Takes obj. Returns 1 when written. */
static int commit(kemu *e, kobj *o, cJSON *obj) {
  normalize(o->res, obj);
  if (cJSON_Compare(o->obj, obj, 1)) {
    cJSON_Delete(obj);
    return 0;
  }
  if (RES[o->res].generation && spec_changed(o->obj, obj)) {
    const cJSON *g = jget(jget(o->obj, "metadata"), "generation");
    jset(jobj(obj, "metadata"), "generation",
         cJSON_CreateNumber(cJSON_IsNumber(g) ? g->valuedouble + 1 : 1));
  }
  e->rv++;
  set_rv(obj, e->rv);
  cJSON_Delete(o->obj);
  o->obj = obj;
  emit(e, o->res, "MODIFIED", o->ns, obj);
  return 1;
}

static kobj *create_obj(kemu *e, int res, const char *ns, cJSON *obj) {
  const kres *r = &RES[res];
  char av[128], uid[40], t[40];
  api_version(r, av, sizeof av);
  jset(obj, "apiVersion", cJSON_CreateString(av));
  jset(obj, "kind", cJSON_CreateString(r->kind));
  cJSON *md = jobj(obj, "metadata");
  if (r->namespaced)
    jset(md, "namespace", cJSON_CreateString(ns));
  else
    cJSON_DeleteItemFromObjectCaseSensitive(md, "namespace");
  new_uid(uid);
  rfc3339(t, sizeof t);
  jset(md, "uid", cJSON_CreateString(uid));
  jset(md, "creationTimestamp", cJSON_CreateString(t));
  if (r->generation) jset(md, "generation", cJSON_CreateNumber(1));
  normalize(res, obj);
  e->rv++;
  set_rv(obj, e->rv);
  kobj *o = store_add(e, res, ns, jstr(md, "name"), obj);
  if (!o) {
    cJSON_Delete(obj);
    return NULL;
  }
  emit(e, res, "ADDED", o->ns, obj);
  return o;
}

static const cJSON *node_condition(const cJSON *node, const char *type) {
  const cJSON *c;
  cJSON_ArrayForEach(c, jget(jget(node, "status"), "conditions")) {
    const char *t = jstr(c, "type");
    if (t && !strcmp(t, type)) return c;
  }
  return NULL;
}

/* The hostname a Deployment's pods are pinned to (node affinity or nodeSelector), or NULL. */
static const char *pinned_host(const cJSON *d) {
  const cJSON *ps = jget(jget(jget(d, "spec"), "template"), "spec");
  const char *h = jstr(jget(ps, "nodeSelector"), "kubernetes.io/hostname");
  if (h) return h;
  const cJSON *terms = jget(jget(jget(jget(ps, "affinity"), "nodeAffinity"),
                                 "requiredDuringSchedulingIgnoredDuringExecution"),
                            "nodeSelectorTerms");
  const cJSON *t, *x;
  cJSON_ArrayForEach(t, terms) cJSON_ArrayForEach(x, jget(t, "matchExpressions")) {
    const char *k = jstr(x, "key"), *op = jstr(x, "operator");
    const cJSON *v = jget(x, "values");
    if (k && op && !strcmp(k, "kubernetes.io/hostname") && !strcmp(op, "In") &&
        cJSON_GetArraySize(v) == 1 && cJSON_IsString(v->child))
      return v->child->valuestring;
  }
  return NULL;
}

static void strip_times(cJSON *st) {
  cJSON *c;
  cJSON_ArrayForEach(c, jget(st, "conditions")) {
    cJSON_DeleteItemFromObjectCaseSensitive(c, "lastUpdateTime");
    cJSON_DeleteItemFromObjectCaseSensitive(c, "lastTransitionTime");
  }
}

/* ---- the emulated kubelet --------------------------------------------------------------------- */
static uint32_t fnv(const char *s, uint32_t h) {
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

static void mkdirs(const char *path) {
  char b[4096];
  snprintf(b, sizeof b, "%s", path);
  for (char *p = b + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      mkdir(b, 0700);
      *p = '/';
    }
  mkdir(b, 0700);
}

/* Stop a pod's process: SIGKILL at once (a node that died), else SIGTERM and up to 3 s. */
static void pod_stop(kpod *p, int hard) {
  if (p->pid <= 0) return;
  kill(-p->pid, hard ? SIGKILL : SIGTERM);
  for (int i = 0; i < 300 && !hard; i++) {
    if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
      p->pid = 0;
      return;
    }
    usleep(10000);
  }
  kill(-p->pid, SIGKILL);
  waitpid(p->pid, NULL, 0);
  p->pid = 0;
}

/* The files of Secret ns/name in a directory (what the kubelet's secret volume shows). */
static int secret_dir(kemu *e, const char *ns, const char *name, char *dir, size_t cap) {
  kobj *o = NULL;
  for (int i = 0; i < e->n_objs; i++)
    if (!strcmp(RES[e->objs[i].res].plural, "secrets") && !strcmp(e->objs[i].ns, ns) &&
        !strcmp(e->objs[i].name, name))
      o = &e->objs[i];
  if (!o) return -1;
  snprintf(dir, cap, "%s/secrets/%s-%s", e->o.kubelet_dir, ns, name);
  mkdirs(dir);
  const cJSON *kv;
  cJSON_ArrayForEach(kv, jget(o->obj, "data")) {
    if (!cJSON_IsString(kv) || strchr(kv->string, '/')) continue;
    size_t n = strlen(kv->valuestring);
    unsigned char *out = malloc(n / 4 * 3 + 4);
    int got = out ? EVP_DecodeBlock(out, (const unsigned char *)kv->valuestring, (int)n) : -1;
    if (got >= 0) {
      if (n >= 1 && kv->valuestring[n - 1] == '=') got--;
      if (n >= 2 && kv->valuestring[n - 2] == '=') got--;
      char path[4400];
      snprintf(path, sizeof path, "%s/%s", dir, kv->string);
      int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd >= 0) {
        if (write(fd, out, (size_t)got) < 0) {
        }
        close(fd);
      }
    }
    free(out);
  }
  return 0;
}

/* Run the Deployment's first container for node n (InternalIP ip). */
static int pod_spawn(kemu *e, kobj *d, kobj *n, kpod *p) {
  const cJSON *ps = jget(jget(jget(d->obj, "spec"), "template"), "spec");
  const cJSON *c = cJSON_GetArrayItem(jget(ps, "containers"), 0);
  const char *ip = "127.0.0.1";
  const cJSON *a;
  cJSON_ArrayForEach(a, jget(jget(n->obj, "status"), "addresses")) {
    const char *t = jstr(a, "type");
    if (t && !strcmp(t, "InternalIP") && jstr(a, "address")) ip = jstr(a, "address");
  }
  /* mounts: mountPath -> host directory */
  char mp[16][256], hd[16][4096];
  int nm = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, jget(c, "volumeMounts")) {
    const char *vn = jstr(m, "name"), *path = jstr(m, "mountPath");
    if (!vn || !path || nm == 16) continue;
    const cJSON *v, *vol = NULL;
    cJSON_ArrayForEach(v, jget(ps, "volumes")) if (jstr(v, "name") && !strcmp(jstr(v, "name"), vn)) vol = v;
    if (!vol) continue;
    snprintf(mp[nm], sizeof mp[nm], "%s", path);
    if (jget(vol, "secret")) {
      const char *sn = jstr(jget(vol, "secret"), "secretName");
      if (!sn || secret_dir(e, d->ns, sn, hd[nm], sizeof hd[nm]) < 0) return -1; /* kubelet waits for it */
    } else {
      snprintf(hd[nm], sizeof hd[nm], "%s/pods/%s/%s", e->o.kubelet_dir, p->name, vn);
      mkdirs(hd[nm]);
    }
    nm++;
  }
  /* environment for $(VAR) */
  char env[32][2][256];
  int ne = 0;
  const cJSON *ev;
  cJSON_ArrayForEach(ev, jget(c, "env")) {
    const char *name = jstr(ev, "name"), *val = jstr(ev, "value");
    const char *fp = jstr(jget(jget(ev, "valueFrom"), "fieldRef"), "fieldPath");
    if (!name || ne == 32) continue;
    if (fp) val = !strcmp(fp, "spec.nodeName") ? n->name : !strcmp(fp, "metadata.name") ? p->name
                  : !strcmp(fp, "metadata.namespace") ? d->ns : "";
    snprintf(env[ne][0], 256, "%s", name);
    snprintf(env[ne][1], 256, "%.255s", val ? val : "");
    ne++;
  }
  char *argv[64];
  int na = 0;
  argv[na++] = strdup(e->o.kubelet_exe);
  int host_net = cJSON_IsTrue(jget(ps, "hostNetwork"));
  cJSON_ArrayForEach(a, jget(c, "args")) {
    if (!cJSON_IsString(a) || na == 62) continue;
    char b[4096] = "", *o = b;
    for (const char *q = a->valuestring; *q && o < b + sizeof b - 300;) { /* $(VAR) */
      const char *end;
      if (q[0] == '$' && q[1] == '(' && (end = strchr(q, ')'))) {
        int hit = 0;
        for (int k = 0; k < ne; k++)
          if ((size_t)(end - q - 2) == strlen(env[k][0]) && !strncmp(q + 2, env[k][0], (size_t)(end - q - 2))) {
            o += snprintf(o, 256, "%s", env[k][1]);
            hit = 1;
          }
        if (hit) {
          q = end + 1;
          continue;
        }
      }
      *o++ = *q++;
    }
    *o = 0;
    char out[4400];
    snprintf(out, sizeof out, "%s", b);
    for (int k = 0; k < nm; k++) {
      size_t l = strlen(mp[k]);
      if (!strncmp(b, mp[k], l) && (b[l] == 0 || b[l] == '/')) snprintf(out, sizeof out, "%.2000s%.2000s", hd[k], b + l);
    }
    if (host_net && !strncmp(out, "0.0.0.0:", 8)) {
      char t[4400];
      snprintf(t, sizeof t, "%.64s:%.4000s", ip, out + 8);
      snprintf(out, sizeof out, "%s", t);
    }
    argv[na++] = strdup(out);
  }
  argv[na] = NULL;
  char log[4400];
  snprintf(log, sizeof log, "%s/pods/%s.log", e->o.kubelet_dir, p->name);
  mkdirs(e->o.kubelet_dir);
  char pods[4200];
  snprintf(pods, sizeof pods, "%s/pods", e->o.kubelet_dir);
  mkdirs(pods);
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    int nul = open("/dev/null", O_RDONLY);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    if (nul >= 0) dup2(nul, 0);
    execv(argv[0], argv);
    _exit(127);
  }
  for (int k = 0; k < na; k++) free(argv[k]);
  if (pid < 0) return -1;
  p->pid = pid;
  if (!e->o.quiet) fprintf(stderr, "kubeemu: kubelet: started %s on %s (pid %d)\n", p->name, n->name, (int)pid);
  return 0;
}

static kpod *pod_find(kemu *e, const char *ns, const char *deploy) {
  for (int i = 0; i < e->n_pods; i++)
    if (!strcmp(e->pods[i].ns, ns) && !strcmp(e->pods[i].deploy, deploy)) return &e->pods[i];
  return NULL;
}
static void pod_remove(kemu *e, kpod *p, int hard) {
  pod_stop(p, hard);
  *p = e->pods[--e->n_pods];
}

/* The pod of Deployment d should (want) or should not run on node n: make it so. Returns 1
 * when its process runs. */
static int kubelet_sync(kemu *e, kobj *d, kobj *n, int want) {
  kpod *p = pod_find(e, d->ns, d->name);
  char *tpl = cJSON_PrintUnformatted(jget(jget(d->obj, "spec"), "template"));
  uint32_t h = fnv(n ? n->name : "", fnv(tpl ? tpl : "", 2166136261u));
  free(tpl);
  if (p && (!want || p->hash != h)) { /* Recreate: the old one goes first */
    pod_remove(e, p, 0);
    p = NULL;
  }
  if (!want) return 0;
  if (!p) {
    if (e->n_pods == e->cap_pods) {
      int nc = e->cap_pods ? 2 * e->cap_pods : 16;
      kpod *np = realloc(e->pods, (size_t)nc * sizeof *np);
      if (!np) return 0;
      e->pods = np;
      e->cap_pods = nc;
    }
    p = &e->pods[e->n_pods++];
    memset(p, 0, sizeof *p);
    snprintf(p->ns, sizeof p->ns, "%s", d->ns);
    snprintf(p->deploy, sizeof p->deploy, "%s", d->name);
    snprintf(p->node, sizeof p->node, "%s", n->name);
    snprintf(p->name, sizeof p->name, "%.240s-%08x", d->name, h);
    p->hash = h;
  }
  if (p->pid == 0 && now_s() >= p->restart_at && pod_spawn(e, d, n, p) < 0) p->restart_at = now_s() + 1;
  return p->pid > 0;
}

/* A node died: its processes go at once. */
static void kubelet_node_down(kemu *e, const char *node) {
  for (int i = e->n_pods - 1; i >= 0; i--)
    if (!strcmp(e->pods[i].node, node)) pod_remove(e, &e->pods[i], 1);
}

static void sim_all(kemu *e);

/* Restart processes that exited (restartPolicy Always, back-off from 0.2 s to 5 s). */
static void *kubelet_main(void *arg) {
  kemu *e = arg;
  pthread_mutex_lock(&e->mu);
  while (!e->stopping) {
    int changed = 0;
    for (int i = 0; i < e->n_pods; i++) {
      kpod *p = &e->pods[i];
      int st;
      if (p->pid > 0 && waitpid(p->pid, &st, WNOHANG) == p->pid) {
        if (!e->o.quiet) fprintf(stderr, "kubeemu: kubelet: %s exited (status %d)\n", p->name, st);
        p->pid = 0;
        double b = 0.2 * (1 << (p->restarts < 5 ? p->restarts : 5));
        p->restart_at = now_s() + (b > 5 ? 5 : b);
        p->restarts++;
        changed = 1;
      }
      if (p->pid == 0 && now_s() >= p->restart_at) changed = 1;
    }
    if (changed) sim_all(e);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&e->cv, &e->mu, &ts);
  }
  pthread_mutex_unlock(&e->mu);
  return NULL;
}

/* What the Deployment controller and the scheduler would report: available when the pinned node
 * exists, is Ready and has the memory the pod requests. */
static void sim_deployment(kemu *e, kobj *o) {
  const cJSON *spec = jget(o->obj, "spec");
  const cJSON *rep = jget(spec, "replicas");
  int replicas = cJSON_IsNumber(rep) ? rep->valueint : 1;
  const char *host = pinned_host(o->obj);
  int avail = 0;
  kobj *node = NULL;
  char why[300] = "no node matches the pod's node affinity";
  for (int i = 0; i < e->n_objs && host; i++) {
    kobj *n = &e->objs[i];
    if (n->res != R_NODES) continue;
    const char *h = jstr(jget(jget(n->obj, "metadata"), "labels"), "kubernetes.io/hostname");
    if (!h || strcmp(h, host)) continue;
    const cJSON *rc = node_condition(n->obj, "Ready");
    const char *rs = jstr(rc, "status");
    if (!rs || strcmp(rs, "True")) {
      snprintf(why, sizeof why, "node %s is not ready", n->name);
      break;
    }
    int64_t need = 0, have = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, jget(jget(jget(spec, "template"), "spec"), "containers")) {
      const char *q = jstr(jget(jget(c, "resources"), "requests"), "memory");
      int64_t b = 0;
      if (q && sf__k8s_quantity_bytes(q, &b, NULL) == 0) need += b;
    }
    const char *am = jstr(jget(jget(n->obj, "status"), "allocatable"), "memory");
    if (am && sf__k8s_quantity_bytes(am, &have, NULL) == 0 && need > have) {
      snprintf(why, sizeof why, "0/1 nodes are available: 1 Insufficient memory (%.200s)", n->name);
      break;
    }
    avail = 1;
    node = n;
  }
  if (e->o.kubelet_exe && avail && replicas > 0) {
    avail = kubelet_sync(e, o, node, 1);
    if (!avail) snprintf(why, sizeof why, "the pod's container is not running");
  } else if (e->o.kubelet_exe) {
    kubelet_sync(e, o, node, 0);
  }
  if (replicas == 0) avail = 1;
  cJSON *st = cJSON_CreateObject();
  const cJSON *g = jget(jget(o->obj, "metadata"), "generation");
  cJSON_AddNumberToObject(st, "observedGeneration", cJSON_IsNumber(g) ? g->valuedouble : 1);
  if (replicas > 0) {
    cJSON_AddNumberToObject(st, "replicas", replicas);
    cJSON_AddNumberToObject(st, "updatedReplicas", replicas);
    if (avail) {
      cJSON_AddNumberToObject(st, "readyReplicas", replicas);
      cJSON_AddNumberToObject(st, "availableReplicas", replicas);
    } else
      cJSON_AddNumberToObject(st, "unavailableReplicas", replicas);
  }
  cJSON *conds = cJSON_AddArrayToObject(st, "conditions");
  char t[40];
  rfc3339(t, sizeof t);
  cJSON *a = cJSON_CreateObject();
  cJSON_AddStringToObject(a, "type", "Available");
  cJSON_AddStringToObject(a, "status", avail ? "True" : "False");
  cJSON_AddStringToObject(a, "reason",
                          avail ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable");
  cJSON_AddStringToObject(a, "message", avail ? "Deployment has minimum availability." : why);
  cJSON_AddItemToArray(conds, a);
  cJSON *p = cJSON_CreateObject();
  cJSON_AddStringToObject(p, "type", "Progressing");
  cJSON_AddStringToObject(p, "status", "True");
  cJSON_AddStringToObject(p, "reason", avail ? "NewReplicaSetAvailable" : "ReplicaSetUpdated");
  cJSON_AddStringToObject(
      p, "message",
      avail ? "ReplicaSet has successfully progressed." : "ReplicaSet is progressing.");
  cJSON_AddItemToArray(conds, p);
  cJSON *cur = cJSON_Duplicate(jget(o->obj, "status"), 1), *cmp = cJSON_Duplicate(st, 1);
  strip_times(cur);
  strip_times(cmp);
  int same = cur && cJSON_Compare(cur, cmp, 1);
  cJSON_Delete(cur);
  cJSON_Delete(cmp);
  if (same) {
    cJSON_Delete(st);
    return;
  }
  cJSON *x;
  cJSON_ArrayForEach(x, conds) {
    cJSON_AddStringToObject(x, "lastUpdateTime", t);
    cJSON_AddStringToObject(x, "lastTransitionTime", t);
  }
  cJSON *obj = cJSON_Duplicate(o->obj, 1);
  jset(obj, "status", st);
  manage_update(o->obj, obj, "kube-controller-manager", SC_STATUS, "apps/v1");
  commit(e, o, obj);
}
static void sim_all(kemu *e) {
  for (int i = 0; i < e->n_objs; i++)
    if (e->objs[i].res == R_DEPLOYMENTS) sim_deployment(e, &e->objs[i]);
  for (int i = e->n_pods - 1; i >= 0; i--) /* pods of deleted Deployments */
    if (!find(e, R_DEPLOYMENTS, e->pods[i].ns, e->pods[i].deploy)) pod_remove(e, &e->pods[i], 0);
}

/* ---- server-side apply
 * ------------------------------------------------------------------------------ */
typedef struct apply_ctx {
  cJSON *live, *cfg, *mine, *conflicts;
  const char *manager;
  int force;
  cJSON *newset;
} apply_ctx;

static void apply_conflict_leaf(const fpath *p, void *ud) {
  apply_ctx *a = ud;
  const cJSON *lv = value_at(a->live, p), *cv = value_at(a->cfg, p);
  if (!lv || !cv || cJSON_Compare(lv, cv, 1)) return;
  cJSON *e;
  cJSON_ArrayForEach(e, jget(jget(a->live, "metadata"), "managedFields")) {
    if (e == a->mine) continue;
    cJSON *f = jget(e, "fieldsV1");
    if (!f || !fs_overlap(f, p)) continue;
    if (a->force) {
      fs_remove(f, p);
      continue;
    }
    char ps[600];
    path_str(p, ps, sizeof ps);
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "reason", "FieldManagerConflict");
    char m[800];
    snprintf(m, sizeof m, "conflict with \"%s\" using %s",
             jstr(e, "manager") ? jstr(e, "manager") : "",
             jstr(e, "apiVersion") ? jstr(e, "apiVersion") : "");
    cJSON_AddStringToObject(c, "message", m);
    cJSON_AddStringToObject(c, "field", ps);
    cJSON_AddItemToArray(a->conflicts, c);
  }
}

static void apply_removed_leaf(const fpath *p, void *ud) {
  apply_ctx *a = ud;
  if (fs_overlap(a->newset, p)) return;
  cJSON *e;
  cJSON_ArrayForEach(e, jget(jget(a->live, "metadata"), "managedFields")) {
    if (e == a->mine) continue;
    cJSON *f = jget(e, "fieldsV1");
    if (f && fs_overlap(f, p)) return; /* someone else still owns it */
  }
  delete_at(a->live, p);
  /* maps left empty that nobody owns as such go too */
  for (int n = p->n - 1; n >= 1; n--) {
    fpath q = *p;
    q.n = n;
    const cJSON *v = value_at(a->live, &q);
    if (!cJSON_IsObject(v) || v->child) break;
    int owned = 0;
    cJSON_ArrayForEach(e, jget(jget(a->live, "metadata"), "managedFields")) {
      const cJSON *node = jget(e, "fieldsV1");
      for (int i = 0; node && i < n; i++) {
        char k[512];
        fkey(k, sizeof k, q.k[i]);
        node = cJSON_GetObjectItemCaseSensitive(node, k);
      }
      if (node && !node->child && e != a->mine) owned = 1;
    }
    if (owned || fs_overlap(a->newset, &q)) break;
    delete_at(a->live, &q);
  }
}

/* ---- requests
 * ------------------------------------------------------------------------------------ */
typedef struct req {
  kemu *e;
  struct MHD_Connection *mc;
  char method[8];
  char *body;
  size_t len, cap;
  int too_big;
  /* route */
  int res;
  int collection, all_ns;
  char ns[64], name[256], sub[16];
} req;

static const char *qarg(req *q, const char *k) {
  return MHD_lookup_connection_value(q->mc, MHD_GET_ARGUMENT_KIND, k);
}
static int qtrue(req *q, const char *k) {
  const char *v = qarg(q, k);
  return v && (!strcmp(v, "1") || !strcmp(v, "true"));
}
static const char *qheader(req *q, const char *k) {
  return MHD_lookup_connection_value(q->mc, MHD_HEADER_KIND, k);
}

static cJSON *not_found(const kres *r, const char *name, int *code) {
  char qn[128];
  qual(r, qn, sizeof qn);
  cJSON *s = status_obj(404, "NotFound", "%s \"%s\" not found", qn, name);
  status_details(s, r, name);
  *code = 404;
  return s;
}
static cJSON *bad(int c, const char *reason, const char *msg, int *code) {
  *code = c;
  return status_obj(c, reason, "%s", msg);
}
static cJSON *invalid(const kres *r, const char *name, const char *why, int *code) {
  *code = 422;
  cJSON *s = status_obj(422, "Invalid", "%s \"%s\" is invalid: %s", r->kind, name, why);
  status_details(s, r, name);
  return s;
}

static cJSON *parse_body(req *q, int *code, cJSON **errobj) {
  cJSON *b = q->body ? cJSON_ParseWithLength(q->body, q->len) : NULL;
  if (!cJSON_IsObject(b)) {
    cJSON_Delete(b);
    *errobj =
        bad(400, "BadRequest",
            "the body is not a JSON object (the emulator reads YAML only in its JSON form)", code);
    return NULL;
  }
  return b;
}

/* kind/apiVersion of a body (when present) against the resource */
static const char *check_kind(const kres *r, const cJSON *b, char *msg, size_t cap) {
  char av[128];
  api_version(r, av, sizeof av);
  const char *bav = jstr(b, "apiVersion"), *bk = jstr(b, "kind");
  if (bav && strcmp(bav, av))
    return snprintf(msg, cap,
                    "the API version in the data (%s) does not match the expected API version (%s)",
                    bav, av),
           msg;
  if (bk && strcmp(bk, r->kind))
    return snprintf(msg, cap, "the kind in the data (%s) does not match the expected kind (%s)", bk,
                    r->kind),
           msg;
  return NULL;
}

static int ns_exists(kemu *e, const char *ns) {
  return find(e, R_NAMESPACES, "", ns) != NULL;
}

static const char *manager_of(req *q) {
  const char *fm = qarg(q, "fieldManager");
  if (fm && *fm) return fm;
  const char *ua = qheader(q, "User-Agent");
  static __thread char b[64];
  if (ua && *ua) {
    size_t n = strcspn(ua, "/ ");
    if (n >= sizeof b) n = sizeof b - 1;
    memcpy(b, ua, n);
    b[n] = 0;
    return b;
  }
  return "unknown";
}

static cJSON *h_get(kemu *e, req *q, const kres *r, int *code) {
  kobj *o = find(e, q->res, q->ns, q->name);
  if (!o) return not_found(r, q->name, code);
  *code = 200;
  return cJSON_Duplicate(o->obj, 1);
}

static int field_match(const char *fsel, const kobj *o) {
  if (!fsel || !*fsel) return 1;
  char b[600];
  snprintf(b, sizeof b, "%s", fsel);
  for (char *save = NULL, *p = strtok_r(b, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(p, '=');
    if (!eq) return 0;
    *eq = 0;
    const char *v = eq[1] == '=' ? eq + 2 : eq + 1;
    if (!strcmp(p, "metadata.name") && strcmp(o->name, v)) return 0;
    if (!strcmp(p, "metadata.namespace") && strcmp(o->ns, v)) return 0;
  }
  return 1;
}

static int fsel_ok(const char *fsel) {
  if (!fsel || !*fsel) return 1;
  char b[600];
  snprintf(b, sizeof b, "%s", fsel);
  for (char *save = NULL, *p = strtok_r(b, ",", &save); p; p = strtok_r(NULL, ",", &save))
    if (strncmp(p, "metadata.name=", 14) && strncmp(p, "metadata.namespace=", 19)) return 0;
  return 1;
}

static cJSON *h_list(kemu *e, req *q, const kres *r, int *code) {
  selector s;
  if (sel_parse(qarg(q, "labelSelector"), &s) < 0)
    return bad(400, "BadRequest",
               "unable to parse requirement: the emulator knows =, ==, != and existence", code);
  const char *fsel = qarg(q, "fieldSelector");
  if (!fsel_ok(fsel)) return bad(400, "BadRequest", "field label not supported", code);
  const char *rvs = qarg(q, "resourceVersion");
  if (rvs && *rvs && strtoll(rvs, NULL, 10) > e->rv) {
    *code = 504;
    cJSON *st =
        status_obj(504, "Timeout", "Too large resource version: %s, current: %" PRId64, rvs, e->rv);
    return st;
  }
  cJSON *l = cJSON_CreateObject();
  char av[128], kind[80], rv[32];
  api_version(r, av, sizeof av);
  snprintf(kind, sizeof kind, "%sList", r->kind);
  cJSON_AddStringToObject(l, "kind", kind);
  cJSON_AddStringToObject(l, "apiVersion", av);
  cJSON *md = cJSON_AddObjectToObject(l, "metadata");
  snprintf(rv, sizeof rv, "%" PRId64, e->rv);
  cJSON_AddStringToObject(md, "resourceVersion", rv);
  cJSON *items = cJSON_AddArrayToObject(l, "items");
  for (int i = 0; i < e->n_objs; i++) {
    kobj *o = &e->objs[i];
    if (o->res != q->res || (r->namespaced && !q->all_ns && strcmp(o->ns, q->ns))) continue;
    if (!sel_match(&s, o->obj) || !field_match(fsel, o)) continue;
    cJSON *it = cJSON_Duplicate(o->obj, 1);
    if (r->builtin) {
      cJSON_DeleteItemFromObjectCaseSensitive(it, "kind");
      cJSON_DeleteItemFromObjectCaseSensitive(it, "apiVersion");
    }
    cJSON_AddItemToArray(items, it);
  }
  *code = 200;
  return l;
}

static cJSON *h_create(kemu *e, req *q, const kres *r, int *code) {
  cJSON *err = NULL;
  cJSON *b = parse_body(q, code, &err);
  if (!b) return err;
  char msg[600];
  if (check_kind(r, b, msg, sizeof msg)) {
    cJSON_Delete(b);
    return bad(400, "BadRequest", msg, code);
  }
  cJSON *md = jobj(b, "metadata");
  const char *name = jstr(md, "name");
  const char *bns = jstr(md, "namespace");
  if (r->namespaced && bns && strcmp(bns, q->ns)) {
    cJSON_Delete(b);
    return bad(
        400, "BadRequest",
        "the namespace of the provided object does not match the namespace sent on the request",
        code);
  }
  if (validate(r, b, msg, sizeof msg)) {
    cJSON *s = invalid(r, name ? name : "", msg, code);
    cJSON_Delete(b);
    return s;
  }
  if (r->namespaced && !ns_exists(e, q->ns)) {
    cJSON_Delete(b);
    return not_found(&RES[R_NAMESPACES], q->ns, code);
  }
  if (find(e, q->res, q->ns, name)) {
    char qn[128];
    qual(r, qn, sizeof qn);
    cJSON *s = status_obj(409, "AlreadyExists", "%s \"%s\" already exists", qn, name);
    status_details(s, r, name);
    cJSON_Delete(b);
    *code = 409;
    return s;
  }
  cJSON_DeleteItemFromObjectCaseSensitive(md, "managedFields");
  cJSON_DeleteItemFromObjectCaseSensitive(md, "resourceVersion");
  if (r->status_sub && q->res != R_NODES) cJSON_DeleteItemFromObjectCaseSensitive(b, "status");
  char av[128];
  api_version(r, av, sizeof av);
  manage_update(NULL, b, manager_of(q), r->status_sub && q->res != R_NODES ? SC_MAIN : SC_ALL, av);
  kobj *o = create_obj(e, q->res, q->ns, b);
  if (!o) return bad(500, "InternalError", "out of memory", code);
  *code = 201;
  return cJSON_Duplicate(o->obj, 1);
}

/* The object an update (PUT or merge patch) proposes, from the live one and the request. */
static cJSON *h_update(kemu *e, req *q, const kres *r, int patch, int *code) {
  cJSON *err = NULL;
  cJSON *b = parse_body(q, code, &err);
  if (!b) return err;
  char msg[600];
  const char *bn = jstr(jget(b, "metadata"), "name");
  if (!patch && (check_kind(r, b, msg, sizeof msg) || (bn && strcmp(bn, q->name)))) {
    if (bn && strcmp(bn, q->name))
      snprintf(msg, sizeof msg,
               "the name of the object (%s) does not match the name on the URL (%s)", bn, q->name);
    cJSON_Delete(b);
    return bad(400, "BadRequest", msg, code);
  }
  kobj *o = find(e, q->res, q->ns, q->name);
  if (!o) {
    cJSON_Delete(b);
    return not_found(r, q->name, code);
  }
  const char *brv = jstr(jget(b, "metadata"), "resourceVersion");
  if (brv && *brv && strtoll(brv, NULL, 10) != rv_of(o->obj)) {
    char qn[128];
    qual(r, qn, sizeof qn);
    cJSON *s = status_obj(409, "Conflict",
                          "Operation cannot be fulfilled on %s \"%s\": the object has been "
                          "modified; please apply your changes to the latest version and try again",
                          qn, q->name);
    status_details(s, r, q->name);
    cJSON_Delete(b);
    e->n_conflicts++;
    *code = 409;
    return s;
  }
  int status = !strcmp(q->sub, "status");
  cJSON *n = cJSON_Duplicate(o->obj, 1);
  if (patch) {
    cJSON_DeleteItemFromObjectCaseSensitive(b, "apiVersion");
    cJSON_DeleteItemFromObjectCaseSensitive(b, "kind");
    cJSON *bm = jget(b, "metadata");
    if (bm) {
      const char *sys[] = {"name",       "namespace",         "uid",          "resourceVersion",
                           "generation", "creationTimestamp", "managedFields"};
      for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(bm, sys[i]);
    }
    if (status) {
      cJSON *st = cJSON_DetachItemFromObjectCaseSensitive(b, "status");
      cJSON_Delete(b);
      b = cJSON_CreateObject();
      if (st) cJSON_AddItemToObject(b, "status", st);
    } else if (r->status_sub)
      cJSON_DeleteItemFromObjectCaseSensitive(b, "status");
    merge_patch(n, b);
  } else if (status) {
    cJSON *st = cJSON_DetachItemFromObjectCaseSensitive(b, "status");
    if (st)
      jset(n, "status", st);
    else
      cJSON_DeleteItemFromObjectCaseSensitive(n, "status");
  } else {
    cJSON *keep = cJSON_Duplicate(o->obj, 1);
    cJSON_Delete(n);
    n = cJSON_Duplicate(b, 1);
    cJSON *nm = jobj(n, "metadata"), *om = jget(keep, "metadata");
    const char *sys[] = {"name",           "namespace",         "uid",
                         "generation",     "creationTimestamp", "managedFields",
                         "resourceVersion"};
    for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++) {
      cJSON_DeleteItemFromObjectCaseSensitive(nm, sys[i]);
      cJSON *v = jget(om, sys[i]);
      if (v) cJSON_AddItemToObject(nm, sys[i], cJSON_Duplicate(v, 1));
    }
    jset(n, "apiVersion", cJSON_Duplicate(jget(keep, "apiVersion"), 1));
    jset(n, "kind", cJSON_Duplicate(jget(keep, "kind"), 1));
    if (r->status_sub) {
      cJSON_DeleteItemFromObjectCaseSensitive(n, "status");
      cJSON *st = jget(keep, "status");
      if (st) cJSON_AddItemToObject(n, "status", cJSON_Duplicate(st, 1));
    }
    cJSON_Delete(keep);
  }
  cJSON_Delete(b);
  if (validate(r, n, msg, sizeof msg) || immutable(r, o->obj, n, msg, sizeof msg)) {
    cJSON_Delete(n);
    return invalid(r, q->name, msg, code);
  }
  char av[128];
  api_version(r, av, sizeof av);
  manage_update(o->obj, n, manager_of(q),
                status          ? SC_STATUS
                : r->status_sub ? SC_MAIN
                                : SC_ALL,
                av);
  commit(e, o, n);
  *code = 200;
  return cJSON_Duplicate(o->obj, 1);
}

static cJSON *h_apply(kemu *e, req *q, const kres *r, int *code) {
  const char *fm = qarg(q, "fieldManager");
  if (!fm || !*fm)
    return bad(400, "BadRequest",
               "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is "
               "required for apply patch",
               code);
  const char *fv = qarg(q, "force");
  if (fv && strcmp(fv, "true") && strcmp(fv, "false"))
    return bad(400, "BadRequest", "force: Invalid value: must be true or false", code);
  int force = fv && !strcmp(fv, "true");
  cJSON *err = NULL;
  cJSON *cfg = parse_body(q, code, &err);
  if (!cfg) return err;
  e->n_applies++;
  char msg[600];
  if (!jstr(cfg, "apiVersion") || !jstr(cfg, "kind")) {
    cJSON_Delete(cfg);
    return bad(400, "BadRequest", "apiVersion and kind must be set in an apply configuration",
               code);
  }
  const char *bn = jstr(jget(cfg, "metadata"), "name"),
             *bns = jstr(jget(cfg, "metadata"), "namespace");
  if (check_kind(r, cfg, msg, sizeof msg) || (bn && strcmp(bn, q->name)) ||
      (r->namespaced && bns && strcmp(bns, q->ns))) {
    if (bn && strcmp(bn, q->name))
      snprintf(msg, sizeof msg,
               "the name of the object (%s) does not match the name on the URL (%s)", bn, q->name);
    else if (r->namespaced && bns && strcmp(bns, q->ns))
      snprintf(
          msg, sizeof msg,
          "the namespace of the provided object does not match the namespace sent on the request");
    cJSON_Delete(cfg);
    return bad(400, "BadRequest", msg, code);
  }
  int status = !strcmp(q->sub, "status");
  int sc = status ? SC_STATUS : r->status_sub ? SC_MAIN : SC_ALL;
  cJSON *scfg = scoped(cfg, sc);
  cJSON_Delete(cfg);
  cJSON *newset = fs_of(scfg);
  char av[128];
  api_version(r, av, sizeof av);
  kobj *o = find(e, q->res, q->ns, q->name);
  cJSON *out = NULL;
  if (!o) {
    if (status) {
      out = not_found(r, q->name, code);
      goto done;
    }
    if (r->namespaced && !ns_exists(e, q->ns)) {
      out = not_found(&RES[R_NAMESPACES], q->ns, code);
      goto done;
    }
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddItemToObject(jobj(obj, "metadata"), "name", cJSON_CreateString(q->name));
    merge_into(obj, scfg);
    if (validate(r, obj, msg, sizeof msg)) {
      cJSON_Delete(obj);
      out = invalid(r, q->name, msg, code);
      goto done;
    }
    cJSON *mine = mf_entry(obj, fm, "Apply", "", 1, av);
    jset(mine, "fieldsV1", cJSON_Duplicate(newset, 1));
    mf_prune(obj);
    o = create_obj(e, q->res, q->ns, obj);
    if (!o) {
      out = bad(500, "InternalError", "out of memory", code);
      goto done;
    }
    *code = 201;
    out = cJSON_Duplicate(o->obj, 1);
    goto done;
  }
  cJSON *live = cJSON_Duplicate(o->obj, 1);
  apply_ctx a = {live,
                 scfg,
                 mf_entry(live, fm, "Apply", status ? "status" : "", 0, av),
                 cJSON_CreateArray(),
                 fm,
                 force,
                 newset};
  fs_leaves(newset, apply_conflict_leaf, &a);
  int nc = cJSON_GetArraySize(a.conflicts);
  if (nc > 0) {
    char m[2048];
    size_t off =
        (size_t)snprintf(m, sizeof m, "Apply failed with %d conflict%s:", nc, nc > 1 ? "s" : "");
    const cJSON *c;
    cJSON_ArrayForEach(c, a.conflicts) if (off < sizeof m) off +=
        (size_t)snprintf(m + off, sizeof m - off, " %s: %s;", jstr(c, "message"), jstr(c, "field"));
    if (off > 0 && off < sizeof m && m[off - 1] == ';') m[off - 1] = 0;
    out = status_obj(409, "Conflict", "%s", m);
    cJSON *d = jobj(out, "details");
    cJSON_AddStringToObject(d, "name", q->name);
    if (r->group[0]) cJSON_AddStringToObject(d, "group", r->group);
    cJSON_AddStringToObject(d, "kind", r->plural);
    cJSON_AddItemToObject(d, "causes", a.conflicts);
    a.conflicts = NULL;
    e->n_conflicts++;
    *code = 409;
    cJSON_Delete(live);
    goto done;
  }
  cJSON_Delete(a.conflicts);
  if (a.mine) {
    cJSON *prev = cJSON_Duplicate(jget(a.mine, "fieldsV1"), 1);
    fs_leaves(prev, apply_removed_leaf, &a);
    cJSON_Delete(prev);
  }
  merge_into(live, scfg);
  cJSON *mine = mf_entry(live, fm, "Apply", status ? "status" : "", 1, av);
  if (!cJSON_Compare(jget(mine, "fieldsV1"), newset, 1)) {
    jset(mine, "fieldsV1", cJSON_Duplicate(newset, 1));
    mf_touch(mine);
  }
  mf_prune(live);
  if (validate(r, live, msg, sizeof msg) || immutable(r, o->obj, live, msg, sizeof msg)) {
    cJSON_Delete(live);
    out = invalid(r, q->name, msg, code);
    goto done;
  }
  commit(e, o, live);
  *code = 200;
  out = cJSON_Duplicate(o->obj, 1);
done:
  cJSON_Delete(scfg);
  cJSON_Delete(newset);
  return out;
}

static cJSON *h_delete(kemu *e, req *q, const kres *r, int *code) {
  kobj *o = find(e, q->res, q->ns, q->name);
  if (!o) return not_found(r, q->name, code);
  e->rv++;
  set_rv(o->obj, e->rv);
  emit(e, o->res, "DELETED", o->ns, o->obj);
  cJSON *s = status_obj(200, NULL, "deleted");
  status_details(s, r, q->name);
  const char *uid = jstr(jget(o->obj, "metadata"), "uid");
  if (uid) cJSON_AddStringToObject(jget(s, "details"), "uid", uid);
  cJSON_DeleteItemFromObjectCaseSensitive(s, "message");
  store_del(e, o);
  *code = 200;
  return s;
}

/* ---- watch
 * ------------------------------------------------------------------------------------------- */
typedef struct watch {
  kemu *e;
  int res, all_ns;
  char ns[64];
  selector sel;
  char fsel[256];
  int64_t pos; /* every event up to pos has been considered */
  int bookmarks;
  double next_bm, deadline;
  uint64_t expire_gen, bm_gen;
  int finish;
  char *out;
  size_t len, off, cap;
} watch;

static void w_append(watch *w, const char *s) {
  size_t n = strlen(s);
  if (w->len + n + 1 > w->cap) {
    size_t nc = (w->len + n + 1) * 2;
    char *b = realloc(w->out, nc);
    if (!b) return;
    w->out = b;
    w->cap = nc;
  }
  memcpy(w->out + w->len, s, n);
  w->len += n;
  w->out[w->len++] = '\n';
}
static void w_event(watch *w, const char *type, const cJSON *obj) {
  cJSON *ev = cJSON_CreateObject();
  cJSON_AddStringToObject(ev, "type", type);
  cJSON_AddItemToObject(ev, "object", cJSON_Duplicate(obj, 1));
  char *s = cJSON_PrintUnformatted(ev);
  if (s) w_append(w, s);
  free(s);
  cJSON_Delete(ev);
}
static int w_matches(const watch *w, int res, const char *ns, const cJSON *obj) {
  if (res != w->res) return 0;
  if (RES[res].namespaced && !w->all_ns && strcmp(ns, w->ns)) return 0;
  if (!sel_match(&w->sel, obj)) return 0;
  if (w->fsel[0]) {
    kobj tmp = {.res = res};
    snprintf(tmp.ns, sizeof tmp.ns, "%s", ns);
    const char *nm = jstr(jget(obj, "metadata"), "name");
    snprintf(tmp.name, sizeof tmp.name, "%s", nm ? nm : "");
    if (!field_match(w->fsel, &tmp)) return 0;
  }
  return 1;
}

static ssize_t watch_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  watch *w = cls;
  kemu *e = w->e;
  if (w->off == w->len) {
    w->off = w->len = 0;
    if (w->finish) return MHD_CONTENT_READER_END_OF_STREAM;
    pthread_mutex_lock(&e->mu);
    for (;;) {
      double now = now_s();
      if (e->stopping || w->expire_gen != e->expire_gen) {
        w->finish = 1;
        break;
      }
      if (w->pos < e->compacted) {
        char m[160];
        snprintf(m, sizeof m, "too old resource version: %" PRId64 " (%" PRId64 ")", w->pos,
                 e->compacted);
        cJSON *s = status_obj(410, "Expired", "%s", m);
        w_event(w, "ERROR", s);
        cJSON_Delete(s);
        e->n_gone++;
        w->finish = 1;
        break;
      }
      for (int i = 0; i < e->n_ev; i++) {
        kevent *v = &e->ev[(e->first_ev + i) % e->cap_ev];
        if (v->rv <= w->pos || !w_matches(w, v->res, v->ns, v->obj)) continue;
        w_event(w, v->type, v->obj);
      }
      w->pos = e->rv;
      if (w->len) break;
      if (w->bookmarks && (now >= w->next_bm || w->bm_gen != e->bookmark_gen)) {
        const kres *r = &RES[w->res];
        char av[128];
        api_version(r, av, sizeof av);
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "kind", r->kind);
        cJSON_AddStringToObject(b, "apiVersion", av);
        cJSON *md = cJSON_AddObjectToObject(b, "metadata");
        char rv[32];
        snprintf(rv, sizeof rv, "%" PRId64, e->rv);
        cJSON_AddStringToObject(md, "resourceVersion", rv);
        w_event(w, "BOOKMARK", b);
        cJSON_Delete(b);
        w->bm_gen = e->bookmark_gen;
        w->next_bm = now + (e->o.bookmark_ms > 0 ? e->o.bookmark_ms : 1000) / 1000.0;
        e->n_bookmarks++;
        break;
      }
      if (now >= w->deadline) {
        w->finish = 1;
        break;
      }
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 100 * 1000 * 1000;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&e->cv, &e->mu, &ts);
    }
    pthread_mutex_unlock(&e->mu);
    if (w->len == 0) return MHD_CONTENT_READER_END_OF_STREAM;
  }
  size_t n = w->len - w->off;
  if (n > max) n = max;
  memcpy(buf, w->out + w->off, n);
  w->off += n;
  return (ssize_t)n;
}

static void watch_free(void *cls) {
  watch *w = cls;
  pthread_mutex_lock(&w->e->mu);
  w->e->n_watches--;
  pthread_mutex_unlock(&w->e->mu);
  free(w->out);
  free(w);
}

/* Start a watch (called locked); NULL with *errobj on a bad request. */
static watch *watch_new(kemu *e, req *q, int *code, cJSON **errobj) {
  watch *w = calloc(1, sizeof *w);
  if (!w) {
    *errobj = bad(500, "InternalError", "out of memory", code);
    return NULL;
  }
  w->e = e;
  w->res = q->res;
  w->all_ns = q->all_ns;
  snprintf(w->ns, sizeof w->ns, "%s", q->ns);
  const char *fsel = qarg(q, "fieldSelector");
  if (sel_parse(qarg(q, "labelSelector"), &w->sel) < 0 || !fsel_ok(fsel)) {
    free(w);
    *errobj = bad(400, "BadRequest", "unable to parse the selector", code);
    return NULL;
  }
  snprintf(w->fsel, sizeof w->fsel, "%s", fsel ? fsel : "");
  w->bookmarks = qtrue(q, "allowWatchBookmarks");
  const char *ts = qarg(q, "timeoutSeconds");
  double tmo = ts ? strtod(ts, NULL) : 1800;
  if (!(tmo > 0) || tmo > 3600) tmo = 1800;
  double now = now_s();
  w->deadline = now + tmo;
  w->next_bm = now + (e->o.bookmark_ms > 0 ? e->o.bookmark_ms : 1000) / 1000.0;
  w->expire_gen = e->expire_gen;
  w->bm_gen = e->bookmark_gen;
  const char *rvs = qarg(q, "resourceVersion");
  if (!rvs || !*rvs || !strcmp(rvs, "0")) { /* the current state as ADDED events, then changes */
    for (int i = 0; i < e->n_objs; i++) {
      kobj *o = &e->objs[i];
      if (w_matches(w, o->res, o->ns, o->obj)) w_event(w, "ADDED", o->obj);
    }
    w->pos = e->rv;
  } else {
    char *end;
    long long v = strtoll(rvs, &end, 10);
    if (*end || v < 0) {
      free(w->out);
      free(w);
      *errobj = bad(400, "BadRequest", "resourceVersion: Invalid value", code);
      return NULL;
    }
    w->pos = v;
  }
  e->n_watches++;
  e->n_watch_started++;
  return w;
}

/* ---- discovery
 * ---------------------------------------------------------------------------------------- */
static cJSON *disc_resources(const char *group, const char *version) {
  cJSON *l = NULL, *rs = NULL;
  for (int i = 0; i < N_RES; i++) {
    const kres *r = &RES[i];
    if (strcmp(r->group, group) || strcmp(r->version, version)) continue;
    if (!l) {
      l = cJSON_CreateObject();
      char gv[128];
      api_version(r, gv, sizeof gv);
      cJSON_AddStringToObject(l, "kind", "APIResourceList");
      cJSON_AddStringToObject(l, "apiVersion", "v1");
      cJSON_AddStringToObject(l, "groupVersion", gv);
      rs = cJSON_AddArrayToObject(l, "resources");
    }
    for (int s = 0; s < 1 + r->status_sub; s++) {
      cJSON *x = cJSON_CreateObject();
      char nm[96], sing[96];
      snprintf(nm, sizeof nm, "%s%s", r->plural, s ? "/status" : "");
      snprintf(sing, sizeof sing, "%s", r->kind);
      for (char *p = sing; *p; p++) *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
      cJSON_AddStringToObject(x, "name", nm);
      cJSON_AddStringToObject(x, "singularName", s ? "" : sing);
      cJSON_AddBoolToObject(x, "namespaced", r->namespaced);
      cJSON_AddStringToObject(x, "kind", r->kind);
      static const char *shorts[][3] = {{"nodes", "no", NULL},
                                        {"namespaces", "ns", NULL},
                                        {"serviceaccounts", "sa", NULL},
                                        {"services", "svc", NULL},
                                        {"configmaps", "cm", NULL},
                                        {"pods", "po", NULL},
                                        {"deployments", "deploy", NULL},
                                        {"daemonsets", "ds", NULL},
                                        {"customresourcedefinitions", "crd", "crds"},
                                        {"seifermodels", "sfm", NULL}};
      for (size_t k = 0; !s && k < sizeof shorts / sizeof shorts[0]; k++)
        if (!strcmp(shorts[k][0], r->plural))
          cJSON_AddItemToObject(x, "shortNames",
                                cJSON_CreateStringArray(shorts[k] + 1, shorts[k][2] ? 2 : 1));
      const char *verbs_main[] = {"create", "delete", "get", "list", "patch", "update", "watch"};
      const char *verbs_st[] = {"get", "patch", "update"};
      cJSON *v = cJSON_CreateStringArray(s ? verbs_st : verbs_main, s ? 3 : 7);
      cJSON_AddItemToObject(x, "verbs", v);
      cJSON_AddItemToArray(rs, x);
    }
  }
  return l;
}
static cJSON *disc_groups(void) {
  cJSON *l = cJSON_CreateObject();
  cJSON_AddStringToObject(l, "kind", "APIGroupList");
  cJSON_AddStringToObject(l, "apiVersion", "v1");
  cJSON *gs = cJSON_AddArrayToObject(l, "groups");
  for (int i = 0; i < N_RES; i++) {
    const kres *r = &RES[i];
    if (!r->group[0]) continue;
    int seen = 0;
    for (int j = 0; j < i; j++) seen |= !strcmp(RES[j].group, r->group);
    if (seen) continue;
    cJSON *g = cJSON_CreateObject();
    char gv[128];
    api_version(r, gv, sizeof gv);
    cJSON_AddStringToObject(g, "name", r->group);
    cJSON *vs = cJSON_AddArrayToObject(g, "versions");
    cJSON *v = cJSON_CreateObject();
    cJSON_AddStringToObject(v, "groupVersion", gv);
    cJSON_AddStringToObject(v, "version", r->version);
    cJSON_AddItemToArray(vs, v);
    cJSON_AddItemToObject(g, "preferredVersion", cJSON_Duplicate(v, 1));
    cJSON_AddItemToArray(gs, g);
  }
  return l;
}

/* ---- test control
 * ----------------------------------------------------------------------------------- */
static cJSON *cond(const char *type, const char *status, const char *reason, const char *msg,
                   const char *t) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "type", type);
  cJSON_AddStringToObject(c, "status", status);
  cJSON_AddStringToObject(c, "lastHeartbeatTime", t);
  cJSON_AddStringToObject(c, "lastTransitionTime", t);
  cJSON_AddStringToObject(c, "reason", reason);
  cJSON_AddStringToObject(c, "message", msg);
  return c;
}

/* POST /emu/nodes {"name", "memory", "cpu", "ready", "labels", "address"}: the kubelet registers
 * or updates its node. */
static cJSON *emu_node(kemu *e, req *q, int *code) {
  cJSON *err = NULL;
  cJSON *b = parse_body(q, code, &err);
  if (!b) return err;
  char name[256];
  const char *nm = jstr(b, "name");
  if (!nm || !dns_subdomain(nm)) {
    cJSON_Delete(b);
    return bad(400, "BadRequest", "emu: a node needs a valid \"name\"", code);
  }
  snprintf(name, sizeof name, "%s", nm);
  const char *mem = jstr(b, "memory") ? jstr(b, "memory") : "1Gi";
  const char *cpu = jstr(b, "cpu") ? jstr(b, "cpu") : "1";
  const char *addr = jstr(b, "address") ? jstr(b, "address") : "127.0.0.1";
  const cJSON *rd = jget(b, "ready");
  int ready = !rd || cJSON_IsTrue(rd);
  char t[40];
  rfc3339(t, sizeof t);
  cJSON *n = cJSON_CreateObject();
  cJSON_AddStringToObject(n, "apiVersion", "v1");
  cJSON_AddStringToObject(n, "kind", "Node");
  cJSON *md = cJSON_AddObjectToObject(n, "metadata");
  cJSON_AddStringToObject(md, "name", name);
  cJSON *lb = cJSON_AddObjectToObject(md, "labels");
  cJSON_AddStringToObject(lb, "kubernetes.io/hostname", name);
  cJSON_AddStringToObject(lb, "kubernetes.io/os", "linux");
  cJSON_AddStringToObject(lb, "kubernetes.io/arch", "amd64");
  const cJSON *l;
  cJSON_ArrayForEach(l, jget(b, "labels")) if (cJSON_IsString(l))
      jset(lb, l->string, cJSON_CreateString(l->valuestring));
  cJSON_AddObjectToObject(n, "spec");
  cJSON *st = cJSON_AddObjectToObject(n, "status");
  for (int k = 0; k < 2; k++) {
    cJSON *c = cJSON_AddObjectToObject(st, k ? "allocatable" : "capacity");
    cJSON_AddStringToObject(c, "cpu", cpu);
    cJSON_AddStringToObject(c, "memory", mem);
    cJSON_AddStringToObject(c, "pods", "110");
  }
  cJSON *cs = cJSON_AddArrayToObject(st, "conditions");
  cJSON_AddItemToArray(cs, cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
                                "kubelet has sufficient memory available", t));
  cJSON_AddItemToArray(cs, cond("DiskPressure", "False", "KubeletHasNoDiskPressure",
                                "kubelet has no disk pressure", t));
  cJSON_AddItemToArray(cs, cond("PIDPressure", "False", "KubeletHasSufficientPID",
                                "kubelet has sufficient PID available", t));
  cJSON_AddItemToArray(
      cs, ready ? cond("Ready", "True", "KubeletReady", "kubelet is posting ready status", t)
                : cond("Ready", "False", "KubeletNotReady", "container runtime is down", t));
  cJSON *as = cJSON_AddArrayToObject(st, "addresses");
  cJSON *a1 = cJSON_CreateObject(), *a2 = cJSON_CreateObject();
  cJSON_AddStringToObject(a1, "type", "InternalIP");
  cJSON_AddStringToObject(a1, "address", addr);
  cJSON_AddStringToObject(a2, "type", "Hostname");
  cJSON_AddStringToObject(a2, "address", name);
  cJSON_AddItemToArray(as, a1);
  cJSON_AddItemToArray(as, a2);
  cJSON *ni = cJSON_AddObjectToObject(st, "nodeInfo");
  cJSON_AddStringToObject(ni, "kubeletVersion", "v1.30.0+kubeemu");
  cJSON_AddStringToObject(ni, "operatingSystem", "linux");
  cJSON_AddStringToObject(ni, "architecture", "amd64");
  cJSON_Delete(b);
  kobj *o = find(e, R_NODES, "", name);
  if (!o) {
    manage_update(NULL, n, "kubelet", SC_ALL, "v1");
    o = create_obj(e, R_NODES, "", n);
    *code = 201;
  } else {
    cJSON *keep = jget(o->obj, "metadata");
    const char *sys[] = {"uid", "creationTimestamp", "managedFields", "resourceVersion"};
    for (size_t i = 0; i < sizeof sys / sizeof sys[0]; i++) {
      cJSON *v = jget(keep, sys[i]);
      if (v) jset(jget(n, "metadata"), sys[i], cJSON_Duplicate(v, 1));
    }
    manage_update(o->obj, n, "kubelet", SC_ALL, "v1");
    commit(e, o, n);
    *code = 200;
  }
  return o ? cJSON_Duplicate(o->obj, 1) : bad(500, "InternalError", "out of memory", code);
}

static cJSON *emu_ready(kemu *e, const char *name, req *q, int *code) {
  kobj *o = find(e, R_NODES, "", name);
  if (!o) return not_found(&RES[R_NODES], name, code);
  const char *s = qarg(q, "status");
  if (!s || (strcmp(s, "True") && strcmp(s, "False") && strcmp(s, "Unknown")))
    return bad(400, "BadRequest", "emu: status must be True, False or Unknown", code);
  if (strcmp(s, "True")) kubelet_node_down(e, name);
  cJSON *n = cJSON_Duplicate(o->obj, 1);
  char t[40];
  rfc3339(t, sizeof t);
  cJSON *c;
  cJSON_ArrayForEach(c, jget(jget(n, "status"), "conditions")) {
    const char *ty = jstr(c, "type");
    if (!ty || strcmp(ty, "Ready")) continue;
    const char *old = jstr(c, "status");
    if (!old || strcmp(old, s)) jset(c, "lastTransitionTime", cJSON_CreateString(t));
    jset(c, "status", cJSON_CreateString(s));
    jset(c, "lastHeartbeatTime", cJSON_CreateString(t));
    jset(c, "reason",
         cJSON_CreateString(!strcmp(s, "True")    ? "KubeletReady"
                            : !strcmp(s, "False") ? "KubeletNotReady"
                                                  : "NodeStatusUnknown"));
    jset(c, "message",
         cJSON_CreateString(!strcmp(s, "Unknown") ? "Kubelet stopped posting node status."
                                                  : "set by the test"));
  }
  manage_update(o->obj, n, !strcmp(s, "Unknown") ? "kube-controller-manager" : "kubelet", SC_STATUS,
                "v1");
  commit(e, o, n);
  *code = 200;
  return cJSON_Duplicate(o->obj, 1);
}

static cJSON *emu_stats(kemu *e) {
  cJSON *s = cJSON_CreateObject();
  cJSON_AddNumberToObject(s, "resourceVersion", (double)e->rv);
  cJSON_AddNumberToObject(s, "compacted", (double)e->compacted);
  cJSON_AddNumberToObject(s, "watches", e->n_watches);
  cJSON_AddNumberToObject(s, "watchesStarted", e->n_watch_started);
  cJSON_AddNumberToObject(s, "requests", e->n_requests);
  cJSON_AddNumberToObject(s, "unauthorized", e->n_unauthorized);
  cJSON_AddNumberToObject(s, "conflicts", e->n_conflicts);
  cJSON_AddNumberToObject(s, "applies", e->n_applies);
  cJSON_AddNumberToObject(s, "gone", e->n_gone);
  cJSON_AddNumberToObject(s, "bookmarks", e->n_bookmarks);
  cJSON_AddNumberToObject(s, "objects", e->n_objs);
  return s;
}
static cJSON *emu_requests(kemu *e) {
  cJSON *a = cJSON_CreateArray();
  long from = e->n_log > LOG_REQS ? e->n_log - LOG_REQS : 0;
  for (long i = from; i < e->n_log; i++) {
    lreq *l = &e->log[i % LOG_REQS];
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "method", l->method);
    cJSON_AddStringToObject(x, "url", l->url);
    cJSON_AddStringToObject(x, "contentType", l->ctype);
    cJSON_AddNumberToObject(x, "code", l->status);
    cJSON_AddItemToArray(a, x);
  }
  return a;
}

static cJSON *emu(kemu *e, req *q, char **seg, int n, int *code) {
  int post = !strcmp(q->method, "POST"), del = !strcmp(q->method, "DELETE");
  if (n == 2 && !strcmp(seg[1], "nodes") && post) return emu_node(e, q, code);
  if (n == 4 && !strcmp(seg[1], "nodes") && !strcmp(seg[3], "ready") && post)
    return emu_ready(e, seg[2], q, code);
  if (n == 3 && !strcmp(seg[1], "nodes") && del) {
    kubelet_node_down(e, seg[2]);
    snprintf(q->name, sizeof q->name, "%s", seg[2]);
    q->res = R_NODES;
    return h_delete(e, q, &RES[R_NODES], code);
  }
  if (n == 3 && !strcmp(seg[1], "namespaces") && post) {
    if (!dns_label(seg[2], 63)) return bad(400, "BadRequest", "emu: bad namespace name", code);
    kobj *o = find(e, R_NAMESPACES, "", seg[2]);
    if (!o) {
      cJSON *ns = cJSON_CreateObject();
      cJSON_AddStringToObject(cJSON_AddObjectToObject(ns, "metadata"), "name", seg[2]);
      cJSON_AddStringToObject(cJSON_AddObjectToObject(ns, "status"), "phase", "Active");
      o = create_obj(e, R_NAMESPACES, "", ns);
    }
    *code = 200;
    return o ? cJSON_Duplicate(o->obj, 1) : NULL;
  }
  if (n == 2 && !strcmp(seg[1], "expire") &&
      post) { /* every watch ends; the history is compacted */
    e->expire_gen++;
    e->rv++;
    e->compacted = e->rv;
    pthread_cond_broadcast(&e->cv);
    *code = 200;
    return emu_stats(e);
  }
  if (n == 2 && !strcmp(seg[1], "bookmark") && post) {
    e->bookmark_gen++;
    pthread_cond_broadcast(&e->cv);
    *code = 200;
    return emu_stats(e);
  }
  if (n == 2 && !strcmp(seg[1], "stats")) {
    *code = 200;
    return emu_stats(e);
  }
  if (n == 2 && !strcmp(seg[1], "requests")) {
    *code = 200;
    return emu_requests(e);
  }
  return bad(404, "NotFound", "emu: unknown control endpoint", code);
}

/* ---- authentication
 * ------------------------------------------------------------------------------- */
static void load_tokens(kemu *e) {
  struct stat st;
  if (stat(e->o.token_file, &st) < 0) {
    e->n_tokens = 0;
    e->tok_loaded = 0;
    return;
  }
  if (e->tok_loaded && st.st_size == e->tok_size && st.st_ino == e->tok_ino &&
      st.st_mtim.tv_sec == e->tok_mtime.tv_sec && st.st_mtim.tv_nsec == e->tok_mtime.tv_nsec)
    return;
  FILE *f = fopen(e->o.token_file, "r");
  if (!f) return;
  e->n_tokens = 0;
  char line[600];
  while (e->n_tokens < MAX_TOKENS && fgets(line, sizeof line, f)) {
    size_t n = strcspn(line, "\r\n");
    line[n] = 0;
    if (n && n < sizeof e->tokens[0])
      snprintf(e->tokens[e->n_tokens++], sizeof e->tokens[0], "%.511s", line);
  }
  fclose(f);
  e->tok_loaded = 1;
  e->tok_size = st.st_size;
  e->tok_ino = st.st_ino;
  e->tok_mtime = st.st_mtim;
}
static int auth_ok(kemu *e, req *q) {
  if (!e->o.token_file) return 1;
  load_tokens(e);
  const char *h = qheader(q, "Authorization");
  if (!h || strncmp(h, "Bearer ", 7)) return 0;
  for (int i = 0; i < e->n_tokens; i++)
    if (!strcmp(h + 7, e->tokens[i])) return 1;
  return 0;
}

/* ---- HTTP
 * ---------------------------------------------------------------------------------------- */
static enum MHD_Result send_json(struct MHD_Connection *mc, int code, cJSON *body) {
  char *s = body ? cJSON_PrintUnformatted(body) : NULL;
  cJSON_Delete(body);
  if (!s) s = strdup("{}");
  if (!s) return MHD_NO;
  struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(s);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  enum MHD_Result r = MHD_queue_response(mc, (unsigned)code, resp);
  MHD_destroy_response(resp);
  return r;
}

static int find_res(const char *group, const char *version, const char *plural) {
  for (int i = 0; i < N_RES; i++)
    if (!strcmp(RES[i].group, group) && !strcmp(RES[i].version, version) &&
        !strcmp(RES[i].plural, plural))
      return i;
  return -1;
}

typedef struct qbuf {
  char *b;
  size_t cap, off;
} qbuf;
static enum MHD_Result q_iter(void *cls, enum MHD_ValueKind kind, const char *k, const char *v) {
  (void)kind;
  qbuf *q = cls;
  if (q->off < q->cap)
    q->off += (size_t)snprintf(q->b + q->off, q->cap - q->off, "%c%s%s%s", q->off ? '&' : '?', k,
                               v ? "=" : "", v ? v : "");
  return MHD_YES;
}

static void log_req(kemu *e, req *q, const char *url, int code) {
  lreq *l = &e->log[e->n_log++ % LOG_REQS];
  snprintf(l->method, sizeof l->method, "%s", q->method);
  char qs[400] = "";
  qbuf b = {qs, sizeof qs, 0};
  MHD_get_connection_values(q->mc, MHD_GET_ARGUMENT_KIND, q_iter, &b);
  snprintf(l->url, sizeof l->url, "%s%s", url, qs);
  const char *ct = qheader(q, MHD_HTTP_HEADER_CONTENT_TYPE);
  snprintf(l->ctype, sizeof l->ctype, "%s", ct ? ct : "");
  l->status = code;
  if (!e->o.quiet) fprintf(stderr, "kubeemu: %s %s -> %d\n", l->method, l->url, code);
}

/* Handle one complete request, locked. *wout gets a watch to stream instead of a body. */
static cJSON *dispatch(kemu *e, req *q, const char *url, int *code, watch **wout) {
  char path[1024];
  snprintf(path, sizeof path, "%s", url);
  char *seg[12];
  int n = 0;
  for (char *save = NULL, *p = strtok_r(path, "/", &save); p && n < 12;
       p = strtok_r(NULL, "/", &save))
    seg[n++] = p;
  if (n >= 1 && !strcmp(seg[0], "emu")) return emu(e, q, seg, n, code);
  if (!auth_ok(e, q)) {
    e->n_unauthorized++;
    return bad(401, "Unauthorized", "Unauthorized", code);
  }
  if (n == 1 &&
      (!strcmp(seg[0], "healthz") || !strcmp(seg[0], "readyz") || !strcmp(seg[0], "livez"))) {
    *code = 200;
    return cJSON_CreateString("ok");
  }
  if (n == 1 && !strcmp(seg[0], "version")) {
    cJSON *v = cJSON_CreateObject();
    cJSON_AddStringToObject(v, "major", "1");
    cJSON_AddStringToObject(v, "minor", "30");
    cJSON_AddStringToObject(v, "gitVersion", "v1.30.0+kubeemu");
    cJSON_AddStringToObject(v, "platform", "linux/amd64");
    *code = 200;
    return v;
  }
  if (n == 0 || (strcmp(seg[0], "api") && strcmp(seg[0], "apis")))
    return bad(404, "NotFound", "the server could not find the requested resource", code);
  int core = !strcmp(seg[0], "api");
  if (n == 1) {
    *code = 200;
    if (!core) return disc_groups();
    cJSON *v = cJSON_CreateObject();
    cJSON_AddStringToObject(v, "kind", "APIVersions");
    const char *vs[] = {"v1"};
    cJSON_AddItemToObject(v, "versions", cJSON_CreateStringArray(vs, 1));
    return v;
  }
  const char *group = core ? "" : seg[1];
  if (!core && n == 2)
    return bad(404, "NotFound", "the server could not find the requested resource", code);
  const char *version = core ? seg[1] : seg[2];
  char **rest = seg + (core ? 2 : 3);
  int rn = n - (core ? 2 : 3);
  if (rn == 0) {
    cJSON *l = disc_resources(group, version);
    if (!l) return bad(404, "NotFound", "the server could not find the requested resource", code);
    *code = 200;
    return l;
  }
  const char *plural, *name = NULL, *sub = NULL, *ns = NULL;
  int idx = -1;
  if (!strcmp(rest[0], "namespaces") && rn >= 3 && (idx = find_res(group, version, rest[2])) >= 0 &&
      RES[idx].namespaced) {
    ns = rest[1];
    plural = rest[2];
    name = rn >= 4 ? rest[3] : NULL;
    sub = rn >= 5 ? rest[4] : NULL;
    if (rn > 5) idx = -1;
  } else {
    plural = rest[0];
    name = rn >= 2 ? rest[1] : NULL;
    sub = rn >= 3 ? rest[2] : NULL;
    idx = find_res(group, version, plural);
    if (rn > 3 || (idx >= 0 && RES[idx].namespaced && name)) idx = -1;
  }
  if (idx < 0 || (sub && (strcmp(sub, "status") || !RES[idx].status_sub)))
    return bad(404, "NotFound", "the server could not find the requested resource", code);
  const kres *r = &RES[idx];
  q->res = idx;
  q->collection = name == NULL;
  q->all_ns = r->namespaced && !ns;
  snprintf(q->ns, sizeof q->ns, "%s", ns ? ns : "");
  snprintf(q->name, sizeof q->name, "%s", name ? name : "");
  snprintf(q->sub, sizeof q->sub, "%s", sub ? sub : "");
  if (q->collection) {
    if (!strcmp(q->method, "GET")) {
      if (qtrue(q, "watch")) {
        cJSON *err = NULL;
        *wout = watch_new(e, q, code, &err);
        if (*wout) *code = 200;
        return err;
      }
      return h_list(e, q, r, code);
    }
    if (!strcmp(q->method, "POST")) {
      if (q->all_ns)
        return bad(405, "MethodNotAllowed",
                   "the server does not allow this method on the requested resource", code);
      return h_create(e, q, r, code);
    }
    return bad(405, "MethodNotAllowed",
               "the server does not allow this method on the requested resource", code);
  }
  if (!strcmp(q->method, "GET")) return h_get(e, q, r, code);
  if (!strcmp(q->method, "PUT")) return h_update(e, q, r, 0, code);
  if (!strcmp(q->method, "DELETE") && !sub) return h_delete(e, q, r, code);
  if (!strcmp(q->method, "PATCH")) {
    const char *ct = qheader(q, MHD_HTTP_HEADER_CONTENT_TYPE);
    char t[128] = "";
    if (ct) snprintf(t, sizeof t, "%.*s", (int)strcspn(ct, "; "), ct);
    if (!strcmp(t, "application/apply-patch+yaml")) return h_apply(e, q, r, code);
    if (!strcmp(t, "application/merge-patch+json") ||
        !strcmp(t, "application/strategic-merge-patch+json"))
      return h_update(e, q, r, 1, code);
    *code = 415;
    return status_obj(
        415, "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted "
        "media types include: application/merge-patch+json, application/apply-patch+yaml");
  }
  return bad(405, "MethodNotAllowed",
             "the server does not allow this method on the requested resource", code);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  (void)version;
  kemu *e = cls;
  req *q = *con_cls;
  if (!q) {
    q = calloc(1, sizeof *q);
    if (!q) return MHD_NO;
    q->e = e;
    q->mc = mc;
    snprintf(q->method, sizeof q->method, "%s", method);
    *con_cls = q;
    return MHD_YES;
  }
  if (*upload_size) {
    size_t n = *upload_size;
    *upload_size = 0;
    if (q->too_big || q->len + n > MAX_BODY) {
      q->too_big = 1;
      return MHD_YES;
    }
    if (q->len + n + 1 > q->cap) {
      size_t nc = (q->len + n + 1) * 2;
      if (nc > MAX_BODY + 1) nc = MAX_BODY + 1;
      char *b = realloc(q->body, nc);
      if (!b) return MHD_NO;
      q->body = b;
      q->cap = nc;
    }
    memcpy(q->body + q->len, upload, n);
    q->len += n;
    q->body[q->len] = 0;
    return MHD_YES;
  }
  if (q->too_big)
    return send_json(mc, 413, status_obj(413, "RequestEntityTooLarge", "the request is too large"));
  int code = 500;
  watch *w = NULL;
  pthread_mutex_lock(&e->mu);
  e->n_requests++;
  cJSON *body = dispatch(e, q, url, &code, &w);
  if (code < 300 && strcmp(method, "GET")) sim_all(e);
  log_req(e, q, url, code);
  pthread_mutex_unlock(&e->mu);
  if (w) {
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, watch_read, w, watch_free);
    if (!resp) {
      watch_free(w);
      return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result r = MHD_queue_response(mc, 200, resp);
    MHD_destroy_response(resp);
    return r;
  }
  return send_json(mc, code, body);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)mc;
  (void)toe;
  req *q = *con_cls;
  if (!q) return;
  free(q->body);
  free(q);
  *con_cls = NULL;
}

/* ---- TLS: a self-signed certificate for 127.0.0.1 / localhost
 * -------------------------------------- */
static char *bio_string(BIO *b) {
  char *p = NULL;
  long n = BIO_get_mem_data(b, &p);
  char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (s) {
    memcpy(s, p, (size_t)n);
    s[n] = 0;
  }
  return s;
}
static int add_ext(X509 *x, int nid, const char *v) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
  X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, v);
  if (!ex) return -1;
  int ok = X509_add_ext(x, ex, -1);
  X509_EXTENSION_free(ex);
  return ok ? 0 : -1;
}
static int make_cert(kemu *e, char *err, size_t cap) {
  int rc = -1;
  EVP_PKEY *pk = EVP_EC_gen("P-256");
  X509 *x = X509_new();
  BIO *bc = BIO_new(BIO_s_mem()), *bk = BIO_new(BIO_s_mem());
  if (!pk || !x || !bc || !bk) goto out;
  X509_set_version(x, 2);
  uint32_t serial;
  RAND_bytes((unsigned char *)&serial, sizeof serial);
  ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(serial & 0x7fffffff));
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400);
  X509_set_pubkey(x, pk);
  X509_NAME *nm = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"kubeemu", -1, -1, 0);
  X509_set_issuer_name(x, nm);
  if (add_ext(x, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
      add_ext(x, NID_key_usage, "critical,digitalSignature,keyCertSign") < 0 ||
      add_ext(x, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost") < 0)
    goto out;
  if (!X509_sign(x, pk, EVP_sha256())) goto out;
  if (!PEM_write_bio_X509(bc, x) || !PEM_write_bio_PrivateKey(bk, pk, NULL, NULL, 0, NULL, NULL))
    goto out;
  e->cert_pem = bio_string(bc);
  e->key_pem = bio_string(bk);
  if (!e->cert_pem || !e->key_pem) goto out;
  char path[4096];
  snprintf(path, sizeof path, "%s/ca.crt", e->o.tls_dir);
  FILE *f = fopen(path, "w");
  if (!f || fputs(e->cert_pem, f) < 0) {
    if (f) fclose(f);
    snprintf(err, cap, "kubeemu: cannot write %s: %s", path, strerror(errno));
    goto out;
  }
  fclose(f);
  rc = 0;
out:
  if (rc < 0 && !err[0]) snprintf(err, cap, "kubeemu: cannot make a TLS certificate");
  EVP_PKEY_free(pk);
  X509_free(x);
  BIO_free(bc);
  BIO_free(bk);
  return rc;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  kemu *e = cls;
  if (e->o.quiet) return;
  fputs("kubeemu: ", stderr);
  vfprintf(stderr, fmt, ap);
}

/* ---- start / stop
 * -------------------------------------------------------------------------------- */
int kemu_start(kemu **out, const kemu_opts *o, char *err, size_t cap) {
  err[0] = 0;
  *out = NULL;
  kemu *e = calloc(1, sizeof *e);
  if (!e) return snprintf(err, cap, "kubeemu: out of memory"), -1;
  e->o = *o;
  pthread_mutex_init(&e->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_cond_init(&e->cv, &ca);
  pthread_condattr_destroy(&ca);
  e->cap_ev = o->history > 0 ? o->history : 10000;
  e->ev = calloc((size_t)e->cap_ev, sizeof *e->ev);
  if (!e->ev) {
    snprintf(err, cap, "kubeemu: out of memory");
    goto fail;
  }
  const char *nss[] = {"default", "kube-system", "kube-public", "kube-node-lease"};
  for (size_t i = 0; i < sizeof nss / sizeof nss[0]; i++) {
    cJSON *ns = cJSON_CreateObject();
    cJSON_AddStringToObject(cJSON_AddObjectToObject(ns, "metadata"), "name", nss[i]);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(ns, "status"), "phase", "Active");
    create_obj(e, R_NAMESPACES, "", ns);
  }
  char host[64] = "127.0.0.1";
  int port = 0;
  if (o->listen) {
    const char *c = strrchr(o->listen, ':');
    if (!c || (size_t)(c - o->listen) >= sizeof host) {
      snprintf(err, cap, "kubeemu: --listen wants HOST:PORT, got '%s'", o->listen);
      goto fail;
    }
    memcpy(host, o->listen, (size_t)(c - o->listen));
    host[c - o->listen] = 0;
    port = atoi(c + 1);
  }
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    snprintf(err, cap, "kubeemu: '%s' is not an IPv4 address", host);
    goto fail;
  }
  unsigned flags =
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
  if (o->tls_dir) {
    if (make_cert(e, err, cap) < 0) goto fail;
    e->d = MHD_start_daemon(flags | MHD_USE_TLS, 0, NULL, NULL, on_request, e,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, e, MHD_OPTION_SOCK_ADDR,
                            (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, e,
                            MHD_OPTION_HTTPS_MEM_KEY, e->key_pem, MHD_OPTION_HTTPS_MEM_CERT,
                            e->cert_pem, MHD_OPTION_CONNECTION_LIMIT, 200u, MHD_OPTION_END);
  } else {
    e->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, e, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, e, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, e,
                            MHD_OPTION_CONNECTION_LIMIT, 200u, MHD_OPTION_END);
  }
  if (!e->d) {
    snprintf(err, cap, "kubeemu: cannot listen on %s:%d", host, port);
    goto fail;
  }
  if (o->kubelet_exe) {
    if (!o->kubelet_dir) {
      snprintf(err, cap, "kubeemu: the kubelet needs a directory");
      goto fail;
    }
    if (pthread_create(&e->kubelet, NULL, kubelet_main, e) != 0) {
      snprintf(err, cap, "kubeemu: cannot start the kubelet thread");
      goto fail;
    }
    e->kubelet_started = 1;
  }
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(e->d, MHD_DAEMON_INFO_BIND_PORT);
  snprintf(e->url, sizeof e->url, "%s://%s:%u", o->tls_dir ? "https" : "http", host,
           di ? di->port : (unsigned)port);
  *out = e;
  return 0;
fail:
  kemu_stop(e);
  return -1;
}

const char *kemu_url(const kemu *e) {
  return e->url;
}

void kemu_stop(kemu *e) {
  if (!e) return;
  pthread_mutex_lock(&e->mu);
  e->stopping = 1;
  pthread_cond_broadcast(&e->cv);
  pthread_mutex_unlock(&e->mu);
  if (e->d) MHD_stop_daemon(e->d);
  if (e->kubelet_started) pthread_join(e->kubelet, NULL);
  for (int i = 0; i < e->n_pods; i++) pod_stop(&e->pods[i], 0);
  free(e->pods);
  for (int i = 0; i < e->n_objs; i++) cJSON_Delete(e->objs[i].obj);
  free(e->objs);
  for (int i = 0; i < e->n_ev; i++) cJSON_Delete(e->ev[(e->first_ev + i) % e->cap_ev].obj);
  free(e->ev);
  free(e->cert_pem);
  free(e->key_pem);
  pthread_cond_destroy(&e->cv);
  pthread_mutex_destroy(&e->mu);
  free(e);
}
