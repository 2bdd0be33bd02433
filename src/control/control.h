/* Control plane: everything that puts a model onto workers and a gateway and keeps it there.
 *
 *   links    (ctl.c)     the controller's side of the worker and gateway links: ship a stage,
 *                        send a configuration, wait for the answer;
 *   deploy   (deploy.c)  the steps `seifer up` and the controller share: analyse a model
 *                        version, split a plan into stage files, the CONFIG documents of a
 *                        worker and of the gateway;
 *   drivers  (local.c)   where processes run, behind one vtable (sf_driver): the local driver
 *                        starts them as child processes of this machine (optionally through a
 *                        wrapper such as `ip netns exec`); a Kubernetes driver fits the same ops;
 *   repo     (repo.c)    a model repository in Triton's layout (NAME/VERSION/model.onnx);
 *   controller (controller.c, state.c) the reconcile loop: health from heartbeats and link
 *                        errors, re-planning around dead nodes, model versions, state
 *                        persisted atomically and adopted after a restart.
 *
 *   sf_conn *c;
 *   sf__ctl_connect(&c, "127.0.0.1:7001", &secret, &err);    // authenticates as "controller"
 *   sf__ctl_stage(c, bytes, len, 120000, &info_json, &err);   // digest first, bytes if not cached
 *   sf__ctl_config(c, "{\"next\": ...}", 10000, NULL, &err);
 */
#ifndef SF_CONTROL_H
#define SF_CONTROL_H

#include <signal.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "net/net.h"
#include "partition/partition.h"
#include "plan/plan.h"
#include "util/util.h"

/* ---- links ---------------------------------------------------------------------------------- */
int sf__ctl_connect(sf_conn **out, const char *addr, const sf_secret *s, sf_err *err);
/* The same with a bound on connect + authentication (ms). */
int sf__ctl_connect_timeout(sf_conn **out, const char *addr, const sf_secret *s, int timeout_ms,
                            sf_err *err);
/* Ship a stage model: sends its digest alone first (a worker that has it cached loads it
 * without the transfer), then the bytes if the worker asks. *info (may be NULL) gets the
 * worker's STAGE_OK JSON (inputs, outputs, arena and weight bytes, peak RSS); free() it. */
int sf__ctl_stage(sf_conn *c, const void *model, size_t len, int timeout_ms, char **info, sf_err *err);
/* Send a CONFIG document and wait for the acknowledgement (heartbeats in between are skipped).
 * *reply (may be NULL) gets the acknowledgement payload; free() it. */
int sf__ctl_config(sf_conn *c, const char *json, int timeout_ms, char **reply, sf_err *err);
/* Ask for a status (HEARTBEAT) and wait for it; *reply gets the JSON; free() it. */
int sf__ctl_status(sf_conn *c, int timeout_ms, char **reply, sf_err *err);
/* Time the worker's loaded stage (PROBE {"compute"}: docs/probe.md): at least 3 runs, up to
 * iters or seconds. */
typedef struct sf_compute_probe {
  int runs;
  double mean_s, median_s; /* per run */
  char digest[65];         /* the stage timed */
} sf_compute_probe;
int sf__ctl_compute_probe(sf_conn *c, double iters, double seconds, int timeout_ms,
                          sf_compute_probe *out, sf_err *err);

/* ---- deployment pieces ---------------------------------------------------------------------- */
/* One model version analysed for planning: loaded, shapes inferred, candidate cuts and their
 * costs, transfer sizes under the codec (measured on sample, or a synthetic input). */
typedef struct sf_dmodel {
  char path[4096];
  sf_model *m;
  sf_partition pa;
  int have_pa;
  int codec;
} sf_dmodel;
/* sample: optional .npy for the first input (codec sizes), NULL = synthetic. */
int sf__dmodel_open(sf_dmodel *d, const char *path, int codec, const char *sample, sf_err *err);
void sf__dmodel_deinit(sf_dmodel *d);
/* The model's inputs (outputs != 0: outputs) as the gateway's CONFIG lists them:
 * [{"name", "dtype", "shape"}]. NULL when out of memory. */
cJSON *sf__dmodel_io(const sf_dmodel *d, int outputs);
/* Model name from a path: the file name without ".onnx". */
void sf__model_name_from_path(const char *path, char *out, size_t cap);

/* Split plan p of d into dir (created if missing): stage-1.onnx .. stage-k.onnx and a manifest
 * naming cl's nodes. digests (may be NULL) gets the SHA-256 hex of each stage file. */
int sf__deploy_split(const sf_dmodel *d, const char *model_name, const sf_cluster *cl,
                     const sf_plan *p, const char *dir, char (*digests)[65], sf_err *err);
/* Read a stage file and ship it (digest first). */
int sf__deploy_ship(sf_conn *c, const char *stage_path, int timeout_ms, char **info, sf_err *err);

/* A worker's place in a pipeline: its CONFIG. */
typedef struct sf_wcfg {
  int stage;          /* 0-based index in its pipeline */
  uint32_t pipeline;
  char next[256];     /* host:port of the next stage, or of the gateway's data port */
  int last;
  int codec;
  double rate_bytes_per_s; /* emulated link to next (0 = unpaced) */
  double compute_s;        /* emulated compute time (0 = full speed) */
} sf_wcfg;
/* The CONFIG document (malloc'ed; NULL when out of memory). */
char *sf__wcfg_json(const sf_wcfg *c);
/* What a worker reports in its status (heartbeat / CONFIG acknowledgement). */
typedef struct sf_wstatus {
  char node[64];
  char digest[65];    /* stage loaded, "" none */
  sf_wcfg cfg;
  int draining;
} sf_wstatus;
int sf__wstatus_parse(const char *json, size_t len, sf_wstatus *st, sf_err *err);
/* 1 when the status shows exactly configuration c. */
int sf__wcfg_same(const sf_wcfg *c, const sf_wstatus *st);

/* One pipeline as the gateway's CONFIG lists it. */
typedef struct sf_gw_pipe {
  uint32_t id;
  int codec;
  double rate_bytes_per_s;       /* emulated gateway -> first stage link */
  int n_stages;
  const char *const *addrs;      /* n_stages worker addresses; addrs[0] is the first stage */
  const char *const *nodes;      /* n_stages node names */
} sf_gw_pipe;
/* The gateway's CONFIG (malloc'ed): model, version, inputs, outputs (copied), pipelines, and
 * reason (may be NULL) when there is no pipeline because the model cannot be served. */
char *sf__gateway_config_json(const char *model, const char *version, const cJSON *inputs,
                              const cJSON *outputs, const sf_gw_pipe *pipes, int n,
                              const char *reason);

/* Emulated bandwidth of the link from -> to (bytes/s; 0 for the same node or to < 0). */
double sf__emulated_rate(const sf_cluster *cl, int from, int to);
/* The "address" (host:port) of every node in the cluster file text, "" where absent. */
int sf__cluster_addresses(const void *txt, size_t len, const sf_cluster *cl, char (*addrs)[128],
                          sf_err *err);

/* mkdir -p (mode 0700). 0 or -1 with errno. */
int sf__mkdirs(const char *path);
/* Write path atomically: a temporary file beside it, fsync, rename. */
int sf__write_file_atomic(const char *path, const void *data, size_t len, sf_err *err);
/* Absolute path of the running seifer binary. */
int sf__self_exe(char *out, size_t cap, sf_err *err);

/* ---- local processes ------------------------------------------------------------------------ */
/* Start `self args...` detached (own session, stdin /dev/null, stdout+stderr appended to log).
 * Returns the pid or a negative error. */
pid_t sf__spawn(const char *self, char *const args[], const char *log_path, sf_err *err);
/* Wait until path exists and holds a line (a port file), up to timeout_ms; fails early when
 * pid exits. The first integers of the line go to ports[0..n-1]. */
int sf__wait_port_file(const char *path, pid_t pid, int timeout_ms, int *ports, int n, sf_err *err);
/* SIGTERM, wait up to grace_ms, then SIGKILL. 0 when the process is gone. */
int sf__stop_process(pid_t pid, int grace_ms);
/* 1 when pid runs a seifer process whose command line holds " role " (e.g. "worker"). */
int sf__process_is(pid_t pid, const char *role);

typedef struct sf_local_opts {
  const char *self;            /* the seifer binary */
  const char *dir;             /* DIR/secret, DIR/run (port and process files), DIR/logs, DIR/cache */
  const char *wrap;            /* NULL, or a program: processes start as `wrap NODE self ...`
                                  (e.g. a script that execs `ip netns exec NS "$@"`) */
  int threads;                 /* runtime threads per worker */
  int heartbeat_ms;            /* worker heartbeat interval (0 = the worker's default) */
  const char *gateway_timeout; /* gateway request timeout in seconds (NULL = its default) */
} sf_local_opts;
/* Start a worker for node listening on listen ("" = 127.0.0.1:0); *addr gets host:port. */
int sf__local_start_worker(const sf_local_opts *o, const char *node, const char *listen, pid_t *pid,
                           char *addr, size_t addr_cap, sf_err *err);
/* Start the gateway (HTTP on http_listen, data port on data_listen, "" = 127.0.0.1:0) under
 * wrapper node name wrap_node (may be NULL); *data gets the data port's host:port, *url the
 * HTTP base URL. */
int sf__local_start_gateway(const sf_local_opts *o, const char *wrap_node, const char *http_listen,
                            const char *data_listen, pid_t *pid, char *data, size_t data_cap,
                            char *url, size_t url_cap, sf_err *err);

/* ---- drivers: where the processes of a deployment run ------------------------------------------ */
enum { SF_PROC_WORKER = 0, SF_PROC_GATEWAY = 1 };

typedef struct sf_proc {
  int role;           /* SF_PROC_* */
  char node[64];      /* worker: its cluster node; gateway: the node it runs beside ("" none) */
  char listen[128];   /* requested address: worker data/control port, gateway HTTP ("" = default) */
  char listen2[128];  /* gateway: requested data port address ("" = default) */
  long pid;           /* local driver: process id; 0 when the driver has none */
  char addr[128];     /* after start: worker host:port, gateway data host:port */
  char url[300];      /* after start: gateway HTTP base URL */
} sf_proc;

/* A driver: a struct of operations plus its context. start fills pid/addr/url; stop ends the
 * process (graceful first); alive says whether it still runs (1) or is gone (0); list returns
 * the processes this driver started that still run (a restarted controller adopts them). */
typedef struct sf_driver_ops {
  const char *name;
  int (*start)(void *ctx, sf_proc *p, sf_err *err);
  int (*stop)(void *ctx, const sf_proc *p, int grace_ms);
  int (*alive)(void *ctx, const sf_proc *p);
  int (*list)(void *ctx, sf_proc *out, int max);
  void (*free)(void *ctx);
} sf_driver_ops;

typedef struct sf_driver {
  const sf_driver_ops *ops;
  void *ctx;
} sf_driver;

/* The local driver over o (copied; the strings must outlive the driver). Records every process
 * it starts in DIR/run/<role>-<node>.proc (JSON) for list(). */
int sf__driver_local(sf_driver *d, const sf_local_opts *o, sf_err *err);
void sf__driver_free(sf_driver *d);

/* ---- model repository (Triton layout: REPO/NAME/VERSION/model.onnx) ----------------------------- */
#define SF_REPO_MAX_VERSIONS 256
typedef struct sf_repo_version {
  long version;       /* positive integer */
  char path[4096];    /* .../model.onnx */
  int64_t size;
  int64_t mtime_ns;
} sf_repo_version;
/* Versions of model name in repo, highest first (directories that are positive integers and hold
 * model.onnx); returns the count (0 when none), negative on error. */
int sf__repo_scan(const char *repo, const char *name, sf_repo_version *out, int max, sf_err *err);
/* The only model directory of repo (for a repository of one model), or an error. */
int sf__repo_only_model(const char *repo, char *name, size_t cap, sf_err *err);
/* Copy file into repo/name/version/model.onnx atomically (a temporary directory renamed into
 * place); refuses an existing version. */
int sf__repo_add(const char *repo, const char *name, long version, const char *file, sf_err *err);

/* ---- the controller ------------------------------------------------------------------------------ */
typedef struct sf_controller_opts {
  const char *cluster;     /* cluster file: nodes (memory, speed, optional "address"), links */
  const char *model;       /* a model file (copied into DIR/repo/NAME/1), or */
  const char *repo;        /* a model repository to watch */
  const char *name;        /* model name (default: from the file, or the repo's only model) */
  const char *dir;         /* state, logs, stages, run files */
  const char *listen;      /* gateway HTTP address */
  const char *wrap;        /* local driver wrapper (see sf_local_opts) */
  const char *algorithm;   /* planner */
  const char *gateway_timeout;
  int heartbeat_ms;        /* worker heartbeat interval (default 500) */
  int misses;              /* heartbeats missed before a node counts as failed (default 3) */
  int codec;
  int threads;
  int emulate;             /* -1 auto: pace links and pad compute unless nodes have addresses */
  int emulate_compute;     /* -1: as emulate */
  double replan_gain;      /* a returning node changes the plan only above this gain (0.10) */
  int probe;               /* measure the links between the workers (bandwidth, RTT) at start and
                              the pairs of a returning node, and plan on them: -1 auto (when the
                              links are real, i.e. not emulated), 0 off, 1 on (emulated links are
                              never probed: they are paced at the cluster file's rates) */
  double probe_seconds;    /* bulk phase per pair (default 0.3) */
  int restart_ms;          /* first back-off before a dead worker process is restarted */
  int poll_ms;             /* repository poll interval (default 500) */
  volatile sig_atomic_t *rescan; /* optional: set (e.g. by SIGUSR1 from `seifer deploy`) to scan
                                    the repository at once, trusting files as complete */
  const struct sf_k8s_ctl_opts *kubernetes; /* NULL: the cluster file and the local driver; else
                                              nodes, model and workers from Kubernetes
                                              (control/k8s_ctl.h) */
} sf_controller_opts;

/* Run until *stop: start or adopt the processes, deploy, keep the pipeline serving. Leaves the
 * processes running on exit (a new controller adopts them; `seifer down` stops everything). */
int sf__controller_run(const sf_controller_opts *o, volatile sig_atomic_t *stop, sf_err *err);

#endif
