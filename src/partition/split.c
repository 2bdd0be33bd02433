/* Splitting a model into standalone stage models and a manifest. See partition.h.
 *
 * Cost: per stage, one copy of the constants its operators read plus one serialization. */
#include <cJSON.h>
#include <stdio.h>
#include <string.h>

#include "partition/partition.h"

static int copy_attr(sf_node *n, const sf_attr *s) {
  if (s->type == SF_ATTR_GRAPH) return SF_EUNSUPPORTED;
  return sf__node_copy_attr(n, s);
}

/* Tensor of the stage graph s standing for tensor id of the analysed graph g: constants are
 * copied (once), activations get their dtype and shape. */
static int stage_tensor(sf_graph *s, const sf_graph *g, int id, sf_err *err) {
  const sf_gtensor *t = &g->tensors[id];
  int sid = sf__graph_find(s, t->t.name);
  if (sid >= 0) return sid;
  sid = sf__graph_tensor(s, t->t.name);
  if (sid < 0) return sf__errf(err, SF_ENOMEM, "out of memory");
  if (t->kind == SF_TK_CONST) {
    if (!t->t.data)
      return sf__errf(err, SF_EINTERNAL, "constant '%s' has no data", t->t.name);
    int rc = sf__tensor_set_const(s, sid, t->t.dtype, t->t.rank, t->t.dims, t->t.data);
    if (rc) return sf__errf(err, rc, "cannot copy constant '%s'", t->t.name);
  } else if (t->shape_known) {
    sf__tensor_set_shape(&s->tensors[sid], t->t.dtype, t->t.rank, t->t.dims);
  }
  return sid;
}

static int set_ids(int **arr, int *n, int cnt) {
  *arr = sf__malloc(sizeof(int) * (size_t)(cnt ? cnt : 1));
  *n = cnt;
  return *arr ? 0 : SF_ENOMEM;
}

int sf__partition_stage_graph(const sf_partition *p, int a, int b, sf_graph **out, sf_err *err) {
  *out = NULL;
  if (a < 0 || b > p->n_ops || a >= b)
    return sf__errf(err, SF_EINVAL, "stage [%d, %d) is not a range of the %d operators", a, b,
                    p->n_ops);
  const sf_graph *g = p->g;
  sf_graph *s = sf__graph_new();
  int rc = 0, *in = NULL, *outs = NULL;
  if (!s) return sf__errf(err, SF_ENOMEM, "out of memory");
  s->opset = g->opset;
  s->ir_version = g->ir_version;
  char nm[512];
  snprintf(nm, sizeof nm, "%.400s_ops_%d_%d", g->name ? g->name : "model", a, b);
  if (!(s->name = sf__strdup(nm)) ||
      (g->producer_name && !(s->producer_name = sf__strdup(g->producer_name))) ||
      (g->producer_version && !(s->producer_version = sf__strdup(g->producer_version)))) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto fail;
  }
  const int *cin, *cout;
  int nin = sf__partition_crossing(p, a, &cin), nout = sf__partition_crossing(p, b, &cout);
  if (set_ids(&s->inputs, &s->n_inputs, nin)) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto fail;
  }
  for (int i = 0; i < nin; i++) {
    int sid = stage_tensor(s, g, cin[i], err);
    if (sid < 0) {
      rc = sid;
      goto fail;
    }
    s->tensors[sid].kind = SF_TK_INPUT;
    s->inputs[i] = sid;
  }
  int cap = 8;
  in = sf__malloc(sizeof(int) * (size_t)cap);
  outs = sf__malloc(sizeof(int) * (size_t)cap);
  if (!in || !outs) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto fail;
  }
  for (int q = a; q < b; q++) {
    const sf_node *n = &g->nodes[p->ops[q]];
    int need = n->n_in > n->n_out ? n->n_in : n->n_out;
    if (need > cap) {
      int *ni = realloc(in, sizeof(int) * (size_t)need), *no = NULL;
      if (ni) in = ni;
      if (ni) no = realloc(outs, sizeof(int) * (size_t)need);
      if (!ni || !no) {
        rc = sf__errf(err, SF_ENOMEM, "out of memory");
        goto fail;
      }
      outs = no;
      cap = need;
    }
    for (int j = 0; j < n->n_in; j++) {
      in[j] = -1;
      if (n->in[j] < 0) continue;
      int sid = stage_tensor(s, g, n->in[j], err);
      if (sid < 0) {
        rc = sid;
        goto fail;
      }
      in[j] = sid;
    }
    for (int j = 0; j < n->n_out; j++) {
      outs[j] = -1;
      if (n->out[j] < 0) continue;
      int sid = stage_tensor(s, g, n->out[j], err);
      if (sid < 0) {
        rc = sid;
        goto fail;
      }
      outs[j] = sid;
    }
    int ni = sf__graph_add_node(s, n->op_type, n->name, n->n_in, in, n->n_out, outs);
    if (ni < 0) {
      rc = sf__errf(err, SF_ENOMEM, "out of memory");
      goto fail;
    }
    sf_node *d = &s->nodes[ni];
    free(d->domain);
    if (!(d->domain = sf__strdup(n->domain))) {
      rc = sf__errf(err, SF_ENOMEM, "out of memory");
      goto fail;
    }
    for (int k = 0; k < n->n_attr; k++)
      if ((rc = copy_attr(d, &n->attrs[k]))) {
        rc = sf__errf(err, rc, "%s node '%s': cannot copy attribute '%s'%s", n->op_type, n->name,
                      n->attrs[k].name, rc == SF_EUNSUPPORTED ? " (subgraph)" : "");
        goto fail;
      }
  }
  if (set_ids(&s->outputs, &s->n_outputs, nout)) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto fail;
  }
  for (int i = 0; i < nout; i++) {
    int sid = sf__graph_find(s, g->tensors[cout[i]].t.name);
    if (sid < 0) {
      rc = sf__errf(err, SF_EINTERNAL, "stage [%d, %d): output '%s' is not produced", a, b,
                    g->tensors[cout[i]].t.name);
      goto fail;
    }
    s->outputs[i] = sid;
  }
  sf__graph_index(s);
  if ((rc = sf__graph_toposort(s, err))) goto fail;
  free(in);
  free(outs);
  *out = s;
  return 0;
fail:
  free(in);
  free(outs);
  sf__graph_free(s);
  return rc;
}

static cJSON *names_json(const sf_graph *g, const int *ids, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < n; i++) {
    cJSON *s = cJSON_CreateString(g->tensors[ids[i]].t.name);
    if (!s) {
      cJSON_Delete(a);
      return NULL;
    }
    cJSON_AddItemToArray(a, s);
  }
  return a;
}

int sf__partition_write(const sf_partition *p, const char *model_name, int n_stages,
                        const int *pos, const char **node_names, const char *dir, sf_err *err) {
  if (n_stages < 1 || !pos || !dir)
    return sf__errf(err, SF_EINVAL, "need at least one stage, its cut positions and a directory");
  if (pos[0] != 0 || pos[n_stages] != p->n_ops)
    return sf__errf(err, SF_EINVAL, "cuts must run from position 0 to %d (got %d .. %d)",
                    p->n_ops, pos[0], pos[n_stages]);
  for (int k = 0; k < n_stages; k++)
    if (pos[k] >= pos[k + 1])
      return sf__errf(err, SF_EINVAL, "cut positions must increase (stage %d: %d .. %d)", k + 1,
                      pos[k], pos[k + 1]);
  int rc = 0;
  char path[4096];
  cJSON *root = cJSON_CreateObject(), *stages = cJSON_CreateArray();
  char *text = NULL;
  if (!root || !stages) {
    cJSON_Delete(stages);
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto out;
  }
  cJSON_AddStringToObject(root, "model", model_name ? model_name : (p->g->name ? p->g->name : ""));
  cJSON_AddItemToObject(root, "stages", stages);
  for (int k = 0; k < n_stages; k++) {
    int a = pos[k], b = pos[k + 1];
    sf_graph *s = NULL;
    void *buf = NULL;
    size_t len = 0;
    if ((rc = sf__partition_stage_graph(p, a, b, &s, err))) goto out;
    rc = sf__onnx_serialize(s, &buf, &len, err);
    sf__graph_free(s);
    if (rc) goto out;
    char file[64];
    snprintf(file, sizeof file, "stage-%d.onnx", k + 1);
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, file) >= sizeof path) {
      free(buf);
      rc = sf__errf(err, SF_EINVAL, "directory name too long");
      goto out;
    }
    rc = sf__write_file(path, buf, len, err);
    free(buf);
    if (rc) goto out;
    cJSON *st = cJSON_CreateObject();
    if (!st) {
      rc = sf__errf(err, SF_ENOMEM, "out of memory");
      goto out;
    }
    cJSON_AddItemToArray(stages, st);
    cJSON_AddStringToObject(st, "file", file);
    if (node_names && node_names[k])
      cJSON_AddStringToObject(st, "node", node_names[k]);
    else
      cJSON_AddNullToObject(st, "node");
    const int *ids;
    int n = sf__partition_crossing(p, a, &ids);
    cJSON_AddItemToObject(st, "inputs", names_json(p->g, ids, n));
    n = sf__partition_crossing(p, b, &ids);
    cJSON_AddItemToObject(st, "outputs", names_json(p->g, ids, n));
    cJSON_AddStringToObject(st, "first_op", p->g->nodes[p->ops[a]].name);
    cJSON_AddStringToObject(st, "last_op", p->g->nodes[p->ops[b - 1]].name);
    cJSON_AddNumberToObject(st, "first_pos", a);
    cJSON_AddNumberToObject(st, "end_pos", b);
    cJSON_AddNumberToObject(st, "flops", p->flops_at[b] - p->flops_at[a]);
    cJSON_AddNumberToObject(st, "in_bytes", p->pos_bytes[a]);
    cJSON_AddNumberToObject(st, "out_bytes", p->pos_bytes[b]);
    cJSON_AddNumberToObject(st, "mem_bytes", (double)sf__partition_stage_mem(p, a, b, NULL, NULL));
  }
  if (!(text = cJSON_Print(root))) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto out;
  }
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  rc = sf__write_file(path, text, strlen(text), err);
out:
  free(text);
  cJSON_Delete(root);
  return rc;
}

int sf__partition_split(const sf_model *m, const sf_pcosts *c, int n_stages, const int *cuts,
                        const char **node_names, const char *dir, sf_err *err) {
  if (!m || !c || !cuts || n_stages < 1)
    return sf__errf(err, SF_EINVAL, "split needs a model, its costs and %d+1 cuts", n_stages);
  for (int k = 0; k <= n_stages; k++)
    if (cuts[k] < 0 || cuts[k] >= c->n)
      return sf__errf(err, SF_EINVAL, "cut %d = %d is not a candidate cut (0..%d)", k, cuts[k],
                      c->n - 1);
  sf_partition p;
  int rc = sf__partition_analyze(m, NULL, &p, err);
  if (rc) return rc;
  int *pos = sf__malloc(sizeof(int) * ((size_t)n_stages + 1));
  if (!pos) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto out;
  }
  if (c->pos[c->n - 1] != p.n_ops) {
    rc = sf__errf(err, SF_EINVAL, "the costs were computed for %d operators, the model has %d",
                  c->pos[c->n - 1], p.n_ops);
    goto out;
  }
  for (int k = 0; k <= n_stages; k++) pos[k] = c->pos[cuts[k]];
  rc = sf__partition_write(&p, m->path, n_stages, pos, node_names, dir, err);
out:
  free(pos);
  sf__partition_deinit(&p);
  return rc;
}
