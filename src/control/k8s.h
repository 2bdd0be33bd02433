/* Kubernetes: the API client the controller's Kubernetes driver uses (libcurl + cJSON).
 *
 *   config     in-cluster (service-account token re-read when the file changes, CA, namespace,
 *              KUBERNETES_SERVICE_HOST/PORT) or a kubeconfig (server, token or token file, client
 *              certificate, CA file or data, insecure flag);
 *   requests   one call per request (thread-safe); errors carry the API's Status message;
 *   informer   list, then watch from the list's resourceVersion with bookmarks, in a thread that
 *              keeps a cache; a 410 Expired makes it list again; a change count (and a pipe to
 *              poll) tells the caller something changed;
 *   apply      server-side apply (application/apply-patch+yaml, a field manager, force);
 *   elector    leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm: a
 *              candidate takes the lease only after it has seen it unchanged for the lease
 *              duration; the leader stops acting when it could not renew within the renew
 *              deadline, which is shorter, so two replicas never act at once);
 *   objects    pure functions from a planned stage to its Deployment, from a status to the
 *              SeiferModel status patch, from a lease record to a Lease (validated by
 *              tests/k8s_manifests.sh against the Kubernetes schemas);
 *   parsing    Nodes (allocatable memory in every Quantity form, readiness, labels, address)
 *              and SeiferModels.
 *
 *   sf_k8s_config c;
 *   sf__k8s_config_incluster(&c, NULL, &err);  // or sf__k8s_config_kubeconfig(&c, path, ...)
 *   sf_k8s *k;
 *   sf__k8s_new(&k, &c, &err);
 *   sf_k8s_informer *nodes;
 *   sf__k8s_informer_start(&nodes, &c, &(sf_k8s_informer_opts){.kind = &sf__k8s_nodes}, &err);
 *   cJSON *all = sf__k8s_informer_snapshot(nodes, &gen); ...
 *   sf__k8s_apply(k, path, deployment, "seifer-controller", 1, NULL, &code, &err);
 */
#ifndef SF_K8S_H
#define SF_K8S_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "util/util.h"

/* ---- quantities ------------------------------------------------------------------------------ */
/* A Kubernetes Quantity (<number><suffix>: Ki Mi Gi Ti Pi Ei, n u m k M G T P E, or an exponent
 * e<n> / E<n>; the number may have a sign and a fraction) as bytes, rounded up as the API does.
 * Negative values and values beyond int64 are errors. */
int sf__k8s_quantity_bytes(const char *s, int64_t *out, sf_err *err);
/* The same in thousandths (CPU: "250m" -> 250, "2" -> 2000), rounded up. */
int sf__k8s_quantity_milli(const char *s, int64_t *out, sf_err *err);
/* bytes as a Quantity: "NMi" rounded up to whole MiB (what stage Deployments request). */
void sf__k8s_quantity_mib(int64_t bytes, char *out, size_t cap);

/* ---- names -------------------------------------------------------------------------------------
 */
/* 1 when s is a DNS-1123 label (<= 63, [a-z0-9]([-a-z0-9]*[a-z0-9])?) / subdomain (<= 253, labels
 * joined by dots) / a valid label value (<= 63, alphanumerics and -_. inside). */
int sf__k8s_dns_label(const char *s);
int sf__k8s_dns_subdomain(const char *s);
int sf__k8s_label_value(const char *s);

/* ---- configuration ------------------------------------------------------------------------------
 */
#define SF_K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
typedef struct sf_k8s_config {
  char server[512];      /* https://HOST:PORT */
  char token[4096];      /* a bearer token, or */
  char token_file[4096]; /* a file holding it (re-read when it changes) */
  char ca_file[4096];    /* CA bundle; "" = the system's */
  char *ca_pem;          /* or CA certificates in memory (kubeconfig certificate-authority-data) */
  char *cert_pem, *key_pem; /* client certificate and key (kubeconfig), PEM */
  char ns[64];              /* namespace to work in */
  int insecure;             /* do not verify the server certificate (tests only) */
  int timeout_ms;           /* per request (0 = 15000) */
} sf_k8s_config;

/* In-cluster: KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT, sa_dir/token, sa_dir/ca.crt,
 * sa_dir/namespace (sa_dir NULL = SF_K8S_SA_DIR). */
int sf__k8s_config_incluster(sf_k8s_config *c, const char *sa_dir, sf_err *err);
/* A kubeconfig file (YAML as kubectl and k3s write it, or JSON); context NULL = current-context.
 * Relative file paths in it are relative to its directory. Exec and auth-provider plugins are
 * not supported (an error names them). */
int sf__k8s_config_kubeconfig(sf_k8s_config *c, const char *path, const char *context, sf_err *err);
/* Copy src into dst (deep). */
int sf__k8s_config_copy(sf_k8s_config *dst, const sf_k8s_config *src, sf_err *err);
void sf__k8s_config_deinit(sf_k8s_config *c);

/* The small YAML subset of kubeconfig files (block maps and sequences, plain and quoted
 * scalars, comments) as JSON; JSON input is parsed as JSON. Scalars become strings. */
cJSON *sf__k8s_yaml_parse(const char *txt, size_t len, sf_err *err);

/* ---- requests -----------------------------------------------------------------------------------
 */
typedef struct sf_k8s sf_k8s;
int sf__k8s_new(sf_k8s **out, const sf_k8s_config *c, sf_err *err);
void sf__k8s_free(sf_k8s *k);
const char *sf__k8s_namespace(const sf_k8s *k);
const sf_k8s_config *sf__k8s_config(const sf_k8s *k);

typedef struct sf_k8s_resp {
  long code;  /* HTTP status; 0 when no answer came */
  char *body; /* malloc'ed, NUL-terminated */
  size_t len;
  cJSON *json;     /* body parsed, NULL if not JSON */
  char reason[64]; /* Status.reason of an error */
} sf_k8s_resp;
void sf__k8s_resp_free(sf_k8s_resp *r);

/* A bounded in-memory body for libcurl's CURLOPT_WRITEFUNCTION: sf__curl_buf_write appends
 * (NUL-terminated) and refuses, setting over, what would pass max bytes. free(b.d) after. */
typedef struct sf_curl_buf {
  char *d;
  size_t len, cap, max;
  int over;
} sf_curl_buf;
size_t sf__curl_buf_write(char *p, size_t sz, size_t n, void *ud);

/* method path (beginning with /, query included) with an optional body of content type ctype.
 * Returns 0 on 2xx; SF_ENOTFOUND on 404; SF_EIO otherwise (r->code tells 401, 409, 410, ...;
 * err says method, path, status and the API's message). A 401 re-reads the token file and
 * retries once. r may be NULL. */
int sf__k8s_request(sf_k8s *k, const char *method, const char *path, const char *ctype,
                    const char *body, sf_k8s_resp *r, sf_err *err);

/* A resource kind: API prefix, plural, namespaced. */
typedef struct sf_k8s_kind {
  const char *api; /* "/api/v1", "/apis/apps/v1", ... */
  const char *plural;
  const char *kind;
  int namespaced;
} sf_k8s_kind;
extern const sf_k8s_kind sf__k8s_nodes, sf__k8s_deployments, sf__k8s_leases, sf__k8s_secrets,
    sf__k8s_seifermodels;
#define SF_K8S_GROUP "seifer.dev"
#define SF_K8S_API_VERSION "seifer.dev/v1alpha1"

/* PREFIX[/namespaces/NS]/PLURAL[/NAME[/SUB]]; names are checked. */
int sf__k8s_path(char *out, size_t cap, const sf_k8s_kind *kd, const char *ns, const char *name,
                 const char *sub, sf_err *err);

/* GET path -> *obj (caller frees). */
int sf__k8s_get(sf_k8s *k, const char *path, cJSON **obj, long *code, sf_err *err);
/* LIST: *items (a cJSON array, caller frees) and the list's resourceVersion. */
int sf__k8s_list(sf_k8s *k, const sf_k8s_kind *kd, const char *ns, const char *label_selector,
                 cJSON **items, char *rv, size_t rv_cap, sf_err *err);
/* Server-side apply of obj at path (the object's path, /status for its status) with manager;
 * *out (may be NULL) gets the object as stored. A 409 conflict is an error naming the fields. */
int sf__k8s_apply(sf_k8s *k, const char *path, const cJSON *obj, const char *manager, int force,
                  cJSON **out, long *code, sf_err *err);
/* DELETE path; an object already gone (404) counts as deleted (0 with *code 404). */
int sf__k8s_delete(sf_k8s *k, const char *path, long *code, sf_err *err);

/* ---- informer: list + watch in a thread
 * ------------------------------------------------------------ */
typedef struct sf_k8s_informer sf_k8s_informer;
typedef struct sf_k8s_informer_opts {
  const sf_k8s_kind *kind;
  const char *ns;             /* namespaced kinds: NULL = the config's namespace */
  const char *label_selector; /* NULL = all */
  int watch_timeout_s;        /* timeoutSeconds of each watch (0 = 300) */
  /* called in the informer's thread after the cache changed: type "ADDED", "MODIFIED",
   * "DELETED", or "SYNC" after a (re)list (obj NULL) */
  void (*on_event)(void *ud, const char *type, const cJSON *obj);
  void *ud;
} sf_k8s_informer_opts;
typedef struct sf_k8s_informer_stats {
  long lists;   /* lists done (the first and every re-list) */
  long watches; /* watch requests started */
  long events;  /* ADDED / MODIFIED / DELETED applied */
  long bookmarks;
  long expired; /* 410s (each followed by a re-list) */
  long errors;  /* failed requests (retried with back-off) */
  int synced;   /* the cache holds a complete list */
  char rv[32];  /* resourceVersion the next watch starts from */
  char last_error[256];
} sf_k8s_informer_stats;

int sf__k8s_informer_start(sf_k8s_informer **out, const sf_k8s_config *c,
                           const sf_k8s_informer_opts *o, sf_err *err);
/* Stops the thread (promptly: the watch is woken) and frees. NULL is a no-op. */
void sf__k8s_informer_stop(sf_k8s_informer *inf);
/* A copy of every cached object (a cJSON array, caller frees); *gen (may be NULL) gets the
 * change count the copy reflects. */
cJSON *sf__k8s_informer_snapshot(sf_k8s_informer *inf, uint64_t *gen);
/* Change count: grows on every change of the cache and on every (re)list. */
uint64_t sf__k8s_informer_gen(sf_k8s_informer *inf);
/* Wait until the change count differs from seen, up to timeout_ms; returns the count. */
uint64_t sf__k8s_informer_wait(sf_k8s_informer *inf, uint64_t seen, int timeout_ms);
/* A file descriptor that becomes readable on each change (for poll); read it to drain. */
int sf__k8s_informer_fd(sf_k8s_informer *inf);
void sf__k8s_informer_stats(sf_k8s_informer *inf, sf_k8s_informer_stats *st);

/* ---- leader election
 * --------------------------------------------------------------------------------- */
typedef struct sf_k8s_lease_opts {
  const char *ns;       /* NULL = the config's namespace */
  const char *name;     /* Lease name */
  const char *identity; /* this replica (pod name) */
  int lease_ms;         /* lease duration (0 = 15000) */
  int renew_ms;         /* renew deadline (0 = 10000); must be < lease_ms */
  int retry_ms;         /* retry period (0 = 2000); must be < renew_ms */
} sf_k8s_lease_opts;

/* The lease record and what this candidate observed of it. */
typedef struct sf_k8s_lease_state {
  char holder[256];
  int duration_s;
  char acquire[40], renew[40]; /* MicroTime */
  int transitions;
  double observed_at; /* monotonic time the record was last seen to change */
  double renewed_at;  /* monotonic time of the last successful acquire or renew (start) */
  int leading;        /* this candidate held it at its last try */
  long acquisitions, losses;
} sf_k8s_lease_state;

/* One try (client-go's tryAcquireOrRenew) at monotonic time now: create the Lease if absent,
 * take it if its holder let it lapse (unchanged for the lease duration since this candidate
 * observed it), renew it if held; every write carries the resourceVersion read (a 409 = another
 * candidate won). Returns 1 when this candidate holds the lease, 0 when not, < 0 on a failed
 * request (the lease may still be held until the renew deadline). */
int sf__k8s_lease_try(sf_k8s *k, const sf_k8s_lease_opts *o, sf_k8s_lease_state *st, double now,
                      sf_err *err);
/* Give the lease up (holder cleared, as client-go's ReleaseOnCancel). */
int sf__k8s_lease_release(sf_k8s *k, const sf_k8s_lease_opts *o, sf_k8s_lease_state *st,
                          sf_err *err);

/* The elector: sf__k8s_lease_try every retry period in a thread. */
typedef struct sf_k8s_elector sf_k8s_elector;
int sf__k8s_elector_start(sf_k8s_elector **out, const sf_k8s_config *c, const sf_k8s_lease_opts *o,
                          sf_err *err);
/* 1 while this replica may act: it holds the lease and renewed it within the renew deadline. */
int sf__k8s_elector_leading(sf_k8s_elector *e);
void sf__k8s_elector_state(sf_k8s_elector *e, sf_k8s_lease_state *st);
/* Stop, releasing the lease when held. NULL is a no-op. */
void sf__k8s_elector_stop(sf_k8s_elector *e);

/* ---- objects (pure)
 * --------------------------------------------------------------------------------- */
/* MicroTime / Time of a wall-clock time (seconds since the epoch). */
void sf__k8s_microtime(double t, char *out, size_t cap);
void sf__k8s_time(double t, char *out, size_t cap);

/* One planned stage of a SeiferModel's pipeline. */
typedef struct sf_k8s_stage {
  const char *ns;
  const char *model;     /* SeiferModel name (a DNS-1123 label, <= 40 characters) */
  const char *model_uid; /* owner reference (NULL or "" = none) */
  const char *version;   /* model version the stage belongs to */
  long plan_generation;  /* the plan that placed it */
  uint32_t pipeline;
  int stage, n_stages;  /* 0-based index */
  const char *node;     /* Node name */
  const char *hostname; /* its kubernetes.io/hostname label (NULL = node) */
  int64_t memory_bytes; /* planned memory of the worker (request = limit) */
  int port;             /* worker port on the node (host network) */
  const char *image;
  const char *pull_policy;     /* NULL = IfNotPresent */
  const char *secret;          /* Secret with the cluster secret under key "secret" */
  const char *digest;          /* SHA-256 hex of the stage model (annotation; NULL none) */
  int threads;                 /* runtime threads (0 = the worker's default) */
  const char *service_account; /* NULL = "seifer-worker" */
} sf_k8s_stage;
/* The Deployment's name: MODEL-NODE (dots as dashes; a node name too long for 63 characters is
 * cut and gets a hash suffix). One per model and node: a stage that moves goes to another node's
 * Deployment, so a Deployment pinned to a dead node never has to replace a pod that cannot
 * terminate there (Recreate would wait for it). */
int sf__k8s_stage_name(const sf_k8s_stage *s, char *out, size_t cap, sf_err *err);
/* The Deployment to apply for the stage on its node: replicas 1, strategy Recreate, memory
 * request = limit = the planned memory, required node affinity on kubernetes.io/hostname
 * (never nodeName), host network on the stage port, readiness and liveness probes; the selector
 * (model and Deployment name) never changes; labels tying it to its SeiferModel, pipeline,
 * stage, plan generation and version are on the Deployment, not on its pods: a new plan that
 * leaves a stage where it is does not restart it. NULL with err on bad input. */
cJSON *sf__k8s_stage_deployment(const sf_k8s_stage *s, sf_err *err);
/* Label selector of every stage Deployment of a model: "seifer.dev/model=NAME,...". */
void sf__k8s_stage_selector(const char *model, char *out, size_t cap);

typedef struct sf_k8s_condition {
  const char *type, *status, *reason, *message;
  const char *since; /* lastTransitionTime (RFC 3339) */
} sf_k8s_condition;
typedef struct sf_k8s_plan_stage {
  int stage;
  const char *node;
  const char *deployment;
  int64_t memory_bytes;
  double compute_s;
} sf_k8s_plan_stage;
typedef struct sf_k8s_model_status {
  const char *name;
  long observed_generation;
  const char *version; /* serving version ("" none) */
  long plan_generation;
  uint32_t pipeline;
  const sf_k8s_plan_stage *stages;
  int n_stages;
  double bottleneck_s;         /* < 0 unknown */
  double predicted_throughput; /* inferences/s, < 0 unknown */
  double measured_throughput;  /* < 0 unknown */
  int ready_nodes, nodes;
  const sf_k8s_condition *conds;
  int n_conds;
} sf_k8s_model_status;
/* The apply configuration for the SeiferModel's status subresource. */
cJSON *sf__k8s_model_status(const sf_k8s_model_status *s, sf_err *err);

/* A Lease object (rv NULL or "" for a create). */
cJSON *sf__k8s_lease_object(const char *ns, const char *name, const sf_k8s_lease_state *st,
                            const char *rv);

/* ---- parsing
 * ----------------------------------------------------------------------------------------- */
typedef struct sf_k8s_node {
  char name[254];
  char hostname[254]; /* kubernetes.io/hostname label ("" none) */
  char address[64];   /* InternalIP, else ExternalIP ("" none) */
  int ready;          /* Ready condition True */
  int unschedulable;  /* spec.unschedulable */
  int64_t memory;     /* status.allocatable.memory in bytes (0 unknown) */
  int64_t cpu_milli;  /* status.allocatable.cpu (0 unknown) */
} sf_k8s_node;
int sf__k8s_node_parse(const cJSON *obj, sf_k8s_node *n, sf_err *err);
/* metadata.labels[key] or NULL. */
const char *sf__k8s_label(const cJSON *obj, const char *key);

typedef struct sf_k8s_model {
  char ns[64], name[254], uid[64];
  long generation;
  char uri[2048];           /* spec.model.uri: where the controller fetches the ONNX file */
  char sha256[65];          /* spec.model.sha256 ("" = not pinned) */
  char version[64];         /* spec.model.version */
  char objective[32];       /* spec.objective ("throughput") */
  char codec[16];           /* spec.codec ("lz4") */
  int pipelines;            /* spec.pipelines (0 = auto) */
  double gateway_timeout_s; /* spec.gateway.timeoutSeconds (0 = default) */
  char node_selector[512];  /* spec.placement.nodeSelector as a label selector ("" = all) */
} sf_k8s_model;
int sf__k8s_model_parse(const cJSON *obj, sf_k8s_model *m, sf_err *err);

#endif
