/* Local driver: stages and the gateway as detached child processes of this machine. */
#include <errno.h>
#include <fcntl.h>
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
