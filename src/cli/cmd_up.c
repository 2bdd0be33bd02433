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
#define MAX_PIPES 64

static void up_usage(void) {
  printf(
      "usage: seifer up --model MODEL.onnx --cluster CLUSTER.json [--codec raw|fp16|lz4|zfp]\n"
      "                 [--listen HOST:PORT] [--dir DIR] [--name NAME] [--threads N]\n"
      "                 [--algorithm optimal|kpath|joint|random] [--no-emulate]\n"
      "                 [--attach GATEWAY_DATA_ADDR] [--emulate-compute] [--pipelines N|auto]\n"
      "                 [--timeout S] [--sample INPUT.npy]\n"
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
      "machine).\n"
      "--pipelines: up to N disjoint pipelines (auto: as many as raise the total throughput); the\n"
      "gateway balances requests across them. Pipeline 0's stages go to DIR/stages, pipeline q's\n"
      "to DIR/stages/pq. --timeout: the gateway answers 504 to a request not done within S\n"
      "seconds (default 30). --sample: a typical input; with a compressing codec the planner uses\n"
      "the sizes the codec gives on the tensors this input produces (default: a synthetic image).\n");
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

static int ours(pid_t pid);
static int any_alive(const pid_t *pids, int n) {
  for (int i = 0; i < n; i++)
    if (ours(pids[i])) return 1;
  return 0;
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
static int node_addresses(const void *txt, size_t len, const sf_cluster *cl, const char **names, int k,
                          char (*addrs)[128], sf_err *err) {
  cJSON *j = cJSON_ParseWithLength(txt, len);
  cJSON *nodes = j ? cJSON_GetObjectItem(j, "nodes") : NULL;
  int rc = 0;
  (void)cl;
  for (int i = 0; i < k && rc == 0; i++) {
    const char *want = names[i];
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
  int codec, threads, emulate, emulate_compute, pipelines;
  const char *timeout; /* gateway request timeout, seconds */
  const char *sample;  /* .npy input the codec sizes are measured on */
} up_opts;

static int up_run(int argc, char **argv) {
  up_opts o = {.dir = ".seifer", .listen = "127.0.0.1:8000", .algorithm = "optimal", .threads = 1,
               .emulate = 1, .emulate_compute = -1, .codec = SF_CODEC_RAW, .pipelines = 1};
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
    } else if (!strcmp(a, "--sample")) {
      if (!(o.sample = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--timeout")) {
      if (!(o.timeout = sf_cli_value(argc, argv, &i)) || sf_cli_int(a, o.timeout, 1, 86400, &v)) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--pipelines")) {
      const char *s = sf_cli_value(argc, argv, &i);
      if (!s) return SF_EXIT_USAGE;
      if (!strcmp(s, "auto")) {
        o.pipelines = 0;
      } else {
        if (sf_cli_int(a, s, 1, MAX_PIPES, &v)) return SF_EXIT_USAGE;
        o.pipelines = (int)v;
      }
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
  sf_multiplan mp = {0};
  int have_mp = 0, n_pipes = 0, first_g[MAX_PIPES + 1], pipe_of[MAX_STAGES];
  sf_plan *plans[MAX_PIPES];
  const sf_stage *st_of[MAX_STAGES];
  const char *node_names[MAX_STAGES];
  static char stage_dir[MAX_PIPES][PATH_MAX];
  double predicted = 0;
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
    sf_tensor smp = {0};
    int mrc;
    if (o.sample) {
      if (sf__tensor_load_file(o.sample, &smp, &err) < 0) goto fail;
      free(smp.name); /* the sample feeds the model's first input */
      smp.name = sf__strdup(pa.g->n_inputs > 0 ? pa.g->tensors[pa.g->inputs[0]].t.name : "");
      mrc = smp.name ? sf__partition_measure_codecs(&pa, &smp, 1, 0, &err) : sf__errf(&err, SF_ENOMEM, "out of memory");
      sf__tensor_deinit(&smp);
      if (mrc < 0) sf__errctx(&err, err.code, "--sample %s", o.sample);
    } else {
      mrc = sf__partition_measure_codecs(&pa, NULL, 0, 0, &err);
    }
    if (mrc < 0) goto fail;
    sf__partition_apply_codec(&pa, o.codec);
  }
  sf_plan_opts popt = sf_plan_opts_default();
  popt.time_limit_s = 10;
  if (o.pipelines == 1) {
    if (sf__plan_solve(solver, &pa.costs, &cl, &popt, &p, &err) < 0) goto fail;
    if (p.n_stages > 0) plans[n_pipes++] = &p;
    predicted = p.throughput_per_s;
  } else {
    if (sf__plan_multi(solver, &pa.costs, &cl, &popt, o.pipelines, &mp, &err) < 0) goto fail;
    have_mp = 1;
    for (int q = 0; q < mp.n_pipelines && q < MAX_PIPES; q++) plans[n_pipes++] = &mp.pipelines[q];
    predicted = mp.throughput_per_s;
  }
  if (n_pipes == 0) {
    sf__errf(&err, SF_EINVAL, "the model does not fit the cluster's memory (no feasible plan)");
    goto fail;
  }
  for (int q = 0; q < n_pipes; q++) {
    if (k + plans[q]->n_stages > MAX_STAGES) {
      sf__errf(&err, SF_ELIMIT, "more than %d stages in all", MAX_STAGES);
      goto fail;
    }
    first_g[q] = k;
    for (int i = 0; i < plans[q]->n_stages; i++, k++) {
      pipe_of[k] = q;
      st_of[k] = &plans[q]->stages[i];
      node_names[k] = cl.nodes[plans[q]->stages[i].node].name;
    }
  }
  first_g[n_pipes] = k;
  for (int q = 0; q < n_pipes; q++) {
    if (n_pipes > 1) printf("pipeline %d (%.2f req/s of the total):\n", q, have_mp ? mp.rate_per_s[q] : predicted);
    print_plan(&cl, &pa, plans[q]);
  }
  if (n_pipes > 1) printf("%d pipelines: predicted total %.2f req/s\n", n_pipes, predicted);

  /* Split: pipeline 0 into DIR/stages, pipeline q > 0 into DIR/stages/pq. */
  for (int q = 0; q < n_pipes; q++) {
    int pos[MAX_STAGES + 1], ks = plans[q]->n_stages;
    pos[0] = 0;
    for (int i = 0; i < ks; i++) pos[i + 1] = pa.costs.pos[plans[q]->stages[i].cut_to];
    if (q == 0) snprintf(stage_dir[q], sizeof stage_dir[q], "%s/stages", o.dir);
    else snprintf(stage_dir[q], sizeof stage_dir[q], "%s/stages/p%d", o.dir, q);
    if (mkdirs(stage_dir[q]) < 0) {
      sf__errf(&err, SF_EIO, "%s: %s", stage_dir[q], strerror(errno));
      goto fail;
    }
    if (sf__partition_write(&pa, name, ks, pos, node_names + first_g[q], stage_dir[q], &err) < 0) goto fail;
  }

  /* Start the processes (or find the running ones). */
  char secret_path[PATH_MAX];
  snprintf(secret_path, sizeof secret_path, "%s/secret", o.dir);
  if (o.attach) {
    if (node_addresses(txt, len, &cl, node_names, k, addrs, &err) < 0) goto fail;
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
                    secret_path, "--port-file", port_file, "--timeout", (char *)(o.timeout ? o.timeout : "30"), NULL};
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

  /* Ship the stages and wire each chain: stage i sends to stage i+1, the last to the gateway. */
  for (int g = 0; g < k; g++) {
    int q = pipe_of[g], i = g - first_g[q], last = g + 1 == first_g[q + 1];
    char stage_path[PATH_MAX + 64];
    if (sf__ctl_connect(&ctl[g], addrs[g], &sec, &err) < 0) goto fail;
    snprintf(stage_path, sizeof stage_path, "%s/stage-%d.onnx", stage_dir[q], i + 1);
    void *bytes = NULL;
    size_t blen = 0;
    if (sf__read_file(stage_path, (int64_t)2 << 30, &bytes, &blen, &err) < 0) goto fail;
    int src = sf__ctl_stage(ctl[g], bytes, blen, 120000, &info[g], &err);
    free(bytes);
    if (src < 0) {
      sf__errctx(&err, err.code, "stage %d on %s", i + 1, node_names[g]);
      goto fail;
    }
    int from = st_of[g]->node;
    int to = !last ? st_of[g + 1]->node : cl.gateway;
    double rate = o.emulate && to >= 0 && to != from ? cl.bw[from * cl.n + to] : 0;
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\"stage\":%d,\"pipeline\":%d,\"next\":\"%s\",\"last\":%s,\"codec\":\"%s\","
             "\"rate_bytes_per_s\":%.17g,\"compute_s\":%.17g}",
             i, q, !last ? addrs[g + 1] : gw_data, !last ? "false" : "true", sf__codec_name(o.codec), rate,
             o.emulate_compute ? st_of[g]->compute_s : 0.0);
    if (sf__ctl_config(ctl[g], cfg, 10000, NULL, &err) < 0) {
      sf__errctx(&err, err.code, "configuring stage %d on %s", i + 1, node_names[g]);
      goto fail;
    }
  }
  {
    if (sf__ctl_connect(&ctl[k], gw_data, &sec, &err) < 0) goto fail;
    cJSON *cfg = cJSON_CreateObject(), *pipes = cJSON_CreateArray();
    cJSON_AddStringToObject(cfg, "model", name);
    cJSON_AddStringToObject(cfg, "version", "1");
    cJSON *ins = cJSON_Parse(info[0]), *outs = cJSON_Parse(info[first_g[1] - 1]);
    cJSON_AddItemToObject(cfg, "inputs", cJSON_DetachItemFromObject(ins, "inputs"));
    cJSON_AddItemToObject(cfg, "outputs", cJSON_DetachItemFromObject(outs, "outputs"));
    cJSON_Delete(ins);
    cJSON_Delete(outs);
    for (int q = 0; q < n_pipes; q++) {
      cJSON *pj = cJSON_CreateObject(), *sa = cJSON_CreateArray(), *sn = cJSON_CreateArray();
      int first = plans[q]->stages[0].node;
      double rate = o.emulate && cl.gateway >= 0 && cl.gateway != first ? cl.bw[cl.gateway * cl.n + first] : 0;
      cJSON_AddNumberToObject(pj, "id", q);
      cJSON_AddStringToObject(pj, "first", addrs[first_g[q]]);
      cJSON_AddStringToObject(pj, "codec", sf__codec_name(o.codec));
      cJSON_AddNumberToObject(pj, "rate_bytes_per_s", rate);
      cJSON_AddNumberToObject(pj, "stages", plans[q]->n_stages);
      for (int g = first_g[q]; g < first_g[q + 1]; g++) {
        cJSON_AddItemToArray(sa, cJSON_CreateString(addrs[g]));
        cJSON_AddItemToArray(sn, cJSON_CreateString(node_names[g]));
      }
      cJSON_AddItemToObject(pj, "stage_addrs", sa);
      cJSON_AddItemToObject(pj, "stage_nodes", sn);
      cJSON_AddItemToArray(pipes, pj);
    }
    cJSON_AddItemToObject(cfg, "pipelines", pipes);
    char *cs = cJSON_PrintUnformatted(cfg);
    cJSON_Delete(cfg);
    int crc = cs ? sf__ctl_config(ctl[k], cs, 10000, NULL, &err) : sf__errf(&err, SF_ENOMEM, "out of memory");
    free(cs);
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
    cJSON_AddNumberToObject(j, "predicted_throughput_per_s", predicted);
    cJSON_AddNumberToObject(j, "pipelines", n_pipes);
    cJSON_AddNumberToObject(j, "bottleneck_s", plans[0]->bottleneck_s);
    cJSON *pj = cJSON_AddArrayToObject(j, "pids");
    for (int i = 0; i < n_pids; i++) cJSON_AddItemToArray(pj, cJSON_CreateNumber(pids[i]));
    cJSON *st = cJSON_AddArrayToObject(j, "stages");
    for (int i = 0; i < k; i++) {
      cJSON *s = cJSON_CreateObject();
      cJSON_AddNumberToObject(s, "pipeline", pipe_of[i]);
      cJSON_AddStringToObject(s, "node", node_names[i]);
      if (!o.attach) cJSON_AddNumberToObject(s, "pid", pids[i]);
      if (!o.attach) cJSON_AddNumberToObject(s, "port", ports[i]);
      cJSON_AddStringToObject(s, "address", addrs[i]);
      cJSON_AddNumberToObject(s, "memory_bytes", (double)st_of[i]->mem_bytes);
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
    printf("seifer up: model '%s' served at %s (%d pipeline%s, %d stage%s, codec %s%s); stop with: seifer down --dir %s\n",
           name, url[0] ? url : gw_data, n_pipes, n_pipes == 1 ? "" : "s", k, k == 1 ? "" : "s",
           sf__codec_name(o.codec), o.emulate ? ", cluster emulated" : "", o.dir);
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
  if (have_mp) sf__multiplan_deinit(&mp);
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
