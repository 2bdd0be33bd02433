/* Graph IR -> ONNX ModelProto.
 *
 * Writes the live nodes (in g->order when the graph is sorted, otherwise in stored order), the
 * constants they or the graph outputs read (raw_data, little-endian), graph inputs and outputs
 * with their types and shapes (symbolic dims keep their names) and value_info for intermediate
 * tensors of known type. The message tree points into the graph (names, attribute arrays,
 * tensor data are not copied); only the small protobuf-c structs are allocated, all from one
 * list freed at the end. Cost: one pass over the graph plus one copy of the weights into the
 * packed buffer.
 *
 * The graph must be uncompiled (plain layout, no fused activations): compiled graphs carry
 * physical shapes and fused state that ONNX cannot express.
 */
#include <string.h>

#include "onnx/onnx.h"
#include "onnx/onnx.pb-c.h"

#define DEFAULT_IR_VERSION 8

/* Every struct of the message tree, freed together. */
typedef struct sv_pool {
  void **ptrs;
  int n, cap;
} sv_pool;

static void *sv_alloc(sv_pool *p, size_t n) {
  void *m = sf__calloc(1, n);
  if (!m) return NULL;
  if (sf__grow((void **)&p->ptrs, &p->cap, p->n + 1, sizeof *p->ptrs)) {
    free(m);
    return NULL;
  }
  p->ptrs[p->n++] = m;
  return m;
}

static void sv_free(sv_pool *p) {
  for (int i = 0; i < p->n; i++) free(p->ptrs[i]);
  free(p->ptrs);
}

/* A protobuf-c message of the given descriptor, initialised to its defaults. */
static void *sv_msg(sv_pool *p, const ProtobufCMessageDescriptor *d) {
  void *m = sv_alloc(p, d->sizeof_message);
  if (m) protobuf_c_message_init(d, m);
  return m;
}
#define SV_NEW(pool, T, desc) ((T *)sv_msg((pool), &(desc)))

static Onnx__ValueInfoProto *value_info(sv_pool *p, const sf_gtensor *t) {
  Onnx__ValueInfoProto *vi = SV_NEW(p, Onnx__ValueInfoProto, onnx__value_info_proto__descriptor);
  if (!vi) return NULL;
  vi->name = t->t.name;
  if (!t->t.dtype && !t->shape_known) return vi; /* type unknown */
  Onnx__TypeProto *tp = SV_NEW(p, Onnx__TypeProto, onnx__type_proto__descriptor);
  Onnx__TypeProto__Tensor *tt = SV_NEW(p, Onnx__TypeProto__Tensor, onnx__type_proto__tensor__descriptor);
  if (!tp || !tt) return NULL;
  vi->type = tp;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  if (t->t.dtype) {
    tt->has_elem_type = 1;
    tt->elem_type = t->t.dtype;
  }
  if (!t->shape_known) return vi;
  Onnx__TensorShapeProto *sp = SV_NEW(p, Onnx__TensorShapeProto, onnx__tensor_shape_proto__descriptor);
  if (!sp) return NULL;
  tt->shape = sp;
  int rank = t->t.rank < 0 ? 0 : t->t.rank > SF_MAX_RANK ? SF_MAX_RANK : t->t.rank;
  sp->n_dim = (size_t)rank;
  sp->dim = sv_alloc(p, sizeof *sp->dim * (size_t)(rank + 1));
  if (!sp->dim) return NULL;
  for (int i = 0; i < rank; i++) {
    Onnx__TensorShapeProto__Dimension *d =
        SV_NEW(p, Onnx__TensorShapeProto__Dimension, onnx__tensor_shape_proto__dimension__descriptor);
    if (!d) return NULL;
    if (t->t.dims[i] >= 0) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = t->t.dims[i];
    } else if (t->dim_params && t->dim_params[i]) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d->dim_param = t->dim_params[i];
    }
    sp->dim[i] = d;
  }
  return vi;
}

static int encode_attr(sv_pool *p, const sf_node *n, const sf_attr *a, Onnx__AttributeProto *ap,
                       sf_err *err) {
  ap->name = a->name;
  ap->has_type = 1;
  ap->type = (Onnx__AttributeProto__AttributeType)a->type;
  switch (a->type) {
    case SF_ATTR_FLOAT: ap->has_f = 1; ap->f = a->f; return 0;
    case SF_ATTR_INT: ap->has_i = 1; ap->i = a->i; return 0;
    case SF_ATTR_STRING:
      ap->has_s = 1;
      ap->s.data = (uint8_t *)(a->s ? a->s : "");
      ap->s.len = strlen((const char *)ap->s.data);
      return 0;
    case SF_ATTR_FLOATS:
      ap->n_floats = (size_t)(a->n > 0 ? a->n : 0);
      ap->floats = a->floats;
      return 0;
    case SF_ATTR_INTS:
      ap->n_ints = (size_t)(a->n > 0 ? a->n : 0);
      ap->ints = a->ints;
      return 0;
    case SF_ATTR_STRINGS: {
      int cnt = a->n > 0 && a->strings ? a->n : 0;
      ap->strings = sv_alloc(p, sizeof *ap->strings * (size_t)(cnt + 1));
      if (!ap->strings) break;
      for (int i = 0; i < cnt; i++) {
        ap->strings[i].data = (uint8_t *)(a->strings[i] ? a->strings[i] : "");
        ap->strings[i].len = strlen((const char *)ap->strings[i].data);
      }
      ap->n_strings = (size_t)cnt;
      return 0;
    }
    case SF_ATTR_TENSOR: {
      if (!a->tensor)
        return sf__errf(err, SF_EINVAL, "%s node '%s': tensor attribute '%s' has no tensor",
                        n->op_type, n->name, a->name);
      ap->t = SV_NEW(p, Onnx__TensorProto, onnx__tensor_proto__descriptor);
      if (!ap->t) break;
      int rc = sf__tensorproto_encode(a->tensor, ap->t, err);
      if (rc) return sf__errctx(err, rc, "%s node '%s': attribute '%s'", n->op_type, n->name,
                                a->name);
      return 0;
    }
    default:
      return sf__errf(err, SF_EUNSUPPORTED, "%s node '%s': cannot serialize attribute '%s' of type %d",
                      n->op_type, n->name, a->name, a->type);
  }
  return sf__errf(err, SF_ENOMEM, "out of memory");
}

static int encode_node(sv_pool *p, const sf_graph *g, const sf_node *n, Onnx__NodeProto *np,
                       sf_err *err) {
  np->name = n->name;
  np->op_type = n->op_type;
  np->domain = n->domain && n->domain[0] ? n->domain : NULL;
  np->input = sv_alloc(p, sizeof(char *) * (size_t)(n->n_in + 1));
  np->output = sv_alloc(p, sizeof(char *) * (size_t)(n->n_out + 1));
  np->attribute = sv_alloc(p, sizeof(Onnx__AttributeProto *) * (size_t)(n->n_attr + 1));
  if (!np->input || !np->output || !np->attribute) return sf__errf(err, SF_ENOMEM, "out of memory");
  /* trailing omitted inputs/outputs are dropped, inner ones written as "" */
  int nin = n->n_in, nout = n->n_out;
  while (nin > 0 && n->in[nin - 1] < 0) nin--;
  while (nout > 0 && n->out[nout - 1] < 0) nout--;
  for (int i = 0; i < nin; i++) np->input[i] = n->in[i] >= 0 ? g->tensors[n->in[i]].t.name : "";
  for (int i = 0; i < nout; i++)
    np->output[i] = n->out[i] >= 0 ? g->tensors[n->out[i]].t.name : "";
  np->n_input = (size_t)nin;
  np->n_output = (size_t)nout;
  for (int i = 0; i < n->n_attr; i++) {
    Onnx__AttributeProto *ap = SV_NEW(p, Onnx__AttributeProto, onnx__attribute_proto__descriptor);
    if (!ap) return sf__errf(err, SF_ENOMEM, "out of memory");
    int rc = encode_attr(p, n, &n->attrs[i], ap, err);
    if (rc) return rc;
    np->attribute[np->n_attribute++] = ap;
  }
  return 0;
}

int sf__onnx_serialize(const sf_graph *g, void **buf, size_t *len, sf_err *err) {
  int rc = 0;
  sv_pool pool = {0};
  sv_pool *p = &pool;
  char *mark = NULL; /* per tensor: 1 read by a live node or output, 2 graph output */
  const int *order = g->order;
  int n_order = g->n_order;
  int *seq = NULL;
  *buf = NULL;
  *len = 0;
  if (n_order <= 0) {
    if (!(seq = sf__malloc(sizeof(int) * (size_t)(g->n_nodes + 1)))) goto nomem;
    for (int i = 0; i < g->n_nodes; i++) seq[i] = i;
    order = seq;
    n_order = g->n_nodes;
  }
  if (!(mark = sf__calloc((size_t)g->n_tensors + 1, 1))) goto nomem;

  Onnx__ModelProto model = ONNX__MODEL_PROTO__INIT;
  Onnx__GraphProto *gp = SV_NEW(p, Onnx__GraphProto, onnx__graph_proto__descriptor);
  if (!gp) goto nomem;
  model.graph = gp;
  model.has_ir_version = 1;
  model.ir_version = g->ir_version > 0 ? g->ir_version : DEFAULT_IR_VERSION;
  model.producer_name = "seifer";
  model.producer_version = SF_VERSION;
  gp->name = g->name && g->name[0] ? g->name : "seifer";

  /* nodes */
  gp->node = sv_alloc(p, sizeof *gp->node * (size_t)(n_order + 1));
  /* opset imports: the default domain and every other domain a live node uses */
  model.opset_import = sv_alloc(p, sizeof *model.opset_import * (size_t)(n_order + 1));
  if (!gp->node || !model.opset_import) goto nomem;
  Onnx__OperatorSetIdProto *def =
      SV_NEW(p, Onnx__OperatorSetIdProto, onnx__operator_set_id_proto__descriptor);
  if (!def) goto nomem;
  def->domain = "";
  def->has_version = 1;
  def->version = g->opset > 0 ? g->opset : 13;
  model.opset_import[model.n_opset_import++] = def;
  for (int k = 0; k < n_order; k++) {
    int ni = order[k];
    if (ni < 0 || ni >= g->n_nodes) {
      rc = sf__errf(err, SF_EINVAL, "execution order names node %d of %d", ni, g->n_nodes);
      goto out;
    }
    const sf_node *n = &g->nodes[ni];
    if (n->dead) continue;
    if (n->layout == SF_LAYOUT_NHWC || n->fused_act != SF_ACT_NONE) {
      rc = sf__errf(err, SF_EUNSUPPORTED,
                    "%s node '%s': cannot serialize a compiled graph (channels-last or fused "
                    "activation)",
                    n->op_type, n->name);
      goto out;
    }
    Onnx__NodeProto *np = SV_NEW(p, Onnx__NodeProto, onnx__node_proto__descriptor);
    if (!np) goto nomem;
    if ((rc = encode_node(p, g, n, np, err))) goto out;
    gp->node[gp->n_node++] = np;
    for (int i = 0; i < n->n_in; i++)
      if (n->in[i] >= 0) mark[n->in[i]] |= 1;
    for (int i = 0; i < n->n_out; i++)
      if (n->out[i] >= 0) mark[n->out[i]] |= 1;
    if (n->domain && n->domain[0]) {
      int seen = 0;
      for (size_t d = 1; d < model.n_opset_import; d++)
        seen |= !strcmp(model.opset_import[d]->domain, n->domain);
      if (!seen) {
        Onnx__OperatorSetIdProto *o =
            SV_NEW(p, Onnx__OperatorSetIdProto, onnx__operator_set_id_proto__descriptor);
        if (!o) goto nomem;
        o->domain = n->domain;
        o->has_version = 1;
        o->version = 1; /* the IR does not keep other domains' versions */
        model.opset_import[model.n_opset_import++] = o;
      }
    }
  }
  for (int i = 0; i < g->n_outputs; i++) mark[g->outputs[i]] |= 2;

  /* initializers: constants read by live nodes or graph outputs */
  int n_const = 0;
  for (int i = 0; i < g->n_tensors; i++)
    if (mark[i] && g->tensors[i].kind == SF_TK_CONST) n_const++;
  gp->initializer = sv_alloc(p, sizeof *gp->initializer * (size_t)(n_const + 1));
  if (!gp->initializer) goto nomem;
  for (int i = 0; i < g->n_tensors; i++) {
    const sf_gtensor *t = &g->tensors[i];
    if (!mark[i] || t->kind != SF_TK_CONST) continue;
    Onnx__TensorProto *tp = SV_NEW(p, Onnx__TensorProto, onnx__tensor_proto__descriptor);
    if (!tp) goto nomem;
    if ((rc = sf__tensorproto_encode(&t->t, tp, err))) {
      sf__errctx(err, rc, "initializer");
      goto out;
    }
    gp->initializer[gp->n_initializer++] = tp;
  }

  /* inputs (IR version < 4 also lists every initializer as an input) */
  int list_consts = model.ir_version < 4;
  gp->input = sv_alloc(p, sizeof *gp->input * (size_t)(g->n_inputs + (list_consts ? n_const : 0) + 1));
  gp->output = sv_alloc(p, sizeof *gp->output * (size_t)(g->n_outputs + 1));
  if (!gp->input || !gp->output) goto nomem;
  for (int i = 0; i < g->n_inputs; i++)
    if (!(gp->input[gp->n_input++] = value_info(p, &g->tensors[g->inputs[i]]))) goto nomem;
  if (list_consts)
    for (int i = 0; i < g->n_tensors; i++)
      if (mark[i] && g->tensors[i].kind == SF_TK_CONST &&
          !(gp->input[gp->n_input++] = value_info(p, &g->tensors[i])))
        goto nomem;
  for (int i = 0; i < g->n_outputs; i++)
    if (!(gp->output[gp->n_output++] = value_info(p, &g->tensors[g->outputs[i]]))) goto nomem;

  /* value_info: intermediate tensors of known type */
  int n_vi = 0;
  for (int i = 0; i < g->n_tensors; i++) {
    const sf_gtensor *t = &g->tensors[i];
    if (mark[i] == 1 && t->kind == SF_TK_ACT && (t->t.dtype || t->shape_known)) n_vi++;
  }
  gp->value_info = sv_alloc(p, sizeof *gp->value_info * (size_t)(n_vi + 1));
  if (!gp->value_info) goto nomem;
  for (int i = 0; i < g->n_tensors; i++) {
    const sf_gtensor *t = &g->tensors[i];
    if (mark[i] == 1 && t->kind == SF_TK_ACT && (t->t.dtype || t->shape_known) &&
        !(gp->value_info[gp->n_value_info++] = value_info(p, t)))
      goto nomem;
  }

  size_t sz = onnx__model_proto__get_packed_size(&model);
  uint8_t *out = sf__malloc(sz);
  if (!out) {
    rc = sf__errf(err, SF_ENOMEM, "cannot allocate %zu bytes for the model", sz);
    goto out;
  }
  size_t w = onnx__model_proto__pack(&model, out);
  if (w != sz) {
    free(out);
    rc = sf__errf(err, SF_EINTERNAL, "ModelProto packing wrote %zu of %zu bytes", w, sz);
    goto out;
  }
  *buf = out;
  *len = sz;
  goto out;
nomem:
  rc = sf__errf(err, SF_ENOMEM, "out of memory serializing the model");
out:
  sv_free(p);
  free(mark);
  free(seq);
  return rc;
}
