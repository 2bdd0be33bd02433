/* seifer inspect MODEL [--json] [--input-shape NAME=DIMS]...: what a model is and costs. */
#include <cJSON.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "onnx/onnx.h"

static void usage(void) {
  printf(
      "usage: seifer inspect MODEL [--json] [--nodes] [--input-shape NAME=D1,D2,...]...\n"
      "Inputs and outputs (shapes, dtypes), operator histogram, parameter count, weights bytes,\n"
      "FLOPs per inference and the planned activation arena bytes.\n"
      "Dynamic dims not given with --input-shape are taken as 1.\n"
      "--nodes lists the nodes of the model as stored (op, name, inputs -> outputs).\n");
}

typedef struct hist {
  const char *op;
  int count;
} hist;

static int cmp_hist(const void *a, const void *b) {
  const hist *x = a, *y = b;
  if (x->count != y->count) return y->count - x->count;
  return strcmp(x->op, y->op);
}

static cJSON *tensor_json(const sf_gtensor *t) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", t->t.name);
  cJSON_AddStringToObject(o, "dtype", sf_dtype_name(t->t.dtype));
  cJSON *sh = cJSON_AddArrayToObject(o, "shape");
  for (int d = 0; d < t->t.rank; d++) {
    if (t->t.dims[d] >= 0)
      cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->t.dims[d]));
    else if (t->dim_params && t->dim_params[d])
      cJSON_AddItemToArray(sh, cJSON_CreateString(t->dim_params[d]));
    else
      cJSON_AddItemToArray(sh, cJSON_CreateNull());
  }
  return o;
}

static void print_tensor(const char *what, const sf_gtensor *t, const sf_tensor *resolved) {
  char a[256] = "", b[256];
  size_t o = 0;
  for (int d = 0; d < t->t.rank && o < sizeof a; d++) {
    if (t->t.dims[d] >= 0)
      o += (size_t)snprintf(a + o, sizeof a - o, "%s%lld", d ? "x" : "", (long long)t->t.dims[d]);
    else
      o += (size_t)snprintf(a + o, sizeof a - o, "%s%s", d ? "x" : "",
                            t->dim_params && t->dim_params[d] ? t->dim_params[d] : "?");
  }
  if (!t->t.rank) snprintf(a, sizeof a, "scalar");
  printf("  %-6s %-24s %-8s %s", what, t->t.name, sf_dtype_name(t->t.dtype), a);
  if (resolved && strcmp(a, sf__shape_str(resolved, b, sizeof b))) printf("  (as %s)", b);
  printf("\n");
}

/* One line per node of the model as loaded: op, name, inputs -> outputs. */
static void print_nodes(const sf_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    const sf_node *n = &g->nodes[i];
    printf("%5d %-20s %-28s", i, n->op_type, n->name);
    for (int j = 0; j < n->n_in; j++) {
      const sf_gtensor *t = n->in[j] >= 0 ? &g->tensors[n->in[j]] : NULL;
      printf("%s%s%s", j ? ", " : " ", t ? t->t.name : "-", t && t->kind == SF_TK_CONST ? "(c)" : "");
    }
    printf(" ->");
    for (int j = 0; j < n->n_out; j++)
      printf("%s%s", j ? ", " : " ", n->out[j] >= 0 ? g->tensors[n->out[j]].t.name : "-");
    printf("\n");
  }
}

static int run(int argc, char **argv) {
  const char *path = NULL;
  int json = 0, nsh = 0, nodes_only = 0;
  sf_input_shape shapes[16];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else if (!strcmp(argv[i], "--nodes")) {
      nodes_only = 1;
    } else if (!strcmp(argv[i], "--input-shape")) {
      const char *v = sf_cli_value(argc, argv, &i);
      if (!v) return SF_EXIT_USAGE;
      if (nsh >= 16) {
        sf_cli_err("too many --input-shape options (max 16)");
        return SF_EXIT_USAGE;
      }
      if (sf_cli_shape(v, &shapes[nsh++])) return SF_EXIT_USAGE;
    } else if (argv[i][0] == '-') {
      sf_cli_err("inspect: unknown option '%s'", argv[i]);
      return SF_EXIT_USAGE;
    } else if (!path) {
      path = argv[i];
    } else {
      sf_cli_err("inspect: more than one model given ('%s')", argv[i]);
      return SF_EXIT_USAGE;
    }
  }
  if (!path) {
    usage();
    return SF_EXIT_USAGE;
  }
  sf_model *m = NULL;
  sf_session *s = NULL;
  if (nodes_only) {
    if (sf_cli_open(path, NULL, &m, NULL)) return SF_EXIT_FAIL;
    print_nodes(m->g);
    sf_model_free(m);
    return SF_EXIT_OK;
  }
  sf_session_opts o = sf_session_opts_default();
  o.threads = 1;
  o.release_weights = 1;
  o.n_shapes = nsh;
  o.shapes = shapes;
  if (sf_cli_open(path, &o, &m, &s)) return SF_EXIT_FAIL;
  sf_graph *g = m->g;
  sf_session_stats st;
  sf_session_get_stats(s, &st);

  hist *h = sf__calloc((size_t)g->n_nodes + 1, sizeof *h);
  int nh = 0, nodes = 0;
  for (int i = 0; h && i < g->n_nodes; i++) {
    if (g->nodes[i].dead) continue;
    nodes++;
    int k;
    for (k = 0; k < nh; k++)
      if (!strcmp(h[k].op, g->nodes[i].op_type)) break;
    if (k == nh) h[nh++].op = g->nodes[i].op_type;
    h[k].count++;
  }
  if (h) qsort(h, (size_t)nh, sizeof *h, cmp_hist);

  if (json) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", path);
    cJSON_AddNumberToObject(root, "opset", (double)g->opset);
    cJSON_AddStringToObject(root, "producer", g->producer_name ? g->producer_name : "");
    cJSON *ins = cJSON_AddArrayToObject(root, "inputs");
    for (int i = 0; i < g->n_inputs; i++) {
      cJSON *t = tensor_json(&g->tensors[g->inputs[i]]);
      const sf_tensor *r = sf_session_input(s, i);
      cJSON *rs = cJSON_AddArrayToObject(t, "resolved_shape");
      for (int d = 0; d < r->rank; d++)
        cJSON_AddItemToArray(rs, cJSON_CreateNumber((double)r->dims[d]));
      cJSON_AddItemToArray(ins, t);
    }
    cJSON *outs = cJSON_AddArrayToObject(root, "outputs");
    for (int i = 0; i < g->n_outputs; i++) {
      cJSON *t = tensor_json(&g->tensors[g->outputs[i]]);
      const sf_tensor *r = sf_session_output(s, i);
      cJSON *rs = cJSON_AddArrayToObject(t, "resolved_shape");
      for (int d = 0; d < r->rank; d++)
        cJSON_AddItemToArray(rs, cJSON_CreateNumber((double)r->dims[d]));
      cJSON_AddItemToArray(outs, t);
    }
    cJSON *ops = cJSON_AddObjectToObject(root, "operators");
    for (int k = 0; k < nh; k++) cJSON_AddNumberToObject(ops, h[k].op, h[k].count);
    cJSON_AddNumberToObject(root, "nodes", nodes);
    cJSON_AddNumberToObject(root, "params", (double)st.params);
    cJSON_AddNumberToObject(root, "weights_bytes", (double)st.weights_bytes);
    cJSON_AddNumberToObject(root, "flops", (double)st.flops);
    cJSON_AddNumberToObject(root, "arena_bytes", (double)st.arena_bytes);
    cJSON_AddNumberToObject(root, "compiled_nodes", st.n_nodes);
    char *txt = cJSON_Print(root);
    if (txt) puts(txt);
    free(txt);
    cJSON_Delete(root);
  } else {
    printf("model    %s\n", path);
    printf("opset    %lld   producer %s %s\n", (long long)g->opset,
           g->producer_name ? g->producer_name : "?",
           g->producer_version ? g->producer_version : "");
    for (int i = 0; i < g->n_inputs; i++)
      print_tensor("input", &g->tensors[g->inputs[i]], sf_session_input(s, i));
    for (int i = 0; i < g->n_outputs; i++)
      print_tensor("output", &g->tensors[g->outputs[i]], sf_session_output(s, i));
    printf("operators (%d nodes):\n", nodes);
    for (int k = 0; k < nh; k++) printf("  %-22s %d\n", h[k].op, h[k].count);
    printf("parameters        %lld\n", (long long)st.params);
    printf("weights bytes     %lld (%.1f MiB)\n", (long long)st.weights_bytes,
           (double)st.weights_bytes / 1048576.0);
    printf("FLOPs             %lld (%.3f GFLOP)\n", (long long)st.flops, (double)st.flops / 1e9);
    printf("activation arena  %lld bytes (%.1f MiB)\n", (long long)st.arena_bytes,
           (double)st.arena_bytes / 1048576.0);
    printf("compiled nodes    %d\n", st.n_nodes);
  }
  free(h);
  sf_session_free(s);
  sf_model_free(m);
  return SF_EXIT_OK;
}

const sf_cmd sf_cmd_inspect = {"inspect", "show a model's inputs, outputs, operators and costs", run,
                               usage};
