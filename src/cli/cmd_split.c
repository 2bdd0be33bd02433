/* seifer split MODEL plan.json -o DIR [--pipeline K|all]: write every stage of a plan (of one
 * pipeline, or of each in DIR/pK/) as a standalone ONNX model, plus manifest.json naming the
 * tensors that flow between stages. */
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
      "usage: seifer split MODEL plan.json -o DIR [--pipeline K|all] [--input-shape NAME=DIMS]...\n"
      "Writes DIR/stage-1.onnx ... DIR/stage-K.onnx (standalone models, also valid for ONNX\n"
      "Runtime) and DIR/manifest.json ({\"stages\": [{\"file\", \"node\", \"inputs\", \"outputs\",\n"
      "\"first_op\", \"last_op\"}]}). plan.json comes from `seifer plan`. A plan of several\n"
      "pipelines (`seifer plan --pipelines`): --pipeline K splits pipeline K (default 0, the\n"
      "top-level stages); --pipeline all writes every pipeline K to DIR/pK/.\n");
}

#define MAX_STAGES 4096

/* Stage boundaries and node names of a stages array of plan.json; errors name the field. */
static int read_stages(const cJSON *st, const char *path, const char *what, int n_ops, int *k,
                       int *pos, char **nodes) {
  if (!cJSON_IsArray(st)) {
    sf_cli_err("%s: %s: expected a 'stages' array", path, what);
    return -1;
  }
  int n = cJSON_GetArraySize(st);
  if (n < 1 || n > MAX_STAGES) {
    sf_cli_err("%s: %s: 'stages' has %d entries (1..%d)", path, what, n, MAX_STAGES);
    return -1;
  }
  for (int i = 0; i < MAX_STAGES; i++) {
    free(nodes[i]);
    nodes[i] = NULL;
  }
  pos[0] = 0;
  for (int i = 0; i < n; i++) {
    const cJSON *s = cJSON_GetArrayItem(st, i);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "first_op"),
                *l = cJSON_GetObjectItemCaseSensitive(s, "last_op"),
                *nd = cJSON_GetObjectItemCaseSensitive(s, "node");
    if (!cJSON_IsNumber(f) || !cJSON_IsNumber(l)) {
      sf_cli_err("%s: %s: stages[%d]: needs numbers 'first_op' and 'last_op'", path, what, i);
      return -1;
    }
    int fo = (int)f->valuedouble, lo = (int)l->valuedouble;
    if (fo != pos[i] || lo < fo || lo >= n_ops) {
      sf_cli_err("%s: %s: stages[%d]: operators %d-%d do not continue the previous stage "
                 "(expected first_op %d, last_op < %d)", path, what, i, fo, lo, pos[i], n_ops);
      return -1;
    }
    pos[i + 1] = lo + 1;
    nodes[i] = cJSON_IsString(nd) ? sf__strdup(nd->valuestring) : NULL;
  }
  if (pos[n] != n_ops) {
    sf_cli_err("%s: %s: the stages end at operator %d, the model has %d", path, what, pos[n] - 1,
               n_ops);
    return -1;
  }
  *k = n;
  return 0;
}

/* The plan document; checks it is for a model of n_ops operators. */
static cJSON *read_plan(const char *path, int n_ops) {
  void *txt = NULL;
  size_t len = 0;
  sf_err err = {0};
  if (sf__read_file(path, 64 << 20, &txt, &len, &err) < 0) {
    sf_cli_err("%s", err.msg);
    return NULL;
  }
  cJSON *root = cJSON_ParseWithLength(txt, len);
  free(txt);
  if (!root || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "stages"))) {
    sf_cli_err("%s: not a plan (expected a JSON object with a 'stages' array)", path);
    cJSON_Delete(root);
    return NULL;
  }
  const cJSON *ops = cJSON_GetObjectItemCaseSensitive(root, "operators");
  if (cJSON_IsNumber(ops) && (int)ops->valuedouble != n_ops) {
    sf_cli_err("%s: the plan is for a model of %d operators, this model has %d", path,
               (int)ops->valuedouble, n_ops);
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

/* The stages of pipeline K: the top-level stages for K = 0, else pipelines[K].stages. */
static const cJSON *pipeline_stages(const cJSON *root, const char *path, int K, int *n_pipes) {
  const cJSON *pipes = cJSON_GetObjectItemCaseSensitive(root, "pipelines");
  *n_pipes = cJSON_IsArray(pipes) ? cJSON_GetArraySize(pipes) : 1;
  if (*n_pipes < 1) *n_pipes = 1;
  if (K == 0) return cJSON_GetObjectItemCaseSensitive(root, "stages");
  if (K >= *n_pipes) {
    sf_cli_err("%s: --pipeline %d: the plan has %d pipeline%s", path, K, *n_pipes,
               *n_pipes == 1 ? "" : "s");
    return NULL;
  }
  return cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(pipes, K), "stages");
}

static int write_pipeline(const sf_partition *pa, const char *model, const char *dir, int k,
                          const int *pos, char **nodes) {
  sf_err err = {0};
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
    sf_cli_err("cannot create '%s': %s", dir, strerror(errno));
    return -1;
  }
  const char *base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
  if (sf__partition_write(pa, base, k, pos, (const char **)nodes, dir, &err) < 0) {
    sf_cli_err("%s", err.msg);
    return -1;
  }
  for (int i = 0; i < k; i++)
    printf("%s/stage-%d.onnx  operators %d-%d%s%s\n", dir, i + 1, pos[i], pos[i + 1] - 1,
           nodes[i] ? "  node " : "", nodes[i] ? nodes[i] : "");
  printf("%s/manifest.json\n", dir);
  return 0;
}

static int run(int argc, char **argv) {
  const char *model = NULL, *plan = NULL, *dir = NULL;
  int nsh = 0, all = 0;
  long which = 0;
  sf_input_shape shapes[16];
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
      if (!(dir = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
    } else if (!strcmp(argv[i], "--pipeline")) {
      if (!(v = sf_cli_value(argc, argv, &i))) return SF_EXIT_USAGE;
      if (!strcmp(v, "all"))
        all = 1;
      else if (sf_cli_int("--pipeline", v, 0, 4095, &which))
        return SF_EXIT_USAGE;
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
  cJSON *root = NULL;
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
  if (!(root = read_plan(plan, pa.n_ops))) goto out;
  int n_pipes = 1;
  if (!all) {
    const cJSON *st = pipeline_stages(root, plan, (int)which, &n_pipes);
    char what[32];
    snprintf(what, sizeof what, "pipeline %ld", which);
    if (!st || read_stages(st, plan, what, pa.n_ops, &k, pos, nodes) ||
        write_pipeline(&pa, model, dir, k, pos, nodes))
      goto out;
  } else {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
      sf_cli_err("cannot create '%s': %s", dir, strerror(errno));
      goto out;
    }
    pipeline_stages(root, plan, 0, &n_pipes);
    for (int K = 0; K < n_pipes; K++) {
      const cJSON *st = pipeline_stages(root, plan, K, &n_pipes);
      char what[32], sub[4096];
      snprintf(what, sizeof what, "pipeline %d", K);
      if (snprintf(sub, sizeof sub, "%s/p%d", dir, K) >= (int)sizeof sub) {
        sf_cli_err("%s: path too long", dir);
        goto out;
      }
      if (!st || read_stages(st, plan, what, pa.n_ops, &k, pos, nodes) ||
          write_pipeline(&pa, model, sub, k, pos, nodes))
        goto out;
    }
  }
  rc = SF_EXIT_OK;
out:
  cJSON_Delete(root);
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
