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
    sf__model_name_from_path(o.model, name, sizeof name);
  }

  pid_t old[MAX_STAGES + 1];
  int n_old = read_pids(o.dir, old, MAX_STAGES + 1);
  if (n_old > 0 && any_alive(old, n_old)) {
    sf_cli_err("up: %s/up.json: a pipeline started from this directory is still running (seifer down --dir %s)",
               o.dir, o.dir);
    return SF_EXIT_FAIL;
  }

  int rc = SF_EXIT_FAIL, have_cl = 0, have_dm = 0, k = 0;
  sf_err err = {0};
  sf_dmodel dm;
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
  int n_pids = 0;
  static char addrs[MAX_STAGES][128];
  char (*node_addr)[128] = NULL;
  char gw_data[128] = "", url[300] = "";
  char *info[MAX_STAGES] = {0};
  sf_conn *ctl[MAX_STAGES + 1] = {0};
  cJSON *ins = NULL, *outs = NULL;
  char path[PATH_MAX], self[PATH_MAX];
  sf_secret sec;

  if (sf__self_exe(self, sizeof self, &err) < 0) {
    sf_cli_err("up: %s", err.msg);
    return SF_EXIT_FAIL;
  }
  const char *subdirs[] = {"", "/stages", "/logs", "/run", "/cache"};
  for (size_t i = 0; i < sizeof subdirs / sizeof *subdirs; i++) {
    snprintf(path, sizeof path, "%s%s", o.dir, subdirs[i]);
    if (sf__mkdirs(path) < 0) {
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
  if (sf__dmodel_open(&dm, o.model, o.codec, o.sample, &err) < 0) goto fail;
  have_dm = 1;
  sf_plan_opts popt = sf_plan_opts_default();
  popt.time_limit_s = 10;
  if (o.pipelines == 1) {
    if (sf__plan_solve(solver, &dm.pa.costs, &cl, &popt, &p, &err) < 0) goto fail;
    if (p.n_stages > 0) plans[n_pipes++] = &p;
    predicted = p.throughput_per_s;
  } else {
    if (sf__plan_multi(solver, &dm.pa.costs, &cl, &popt, o.pipelines, &mp, &err) < 0) goto fail;
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
    print_plan(&cl, &dm.pa, plans[q]);
  }
  if (n_pipes > 1) printf("%d pipelines: predicted total %.2f req/s\n", n_pipes, predicted);

  /* Split: pipeline 0 into DIR/stages, pipeline q > 0 into DIR/stages/pq. */
  for (int q = 0; q < n_pipes; q++) {
    if (q == 0) snprintf(stage_dir[q], sizeof stage_dir[q], "%s/stages", o.dir);
    else snprintf(stage_dir[q], sizeof stage_dir[q], "%s/stages/p%d", o.dir, q);
    if (sf__deploy_split(&dm, name, &cl, plans[q], stage_dir[q], NULL, &err) < 0) goto fail;
  }

  /* Start the processes (or find the running ones). */
  sf_local_opts lo = {.self = self, .dir = o.dir, .threads = o.threads, .gateway_timeout = o.timeout};
  if (o.attach) {
    node_addr = sf__calloc((size_t)cl.n, sizeof *node_addr);
    if (!node_addr) {
      sf__errf(&err, SF_ENOMEM, "out of memory");
      goto fail;
    }
    if (sf__cluster_addresses(txt, len, &cl, node_addr, &err) < 0) goto fail;
    for (int i = 0; i < k; i++) {
      if (!node_addr[st_of[i]->node][0]) {
        sf__errf(&err, SF_EINVAL, "--attach: node '%s' needs an \"address\" (host:port) in the cluster file",
                 node_names[i]);
        goto fail;
      }
      snprintf(addrs[i], sizeof addrs[i], "%s", node_addr[st_of[i]->node]);
    }
    if (strlen(o.attach) >= sizeof gw_data) {
      sf__errf(&err, SF_EINVAL, "--attach: address too long");
      goto fail;
    }
    snprintf(gw_data, sizeof gw_data, "%s", o.attach);
  } else {
    for (int i = 0; i < k; i++) {
      pid_t pid;
      if (sf__local_start_worker(&lo, node_names[i], "127.0.0.1:0", &pid, addrs[i], sizeof addrs[i], &err) < 0)
        goto fail;
      pids[n_pids++] = pid;
    }
    pid_t pid;
    if (sf__local_start_gateway(&lo, NULL, o.listen, "127.0.0.1:0", &pid, gw_data, sizeof gw_data, url,
                                sizeof url, &err) < 0)
      goto fail;
    pids[n_pids++] = pid;
  }

  /* Ship the stages and wire each chain: stage i sends to stage i+1, the last to the gateway. */
  for (int g = 0; g < k; g++) {
    int q = pipe_of[g], i = g - first_g[q], last = g + 1 == first_g[q + 1];
    char stage_path[PATH_MAX + 32];
    if (sf__ctl_connect(&ctl[g], addrs[g], &sec, &err) < 0) goto fail;
    snprintf(stage_path, sizeof stage_path, "%s/stage-%d.onnx", stage_dir[q], i + 1);
    if (sf__deploy_ship(ctl[g], stage_path, 120000, &info[g], &err) < 0) {
      sf__errctx(&err, err.code, "stage %d on %s", i + 1, node_names[g]);
      goto fail;
    }
    int from = st_of[g]->node;
    int to = !last ? st_of[g + 1]->node : cl.gateway;
    sf_wcfg wc = {.stage = i, .pipeline = (uint32_t)q, .last = last, .codec = o.codec,
                  .rate_bytes_per_s = o.emulate ? sf__emulated_rate(&cl, from, to) : 0,
                  .compute_s = o.emulate_compute ? st_of[g]->compute_s : 0.0};
    snprintf(wc.next, sizeof wc.next, "%s", !last ? addrs[g + 1] : gw_data);
    char *cfg = sf__wcfg_json(&wc);
    int crc = cfg ? sf__ctl_config(ctl[g], cfg, 10000, NULL, &err) : sf__errf(&err, SF_ENOMEM, "out of memory");
    free(cfg);
    if (crc < 0) {
      sf__errctx(&err, err.code, "configuring stage %d on %s", i + 1, node_names[g]);
      goto fail;
    }
  }
  {
    if (sf__ctl_connect(&ctl[k], gw_data, &sec, &err) < 0) goto fail;
    sf_gw_pipe gp[MAX_PIPES];
    const char *gaddr[MAX_STAGES];
    for (int g = 0; g < k; g++) gaddr[g] = addrs[g];
    for (int q = 0; q < n_pipes; q++) {
      int first = plans[q]->stages[0].node;
      gp[q] = (sf_gw_pipe){.id = (uint32_t)q, .codec = o.codec, .n_stages = plans[q]->n_stages,
                           .rate_bytes_per_s = o.emulate ? sf__emulated_rate(&cl, cl.gateway, first) : 0,
                           .addrs = gaddr + first_g[q], .nodes = node_names + first_g[q]};
    }
    ins = sf__dmodel_io(&dm, 0);
    outs = sf__dmodel_io(&dm, 1);
    char *cs = ins && outs ? sf__gateway_config_json(name, "1", ins, outs, gp, n_pipes, NULL) : NULL;
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
      const char *colon = strrchr(addrs[i], ':');
      if (!o.attach && colon) cJSON_AddNumberToObject(s, "port", atoi(colon + 1));
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
    int wrc = s ? sf__write_file_atomic(path, s, strlen(s), &err) : -1;
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
  cJSON_Delete(ins);
  cJSON_Delete(outs);
  free(node_addr);
  free(txt);
  sf__plan_deinit(&p);
  if (have_mp) sf__multiplan_deinit(&mp);
  if (have_dm) sf__dmodel_deinit(&dm);
  if (have_cl) sf__cluster_deinit(&cl);
  return rc;
}

const sf_cmd sf_cmd_up = {"up", "start a planned pipeline and its gateway as local processes", up_run,
                          up_usage};

/* ---- down -------------------------------------------------------------------------------------- */
static void down_usage(void) {
  printf("usage: seifer down [--dir DIR]\n"
         "Stops the gateway and the workers that `seifer up --dir DIR` started (default .seifer):\n"
         "SIGTERM (the workers drain), then SIGKILL after 10 s. On a controller's directory the\n"
         "controller stops first, then its gateway and workers.\n");
}

/* The pid still runs a seifer worker or gateway (not a process that reused the pid). */
static int ours(pid_t pid) { return sf__process_is(pid, "worker") || sf__process_is(pid, "gateway"); }

/* A controller's directory: the controller first (it would restart what stops), then its gateway
 * and workers (the local driver's process records). Returns processes stopped, -1 on failure. */
static int down_controller(const char *dir) {
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/controller.json", dir);
  void *txt = NULL;
  size_t len = 0;
  if (sf__read_file(path, 16 << 20, &txt, &len, NULL) < 0) return 0;
  cJSON *j = cJSON_ParseWithLength(txt, len);
  free(txt);
  cJSON *cp = j ? cJSON_GetObjectItem(j, "controller_pid") : NULL;
  int n = 0, failed = 0;
  if (cJSON_IsNumber(cp) && cp->valuedouble > 1 && cp->valuedouble < 4194304 &&
      sf__process_is((pid_t)cp->valuedouble, "controller")) {
    if (sf__stop_process((pid_t)cp->valuedouble, 10000) < 0) failed = 1;
    n++;
  }
  cJSON_Delete(j);
  sf_local_opts lo = {.self = "", .dir = dir};
  sf_driver d;
  sf_proc procs[MAX_STAGES + 1];
  if (!failed && sf__driver_local(&d, &lo, NULL) == 0) {
    int np = d.ops->list(d.ctx, procs, MAX_STAGES + 1);
    for (int pass = 0; pass < 2; pass++) /* the gateway first: no new requests */
      for (int i = 0; i < np; i++)
        if ((procs[i].role == SF_PROC_GATEWAY) == (pass == 0)) {
          if (d.ops->stop(d.ctx, &procs[i], 10000) < 0) failed = 1;
          n++;
        }
    sf__driver_free(&d);
  }
  if (!failed) unlink(path);
  return failed ? -1 : n;
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
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/controller.json", dir);
  if (access(path, F_OK) == 0) {
    int n = down_controller(dir);
    if (n < 0) {
      sf_cli_err("down: %s: could not stop everything", dir);
      return SF_EXIT_FAIL;
    }
    printf("seifer down: stopped %d process%s (controller, gateway, workers)\n", n, n == 1 ? "" : "es");
    return SF_EXIT_OK;
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
  snprintf(path, sizeof path, "%s/up.json", dir);
  if (!failed) unlink(path);
  printf("seifer down: stopped %d process%s\n", n, n == 1 ? "" : "es");
  return failed ? SF_EXIT_FAIL : SF_EXIT_OK;
}

const sf_cmd sf_cmd_down = {"down", "stop what `seifer up` or `seifer controller` started", down_run, down_usage};
