/* The controller's Kubernetes mode (`seifer controller --kubernetes`): what replaces the cluster
 * file, the model file and the local driver when the controller runs as an operator.
 *
 *   nodes    from the Node informer at start: name, status.allocatable.memory, the SeiferModel's
 *            spec.placement.nodeSelector; Ready nodes that are not unschedulable and have an
 *            address; speed from the label seifer.dev/gflops (else 10 GFLOP/s per allocatable
 *            CPU, 10 when unknown) and links 1000 Mbit/s, 0.5 ms until the controller's
 *            probes measure them;
 *   model    the SeiferModel (informer): spec.model.uri (file:// or http(s)://, at most
 *            --max-model-bytes), spec.model.sha256 checked, spec.model.version (a positive
 *            integer) -> DIR/repo/NAME/VERSION/model.onnx, which the controller's repository
 *            scan rolls out; spec.codec and spec.replanGain at start;
 *   driver   sf__driver_k8s (k8s_driver.h): each node's worker is its stage Deployment; before a
 *            pipeline's workers are configured every stage node's Deployment is applied with its
 *            stage and planned memory (a changed pod template restarts the worker: the
 *            controller waits for the new one);
 *   nodes    a Node turning NotReady or disappearing marks its node down at once (the driver's
 *            file descriptor is polled with the control links);
 *   leader   a Lease elector: the controller acts only while it leads; a replica that loses the
 *            lease stops (as client-go's controllers do) and is restarted by its Deployment;
 *   status   the SeiferModel's status subresource after every change.
 * The hooks below are called from controller.c. */
#ifndef SF_K8S_CTL_H
#define SF_K8S_CTL_H

#include <stdint.h>

#include "control/controller.h"

struct sf_k8s_ctl_opts {
  const char *kubeconfig;  /* NULL: in-cluster configuration */
  const char *context;     /* kubeconfig context (NULL = current) */
  const char *ns;          /* NULL: POD_NAMESPACE, else the configuration's */
  const char *model;       /* SeiferModel name (NULL: the only one in the namespace) */
  const char *identity;    /* Lease identity (NULL: POD_NAME, else HOSTNAME-PID) */
  const char *image;       /* worker image (NULL: SEIFER_IMAGE, else seifer:0.1.0) */
  const char *gateway;     /* gateway data address (NULL: SEIFER_GATEWAY, else the Service's) */
  const char *gateway_url; /* gateway HTTP URL (NULL: SEIFER_GATEWAY_URL, else the Service's) */
  const char *secret_file; /* cluster secret (NULL: /etc/seifer/secret/secret) */
  int worker_port;         /* workers' host port (0 = 7100) */
  int lease_ms, renew_ms, retry_ms; /* 0: 15000, 10000, 2000 */
  int64_t max_model_bytes;          /* 0: 4 GiB */
};
typedef struct sf_k8s_ctl_opts sf_k8s_ctl_opts;

/* setup(): configuration, client, elector, informers, the SeiferModel, the cluster from the
 * Nodes, the secret, the first fetch of the model and the driver. Fills C->cl, C->addr,
 * C->name, C->repo, C->sec, C->drv; may replace C->o by a copy with the SeiferModel's codec
 * and replan gain. */
int sf__k8s_ctl_setup(ctl *C, sf_err *err);
/* Wait until this replica leads (0) or *C->stop (-1). */
int sf__k8s_ctl_wait_leader(ctl *C);
/* Once per loop turn: leadership (-1 when lost: the loop ends), a changed SeiferModel (fetch the
 * new version), the status subresource. */
int sf__k8s_ctl_tick(ctl *C);
/* The Node informer changed (its fd is readable): drain it, mark down the nodes that are not
 * Ready or gone. */
void sf__k8s_ctl_nodes_changed(ctl *C);
/* Before pipeline d (plan p, version) is configured: assign every stage to its node's worker
 * and apply its Deployment; a worker whose pod template changed is waited for and reconnected. */
int sf__k8s_ctl_stages(ctl *C, const cdeploy *d, const sf_plan *p, sf_err *err);
void sf__k8s_ctl_free(ctl *C);

#endif
