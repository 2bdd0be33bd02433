/* The Kubernetes driver of the controller: the sf_driver operations (control.h) over the API.
 *
 *   worker on NODE  start = server-side apply of the Deployment MODEL-NODE (k8s.h,
 *                   sf__k8s_stage_deployment) with the stage last assigned to NODE (memory
 *                   request = limit = its planned memory; a default before any plan); the worker
 *                   listens on the host network, so its address is the Node's InternalIP and the
 *                   port; stop = delete the Deployment; alive = the Deployment exists and its Node
 *                   is Ready (from a Node informer: no request); list = the model's Deployments.
 *   gateway         the static Deployment and Service of deploy/k8s: start returns their
 *                   addresses, stop does nothing, alive asks the Deployment's status.
 * The Node informer also gives the controller a file descriptor that turns readable on every Node
 * change (a Node turning NotReady or disappearing), to re-plan at once.
 *
 *   sf_driver d;
 *   sf__driver_k8s(&d, &(sf_k8s_driver_opts){.config = &cfg, .model = "resnet50", ...}, &err);
 *   sf__driver_k8s_assign(&d, "edge-1", &(sf_k8s_assignment){.pipeline = 3, .stage = 0, ...});
 *   d.ops->start(d.ctx, &proc, &err);        // applies resnet50-edge-1 with that stage
 */
#ifndef SF_K8S_DRIVER_H
#define SF_K8S_DRIVER_H

#include "control/control.h"
#include "control/k8s.h"

typedef struct sf_k8s_driver_opts {
  const sf_k8s_config *config;
  const char *model;        /* SeiferModel name */
  const char *model_uid;    /* owner reference of the Deployments (NULL none) */
  const char *image;        /* image of the workers */
  const char *secret;       /* Secret with the cluster secret (NULL = seifer-cluster-secret) */
  const char *manager;      /* field manager (NULL = seifer-controller) */
  int port;                 /* workers' port on the host network (0 = 7100) */
  int64_t memory_bytes;     /* a worker's memory before a stage is assigned (0 = 256 MiB) */
  int threads;              /* runtime threads of a worker (0 = its default) */
  const char *gateway_data; /* the gateway's data address (NULL = seifer-gateway.NS.svc:7000) */
  const char *gateway_url;  /* its HTTP URL (NULL = http://seifer-gateway.NS.svc:8000) */
  const char *gateway_deployment; /* NULL = seifer-gateway */
} sf_k8s_driver_opts;

/* What a node's worker holds: written into its Deployment at the next start(). */
typedef struct sf_k8s_assignment {
  uint32_t pipeline;
  int stage, n_stages;
  long plan_generation;
  const char *version;
  int64_t memory_bytes; /* planned memory of the stage's worker */
  const char *digest;   /* SHA-256 hex of the stage model (NULL none) */
} sf_k8s_assignment;

int sf__driver_k8s(sf_driver *d, const sf_k8s_driver_opts *o, sf_err *err);
/* Assign a stage to node's worker (copied); NULL a clears it (the default memory again). */
int sf__driver_k8s_assign(sf_driver *d, const char *node, const sf_k8s_assignment *a, sf_err *err);
/* From the Node informer, no request: 1 Ready, 0 not Ready, -1 unknown node (or not yet listed). */
int sf__driver_k8s_node_ready(sf_driver *d, const char *node);
/* Readable after every Node change; read it to drain. */
int sf__driver_k8s_fd(sf_driver *d);
/* The Node informer itself (snapshots, statistics). */
sf_k8s_informer *sf__driver_k8s_nodes(sf_driver *d);

#endif
