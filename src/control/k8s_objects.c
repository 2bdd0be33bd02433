/* Kubernetes objects without I/O: quantities, names, the Deployment of a planned stage, the
 * SeiferModel status, Lease records, and parsing Nodes and SeiferModels. */
#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "control/k8s.h"

/* ---- quantities ------------------------------------------------------------------------------ */
typedef __int128 i128;
#define Q_LIMIT (((i128)1) << 120)

/* value(s) * 10^scale, rounded up, into *out */
static int quantity(const char *s, int scale, int64_t *out, sf_err *err) {
  if (!s) return sf__errf(err, SF_EINVAL, "quantity: missing");
  size_t len = strlen(s);
  if (len == 0 || len > 64)
    return sf__errf(err, SF_EINVAL, "quantity '%.64s': empty or too long", s);
  const char *p = s;
  int neg = 0;
  if (*p == '+' || *p == '-') neg = *p++ == '-';
  i128 mant = 0;
  int frac = 0, digits = 0, dot = 0, sig = 0;
  for (; *p; p++) {
    if (*p >= '0' && *p <= '9') {
      digits++;
      if (dot) frac++;
      if (mant == 0 && *p == '0') continue;
      if (++sig > 30) return sf__errf(err, SF_EINVAL, "quantity '%s': too many digits", s);
      mant = mant * 10 + (*p - '0');
    } else if (*p == '.' && !dot) {
      dot = 1;
    } else
      break;
  }
  if (digits == 0) return sf__errf(err, SF_EINVAL, "quantity '%s': no number", s);
  while (frac > 0 && mant % 10 == 0 && mant != 0) { /* trailing zeros of the fraction */
    mant /= 10;
    frac--;
  }
  if (mant == 0) frac = 0;
  int bin = 0, dec = 0;
  if (!*p) {
  } else if (p[1] == 'i' && !p[2] && strchr("KMGTPE", p[0])) {
    bin = 10 * (int)(strchr("KMGTPE", p[0]) - "KMGTPE" + 1);
  } else if (!p[1] && strchr("numkMGTPE", p[0])) {
    static const int e[] = {-9, -6, -3, 3, 6, 9, 12, 15, 18};
    dec = e[strchr("numkMGTPE", p[0]) - "numkMGTPE"];
  } else if ((p[0] == 'e' || p[0] == 'E') && p[1]) {
    const char *q = p + 1;
    int eneg = 0;
    if (*q == '+' || *q == '-') eneg = *q++ == '-';
    if (!*q) return sf__errf(err, SF_EINVAL, "quantity '%s': bad exponent", s);
    int ev = 0;
    for (; *q; q++) {
      if (*q < '0' || *q > '9' || ev > 100)
        return sf__errf(err, SF_EINVAL, "quantity '%s': bad exponent", s);
      ev = ev * 10 + (*q - '0');
    }
    dec = eneg ? -ev : ev;
  } else {
    return sf__errf(err, SF_EINVAL, "quantity '%s': unknown suffix '%s'", s, p);
  }
  if (neg && mant != 0) return sf__errf(err, SF_EINVAL, "quantity '%s': negative", s);
  i128 v = mant;
  if (bin) {
    if (v > (Q_LIMIT >> bin)) return sf__errf(err, SF_ELIMIT, "quantity '%s': too large", s);
    v <<= bin;
  }
  int e10 = dec - frac + scale;
  if (e10 > 0) {
    for (int i = 0; i < e10; i++) {
      if (v > Q_LIMIT / 10) return sf__errf(err, SF_ELIMIT, "quantity '%s': too large", s);
      v *= 10;
    }
  } else if (e10 < 0) {
    i128 d = 1;
    for (int i = 0; i < -e10; i++) {
      if (d > Q_LIMIT / 10) { /* dividing by more than 10^36: whatever is left rounds up to 1 */
        v = v > 0 ? 1 : 0;
        d = 1;
        break;
      }
      d *= 10;
    }
    v = (v + d - 1) / d;
  }
  if (v > (i128)INT64_MAX) return sf__errf(err, SF_ELIMIT, "quantity '%s': too large", s);
  *out = (int64_t)v;
  return 0;
}

int sf__k8s_quantity_bytes(const char *s, int64_t *out, sf_err *err) {
  return quantity(s, 0, out, err);
}
int sf__k8s_quantity_milli(const char *s, int64_t *out, sf_err *err) {
  return quantity(s, 3, out, err);
}

void sf__k8s_quantity_mib(int64_t bytes, char *out, size_t cap) {
  int64_t mib = bytes <= 0 ? 0 : (bytes + (1 << 20) - 1) >> 20;
  snprintf(out, cap, "%" PRId64 "Mi", mib);
}

/* ---- names -------------------------------------------------------------------------------------
 */
static int label_len(const char *s, size_t n) {
  if (n == 0 || n > 63) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0 && i + 1 < n);
    if (!ok) return 0;
  }
  return 1;
}
int sf__k8s_dns_label(const char *s) {
  return s && label_len(s, strlen(s));
}
int sf__k8s_dns_subdomain(const char *s) {
  if (!s) return 0;
  size_t n = strlen(s);
  if (n == 0 || n > 253) return 0;
  const char *p = s;
  for (;;) {
    const char *dot = strchr(p, '.');
    size_t l = dot ? (size_t)(dot - p) : strlen(p);
    if (!label_len(p, l)) return 0;
    if (!dot) return 1;
    p = dot + 1;
  }
}
int sf__k8s_label_value(const char *s) {
  if (!s) return 0;
  size_t n = strlen(s);
  if (n > 63) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int alnum = isalnum((unsigned char)c) && (unsigned char)c < 128;
    if (!alnum && !((c == '-' || c == '_' || c == '.') && i > 0 && i + 1 < n)) return 0;
  }
  return 1;
}

/* ---- times -------------------------------------------------------------------------------------
 */
void sf__k8s_microtime(double t, char *out, size_t cap) {
  time_t s = (time_t)floor(t);
  long us = (long)((t - (double)s) * 1e6);
  if (us < 0) us = 0;
  if (us > 999999) us = 999999;
  struct tm tm;
  gmtime_r(&s, &tm);
  char b[32];
  strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, cap, "%s.%06ldZ", b, us);
}
void sf__k8s_time(double t, char *out, size_t cap) {
  time_t s = (time_t)floor(t);
  struct tm tm;
  gmtime_r(&s, &tm);
  strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- stage Deployments
 * ------------------------------------------------------------------------------ */
/* FNV-1a, for short stable suffixes */
static uint32_t fnv1a(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

int sf__k8s_stage_name(const sf_k8s_stage *s, char *out, size_t cap, sf_err *err) {
  if (!s->model || !sf__k8s_dns_label(s->model) || strlen(s->model) > 40)
    return sf__errf(err, SF_EINVAL,
                    "SeiferModel name '%s': a DNS-1123 label of at most 40 characters is needed",
                    s->model ? s->model : "");
  if (!s->node || !sf__k8s_dns_subdomain(s->node))
    return sf__errf(err, SF_EINVAL, "node name '%s' is not a DNS-1123 subdomain",
                    s->node ? s->node : "");
  /* MODEL-NODE with the node's dots as dashes; a long node name is cut and given a hash suffix */
  size_t room = 63 - strlen(s->model) - 1;
  char slug[256];
  snprintf(slug, sizeof slug, "%s", s->node);
  for (char *p = slug; *p; p++)
    if (*p == '.') *p = '-';
  if (strlen(slug) > room) {
    size_t keep = room - 7;
    while (keep > 0 && slug[keep - 1] == '-') keep--;
    snprintf(slug + keep, sizeof slug - keep, "-%06x", fnv1a(s->node) & 0xffffff);
  }
  int n = snprintf(out, cap, "%s-%s", s->model, slug);
  if (n < 0 || (size_t)n >= cap) return sf__errf(err, SF_ELIMIT, "stage name too long");
  return 0;
}

void sf__k8s_stage_selector(const char *model, char *out, size_t cap) {
  snprintf(out, cap,
           "app.kubernetes.io/name=seifer,app.kubernetes.io/component=worker,seifer.dev/model=%s",
           model);
}

static cJSON *str_array(const char *const *v, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
  return a;
}

static cJSON *tcp_probe(int initial, int period, int timeout, int failures) {
  cJSON *p = cJSON_CreateObject();
  cJSON_AddStringToObject(cJSON_AddObjectToObject(p, "tcpSocket"), "port", "seifer");
  cJSON_AddNumberToObject(p, "initialDelaySeconds", initial);
  cJSON_AddNumberToObject(p, "periodSeconds", period);
  cJSON_AddNumberToObject(p, "timeoutSeconds", timeout);
  cJSON_AddNumberToObject(p, "failureThreshold", failures);
  return p;
}

cJSON *sf__k8s_stage_deployment(const sf_k8s_stage *s, sf_err *err) {
  char name[128];
  if (sf__k8s_stage_name(s, name, sizeof name, err) < 0) return NULL;
  const char *host = s->hostname && s->hostname[0] ? s->hostname : s->node;
  if (!s->ns || !sf__k8s_dns_label(s->ns)) {
    sf__errf(err, SF_EINVAL, "namespace '%s' is not a DNS-1123 label", s->ns ? s->ns : "");
    return NULL;
  }
  if (!s->node || !sf__k8s_dns_subdomain(s->node) || !sf__k8s_label_value(host)) {
    sf__errf(err, SF_EINVAL,
             "stage %d: node '%s' (hostname '%s') is not a valid node name and label value",
             s->stage, s->node ? s->node : "", host ? host : "");
    return NULL;
  }
  if (s->stage < 0 || s->stage > 999 || s->n_stages < 0 || s->n_stages > 1000) {
    sf__errf(err, SF_EINVAL, "stage index %d of %d out of range", s->stage, s->n_stages);
    return NULL;
  }
  if (s->memory_bytes <= 0) {
    sf__errf(err, SF_EINVAL, "stage %d: planned memory %" PRId64 " must be positive", s->stage,
             s->memory_bytes);
    return NULL;
  }
  if (s->port < 1 || s->port > 65535) {
    sf__errf(err, SF_EINVAL, "stage %d: port %d out of range", s->stage, s->port);
    return NULL;
  }
  if (!s->image || !s->image[0] || strlen(s->image) > 1000) {
    sf__errf(err, SF_EINVAL, "stage %d: no container image", s->stage);
    return NULL;
  }
  if (!s->secret || !sf__k8s_dns_subdomain(s->secret)) {
    sf__errf(err, SF_EINVAL, "stage %d: Secret name '%s' is not a DNS-1123 subdomain", s->stage,
             s->secret ? s->secret : "");
    return NULL;
  }
  const char *sa = s->service_account ? s->service_account : "seifer-worker";
  if (!sf__k8s_dns_subdomain(sa)) {
    sf__errf(err, SF_EINVAL, "service account '%s' is not a DNS-1123 subdomain", sa);
    return NULL;
  }
  if (s->digest && s->digest[0] && strlen(s->digest) != 64) {
    sf__errf(err, SF_EINVAL, "stage %d: digest must be 64 hex characters", s->stage);
    return NULL;
  }
  char pipe[16], stage[16], gen[32], mem[32], port[16], listen[32], threads[16];
  snprintf(pipe, sizeof pipe, "%u", s->pipeline);
  snprintf(stage, sizeof stage, "%d", s->stage);
  snprintf(gen, sizeof gen, "%ld", s->plan_generation);
  sf__k8s_quantity_mib(s->memory_bytes, mem, sizeof mem);
  snprintf(port, sizeof port, "%d", s->port);
  snprintf(listen, sizeof listen, "0.0.0.0:%d", s->port);
  snprintf(threads, sizeof threads, "%d", s->threads);

  cJSON *d = cJSON_CreateObject();
  cJSON_AddStringToObject(d, "apiVersion", "apps/v1");
  cJSON_AddStringToObject(d, "kind", "Deployment");
  cJSON *md = cJSON_AddObjectToObject(d, "metadata");
  cJSON_AddStringToObject(md, "name", name);
  cJSON_AddStringToObject(md, "namespace", s->ns);
  /* selector labels: stable for the Deployment's life (a selector cannot change) */
  cJSON *sel = cJSON_CreateObject();
  cJSON_AddStringToObject(sel, "app.kubernetes.io/name", "seifer");
  cJSON_AddStringToObject(sel, "app.kubernetes.io/component", "worker");
  cJSON_AddStringToObject(sel, "seifer.dev/model", s->model);
  cJSON_AddStringToObject(sel, "seifer.dev/worker", name);
  cJSON *labels = cJSON_Duplicate(sel, 1);
  cJSON_AddStringToObject(labels, "seifer.dev/pipeline", pipe);
  cJSON_AddStringToObject(labels, "seifer.dev/stage", stage);
  cJSON_AddStringToObject(labels, "app.kubernetes.io/part-of", "seifer");
  cJSON_AddStringToObject(labels, "app.kubernetes.io/managed-by", "seifer-controller");
  cJSON_AddStringToObject(labels, "seifer.dev/plan-generation", gen);
  if (s->version && s->version[0] && sf__k8s_label_value(s->version))
    cJSON_AddStringToObject(labels, "seifer.dev/version", s->version);
  cJSON_AddItemToObject(md, "labels", labels);
  cJSON *ann = cJSON_AddObjectToObject(md, "annotations");
  if (s->version && s->version[0]) cJSON_AddStringToObject(ann, "seifer.dev/version", s->version);
  cJSON_AddStringToObject(ann, "seifer.dev/node", s->node);
  char nst[16];
  snprintf(nst, sizeof nst, "%d", s->n_stages);
  cJSON_AddStringToObject(ann, "seifer.dev/stages", nst);
  if (s->model_uid && s->model_uid[0]) {
    cJSON *refs = cJSON_AddArrayToObject(md, "ownerReferences");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "apiVersion", SF_K8S_API_VERSION);
    cJSON_AddStringToObject(o, "kind", "SeiferModel");
    cJSON_AddStringToObject(o, "name", s->model);
    cJSON_AddStringToObject(o, "uid", s->model_uid);
    cJSON_AddBoolToObject(o, "controller", 1);
    cJSON_AddBoolToObject(o, "blockOwnerDeletion", 1);
    cJSON_AddItemToArray(refs, o);
  }

  cJSON *spec = cJSON_AddObjectToObject(d, "spec");
  cJSON_AddNumberToObject(spec, "replicas", 1);
  cJSON_AddNumberToObject(spec, "revisionHistoryLimit", 2);
  cJSON_AddStringToObject(cJSON_AddObjectToObject(spec, "strategy"), "type", "Recreate");
  cJSON_AddItemToObject(cJSON_AddObjectToObject(spec, "selector"), "matchLabels",
                        cJSON_Duplicate(sel, 1));
  cJSON *tpl = cJSON_AddObjectToObject(spec, "template");
  cJSON *tmd = cJSON_AddObjectToObject(tpl, "metadata");
  cJSON *tl = cJSON_Duplicate(sel, 1);
  cJSON_AddStringToObject(tl, "app.kubernetes.io/part-of", "seifer");
  cJSON_AddItemToObject(tmd, "labels", tl);
  cJSON *tann = cJSON_AddObjectToObject(tmd, "annotations");
  cJSON_AddStringToObject(tann, "seifer.dev/node", s->node);
  if (s->digest && s->digest[0])
    cJSON_AddStringToObject(tann, "seifer.dev/stage-digest", s->digest);
  cJSON_Delete(sel);

  cJSON *ps = cJSON_AddObjectToObject(tpl, "spec");
  cJSON_AddStringToObject(ps, "serviceAccountName", sa);
  cJSON_AddBoolToObject(ps, "automountServiceAccountToken", 0);
  cJSON_AddBoolToObject(ps, "hostNetwork", 1);
  cJSON_AddStringToObject(ps, "dnsPolicy", "ClusterFirstWithHostNet");
  cJSON_AddNumberToObject(ps, "terminationGracePeriodSeconds", 30);
  cJSON *aff = cJSON_AddObjectToObject(cJSON_AddObjectToObject(ps, "affinity"), "nodeAffinity");
  cJSON *req = cJSON_AddObjectToObject(aff, "requiredDuringSchedulingIgnoredDuringExecution");
  cJSON *terms = cJSON_AddArrayToObject(req, "nodeSelectorTerms");
  cJSON *term = cJSON_CreateObject();
  cJSON *exprs = cJSON_AddArrayToObject(term, "matchExpressions");
  cJSON *ex = cJSON_CreateObject();
  cJSON_AddStringToObject(ex, "key", "kubernetes.io/hostname");
  cJSON_AddStringToObject(ex, "operator", "In");
  cJSON_AddItemToObject(ex, "values", str_array(&host, 1));
  cJSON_AddItemToArray(exprs, ex);
  cJSON_AddItemToArray(terms, term);
  cJSON *psc = cJSON_AddObjectToObject(ps, "securityContext");
  cJSON_AddBoolToObject(psc, "runAsNonRoot", 1);
  cJSON_AddNumberToObject(psc, "runAsUser", 65532);
  cJSON_AddNumberToObject(psc, "runAsGroup", 65532);
  cJSON_AddNumberToObject(psc, "fsGroup", 65532);
  cJSON_AddStringToObject(cJSON_AddObjectToObject(psc, "seccompProfile"), "type", "RuntimeDefault");

  cJSON *cs = cJSON_AddArrayToObject(ps, "containers");
  cJSON *c = cJSON_CreateObject();
  cJSON_AddItemToArray(cs, c);
  cJSON_AddStringToObject(c, "name", "worker");
  cJSON_AddStringToObject(c, "image", s->image);
  cJSON_AddStringToObject(c, "imagePullPolicy", s->pull_policy ? s->pull_policy : "IfNotPresent");
  const char *args[] = {
      "worker", "--listen", listen,    "--secret",          "/etc/seifer/secret/secret",
      "--name", s->node,    "--cache", "/var/cache/seifer", "--threads",
      threads};
  cJSON_AddItemToObject(c, "args", str_array(args, s->threads > 0 ? 11 : 9));
  cJSON *ports = cJSON_AddArrayToObject(c, "ports");
  cJSON *pt = cJSON_CreateObject();
  cJSON_AddStringToObject(pt, "name", "seifer");
  cJSON_AddNumberToObject(pt, "containerPort", s->port);
  cJSON_AddNumberToObject(pt, "hostPort", s->port);
  cJSON_AddStringToObject(pt, "protocol", "TCP");
  cJSON_AddItemToArray(ports, pt);
  cJSON *res = cJSON_AddObjectToObject(c, "resources");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(res, "requests"), "memory", mem);
  cJSON_AddStringToObject(cJSON_AddObjectToObject(res, "limits"), "memory", mem);
  cJSON_AddItemToObject(c, "readinessProbe", tcp_probe(1, 5, 2, 3));
  cJSON_AddItemToObject(c, "livenessProbe", tcp_probe(10, 10, 3, 3));
  cJSON *csc = cJSON_AddObjectToObject(c, "securityContext");
  cJSON_AddBoolToObject(csc, "allowPrivilegeEscalation", 0);
  cJSON_AddBoolToObject(csc, "readOnlyRootFilesystem", 1);
  const char *drop[] = {"ALL"};
  cJSON_AddItemToObject(cJSON_AddObjectToObject(csc, "capabilities"), "drop", str_array(drop, 1));
  cJSON *vm = cJSON_AddArrayToObject(c, "volumeMounts");
  cJSON *m1 = cJSON_CreateObject(), *m2 = cJSON_CreateObject();
  cJSON_AddStringToObject(m1, "name", "cluster-secret");
  cJSON_AddStringToObject(m1, "mountPath", "/etc/seifer/secret");
  cJSON_AddBoolToObject(m1, "readOnly", 1);
  cJSON_AddStringToObject(m2, "name", "stage-cache");
  cJSON_AddStringToObject(m2, "mountPath", "/var/cache/seifer");
  cJSON_AddItemToArray(vm, m1);
  cJSON_AddItemToArray(vm, m2);
  cJSON *vols = cJSON_AddArrayToObject(ps, "volumes");
  cJSON *v1 = cJSON_CreateObject(), *v2 = cJSON_CreateObject();
  cJSON_AddStringToObject(v1, "name", "cluster-secret");
  cJSON *sv = cJSON_AddObjectToObject(v1, "secret");
  cJSON_AddStringToObject(sv, "secretName", s->secret);
  cJSON_AddNumberToObject(sv, "defaultMode", 0440);
  cJSON_AddStringToObject(v2, "name", "stage-cache");
  cJSON_AddObjectToObject(v2, "emptyDir");
  cJSON_AddItemToArray(vols, v1);
  cJSON_AddItemToArray(vols, v2);
  return d;
}

/* ---- SeiferModel status ------------------------------------------------------------------------
 */
static int reason_ok(
    const char *r) { /* metav1.Condition reason: ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$ */
  size_t n = r ? strlen(r) : 0;
  if (n == 0 || n > 1024 || !isalpha((unsigned char)r[0])) return 0;
  for (size_t i = 1; i < n; i++) {
    unsigned char c = (unsigned char)r[i];
    if (!(isalnum(c) || c == '_' || ((c == ',' || c == ':') && i + 1 < n))) return 0;
  }
  return 1;
}

cJSON *sf__k8s_model_status(const sf_k8s_model_status *s, sf_err *err) {
  if (!s->name || !sf__k8s_dns_subdomain(s->name)) {
    sf__errf(err, SF_EINVAL, "SeiferModel name '%s' is not a DNS-1123 subdomain",
             s->name ? s->name : "");
    return NULL;
  }
  for (int i = 0; i < s->n_conds; i++) {
    const sf_k8s_condition *c = &s->conds[i];
    if (!reason_ok(c->type) || !reason_ok(c->reason) || !c->status ||
        (strcmp(c->status, "True") && strcmp(c->status, "False") && strcmp(c->status, "Unknown")) ||
        !c->since) {
      sf__errf(err, SF_EINVAL,
               "condition %d ('%s'): type and reason must be CamelCase, status True/False/Unknown, "
               "and a transition time is needed",
               i, c->type ? c->type : "");
      return NULL;
    }
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "apiVersion", SF_K8S_API_VERSION);
  cJSON_AddStringToObject(o, "kind", "SeiferModel");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "metadata"), "name", s->name);
  cJSON *st = cJSON_AddObjectToObject(o, "status");
  cJSON_AddNumberToObject(st, "observedGeneration", (double)s->observed_generation);
  if (s->version) cJSON_AddStringToObject(st, "version", s->version);
  cJSON *conds = cJSON_AddArrayToObject(st, "conditions");
  for (int i = 0; i < s->n_conds; i++) {
    const sf_k8s_condition *c = &s->conds[i];
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "type", c->type);
    cJSON_AddStringToObject(x, "status", c->status);
    cJSON_AddNumberToObject(x, "observedGeneration", (double)s->observed_generation);
    cJSON_AddStringToObject(x, "lastTransitionTime", c->since);
    cJSON_AddStringToObject(x, "reason", c->reason);
    cJSON_AddStringToObject(x, "message", c->message ? c->message : "");
    cJSON_AddItemToArray(conds, x);
  }
  if (s->n_stages > 0) {
    cJSON *plan = cJSON_AddObjectToObject(st, "plan");
    cJSON_AddNumberToObject(plan, "generation", (double)s->plan_generation);
    cJSON_AddNumberToObject(plan, "pipeline", s->pipeline);
    if (s->bottleneck_s >= 0) cJSON_AddNumberToObject(plan, "bottleneckSeconds", s->bottleneck_s);
    cJSON *stages = cJSON_AddArrayToObject(plan, "stages");
    for (int i = 0; i < s->n_stages; i++) {
      const sf_k8s_plan_stage *p = &s->stages[i];
      cJSON *x = cJSON_CreateObject();
      cJSON_AddNumberToObject(x, "stage", p->stage);
      cJSON_AddStringToObject(x, "node", p->node ? p->node : "");
      if (p->deployment) cJSON_AddStringToObject(x, "deployment", p->deployment);
      cJSON_AddNumberToObject(x, "memoryBytes", (double)p->memory_bytes);
      if (p->compute_s >= 0) cJSON_AddNumberToObject(x, "computeSeconds", p->compute_s);
      cJSON_AddItemToArray(stages, x);
    }
  }
  if (s->predicted_throughput >= 0)
    cJSON_AddNumberToObject(st, "predictedThroughput", s->predicted_throughput);
  if (s->measured_throughput >= 0)
    cJSON_AddNumberToObject(st, "measuredThroughput", s->measured_throughput);
  cJSON_AddNumberToObject(st, "readyNodes", s->ready_nodes);
  cJSON_AddNumberToObject(st, "nodes", s->nodes);
  return o;
}

cJSON *sf__k8s_lease_object(const char *ns, const char *name, const sf_k8s_lease_state *st,
                            const char *rv) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "apiVersion", "coordination.k8s.io/v1");
  cJSON_AddStringToObject(o, "kind", "Lease");
  cJSON *md = cJSON_AddObjectToObject(o, "metadata");
  cJSON_AddStringToObject(md, "name", name);
  cJSON_AddStringToObject(md, "namespace", ns);
  if (rv && rv[0]) cJSON_AddStringToObject(md, "resourceVersion", rv);
  cJSON *sp = cJSON_AddObjectToObject(o, "spec");
  cJSON_AddStringToObject(sp, "holderIdentity", st->holder);
  cJSON_AddNumberToObject(sp, "leaseDurationSeconds", st->duration_s);
  if (st->acquire[0]) cJSON_AddStringToObject(sp, "acquireTime", st->acquire);
  if (st->renew[0]) cJSON_AddStringToObject(sp, "renewTime", st->renew);
  cJSON_AddNumberToObject(sp, "leaseTransitions", st->transitions);
  return o;
}

/* ---- parsing ------------------------------------------------------------------------------------
 */
static const cJSON *get(const cJSON *o, const char *k) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}
static const char *gets(const cJSON *o, const char *k) {
  const cJSON *v = get(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

const char *sf__k8s_label(const cJSON *obj, const char *key) {
  return gets(get(get(obj, "metadata"), "labels"), key);
}

int sf__k8s_node_parse(const cJSON *obj, sf_k8s_node *n, sf_err *err) {
  memset(n, 0, sizeof *n);
  const char *name = gets(get(obj, "metadata"), "name");
  if (!name || strlen(name) >= sizeof n->name)
    return sf__errf(err, SF_EFORMAT, "Node without a valid metadata.name");
  snprintf(n->name, sizeof n->name, "%s", name);
  const char *h = sf__k8s_label(obj, "kubernetes.io/hostname");
  if (h && strlen(h) < sizeof n->hostname) snprintf(n->hostname, sizeof n->hostname, "%s", h);
  const cJSON *st = get(obj, "status");
  const cJSON *c;
  cJSON_ArrayForEach(c, get(st, "conditions")) {
    const char *t = gets(c, "type"), *s = gets(c, "status");
    if (t && s && !strcmp(t, "Ready")) n->ready = !strcmp(s, "True");
  }
  n->unschedulable = cJSON_IsTrue(get(get(obj, "spec"), "unschedulable"));
  const char *mem = gets(get(st, "allocatable"), "memory");
  if (mem && sf__k8s_quantity_bytes(mem, &n->memory, err) < 0)
    return sf__errctx(err, SF_EFORMAT, "Node %s: status.allocatable.memory", name);
  const char *cpu = gets(get(st, "allocatable"), "cpu");
  if (cpu && sf__k8s_quantity_milli(cpu, &n->cpu_milli, err) < 0)
    return sf__errctx(err, SF_EFORMAT, "Node %s: status.allocatable.cpu", name);
  const char *ext = NULL;
  cJSON_ArrayForEach(c, get(st, "addresses")) {
    const char *t = gets(c, "type"), *a = gets(c, "address");
    if (!t || !a || strlen(a) >= sizeof n->address) continue;
    if (!strcmp(t, "InternalIP") && !n->address[0])
      snprintf(n->address, sizeof n->address, "%s", a);
    if (!strcmp(t, "ExternalIP") && !ext) ext = a;
  }
  if (!n->address[0] && ext) snprintf(n->address, sizeof n->address, "%s", ext);
  return 0;
}

static int copy_str(char *dst, size_t cap, const char *src, const char *what, sf_err *err) {
  if (!src) {
    dst[0] = 0;
    return 0;
  }
  if (strlen(src) >= cap)
    return sf__errf(err, SF_EFORMAT, "%s: longer than %zu characters", what, cap - 1);
  snprintf(dst, cap, "%s", src);
  return 0;
}

int sf__k8s_model_parse(const cJSON *obj, sf_k8s_model *m, sf_err *err) {
  memset(m, 0, sizeof *m);
  const cJSON *md = get(obj, "metadata"), *spec = get(obj, "spec");
  const char *name = gets(md, "name");
  if (!name) return sf__errf(err, SF_EFORMAT, "SeiferModel without metadata.name");
  if (copy_str(m->name, sizeof m->name, name, "metadata.name", err) < 0 ||
      copy_str(m->ns, sizeof m->ns, gets(md, "namespace"), "metadata.namespace", err) < 0 ||
      copy_str(m->uid, sizeof m->uid, gets(md, "uid"), "metadata.uid", err) < 0)
    return sf__errctx(err, SF_EFORMAT, "SeiferModel %s", name);
  const cJSON *g = get(md, "generation");
  m->generation = cJSON_IsNumber(g) ? (long)g->valuedouble : 0;
  const cJSON *model = get(spec, "model");
  const char *uri = gets(model, "uri");
  if (!uri || !uri[0])
    return sf__errf(err, SF_EFORMAT, "SeiferModel %s: spec.model.uri is required", name);
  if (copy_str(m->uri, sizeof m->uri, uri, "spec.model.uri", err) < 0 ||
      copy_str(m->version, sizeof m->version, gets(model, "version"), "spec.model.version", err) <
          0 ||
      copy_str(m->objective, sizeof m->objective, gets(spec, "objective"), "spec.objective", err) <
          0 ||
      copy_str(m->codec, sizeof m->codec, gets(spec, "codec"), "spec.codec", err) < 0)
    return sf__errctx(err, SF_EFORMAT, "SeiferModel %s", name);
  const char *sha = gets(model, "sha256");
  if (sha) {
    if (strlen(sha) != 64)
      return sf__errf(err, SF_EFORMAT, "SeiferModel %s: spec.model.sha256 must be 64 hex digits",
                      name);
    for (int i = 0; i < 64; i++)
      if (!isxdigit((unsigned char)sha[i]))
        return sf__errf(err, SF_EFORMAT, "SeiferModel %s: spec.model.sha256 must be 64 hex digits",
                        name);
    snprintf(m->sha256, sizeof m->sha256, "%s", sha);
  }
  if (!m->version[0]) snprintf(m->version, sizeof m->version, "1");
  if (!m->objective[0]) snprintf(m->objective, sizeof m->objective, "throughput");
  if (!m->codec[0]) snprintf(m->codec, sizeof m->codec, "lz4");
  if (strcmp(m->objective, "throughput"))
    return sf__errf(err, SF_EUNSUPPORTED, "SeiferModel %s: objective '%s' (only throughput)", name,
                    m->objective);
  if (strcmp(m->codec, "raw") && strcmp(m->codec, "fp16") && strcmp(m->codec, "lz4") &&
      strcmp(m->codec, "zfp"))
    return sf__errf(err, SF_EFORMAT, "SeiferModel %s: codec '%s' (raw, fp16, lz4 or zfp)", name,
                    m->codec);
  const cJSON *pl = get(spec, "pipelines");
  if (cJSON_IsNumber(pl)) {
    if (pl->valuedouble < 1 || pl->valuedouble > 64)
      return sf__errf(err, SF_EFORMAT, "SeiferModel %s: spec.pipelines must be in [1, 64]", name);
    m->pipelines = (int)pl->valuedouble;
  }
  const cJSON *to = get(get(spec, "gateway"), "timeoutSeconds");
  if (cJSON_IsNumber(to)) {
    if (to->valuedouble <= 0 || to->valuedouble > 3600)
      return sf__errf(err, SF_EFORMAT,
                      "SeiferModel %s: spec.gateway.timeoutSeconds must be in (0, 3600]", name);
    m->gateway_timeout_s = to->valuedouble;
  }
  const cJSON *l;
  size_t off = 0;
  cJSON_ArrayForEach(l, get(get(spec, "placement"), "nodeSelector")) {
    if (!cJSON_IsString(l) || !sf__k8s_label_value(l->valuestring))
      return sf__errf(err, SF_EFORMAT,
                      "SeiferModel %s: spec.placement.nodeSelector.%s: a label value is needed",
                      name, l->string);
    int n = snprintf(m->node_selector + off, sizeof m->node_selector - off, "%s%s=%s",
                     off ? "," : "", l->string, l->valuestring);
    if (n < 0 || (size_t)n >= sizeof m->node_selector - off)
      return sf__errf(err, SF_ELIMIT, "SeiferModel %s: spec.placement.nodeSelector too long", name);
    off += (size_t)n;
  }
  return 0;
}
