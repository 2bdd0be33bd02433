/* seifer zoo NAME -o FILE.onnx [--seed N] | seifer zoo --list: write reference models. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "util/util.h"
#include "zoo/zoo.h"

static void usage(void) {
  printf(
      "usage: seifer zoo NAME -o FILE.onnx [--seed N]\n"
      "       seifer zoo --list\n"
      "Write a reference CNN (the Keras application, layer for layer) or a small test model as\n"
      "an ONNX file (opset 13, NCHW input [1,3,H,W], softmax output) with deterministic\n"
      "pseudo-random weights: the same NAME and seed give a byte-identical file.\n"
      "  -o, --output FILE  where to write the model\n"
      "  --seed N           weight seed (default 1)\n"
      "  --list             the models with input shape and parameter count\n");
}

static void list(void) {
  printf("%-18s %-14s %12s  %s\n", "name", "input", "parameters", "description");
  for (int i = 0; i < sf__zoo_count(); i++) {
    const sf_zoo_entry *e = sf__zoo_get(i);
    char in[32];
    snprintf(in, sizeof in, "1x%dx%dx%d", e->c, e->h, e->w);
    printf("%-18s %-14s %12" PRId64 "  %s\n", e->name, in, e->params, e->title);
  }
}

static int run(int argc, char **argv) {
  const char *name = NULL, *out = NULL;
  long seed = 1;
  int do_list = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--list")) {
      do_list = 1;
    } else if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
      if (!(out = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--seed")) {
      const char *v = sf_cli_value(argc, argv, &i);
      if (!v || sf_cli_int("--seed", v, 0, 2147483647L, &seed)) return SF_EXIT_USAGE;
    } else if (argv[i][0] == '-' && argv[i][1]) {
      sf_cli_err("zoo: unknown option '%s'", argv[i]);
      return SF_EXIT_USAGE;
    } else if (!name) {
      name = argv[i];
    } else {
      sf_cli_err("zoo: more than one model name given ('%s')", argv[i]);
      return SF_EXIT_USAGE;
    }
  }
  if (do_list) {
    if (name || out) {
      sf_cli_err("zoo: --list takes no model name or output");
      return SF_EXIT_USAGE;
    }
    list();
    return SF_EXIT_OK;
  }
  if (!name) {
    usage();
    return SF_EXIT_USAGE;
  }
  if (!sf__zoo_find(name)) {
    sf_cli_err("zoo: no model '%s' (seifer zoo --list shows the names)", name);
    return SF_EXIT_USAGE;
  }
  if (!out) {
    sf_cli_err("zoo: no output file (-o FILE.onnx)");
    return SF_EXIT_USAGE;
  }
  sf_err err = {0};
  int64_t params = 0;
  double t0 = sf__now();
  if (sf__zoo_write(name, (uint64_t)seed, out, &params, &err) < 0) {
    sf_cli_err("zoo: %s", err.msg);
    return SF_EXIT_FAIL;
  }
  printf("%s: %s, seed %ld, %" PRId64 " parameters (%.2f s)\n", out, name, seed, params,
         sf__now() - t0);
  return SF_EXIT_OK;
}

const sf_cmd sf_cmd_zoo = {"zoo", "write a reference CNN (ResNet50, MobileNetV2, ...) as ONNX", run,
                           usage};
