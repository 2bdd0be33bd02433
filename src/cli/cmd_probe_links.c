/* seifer probe links: measure the bandwidth and RTT between running workers (docs/probe.md) and
 * write the cluster file with measured links. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "plan/plan.h"
#include "probe/link.h"
#include "util/util.h"

#define MAX_NODES 1000

void sf_cli_probe_links_usage(void) {
  printf(
      "       seifer probe links --cluster CLUSTER.json [--secret FILE] [-o measured.json]\n"
      "                          [--seconds S] [--bytes N] [--pings N]\n"
      "links: every node of CLUSTER.json has an \"address\" (host:port of its running worker);\n"
      "each worker in turn measures its link to every other one over the authenticated data plane\n"
      "(RTT: median of --pings ping-pongs, default 10; bandwidth: goodput of the steady part of\n"
      "--seconds of bulk frames, default 1, capped at --bytes, default 256M; suffixes K, M, G).\n"
      "Prints a table; -o writes CLUSTER.json with the measured links (directed entries).\n"
      "--secret: the cluster's secret (default .seifer/secret). One pair at a time: each keeps\n"
      "its link busy for about --seconds.\n");
}

typedef struct progress_ctx {
  const char **names;
  int done, total;
} progress_ctx;

static void progress(void *arg, int from, int to, const sf_probe_result *r, const sf_err *e) {
  progress_ctx *p = arg;
  p->done++;
  if (r)
    fprintf(stderr, "[%d/%d] %s -> %s: %.2f Mbit/s, rtt %.3f ms (%.1f MB in %.2f s)\n", p->done,
            p->total, p->names[from], p->names[to], r->mbps, r->rtt_s * 1e3, r->bytes / 1e6,
            r->seconds);
  else
    fprintf(stderr, "[%d/%d] %s -> %s: failed: %s\n", p->done, p->total, p->names[from],
            p->names[to], e ? e->msg : "?");
}

/* "123", "64K", "8M", "1G" (binary multiples) -> bytes. */
static int parse_bytes(const char *s, double *out) {
  char *end = NULL;
  double v = strtod(s, &end);
  if (end == s || !isfinite(v) || v < 0) return -1;
  if (*end == 'k' || *end == 'K')
    v *= 1024, end++;
  else if (*end == 'm' || *end == 'M')
    v *= 1048576, end++;
  else if (*end == 'g' || *end == 'G')
    v *= 1073741824, end++;
  if (*end) return -1;
  *out = v;
  return 0;
}

int sf_cli_probe_links(int argc, char **argv) {
  const char *cluster = NULL, *secret_path = ".seifer/secret", *out = NULL;
  sf_probe_opts o = sf__probe_opts_default();
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if (!strcmp(a, "--cluster")) {
      if (!(cluster = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--secret")) {
      if (!(secret_path = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      if (!(out = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--seconds")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      char *end = NULL;
      o.seconds = strtod(v, &end);
      if (end == v || *end ||
          !(o.seconds >= SF_PROBE_MIN_SECONDS && o.seconds <= SF_PROBE_MAX_SECONDS)) {
        sf_cli_err("--seconds: expected a number in [%g, %g], got '%s'", SF_PROBE_MIN_SECONDS,
                   SF_PROBE_MAX_SECONDS, v);
        return SF_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--bytes")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (parse_bytes(v, &o.bytes) < 0 || o.bytes < 16384 || o.bytes > SF_PROBE_MAX_BYTES) {
        sf_cli_err("--bytes: expected 16K..16G (suffixes K, M, G), got '%s'", v);
        return SF_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--pings")) {
      long n;
      if (!(v = sf_cli_value(argc, argv, &i)) || sf_cli_int("--pings", v, 1, 1000, &n))
        return SF_EXIT_USAGE;
      o.pings = (int)n;
    } else {
      sf_cli_err("probe links: unknown argument '%s'", a);
      return SF_EXIT_USAGE;
    }
  }
  if (!cluster) {
    sf_cli_err("probe links: need --cluster CLUSTER.json (nodes with \"address\")");
    return SF_EXIT_USAGE;
  }
  int rc = SF_EXIT_FAIL, n = 0;
  sf_err err = {0};
  void *txt = NULL;
  size_t len = 0;
  cJSON *root = NULL;
  const char **names = NULL, **addrs = NULL;
  double *mbps = NULL, *rtt = NULL;
  char *json = NULL;
  sf_secret sec;
  if (sf__read_file(cluster, 64 << 20, &txt, &len, &err) < 0) {
    sf_cli_err("%s", err.msg);
    goto out;
  }
  root = cJSON_ParseWithLength(txt, len);
  const cJSON *nodes = root ? cJSON_GetObjectItemCaseSensitive(root, "nodes") : NULL;
  if (!cJSON_IsArray(nodes) || (n = cJSON_GetArraySize(nodes)) < 2 || n > MAX_NODES) {
    sf_cli_err("%s: expected a JSON object with 'nodes', an array of 2..%d nodes", cluster,
               MAX_NODES);
    goto out;
  }
  names = sf__calloc((size_t)n, sizeof *names);
  addrs = sf__calloc((size_t)n, sizeof *addrs);
  mbps = sf__calloc((size_t)n * n, sizeof *mbps);
  rtt = sf__calloc((size_t)n * n, sizeof *rtt);
  if (!names || !addrs || !mbps || !rtt) {
    sf_cli_err("out of memory");
    goto out;
  }
  int i = 0;
  const cJSON *nd;
  cJSON_ArrayForEach(nd, nodes) {
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(nd, "name");
    const cJSON *ad = cJSON_GetObjectItemCaseSensitive(nd, "address");
    if (!cJSON_IsString(nm) || !nm->valuestring[0]) {
      sf_cli_err("%s: nodes[%d]: missing 'name'", cluster, i);
      goto out;
    }
    if (!cJSON_IsString(ad) || !strchr(ad->valuestring, ':') || strlen(ad->valuestring) > 255) {
      sf_cli_err("%s: node '%s': needs an \"address\" (host:port of its worker)", cluster,
                 nm->valuestring);
      goto out;
    }
    names[i] = nm->valuestring;
    addrs[i++] = ad->valuestring;
  }
  if (sf__secret_load(&sec, secret_path, &err) < 0) {
    sf_cli_err("%s", err.msg);
    goto out;
  }
  progress_ctx pc = {names, 0, n * (n - 1)};
  o.progress = progress;
  o.ctx = &pc;
  fprintf(stderr, "probing %d links (%.1f s of bulk data each)\n", n * (n - 1), o.seconds);
  int failed = sf__probe_links(addrs, n, &sec, &o, mbps, rtt, &err);
  if (failed < 0) {
    sf_cli_err("%s", err.msg);
    goto out;
  }
  printf("%-16s %-16s %10s %9s\n", "from", "to", "Mbit/s", "RTT ms");
  for (int a = 0; a < n; a++)
    for (int b = 0; b < n; b++) {
      size_t k = (size_t)a * n + b;
      if (a == b) continue;
      if (rtt[k] < 0)
        printf("%-16.16s %-16.16s %10s %9s\n", names[a], names[b], "failed", "-");
      else
        printf("%-16.16s %-16.16s %10.2f %9.3f\n", names[a], names[b], mbps[k], rtt[k] * 1e3);
    }
  if (out) {
    if (!(json = sf__probe_cluster_json(txt, len, n, mbps, rtt, &err))) {
      sf_cli_err("%s", err.msg);
      goto out;
    }
    sf_cluster in, res;
    sf_err e2 = {0};
    if (sf__cluster_parse(txt, len, &in, &e2) == 0) { /* a valid file stays valid */
      sf__cluster_deinit(&in);
      if (sf__cluster_parse(json, strlen(json), &res, &e2) < 0) {
        sf_cli_err("measured cluster: %s", e2.msg);
        goto out;
      }
      sf__cluster_deinit(&res);
    }
    if (sf__write_file(out, json, strlen(json), &err) < 0) {
      sf_cli_err("%s", err.msg);
      goto out;
    }
    fprintf(stderr, "wrote %s%s\n", out, failed ? " (failed pairs keep the file's links)" : "");
  }
  if (failed) {
    sf_cli_err("%d of %d links could not be measured (first: %s)", failed, n * (n - 1), err.msg);
    goto out;
  }
  rc = SF_EXIT_OK;
out:
  free(json);
  free(mbps);
  free(rtt);
  free(names);
  free(addrs);
  cJSON_Delete(root);
  free(txt);
  return rc;
}
