/* seifer: run deep neural networks as pipelines across small edge devices. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const sf_cmd *const cmds[] = {
    &sf_cmd_inspect, &sf_cmd_infer,   &sf_cmd_bench,   &sf_cmd_zoo,     &sf_cmd_plan,
    &sf_cmd_split,   &sf_cmd_simulate, &sf_cmd_probe,  &sf_cmd_keygen,  &sf_cmd_worker,
    &sf_cmd_gateway, &sf_cmd_up,      &sf_cmd_down,    &sf_cmd_request, &sf_cmd_loadgen,
    &sf_cmd_controller, &sf_cmd_deploy};
#define N_CMDS (sizeof cmds / sizeof cmds[0])

void sf_cli_err(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("seifer: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int sf_cli_int(const char *opt, const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) {
    sf_cli_err("%s: '%s' is not an integer in [%ld, %ld]", opt, s, lo, hi);
    return -1;
  }
  *out = v;
  return 0;
}

const char *sf_cli_value(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) {
    sf_cli_err("option %s needs a value", argv[*i]);
    return NULL;
  }
  return argv[++*i];
}

int sf_cli_shape(const char *s, sf_input_shape *sh) {
  const char *eq = strrchr(s, '=');
  if (!eq || eq == s) {
    sf_cli_err("--input-shape: expected NAME=D1,D2,..., got '%s'", s);
    return -1;
  }
  static char names[16][SF_MAX_NAME];
  static int next;
  size_t nl = (size_t)(eq - s);
  if (nl >= SF_MAX_NAME) {
    sf_cli_err("--input-shape: name too long");
    return -1;
  }
  char *nm = names[next++ % 16];
  memcpy(nm, s, nl);
  nm[nl] = 0;
  sh->name = nm;
  sh->rank = 0;
  const char *p = eq + 1;
  while (*p) {
    if (sh->rank >= SF_MAX_RANK) {
      sf_cli_err("--input-shape %s: more than %d dims", nm, SF_MAX_RANK);
      return -1;
    }
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (errno || end == p || v < 0 || v > SF_MAX_DIM || (*end && *end != ',' && *end != 'x')) {
      sf_cli_err("--input-shape %s: bad dim at '%s'", nm, p);
      return -1;
    }
    sh->dims[sh->rank++] = v;
    p = *end ? end + 1 : end;
  }
  return 0;
}

int sf_cli_open(const char *path, const sf_session_opts *o, sf_model **m, sf_session **s) {
  sf_err err = {0};
  if (sf_model_load(m, path, &err) < 0) {
    sf_cli_err("%s", err.msg);
    return -1;
  }
  if (!s) return 0;
  if (sf_session_new(s, *m, o, &err) < 0) {
    sf_cli_err("%s: %s", path, err.msg);
    sf_model_free(*m);
    *m = NULL;
    return -1;
  }
  return 0;
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: seifer <command> [options]\n"
          "seifer %s: run ONNX models as pipelines across small edge devices.\n\ncommands:\n",
          SF_VERSION);
  for (size_t i = 0; i < N_CMDS; i++)
    if (cmds[i]) fprintf(f, "  %-10s %s\n", cmds[i]->name, cmds[i]->summary);
  fprintf(f, "\n'seifer <command> --help' shows the options of a command.\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
      !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? SF_EXIT_USAGE : SF_EXIT_OK;
  }
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
    printf("seifer %s\n", SF_VERSION);
    return 0;
  }
  for (size_t i = 0; i < N_CMDS; i++) {
    if (!cmds[i] || strcmp(argv[1], cmds[i]->name)) continue;
    for (int a = 2; a < argc; a++)
      if (!strcmp(argv[a], "-h") || !strcmp(argv[a], "--help")) {
        cmds[i]->usage();
        return 0;
      }
    return cmds[i]->run(argc - 1, argv + 1);
  }
  sf_cli_err("unknown command '%s'", argv[1]);
  usage(stderr);
  return SF_EXIT_USAGE;
}
