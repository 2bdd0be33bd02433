/* seifer worker / seifer gateway: the two long-running serving processes. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "serve/serve.h"

static volatile sig_atomic_t stop_flag;

/* Load the cluster secret and install the signal handlers (both commands start this way). */
static int load_secret(const char *path, sf_secret *sec) {
  sf_err err = {0};
  if (sf__secret_load(sec, path, &err) < 0) {
    sf_cli_err("%s", err.msg);
    return -1;
  }
  sf__serve_signals(&stop_flag);
  return 0;
}

static int finish(const char *what, int rc, const sf_err *err) {
  if (rc < 0) {
    sf_cli_err("%s: %s", what, err->msg);
    return SF_EXIT_FAIL;
  }
  return SF_EXIT_OK;
}

/* ---- worker ---------------------------------------------------------------------------------- */
static void worker_usage(void) {
  printf(
      "usage: seifer worker --listen HOST:PORT --secret FILE [--name NODE] [--cache DIR]\n"
      "                     [--threads N] [--queue N] [--heartbeat-ms MS] [--port-file FILE]\n"
      "Serves one pipeline stage. The controller (or `seifer up`) connects, proves the cluster\n"
      "secret, ships the stage model (cached in DIR by digest, default ./seifer-cache) and the\n"
      "next hop; then requests flow in from the previous stage and out to the next. SIGTERM\n"
      "drains: queued requests are finished and sent before the process exits. Port 0 picks a\n"
      "free port (written to --port-file).\n");
}

static int worker_run(int argc, char **argv) {
  sf_worker_opts o = {.cache_dir = "seifer-cache", .name = "worker", .queue = 2, .heartbeat_ms = 500,
                      .max_model_bytes = (int64_t)2 << 30};
  const char *secret_path = NULL;
  long v;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--listen")) {
      if (!(o.listen = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--secret")) {
      if (!(secret_path = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--name")) {
      if (!(o.name = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--cache")) {
      if (!(o.cache_dir = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--port-file")) {
      if (!(o.port_file = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--threads")) {
      const char *s = sf_cli_value(argc, argv, &i);
      if (!s || sf_cli_int(a, s, 0, 1024, &v)) return SF_EXIT_USAGE;
      o.threads = (int)v;
    } else if (!strcmp(a, "--queue")) {
      const char *s = sf_cli_value(argc, argv, &i);
      if (!s || sf_cli_int(a, s, 1, 1024, &v)) return SF_EXIT_USAGE;
      o.queue = (int)v;
    } else if (!strcmp(a, "--heartbeat-ms")) {
      const char *s = sf_cli_value(argc, argv, &i);
      if (!s || sf_cli_int(a, s, 10, 600000, &v)) return SF_EXIT_USAGE;
      o.heartbeat_ms = (int)v;
    } else {
      sf_cli_err("worker: unknown argument '%s'", a);
      return SF_EXIT_USAGE;
    }
  }
  if (!o.listen || !secret_path) {
    sf_cli_err("worker: need --listen HOST:PORT and --secret FILE");
    return SF_EXIT_USAGE;
  }
  sf_secret sec;
  sf_err err = {0};
  if (load_secret(secret_path, &sec) < 0) return SF_EXIT_FAIL;
  o.secret = &sec;
  return finish("worker", sf__worker_run(&o, &stop_flag, &err), &err);
}

const sf_cmd sf_cmd_worker = {"worker", "serve one pipeline stage (started by up / the controller)",
                              worker_run, worker_usage};

/* ---- gateway --------------------------------------------------------------------------------- */
static void gateway_usage(void) {
  printf(
      "usage: seifer gateway --listen HOST:PORT --data HOST:PORT --secret FILE [--timeout S]\n"
      "                      [--max-queue N] [--max-body MB] [--port-file FILE]\n"
      "The KServe v2 HTTP API (GET /v2/health/live, /v2/health/ready, /v2/models/NAME,\n"
      "/v2/models/NAME/ready, POST /v2/models/NAME/infer, GET /metrics) in front of the pipelines.\n"
      "--data is where the controller configures it and the last stages send results.\n");
}

static int gateway_run(int argc, char **argv) {
  sf_gateway_opts o = {.timeout_ms = 30000, .max_queue = 256, .max_body = (int64_t)256 << 20};
  const char *secret_path = NULL;
  long v;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--listen")) {
      if (!(o.http_listen = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--data")) {
      if (!(o.data_listen = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--secret")) {
      if (!(secret_path = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--port-file")) {
      if (!(o.port_file = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(a, "--timeout")) {
      const char *s = sf_cli_value(argc, argv, &i);
      if (!s || sf_cli_int(a, s, 1, 86400, &v)) return SF_EXIT_USAGE;
      o.timeout_ms = (int)v * 1000;
    } else if (!strcmp(a, "--max-queue")) {
      const char *s = sf_cli_value(argc, argv, &i);
      if (!s || sf_cli_int(a, s, 1, 1000000, &v)) return SF_EXIT_USAGE;
      o.max_queue = (int)v;
    } else if (!strcmp(a, "--max-body")) {
      const char *s = sf_cli_value(argc, argv, &i);
      if (!s || sf_cli_int(a, s, 1, 4096, &v)) return SF_EXIT_USAGE;
      o.max_body = (int64_t)v << 20;
    } else {
      sf_cli_err("gateway: unknown argument '%s'", a);
      return SF_EXIT_USAGE;
    }
  }
  if (!o.http_listen || !o.data_listen || !secret_path) {
    sf_cli_err("gateway: need --listen HOST:PORT, --data HOST:PORT and --secret FILE");
    return SF_EXIT_USAGE;
  }
  sf_secret sec;
  sf_err err = {0};
  if (load_secret(secret_path, &sec) < 0) return SF_EXIT_FAIL;
  o.secret = &sec;
  return finish("gateway", sf__gateway_run(&o, &stop_flag, &err), &err);
}

const sf_cmd sf_cmd_gateway = {"gateway", "serve the KServe v2 HTTP API in front of the pipelines",
                               gateway_run, gateway_usage};
