/* seifer split MODEL plan.json -o DIR: write every stage of a plan as a standalone ONNX model,
 * plus DIR/manifest.json naming the tensors that flow between stages. */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "onnx/onnx.h"
#include "partition/partition.h"

static void usage(void) {
  printf(
      "usage: seifer split MODEL plan.json -o DIR [--input-shape NAME=DIMS]...\n"
      "Writes DIR/stage-1.onnx ... DIR/stage-K.onnx (standalone models, also valid for ONNX\n"
      "Runtime) and DIR/manifest.json ({\"stages\": [{\"file\", \"node\", \"inputs\", \"outputs\",\n"
      "\"first_op\", \"last_op\"}]}). plan.json comes from `seifer plan`.\n");
}

#define MAX_STAGES 4096

/* Stage boundaries and node names from plan.json; errors name the field. */
static int read_plan(const char *path, int n_ops, int *k, int *pos, char **nodes) {
  void *txt = NULL;
  size_t len = 0;
  sf_err err = {0};
  int rc = -1;
  cJSON *root = NULL;
  if (sf__read_file(path, 64 << 20, &txt, &len, &err) < 0) {
    sf_cli_err("%s", err.msg);
    return -1;
  }
  root = cJSON_ParseWithLength(txt, len);
  const cJSON *st = root ? cJSON_GetObjectItemCaseSensitive(root, "stages") : NULL;
  if (!root || !cJSON_IsArray(st)) {
    sf_cli_err("%s: not a plan (expected a JSON object with a 'stages' array)", path);
    goto out;
  }
  int n = cJSON_GetArraySize(st);
  if (n < 1 || n > MAX_STAGES) {
    sf_cli_err("%s: 'stages' has %d entries (1..%d)", path, n, MAX_STAGES);
    goto out;
  }
  const cJSON *ops = cJSON_GetObjectItemCaseSensitive(root, "operators");
  if (cJSON_IsNumber(ops) && (int)ops->valuedouble != n_ops) {
    sf_cli_err("%s: the plan is for a model of %d operators, this model has %d", path,
               (int)ops->valuedouble, n_ops);
    goto out;
  }
  pos[0] = 0;
  for (int i = 0; i < n; i++) {
    const cJSON *s = cJSON_GetArrayItem(st, i);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "first_op"),
                *l = cJSON_GetObjectItemCaseSensitive(s, "last_op"),
                *nd = cJSON_GetObjectItemCaseSensitive(s, "node");
    if (!cJSON_IsNumber(f) || !cJSON_IsNumber(l)) {
      sf_cli_err("%s: stages[%d]: needs numbers 'first_op' and 'last_op'", path, i);
      goto out;
    }
    int fo = (int)f->valuedouble, lo = (int)l->valuedouble;
    if (fo != pos[i] || lo < fo || lo >= n_ops) {
      sf_cli_err("%s: stages[%d]: operators %d-%d do not continue the previous stage (expected "
                 "first_op %d, last_op < %d)", path, i, fo, lo, pos[i], n_ops);
      goto out;
    }
    pos[i + 1] = lo + 1;
    nodes[i] = cJSON_IsString(nd) ? sf__strdup(nd->valuestring) : NULL;
  }
  if (pos[n] != n_ops) {
    sf_cli_err("%s: the stages end at operator %d, the model has %d", path, pos[n] - 1, n_ops);
    goto out;
  }
  *k = n;
  rc = 0;
out:
  cJSON_Delete(root);
  free(txt);
  return rc;
}

static int run(int argc, char **argv) {
  const char *model = NULL, *plan = NULL, *dir = NULL;
  int nsh = 0;
  sf_input_shape shapes[16];
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
      if (!(dir = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--input-shape")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (nsh >= 16 || sf_cli_shape(v, &shapes[nsh++])) return SF_EXIT_USAGE;
    } else if (argv[i][0] == '-') {
      sf_cli_err("split: unknown option '%s'", argv[i]);
      return SF_EXIT_USAGE;
    } else if (!model) {
      model = argv[i];
    } else if (!plan) {
      plan = argv[i];
    } else {
      sf_cli_err("split: unexpected argument '%s'", argv[i]);
      return SF_EXIT_USAGE;
    }
  }
  if (!model || !plan || !dir) {
    usage();
    return SF_EXIT_USAGE;
  }
  int rc = SF_EXIT_FAIL, k = 0, have_pa = 0;
  sf_err err = {0};
  sf_model *m = NULL;
  sf_partition pa;
  memset(&pa, 0, sizeof pa);
  int *pos = NULL;
  char **nodes = NULL;
  if (sf_cli_open(model, NULL, &m, NULL)) goto out;
  sf_partition_opts po = sf_partition_opts_default();
  po.n_shapes = nsh;
  po.shapes = shapes;
  po.thin = 1; /* the cuts do not matter here, only the operator order */
  if (sf__partition_analyze(m, &po, &pa, &err) < 0) {
    sf_cli_err("%s: %s", model, err.msg);
    goto out;
  }
  have_pa = 1;
  pos = sf__calloc(MAX_STAGES + 1, sizeof *pos);
  nodes = sf__calloc(MAX_STAGES, sizeof *nodes);
  if (!pos || !nodes) goto out;
  if (read_plan(plan, pa.n_ops, &k, pos, nodes)) goto out;
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
    sf_cli_err("cannot create '%s': %s", dir, strerror(errno));
    goto out;
  }
  const char *base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
  if (sf__partition_write(&pa, base, k, pos, (const char **)nodes, dir, &err) < 0) {
    sf_cli_err("%s", err.msg);
    goto out;
  }
  for (int i = 0; i < k; i++)
    printf("%s/stage-%d.onnx  operators %d-%d%s%s\n", dir, i + 1, pos[i], pos[i + 1] - 1,
           nodes[i] ? "  node " : "", nodes[i] ? nodes[i] : "");
  printf("%s/manifest.json\n", dir);
  rc = SF_EXIT_OK;
out:
  if (nodes)
    for (int i = 0; i < MAX_STAGES; i++) free(nodes[i]);
  free(nodes);
  free(pos);
  if (have_pa) sf__partition_deinit(&pa);
  sf_model_free(m);
  return rc;
}

const sf_cmd sf_cmd_split = {"split", "write the stages of a plan as standalone ONNX models", run,
                             usage};
