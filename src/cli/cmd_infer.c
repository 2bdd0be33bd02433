/* seifer infer MODEL -i NAME=FILE [-i ...] -o OUTDIR [--threads N]: run a model once. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "onnx/onnx.h"

static void usage(void) {
  printf(
      "usage: seifer infer MODEL -i NAME=FILE [-i NAME=FILE]... -o OUTDIR [--threads N]\n"
      "                    [--layout auto|conv-only|nchw] [--no-fuse]\n"
      "FILE is a .npy array or a serialized ONNX TensorProto (.pb). Every graph output is written\n"
      "to OUTDIR/<output name>.npy (characters outside [A-Za-z0-9._-] replaced by '_').\n"
      "Dynamic input dims are taken from the given arrays. --threads 0 (default) = all cores.\n"
      "--layout and --no-fuse select other compilations of the same model (for comparisons).\n");
}

#define MAX_IN 64

static void safe_name(const char *in, char *out, size_t n) {
  size_t i = 0;
  for (; in[i] && i + 1 < n; i++) {
    char c = in[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    out[i] = ok ? c : '_';
  }
  out[i] = 0;
  if (!strcmp(out, ".") || !strcmp(out, "..") || !out[0]) snprintf(out, n, "output_");
}

static int run(int argc, char **argv) {
  const char *path = NULL, *outdir = NULL;
  const char *in_names[MAX_IN], *in_files[MAX_IN];
  int nin = 0, rc = SF_EXIT_FAIL, layout = -1, no_fuse = 0;
  long threads = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-i") || !strcmp(argv[i], "--input")) {
      const char *v = sf_cli_value(argc, argv, &i);
      if (!v) return SF_EXIT_USAGE;
      const char *eq = strchr(v, '=');
      if (!eq || eq == v || !eq[1]) {
        sf_cli_err("-i: expected NAME=FILE, got '%s'", v);
        return SF_EXIT_USAGE;
      }
      if (nin >= MAX_IN) {
        sf_cli_err("-i: at most %d inputs", MAX_IN);
        return SF_EXIT_USAGE;
      }
      in_names[nin] = v;
      in_files[nin++] = eq + 1;
    } else if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
      if (!(outdir = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--layout")) {
      const char *v = sf_cli_value(argc, argv, &i);
      if (!v) return SF_EXIT_USAGE;
      layout = !strcmp(v, "auto") ? -1 : !strcmp(v, "nchw") ? 0 : !strcmp(v, "conv-only") ? 1 : -2;
      if (layout == -2) {
        sf_cli_err("--layout: expected auto, conv-only or nchw, got '%s'", v);
        return SF_EXIT_USAGE;
      }
    } else if (!strcmp(argv[i], "--no-fuse")) {
      no_fuse = 1;
    } else if (!strcmp(argv[i], "--threads")) {
      const char *v = sf_cli_value(argc, argv, &i);
      if (!v || sf_cli_int("--threads", v, 0, 1024, &threads)) return SF_EXIT_USAGE;
    } else if (argv[i][0] == '-') {
      sf_cli_err("infer: unknown option '%s'", argv[i]);
      return SF_EXIT_USAGE;
    } else if (!path) {
      path = argv[i];
    } else {
      sf_cli_err("infer: more than one model given ('%s')", argv[i]);
      return SF_EXIT_USAGE;
    }
  }
  if (!path || !outdir || !nin) {
    sf_cli_err("infer: need MODEL, at least one -i NAME=FILE and -o OUTDIR");
    return SF_EXIT_USAGE;
  }
  sf_err err = {0};
  sf_tensor arrays[MAX_IN];
  sf_input_shape shapes[MAX_IN];
  char names[MAX_IN][512];
  memset(arrays, 0, sizeof arrays);
  sf_model *m = NULL;
  sf_session *s = NULL;
  int loaded = 0;
  for (int i = 0; i < nin; i++) {
    size_t nl = (size_t)(in_files[i] - 1 - in_names[i]);
    if (nl >= sizeof names[i]) {
      sf_cli_err("-i: input name too long");
      goto out;
    }
    memcpy(names[i], in_names[i], nl);
    names[i][nl] = 0;
    for (int j = 0; j < i; j++)
      if (!strcmp(names[j], names[i])) {
        sf_cli_err("-i: input '%s' given twice", names[i]);
        goto out;
      }
    if (sf__tensor_load_file(in_files[i], &arrays[i], &err) < 0) {
      sf_cli_err("input '%s': %s", names[i], err.msg);
      goto out;
    }
    loaded = i + 1;
    shapes[i].name = names[i];
    free(arrays[i].name);
    arrays[i].name = sf__strdup(names[i]);
    if (!arrays[i].name) {
      sf_cli_err("out of memory");
      goto out;
    }
    shapes[i].rank = arrays[i].rank;
    memcpy(shapes[i].dims, arrays[i].dims, sizeof shapes[i].dims);
  }
  sf_session_opts o = sf_session_opts_default();
  o.threads = (int)threads;
  o.n_shapes = nin;
  o.shapes = shapes;
  o.n_values = nin;
  o.values = arrays;
  o.layout = layout;
  o.no_fold = no_fuse;
  o.release_weights = 1;
  if (sf_cli_open(path, &o, &m, &s)) goto out;
  for (int i = 0; i < sf_session_n_inputs(s); i++) {
    const sf_tensor *t = sf_session_input(s, i);
    int found = 0;
    for (int j = 0; j < nin; j++) found |= !strcmp(names[j], t->name);
    if (!found) {
      sf_cli_err("model input '%s' (%s) not given: add -i %s=FILE", t->name,
                 sf_dtype_name(t->dtype), t->name);
      goto out;
    }
  }
  for (int j = 0; j < nin; j++) {
    sf_tensor *t = sf_session_input(s, sf_session_input_index(s, names[j]));
    if (arrays[j].dtype != t->dtype) {
      sf_cli_err("input '%s': model expects %s, file %s holds %s", names[j],
                 sf_dtype_name(t->dtype), in_files[j], sf_dtype_name(arrays[j].dtype));
      goto out;
    }
    memcpy(t->data, arrays[j].data, (size_t)sf_tensor_nbytes(t));
  }
  if (sf_session_run(s, &err) < 0) {
    sf_cli_err("inference failed: %s", err.msg);
    goto out;
  }
  if (mkdir(outdir, 0777) != 0 && errno != EEXIST) {
    sf_cli_err("cannot create output directory '%s': %s", outdir, strerror(errno));
    goto out;
  }
  for (int i = 0; i < sf_session_n_outputs(s); i++) {
    const sf_tensor *t = sf_session_output(s, i);
    char fn[600], file[1400];
    safe_name(t->name, fn, sizeof fn);
    snprintf(file, sizeof file, "%s/%s.npy", outdir, fn);
    if (sf__tensor_save_npy(file, t, &err) < 0) {
      sf_cli_err("%s", err.msg);
      goto out;
    }
    char sh[128];
    printf("%s  %s %s -> %s\n", t->name, sf_dtype_name(t->dtype),
           sf__shape_str(t, sh, sizeof sh), file);
  }
  rc = SF_EXIT_OK;
out:
  for (int i = 0; i < loaded; i++) sf__tensor_deinit(&arrays[i]);
  sf_session_free(s);
  sf_model_free(m);
  return rc;
}

const sf_cmd sf_cmd_infer = {"infer", "run a model on input arrays, write the outputs as .npy",
                             run, usage};
