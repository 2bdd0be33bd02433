/* Local driver: workers and the gateway as detached child processes of this machine (optionally
 * started through a wrapper program, e.g. one that enters a node's network namespace). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control/control.h"

pid_t sf__spawn(const char *self, char *const args[], const char *log_path, sf_err *err) {
  int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (logfd < 0) return sf__errf(err, SF_EIO, "%s: %s", log_path, strerror(errno));
  pid_t pid = fork();
  if (pid < 0) {
    close(logfd);
    return sf__errf(err, SF_EIO, "fork: %s", strerror(errno));
  }
  if (pid == 0) {
    setsid();
    int nul = open("/dev/null", O_RDONLY);
    if (nul >= 0) dup2(nul, 0);
    dup2(logfd, 1);
    dup2(logfd, 2);
    execv(self, args);
    fprintf(stderr, "seifer: exec %s: %s\n", self, strerror(errno));
    _exit(127);
  }
  close(logfd);
  return pid;
}

int sf__wait_port_file(const char *path, pid_t pid, int timeout_ms, int *ports, int n, sf_err *err) {
  double end = sf__now() + timeout_ms / 1000.0;
  while (sf__now() < end) {
    FILE *f = fopen(path, "r");
    if (f) {
      int got = 0;
      while (got < n && fscanf(f, "%d", &ports[got]) == 1) got++;
      fclose(f);
      if (got == n) return 0;
    }
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid)
      return sf__errf(err, SF_EIO, "process %d exited (status %d) before listening", (int)pid,
                      WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
    usleep(20000);
  }
  return sf__errf(err, SF_EIO, "process %d did not start listening within %d ms", (int)pid, timeout_ms);
}

/* Gone: reaped, or a zombie waiting for whoever adopted it (not necessarily us) to reap it. */
static int gone(pid_t pid) {
  int st;
  if (waitpid(pid, &st, WNOHANG) == pid) return 1;
  if (kill(pid, 0) < 0 && errno == ESRCH) return 1;
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *rp = strrchr(buf, ')'); /* "pid (comm) S ..." */
  return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

int sf__stop_process(pid_t pid, int grace_ms) {
  if (pid <= 0) return 0;
  if (kill(pid, SIGTERM) < 0) return errno == ESRCH ? 0 : -1;
  for (int waited = 0; waited < grace_ms; waited += 20) {
    if (gone(pid)) return 0;
    usleep(20000);
  }
  kill(pid, SIGKILL);
  for (int i = 0; i < 50; i++) {
    if (gone(pid)) return 0;
    usleep(20000);
  }
  return -1;
}

int sf__process_is(pid_t pid, const char *role) {
  if (pid <= 0 || gone(pid)) return 0;
  char path[64], buf[1024], want[80];
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  for (size_t i = 0; i < n; i++)
    if (!buf[i]) buf[i] = ' ';
  buf[n] = 0;
  snprintf(want, sizeof want, " %s ", role);
  return strstr(buf, want) != NULL;
}

/* ---- starting workers and the gateway -------------------------------------------------------- */
/* "host:port" with host from listen (127.0.0.1 when empty or a wildcard) and the bound port. */
static void bound_addr(const char *listen, int port, char *out, size_t cap) {
  const char *colon = strrchr(listen, ':');
  char host[200];
  snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - listen) : 0, listen);
  if (!host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "[::]")) snprintf(host, sizeof host, "127.0.0.1");
  snprintf(out, cap, "%s:%d", host, port);
}

/* argv with the wrapper in front: wrap NODE self ... */
static pid_t spawn_wrapped(const sf_local_opts *o, const char *node, char **args, const char *log,
                           sf_err *err) {
  if (!o->wrap) return sf__spawn(o->self, args, log, err);
  char *wargs[40];
  int n = 0;
  wargs[n++] = (char *)o->wrap;
  wargs[n++] = (char *)(node && node[0] ? node : "gateway");
  for (int i = 0; args[i] && n < 39; i++) wargs[n++] = args[i];
  wargs[n] = NULL;
  return sf__spawn(o->wrap, wargs, log, err);
}

int sf__local_start_worker(const sf_local_opts *o, const char *node, const char *listen, pid_t *pid,
                           char *addr, size_t addr_cap, sf_err *err) {
  char port_file[PATH_MAX], cache[PATH_MAX], log[PATH_MAX], secret[PATH_MAX], threads[16], hb[16];
  const char *ls = listen && listen[0] ? listen : "127.0.0.1:0";
  snprintf(port_file, sizeof port_file, "%s/run/%s.port", o->dir, node);
  snprintf(cache, sizeof cache, "%s/cache/%s", o->dir, node);
  snprintf(log, sizeof log, "%s/logs/%s.log", o->dir, node);
  snprintf(secret, sizeof secret, "%s/secret", o->dir);
  snprintf(threads, sizeof threads, "%d", o->threads);
  snprintf(hb, sizeof hb, "%d", o->heartbeat_ms > 0 ? o->heartbeat_ms : 500);
  unlink(port_file);
  char *args[] = {(char *)o->self, "worker", "--listen", (char *)ls, "--secret", secret, "--name",
                  (char *)node, "--cache", cache, "--threads", threads, "--heartbeat-ms", hb,
                  "--port-file", port_file, NULL};
  pid_t p = spawn_wrapped(o, node, args, log, err);
  if (p < 0) return (int)p;
  int port = 0;
  if (sf__wait_port_file(port_file, p, 10000, &port, 1, err) < 0) {
    sf__stop_process(p, 1000);
    return sf__errctx(err, err ? err->code : SF_EIO, "worker %s (log: %s)", node, log);
  }
  *pid = p;
  bound_addr(ls, port, addr, addr_cap);
  return 0;
}

int sf__local_start_gateway(const sf_local_opts *o, const char *wrap_node, const char *http_listen,
                            const char *data_listen, pid_t *pid, char *data, size_t data_cap,
                            char *url, size_t url_cap, sf_err *err) {
  char port_file[PATH_MAX], log[PATH_MAX], secret[PATH_MAX];
  const char *hl = http_listen && http_listen[0] ? http_listen : "127.0.0.1:0";
  const char *dl = data_listen && data_listen[0] ? data_listen : "127.0.0.1:0";
  snprintf(port_file, sizeof port_file, "%s/run/gateway.port", o->dir);
  snprintf(log, sizeof log, "%s/logs/gateway.log", o->dir);
  snprintf(secret, sizeof secret, "%s/secret", o->dir);
  unlink(port_file);
  char *args[] = {(char *)o->self, "gateway", "--listen", (char *)hl, "--data", (char *)dl, "--secret",
                  secret, "--port-file", port_file, "--timeout",
                  (char *)(o->gateway_timeout ? o->gateway_timeout : "30"), NULL};
  pid_t p = spawn_wrapped(o, wrap_node, args, log, err);
  if (p < 0) return (int)p;
  int ports[2] = {0, 0};
  if (sf__wait_port_file(port_file, p, 10000, ports, 2, err) < 0) {
    sf__stop_process(p, 1000);
    return sf__errctx(err, err ? err->code : SF_EIO, "gateway (log: %s)", log);
  }
  *pid = p;
  bound_addr(dl, ports[1], data, data_cap);
  char h[300];
  bound_addr(hl, ports[0], h, sizeof h);
  snprintf(url, url_cap, "http://%s", h);
  return 0;
}

/* ---- the local driver ------------------------------------------------------------------------- */
typedef struct local_drv {
  sf_local_opts o;
} local_drv;

static void proc_file(const local_drv *d, const sf_proc *p, char *out, size_t cap) {
  snprintf(out, cap, "%s/run/%s-%s.proc", d->o.dir, p->role == SF_PROC_GATEWAY ? "gateway" : "worker",
           p->role == SF_PROC_GATEWAY ? "gateway" : p->node);
}

static int ld_start(void *ctx, sf_proc *p, sf_err *err) {
  local_drv *d = ctx;
  pid_t pid = 0;
  int rc;
  if (p->role == SF_PROC_GATEWAY)
    rc = sf__local_start_gateway(&d->o, p->node, p->listen, p->listen2, &pid, p->addr, sizeof p->addr,
                                 p->url, sizeof p->url, err);
  else
    rc = sf__local_start_worker(&d->o, p->node, p->listen, &pid, p->addr, sizeof p->addr, err);
  if (rc < 0) return rc;
  p->pid = pid;
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "role", p->role == SF_PROC_GATEWAY ? "gateway" : "worker");
  cJSON_AddStringToObject(j, "node", p->node);
  cJSON_AddNumberToObject(j, "pid", (double)pid);
  cJSON_AddStringToObject(j, "addr", p->addr);
  cJSON_AddStringToObject(j, "url", p->url);
  cJSON_AddStringToObject(j, "listen", p->listen);
  cJSON_AddStringToObject(j, "listen2", p->listen2);
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  char path[PATH_MAX];
  proc_file(d, p, path, sizeof path);
  rc = s ? sf__write_file(path, s, strlen(s), err) : sf__errf(err, SF_ENOMEM, "out of memory");
  free(s);
  return rc;
}

static int ld_alive(void *ctx, const sf_proc *p) {
  (void)ctx;
  return p->pid > 0 && sf__process_is((pid_t)p->pid, p->role == SF_PROC_GATEWAY ? "gateway" : "worker");
}

static int ld_stop(void *ctx, const sf_proc *p, int grace_ms) {
  local_drv *d = ctx;
  int rc = 0;
  if (ld_alive(ctx, p)) rc = sf__stop_process((pid_t)p->pid, grace_ms);
  if (rc == 0) {
    char path[PATH_MAX];
    proc_file(d, p, path, sizeof path);
    unlink(path);
  }
  return rc;
}

static int ld_list(void *ctx, sf_proc *out, int max) {
  local_drv *d = ctx;
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s/run", d->o.dir);
  DIR *dh = opendir(dir);
  if (!dh) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(dh)) && n < max) {
    size_t l = strlen(e->d_name);
    if (l < 6 || strcmp(e->d_name + l - 5, ".proc")) continue;
    char path[PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    void *txt = NULL;
    size_t len = 0;
    if (sf__read_file(path, 1 << 16, &txt, &len, NULL) < 0) continue;
    cJSON *j = cJSON_ParseWithLength(txt, len);
    free(txt);
    sf_proc p;
    memset(&p, 0, sizeof p);
    cJSON *role = cJSON_GetObjectItem(j, "role"), *pid = cJSON_GetObjectItem(j, "pid");
    const char *keys[] = {"node", "addr", "url", "listen", "listen2"};
    char *dst[] = {p.node, p.addr, p.url, p.listen, p.listen2};
    size_t caps[] = {sizeof p.node, sizeof p.addr, sizeof p.url, sizeof p.listen, sizeof p.listen2};
    int ok = cJSON_IsString(role) && cJSON_IsNumber(pid) && pid->valuedouble > 1 && pid->valuedouble < 4194304;
    for (int k = 0; ok && k < 5; k++) {
      cJSON *x = cJSON_GetObjectItem(j, keys[k]);
      if (!cJSON_IsString(x) || strlen(x->valuestring) >= caps[k]) ok = 0;
      else snprintf(dst[k], caps[k], "%s", x->valuestring);
    }
    if (ok) {
      p.role = !strcmp(role->valuestring, "gateway") ? SF_PROC_GATEWAY : SF_PROC_WORKER;
      p.pid = (long)pid->valuedouble;
      if (ld_alive(ctx, &p)) out[n++] = p;
    }
    cJSON_Delete(j);
  }
  closedir(dh);
  return n;
}

static void ld_free(void *ctx) { free(ctx); }

static const sf_driver_ops local_ops = {"local", ld_start, ld_stop, ld_alive, ld_list, ld_free};

int sf__driver_local(sf_driver *d, const sf_local_opts *o, sf_err *err) {
  local_drv *ld = sf__calloc(1, sizeof *ld);
  if (!ld) return sf__errf(err, SF_ENOMEM, "out of memory");
  ld->o = *o;
  d->ops = &local_ops;
  d->ctx = ld;
  return 0;
}

void sf__driver_free(sf_driver *d) {
  if (d && d->ops && d->ops->free) d->ops->free(d->ctx);
  if (d) d->ctx = NULL;
}
