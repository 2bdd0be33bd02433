/* seifer keygen -o FILE: write a new cluster secret (authenticates every data-plane link). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "net/net.h"

static void usage(void) {
  printf(
      "usage: seifer keygen -o FILE\n"
      "Write a new random 256-bit cluster secret as 64 hex digits to FILE (mode 0600). Every\n"
      "worker, gateway and controller of a cluster is given the same file (--secret FILE) and\n"
      "proves it to its peers with an HMAC challenge-response before any data moves.\n"
      "An existing FILE is never overwritten.\n"
      "  -o, --output FILE  where to write the secret\n");
}

static int run(int argc, char **argv) {
  const char *out = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
      if (out) {
        sf_cli_err("keygen: more than one output file given");
        return SF_EXIT_USAGE;
      }
      if (!(out = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      sf_cli_err("keygen: unknown option '%s'", argv[i]);
      return SF_EXIT_USAGE;
    } else {
      sf_cli_err("keygen: unexpected argument '%s' (the output file goes after -o)", argv[i]);
      return SF_EXIT_USAGE;
    }
  }
  if (!out || !out[0]) {
    sf_cli_err("keygen: no output file (-o FILE)");
    return SF_EXIT_USAGE;
  }
  sf_err err = {0};
  if (sf__secret_generate(out, &err) < 0) {
    sf_cli_err("keygen: %s", err.msg);
    return SF_EXIT_FAIL;
  }
  printf("%s: new cluster secret (256 bits, mode 0600)\n", out);
  return SF_EXIT_OK;
}

const sf_cmd sf_cmd_keygen = {"keygen", "write a new cluster secret for authenticated links", run,
                              usage};
