/* seifer up / seifer down: a whole pipeline on this machine. `up` plans the model on the cluster
 * file, splits it, starts one worker process per stage node and the gateway on loopback, ships
 * every stage over the authenticated link, wires the chain, and leaves it running; the links of
 * the cluster file are emulated by pacing each hop's sends to its bandwidth, and each stage's
 * compute is padded to its planned time on its node. `down` stops what `up` started (state in
 * DIR/up.json). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "control/control.h"
#include "onnx/onnx.h"
#include "partition/partition.h"
#include "plan/plan.h"

#define MAX_STAGES 256

static void up_usage(void) {
  printf(
      "usage: seifer up --model MODEL.onnx --cluster CLUSTER.json [--codec raw|fp16|lz4|zfp]\n"
      "                 [--listen HOST:PORT] [--dir DIR] [--name NAME] [--threads N]\n"
      "                 [--algorithm optimal|kpath|joint|random] [--no-emulate]\n"
      "                 [--attach GATEWAY_DATA_ADDR] [--emulate-compute]\n"
      "Plans MODEL on the cluster, starts one worker per stage and the gateway as local\n"
      "processes, ships the stages and prints the plan and the URL (default\n"
      "http://127.0.0.1:8000). The cluster is emulated: every hop's sends are paced to the\n"
      "cluster file's bandwidth and every stage takes at least its planned compute time on its\n"
      "node (--no-emulate: full speed of this machine). State, logs and stage files live in\n"
      "DIR (default .seifer); `seifer down --dir DIR` stops everything.\n"
      "--threads: runtime threads per worker (default 1). --name: model name in the API\n"
      "(default: the file name without .onnx).\n"
      "--attach: start nothing; deploy onto workers already running at the \"address\" of each\n"
      "cluster node (host:port) and onto the gateway whose data port is GATEWAY_DATA_ADDR\n"
      "(edge nodes, network namespaces). Links are then real: no emulation; --emulate-compute\n"
      "still pads each stage to its planned compute time (nodes that are namespaces of one\n"
      "machine).\n");
}

static int mkdirs(const char *d) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s", d);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  return mkdir(tmp, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/* Pids recorded in DIR/up.json (workers and gateway), -1 when there is no such file. */
static int read_pids(const char *dir, pid_t *pids, int max) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/up.json", dir);
  void *txt = NULL;
  size_t len = 0;
  if (sf__read_file(path, 1 << 20, &txt, &len, NULL) < 0) return -1;
  cJSON *j = cJSON_ParseWithLength(txt, len);
  free(txt);
  int n = 0;
  cJSON *arr = j ? cJSON_GetObjectItem(j, "pids") : NULL, *e;
  cJSON_ArrayForEach(e, arr) {
    if (n < max && cJSON_IsNumber(e) && e->valuedouble > 1 && e->valuedouble < 4194304)
      pids[n++] = (pid_t)e->valuedouble;
  }
  cJSON_Delete(j);
  return n;
}

static int any_alive(const pid_t *pids, int n) {
  for (int i = 0; i < n; i++)
    if (kill(pids[i], 0) == 0) return 1;
  return 0;
}

static char *tensor_list_json(const char *info, const char *key) {
  cJSON *j = cJSON_Parse(info);
  cJSON *a = j ? cJSON_DetachItemFromObject(j, key) : NULL;
  char *s = a ? cJSON_PrintUnformatted(a) : NULL;
  cJSON_Delete(a);
  cJSON_Delete(j);
  return s;
}

static void print_plan(const sf_cluster *cl, const sf_partition *pa, const sf_plan *p) {
  printf("stage  node                 ops          memory MB  out MB   compute ms  link ms\n");
  for (int i = 0; i < p->n_stages; i++) {
    const sf_stage *s = &p->stages[i];
    printf("%5d  %-20s %5d-%-5d  %9.1f  %7.3f  %10.2f  %7.2f\n", i + 1, cl->nodes[s->node].name,
           pa->costs.pos[s->cut_from], pa->costs.pos[s->cut_to] - 1, s->mem_bytes / 1e6,
           s->out_bytes / 1e6, s->compute_s * 1e3, s->link_s * 1e3);
  }
  printf("bottleneck %.2f ms, predicted throughput %.2f req/s (%s%s)\n", p->bottleneck_s * 1e3,
         p->throughput_per_s, p->algorithm, p->optimal ? ", proven optimal" : "");
}

/* --attach: the "address" of each planned node, from the cluster file. */
static int node_addresses(const void *txt, size_t len, const sf_cluster *cl, const sf_plan *p,
                          char (*addrs)[128], sf_err *err) {
  cJSON *j = cJSON_ParseWithLength(txt, len);
  cJSON *nodes = j ? cJSON_GetObjectItem(j, "nodes") : NULL;
  int rc = 0;
  for (int i = 0; i < p->n_stages && rc == 0; i++) {
    const char *want = cl->nodes[p->stages[i].node].name;
    const char *a = NULL;
    cJSON *e;
    cJSON_ArrayForEach(e, nodes) {
      cJSON *nm = cJSON_GetObjectItem(e, "name"), *ad = cJSON_GetObjectItem(e, "address");
      if (cJSON_IsString(nm) && !strcmp(nm->valuestring, want) && cJSON_IsString(ad)) a = ad->valuestring;
    }
    if (!a || !a[0] || strlen(a) >= 128 || !strchr(a, ':'))
      rc = sf__errf(err, SF_EINVAL, "--attach: node '%s' needs an \"address\" (host:port) in the cluster file", want);
    else
      snprintf(addrs[i], 128, "%s", a);
  }
  cJSON_Delete(j);
  return rc;
}

typedef struct up_opts {
  const char *model, *cluster, *dir, *listen, *name, *algorithm, *attach;
  int codec, threads, emulate, emulate_compute;
} up_opts;

static int up_run(int argc, char **argv) {
  up_opts o = {.dir = ".seifer", .listen = "127.0.0.1:8000", .algorithm = "optimal", .threads = 1,
               .emulate = 1, .emulate_compute = -1, .codec = SF_CODEC_RAW};
  long v;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--model")) {
      if (!(o.model = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--cluster")) {
      if (!(o.cluster = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--dir")) {
      if (!(o.dir = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--listen")) {
      if (!(o.listen = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--name")) {
      if (!(o.name = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--algorithm")) {
      if (!(o.algorithm = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--codec")) {
      const char *s = sf_cli_value(argc, argv, &i);
      if (!s) return SF_EXIT_USAGE;
      if ((o.codec = sf__codec_parse(s)) < 0) {
        sf_cli_err("--codec: expected raw, fp16, lz4 or zfp, got '%s'", s);
        return SF_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--threads")) {
      const char *s = sf_cli_value(argc, argv, &i);
      if (!s || sf_cli_int(a, s, 0, 1024, &v)) return SF_EXIT_USAGE;
      o.threads = (int)v;
    } else if (!strcmp(a, "--no-emulate")) {
      o.emulate = 0;
    } else if (!strcmp(a, "--emulate-compute")) {
      o.emulate_compute = 1;
    } else if (!strcmp(a, "--attach")) {
      if (!(o.attach = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      o.emulate = 0;
    } else {
      sf_cli_err("up: unknown argument '%s'", a);
      return SF_EXIT_USAGE;
    }
  }
  if (o.emulate_compute < 0) o.emulate_compute = o.emulate;
  if (!o.model || !o.cluster) {
    sf_cli_err("up: need --model MODEL.onnx and --cluster CLUSTER.json");
    return SF_EXIT_USAGE;
  }
  const sf_solver *solver = sf__solver_find(o.algorithm);
  if (!solver) {
    sf_cli_err("--algorithm: unknown '%s' (optimal, kpath, joint, random)", o.algorithm);
    return SF_EXIT_USAGE;
  }
  char name[256];
  if (o.name) {
    if (!o.name[0] || strlen(o.name) >= sizeof name || strchr(o.name, '/')) {
      sf_cli_err("--name: must be 1..255 characters without '/'");
      return SF_EXIT_USAGE;
    }
    snprintf(name, sizeof name, "%s", o.name);
  } else {
    const char *b = strrchr(o.model, '/');
    snprintf(name, sizeof name, "%s", b ? b + 1 : o.model);
    char *dot = strstr(name, ".onnx");
    if (dot && dot != name) *dot = 0;
  }

  pid_t old[MAX_STAGES + 1];
  int n_old = read_pids(o.dir, old, MAX_STAGES + 1);
  if (n_old > 0 && any_alive(old, n_old)) {
    sf_cli_err("up: %s/up.json: a pipeline started from this directory is still running (seifer down --dir %s)",
               o.dir, o.dir);
    return SF_EXIT_FAIL;
  }

  int rc = SF_EXIT_FAIL, have_pa = 0, have_cl = 0, k = 0;
  sf_err err = {0};
  sf_model *m = NULL;
  sf_partition pa;
  sf_cluster cl;
  sf_plan p = {0};
  void *txt = NULL;
  size_t len = 0;
  pid_t pids[MAX_STAGES + 1];
  int n_pids = 0, ports[MAX_STAGES] = {0}, gw_ports[2] = {0, 0};
  static char addrs[MAX_STAGES][128];
  char gw_data[128] = "", url[300] = "";
  char *info[MAX_STAGES] = {0};
  sf_conn *ctl[MAX_STAGES + 1] = {0};
  char path[PATH_MAX], self[PATH_MAX];
  sf_secret sec;

  ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
  if (sl <= 0) {
    sf_cli_err("up: cannot find the seifer binary (/proc/self/exe)");
    return SF_EXIT_FAIL;
  }
  self[sl] = 0;
  const char *subdirs[] = {"", "/stages", "/logs", "/run", "/cache"};
  for (size_t i = 0; i < sizeof subdirs / sizeof *subdirs; i++) {
    snprintf(path, sizeof path, "%s%s", o.dir, subdirs[i]);
    if (mkdirs(path) < 0) {
      sf_cli_err("up: %s: %s", path, strerror(errno));
      return SF_EXIT_FAIL;
    }
  }
  snprintf(path, sizeof path, "%s/secret", o.dir);
  if (access(path, F_OK) < 0 && sf__secret_generate(path, &err) < 0) goto fail;
  if (sf__secret_load(&sec, path, &err) < 0) goto fail;

  /* Plan. */
  printf("seifer up: planning %s on %s\n", o.model, o.cluster);
  fflush(stdout);
  if (sf__read_file(o.cluster, 64 << 20, &txt, &len, &err) < 0) goto fail;
  if (sf__cluster_parse(txt, len, &cl, &err) < 0) {
    sf__errctx(&err, err.code, "%s", o.cluster);
    goto fail;
  }
  have_cl = 1;
  if (sf_model_load(&m, o.model, &err) < 0) goto fail;
  sf_partition_opts po = sf_partition_opts_default();
  if (sf__partition_analyze(m, &po, &pa, &err) < 0) goto fail;
  have_pa = 1;
  if (o.codec != SF_CODEC_RAW) { /* transfer sizes under the codec, measured on a sample */
    if (sf__partition_measure_codecs(&pa, NULL, 0, 0, &err) < 0) goto fail;
    sf__partition_apply_codec(&pa, o.codec);
  }
  sf_plan_opts popt = sf_plan_opts_default();
  popt.time_limit_s = 10;
  if (sf__plan_solve(solver, &pa.costs, &cl, &popt, &p, &err) < 0) goto fail;
  if (p.n_stages == 0) {
    sf__errf(&err, SF_EINVAL, "the model does not fit the cluster's memory (no feasible plan)");
    goto fail;
  }
  if (p.n_stages > MAX_STAGES) {
    sf__errf(&err, SF_ELIMIT, "%d stages (at most %d)", p.n_stages, MAX_STAGES);
    goto fail;
  }
  k = p.n_stages;
  print_plan(&cl, &pa, &p);

  /* Split. */
  int pos[MAX_STAGES + 1];
  const char *node_names[MAX_STAGES];
  pos[0] = 0;
  for (int i = 0; i < k; i++) {
    pos[i + 1] = pa.costs.pos[p.stages[i].cut_to];
    node_names[i] = cl.nodes[p.stages[i].node].name;
  }
  snprintf(path, sizeof path, "%s/stages", o.dir);
  if (sf__partition_write(&pa, name, k, pos, node_names, path, &err) < 0) goto fail;

  /* Start the processes (or find the running ones). */
  char secret_path[PATH_MAX];
  snprintf(secret_path, sizeof secret_path, "%s/secret", o.dir);
  if (o.attach) {
    if (node_addresses(txt, len, &cl, &p, addrs, &err) < 0) goto fail;
    if (strlen(o.attach) >= sizeof gw_data) {
      sf__errf(&err, SF_EINVAL, "--attach: address too long");
      goto fail;
    }
    snprintf(gw_data, sizeof gw_data, "%s", o.attach);
  }
  for (int i = 0; i < k && !o.attach; i++) {
    char port_file[PATH_MAX], cache[PATH_MAX], log[PATH_MAX], threads[16];
    const char *node = node_names[i];
    snprintf(port_file, sizeof port_file, "%s/run/%s.port", o.dir, node);
    snprintf(cache, sizeof cache, "%s/cache/%s", o.dir, node);
    snprintf(log, sizeof log, "%s/logs/%s.log", o.dir, node);
    snprintf(threads, sizeof threads, "%d", o.threads);
    unlink(port_file);
    char *args[] = {self, "worker", "--listen", "127.0.0.1:0", "--secret", secret_path, "--name",
                    (char *)node, "--cache", cache, "--threads", threads, "--port-file", port_file, NULL};
    pid_t pid = sf__spawn(self, args, log, &err);
    if (pid < 0) goto fail;
    pids[n_pids++] = pid;
    if (sf__wait_port_file(port_file, pid, 10000, &ports[i], 1, &err) < 0) {
      sf__errctx(&err, err.code, "worker %s (log: %s)", node, log);
      goto fail;
    }
    snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", ports[i]);
  }
  if (!o.attach) {
    char port_file[PATH_MAX], log[PATH_MAX];
    snprintf(port_file, sizeof port_file, "%s/run/gateway.port", o.dir);
    snprintf(log, sizeof log, "%s/logs/gateway.log", o.dir);
    unlink(port_file);
    char *args[] = {self, "gateway", "--listen", (char *)o.listen, "--data", "127.0.0.1:0", "--secret",
                    secret_path, "--port-file", port_file, NULL};
    pid_t pid = sf__spawn(self, args, log, &err);
    if (pid < 0) goto fail;
    pids[n_pids++] = pid;
    if (sf__wait_port_file(port_file, pid, 10000, gw_ports, 2, &err) < 0) {
      sf__errctx(&err, err.code, "gateway (log: %s)", log);
      goto fail;
    }
    snprintf(gw_data, sizeof gw_data, "127.0.0.1:%d", gw_ports[1]);
    char host[256];
    const char *colon = strrchr(o.listen, ':');
    snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - o.listen) : 0, o.listen);
    if (!host[0] || !strcmp(host, "0.0.0.0")) snprintf(host, sizeof host, "127.0.0.1");
    snprintf(url, sizeof url, "http://%s:%d", host, gw_ports[0]);
  }

  /* Ship the stages and wire the chain: stage i sends to stage i+1, the last to the gateway. */
  for (int i = 0; i < k; i++) {
    char stage_path[PATH_MAX];
    if (sf__ctl_connect(&ctl[i], addrs[i], &sec, &err) < 0) goto fail;
    snprintf(stage_path, sizeof stage_path, "%s/stages/stage-%d.onnx", o.dir, i + 1);
    void *bytes = NULL;
    size_t blen = 0;
    if (sf__read_file(stage_path, (int64_t)2 << 30, &bytes, &blen, &err) < 0) goto fail;
    int src = sf__ctl_stage(ctl[i], bytes, blen, 120000, &info[i], &err);
    free(bytes);
    if (src < 0) {
      sf__errctx(&err, err.code, "stage %d on %s", i + 1, node_names[i]);
      goto fail;
    }
    int from = p.stages[i].node;
    int to = i + 1 < k ? p.stages[i + 1].node : cl.gateway;
    double rate = o.emulate && to >= 0 && to != from ? cl.bw[from * cl.n + to] : 0;
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"stage\":%d,\"pipeline\":0,\"next\":\"%s\",\"last\":%s,\"codec\":\"%s\","
             "\"rate_bytes_per_s\":%.17g,\"compute_s\":%.17g}",
             i, i + 1 < k ? addrs[i + 1] : gw_data, i + 1 < k ? "false" : "true",
             sf__codec_name(o.codec), rate, o.emulate_compute ? p.stages[i].compute_s : 0.0);
    if (sf__ctl_config(ctl[i], cfg, 10000, NULL, &err) < 0) {
      sf__errctx(&err, err.code, "configuring stage %d on %s", i + 1, node_names[i]);
      goto fail;
    }
  }
  {
    if (sf__ctl_connect(&ctl[k], gw_data, &sec, &err) < 0) goto fail;
    char *ins = tensor_list_json(info[0], "inputs"), *outs = tensor_list_json(info[k - 1], "outputs");
    int first = p.stages[0].node;
    double rate = o.emulate && cl.gateway >= 0 && cl.gateway != first ? cl.bw[cl.gateway * cl.n + first] : 0;
    cJSON *sa = cJSON_CreateArray(), *sn = cJSON_CreateArray();
    for (int i = 0; i < k; i++) {
      cJSON_AddItemToArray(sa, cJSON_CreateString(addrs[i]));
      cJSON_AddItemToArray(sn, cJSON_CreateString(node_names[i]));
    }
    char *sas = cJSON_PrintUnformatted(sa), *sns = cJSON_PrintUnformatted(sn);
    cJSON_Delete(sa);
    cJSON_Delete(sn);
    size_t cap = (ins ? strlen(ins) : 0) + (outs ? strlen(outs) : 0) + (sas ? strlen(sas) : 0) +
                 (sns ? strlen(sns) : 0) + 1024;
    char *cfg = sf__malloc(cap);
    int ok = ins && outs && cfg && sas && sns;
    if (ok)
      snprintf(cfg, cap,
               "{\"model\":\"%s\",\"version\":\"1\",\"inputs\":%s,\"outputs\":%s,\"pipelines\":[{\"id\":0,"
               "\"first\":\"%s\",\"codec\":\"%s\",\"rate_bytes_per_s\":%.17g,\"stages\":%d,\"stage_addrs\":%s,\"stage_nodes\":%s}]}",
               name, ins, outs, addrs[0], sf__codec_name(o.codec), rate, k, sas, sns);
    free(sas);
    free(sns);
    free(ins);
    free(outs);
    int crc = ok ? sf__ctl_config(ctl[k], cfg, 10000, NULL, &err) : sf__errf(&err, SF_ENOMEM, "out of memory");
    free(cfg);
    if (crc < 0) {
      sf__errctx(&err, err.code, "configuring the gateway");
      goto fail;
    }
  }

  /* Record the state for `down` (and for people: plan, URL, processes). */
  {
    cJSON *j = cJSON_CreateObject();
    if (url[0]) cJSON_AddStringToObject(j, "url", url);
    cJSON_AddStringToObject(j, "model", name);
    cJSON_AddStringToObject(j, "codec", sf__codec_name(o.codec));
    cJSON_AddNumberToObject(j, "predicted_throughput_per_s", p.throughput_per_s);
    cJSON_AddNumberToObject(j, "bottleneck_s", p.bottleneck_s);
    cJSON *pj = cJSON_AddArrayToObject(j, "pids");
    for (int i = 0; i < n_pids; i++) cJSON_AddItemToArray(pj, cJSON_CreateNumber(pids[i]));
    cJSON *st = cJSON_AddArrayToObject(j, "stages");
    for (int i = 0; i < k; i++) {
      cJSON *s = cJSON_CreateObject();
      cJSON_AddStringToObject(s, "node", node_names[i]);
      if (!o.attach) cJSON_AddNumberToObject(s, "pid", pids[i]);
      if (!o.attach) cJSON_AddNumberToObject(s, "port", ports[i]);
      cJSON_AddStringToObject(s, "address", addrs[i]);
      cJSON_AddNumberToObject(s, "memory_bytes", (double)p.stages[i].mem_bytes);
      cJSON *inf = cJSON_Parse(info[i]);
      cJSON *pr = inf ? cJSON_GetObjectItem(inf, "peak_rss") : NULL;
      if (cJSON_IsNumber(pr)) cJSON_AddNumberToObject(s, "loaded_peak_rss", pr->valuedouble);
      cJSON_Delete(inf);
      cJSON_AddItemToArray(st, s);
    }
    if (!o.attach) cJSON_AddNumberToObject(j, "gateway_pid", pids[k]);
    cJSON_AddStringToObject(j, "gateway_data", gw_data);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    snprintf(path, sizeof path, "%s/up.json", o.dir);
    int wrc = s ? sf__write_file(path, s, strlen(s), &err) : -1;
    free(s);
    if (wrc < 0) goto fail;
    printf("seifer up: model '%s' served at %s (%d stage%s, codec %s%s); stop with: seifer down --dir %s\n",
           name, url[0] ? url : gw_data, k, k == 1 ? "" : "s", sf__codec_name(o.codec), o.emulate ? ", cluster emulated" : "",
           o.dir);
  }
  rc = SF_EXIT_OK;
  goto out;
fail:
  sf_cli_err("up: %s", err.msg);
  for (int i = n_pids - 1; i >= 0; i--) sf__stop_process(pids[i], 2000);
out:
  for (int i = 0; i <= k && i <= MAX_STAGES; i++) {
    if (ctl[i]) sf__frame_send(ctl[i], &(sf_frame_hdr){.type = SF_FR_BYE}, NULL, 0, NULL);
    sf__conn_free(ctl[i]);
  }
  for (int i = 0; i < k; i++) free(info[i]);
  free(txt);
  sf__plan_deinit(&p);
  if (have_pa) sf__partition_deinit(&pa);
  if (have_cl) sf__cluster_deinit(&cl);
  sf_model_free(m);
  return rc;
}

const sf_cmd sf_cmd_up = {"up", "start a planned pipeline and its gateway as local processes", up_run,
                          up_usage};

/* ---- down -------------------------------------------------------------------------------------- */
static void down_usage(void) {
  printf("usage: seifer down [--dir DIR]\n"
         "Stops the gateway and the workers that `seifer up --dir DIR` started (default .seifer):\n"
         "SIGTERM (the workers drain), then SIGKILL after 10 s.\n");
}

/* The pid still runs a seifer worker or gateway (not a process that reused the pid). */
static int ours(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  for (size_t i = 0; i < n; i++)
    if (!buf[i]) buf[i] = ' ';
  buf[n] = 0;
  return strstr(buf, " worker ") || strstr(buf, " gateway ");
}

static int down_run(int argc, char **argv) {
  const char *dir = ".seifer";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--dir")) {
      if (!(dir = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else {
      sf_cli_err("down: unknown argument '%s'", argv[i]);
      return SF_EXIT_USAGE;
    }
  }
  pid_t pids[MAX_STAGES + 1];
  int n = read_pids(dir, pids, MAX_STAGES + 1);
  if (n < 0) {
    sf_cli_err("down: %s/up.json: nothing was started from this directory", dir);
    return SF_EXIT_FAIL;
  }
  int failed = 0;
  /* gateway (last) first: no new requests; then the stages in order, each draining into the next */
  if (n > 0 && ours(pids[n - 1]) && sf__stop_process(pids[n - 1], 10000) < 0) failed = 1;
  for (int i = 0; i + 1 < n; i++)
    if (ours(pids[i]) && sf__stop_process(pids[i], 10000) < 0) failed = 1;
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/up.json", dir);
  if (!failed) unlink(path);
  printf("seifer down: stopped %d process%s\n", n, n == 1 ? "" : "es");
  return failed ? SF_EXIT_FAIL : SF_EXIT_OK;
}

const sf_cmd sf_cmd_down = {"down", "stop what `seifer up` started", down_run, down_usage};
