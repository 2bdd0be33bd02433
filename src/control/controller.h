/* The controller's state, shared by its loop (controller.c) and its persistence (state.c). */
#ifndef SF_CONTROLLER_H
#define SF_CONTROLLER_H

#include <limits.h>

#include "control/control.h"

#define CTL_MAX_NODES 256
#define CTL_MAX_STAGES 64
#define CTL_MAX_EVENTS 40
#define CTL_MAX_REJECTED 32
#define CTL_MAX_RECORDS 64

/* One cluster node: its worker process and the control link to it. */
typedef struct cnode {
  int up;        /* control link open and heartbeats arriving */
  int have_proc; /* proc describes a process the driver started */
  sf_proc proc;
  sf_conn *c;
  double last_seen; /* sf__now() of the last frame on the link */
  double retry_at;  /* next attempt to start or reconnect (while down) */
  double backoff_s; /* current restart / reconnect back-off */
  double up_since;
  int restarts;
  char why[256]; /* why it is down */
  sf_wstatus st; /* latest status */
  int have_st;
  char listen[128]; /* the node's "address" in the cluster file ("" = the driver's choice) */
} cnode;

/* A deployed pipeline: stage i runs operators between cut cuts[i] and cuts[i + 1] on nodes[i]. */
typedef struct cdeploy {
  int active;  /* it serves (the gateway has it) */
  uint32_t id; /* pipeline id at the gateway */
  char version[32];
  int n;
  int cuts[CTL_MAX_STAGES + 1];
  int nodes[CTL_MAX_STAGES];
  double compute_s[CTL_MAX_STAGES];
  char digest[CTL_MAX_STAGES][65];
  char dir[PATH_MAX]; /* stage files */
  double bottleneck_s, throughput;
} cdeploy;

/* A model version, analysed. */
typedef struct cversion {
  int open;
  char version[32];
  int64_t size, mtime_ns; /* of its file when opened */
  sf_dmodel dm;
  cJSON *in, *out; /* its inputs and outputs as the gateway lists them */
} cversion;

typedef struct crejected {
  char version[32];
  int64_t size, mtime_ns;
  char reason[600];
  double t; /* unix time */
} crejected;

typedef struct cevent {
  double t; /* unix time */
  char text[400];
} cevent;

/* A recovery (failover) or a rollout, for people and benchmarks (unix times). */
typedef struct crecord {
  char kind[16]; /* "failover", "rollout", "replan", "unavailable" */
  char what[96]; /* node(s) or version */
  double t_start, t_done;
  uint32_t pipeline;
  int moved;     /* stages shipped to another node */
  char mode[16]; /* rollout: "beside" or "switch" */
} crecord;

typedef struct ctl {
  const sf_controller_opts *o;
  volatile sig_atomic_t *stop;
  char name[256], repo[PATH_MAX], dir[PATH_MAX], self[PATH_MAX], state_path[PATH_MAX + 32];
  sf_cluster cl;
  int have_cl;
  char (*addr)[128]; /* cluster file addresses per node */
  sf_secret sec;
  sf_driver drv;
  const sf_solver *solver;
  int emulate, emulate_compute, hb_ms;
  cnode nodes[CTL_MAX_NODES];
  /* gateway */
  sf_proc gw;
  int gw_have, gw_up;
  sf_conn *gwc;
  double gw_last, gw_ping_at, gw_retry_at, gw_backoff_s;
  char gw_sha[65]; /* SHA-256 of the CONFIG the gateway reports */
  /* model and pipeline */
  cversion cur;    /* the serving version */
  cdeploy dep;     /* the deployed pipeline */
  uint32_t gen;    /* last pipeline id used */
  char status[32]; /* "starting", "serving", "unavailable" */
  char reason[600];
  int health_changed; /* a node came back: the plan may gain */
  double failover_t0; /* unix time a stage node was first seen down (0 none) */
  char failover_what[96];
  double next_try_at; /* earliest next failover / redeploy attempt */
  /* repository */
  double next_scan;
  sf_repo_version seen[SF_REPO_MAX_VERSIONS];
  int n_seen;
  crejected rej[CTL_MAX_REJECTED];
  int n_rej;
  cevent ev[CTL_MAX_EVENTS];
  int n_ev; /* total ever; ring */
  crecord rec[CTL_MAX_RECORDS];
  int n_rec; /* total ever; ring */
  int dirty; /* state to save */
  /* link probes: the cluster's links as measured (C->cl.bw / C->cl.rtt hold what plans use) */
  int probe;                /* links are probed */
  int probed;               /* the start's probe ran: returning nodes get their pairs probed */
  char probe_note[160];     /* how the links were obtained, for the state file */
  double *file_bw, *file_rtt;    /* n*n: the cluster file's values (bytes/s, s) */
  double *meas_mbps, *meas_rtt;  /* n*n: last measurement (mbps 0 = none, rtt -1 = none) */
  double *meas_t;                /* n*n: unix time of it (0 = never measured) */
  unsigned char *probe_queued;   /* n*n: pairs queued for a re-probe (a returning node's) */
  unsigned char *probe_one;      /* n*n scratch mask */
  /* compute probes: each node's speed measured on a stage of the model (C->cl.nodes[i].flops_per_s
   * holds what plans use) */
  int cprobe;                 /* compute speeds are probed */
  double *file_speed;         /* n: the cluster file's flops/s */
  double *speed_t;            /* n: unix time of the last measurement (0 = never) */
  double *speed_stage_s;      /* n: measured seconds per run of the stage timed */
  double *speed_pred_s;       /* n: what the plan predicted for it before the measurement */
  char (*speed_stage)[64];    /* n: which stage ("v1 ops 0-57") */
  unsigned char *speed_queued; /* n: new or returning nodes to measure */
  /* stalls: the gateway reports the age of the serving pipeline's oldest unanswered request */
  double gw_oldest_s;      /* of C->dep.id (0 none) */
  double stall_next_check; /* sf__now() before which no stall is acted on again */
  double *link_fail_t;     /* n*n: unix time a link was found broken (0 = fine) */
  double *link_retry_at;   /* n*n: sf__now() of its next check */
  double *link_backoff_s;  /* n*n */
  struct k8s_ctl *k8s;           /* Kubernetes mode (k8s_ctl.c); NULL otherwise */
} ctl;

/* state.c */
int sf__ctl_state_save(ctl *C, sf_err *err);
/* Read DIR/controller.json into C (pipeline, generation, rejected versions, records); 0 when
 * there is none, 1 when restored. *pid gets the controller pid recorded there. */
int sf__ctl_state_load(ctl *C, long *pid, sf_err *err);

double sf__wall(void);

/* controller.c, for the Kubernetes mode (k8s_ctl.c) */
void sf__ctl_node_down(ctl *C, int idx, const char *why);
/* Close node idx's link and open it again (status read), up to timeout_ms. */
int sf__ctl_node_reconnect(ctl *C, int idx, int timeout_ms, sf_err *err);
void sf__ctl_event(ctl *C, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
