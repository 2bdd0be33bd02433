/* seifer controller: keep a model serving on a cluster through failures and new versions.
 * seifer deploy: add a model version to a running controller's repository and wait for it. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "control/control.h"
#include "control/k8s.h"
#include "control/k8s_ctl.h"
#include "serve/serve.h"

static volatile sig_atomic_t stop_flag, rescan_flag;

static void on_usr1(int sig) {
  (void)sig;
  rescan_flag = 1;
}

static void controller_usage(void) {
  printf(
      "usage: seifer controller --cluster CLUSTER.json (--model MODEL.onnx | --repo DIR) [--name "
      "NAME]\n"
      "                         [--dir DIR] [--listen HOST:PORT] [--heartbeat-ms MS] [--misses N]\n"
      "                         [--codec raw|fp16|lz4|zfp] [--threads N] [--replan-gain X]\n"
      "                         [--restart-ms MS] [--poll-ms MS] [--algorithm NAME]\n"
      "                         [--no-emulate] [--emulate-compute] [--wrap PROGRAM] [--timeout S]\n"
      "                         [--probe | --no-probe] [--probe-seconds S]\n"
      "Runs one worker per cluster node and the gateway as local processes and keeps the model\n"
      "served by the best pipeline the healthy nodes allow:\n"
      "  - a node whose worker misses N heartbeats (default 3 x 500 ms) or whose link breaks is\n"
      "    failed; the pipeline is re-planned on the survivors (stages that need not move stay),\n"
      "    the gateway replays the requests in flight, none is lost or answered twice; when the\n"
      "    survivors cannot hold the model, ready turns false and infer answers 503 with the "
      "reason\n"
      "    until capacity returns. Dead workers are restarted after a back-off (--restart-ms,\n"
      "    default 1000, doubling); a returning node changes the plan only when that gains more\n"
      "    than --replan-gain (default 0.10).\n"
      "  - model versions: --repo DIR in Triton's layout (NAME/VERSION/model.onnx) is polled "
      "every\n"
      "    --poll-ms (default 500); --model FILE starts DIR/repo/NAME/1 from FILE. A new version "
      "is\n"
      "    validated (loads, shapes, same inputs and outputs, fits), deployed beside the serving\n"
      "    pipeline when free nodes allow (else the gateway holds requests while the nodes "
      "switch)\n"
      "    and switched to atomically; a bad version is rejected with the reason.\n"
      "State: DIR/controller.json (default DIR .seifer), written atomically; a restarted "
      "controller\n"
      "adopts the running workers and gateway. Stopping the controller leaves them serving;\n"
      "`seifer down --dir DIR` stops everything. Links and compute are emulated as for `seifer "
      "up`\n"
      "unless the cluster file gives node addresses (--no-emulate, --emulate-compute override).\n"
      "Links that are not emulated are measured: after starting the workers and before the first\n"
      "plan, every pair's bandwidth and RTT (worker to worker, --probe-seconds each, default 0.3),\n"
      "and a returning node's pairs before the plan may change; plans use the measured values (a\n"
      "pair whose probe fails keeps the cluster file's), DIR/controller.json lists them under\n"
      "\"links\". Compute that is not emulated is measured too: each version's operators are\n"
      "profiled here for their relative costs, and every node times the largest stage of the plan\n"
      "that fits it (at the first plan, and when it returns); its speed in DIR/controller.json\n"
      "\"nodes\" replaces the file's gflops. --no-probe plans on the cluster file's links and\n"
      "speeds. Emulated links are never probed: they are paced at the cluster file's rates.\n"
      "--wrap PROGRAM: start each process as `PROGRAM NODE seifer ...` (e.g. a script that execs\n"
      "`ip netns exec` into the node's namespace). --listen: gateway HTTP (default "
      "127.0.0.1:8000).\n"
      "--timeout: the gateway's request timeout in seconds (default 30).\n"
      "\n"
      "usage: seifer controller --kubernetes [--kubeconfig FILE] [--context C] [--namespace NS]\n"
      "                         [--model SEIFERMODEL] [--dir DIR] [--secret FILE] [--image IMAGE]\n"
      "                         [--gateway HOST:PORT] [--gateway-url URL] [--worker-port N]\n"
      "                         [--identity ID] [--lease-ms MS] [--renew-ms MS] [--retry-ms MS]\n"
      "                         [--max-model-mb N] [options above but --cluster/--repo/--wrap]\n"
      "Runs as the Kubernetes operator (docs/kubernetes.md): the configuration is the pod's\n"
      "service account unless --kubeconfig; the namespace --namespace, else POD_NAMESPACE, else\n"
      "the configuration's. The nodes are the cluster's Nodes (status.allocatable.memory,\n"
      "Ready, unschedulable, the SeiferModel's spec.placement.nodeSelector; speed from the\n"
      "label seifer.dev/gflops, else 10 GFLOP/s per allocatable CPU, until measured; links 1000\n"
      "Mbit/s until probed). The model is the SeiferModel --model (default: the only one):\n"
      "spec.model.uri (file:// or http(s)://, at most --max-model-mb, default 4096), sha256\n"
      "checked, spec.model.version (a positive integer; a higher one rolls out). Each node's\n"
      "worker is a stage Deployment (image --image, else SEIFER_IMAGE, else seifer:0.1.0; host\n"
      "port --worker-port, default 7100); the gateway is the static Deployment and Service\n"
      "(--gateway, else SEIFER_GATEWAY, else seifer-gateway.NS.svc:7000). The cluster secret is\n"
      "read from --secret (default /etc/seifer/secret/secret). One replica leads through the\n"
      "Lease NS/seifer-controller (identity --identity, else POD_NAME, else HOST-PID;\n"
      "--lease-ms 15000, --renew-ms 10000, --retry-ms 2000); the others wait; a leader that\n"
      "loses the lease exits (status 1). The SeiferModel's status is written after every\n"
      "change.\n");
}

static int controller_run(int argc, char **argv) {
  sf_controller_opts o = {.dir = ".seifer",
                          .listen = "127.0.0.1:8000",
                          .heartbeat_ms = 500,
                          .misses = 3,
                          .codec = SF_CODEC_RAW,
                          .threads = 1,
                          .emulate = -1,
                          .emulate_compute = -1,
                          .replan_gain = 0.10,
                          .probe = -1,
                          .probe_seconds = 0.3,
                          .restart_ms = 1000,
                          .poll_ms = 500,
                          .algorithm = "optimal"};
  sf_k8s_ctl_opts ko = {0};
  int kubernetes = 0, k8s_flag = 0;
  long v;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *s;
    /* Kubernetes mode */
    const char **kstr = !strcmp(a, "--kubeconfig")    ? &ko.kubeconfig
                        : !strcmp(a, "--context")     ? &ko.context
                        : !strcmp(a, "--namespace")   ? &ko.ns
                        : !strcmp(a, "--identity")    ? &ko.identity
                        : !strcmp(a, "--image")       ? &ko.image
                        : !strcmp(a, "--gateway")     ? &ko.gateway
                        : !strcmp(a, "--gateway-url") ? &ko.gateway_url
                        : !strcmp(a, "--secret")      ? &ko.secret_file
                                                      : NULL;
    int *knum = !strcmp(a, "--lease-ms")      ? &ko.lease_ms
                : !strcmp(a, "--renew-ms")    ? &ko.renew_ms
                : !strcmp(a, "--retry-ms")    ? &ko.retry_ms
                : !strcmp(a, "--worker-port") ? &ko.worker_port
                                              : NULL;
    if (!strcmp(a, "--kubernetes")) {
      kubernetes = 1;
      continue;
    }
    if (kstr) {
      if (!(*kstr = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (!**kstr) {
        sf_cli_err("%s: empty value", a);
        return SF_EXIT_USAGE;
      }
      k8s_flag = 1;
      continue;
    }
    if (knum) {
      long lo = knum == &ko.worker_port ? 1 : 100, hi = knum == &ko.worker_port ? 65535 : 600000;
      if (!(s = sf_cli_value(argc, argv, &i)) || sf_cli_int(a, s, lo, hi, &v)) return SF_EXIT_USAGE;
      *knum = (int)v;
      k8s_flag = 1;
      continue;
    }
    if (!strcmp(a, "--max-model-mb")) {
      if (!(s = sf_cli_value(argc, argv, &i)) || sf_cli_int(a, s, 1, 1 << 20, &v))
        return SF_EXIT_USAGE;
      ko.max_model_bytes = (int64_t)v << 20;
      k8s_flag = 1;
      continue;
    }
    const char **str = !strcmp(a, "--cluster")     ? &o.cluster
                       : !strcmp(a, "--model")     ? &o.model
                       : !strcmp(a, "--repo")      ? &o.repo
                       : !strcmp(a, "--name")      ? &o.name
                       : !strcmp(a, "--dir")       ? &o.dir
                       : !strcmp(a, "--listen")    ? &o.listen
                       : !strcmp(a, "--wrap")      ? &o.wrap
                       : !strcmp(a, "--algorithm") ? &o.algorithm
                                                   : NULL;
    int *num = !strcmp(a, "--heartbeat-ms") ? &o.heartbeat_ms
               : !strcmp(a, "--misses")     ? &o.misses
               : !strcmp(a, "--threads")    ? &o.threads
               : !strcmp(a, "--restart-ms") ? &o.restart_ms
               : !strcmp(a, "--poll-ms")    ? &o.poll_ms
                                            : NULL;
    if (str) {
      if (!(*str = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (num) {
      long lo = num == &o.threads  ? 0
                : num == &o.misses ? 1
                                   : 10,
           hi = num == &o.threads ? 1024 : 600000;
      if (!(s = sf_cli_value(argc, argv, &i)) || sf_cli_int(a, s, lo, hi, &v)) return SF_EXIT_USAGE;
      *num = (int)v;
    } else if (!strcmp(a, "--codec")) {
      if (!(s = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if ((o.codec = sf__codec_parse(s)) < 0) {
        sf_cli_err("--codec: expected raw, fp16, lz4 or zfp, got '%s'", s);
        return SF_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--replan-gain")) {
      char *end;
      if (!(s = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      o.replan_gain = strtod(s, &end);
      if (*end || end == s || !(o.replan_gain >= 0 && o.replan_gain <= 100)) {
        sf_cli_err("--replan-gain: expected a number in [0, 100], got '%s'", s);
        return SF_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--timeout")) {
      if (!(o.gateway_timeout = sf_cli_value(argc, argv, &i)) ||
          sf_cli_int(a, o.gateway_timeout, 1, 86400, &v))
        return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--probe-seconds")) {
      char *end;
      if (!(s = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      o.probe_seconds = strtod(s, &end);
      if (*end || end == s ||
          !(o.probe_seconds >= SF_PROBE_MIN_SECONDS && o.probe_seconds <= SF_PROBE_MAX_SECONDS)) {
        sf_cli_err("--probe-seconds: expected a number in [%g, %g], got '%s'",
                   SF_PROBE_MIN_SECONDS, SF_PROBE_MAX_SECONDS, s);
        return SF_EXIT_USAGE;
      }
    } else if (!strcmp(a, "--probe")) {
      o.probe = 1;
    } else if (!strcmp(a, "--no-probe")) {
      o.probe = 0;
    } else if (!strcmp(a, "--no-emulate")) {
      o.emulate = 0;
    } else if (!strcmp(a, "--emulate-compute")) {
      o.emulate_compute = 1;
    } else {
      sf_cli_err("controller: unknown argument '%s'", a);
      return SF_EXIT_USAGE;
    }
  }
  if (k8s_flag && !kubernetes) {
    sf_cli_err("controller: --kubeconfig, --context, --namespace, --identity, --image, "
               "--gateway, --gateway-url, --secret, --lease-ms, --renew-ms, --retry-ms, "
               "--worker-port and --max-model-mb need --kubernetes");
    return SF_EXIT_USAGE;
  }
  if (kubernetes) {
    if (o.cluster || o.repo || o.wrap || o.name) {
      sf_cli_err("controller: --kubernetes takes the nodes and the model from the API: "
                 "no --cluster, --repo, --wrap or --name");
      return SF_EXIT_USAGE;
    }
    ko.model = o.model; /* the SeiferModel's name */
    o.model = NULL;
    if (ko.model && (strlen(ko.model) > 40 || !sf__k8s_dns_label(ko.model))) {
      sf_cli_err("--model: expected a SeiferModel name (a DNS-1123 label, at most 40 characters), "
                 "got '%s'",
                 ko.model);
      return SF_EXIT_USAGE;
    }
    if (ko.kubeconfig && access(ko.kubeconfig, R_OK) < 0) {
      sf_cli_err("--kubeconfig: %s: cannot read it", ko.kubeconfig);
      return SF_EXIT_FAIL;
    }
    if (ko.context && !ko.kubeconfig) {
      sf_cli_err("--context needs --kubeconfig");
      return SF_EXIT_USAGE;
    }
    int lease = ko.lease_ms ? ko.lease_ms : 15000, renew = ko.renew_ms ? ko.renew_ms : 10000,
        retry = ko.retry_ms ? ko.retry_ms : 2000;
    if (!(retry < renew && renew < lease)) {
      sf_cli_err("controller: need --retry-ms (%d) < --renew-ms (%d) < --lease-ms (%d)", retry,
                 renew, lease);
      return SF_EXIT_USAGE;
    }
    o.kubernetes = &ko;
  } else if (!o.cluster || !o.model == !o.repo) {
    sf_cli_err("controller: need --cluster CLUSTER.json and one of --model MODEL.onnx, --repo DIR");
    return SF_EXIT_USAGE;
  }
  if (o.name && (!o.name[0] || strlen(o.name) > 255 || strchr(o.name, '/') || o.name[0] == '.')) {
    sf_cli_err("--name: must be 1..255 characters without '/', not starting with '.'");
    return SF_EXIT_USAGE;
  }
  if (o.model && access(o.model, R_OK) < 0) {
    sf_cli_err("--model: %s: cannot read it", o.model);
    return SF_EXIT_FAIL;
  }
  sf_err err = {0};
  sf__serve_signals(&stop_flag);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr1;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  o.rescan = &rescan_flag;
  if (sf__controller_run(&o, &stop_flag, &err) < 0) {
    sf_cli_err("controller: %s", err.msg);
    return SF_EXIT_FAIL;
  }
  return SF_EXIT_OK;
}

const sf_cmd sf_cmd_controller = {"controller",
                                  "keep a model serving through node failures and new versions",
                                  controller_run, controller_usage};

/* ---- deploy ------------------------------------------------------------------------------------
 */
static void deploy_usage(void) {
  printf(
      "usage: seifer deploy --model MODEL.onnx --version V [--dir DIR] [--timeout S] [--no-wait]\n"
      "Adds MODEL as version V (a positive integer, above the serving one) of the model that the\n"
      "controller running on DIR (default .seifer) serves: the file is copied atomically into its\n"
      "repository (REPO/NAME/V/model.onnx), then the command waits (default 120 s) until the\n"
      "controller serves it (exit 0) or rejects it (exit 1, with the reason).\n");
}

/* Read DIR/controller.json. */
static cJSON *read_state(const char *dir, sf_err *err) {
  char path[4200];
  snprintf(path, sizeof path, "%s/controller.json", dir);
  void *txt = NULL;
  size_t len = 0;
  if (sf__read_file(path, 16 << 20, &txt, &len, err) < 0) return NULL;
  cJSON *j = cJSON_ParseWithLength(txt, len);
  free(txt);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    sf__errf(err, SF_EFORMAT, "%s: not a JSON object", path);
    return NULL;
  }
  return j;
}

static int deploy_run(int argc, char **argv) {
  const char *model = NULL, *dir = ".seifer", *ver = NULL;
  long version = 0, timeout_s = 120, v;
  int wait = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *s;
    if (!strcmp(a, "--model")) {
      if (!(model = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--dir")) {
      if (!(dir = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--version")) {
      if (!(ver = sf_cli_value(argc, argv, &i)) || sf_cli_int(a, ver, 1, 999999999, &version))
        return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--timeout")) {
      if (!(s = sf_cli_value(argc, argv, &i)) || sf_cli_int(a, s, 1, 86400, &v))
        return SF_EXIT_USAGE;
      timeout_s = v;
    } else if (!strcmp(a, "--no-wait")) {
      wait = 0;
    } else {
      sf_cli_err("deploy: unknown argument '%s'", a);
      return SF_EXIT_USAGE;
    }
  }
  if (!model || !ver) {
    sf_cli_err("deploy: need --model MODEL.onnx and --version V");
    return SF_EXIT_USAGE;
  }
  sf_err err = {0};
  cJSON *st = read_state(dir, &err);
  if (!st) {
    sf_cli_err("deploy: %s (is a controller running with --dir %s?)", err.msg, dir);
    return SF_EXIT_FAIL;
  }
  cJSON *repo = cJSON_GetObjectItem(st, "repo"), *name = cJSON_GetObjectItem(st, "model");
  cJSON *cpid = cJSON_GetObjectItem(st, "controller_pid");
  pid_t controller = cJSON_IsNumber(cpid) && cpid->valuedouble > 1 && cpid->valuedouble < 4194304
                         ? (pid_t)cpid->valuedouble
                         : 0;
  int rc = SF_EXIT_FAIL;
  char repo_s[4096], name_s[256];
  if (!cJSON_IsString(repo) || !cJSON_IsString(name) ||
      strlen(repo->valuestring) >= sizeof repo_s || strlen(name->valuestring) >= sizeof name_s) {
    sf_cli_err("deploy: %s/controller.json names no repository and model", dir);
    cJSON_Delete(st);
    return SF_EXIT_FAIL;
  }
  snprintf(repo_s, sizeof repo_s, "%s", repo->valuestring);
  snprintf(name_s, sizeof name_s, "%s", name->valuestring);
  cJSON_Delete(st);
  if (sf__repo_add(repo_s, name_s, version, model, &err) < 0) {
    sf_cli_err("deploy: %s", err.msg);
    return SF_EXIT_FAIL;
  }
  /* the controller would find it at its next poll; tell it now */
  if (controller > 0 && sf__process_is(controller, "controller")) kill(controller, SIGUSR1);
  printf("seifer deploy: %s is version %ld of '%s' in %s\n", model, version, name_s, repo_s);
  fflush(stdout);
  if (!wait) return SF_EXIT_OK;
  double t0 = sf__now();
  while (sf__now() - t0 < timeout_s) {
    usleep(100000);
    if (!(st = read_state(dir, NULL))) continue;
    cJSON *cur = cJSON_GetObjectItem(st, "version"), *e;
    if (cJSON_IsString(cur) && atol(cur->valuestring) == version) {
      printf("seifer deploy: version %ld serving (%.1f s)\n", version, sf__now() - t0);
      rc = SF_EXIT_OK;
    }
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(st, "rejected")) {
      cJSON *rv = cJSON_GetObjectItem(e, "version"), *why = cJSON_GetObjectItem(e, "reason");
      if (rc != SF_EXIT_OK && cJSON_IsString(rv) && atol(rv->valuestring) == version &&
          cJSON_IsString(why)) {
        sf_cli_err("deploy: version %ld rejected: %s", version, why->valuestring);
        cJSON_Delete(st);
        return SF_EXIT_FAIL;
      }
    }
    cJSON_Delete(st);
    if (rc == SF_EXIT_OK) return rc;
  }
  sf_cli_err("deploy: version %ld not serving after %ld s (see %s/controller.json)", version,
             timeout_s, dir);
  return SF_EXIT_FAIL;
}

const sf_cmd sf_cmd_deploy = {"deploy",
                              "add a model version to a running controller and wait for it",
                              deploy_run, deploy_usage};
