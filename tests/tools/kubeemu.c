/* kubeemu: the Kubernetes API server emulator as a program (tests/kube/kubeemu.h says what it
 * emulates). Serves until SIGTERM or SIGINT.
 *
 *   kubeemu [--listen HOST:PORT] [--token-file F] [--tls-dir D] [--url-file F] [--bookmark-ms N]
 *           [--history N] [--kubelet SEIFER --kubelet-dir DIR] [--quiet]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../kube/kubeemu.h"

static volatile sig_atomic_t stop;
static void on_signal(int s) {
  (void)s;
  stop = 1;
}

int main(int argc, char **argv) {
  kemu_opts o = {.listen = "127.0.0.1:0"};
  const char *url_file = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--quiet")) {
      o.quiet = 1;
      continue;
    }
    if (!v) {
      fprintf(stderr,
              "usage: kubeemu [--listen HOST:PORT] [--token-file F] [--tls-dir D] [--url-file F] "
              "[--bookmark-ms N] [--history N] [--kubelet SEIFER --kubelet-dir DIR] [--quiet]\n");
      return 2;
    }
    i++;
    if (!strcmp(a, "--listen"))
      o.listen = v;
    else if (!strcmp(a, "--token-file"))
      o.token_file = v;
    else if (!strcmp(a, "--tls-dir"))
      o.tls_dir = v;
    else if (!strcmp(a, "--url-file"))
      url_file = v;
    else if (!strcmp(a, "--bookmark-ms"))
      o.bookmark_ms = atoi(v);
    else if (!strcmp(a, "--history"))
      o.history = atoi(v);
    else if (!strcmp(a, "--kubelet"))
      o.kubelet_exe = v;
    else if (!strcmp(a, "--kubelet-dir"))
      o.kubelet_dir = v;
    else {
      fprintf(stderr, "kubeemu: unknown argument '%s'\n", a);
      return 2;
    }
  }
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  char err[512];
  kemu *e = NULL;
  if (kemu_start(&e, &o, err, sizeof err) < 0) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  if (url_file) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", url_file);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%s\n", kemu_url(e)) < 0 || fclose(f) != 0 || rename(tmp, url_file) != 0) {
      fprintf(stderr, "kubeemu: cannot write %s\n", url_file);
      kemu_stop(e);
      return 1;
    }
  }
  if (!o.quiet) fprintf(stderr, "kubeemu: serving %s\n", kemu_url(e));
  while (!stop) pause();
  kemu_stop(e);
  return 0;
}
