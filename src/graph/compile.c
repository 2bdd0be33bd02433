/* Graph compilation: bind operators, infer shapes and fold constants, fuse, choose layouts, plan
 * memory. See compile.h. */
#include "graph/compile.h"

#include <math.h>
#include <string.h>
#include <xnnpack.h>

#include "runtime/op.h"

_Static_assert(SF_READ_SLACK >= XNN_EXTRA_BYTES, "buffers must carry XNNPACK's read slack");

/* ---- input shapes ---- */
static int resolve_inputs(sf_graph *g, const sf_compile_opts *o, sf_compile_result *res,
                          sf_err *err) {
  for (int s = 0; s < o->n_shapes; s++) {
    int found = 0;
    for (int i = 0; i < g->n_inputs; i++)
      if (!strcmp(g->tensors[g->inputs[i]].t.name, o->shapes[s].name)) found = 1;
    if (!found) {
      char names[512] = "";
      size_t off = 0;
      for (int i = 0; i < g->n_inputs && off < sizeof names - 1; i++)
        off += (size_t)snprintf(names + off, sizeof names - off, "%s'%s'", i ? ", " : "",
                                g->tensors[g->inputs[i]].t.name);
      return sf__errf(err, SF_ENOTFOUND, "no model input named '%s' (inputs: %s)",
                      o->shapes[s].name, names);
    }
  }
  for (int i = 0; i < g->n_inputs; i++) {
    sf_gtensor *t = &g->tensors[g->inputs[i]];
    t->kind = SF_TK_INPUT;
    if (t->t.dtype == SF_UNDEFINED)
      return sf__errf(err, SF_EFORMAT, "input '%s' has no element type", t->t.name);
    const sf_input_shape *given = NULL;
    for (int s = 0; s < o->n_shapes; s++)
      if (!strcmp(o->shapes[s].name, t->t.name)) given = &o->shapes[s];
    if (given) {
      if (given->rank < 0 || given->rank > SF_MAX_RANK)
        return sf__errf(err, SF_ELIMIT, "input '%s': rank %d out of range", t->t.name,
                        given->rank);
      if (t->shape_known && t->t.rank != given->rank)
        return sf__errf(err, SF_ESHAPE, "input '%s': model says rank %d, given rank %d",
                        t->t.name, t->t.rank, given->rank);
      for (int d = 0; d < given->rank; d++) {
        int64_t v = given->dims[d];
        if (v < 0 || v > SF_MAX_DIM)
          return sf__errf(err, SF_ELIMIT, "input '%s': dim %d = %lld out of range", t->t.name,
                          d, (long long)v);
        if (t->shape_known && t->t.dims[d] >= 0 && t->t.dims[d] != v) {
          char a[128], b[128];
          sf_tensor gt = t->t;
          gt.rank = given->rank;
          memcpy(gt.dims, given->dims, sizeof(int64_t) * (size_t)given->rank);
          return sf__errf(err, SF_ESHAPE, "input '%s': model expects shape %s, given %s",
                          t->t.name, sf__shape_str(&t->t, a, sizeof a),
                          sf__shape_str(&gt, b, sizeof b));
        }
      }
      sf__tensor_set_shape(t, t->t.dtype, given->rank, given->dims);
    } else {
      if (!t->shape_known)
        return sf__errf(err, SF_ESHAPE, "input '%s' has no shape in the model; give one",
                        t->t.name);
      for (int d = 0; d < t->t.rank; d++)
        if (t->t.dims[d] < 0) {
          t->t.dims[d] = 1; /* unresolved symbolic dim: batch 1 */
          res->defaulted_input = i + 1;
        }
    }
    int64_t nb = sf_tensor_nbytes(&t->t);
    if (nb < 0 || nb > SF_MAX_TENSOR_BYTES)
      return sf__errf(err, SF_ELIMIT, "input '%s' would need %lld bytes (limit %lld)",
                      t->t.name, (long long)nb, (long long)SF_MAX_TENSOR_BYTES);
  }
  return 0;
}

/* Inputs whose values determine output shapes, per operator (bit j = input j). */
static unsigned shape_inputs(const sf_node *n) {
  static const struct {
    const char *op;
    unsigned mask;
  } tab[] = {
      {"Reshape", 1u << 1},   {"Slice", 0x1eu},           {"Pad", 0xeu},
      {"Resize", 0xeu},       {"Upsample", 1u << 1},      {"Squeeze", 1u << 1},
      {"Unsqueeze", 1u << 1}, {"Split", 1u << 1},         {"ConstantOfShape", 1u},
      {"ReduceSum", 1u << 1}, {"ReduceMean", 1u << 1},    {"Expand", 1u << 1},
      {"Tile", 1u << 1},      {"Dropout", (1u << 1) | (1u << 2)},
  };
  if (n->domain[0]) return 0;
  for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
    if (!strcmp(tab[i].op, n->op_type)) return tab[i].mask;
  return 0;
}

/* Freeze inputs with a known value that some node needs as a constant. */
static int freeze_inputs(sf_graph *g, const sf_compile_opts *o, sf_err *err) {
  for (int v = 0; v < o->n_values; v++) {
    const sf_tensor *val = &o->values[v];
    int k = -1;
    for (int i = 0; i < g->n_inputs; i++)
      if (!strcmp(g->tensors[g->inputs[i]].t.name, val->name)) k = i;
    if (k < 0) continue;
    int id = g->inputs[k], needed = 0;
    for (int ni = 0; ni < g->n_nodes && !needed; ni++) {
      const sf_node *n = &g->nodes[ni];
      unsigned m = n->dead ? 0 : shape_inputs(n);
      for (int j = 0; j < n->n_in && j < 32; j++)
        if ((m >> j & 1u) && n->in[j] == id) needed = 1;
    }
    if (!needed) continue;
    sf_gtensor *t = &g->tensors[id];
    char a[128], b[128];
    if (val->dtype != t->t.dtype || val->rank != t->t.rank ||
        memcmp(val->dims, t->t.dims, sizeof(int64_t) * (size_t)val->rank))
      return sf__errf(err, SF_ESHAPE, "value of input '%s' is %s %s, the model expects %s %s",
                      val->name, sf_dtype_name(val->dtype), sf__shape_str(val, a, sizeof a),
                      sf_dtype_name(t->t.dtype), sf__shape_str(&t->t, b, sizeof b));
    if (!val->data) return sf__errf(err, SF_EINVAL, "value of input '%s' has no data", val->name);
    if (sf__tensor_set_const(g, id, val->dtype, val->rank, val->dims, val->data))
      return sf__errf(err, SF_ENOMEM, "out of memory freezing input '%s'", val->name);
  }
  return 0;
}

static int bind_ops(sf_graph *g, sf_err *err) {
  for (int i = 0; i < g->n_nodes; i++) {
    sf_node *n = &g->nodes[i];
    if (n->dead) continue;
    n->op = sf__op_find(n->domain, n->op_type);
    if (!n->op)
      return sf__errf(err, SF_EUNSUPPORTED, "unsupported operator '%s%s%s' (node '%s')",
                      n->domain[0] ? n->domain : "", n->domain[0] ? "." : "", n->op_type,
                      n->name);
  }
  return 0;
}

/* ---- shape inference + folding ---- */
static int fold_node(sf_graph *g, sf_node *n, pthreadpool_t pool, sf_err *err) {
  sf_kctx k = {.g = g, .node = n, .pool = pool, .err = err};
  int rc = 0;
  for (int j = 0; j < n->n_out; j++) {
    sf_gtensor *t = sf__out(g, n, j);
    if (!t) continue;
    int64_t nb = sf_tensor_nbytes(&t->t);
    if (nb < 0) return sf__op_err(&k, SF_EINTERNAL, "output %d has no shape", j);
    t->t.data = sf__aligned_alloc((size_t)nb + XNN_EXTRA_BYTES);
    if (!t->t.data) return sf__op_err(&k, SF_ENOMEM, "cannot allocate %lld bytes", (long long)nb);
    memset(t->t.data, 0, (size_t)nb + XNN_EXTRA_BYTES);
    t->owns_data = 1;
    t->kind = SF_TK_CONST;
  }
  if (n->op->prepare) rc = n->op->prepare(&k);
  if (!rc) rc = n->op->run(&k);
  if (n->op->release) n->op->release(n);
  n->state = NULL;
  n->dead = 1;
  return rc;
}

static int infer_all(sf_graph *g, const sf_compile_opts *o, sf_compile_result *res, sf_err *err) {
  for (int oi = 0; oi < g->n_order; oi++) {
    sf_node *n = &g->nodes[g->order[oi]];
    if (n->dead) continue;
    sf_kctx k = {.g = g, .node = n, .pool = o->pool, .err = err};
    int all_const = 1;
    for (int j = 0; j < n->n_in; j++) {
      sf_gtensor *t = sf__in(g, n, j);
      if (!t) continue;
      if (!t->shape_known)
        return sf__op_err(&k, SF_EINTERNAL, "input '%s' has no inferred shape", t->t.name);
      if (t->kind != SF_TK_CONST) all_const = 0;
    }
    int rc = n->op->infer(&k);
    if (rc < 0) {
      if (err && !err->msg[0]) sf__op_err(&k, rc, "shape inference failed");
      return rc;
    }
    for (int j = 0; j < n->n_out; j++) {
      sf_gtensor *t = sf__out(g, n, j);
      if (!t) continue;
      if (!t->shape_known)
        return sf__op_err(&k, SF_EINTERNAL, "output '%s' shape not inferred", t->t.name);
      int64_t nb = sf_tensor_nbytes(&t->t);
      if (nb < 0 || nb > SF_MAX_TENSOR_BYTES)
        return sf__op_err(&k, SF_ELIMIT, "output '%s' would need %lld bytes (limit %lld)",
                          t->t.name, (long long)nb, (long long)SF_MAX_TENSOR_BYTES);
    }
    /* Shape depends only on the (static) shape of its input: always folded */
    if (!strcmp(n->op_type, "Shape") && !n->domain[0]) all_const = 1;
    if (all_const && !(n->op->flags & SF_OPF_NOFOLD)) {
      rc = fold_node(g, n, o->pool, err);
      if (rc < 0) return rc;
      res->n_folded++;
      continue;
    }
    n->flops = n->op->flops ? n->op->flops(&k) : 0;
    res->flops += n->flops;
  }
  return 0;
}

/* ---- fusion ---- */
static int single_consumer(sf_graph *g, int tid) {
  sf_gtensor *t = &g->tensors[tid];
  return t->n_consumers == 1 && !t->is_output;
}

static int consumer_of(sf_graph *g, int tid) {
  for (int oi = 0; oi < g->n_order; oi++) {
    sf_node *n = &g->nodes[g->order[oi]];
    if (n->dead) continue;
    for (int j = 0; j < n->n_in; j++)
      if (n->in[j] == tid) return g->order[oi];
  }
  return -1;
}

static int is_const_f32(sf_gtensor *t) { return t && t->kind == SF_TK_CONST && t->t.dtype == SF_F32; }

/* Conv -> BatchNormalization: W' = W * s, b' = (b - mean) * s + beta, s = gamma/sqrt(var+eps). */
static int fuse_bn(sf_graph *g, sf_node *conv, sf_node *bn) {
  sf_gtensor *w = sf__in(g, conv, 1), *b = sf__in(g, conv, 2);
  if (!is_const_f32(w) || (b && !is_const_f32(b))) return 0;
  if (bn->n_in < 5 || bn->n_out != 1) return 0;
  sf_gtensor *sc = sf__in(g, bn, 1), *be = sf__in(g, bn, 2), *mu = sf__in(g, bn, 3),
             *va = sf__in(g, bn, 4);
  if (!is_const_f32(sc) || !is_const_f32(be) || !is_const_f32(mu) || !is_const_f32(va)) return 0;
  if (sf__attr_int(bn, "training_mode", 0)) return 0;
  int64_t cout = w->t.dims[0];
  if (w->t.rank < 3 || sf_tensor_numel(&sc->t) != cout || sf_tensor_numel(&be->t) != cout ||
      sf_tensor_numel(&mu->t) != cout || sf_tensor_numel(&va->t) != cout)
    return 0;
  if (b && sf_tensor_numel(&b->t) != cout) return 0;
  float eps = sf__attr_float(bn, "epsilon", 1e-5f);
  int64_t per = sf_tensor_numel(&w->t) / cout;
  /* W owned by this graph alone (a session that releases weights owns them) is folded in place:
   * no second copy of the weights while compiling */
  int inplace = w->owns_data && w->n_consumers == 1 && !w->is_output;
  float *nw = inplace ? NULL : sf__malloc(sizeof(float) * (size_t)(per * cout));
  float *nb = sf__malloc(sizeof(float) * (size_t)cout);
  if ((!inplace && !nw) || !nb) {
    free(nw);
    free(nb);
    return SF_ENOMEM;
  }
  float *W = w->t.data;
  const float *B = b ? b->t.data : NULL, *S = sc->t.data, *BE = be->t.data, *M = mu->t.data,
              *V = va->t.data;
  for (int64_t oc = 0; oc < cout; oc++) {
    float s = S[oc] / sqrtf(V[oc] + eps);
    for (int64_t i = 0; !inplace && i < per; i++) nw[oc * per + i] = W[oc * per + i] * s;
    nb[oc] = ((B ? B[oc] : 0.0f) - M[oc]) * s + BE[oc];
  }
  int rc = 0;
  int wid = inplace ? conv->in[1] : sf__graph_new_tensor(g, w->t.name);
  int bid = wid >= 0 ? sf__graph_new_tensor(g, "bn_bias") : wid;
  if (wid < 0 || bid < 0) {
    rc = SF_ENOMEM;
    goto out;
  }
  w = &g->tensors[conv->in[1]]; /* tensors may have moved */
  if (!inplace && (rc = sf__tensor_set_const(g, wid, SF_F32, w->t.rank, w->t.dims, nw))) goto out;
  int64_t bd[1] = {cout};
  if ((rc = sf__tensor_set_const(g, bid, SF_F32, 1, bd, nb))) goto out;
  if (conv->n_in < 3) {
    int *ni = realloc(conv->in, sizeof(int) * 3);
    if (!ni) {
      rc = SF_ENOMEM;
      goto out;
    }
    conv->in = ni;
    conv->n_in = 3;
  }
  for (int64_t oc = 0; inplace && oc < cout; oc++) { /* nothing fails from here on */
    float s = S[oc] / sqrtf(V[oc] + eps);
    for (int64_t i = 0; i < per; i++) W[oc * per + i] *= s;
  }
  conv->in[1] = wid;
  conv->in[2] = bid;
  conv->out[0] = bn->out[0];
  bn->dead = 1;
  rc = 1;
out:
  free(nw);
  free(nb);
  return rc;
}

static int act_bounds(sf_graph *g, sf_node *a, float *lo, float *hi) {
  if (!strcmp(a->op_type, "Relu")) {
    *lo = 0.0f;
    *hi = INFINITY;
    return 1;
  }
  if (!strcmp(a->op_type, "Clip")) {
    *lo = -INFINITY;
    *hi = INFINITY;
    if (g->opset < 11) {
      *lo = sf__attr_float(a, "min", -INFINITY);
      *hi = sf__attr_float(a, "max", INFINITY);
      return 1;
    }
    sf_gtensor *mn = sf__in(g, a, 1), *mx = sf__in(g, a, 2);
    if (mn) {
      if (!is_const_f32(mn) || sf_tensor_numel(&mn->t) != 1) return 0;
      *lo = ((float *)mn->t.data)[0];
    }
    if (mx) {
      if (!is_const_f32(mx) || sf_tensor_numel(&mx->t) != 1) return 0;
      *hi = ((float *)mx->t.data)[0];
    }
    return 1;
  }
  return 0;
}

/* Sigmoid(x) -> Mul(x, s) (either operand order): one seifer.Swish node. */
static int fuse_swish(sf_graph *g, sf_node *sig, int si) {
  (void)si;
  int x = sig->in[0], s = sig->out[0];
  if (x < 0 || s < 0 || !single_consumer(g, s) || g->tensors[x].t.dtype != SF_F32) return 0;
  int mi = consumer_of(g, s);
  if (mi < 0) return 0;
  sf_node *mul = &g->nodes[mi];
  if (strcmp(mul->op_type, "Mul") || mul->domain[0] || mul->n_in != 2 || mul->n_out != 1) return 0;
  if (!((mul->in[0] == x && mul->in[1] == s) || (mul->in[0] == s && mul->in[1] == x))) return 0;
  const sf_op_def *op = sf__op_find("seifer", "Swish");
  char *dom = sf__strdup("seifer"), *ty = sf__strdup("Swish");
  if (!op || !dom || !ty) {
    free(dom);
    free(ty);
    return op ? SF_ENOMEM : 0;
  }
  free(mul->domain);
  free(mul->op_type);
  mul->domain = dom;
  mul->op_type = ty;
  mul->op = op;
  mul->n_in = 1;
  mul->in[0] = x;
  sig->dead = 1;
  return 1;
}

static int fuse_all(sf_graph *g, sf_compile_result *res) {
  static const char *const act_hosts[] = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add",
                                          "Sub",  "Mul",           "Div",  NULL};
  for (int oi = 0; oi < g->n_order; oi++) {
    int ni = g->order[oi];
    if (g->nodes[ni].dead) continue;
    sf__graph_index(g);
    sf_node *n = &g->nodes[ni];
    if (n->n_out < 1 || n->out[0] < 0) continue;
    if (!strcmp(n->op_type, "Conv") && single_consumer(g, n->out[0])) {
      int ci = consumer_of(g, n->out[0]);
      if (ci >= 0 && !strcmp(g->nodes[ci].op_type, "BatchNormalization") &&
          g->nodes[ci].in[0] == n->out[0] && sf__in(g, n, 0)->t.dtype == SF_F32) {
        int rc = fuse_bn(g, &g->nodes[ni], &g->nodes[ci]);
        if (rc < 0) return rc;
        if (rc) res->n_fused++;
        sf__graph_index(g);
      }
    }
    n = &g->nodes[ni];
    if (!strcmp(n->op_type, "Sigmoid") && !n->domain[0] && n->n_in == 1 && n->n_out == 1) {
      int rc = fuse_swish(g, n, ni);
      if (rc < 0) return rc;
      if (rc) {
        res->n_fused++;
        continue;
      }
    }
    int host = 0;
    for (int h = 0; act_hosts[h]; h++)
      if (!strcmp(n->op_type, act_hosts[h])) host = 1;
    if (!host || n->fused_act || n->n_out != 1) continue;
    sf_gtensor *o = sf__out(g, n, 0);
    if (o->t.dtype != SF_F32 || !single_consumer(g, n->out[0])) continue;
    int ci = consumer_of(g, n->out[0]);
    if (ci < 0) continue;
    sf_node *a = &g->nodes[ci];
    float lo, hi;
    if (a->in[0] != n->out[0] || a->n_out != 1 || !act_bounds(g, a, &lo, &hi)) continue;
    n->fused_act = SF_ACT_CLAMP;
    n->act_min = lo;
    n->act_max = hi;
    n->out[0] = a->out[0];
    a->dead = 1;
    res->n_fused++;
  }
  sf__graph_index(g);
  /* Conv -> seifer.Swish (made above): the Conv applies Swish to its output, in registers where
   * its kernel can (depthwise), else in one pass right after the convolution. */
  for (int oi = 0; oi < g->n_order; oi++) {
    sf_node *sw = &g->nodes[g->order[oi]];
    if (sw->dead || strcmp(sw->op_type, "Swish") || strcmp(sw->domain, "seifer") ||
        sw->n_in != 1 || sw->n_out != 1 || sw->in[0] < 0 || !single_consumer(g, sw->in[0]))
      continue;
    int pi = g->tensors[sw->in[0]].producer;
    if (pi < 0) continue;
    sf_node *c = &g->nodes[pi];
    if (c->dead || strcmp(c->op_type, "Conv") || c->domain[0] || c->fused_act || c->n_out != 1 ||
        c->out[0] != sw->in[0])
      continue;
    c->fused_act = SF_ACT_SWISH;
    c->out[0] = sw->out[0];
    sw->dead = 1;
    res->n_fused++;
  }
  sf__graph_index(g);
  return 0;
}

/* ---- layout ---- */
static const int perm4_to_nhwc[4] = {0, 2, 3, 1}, perm4_to_nchw[4] = {0, 3, 1, 2};
static const int perm3[3] = {0, 2, 1};

static void permute_dims(int rank, const int64_t *src, int64_t *dst, int to_nhwc) {
  const int *p = rank == 4 ? (to_nhwc ? perm4_to_nhwc : perm4_to_nchw) : perm3;
  for (int i = 0; i < rank; i++) dst[i] = src[p[i]];
}

typedef struct layout_state {
  int *lay;        /* per tensor: current layout of the tensor's stored data */
  int *conv_nhwc;  /* plain tensor id -> NHWC copy id (-1) */
  int *conv_plain; /* NHWC tensor id -> plain copy id (-1) */
  int cap;
} layout_state;

static int ls_grow(layout_state *ls, int n) {
  if (n <= ls->cap) return 0;
  int nc = ls->cap ? ls->cap : 64;
  while (nc < n) nc *= 2;
  int *a = realloc(ls->lay, sizeof(int) * (size_t)nc), *b, *c;
  if (!a) return SF_ENOMEM;
  ls->lay = a;
  if (!(b = realloc(ls->conv_nhwc, sizeof(int) * (size_t)nc))) return SF_ENOMEM;
  ls->conv_nhwc = b;
  if (!(c = realloc(ls->conv_plain, sizeof(int) * (size_t)nc))) return SF_ENOMEM;
  ls->conv_plain = c;
  for (int i = ls->cap; i < nc; i++) {
    ls->lay[i] = SF_LAYOUT_PLAIN;
    ls->conv_nhwc[i] = ls->conv_plain[i] = -1;
  }
  ls->cap = nc;
  return 0;
}

/* Append a conversion node src -> new tensor in the other layout; returns the new tensor id.
 * Shapes are logical here; physical dims are applied after the pass. A conversion that does not
 * move bytes (C == 1 or spatial size 1) is an Identity (aliased by the planner). */
static int add_conversion(sf_graph *g, layout_state *ls, int src, int to_nhwc, int *new_nodes,
                          sf_compile_result *res) {
  int id = sf__graph_new_tensor(g, g->tensors[src].t.name);
  if (id < 0 || ls_grow(ls, g->n_tensors)) return SF_ENOMEM;
  sf_gtensor *s = &g->tensors[src], *t = &g->tensors[id];
  sf__tensor_set_shape(t, s->t.dtype, s->t.rank, s->t.dims);
  int rank = s->t.rank;
  int64_t spatial = 1;
  for (int d = 2; d < rank; d++) spatial *= s->t.dims[d];
  int trivial = s->t.dims[1] == 1 || spatial == 1;
  int in[1] = {src}, out[1] = {id};
  char nm[300];
  snprintf(nm, sizeof nm, "%s_%.250s", to_nhwc ? "to_nhwc" : "to_nchw", s->t.name);
  int ni = sf__graph_add_node(g, trivial ? "Identity" : "Transpose", nm, 1, in, 1, out);
  if (ni < 0) return SF_ENOMEM;
  sf_node *n = &g->nodes[ni];
  n->op = sf__op_find("", n->op_type);
  if (!n->op) return SF_EUNSUPPORTED;
  if (!trivial) {
    int64_t p[4];
    const int *pp = rank == 4 ? (to_nhwc ? perm4_to_nhwc : perm4_to_nchw) : perm3;
    for (int i = 0; i < rank; i++) p[i] = pp[i];
    if (sf__node_set_ints(n, "perm", p, rank)) return SF_ENOMEM;
    res->n_transposes++;
  }
  n->layout = to_nhwc ? SF_LAYOUT_NHWC : SF_LAYOUT_PLAIN;
  ls->lay[id] = to_nhwc ? SF_LAYOUT_NHWC : SF_LAYOUT_PLAIN;
  if (to_nhwc)
    ls->conv_nhwc[src] = id;
  else
    ls->conv_plain[src] = id;
  (*new_nodes)++;
  return id;
}

/* Tensor id holding src in layout `want` (converting when needed). */
static int want_layout(sf_graph *g, layout_state *ls, int src, int want, int *new_nodes,
                       sf_compile_result *res) {
  if (ls->lay[src] == want) return src;
  int *cache = want == SF_LAYOUT_NHWC ? ls->conv_nhwc : ls->conv_plain;
  if (cache[src] >= 0) return cache[src];
  return add_conversion(g, ls, src, want == SF_LAYOUT_NHWC, new_nodes, res);
}

/* Constant input of a broadcasting op in NHWC mode: expand to rank r, permute to physical. */
static int nhwc_const(sf_graph *g, int src, int r) {
  sf_gtensor *s = &g->tensors[src];
  if (s->t.rank > r) return -1;
  int64_t ld[4] = {1, 1, 1, 1};
  for (int i = 0; i < s->t.rank; i++) ld[r - s->t.rank + i] = s->t.dims[i];
  int64_t pd[4];
  permute_dims(r, ld, pd, 1);
  int id = sf__graph_new_tensor(g, s->t.name);
  if (id < 0) return SF_ENOMEM;
  s = &g->tensors[src];
  size_t es = sf_dtype_size(s->t.dtype);
  int64_t n = sf_tensor_numel(&s->t);
  char *buf = sf__malloc((size_t)n * es);
  if (!buf) return SF_ENOMEM;
  /* physical index -> logical index */
  const int *p = r == 4 ? perm4_to_nhwc : perm3;
  int64_t lstride[4], idx[4];
  lstride[r - 1] = 1;
  for (int i = r - 2; i >= 0; i--) lstride[i] = lstride[i + 1] * ld[i + 1];
  for (int64_t e = 0; e < n; e++) {
    int64_t rem = e;
    for (int i = r - 1; i >= 0; i--) {
      idx[i] = rem % pd[i];
      rem /= pd[i];
    }
    int64_t li = 0;
    for (int i = 0; i < r; i++) li += idx[i] * lstride[p[i]];
    memcpy(buf + e * (int64_t)es, (char *)s->t.data + li * (int64_t)es, es);
  }
  int rc = sf__tensor_set_const(g, id, s->t.dtype, r, pd, buf);
  free(buf);
  if (rc) return rc;
  g->tensors[id].t.layout = SF_LAYOUT_NHWC;
  return id;
}

static int is_act(sf_gtensor *t) { return t && t->kind != SF_TK_CONST; }

static int decide_nhwc(sf_graph *g, sf_node *n, layout_state *ls, pthreadpool_t pool, int mode,
                       int *r) {
  const sf_op_def *op = n->op;
  sf_gtensor *o0 = sf__out(g, n, 0);
  if (!o0 || o0->t.dtype != SF_F32 || (o0->t.rank != 3 && o0->t.rank != 4)) return 0;
  *r = o0->t.rank;
  if (op->flags & SF_OPF_NHWC) {
    sf_gtensor *x = sf__in(g, n, 0);
    if (!is_act(x) || x->t.rank != *r || x->t.dtype != SF_F32) return 0;
    if (op->wants_nhwc) {
      sf_kctx k = {.g = g, .node = n, .pool = pool, .err = NULL};
      return op->wants_nhwc(&k);
    }
    return 1;
  }
  if (!(op->flags & SF_OPF_AGNOSTIC) || mode == 1) return 0;
  /* opset < 7 broadcasting (the "broadcast"/"axis" attributes, 1-D per-channel PRelu slopes)
   * is not numpy-style: keep such nodes in ONNX layout */
  if ((op->flags & SF_OPF_BCAST) && (g->opset < 7 || sf__attr(n, "broadcast"))) return 0;
  if (n->n_out != 1 && strcmp(n->op_type, "Dropout")) return 0;
  int any = 0;
  for (int j = 0; j < n->n_in; j++) {
    sf_gtensor *t = sf__in(g, n, j);
    if (!t) continue;
    if (is_act(t)) {
      if (t->t.rank != *r) return 0;
      if (ls->lay[n->in[j]] == SF_LAYOUT_NHWC) any = 1;
    } else if ((op->flags & SF_OPF_BCAST) && t->t.rank > *r) {
      return 0;
    }
  }
  if (!strcmp(n->op_type, "Dropout") && n->n_out > 1 && n->out[1] >= 0) return 0;
  return any;
}

static int layout_pass(sf_graph *g, const sf_compile_opts *o, sf_compile_result *res,
                       sf_err *err) {
  layout_state ls = {0};
  int rc = 0, new_nodes = 0;
  if (ls_grow(&ls, g->n_tensors)) {
    rc = SF_ENOMEM;
    goto out;
  }
  int n_order = g->n_order;
  int *order = sf__malloc(sizeof(int) * (size_t)n_order);
  if (!order) {
    rc = SF_ENOMEM;
    goto out;
  }
  memcpy(order, g->order, sizeof(int) * (size_t)n_order);
  for (int oi = 0; oi < n_order; oi++) {
    int ni = order[oi];
    if (g->nodes[ni].dead) continue;
    int r = 0;
    int nhwc = decide_nhwc(g, &g->nodes[ni], &ls, o->pool, o->layout, &r);
    unsigned fl = g->nodes[ni].op->flags;
    sf_node *n;
    for (int j = 0; j < g->nodes[ni].n_in; j++) { /* g->nodes may move: index every time */
      int id = g->nodes[ni].in[j];
      if (id < 0) continue;
      sf_gtensor *t = &g->tensors[id];
      int want = SF_LAYOUT_PLAIN;
      if (nhwc) {
        if (fl & SF_OPF_NHWC) {
          if (j == 0) want = SF_LAYOUT_NHWC;
        } else if (is_act(t)) {
          want = SF_LAYOUT_NHWC;
        } else if (fl & SF_OPF_BCAST) {
          int nid = nhwc_const(g, id, r);
          if (nid < 0) {
            rc = nid;
            goto out_order;
          }
          if (ls_grow(&ls, g->n_tensors)) {
            rc = SF_ENOMEM;
            goto out_order;
          }
          g->nodes[ni].in[j] = nid;
          continue;
        }
      }
      if (!is_act(t)) continue;
      int nid = want_layout(g, &ls, id, want, &new_nodes, res);
      if (nid < 0) {
        rc = nid;
        goto out_order;
      }
      g->nodes[ni].in[j] = nid;
    }
    n = &g->nodes[ni];
    n->layout = nhwc ? SF_LAYOUT_NHWC : SF_LAYOUT_PLAIN;
    if (nhwc && (fl & SF_OPF_AXIS)) {
      int a = sf__norm_axis(sf__attr_int(n, "axis", 1), r);
      static const int l2p4[4] = {0, 3, 1, 2}, l2p3[3] = {0, 2, 1};
      if (a >= 0 && sf__node_set_int(n, "axis", r == 4 ? l2p4[a] : l2p3[a])) {
        rc = SF_ENOMEM;
        goto out_order;
      }
    }
    if (!nhwc) continue;
    for (int j = 0; j < n->n_out; j++) {
      int id = n->out[j];
      if (id < 0) continue;
      if (g->tensors[id].is_output) {
        /* keep the graph output plain: produce an NHWC twin and convert into the output */
        int twin = sf__graph_new_tensor(g, g->tensors[id].t.name);
        if (twin < 0 || ls_grow(&ls, g->n_tensors)) {
          rc = SF_ENOMEM;
          goto out_order;
        }
        sf_gtensor *ot = &g->tensors[id];
        sf__tensor_set_shape(&g->tensors[twin], ot->t.dtype, ot->t.rank, ot->t.dims);
        g->nodes[ni].out[j] = twin;
        ls.lay[twin] = SF_LAYOUT_NHWC;
        int conv = add_conversion(g, &ls, twin, 0, &new_nodes, res);
        if (conv < 0) {
          rc = conv;
          goto out_order;
        }
        /* redirect the conversion to write the real output tensor */
        sf_node *cn = &g->nodes[g->n_nodes - 1];
        cn->out[0] = id;
        ls.conv_plain[twin] = id;
        n = &g->nodes[ni];
      } else {
        ls.lay[id] = SF_LAYOUT_NHWC;
      }
    }
  }
  /* apply physical dims */
  for (int i = 0; i < g->n_tensors; i++) {
    sf_gtensor *t = &g->tensors[i];
    if (i < ls.cap && ls.lay[i] == SF_LAYOUT_NHWC && t->t.layout != SF_LAYOUT_NHWC) {
      int64_t pd[4];
      permute_dims(t->t.rank, t->t.dims, pd, 1);
      memcpy(t->t.dims, pd, sizeof(int64_t) * (size_t)t->t.rank);
      t->t.layout = SF_LAYOUT_NHWC;
    }
  }
  if (new_nodes) rc = sf__graph_toposort(g, err);
out_order:
  free(order);
out:
  free(ls.lay);
  free(ls.conv_nhwc);
  free(ls.conv_plain);
  if (rc < 0 && err && !err->msg[0]) sf__errf(err, rc, "layout assignment failed");
  return rc;
}

/* ---- memory plan ---- */
typedef struct buf {
  int id;
  int64_t size, first, last, off;
} buf;

static int cmp_size_desc(const void *a, const void *b) {
  const buf *x = a, *y = b;
  if (x->size != y->size) return x->size > y->size ? -1 : 1;
  return x->id - y->id;
}

static int root_of(sf_graph *g, int id) {
  while (g->tensors[id].alias_of >= 0) id = g->tensors[id].alias_of;
  return id;
}

static int plan_memory(sf_graph *g, sf_compile_result *res, sf_err *err) {
  int nt = g->n_tensors;
  for (int i = 0; i < nt; i++) {
    sf_gtensor *t = &g->tensors[i];
    t->first_use = INT64_MAX;
    t->last_use = -1;
    t->alias_of = -1;
    t->arena_off = -1;
  }
  int64_t end = g->n_order + 1;
  for (int i = 0; i < g->n_inputs; i++) {
    sf_gtensor *t = &g->tensors[g->inputs[i]];
    t->first_use = 0;
    if (t->last_use < 0) t->last_use = 0;
  }
  for (int oi = 0; oi < g->n_order; oi++) {
    sf_node *n = &g->nodes[g->order[oi]];
    int64_t step = oi + 1;
    for (int j = 0; j < n->n_in; j++) {
      sf_gtensor *t = sf__in(g, n, j);
      if (t && t->kind != SF_TK_CONST && t->last_use < step) t->last_use = step;
    }
    for (int j = 0; j < n->n_out; j++) {
      sf_gtensor *t = sf__out(g, n, j);
      if (!t) continue;
      if (t->first_use > step) t->first_use = step;
      if (t->last_use < step) t->last_use = step;
    }
    /* reshape family: output shares input 0's buffer */
    if ((n->op->flags & SF_OPF_ALIAS) && n->n_in >= 1 && n->n_out >= 1 && n->in[0] >= 0 &&
        n->out[0] >= 0) {
      sf_gtensor *x = &g->tensors[n->in[0]], *y = &g->tensors[n->out[0]];
      if (x->kind != SF_TK_CONST && sf_tensor_nbytes(&x->t) == sf_tensor_nbytes(&y->t))
        y->alias_of = n->in[0];
    }
  }
  for (int i = 0; i < g->n_outputs; i++) g->tensors[g->outputs[i]].last_use = end;
  /* extend roots over their aliases' lifetimes */
  for (int i = 0; i < nt; i++) {
    sf_gtensor *t = &g->tensors[i];
    if (t->alias_of < 0 || t->last_use < 0) continue;
    sf_gtensor *r = &g->tensors[root_of(g, i)];
    if (r->last_use < t->last_use) r->last_use = t->last_use;
    if (r->first_use > t->first_use) r->first_use = t->first_use;
  }
  /* in-place element-wise ops: the output takes over an input buffer that dies at this node */
  for (int oi = 0; oi < g->n_order; oi++) {
    sf_node *n = &g->nodes[g->order[oi]];
    int64_t step = oi + 1;
    if (!(n->op->flags & SF_OPF_INPLACE) || n->n_out != 1 || n->out[0] < 0) continue;
    sf_gtensor *y = &g->tensors[n->out[0]];
    if (y->alias_of >= 0 || y->is_output) continue;
    for (int j = 0; j < n->n_in && j < 2; j++) {
      if (n->in[j] < 0) continue;
      sf_gtensor *x = &g->tensors[n->in[j]];
      int r = root_of(g, n->in[j]);
      sf_gtensor *rt = &g->tensors[r];
      if (x->kind != SF_TK_ACT || rt->kind != SF_TK_ACT || rt->is_output ||
          rt->last_use != step || sf_tensor_nbytes(&x->t) != sf_tensor_nbytes(&y->t))
        continue;
      int dup = 0; /* the same tensor must not feed the node twice (x*x) */
      for (int k = 0; k < n->n_in; k++) dup += n->in[k] == n->in[j];
      if (dup > 1) continue;
      y->alias_of = n->in[j];
      if (rt->last_use < y->last_use) rt->last_use = y->last_use;
      res->n_inplace++;
      break;
    }
  }
  buf *bufs = sf__malloc(sizeof(buf) * (size_t)(nt ? nt : 1));
  if (!bufs) return sf__errf(err, SF_ENOMEM, "out of memory planning the arena");
  int nb = 0;
  for (int i = 0; i < nt; i++) {
    sf_gtensor *t = &g->tensors[i];
    if (t->kind == SF_TK_CONST || t->alias_of >= 0 || t->last_use < 0) continue;
    int64_t sz = sf_tensor_nbytes(&t->t);
    if (sz < 0) {
      free(bufs);
      return sf__errf(err, SF_EINTERNAL, "tensor '%s' has no size", t->t.name);
    }
    sz = (sz + XNN_EXTRA_BYTES + 63) & ~(int64_t)63;
    bufs[nb++] = (buf){.id = i, .size = sz, .first = t->first_use, .last = t->last_use};
  }
  qsort(bufs, (size_t)nb, sizeof *bufs, cmp_size_desc);
  /* greedy by size: lowest offset that does not overlap a placed buffer alive at the same time */
  int64_t total = 0;
  buf **live = sf__malloc(sizeof(buf *) * (size_t)(nb ? nb : 1));
  if (!live) {
    free(bufs);
    return sf__errf(err, SF_ENOMEM, "out of memory planning the arena");
  }
  for (int i = 0; i < nb; i++) {
    int nl = 0;
    for (int j = 0; j < i; j++)
      if (bufs[j].first <= bufs[i].last && bufs[i].first <= bufs[j].last) live[nl++] = &bufs[j];
    /* sort overlapping by offset (insertion sort: nl small) */
    for (int a = 1; a < nl; a++)
      for (int b = a; b > 0 && live[b - 1]->off > live[b]->off; b--) {
        buf *tmp = live[b];
        live[b] = live[b - 1];
        live[b - 1] = tmp;
      }
    int64_t off = 0;
    for (int a = 0; a < nl; a++) {
      if (live[a]->off >= off + bufs[i].size) break;
      if (live[a]->off + live[a]->size > off) off = live[a]->off + live[a]->size;
    }
    bufs[i].off = off;
    if (off + bufs[i].size > total) total = off + bufs[i].size;
    g->tensors[bufs[i].id].arena_off = off;
  }
  free(live);
  free(bufs);
  for (int i = 0; i < nt; i++) {
    sf_gtensor *t = &g->tensors[i];
    if (t->alias_of >= 0 && t->last_use >= 0) t->arena_off = g->tensors[root_of(g, i)].arena_off;
  }
  res->arena_bytes = total;
  return 0;
}

void sf__graph_bind_arena(sf_graph *g, void *arena) {
  for (int i = 0; i < g->n_tensors; i++) {
    sf_gtensor *t = &g->tensors[i];
    if (t->kind != SF_TK_CONST && t->arena_off >= 0) t->t.data = (char *)arena + t->arena_off;
  }
}

/* Inputs, operators, order, shapes and folding: the analysis partition/ needs too. */
int sf__graph_infer_only(sf_graph *g, const sf_compile_opts *o, sf_compile_result *res,
                         sf_err *err) {
  int rc;
  memset(res, 0, sizeof *res);
  if (err) {
    err->code = 0;
    err->msg[0] = 0;
  }
  if ((rc = resolve_inputs(g, o, res, err))) return rc;
  if ((rc = freeze_inputs(g, o, err))) return rc;
  if ((rc = sf__graph_validate(g, err))) return rc;
  sf__graph_prune(g);
  if ((rc = bind_ops(g, err))) return rc;
  if ((rc = sf__graph_toposort(g, err))) return rc;
  if ((rc = infer_all(g, o, res, err))) return rc;
  sf__graph_prune(g);
  return sf__graph_toposort(g, err);
}

int sf__graph_compile(sf_graph *g, const sf_compile_opts *o, sf_compile_result *res, sf_err *err) {
  int rc = sf__graph_infer_only(g, o, res, err);
  if (rc && res->defaulted_input > 0 && res->defaulted_input <= g->n_inputs &&
      rc != SF_EUNSUPPORTED)
    return sf__errctx(err, rc, "with the dynamic dims of input '%s' taken as 1 (give the input "
                      "shape)", g->tensors[g->inputs[res->defaulted_input - 1]].t.name);
  if (rc) return rc;
  if (!o->no_fuse && (rc = fuse_all(g, res))) return sf__errf(err, rc, "fusion failed");
  sf__graph_prune(g);
  if ((rc = sf__graph_toposort(g, err))) return rc;
  if (o->layout != 0 && (rc = layout_pass(g, o, res, err))) return rc;
  sf__graph_index(g);
  return plan_memory(g, res, err);
}
