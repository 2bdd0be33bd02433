/* Control plane pieces: the controller's side of the links to workers and the gateway (ship a
 * stage, send a configuration, wait for the answer), and the local driver (stages as child
 * processes of this machine).
 *
 *   sf_conn *c;
 *   sf__ctl_connect(&c, "127.0.0.1:7001", &secret, &err);    // authenticates as "controller"
 *   sf__ctl_stage(c, bytes, len, &info_json, &err);           // digest first, bytes if not cached
 *   sf__ctl_config(c, "{\"next\": ...}", NULL, &err);
 */
#ifndef SF_CONTROL_H
#define SF_CONTROL_H

#include <sys/types.h>

#include "net/net.h"
#include "util/util.h"

int sf__ctl_connect(sf_conn **out, const char *addr, const sf_secret *s, sf_err *err);
/* Ship a stage model: sends its digest alone first (a worker that has it cached loads it
 * without the transfer), then the bytes if the worker asks. *info (may be NULL) gets the
 * worker's STAGE_OK JSON (inputs, outputs, arena and weight bytes, peak RSS); free() it. */
int sf__ctl_stage(sf_conn *c, const void *model, size_t len, int timeout_ms, char **info, sf_err *err);
/* Send a CONFIG document and wait for the acknowledgement (heartbeats in between are skipped).
 * *reply (may be NULL) gets the acknowledgement payload; free() it. */
int sf__ctl_config(sf_conn *c, const char *json, int timeout_ms, char **reply, sf_err *err);

/* ---- local driver: child processes ---------------------------------------------------------- */
/* Start `self args...` detached (own session, stdin /dev/null, stdout+stderr appended to log).
 * Returns the pid or a negative error. */
pid_t sf__spawn(const char *self, char *const args[], const char *log_path, sf_err *err);
/* Wait until path exists and holds a line (a port file), up to timeout_ms; fails early when
 * pid exits. The first integers of the line go to ports[0..n-1]. */
int sf__wait_port_file(const char *path, pid_t pid, int timeout_ms, int *ports, int n, sf_err *err);
/* SIGTERM, wait up to grace_ms, then SIGKILL. 0 when the process is gone. */
int sf__stop_process(pid_t pid, int grace_ms);

#endif
