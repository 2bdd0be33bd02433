/* The `seifer` command: one subcommand per file (cmd_*.c), dispatched from main.c. */
#ifndef SF_CLI_H
#define SF_CLI_H

#include "seifer/seifer.h"

typedef struct sf_cmd {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv); /* argv[0] is the subcommand name; returns exit status */
  void (*usage)(void);
} sf_cmd;

/* Exit statuses. */
enum { SF_EXIT_OK = 0, SF_EXIT_FAIL = 1, SF_EXIT_USAGE = 2 };

/* Print "seifer: <msg>" to stderr. */
void sf_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse a non-negative integer option value in [lo, hi]; prints an error naming opt. */
int sf_cli_int(const char *opt, const char *s, long lo, long hi, long *out);
/* Parse "name=1,3,224,224" into sh (name points into s). */
int sf_cli_shape(const char *s, sf_input_shape *sh);
/* Option value helper: returns argv[++*i] or prints an error. */
const char *sf_cli_value(int argc, char **argv, int *i);

/* Load a model and create a session; prints the error. */
int sf_cli_open(const char *path, const sf_session_opts *o, sf_model **m, sf_session **s);

extern const sf_cmd sf_cmd_inspect, sf_cmd_infer, sf_cmd_bench, sf_cmd_zoo, sf_cmd_plan,
    sf_cmd_split, sf_cmd_simulate;
/* Commands whose files may be absent from a partial build are weak: main.c skips a NULL entry. */
#define SF_WEAK_CMD(n) extern const sf_cmd n __attribute__((weak));
SF_WEAK_CMD(sf_cmd_probe)
SF_WEAK_CMD(sf_cmd_keygen)
SF_WEAK_CMD(sf_cmd_worker)
SF_WEAK_CMD(sf_cmd_gateway)
SF_WEAK_CMD(sf_cmd_up)
SF_WEAK_CMD(sf_cmd_down)
SF_WEAK_CMD(sf_cmd_request)
SF_WEAK_CMD(sf_cmd_loadgen)
SF_WEAK_CMD(sf_cmd_controller)
SF_WEAK_CMD(sf_cmd_deploy)
#undef SF_WEAK_CMD

#endif
