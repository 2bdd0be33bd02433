/* The Kubernetes driver: workers as per-node stage Deployments, the gateway as the static
 * Deployment and Service of deploy/k8s (k8s_driver.h). */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "control/k8s_driver.h"
#include "serve/serve.h"

#define K8S_MAX_NODES 1024

typedef struct kassign {
  char node[254];
  sf_k8s_assignment a;
  char version[64], digest[65];
} kassign;

typedef struct kdrv {
  sf_k8s_config cfg;
  sf_k8s *k;
  sf_k8s_informer *nodes;
  char ns[64], model[64], uid[64], image[1024], secret[254], manager[129], gw_data[128],
      gw_url[300], gw_deploy[254];
  int port, threads;
  int64_t memory;
  pthread_mutex_t mu;
  kassign *as;
  int n_as;
} kdrv;

static const sf_driver_ops k8s_ops;

static kassign *assignment(kdrv *k, const char *node) {
  for (int i = 0; i < k->n_as; i++)
    if (!strcmp(k->as[i].node, node)) return &k->as[i];
  return NULL;
}

/* The Node object's facts, fresh from the API. */
static int node_get(kdrv *k, const char *node, sf_k8s_node *n, sf_err *err) {
  char path[512];
  int rc = sf__k8s_path(path, sizeof path, &sf__k8s_nodes, NULL, node, NULL, err);
  if (rc < 0) return rc;
  cJSON *obj = NULL;
  if ((rc = sf__k8s_get(k->k, path, &obj, NULL, err)) < 0) {
    if (rc == SF_ENOTFOUND)
      return sf__errf(err, SF_ENOTFOUND, "node %s is not in the cluster", node);
    return rc;
  }
  rc = sf__k8s_node_parse(obj, n, err);
  cJSON_Delete(obj);
  return rc;
}

static void stage_of(kdrv *k, const char *node, const sf_k8s_node *n, sf_k8s_stage *s) {
  memset(s, 0, sizeof *s);
  s->ns = k->ns;
  s->model = k->model;
  s->model_uid = k->uid[0] ? k->uid : NULL;
  s->node = node;
  s->hostname = n && n->hostname[0] ? n->hostname : NULL;
  s->memory_bytes = k->memory;
  s->port = k->port;
  s->image = k->image;
  s->secret = k->secret;
  s->threads = k->threads;
  kassign *a = assignment(k, node);
  if (a) {
    s->pipeline = a->a.pipeline;
    s->stage = a->a.stage;
    s->n_stages = a->a.n_stages;
    s->plan_generation = a->a.plan_generation;
    s->version = a->version[0] ? a->version : NULL;
    s->digest = a->digest[0] ? a->digest : NULL;
    if (a->a.memory_bytes > 0) s->memory_bytes = a->a.memory_bytes;
  }
}

static int deployment_path(kdrv *k, const char *node, char *path, size_t cap, sf_err *err) {
  sf_k8s_stage s;
  stage_of(k, node, NULL, &s);
  char name[64];
  int rc = sf__k8s_stage_name(&s, name, sizeof name, err);
  if (rc < 0) return rc;
  return sf__k8s_path(path, cap, &sf__k8s_deployments, k->ns, name, NULL, err);
}

static int k_start(void *ctx, sf_proc *p, sf_err *err) {
  kdrv *k = ctx;
  p->pid = 0;
  if (p->role == SF_PROC_GATEWAY) {
    snprintf(p->addr, sizeof p->addr, "%s", k->gw_data);
    snprintf(p->url, sizeof p->url, "%s", k->gw_url);
    return 0;
  }
  sf_k8s_node n;
  int rc = node_get(k, p->node, &n, err);
  if (rc < 0) return rc;
  if (!n.address[0])
    return sf__errf(err, SF_EINVAL, "node %s has no InternalIP or ExternalIP address", p->node);
  pthread_mutex_lock(&k->mu);
  sf_k8s_stage s;
  stage_of(k, p->node, &n, &s);
  cJSON *d = sf__k8s_stage_deployment(&s, err);
  char path[512];
  rc = d ? deployment_path(k, p->node, path, sizeof path, err) : SF_EINVAL;
  pthread_mutex_unlock(&k->mu);
  if (rc == 0) rc = sf__k8s_apply(k->k, path, d, k->manager, 1, NULL, NULL, err);
  cJSON_Delete(d);
  if (rc < 0) return sf__errctx(err, rc, "worker on %s", p->node);
  snprintf(p->addr, sizeof p->addr, strchr(n.address, ':') ? "[%s]:%d" : "%s:%d", n.address,
           k->port);
  return 0;
}

static int k_stop(void *ctx, const sf_proc *p, int grace_ms) {
  (void)grace_ms; /* the pod's terminationGracePeriodSeconds: the worker drains on SIGTERM */
  kdrv *k = ctx;
  if (p->role == SF_PROC_GATEWAY) return 0;
  char path[512];
  sf_err err = {0};
  pthread_mutex_lock(&k->mu);
  int rc = deployment_path(k, p->node, path, sizeof path, &err);
  pthread_mutex_unlock(&k->mu);
  if (rc == 0) rc = sf__k8s_delete(k->k, path, NULL, &err);
  if (rc < 0) sf__logf("kubernetes", "deleting the worker on %s: %s", p->node, err.msg);
  return rc;
}

static int available(const cJSON *d) {
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(d, "status");
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(st, "availableReplicas");
  return cJSON_IsNumber(a) && a->valueint >= 1;
}

static int k_alive(void *ctx, const sf_proc *p) {
  kdrv *k = ctx;
  char path[512];
  sf_err err = {0};
  if (p->role == SF_PROC_GATEWAY) {
    if (sf__k8s_path(path, sizeof path, &sf__k8s_deployments, k->ns, k->gw_deploy, NULL, &err) < 0)
      return 0;
    cJSON *d = NULL;
    long code = 0;
    int rc = sf__k8s_get(k->k, path, &d, &code, &err);
    int alive = rc == 0 ? available(d) : code == 404 ? 0 : 1; /* unknown: do not thrash */
    cJSON_Delete(d);
    return alive;
  }
  if (sf__driver_k8s_node_ready(&(sf_driver){&k8s_ops, k}, p->node) == 0) return 0;
  pthread_mutex_lock(&k->mu);
  int rc = deployment_path(k, p->node, path, sizeof path, &err);
  pthread_mutex_unlock(&k->mu);
  if (rc < 0) return 0;
  cJSON *d = NULL;
  long code = 0;
  rc = sf__k8s_get(k->k, path, &d, &code, &err);
  cJSON_Delete(d);
  return rc == 0 ? 1 : code == 404 ? 0 : 1;
}

static int k_list(void *ctx, sf_proc *out, int max) {
  kdrv *k = ctx;
  char sel[300], rv[32];
  sf__k8s_stage_selector(k->model, sel, sizeof sel);
  cJSON *items = NULL;
  sf_err err = {0};
  if (sf__k8s_list(k->k, &sf__k8s_deployments, k->ns, sel, &items, rv, sizeof rv, &err) < 0) {
    sf__logf("kubernetes", "listing the workers: %s", err.msg);
    return 0;
  }
  cJSON *nodes = sf__k8s_informer_snapshot(k->nodes, NULL);
  int n = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, items) {
    if (n >= max) break;
    const cJSON *ann = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(it, "metadata"), "annotations");
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(ann, "seifer.dev/node");
    if (!cJSON_IsString(node) || strlen(node->valuestring) >= sizeof out[n].node) continue;
    sf_proc *p = &out[n];
    memset(p, 0, sizeof *p);
    p->role = SF_PROC_WORKER;
    snprintf(p->node, sizeof p->node, "%s", node->valuestring);
    const cJSON *o;
    cJSON_ArrayForEach(o, nodes) {
      sf_k8s_node nd;
      if (sf__k8s_node_parse(o, &nd, NULL) == 0 && !strcmp(nd.name, p->node) && nd.address[0])
        snprintf(p->addr, sizeof p->addr, strchr(nd.address, ':') ? "[%s]:%d" : "%s:%d", nd.address,
                 k->port);
    }
    n++;
  }
  if (n < max) {
    memset(&out[n], 0, sizeof out[n]);
    out[n].role = SF_PROC_GATEWAY;
    snprintf(out[n].addr, sizeof out[n].addr, "%s", k->gw_data);
    snprintf(out[n].url, sizeof out[n].url, "%s", k->gw_url);
    n++;
  }
  cJSON_Delete(nodes);
  cJSON_Delete(items);
  return n;
}

static void k_free(void *ctx) {
  kdrv *k = ctx;
  if (!k) return;
  sf__k8s_informer_stop(k->nodes);
  sf__k8s_free(k->k);
  sf__k8s_config_deinit(&k->cfg);
  pthread_mutex_destroy(&k->mu);
  free(k->as);
  free(k);
}

static const sf_driver_ops k8s_ops = {"kubernetes", k_start, k_stop, k_alive, k_list, k_free};

static int copy_opt(char *dst, size_t cap, const char *v, const char *def, const char *what,
                    sf_err *err) {
  const char *s = v ? v : def;
  if (!s || strlen(s) >= cap)
    return sf__errf(err, SF_EINVAL, "kubernetes driver: %s missing or too long", what);
  snprintf(dst, cap, "%s", s);
  return 0;
}

int sf__driver_k8s(sf_driver *d, const sf_k8s_driver_opts *o, sf_err *err) {
  memset(d, 0, sizeof *d);
  if (!o->config) return sf__errf(err, SF_EINVAL, "kubernetes driver: no configuration");
  kdrv *k = sf__calloc(1, sizeof *k);
  if (!k) return sf__errf(err, SF_ENOMEM, "out of memory");
  pthread_mutex_init(&k->mu, NULL);
  int rc = sf__k8s_config_copy(&k->cfg, o->config, err);
  if (rc < 0) {
    pthread_mutex_destroy(&k->mu);
    free(k);
    return rc;
  }
  snprintf(k->ns, sizeof k->ns, "%s", k->cfg.ns[0] ? k->cfg.ns : "default");
  char dgw[300], dgu[300];
  snprintf(dgw, sizeof dgw, "seifer-gateway.%s.svc:7000", k->ns);
  snprintf(dgu, sizeof dgu, "http://seifer-gateway.%s.svc:8000", k->ns);
  if ((rc = copy_opt(k->model, sizeof k->model, o->model, NULL, "model", err)) < 0 ||
      (rc = copy_opt(k->uid, sizeof k->uid, o->model_uid, "", "model uid", err)) < 0 ||
      (rc = copy_opt(k->image, sizeof k->image, o->image, NULL, "image", err)) < 0 ||
      (rc = copy_opt(k->secret, sizeof k->secret, o->secret, "seifer-cluster-secret", "secret",
                     err)) < 0 ||
      (rc = copy_opt(k->manager, sizeof k->manager, o->manager, "seifer-controller",
                     "field manager", err)) < 0 ||
      (rc = copy_opt(k->gw_data, sizeof k->gw_data, o->gateway_data, dgw, "gateway address", err)) <
          0 ||
      (rc = copy_opt(k->gw_url, sizeof k->gw_url, o->gateway_url, dgu, "gateway URL", err)) < 0 ||
      (rc = copy_opt(k->gw_deploy, sizeof k->gw_deploy, o->gateway_deployment, "seifer-gateway",
                     "gateway", err)) < 0)
    goto fail;
  k->port = o->port > 0 ? o->port : 7100;
  k->memory = o->memory_bytes > 0 ? o->memory_bytes : (int64_t)256 << 20;
  k->threads = o->threads;
  /* the names it will generate must be valid before anything runs */
  sf_k8s_stage probe = {.ns = k->ns,
                        .model = k->model,
                        .node = "node",
                        .memory_bytes = k->memory,
                        .port = k->port,
                        .image = k->image,
                        .secret = k->secret};
  cJSON *t = sf__k8s_stage_deployment(&probe, err);
  if (!t) {
    rc = err ? err->code : SF_EINVAL;
    goto fail;
  }
  cJSON_Delete(t);
  if ((rc = sf__k8s_new(&k->k, &k->cfg, err)) < 0) goto fail;
  sf_k8s_informer_opts io = {.kind = &sf__k8s_nodes};
  if ((rc = sf__k8s_informer_start(&k->nodes, &k->cfg, &io, err)) < 0) goto fail;
  d->ops = &k8s_ops;
  d->ctx = k;
  return 0;
fail:
  k_free(k);
  return rc;
}

static kdrv *of(sf_driver *d) {
  return d && d->ops == &k8s_ops ? d->ctx : NULL;
}

int sf__driver_k8s_assign(sf_driver *d, const char *node, const sf_k8s_assignment *a, sf_err *err) {
  kdrv *k = of(d);
  if (!k) return sf__errf(err, SF_EINVAL, "not the kubernetes driver");
  if (!node || strlen(node) >= sizeof k->as[0].node)
    return sf__errf(err, SF_EINVAL, "bad node name");
  if (a && ((a->version && strlen(a->version) >= 64) || (a->digest && strlen(a->digest) != 64)))
    return sf__errf(err, SF_EINVAL,
                    "assignment for %s: version too long or digest not 64 hex digits", node);
  pthread_mutex_lock(&k->mu);
  kassign *x = assignment(k, node);
  int rc = 0;
  if (!a) {
    if (x) *x = k->as[--k->n_as];
  } else {
    if (!x) {
      if (k->n_as >= K8S_MAX_NODES) {
        rc = sf__errf(err, SF_ELIMIT, "more than %d nodes", K8S_MAX_NODES);
        goto out;
      }
      int cap = k->n_as;
      if (sf__grow((void **)&k->as, &cap, k->n_as + 1, sizeof *k->as) < 0) {
        rc = sf__errf(err, SF_ENOMEM, "out of memory");
        goto out;
      }
      x = &k->as[k->n_as++];
    }
    memset(x, 0, sizeof *x);
    snprintf(x->node, sizeof x->node, "%s", node);
    x->a = *a;
    snprintf(x->version, sizeof x->version, "%s", a->version ? a->version : "");
    snprintf(x->digest, sizeof x->digest, "%s", a->digest ? a->digest : "");
    x->a.version = NULL;
    x->a.digest = NULL;
  }
out:
  pthread_mutex_unlock(&k->mu);
  return rc;
}

int sf__driver_k8s_node_ready(sf_driver *d, const char *node) {
  kdrv *k = of(d);
  if (!k) return -1;
  cJSON *all = sf__k8s_informer_snapshot(k->nodes, NULL);
  int r = -1;
  const cJSON *o;
  cJSON_ArrayForEach(o, all) {
    sf_k8s_node n;
    if (sf__k8s_node_parse(o, &n, NULL) == 0 && !strcmp(n.name, node)) r = n.ready;
  }
  cJSON_Delete(all);
  return r;
}

int sf__driver_k8s_fd(sf_driver *d) {
  kdrv *k = of(d);
  return k ? sf__k8s_informer_fd(k->nodes) : -1;
}

sf_k8s_informer *sf__driver_k8s_nodes(sf_driver *d) {
  kdrv *k = of(d);
  return k ? k->nodes : NULL;
}
