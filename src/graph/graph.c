/* Graph IR construction, attributes, indexing, topological order and pruning. */
#include "graph/graph.h"

#include <math.h>
#include <string.h>

sf_graph *sf__graph_new(void) {
  sf_graph *g = sf__calloc(1, sizeof *g);
  if (!g) return NULL;
  sf__strmap_init(&g->names);
  g->opset = 13;
  return g;
}

static void tensor_deinit(sf_gtensor *t) {
  free(t->t.name);
  if (t->owns_data) free(t->t.data);
  if (t->dim_params) {
    for (int i = 0; i < SF_MAX_RANK; i++) free(t->dim_params[i]);
    free(t->dim_params);
  }
}

static void attr_deinit(sf_attr *a) {
  free(a->name);
  free(a->s);
  free(a->floats);
  free(a->ints);
  if (a->strings) {
    for (int i = 0; i < a->n; i++) free(a->strings[i]);
    free(a->strings);
  }
  if (a->tensor) {
    free(a->tensor->name);
    free(a->tensor->data);
    free(a->tensor);
  }
}

static void node_deinit(sf_node *n) {
  free(n->name);
  free(n->op_type);
  free(n->domain);
  free(n->in);
  free(n->out);
  for (int i = 0; i < n->n_attr; i++) attr_deinit(&n->attrs[i]);
  free(n->attrs);
}

void sf__graph_free(sf_graph *g) {
  if (!g) return;
  for (int i = 0; i < g->n_nodes; i++) node_deinit(&g->nodes[i]);
  for (int i = 0; i < g->n_tensors; i++) tensor_deinit(&g->tensors[i]);
  free(g->nodes);
  free(g->tensors);
  free(g->inputs);
  free(g->outputs);
  free(g->order);
  free(g->name);
  free(g->producer_name);
  free(g->producer_version);
  sf__strmap_deinit(&g->names);
  free(g);
}

int sf__graph_find(const sf_graph *g, const char *name) { return sf__strmap_get(&g->names, name); }

static int add_tensor(sf_graph *g, const char *name) {
  if (sf__grow((void **)&g->tensors, &g->cap_tensors, g->n_tensors + 1, sizeof *g->tensors))
    return SF_ENOMEM;
  int id = g->n_tensors;
  sf_gtensor *t = &g->tensors[id];
  memset(t, 0, sizeof *t);
  t->t.name = sf__strdup(name);
  if (!t->t.name) return SF_ENOMEM;
  if (sf__strmap_put(&g->names, name, id)) {
    free(t->t.name);
    return SF_ENOMEM;
  }
  t->producer = -1;
  t->alias_of = -1;
  t->arena_off = -1;
  g->n_tensors++;
  return id;
}

int sf__graph_tensor(sf_graph *g, const char *name) {
  int id = sf__graph_find(g, name);
  return id >= 0 ? id : add_tensor(g, name);
}

int sf__graph_new_tensor(sf_graph *g, const char *base) {
  char buf[256];
  for (int k = g->n_tensors;; k++) {
    snprintf(buf, sizeof buf, "%.200s__%d", base ? base : "t", k);
    if (sf__graph_find(g, buf) < 0) return add_tensor(g, buf);
  }
}

int sf__graph_add_node(sf_graph *g, const char *op_type, const char *name, int n_in,
                       const int *in, int n_out, const int *out) {
  if (sf__grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes))
    return SF_ENOMEM;
  sf_node *n = &g->nodes[g->n_nodes];
  memset(n, 0, sizeof *n);
  char gen[64];
  if (!name || !name[0]) {
    snprintf(gen, sizeof gen, "%.40s_%d", op_type, g->n_nodes);
    name = gen;
  }
  n->name = sf__strdup(name);
  n->op_type = sf__strdup(op_type);
  n->domain = sf__strdup("");
  n->in = sf__malloc(sizeof(int) * (size_t)(n_in > 0 ? n_in : 1));
  n->out = sf__malloc(sizeof(int) * (size_t)(n_out > 0 ? n_out : 1));
  if (!n->name || !n->op_type || !n->domain || !n->in || !n->out) {
    node_deinit(n);
    return SF_ENOMEM;
  }
  n->n_in = n_in;
  n->n_out = n_out;
  if (n_in) memcpy(n->in, in, sizeof(int) * (size_t)n_in);
  if (n_out) memcpy(n->out, out, sizeof(int) * (size_t)n_out);
  n->act_min = -INFINITY;
  n->act_max = INFINITY;
  return g->n_nodes++;
}

sf_attr *sf__node_add_attr(sf_node *n, const char *name, int type) {
  /* replace an existing attribute of that name */
  for (int i = 0; i < n->n_attr; i++) {
    if (!strcmp(n->attrs[i].name, name)) {
      char *nm = n->attrs[i].name;
      n->attrs[i].name = NULL;
      attr_deinit(&n->attrs[i]);
      memset(&n->attrs[i], 0, sizeof n->attrs[i]);
      n->attrs[i].name = nm;
      n->attrs[i].type = type;
      return &n->attrs[i];
    }
  }
  sf_attr *na = realloc(n->attrs, sizeof *na * (size_t)(n->n_attr + 1));
  if (!na) return NULL;
  n->attrs = na;
  sf_attr *a = &na[n->n_attr];
  memset(a, 0, sizeof *a);
  a->name = sf__strdup(name);
  if (!a->name) return NULL;
  a->type = type;
  n->n_attr++;
  return a;
}

int sf__node_set_int(sf_node *n, const char *name, int64_t v) {
  sf_attr *a = sf__node_add_attr(n, name, SF_ATTR_INT);
  if (!a) return SF_ENOMEM;
  a->i = v;
  return 0;
}
int sf__node_set_float(sf_node *n, const char *name, float v) {
  sf_attr *a = sf__node_add_attr(n, name, SF_ATTR_FLOAT);
  if (!a) return SF_ENOMEM;
  a->f = v;
  return 0;
}
int sf__node_set_ints(sf_node *n, const char *name, const int64_t *v, int cnt) {
  sf_attr *a = sf__node_add_attr(n, name, SF_ATTR_INTS);
  if (!a) return SF_ENOMEM;
  a->ints = sf__malloc(sizeof(int64_t) * (size_t)cnt);
  if (!a->ints) return SF_ENOMEM;
  if (cnt) memcpy(a->ints, v, sizeof(int64_t) * (size_t)cnt);
  a->n = cnt;
  return 0;
}
int sf__node_set_floats(sf_node *n, const char *name, const float *v, int cnt) {
  sf_attr *a = sf__node_add_attr(n, name, SF_ATTR_FLOATS);
  if (!a) return SF_ENOMEM;
  a->floats = sf__malloc(sizeof(float) * (size_t)cnt);
  if (!a->floats) return SF_ENOMEM;
  if (cnt) memcpy(a->floats, v, sizeof(float) * (size_t)cnt);
  a->n = cnt;
  return 0;
}
int sf__node_set_string(sf_node *n, const char *name, const char *s) {
  sf_attr *a = sf__node_add_attr(n, name, SF_ATTR_STRING);
  if (!a) return SF_ENOMEM;
  a->s = sf__strdup(s);
  return a->s ? 0 : SF_ENOMEM;
}

const sf_attr *sf__attr(const sf_node *n, const char *name) {
  for (int i = 0; i < n->n_attr; i++)
    if (!strcmp(n->attrs[i].name, name)) return &n->attrs[i];
  return NULL;
}
int64_t sf__attr_int(const sf_node *n, const char *name, int64_t def) {
  const sf_attr *a = sf__attr(n, name);
  if (!a) return def;
  if (a->type == SF_ATTR_INT) return a->i;
  if (a->type == SF_ATTR_FLOAT) return (int64_t)a->f;
  return def;
}
float sf__attr_float(const sf_node *n, const char *name, float def) {
  const sf_attr *a = sf__attr(n, name);
  if (!a) return def;
  if (a->type == SF_ATTR_FLOAT) return a->f;
  if (a->type == SF_ATTR_INT) return (float)a->i;
  return def;
}
const char *sf__attr_string(const sf_node *n, const char *name, const char *def) {
  const sf_attr *a = sf__attr(n, name);
  return (a && a->type == SF_ATTR_STRING && a->s) ? a->s : def;
}
int sf__attr_ints(const sf_node *n, const char *name, const int64_t **v) {
  const sf_attr *a = sf__attr(n, name);
  if (!a || a->type != SF_ATTR_INTS) return -1;
  *v = a->ints;
  return a->n;
}
int sf__attr_floats(const sf_node *n, const char *name, const float **v) {
  const sf_attr *a = sf__attr(n, name);
  if (!a || a->type != SF_ATTR_FLOATS) return -1;
  *v = a->floats;
  return a->n;
}

void sf__tensor_set_shape(sf_gtensor *t, int dtype, int rank, const int64_t *dims) {
  SF_CHECK(rank >= 0 && rank <= SF_MAX_RANK);
  t->t.dtype = dtype;
  t->t.rank = rank;
  for (int i = 0; i < rank; i++) t->t.dims[i] = dims[i];
  t->shape_known = 1;
}

int sf__tensor_set_const(sf_graph *g, int id, int dtype, int rank, const int64_t *dims,
                         const void *data) {
  sf_gtensor *t = &g->tensors[id];
  if (rank < 0 || rank > SF_MAX_RANK) return SF_ELIMIT;
  sf_tensor tmp = {.dtype = dtype, .rank = rank};
  for (int i = 0; i < rank; i++) tmp.dims[i] = dims[i];
  int64_t nb = sf_tensor_nbytes(&tmp);
  if (nb < 0 || nb > SF_MAX_TENSOR_BYTES) return SF_ELIMIT;
  void *p = sf__malloc((size_t)nb + SF_READ_SLACK);
  if (!p) return SF_ENOMEM;
  if (nb) memcpy(p, data, (size_t)nb);
  memset((char *)p + nb, 0, SF_READ_SLACK);
  if (t->owns_data) free(t->t.data);
  sf__tensor_set_shape(t, dtype, rank, dims);
  t->t.data = p;
  t->owns_data = 1;
  t->kind = SF_TK_CONST;
  t->t.layout = SF_LAYOUT_PLAIN;
  return 0;
}

/* ---- public tensor helpers ---- */
size_t sf_dtype_size(int dtype) {
  switch (dtype) {
    case SF_F32: case SF_I32: case SF_U32: return 4;
    case SF_U8: case SF_I8: case SF_BOOL: return 1;
    case SF_U16: case SF_I16: case SF_F16: return 2;
    case SF_I64: case SF_F64: case SF_U64: return 8;
  }
  return 0;
}
const char *sf_dtype_name(int dtype) {
  switch (dtype) {
    case SF_F32: return "float32";
    case SF_U8: return "uint8";
    case SF_I8: return "int8";
    case SF_U16: return "uint16";
    case SF_I16: return "int16";
    case SF_I32: return "int32";
    case SF_I64: return "int64";
    case SF_STRING: return "string";
    case SF_BOOL: return "bool";
    case SF_F16: return "float16";
    case SF_F64: return "float64";
    case SF_U32: return "uint32";
    case SF_U64: return "uint64";
  }
  return "undefined";
}
int64_t sf_tensor_numel(const sf_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) {
    if (t->dims[i] < 0) return -1;
    if (sf__mul_ok(n, t->dims[i], INT64_MAX / 16, &n)) return -1;
  }
  return n;
}
int64_t sf_tensor_nbytes(const sf_tensor *t) {
  int64_t n = sf_tensor_numel(t);
  size_t es = sf_dtype_size(t->dtype);
  if (n < 0 || !es) return -1;
  int64_t r;
  if (sf__mul_ok(n, (int64_t)es, INT64_MAX / 2, &r)) return -1;
  return r;
}

const char *sf__shape_str(const sf_tensor *t, char *buf, size_t n) {
  size_t o = 0;
  buf[0] = 0;
  if (t->rank == 0) {
    snprintf(buf, n, "scalar");
    return buf;
  }
  for (int i = 0; i < t->rank && o < n; i++) {
    if (t->dims[i] < 0)
      o += (size_t)snprintf(buf + o, n - o, "%s?", i ? "x" : "");
    else
      o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? "x" : "", (long long)t->dims[i]);
  }
  return buf;
}

/* ---- structure ---- */
void sf__graph_index(sf_graph *g) {
  for (int i = 0; i < g->n_tensors; i++) {
    g->tensors[i].n_consumers = 0;
    g->tensors[i].producer = -1;
    g->tensors[i].is_output = 0;
  }
  for (int i = 0; i < g->n_outputs; i++) g->tensors[g->outputs[i]].is_output = 1;
  for (int ni = 0; ni < g->n_nodes; ni++) {
    sf_node *n = &g->nodes[ni];
    if (n->dead) continue;
    for (int j = 0; j < n->n_in; j++)
      if (n->in[j] >= 0) g->tensors[n->in[j]].n_consumers++;
    for (int j = 0; j < n->n_out; j++)
      if (n->out[j] >= 0) g->tensors[n->out[j]].producer = ni;
  }
}

int sf__graph_validate(sf_graph *g, sf_err *err) {
  sf__graph_index(g);
  for (int ni = 0; ni < g->n_nodes; ni++) {
    sf_node *n = &g->nodes[ni];
    if (n->dead) continue;
    for (int j = 0; j < n->n_in; j++) {
      int id = n->in[j];
      if (id < 0) continue;
      sf_gtensor *t = &g->tensors[id];
      if (t->kind == SF_TK_ACT && t->producer < 0)
        return sf__errf(err, SF_EFORMAT,
                        "%s node '%s': input '%s' is not a graph input, an initializer or the "
                        "output of any node (missing initializer?)",
                        n->op_type, n->name, t->t.name);
    }
  }
  for (int i = 0; i < g->n_outputs; i++) {
    sf_gtensor *t = &g->tensors[g->outputs[i]];
    if (t->kind == SF_TK_ACT && t->producer < 0)
      return sf__errf(err, SF_EFORMAT, "graph output '%s' is produced by no node", t->t.name);
  }
  return 0;
}

/* Kahn's algorithm; ties broken by the original node order (stable, as in the file). */
int sf__graph_toposort(sf_graph *g, sf_err *err) {
  int rc = 0;
  sf__graph_index(g);
  int *indeg = sf__calloc((size_t)g->n_nodes, sizeof(int));
  int *order = sf__malloc(sizeof(int) * (size_t)(g->n_nodes ? g->n_nodes : 1));
  int *queue = sf__malloc(sizeof(int) * (size_t)(g->n_nodes ? g->n_nodes : 1));
  /* consumers lists: CSR */
  int *cnt = sf__calloc((size_t)g->n_tensors + 1, sizeof(int));
  int *adj = NULL;
  if (!indeg || !order || !queue || !cnt) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory sorting the graph");
    goto out;
  }
  int total = 0;
  for (int ni = 0; ni < g->n_nodes; ni++) {
    sf_node *n = &g->nodes[ni];
    if (n->dead) continue;
    for (int j = 0; j < n->n_in; j++) {
      int id = n->in[j];
      if (id < 0) continue;
      int p = g->tensors[id].producer;
      if (p >= 0) {
        indeg[ni]++;
        cnt[id + 1]++;
        total++;
      }
    }
  }
  for (int i = 0; i < g->n_tensors; i++) cnt[i + 1] += cnt[i];
  adj = sf__malloc(sizeof(int) * (size_t)(total ? total : 1));
  int *fill = sf__calloc((size_t)g->n_tensors, sizeof(int));
  if (!adj || !fill) {
    free(fill);
    rc = sf__errf(err, SF_ENOMEM, "out of memory sorting the graph");
    goto out;
  }
  for (int ni = 0; ni < g->n_nodes; ni++) {
    sf_node *n = &g->nodes[ni];
    if (n->dead) continue;
    for (int j = 0; j < n->n_in; j++) {
      int id = n->in[j];
      if (id < 0 || g->tensors[id].producer < 0) continue;
      adj[cnt[id] + fill[id]++] = ni;
    }
  }
  free(fill);
  /* a min-heap would keep file order exactly; a FIFO seeded in file order is close enough and
   * O(V+E). */
  int qh = 0, qt = 0, no = 0, live = 0;
  for (int ni = 0; ni < g->n_nodes; ni++) {
    if (g->nodes[ni].dead) continue;
    live++;
    if (!indeg[ni]) queue[qt++] = ni;
  }
  while (qh < qt) {
    int ni = queue[qh++];
    order[no++] = ni;
    sf_node *n = &g->nodes[ni];
    for (int j = 0; j < n->n_out; j++) {
      int id = n->out[j];
      if (id < 0) continue;
      for (int e = cnt[id]; e < cnt[id + 1]; e++) {
        int c = adj[e];
        if (--indeg[c] == 0) queue[qt++] = c;
      }
    }
  }
  if (no != live) {
    for (int ni = 0; ni < g->n_nodes; ni++)
      if (!g->nodes[ni].dead && indeg[ni] > 0) {
        rc = sf__errf(err, SF_EFORMAT, "graph has a cycle through %s node '%s'",
                      g->nodes[ni].op_type, g->nodes[ni].name);
        break;
      }
    goto out;
  }
  free(g->order);
  g->order = order;
  g->n_order = no;
  order = NULL;
out:
  free(indeg);
  free(order);
  free(queue);
  free(cnt);
  free(adj);
  return rc;
}

void sf__graph_prune(sf_graph *g) {
  sf__graph_index(g);
  /* mark live tensors backwards from outputs using the current order if any */
  char *live = sf__calloc((size_t)g->n_tensors + 1, 1);
  if (!live) return;
  for (int i = 0; i < g->n_outputs; i++) live[g->outputs[i]] = 1;
  /* one reverse pass over a valid topological order; else iterate to a fixpoint */
  int by_order = g->n_order > 0;
  for (int oi = 0; by_order && oi < g->n_order; oi++)
    if (g->nodes[g->order[oi]].dead) by_order = 0; /* stale order */
  int changed = 1;
  while (changed) {
    changed = 0;
    for (int k = (by_order ? g->n_order : g->n_nodes) - 1; k >= 0; k--) {
      int ni = by_order ? g->order[k] : k;
      sf_node *n = &g->nodes[ni];
      if (n->dead) continue;
      int used = 0;
      for (int j = 0; j < n->n_out; j++)
        if (n->out[j] >= 0 && live[n->out[j]]) used = 1;
      if (!used) continue;
      for (int j = 0; j < n->n_in; j++)
        if (n->in[j] >= 0 && !live[n->in[j]]) {
          live[n->in[j]] = 1;
          changed = !by_order;
        }
    }
  }
  for (int ni = 0; ni < g->n_nodes; ni++) {
    sf_node *n = &g->nodes[ni];
    if (n->dead) continue;
    int used = 0;
    for (int j = 0; j < n->n_out; j++)
      if (n->out[j] >= 0 && live[n->out[j]]) used = 1;
    if (!used) n->dead = 1;
  }
  /* constants no live node reads: free their data (graph inputs frozen to constants keep it) */
  for (int i = 0; i < g->n_inputs; i++) live[g->inputs[i]] = 1;
  for (int i = 0; i < g->n_tensors; i++) {
    sf_gtensor *t = &g->tensors[i];
    if (t->kind == SF_TK_CONST && !live[i] && t->owns_data) {
      free(t->t.data);
      t->t.data = NULL;
      t->owns_data = 0;
    }
  }
  free(live);
  sf__graph_index(g);
}

/* ---- deep copy ---- */
static int clone_attr(sf_attr *d, const sf_attr *s) {
  memset(d, 0, sizeof *d);
  d->type = s->type;
  d->f = s->f;
  d->i = s->i;
  d->n = s->n;
  d->name = sf__strdup(s->name);
  if (!d->name) return SF_ENOMEM;
  if (s->s && !(d->s = sf__strdup(s->s))) return SF_ENOMEM;
  if (s->floats) {
    if (!(d->floats = sf__malloc(sizeof(float) * (size_t)s->n))) return SF_ENOMEM;
    memcpy(d->floats, s->floats, sizeof(float) * (size_t)s->n);
  }
  if (s->ints) {
    if (!(d->ints = sf__malloc(sizeof(int64_t) * (size_t)s->n))) return SF_ENOMEM;
    memcpy(d->ints, s->ints, sizeof(int64_t) * (size_t)s->n);
  }
  if (s->strings) {
    if (!(d->strings = sf__calloc((size_t)s->n, sizeof(char *)))) return SF_ENOMEM;
    for (int i = 0; i < s->n; i++)
      if (!(d->strings[i] = sf__strdup(s->strings[i]))) return SF_ENOMEM;
  }
  if (s->tensor) {
    if (!(d->tensor = sf__calloc(1, sizeof(sf_tensor)))) return SF_ENOMEM;
    *d->tensor = *s->tensor;
    d->tensor->name = sf__strdup(s->tensor->name);
    int64_t nb = sf_tensor_nbytes(s->tensor);
    d->tensor->data = sf__malloc((size_t)(nb > 0 ? nb : 1));
    if (!d->tensor->name || !d->tensor->data) return SF_ENOMEM;
    if (nb > 0 && s->tensor->data) memcpy(d->tensor->data, s->tensor->data, (size_t)nb);
  }
  return 0;
}

static sf_graph *clone(const sf_graph *s, int share) {
  sf_graph *g = sf__graph_new();
  if (!g) return NULL;
  g->opset = s->opset;
  g->ir_version = s->ir_version;
  if (s->name && !(g->name = sf__strdup(s->name))) goto err;
  if (s->producer_name && !(g->producer_name = sf__strdup(s->producer_name))) goto err;
  if (s->producer_version && !(g->producer_version = sf__strdup(s->producer_version))) goto err;
  for (int i = 0; i < s->n_tensors; i++) {
    const sf_gtensor *st = &s->tensors[i];
    int id = add_tensor(g, st->t.name);
    if (id != i) goto err;
    sf_gtensor *t = &g->tensors[id];
    char *nm = t->t.name;
    *t = *st;
    t->t.name = nm;
    t->dim_params = NULL;
    t->owns_data = 0;
    t->t.data = NULL;
    if (st->dim_params) {
      if (!(t->dim_params = sf__calloc(SF_MAX_RANK, sizeof(char *)))) goto err;
      for (int k = 0; k < SF_MAX_RANK; k++)
        if (st->dim_params[k] && !(t->dim_params[k] = sf__strdup(st->dim_params[k]))) goto err;
    }
    if (st->kind == SF_TK_CONST && st->t.data && share) {
      t->t.data = st->t.data;
    } else if (st->kind == SF_TK_CONST && st->t.data) {
      int64_t nb = sf_tensor_nbytes(&st->t);
      if (nb < 0) goto err;
      /* slack: XNNPACK kernels may read SF_READ_SLACK bytes past the end of any input */
      if (!(t->t.data = sf__malloc((size_t)nb + SF_READ_SLACK))) goto err;
      memcpy(t->t.data, st->t.data, (size_t)nb);
      memset((char *)t->t.data + nb, 0, SF_READ_SLACK);
      t->owns_data = 1;
    }
  }
  for (int i = 0; i < s->n_nodes; i++) {
    const sf_node *sn = &s->nodes[i];
    int ni = sf__graph_add_node(g, sn->op_type, sn->name, sn->n_in, sn->in, sn->n_out, sn->out);
    if (ni < 0) goto err;
    sf_node *n = &g->nodes[ni];
    free(n->domain);
    if (!(n->domain = sf__strdup(sn->domain))) goto err;
    n->dead = sn->dead;
    if (sn->n_attr) {
      if (!(n->attrs = sf__calloc((size_t)sn->n_attr, sizeof(sf_attr)))) goto err;
      for (int a = 0; a < sn->n_attr; a++) {
        n->n_attr = a + 1;
        if (clone_attr(&n->attrs[a], &sn->attrs[a])) goto err;
      }
    }
  }
  if (s->n_inputs) {
    if (!(g->inputs = sf__malloc(sizeof(int) * (size_t)s->n_inputs))) goto err;
    memcpy(g->inputs, s->inputs, sizeof(int) * (size_t)s->n_inputs);
  }
  g->n_inputs = s->n_inputs;
  if (s->n_outputs) {
    if (!(g->outputs = sf__malloc(sizeof(int) * (size_t)s->n_outputs))) goto err;
    memcpy(g->outputs, s->outputs, sizeof(int) * (size_t)s->n_outputs);
  }
  g->n_outputs = s->n_outputs;
  return g;
err:
  sf__graph_free(g);
  return NULL;
}

sf_graph *sf__graph_clone(const sf_graph *g) { return clone(g, 0); }
sf_graph *sf__graph_clone_shared(const sf_graph *g) { return clone(g, 1); }

int sf__node_copy_attr(sf_node *n, const sf_attr *src) {
  sf_attr *d = sf__node_add_attr(n, src->name, src->type);
  if (!d) return SF_ENOMEM;
  free(d->name);
  return clone_attr(d, src); /* on failure the partial copy is freed with the node */
}
