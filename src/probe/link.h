/* Link probes, the controller's side: measure the bandwidth and RTT of the links between running
 * workers over their authenticated links, so plans use measured values instead of the cluster
 * file's (protocol, method and accuracy: docs/probe.md).
 *
 *   const char *addrs[] = {"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"};
 *   sf_probe_opts o = sf__probe_opts_default();
 *   double mbps[9], rtt[9];
 *   int failed = sf__probe_links(addrs, 3, &secret, &o, mbps, rtt, &err);  // one pair at a time
 *   char *json = sf__probe_cluster_json(cluster_txt, len, 3, mbps, rtt, &err);  // measured links
 *
 * Or one pair over a control link the caller already holds (e.g. when a node returns):
 *   sf__probe_link(ctl_to_a, "10.0.0.2:7000", &o, &result, &err);
 *
 * Each probe of a pair keeps that link busy for about o.seconds (default 1 s): run them at start
 * and when a node returns, not while the pipeline is under load. */
#ifndef SF_PROBE_LINK_H
#define SF_PROBE_LINK_H

#include <stdint.h>

#include "net/net.h"

typedef struct sf_probe_result {
  char peer[256];
  double mbps;  /* goodput of the steady part, 10^6 bit/s of frame bytes */
  double rtt_s; /* median round trip of the pings */
  double rtt_min_s;
  double bytes, seconds; /* everything the receiver counted, first to last frame */
  double steady_bytes, steady_seconds;
} sf_probe_result;

typedef struct sf_probe_opts {
  double seconds;            /* bulk phase per pair (default 1.0, SF_PROBE_MIN..MAX_SECONDS) */
  double bytes;              /* bulk cap per pair (default 256 MiB; at least 16 KiB) */
  int pings;                 /* RTT samples (default 10) */
  int timeout_ms;            /* connect + authenticate to each worker (default 5000) */
  const unsigned char *only; /* n*n flags: probe (i, j) only where set (NULL = every pair) */
  /* Called after each pair: r on success, else e (the failure). May be NULL. */
  void (*progress)(void *ctx, int from, int to, const sf_probe_result *r, const sf_err *e);
  void *ctx;
} sf_probe_opts;

sf_probe_opts sf__probe_opts_default(void);

/* Ask the worker behind control link ctl (role "controller") to probe its link to peer
 * ("host:port" as that worker reaches it). Waits up to about 3 * seconds + 30 s. */
int sf__probe_link(sf_conn *ctl, const char *peer, const sf_probe_opts *o, sf_probe_result *r,
                   sf_err *err);
/* Parse a worker's probe answer. */
int sf__probe_result_parse(const char *json, size_t len, sf_probe_result *r, sf_err *err);

/* Probe every ordered pair (i, j), i != j, of the n workers at addrs (n <= 1000), one pair at a
 * time: mbps[i*n+j] and rtt_s[i*n+j] (n*n each) get the result; the diagonal gets 0, a pair that
 * failed 0 and -1, a pair left out by o->only is not touched. Returns the number of pairs that
 * failed (err describes the first), or a negative code when nothing could be tried. */
int sf__probe_links(const char **addrs, int n, const sf_secret *s, const sf_probe_opts *o,
                    double *mbps, double *rtt_s, sf_err *err);

/* The cluster file text with measured links: the nodes (and default_link, gateway) as given,
 * "links" replaced by one directed entry {"from", "to", "mbps", "rtt_ms", "symmetric": false}
 * per pair with mbps > 0, in nodes order (n must equal the number of nodes); pairs not measured
 * keep what the given links said. Returns a malloc'ed pretty-printed JSON document or NULL
 * (err set). */
char *sf__probe_cluster_json(const char *cluster, size_t len, int n, const double *mbps,
                             const double *rtt_s, sf_err *err);

#endif
