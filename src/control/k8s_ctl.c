/* The controller's Kubernetes mode (k8s_ctl.h): nodes, model, driver, leadership and status from
 * and to the API, as hooks of the reconcile loop in controller.c. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "control/k8s_ctl.h"
#include "control/k8s_driver.h"
#include "serve/serve.h"

#define WHO "controller"
#define DEFAULT_GFLOPS_PER_CPU 10.0
#define DEFAULT_LINK_MBPS 1000.0
#define DEFAULT_LINK_RTT_MS 0.5
#define IDLE_WORKER_BYTES ((int64_t)32 << 20) /* request of a worker that holds no stage yet */

/* A download of the model in a thread (the loop keeps serving and failing over meanwhile). */
typedef struct kfetch {
  pthread_t th;
  int running; /* a thread was started and not joined yet */
  atomic_int done, abort;
  char uri[2048], sha[65], repo[PATH_MAX], name[256], tmp[PATH_MAX + 64];
  long version;
  int64_t max;
  /* results */
  int rc;
  char reason[64], msg[600], hex[65];
  size_t len;
  double secs;
} kfetch;

typedef struct kcond {
  char status[16], reason[64], message[600], since[40];
} kcond;

struct k8s_ctl {
  sf_k8s_ctl_opts ko;
  sf_controller_opts o; /* the controller's options with the SeiferModel's codec and gain */
  const sf_controller_opts *orig;
  sf_k8s_config cfg;
  sf_k8s *k;
  sf_k8s_elector *el;
  sf_k8s_informer *models;
  uint64_t models_gen;
  char ns[64], identity[256], image[1024], gw_data[256], gw_url[300];
  sf_k8s_model m; /* the SeiferModel as last read */
  int have_m;
  int64_t max_bytes;
  /* fetching */
  char fetched_key[2400]; /* uri|sha|version of the last fetch tried */
  double fetch_retry_at;
  int fetch_failed;
  char fetch_reason[64], fetch_msg[600];
  kfetch f;
  /* status */
  char *status_last;
  double status_retry_at;
  kcond ready, version;
  double lead_t; /* sf__now() when this replica began to lead */
  int settled;   /* the first rollout may run */
  int rescan_held;
};

static int env_or(const char *v, const char *env, const char *def, char *out, size_t cap) {
  const char *s = v ? v : getenv(env) && getenv(env)[0] ? getenv(env) : def;
  if (!s || strlen(s) >= cap) return -1;
  snprintf(out, cap, "%s", s);
  return 0;
}

/* ---- the SeiferModel ---------------------------------------------------------------------------
 */
/* The SeiferModel named name (or the only one): 1 found, 0 none yet, < 0 error (err). */
static int find_model(struct k8s_ctl *K, const char *name, sf_k8s_model *m, cJSON **obj,
                      sf_err *err) {
  cJSON *all = sf__k8s_informer_snapshot(K->models, NULL), *it, *hit = NULL;
  int n = 0;
  cJSON_ArrayForEach(it, all) {
    const cJSON *nm =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(it, "metadata"), "name");
    if (!cJSON_IsString(nm)) continue;
    if (name ? !strcmp(nm->valuestring, name) : 1) {
      hit = it;
      n++;
    }
  }
  int rc = 0;
  if (n > 1) {
    rc = sf__errf(err, SF_EINVAL, "%d SeiferModels in namespace %s: choose one with --model NAME",
                  n, K->ns);
  } else if (n == 1) {
    rc = sf__k8s_model_parse(hit, m, err);
    if (rc == 0) {
      rc = 1;
      if (obj) *obj = cJSON_Duplicate(hit, 1);
    }
  }
  cJSON_Delete(all);
  return rc;
}

/* spec.replanGain, or def. */
static double replan_gain(const cJSON *obj, double def) {
  const cJSON *g =
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "spec"), "replanGain");
  return cJSON_IsNumber(g) && g->valuedouble >= 0 && g->valuedouble <= 100 ? g->valuedouble : def;
}


static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
  (void)dt, (void)dn, (void)ut, (void)un;
  return atomic_load((atomic_int *)ud) ? 1 : 0; /* non-zero aborts the transfer */
}

/* Read uri (file:// or http(s)://) into *data, at most max bytes. */
static int fetch_uri(const char *uri, int64_t max, atomic_int *abort_flag, void **data, size_t *len,
                     sf_err *err) {
  if (!strncmp(uri, "file://", 7)) {
    const char *path = uri + 7;
    if (path[0] != '/')
      return sf__errf(err, SF_EINVAL, "%s: a file:// URI needs an absolute path", uri);
    return sf__read_file(path, max, data, len, err);
  }
  if (strncmp(uri, "http://", 7) && strncmp(uri, "https://", 8))
    return sf__errf(err, SF_EUNSUPPORTED, "%s: only file://, http:// and https:// URIs", uri);
  CURL *h = curl_easy_init();
  if (!h) return sf__errf(err, SF_ENOMEM, "curl: out of memory");
  sf_curl_buf b = {.max = (size_t)max};
  char eb[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(h, CURLOPT_URL, uri);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sf__curl_buf_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
  curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, eb);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, abort_flag);
  CURLcode c = curl_easy_perform(h);
  curl_easy_cleanup(h);
  if (b.over || c == CURLE_FILESIZE_EXCEEDED) {
    free(b.d);
    return sf__errf(err, SF_ELIMIT, "%s: larger than %" PRId64 " bytes", uri, max);
  }
  if (c != CURLE_OK) {
    free(b.d);
    return sf__errf(err, SF_EIO, "%s: %s", uri, eb[0] ? eb : curl_easy_strerror(c));
  }
  *data = b.d ? (void *)b.d : malloc(1);
  *len = b.len;
  return *data ? 0 : sf__errf(err, SF_ENOMEM, "out of memory");
}

static void fetch_fail(struct k8s_ctl *K, ctl *C, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fetch_fail(struct k8s_ctl *K, ctl *C, const char *reason, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(K->fetch_msg, sizeof K->fetch_msg, fmt, ap);
  va_end(ap);
  snprintf(K->fetch_reason, sizeof K->fetch_reason, "%s", reason);
  K->fetch_failed = 1;
  sf__ctl_event(C, "SeiferModel %s version %s: %s", K->m.name, K->m.version, K->fetch_msg);
}

/* The download thread: fetch, check the digest, store as REPO/NAME/VERSION/model.onnx. */
static void *fetch_main(void *arg) {
  kfetch *f = arg;
  sf_err err = {0};
  void *data = NULL;
  double t0 = sf__now();
  f->rc = fetch_uri(f->uri, f->max, &f->abort, &data, &f->len, &err);
  if (f->rc < 0) {
    snprintf(f->reason, sizeof f->reason, "FetchFailed");
    snprintf(f->msg, sizeof f->msg, "fetching: %.500s", err.msg);
    goto out;
  }
  uint8_t d[32];
  sf__sha256(data, f->len, d);
  sf__hex(d, 32, f->hex);
  if (f->sha[0] && strcasecmp(f->hex, f->sha)) {
    f->rc = SF_EINVAL;
    snprintf(f->reason, sizeof f->reason, "DigestMismatch");
    snprintf(f->msg, sizeof f->msg, "%.300s has SHA-256 %s, spec.model.sha256 says %s", f->uri,
             f->hex, f->sha);
    goto out;
  }
  f->rc = sf__write_file_atomic(f->tmp, data, f->len, &err);
  if (f->rc == 0) f->rc = sf__repo_add(f->repo, f->name, f->version, f->tmp, &err);
  unlink(f->tmp);
  if (f->rc < 0) {
    snprintf(f->reason, sizeof f->reason, "FetchFailed");
    snprintf(f->msg, sizeof f->msg, "storing: %.500s", err.msg);
  }
out:
  free(data);
  f->secs = sf__now() - t0;
  atomic_store(&f->done, 1);
  return NULL;
}

/* Bring spec.model into the repository as DIR/repo/NAME/VERSION/model.onnx (once per uri, digest
 * and version; a failed download is tried again after 10 s), in a thread; called every turn. */
static void fetch_model(ctl *C) {
  struct k8s_ctl *K = C->k8s;
  kfetch *f = &K->f;
  if (f->running) {
    if (!atomic_load(&f->done)) return;
    pthread_join(f->th, NULL);
    f->running = 0;
    if (f->rc < 0) {
      if (!strcmp(f->reason, "FetchFailed")) K->fetch_retry_at = sf__now() + 10;
      fetch_fail(K, C, f->reason, "%s", f->msg);
      return;
    }
    sf__ctl_event(
        C, "SeiferModel %s: version %ld fetched from %.300s (%zu bytes, sha256 %.12s%s) in %.2f s",
        f->name, f->version, f->uri, f->len, f->hex, f->sha[0] ? ", checked" : "", f->secs);
    if (C->o->rescan) *C->o->rescan = 1; /* the repository scan trusts it at once */
    C->next_scan = 0;
    return;
  }
  const sf_k8s_model *m = &K->m;
  char key[sizeof K->fetched_key];
  snprintf(key, sizeof key, "%.2047s|%s|%s", m->uri, m->sha256, m->version);
  if (!strcmp(key, K->fetched_key) &&
      !(K->fetch_failed && !strcmp(K->fetch_reason, "FetchFailed") &&
        sf__now() >= K->fetch_retry_at))
    return;
  snprintf(K->fetched_key, sizeof K->fetched_key, "%s", key);
  K->fetch_failed = 0;
  K->fetch_reason[0] = K->fetch_msg[0] = 0;
  char *end;
  errno = 0;
  long v = strtol(m->version, &end, 10);
  if (!isdigit((unsigned char)m->version[0]) || *end || errno || v < 1 || v > 999999999) {
    fetch_fail(K, C, "BadVersion",
               "spec.model.version '%s' must be a positive integer (the repository's layout)",
               m->version);
    return;
  }
  char dst[PATH_MAX + 600];
  snprintf(dst, sizeof dst, "%s/%s/%ld/model.onnx", C->repo, C->name, v);
  if (access(dst, F_OK) == 0) return; /* fetched before (a restarted controller) */
  snprintf(f->uri, sizeof f->uri, "%s", m->uri);
  snprintf(f->sha, sizeof f->sha, "%s", m->sha256);
  snprintf(f->repo, sizeof f->repo, "%s", C->repo);
  snprintf(f->name, sizeof f->name, "%s", C->name);
  snprintf(f->tmp, sizeof f->tmp, "%.4000s/fetch-%ld.onnx", C->dir, v);
  f->version = v;
  f->max = K->max_bytes;
  f->rc = 0;
  f->reason[0] = f->msg[0] = f->hex[0] = 0;
  f->len = 0;
  atomic_store(&f->done, 0);
  if (pthread_create(&f->th, NULL, fetch_main, f) != 0) {
    K->fetch_retry_at = sf__now() + 10;
    fetch_fail(K, C, "FetchFailed", "cannot start a download thread");
    return;
  }
  f->running = 1;
}

/* ---- the cluster from the Nodes ----------------------------------------------------------------
 */
static int selector_match(const cJSON *node, const char *sel) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", sel);
  for (char *save = NULL, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(kv, '=');
    if (!eq) return 0;
    *eq = 0;
    const char *v = sf__k8s_label(node, kv);
    if (!v || strcmp(v, eq + 1)) return 0;
  }
  return 1;
}

static int build_cluster(ctl *C, sf_err *err) {
  struct k8s_ctl *K = C->k8s;
  sf_k8s_informer *inf = sf__driver_k8s_nodes(&C->drv);
  cJSON *all = sf__k8s_informer_snapshot(inf, NULL), *it;
  cJSON *doc = cJSON_CreateObject(), *nodes = cJSON_AddArrayToObject(doc, "nodes");
  cJSON *dl = cJSON_AddObjectToObject(doc, "default_link");
  cJSON_AddNumberToObject(dl, "mbps", DEFAULT_LINK_MBPS);
  cJSON_AddNumberToObject(dl, "rtt_ms", DEFAULT_LINK_RTT_MS);
  int n = 0, rc = 0;
  cJSON_ArrayForEach(it, all) {
    sf_k8s_node nd;
    if (sf__k8s_node_parse(it, &nd, NULL) < 0) continue;
    const char *skip = NULL;
    if (K->m.node_selector[0] && !selector_match(it, K->m.node_selector))
      skip = "not selected by spec.placement.nodeSelector";
    else if (nd.unschedulable)
      skip = "unschedulable";
    else if (nd.memory <= 0)
      skip = "no status.allocatable.memory";
    else if (strlen(nd.name) > 63)
      skip = "name longer than 63 characters";
    else if (n >= CTL_MAX_NODES)
      skip = "too many nodes";
    if (skip) {
      sf__logf(WHO, "node %s left out: %s", nd.name, skip);
      continue;
    }
    const char *g = sf__k8s_label(it, "seifer.dev/gflops");
    double gf = g ? strtod(g, NULL) : 0;
    if (!(gf > 0 && gf < 1e9))
      gf = nd.cpu_milli > 0 ? DEFAULT_GFLOPS_PER_CPU * (double)nd.cpu_milli / 1000.0
                            : DEFAULT_GFLOPS_PER_CPU;
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "name", nd.name);
    cJSON_AddNumberToObject(x, "memory_bytes", (double)nd.memory);
    cJSON_AddNumberToObject(x, "gflops", gf);
    cJSON_AddItemToArray(nodes, x);
    sf__logf(WHO, "node %s: %" PRId64 " MiB, %.3g GFLOP/s%s, %s", nd.name, nd.memory >> 20, gf,
             g ? " (seifer.dev/gflops)" : "", nd.ready ? "Ready" : "not Ready");
    n++;
  }
  cJSON_Delete(all);
  char *txt = n ? cJSON_PrintUnformatted(doc) : NULL;
  cJSON_Delete(doc);
  if (n == 0) return sf__errf(err, SF_EINVAL, "no node can run workers");
  if (!txt) return sf__errf(err, SF_ENOMEM, "out of memory");
  rc = sf__cluster_parse(txt, strlen(txt), &C->cl, err);
  free(txt);
  if (rc < 0) return sf__errctx(err, rc, "cluster from the Nodes");
  C->have_cl = 1;
  C->addr = sf__calloc((size_t)C->cl.n, sizeof *C->addr);
  if (!C->addr) return sf__errf(err, SF_ENOMEM, "out of memory");
  return 0;
}

/* ---- setup -------------------------------------------------------------------------------------
 */
int sf__k8s_ctl_setup(ctl *C, sf_err *err) {
  const sf_controller_opts *o = C->o;
  struct k8s_ctl *K = sf__calloc(1, sizeof *K);
  if (!K) return sf__errf(err, SF_ENOMEM, "out of memory");
  C->k8s = K;
  K->ko = *o->kubernetes;
  K->o = *o;
  K->orig = o;
  K->o.emulate = 0; /* real links and compute */
  K->o.emulate_compute = 0;
  const sf_k8s_ctl_opts *ko = &K->ko;
  K->max_bytes = ko->max_model_bytes > 0 ? ko->max_model_bytes : (int64_t)4 << 30;
  int rc = ko->kubeconfig ? sf__k8s_config_kubeconfig(&K->cfg, ko->kubeconfig, ko->context, err)
                          : sf__k8s_config_incluster(&K->cfg, NULL, err);
  if (rc < 0) return sf__errctx(err, rc, "kubernetes configuration");
  if (env_or(ko->ns, "POD_NAMESPACE", K->cfg.ns[0] ? K->cfg.ns : "default", K->ns, sizeof K->ns) <
          0 ||
      !sf__k8s_dns_label(K->ns))
    return sf__errf(err, SF_EINVAL, "namespace '%.100s' is not a DNS-1123 label",
                    ko->ns                    ? ko->ns
                    : getenv("POD_NAMESPACE") ? getenv("POD_NAMESPACE")
                                              : "");
  snprintf(K->cfg.ns, sizeof K->cfg.ns, "%s", K->ns);
  char host[200] = "controller";
  gethostname(host, sizeof host - 1);
  char defid[256];
  snprintf(defid, sizeof defid, "%.200s-%ld", host, (long)getpid());
  if (env_or(ko->identity, "POD_NAME", defid, K->identity, sizeof K->identity) < 0)
    return sf__errf(err, SF_EINVAL, "identity longer than %zu characters", sizeof K->identity - 1);
  if (env_or(ko->image, "SEIFER_IMAGE", "seifer:0.1.0", K->image, sizeof K->image) < 0)
    return sf__errf(err, SF_EINVAL, "image name too long");
  char dgw[300], dgu[300];
  snprintf(dgw, sizeof dgw, "seifer-gateway.%s.svc:7000", K->ns);
  snprintf(dgu, sizeof dgu, "http://seifer-gateway.%s.svc:8000", K->ns);
  if (env_or(ko->gateway, "SEIFER_GATEWAY", dgw, K->gw_data, sizeof K->gw_data) < 0 ||
      env_or(ko->gateway_url, "SEIFER_GATEWAY_URL", dgu, K->gw_url, sizeof K->gw_url) < 0)
    return sf__errf(err, SF_EINVAL, "gateway address too long");
  const char *secret = ko->secret_file ? ko->secret_file : "/etc/seifer/secret/secret";
  if ((rc = sf__secret_load(&C->sec, secret, err)) < 0)
    return sf__errctx(err, rc, "cluster secret %s", secret);
  if ((rc = sf__k8s_new(&K->k, &K->cfg, err)) < 0) return rc;
  /* leader election runs from the start: a standby keeps observing the lease */
  sf_k8s_lease_opts lo = {.ns = K->ns,
                          .name = "seifer-controller",
                          .identity = K->identity,
                          .lease_ms = ko->lease_ms,
                          .renew_ms = ko->renew_ms,
                          .retry_ms = ko->retry_ms};
  if ((rc = sf__k8s_elector_start(&K->el, &K->cfg, &lo, err)) < 0)
    return sf__errctx(err, rc, "leader election");
  sf_k8s_informer_opts mo = {.kind = &sf__k8s_seifermodels, .ns = K->ns};
  if ((rc = sf__k8s_informer_start(&K->models, &K->cfg, &mo, err)) < 0) return rc;
  /* the SeiferModel */
  cJSON *obj = NULL;
  double t0 = sf__now(), said = 0;
  for (;;) {
    sf_k8s_informer_stats st;
    sf__k8s_informer_stats(K->models, &st);
    if (st.synced && (rc = find_model(K, ko->model, &K->m, &obj, err)) != 0) break;
    if (*C->stop) return sf__errf(err, SF_EIO, "stopped while waiting for the SeiferModel");
    if (sf__now() - said > 10) {
      said = sf__now();
      if (said - t0 > 1)
        sf__logf(WHO, "waiting for %s%s in namespace %s%s%s",
                 ko->model ? "SeiferModel " : "a SeiferModel", ko->model ? ko->model : "", K->ns,
                 st.synced ? "" : " (listing: ",
                 st.synced          ? ""
                 : st.last_error[0] ? st.last_error
                                    : "not answered yet)");
    }
    sf__k8s_informer_wait(K->models, sf__k8s_informer_gen(K->models), 200);
  }
  if (rc < 0) return sf__errctx(err, rc, "namespace %s", K->ns);
  K->have_m = 1;
  K->models_gen = 0;
  if (!sf__k8s_dns_label(K->m.name) || strlen(K->m.name) > 40) {
    cJSON_Delete(obj);
    return sf__errf(err, SF_EINVAL,
                    "SeiferModel name '%s': at most 40 characters, a DNS-1123 label", K->m.name);
  }
  snprintf(C->name, sizeof C->name, "%s", K->m.name);
  snprintf(C->repo, sizeof C->repo, "%.4000s/repo", C->dir);
  int codec = sf__codec_parse(K->m.codec);
  if (codec >= 0) K->o.codec = codec;
  K->o.replan_gain = replan_gain(obj, K->o.replan_gain);
  cJSON_Delete(obj);
  C->o = &K->o;
  /* the driver and its Node informer */
  sf_k8s_driver_opts dopt = {.config = &K->cfg,
                             .model = K->m.name,
                             .model_uid = K->m.uid[0] ? K->m.uid : NULL,
                             .image = K->image,
                             .port = ko->worker_port,
                             .memory_bytes = IDLE_WORKER_BYTES,
                             .threads = o->threads,
                             .gateway_data = K->gw_data,
                             .gateway_url = K->gw_url};
  if ((rc = sf__driver_k8s(&C->drv, &dopt, err)) < 0) return rc;
  for (;;) {
    sf_k8s_informer_stats st;
    sf__k8s_informer_stats(sf__driver_k8s_nodes(&C->drv), &st);
    if (st.synced) break;
    if (*C->stop) return sf__errf(err, SF_EIO, "stopped while listing the Nodes");
    if (sf__now() - t0 > 60)
      return sf__errf(err, SF_EIO, "listing the Nodes: %s",
                      st.last_error[0] ? st.last_error : "no answer in 60 s");
    usleep(20000);
  }
  if ((rc = build_cluster(C, err)) < 0) return rc;
  sf__logf(
      WHO,
      "kubernetes: namespace %s, SeiferModel %s (version %s, codec %s), %d nodes, identity %s, "
      "image %s, gateway %s",
      K->ns, K->m.name, K->m.version, K->m.codec, C->cl.n, K->identity, K->image, K->gw_data);
  fetch_model(C);
  return 0;
}

int sf__k8s_ctl_wait_leader(ctl *C) {
  struct k8s_ctl *K = C->k8s;
  double said = 0;
  while (!*C->stop) {
    if (sf__k8s_elector_leading(K->el)) {
      sf__logf(WHO, "leading (Lease %s/seifer-controller, identity %s)", K->ns, K->identity);
      K->lead_t = sf__now();
      return 0;
    }
    if (sf__now() - said > 30) {
      sf_k8s_lease_state st;
      sf__k8s_elector_state(K->el, &st);
      sf__logf(WHO, "standby: the Lease %s/seifer-controller is held by %s", K->ns,
               st.holder[0] ? st.holder : "(nobody yet)");
      said = sf__now();
    }
    usleep(50000);
  }
  return -1;
}

/* ---- nodes turning NotReady
 * ----------------------------------------------------------------------
 */
/* From one snapshot of the Node informer: ready[i] = 1 Ready, 0 not Ready, -1 gone, for every
 * node of the cluster. */
static void nodes_ready(ctl *C, signed char *ready) {
  cJSON *all = sf__k8s_informer_snapshot(sf__driver_k8s_nodes(&C->drv), NULL);
  const cJSON *o;
  memset(ready, -1, (size_t)C->cl.n);
  cJSON_ArrayForEach(o, all) {
    sf_k8s_node n;
    if (sf__k8s_node_parse(o, &n, NULL) < 0) continue;
    for (int i = 0; i < C->cl.n; i++)
      if (!strcmp(n.name, C->cl.nodes[i].name)) ready[i] = (signed char)(n.ready != 0);
  }
  cJSON_Delete(all);
}

void sf__k8s_ctl_nodes_changed(ctl *C) {
  char buf[256];
  signed char ready[CTL_MAX_NODES];
  int fd = sf__driver_k8s_fd(&C->drv);
  while (fd >= 0 && read(fd, buf, sizeof buf) > 0) {
  }
  nodes_ready(C, ready);
  for (int i = 0; i < C->cl.n; i++)
    if (C->nodes[i].up && ready[i] != 1)
      sf__ctl_node_down(C, i, ready[i] == 0 ? "Node not Ready" : "Node deleted");
}

/* ---- stage Deployments -------------------------------------------------------------------------
 */
static cJSON *deployment_template(struct k8s_ctl *K, const char *node) {
  sf_k8s_stage s = {.ns = K->ns, .model = K->m.name, .node = node};
  char name[64], path[512];
  if (sf__k8s_stage_name(&s, name, sizeof name, NULL) < 0 ||
      sf__k8s_path(path, sizeof path, &sf__k8s_deployments, K->ns, name, NULL, NULL) < 0)
    return NULL;
  cJSON *d = NULL;
  if (sf__k8s_get(K->k, path, &d, NULL, NULL) < 0) return NULL;
  cJSON *t = cJSON_DetachItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(d, "spec"),
                                                     "template");
  cJSON_Delete(d);
  return t;
}

static const char *node_name(const ctl *C, int idx) {
  return C->cl.nodes[idx].name;
}

/* Wait until the link of node idx breaks (its old process is gone), up to timeout_ms. */
static int wait_link_gone(ctl *C, int idx, int timeout_ms) {
  cnode *n = &C->nodes[idx];
  double end = sf__now() + timeout_ms / 1000.0;
  sf_frame f = {0};
  int gone = 0;
  while (n->c && !gone && sf__now() < end && !*C->stop && sf__k8s_elector_leading(C->k8s->el) &&
         sf__driver_k8s_node_ready(&C->drv, C->cl.nodes[idx].name) == 1) {
    struct pollfd p = {.fd = sf__conn_fd(n->c), .events = POLLIN};
    if (poll(&p, 1, 100) <= 0) continue;
    if (sf__frame_recv(n->c, &f, 1 << 20, 1000, NULL) < 0) gone = 1;
  }
  sf__frame_deinit(&f);
  return gone;
}

int sf__k8s_ctl_stages(ctl *C, const cdeploy *d, const sf_plan *p, sf_err *err) {
  struct k8s_ctl *K = C->k8s;
  unsigned char in[CTL_MAX_NODES] = {0}, changed[CTL_MAX_NODES] = {0};
  for (int i = 0; i < d->n; i++) in[d->nodes[i]] = 1;
  for (int i = 0; C->dep.active && i < C->dep.n; i++) in[C->dep.nodes[i]] |= 2;
  for (int v = 0; v < C->cl.n; v++) /* nodes left out: the default memory at their next start */
    if (!in[v]) sf__driver_k8s_assign(&C->drv, C->cl.nodes[v].name, NULL, NULL);
  double t0 = sf__wall();
  for (int i = 0; i < d->n; i++) {
    int idx = d->nodes[i];
    const char *node = C->cl.nodes[idx].name;
    sf_k8s_assignment a = {.pipeline = d->id,
                           .stage = i,
                           .n_stages = d->n,
                           .plan_generation = (long)d->id,
                           .version = d->version,
                           .memory_bytes = p->stages[i].mem_bytes,
                           .digest = strlen(d->digest[i]) == 64 ? d->digest[i] : NULL};
    if (!sf__k8s_elector_leading(K->el)) /* only the leader writes */
      return sf__errf(err, SF_EIO, "not leading any more");
    int rc = sf__driver_k8s_assign(&C->drv, node, &a, err);
    if (rc < 0) return rc;
    cJSON *before = deployment_template(K, node);
    sf_proc pr;
    memset(&pr, 0, sizeof pr);
    pr.role = SF_PROC_WORKER;
    snprintf(pr.node, sizeof pr.node, "%s", node);
    if ((rc = C->drv.ops->start(C->drv.ctx, &pr, err)) < 0) {
      cJSON_Delete(before);
      return rc;
    }
    cJSON *after = deployment_template(K, node);
    changed[idx] = !before || !after || !cJSON_Compare(before, after, 1);
    cJSON_Delete(before);
    cJSON_Delete(after);
    char mem[32];
    sf__k8s_quantity_mib(a.memory_bytes, mem, sizeof mem);
    sf__logf(WHO, "stage %d/%d of pipeline %u on %s: Deployment applied (memory %s%s) at %.3f",
             i + 1, d->n, d->id, node, mem, changed[idx] ? ", pod replaced" : ", pod kept",
             sf__wall());
  }
  sf__ctl_event(C, "pipeline %u: %d stage Deployment%s applied in %.3f s", d->id, d->n,
                d->n == 1 ? "" : "s", sf__wall() - t0);
  /* replaced pods: their old worker goes, the new one is connected to */
  for (int i = 0; i < d->n; i++) {
    int idx = d->nodes[i];
    if (!changed[idx] || !C->nodes[idx].up) continue;
    changed[idx] = 0;
    wait_link_gone(C, idx, 10000);
    double end = sf__now() + 15;
    int rc;
    for (;;) { /* the new worker, while its Node stays Ready */
      if (sf__driver_k8s_node_ready(&C->drv, node_name(C, idx)) != 1) {
        rc = sf__errf(err, SF_EIO, "node %s is not Ready", node_name(C, idx));
        break;
      }
      if (!sf__k8s_elector_leading(K->el)) {
        rc = sf__errf(err, SF_EIO, "not leading any more");
        break;
      }
      if ((rc = sf__ctl_node_reconnect(C, idx, 0, err)) == 0 || sf__now() > end || *C->stop) break;
      usleep(100000);
    }
    if (rc < 0) {
      char why[300];
      snprintf(why, sizeof why, "new worker unreachable: %.250s", err->msg);
      sf__ctl_node_down(C, idx, why);
      return rc;
    }
  }
  return 0;
}

/* ---- status ------------------------------------------------------------------------------------
 */
static void cond_set(kcond *c, const char *status, const char *reason, const char *msg) {
  if (strcmp(c->status, status) || !c->since[0])
    sf__k8s_time(sf__wall(), c->since, sizeof c->since);
  snprintf(c->status, sizeof c->status, "%s", status);
  snprintf(c->reason, sizeof c->reason, "%s", reason);
  snprintf(c->message, sizeof c->message, "%s", msg);
}

static void write_status(ctl *C) {
  struct k8s_ctl *K = C->k8s;
  if (sf__now() < K->status_retry_at) return;
  int up = 0;
  for (int i = 0; i < C->cl.n; i++) up += C->nodes[i].up;
  if (!strcmp(C->status, "serving") && C->dep.active)
    cond_set(&K->ready, "True", "PipelineServing", "");
  else if (!strcmp(C->status, "unavailable"))
    cond_set(&K->ready, "False", "Unavailable", C->reason);
  else
    cond_set(&K->ready, "False", "Starting", C->reason);
  const char *serving = C->cur.open ? C->cur.version : "";
  char msg[700] = "";
  if (K->fetch_failed) {
    cond_set(&K->version, "False", K->fetch_reason, K->fetch_msg);
  } else if (!strcmp(serving, K->m.version)) {
    cond_set(&K->version, "True", "Serving", "");
  } else {
    const char *why = NULL;
    for (int i = 0; i < C->n_rej && i < CTL_MAX_REJECTED; i++)
      if (!strcmp(C->rej[i].version, K->m.version)) why = C->rej[i].reason;
    if (why) {
      snprintf(msg, sizeof msg, "%.600s", why);
      cond_set(&K->version, "False", "VersionRejected", msg);
    } else if (C->cur.open && atol(K->m.version) < atol(serving)) {
      snprintf(msg, sizeof msg, "version %s is below the serving version %s", K->m.version,
               serving);
      cond_set(&K->version, "False", "OlderThanServing", msg);
    } else {
      cond_set(&K->version, "False", "RollingOut", "");
    }
  }
  sf_k8s_condition conds[2] = {
      {"Ready", K->ready.status, K->ready.reason, K->ready.message, K->ready.since},
      {"VersionServing", K->version.status, K->version.reason, K->version.message,
       K->version.since}};
  sf_k8s_plan_stage st[CTL_MAX_STAGES];
  char names[CTL_MAX_STAGES][64];
  int ns = 0;
  if (C->dep.active) {
    sf_plan pl = {0};
    int have = C->cur.open && sf__plan_eval(&C->cur.dm.pa.costs, &C->cl, C->dep.n, C->dep.cuts,
                                            C->dep.nodes, &pl, NULL) == 0;
    for (int i = 0; i < C->dep.n; i++) {
      const char *node = C->cl.nodes[C->dep.nodes[i]].name;
      sf_k8s_stage s = {.ns = K->ns, .model = K->m.name, .node = node};
      if (sf__k8s_stage_name(&s, names[i], sizeof names[i], NULL) < 0) names[i][0] = 0;
      st[ns++] = (sf_k8s_plan_stage){.stage = i,
                                     .node = node,
                                     .deployment = names[i][0] ? names[i] : NULL,
                                     .memory_bytes = have ? pl.stages[i].mem_bytes : 0,
                                     .compute_s = C->dep.compute_s[i]};
    }
    sf__plan_deinit(&pl);
  }
  sf_k8s_model_status s = {.name = K->m.name,
                           .observed_generation = K->m.generation,
                           .version = serving,
                           .plan_generation = C->dep.active ? (long)C->dep.id : 0,
                           .pipeline = C->dep.active ? C->dep.id : 0,
                           .stages = st,
                           .n_stages = ns,
                           .bottleneck_s = C->dep.active ? C->dep.bottleneck_s : -1,
                           .predicted_throughput = C->dep.active ? C->dep.throughput : -1,
                           .measured_throughput = -1,
                           .ready_nodes = up,
                           .nodes = C->cl.n,
                           .conds = conds,
                           .n_conds = 2};
  sf_err err = {0};
  cJSON *o = sf__k8s_model_status(&s, &err);
  char *txt = o ? cJSON_PrintUnformatted(o) : NULL;
  if (!txt || (K->status_last && !strcmp(txt, K->status_last))) {
    if (!o) sf__logf(WHO, "status: %s", err.msg);
    cJSON_Delete(o);
    free(txt);
    return;
  }
  char path[512];
  int rc = sf__k8s_path(path, sizeof path, &sf__k8s_seifermodels, K->ns, K->m.name, "status", &err);
  if (rc == 0) rc = sf__k8s_apply(K->k, path, o, "seifer-controller", 1, NULL, NULL, &err);
  cJSON_Delete(o);
  if (rc < 0) {
    sf__logf(WHO, "writing the SeiferModel status: %s", err.msg);
    K->status_retry_at = sf__now() + 1;
    free(txt);
    return;
  }
  free(K->status_last);
  K->status_last = txt;
}

/* ---- every loop turn ---------------------------------------------------------------------------
 */
int sf__k8s_ctl_tick(ctl *C) {
  struct k8s_ctl *K = C->k8s;
  if (!sf__k8s_elector_leading(K->el)) {
    sf__ctl_event(C, "not leading any more (Lease %s/seifer-controller)", K->ns);
    return -1;
  }
  uint64_t g = sf__k8s_informer_gen(K->models);
  if (g != K->models_gen) {
    K->models_gen = g;
    sf_k8s_model m;
    sf_err err = {0};
    int rc = find_model(K, K->m.name, &m, NULL, &err);
    if (rc == 0) {
      if (K->have_m)
        sf__ctl_event(C, "SeiferModel %s deleted: the pipeline keeps serving", K->m.name);
      K->have_m = 0;
    } else if (rc < 0) {
      sf__ctl_event(C, "SeiferModel %s: %s", K->m.name, err.msg);
    } else {
      if (strcmp(m.version, K->m.version) || strcmp(m.uri, K->m.uri))
        sf__ctl_event(C, "SeiferModel %s: version %s (was %s)", m.name, m.version, K->m.version);
      K->m = m;
      K->have_m = 1;
    }
  }
  if (K->have_m) fetch_model(C);
  if (!K->settled && !C->cur.open) {
    /* the first plan waits (up to 10 s) for the workers of the Ready nodes: the kubelets start
     * them after their Deployments are applied */
    int ready = 0, up = 0;
    signed char r[CTL_MAX_NODES];
    nodes_ready(C, r);
    for (int i = 0; i < C->cl.n; i++)
      if (r[i] == 1) {
        ready++;
        up += C->nodes[i].up;
      }
    if (up < ready && sf__now() - K->lead_t < 10) {
      C->next_scan = sf__now() + 0.1;
      if (C->o->rescan && *C->o->rescan) {
        *C->o->rescan = 0;
        K->rescan_held = 1;
      }
    } else {
      K->settled = 1;
      if (K->rescan_held && C->o->rescan) *C->o->rescan = 1;
      sf__logf(WHO, "%d of %d Ready nodes have their worker up: planning", up, ready);
    }
  }
  if (K->have_m) write_status(C);
  return 0;
}

void sf__k8s_ctl_free(ctl *C) {
  struct k8s_ctl *K = C->k8s;
  if (!K) return;
  if (K->f.running) { /* a download in progress is abandoned */
    atomic_store(&K->f.abort, 1);
    pthread_join(K->f.th, NULL);
  }
  sf__k8s_elector_stop(K->el); /* releases the lease when held */
  sf__k8s_informer_stop(K->models);
  sf__k8s_free(K->k);
  sf__k8s_config_deinit(&K->cfg);
  free(K->status_last);
  if (C->o == &K->o) C->o = K->orig;
  free(K);
  C->k8s = NULL;
}
