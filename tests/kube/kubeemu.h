/* kubeemu: an emulator of the part of the Kubernetes API server that seifer uses, for tests.
 *
 * It speaks the real wire protocol over HTTP (or HTTPS with a certificate it makes itself):
 *   - resources: Nodes, Namespaces, Secrets, ServiceAccounts, Services, ConfigMaps, Pods,
 *     Deployments and DaemonSets (apps/v1), Leases (coordination.k8s.io/v1), RBAC objects,
 *     CustomResourceDefinitions and the SeiferModel custom resource (seifer.dev/v1alpha1,
 *     with a status subresource); discovery documents (/api, /apis, /version) for kubectl;
 *   - list with a resourceVersion (one counter for the whole store, as etcd's revision),
 *     label selectors (=, ==, !=, exists, !exists) and the metadata.name/namespace field selectors;
 *   - watch (`?watch=1&resourceVersion=N&allowWatchBookmarks=true`): a chunked stream of
 *     newline-separated events ADDED / MODIFIED / DELETED / BOOKMARK, and an ERROR event holding
 *     a 410 "Expired" Status when N is older than the compacted history;
 *   - create (POST), update (PUT; a stale metadata.resourceVersion gives 409), delete, JSON merge
 *     patch, and server-side apply (PATCH `application/apply-patch+yaml`, JSON bodies - JSON is
 *     YAML) with managedFields per field manager: a field owned by another manager with a
 *     different value is a 409 conflict unless force=true, which moves the ownership; fields a
 *     manager stops applying are removed when nobody else owns them. Lists are atomic (the real
 *     server merges associative lists such as containers by their keys);
 *   - the status subresource (writes to the main resource leave status alone and the reverse),
 *     metadata.generation bumped on spec changes;
 *   - a Deployment status controller: a Deployment whose kubernetes.io/hostname node affinity
 *     names a Ready node becomes available (readyReplicas 1), otherwise not;
 *   - bearer tokens read from a file that a test rewrites to rotate them (wrong token: 401).
 * Test control endpoints (no authentication) under /emu/: create or update a node
 * (POST /emu/nodes), flip its Ready condition (POST /emu/nodes/NAME/ready?status=False), delete
 * it (DELETE /emu/nodes/NAME), close every watch and compact the history (POST /emu/expire),
 * send a bookmark on every watch now (POST /emu/bookmark), counters (GET /emu/stats) and the
 * recent requests (GET /emu/requests).
 *
 *   kemu_opts o = {.listen = "127.0.0.1:0", .token_file = "/tmp/t/token"};
 *   kemu *e;
 *   if (kemu_start(&e, &o, errbuf, sizeof errbuf) < 0) ...;
 *   printf("%s\n", kemu_url(e));   // http://127.0.0.1:PORT
 *   kemu_stop(e);
 */
#ifndef KUBEEMU_H
#define KUBEEMU_H

#include <stddef.h>

typedef struct kemu kemu;

typedef struct kemu_opts {
  const char *listen;     /* HOST:PORT, port 0 = any free port */
  const char *token_file; /* accepted bearer tokens, one per line; NULL = no authentication */
  const char *tls_dir;    /* NULL = plain HTTP; else HTTPS, DIR/ca.crt written (self-signed) */
  int bookmark_ms;        /* interval of BOOKMARK events on watches that ask (0 = 1000) */
  int history;            /* events kept for watches before they are compacted (0 = 10000) */
  int quiet;              /* no request log on stderr */
  /* An emulated kubelet (optional): the container of every available Deployment runs as a
   * local process of kubelet_exe (the image's entrypoint), its arguments' $(VAR)s expanded,
   * secret and emptyDir mounts mapped to directories under kubelet_dir, and with hostNetwork
   * "0.0.0.0:" given as the Node's InternalIP (distinct 127.x addresses make distinct nodes).
   * A Node turning NotReady or deleted loses its processes at once (SIGKILL: the node died); a
   * changed pod template restarts the process (Recreate); a process that exits is restarted. */
  const char *kubelet_exe;
  const char *kubelet_dir;
} kemu_opts;

int kemu_start(kemu **out, const kemu_opts *o, char *err, size_t err_cap);
/* Base URL (http[s]://127.0.0.1:PORT). */
const char *kemu_url(const kemu *e);
/* Stop serving: every open watch ends. NULL is a no-op. */
void kemu_stop(kemu *e);

#endif
