/* ONNX ModelProto -> graph IR.
 *
 * The model is decoded by protobuf-c (generated from onnx.proto), then translated: initializers
 * become constants (data moved, not copied again), graph inputs that are not initializers become
 * SF_TK_INPUT tensors, nodes and attributes are copied, type information of inputs, outputs and
 * value_info sets dtype and dims (symbolic or missing dims: -1, the symbol kept in dim_params).
 * Every count read from the file is bounded before use; errors name the element at fault.
 *
 * Memory: the weights are held once. A file is mapped read-only (read into memory where it
 * cannot be mapped); the initializers are located in the wire format and left out of the message
 * protobuf-c decodes (nodes, inputs, value_info: small). Each initializer is then decoded on its
 * own, its raw_data copied straight from the mapping into the tensor's buffer, and the mapped
 * pages it spanned are dropped (MADV_DONTNEED: file-backed pages count in the resident set).
 * Peak while loading a file: the decoded weights + one initializer's pages + the small message.
 * Unusual encodings (the graph field repeated, raw_data repeated) take the plain path: the whole
 * message decoded by protobuf-c, peak twice the weights.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "onnx/onnx.h"
#include "onnx/onnx.pb-c.h"

#define MODEL_FILE_MAX ((int64_t)4 << 30)
#define MAX_NODES (1 << 22)
#define MAX_GRAPH_IO (1 << 22)
#define MAX_NODE_IO (1 << 16)
#define MAX_ATTRS (1 << 12)
#define MAX_ATTR_ELEMS (1 << 26)
#define MAX_ATTR_STRING (1 << 20)
#define MIN_OPSET 1
#define MAX_OPSET 21

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
/* Blocks of 64 KiB and more are mapped on their own and unmapped when freed. glibc's default
 * raises that threshold to the largest block freed so far (up to 32 MiB): once a big buffer
 * (a received model, a file) is freed, the weights would come from the heap, whose freed holes
 * stay resident when a session releases them after packing. */
static pthread_once_t malloc_once = PTHREAD_ONCE_INIT;
static void malloc_policy(void) { mallopt(M_MMAP_THRESHOLD, 64 << 10); }
#endif

void sf__malloc_policy(void) {
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
  pthread_once(&malloc_once, malloc_policy);
#endif
}

static int is_default_domain(const char *d) { return !d || !d[0] || !strcmp(d, "ai.onnx"); }
static const char *str_or(const char *s, const char *def) { return s && s[0] ? s : def; }

static int check_name(const char *kind, const char *s, sf_err *err) {
  if (s && strlen(s) > SF_MAX_NAME)
    return sf__errf(err, SF_ELIMIT, "%s name '%.64s...' is longer than %d bytes", kind, s,
                    SF_MAX_NAME);
  return 0;
}

/* dtype and shape of a ValueInfo's type onto tensor t. Non-tensor types: SF_EUNSUPPORTED. */
static int apply_type(sf_gtensor *t, const Onnx__TypeProto *tp, const char *what, sf_err *err) {
  if (!tp || tp->value_case == ONNX__TYPE_PROTO__VALUE__NOT_SET) return 0;
  if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
    return sf__errf(err, SF_EUNSUPPORTED,
                    "%s '%s': only tensor types are supported (not sequence, map, optional or "
                    "sparse types)",
                    what, t->t.name);
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  int dtype = tt->has_elem_type ? tt->elem_type : 0;
  if (dtype && dtype != SF_STRING && !sf_dtype_size(dtype))
    return sf__errf(err, SF_EUNSUPPORTED, "%s '%s': element type %d is not supported", what,
                    t->t.name, dtype);
  t->t.dtype = dtype;
  if (!tt->shape) return 0; /* rank unknown */
  const Onnx__TensorShapeProto *sp = tt->shape;
  if (sp->n_dim > SF_MAX_RANK)
    return sf__errf(err, SF_ELIMIT, "%s '%s': rank %zu exceeds the limit of %d", what,
                    t->t.name, sp->n_dim, SF_MAX_RANK);
  int64_t dims[SF_MAX_RANK];
  char **params = NULL;
  int rc = 0;
  for (size_t i = 0; i < sp->n_dim; i++) {
    const Onnx__TensorShapeProto__Dimension *d = sp->dim[i];
    dims[i] = -1;
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
      if (d->dim_value > SF_MAX_DIM) {
        rc = sf__errf(err, SF_ELIMIT, "%s '%s': dimension %lld exceeds the limit of %lld", what,
                      t->t.name, (long long)d->dim_value, (long long)SF_MAX_DIM);
        goto err;
      }
      if (d->dim_value >= 0) dims[i] = d->dim_value;
    } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
               d->dim_param && d->dim_param[0]) {
      if ((rc = check_name("dimension", d->dim_param, err))) goto err;
      if ((!params && !(params = sf__calloc(SF_MAX_RANK, sizeof *params))) ||
          !(params[i] = sf__strdup(d->dim_param))) {
        rc = sf__errf(err, SF_ENOMEM, "out of memory");
        goto err;
      }
    }
  }
  if (t->dim_params) {
    for (int i = 0; i < SF_MAX_RANK; i++) free(t->dim_params[i]);
    free(t->dim_params);
  }
  t->dim_params = params; /* SF_MAX_RANK entries, as graph.c frees them */
  t->t.rank = (int)sp->n_dim;
  for (size_t i = 0; i < sp->n_dim; i++) t->t.dims[i] = dims[i];
  t->shape_known = 1;
  return 0;
err:
  if (params) {
    for (int i = 0; i < SF_MAX_RANK; i++) free(params[i]);
    free(params);
  }
  return rc;
}

static int attr_type_of(const Onnx__AttributeProto *a) {
  if (a->has_type) return (int)a->type;
  /* IR version 1 files may omit the type: infer it from the field that is set */
  if (a->has_f) return SF_ATTR_FLOAT;
  if (a->has_i) return SF_ATTR_INT;
  if (a->has_s) return SF_ATTR_STRING;
  if (a->t) return SF_ATTR_TENSOR;
  if (a->g) return SF_ATTR_GRAPH;
  if (a->n_floats) return SF_ATTR_FLOATS;
  if (a->n_ints) return SF_ATTR_INTS;
  if (a->n_strings) return SF_ATTR_STRINGS;
  if (a->n_graphs) return ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS;
  return SF_ATTR_UNDEF;
}

static char *bytes_dup(const ProtobufCBinaryData *b) {
  char *s = sf__malloc(b->len + 1);
  if (!s) return NULL;
  if (b->len) memcpy(s, b->data, b->len);
  s[b->len] = 0;
  return s;
}

static int load_attr(sf_node *n, const Onnx__AttributeProto *ap, const char *base_dir,
                     sf_err *err) {
  const char *an = ap->name;
  if (!an || !an[0])
    return sf__errf(err, SF_EFORMAT, "%s node '%s': attribute without a name", n->op_type,
                    n->name);
  int rc0 = check_name("attribute", an, err);
  if (rc0) return rc0;
  if (sf__attr(n, an))
    return sf__errf(err, SF_EFORMAT, "%s node '%s': attribute '%s' appears twice", n->op_type,
                    n->name, an);
  int type = attr_type_of(ap);
  sf_attr *a;
  size_t cnt = 0;
  switch (type) {
    case SF_ATTR_FLOATS: cnt = ap->n_floats; break;
    case SF_ATTR_INTS: cnt = ap->n_ints; break;
    case SF_ATTR_STRINGS: cnt = ap->n_strings; break;
  }
  if (cnt > MAX_ATTR_ELEMS)
    return sf__errf(err, SF_ELIMIT, "%s node '%s': attribute '%s' has %zu values (limit %d)",
                    n->op_type, n->name, an, cnt, MAX_ATTR_ELEMS);
  switch (type) {
    case SF_ATTR_FLOAT:
      if (sf__node_set_float(n, an, ap->f)) goto nomem;
      return 0;
    case SF_ATTR_INT:
      if (sf__node_set_int(n, an, ap->i)) goto nomem;
      return 0;
    case SF_ATTR_FLOATS:
      if (sf__node_set_floats(n, an, ap->floats, (int)cnt)) goto nomem;
      return 0;
    case SF_ATTR_INTS:
      if (sf__node_set_ints(n, an, ap->ints, (int)cnt)) goto nomem;
      return 0;
    case SF_ATTR_STRING:
      if (ap->s.len > MAX_ATTR_STRING)
        return sf__errf(err, SF_ELIMIT, "%s node '%s': attribute '%s' is %zu bytes (limit %d)",
                        n->op_type, n->name, an, ap->s.len, MAX_ATTR_STRING);
      if (!(a = sf__node_add_attr(n, an, SF_ATTR_STRING))) goto nomem;
      if (!(a->s = bytes_dup(&ap->s))) goto nomem;
      return 0;
    case SF_ATTR_STRINGS:
      if (!(a = sf__node_add_attr(n, an, SF_ATTR_STRINGS))) goto nomem;
      if (!(a->strings = sf__calloc(cnt, sizeof(char *)))) goto nomem;
      a->n = (int)cnt;
      for (size_t i = 0; i < cnt; i++) {
        if (ap->strings[i].len > MAX_ATTR_STRING)
          return sf__errf(err, SF_ELIMIT, "%s node '%s': attribute '%s' holds a %zu-byte string",
                          n->op_type, n->name, an, ap->strings[i].len);
        if (!(a->strings[i] = bytes_dup(&ap->strings[i]))) goto nomem;
      }
      return 0;
    case SF_ATTR_TENSOR: {
      if (!ap->t)
        return sf__errf(err, SF_EFORMAT, "%s node '%s': tensor attribute '%s' has no tensor",
                        n->op_type, n->name, an);
      sf_tensor *t = sf__calloc(1, sizeof *t);
      if (!t) goto nomem;
      int rc = sf__tensorproto_decode(ap->t, base_dir, t, err);
      if (rc) {
        free(t);
        return sf__errctx(err, rc, "%s node '%s': attribute '%s'", n->op_type, n->name, an);
      }
      if (!(a = sf__node_add_attr(n, an, SF_ATTR_TENSOR))) {
        sf__tensor_deinit(t);
        free(t);
        goto nomem;
      }
      a->tensor = t;
      return 0;
    }
    case SF_ATTR_GRAPH:
    case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS:
      return sf__errf(err, SF_EUNSUPPORTED,
                      "%s node '%s': attribute '%s': subgraphs (If/Loop/Scan) are not supported",
                      n->op_type, n->name, an);
    case SF_ATTR_UNDEF:
      return sf__errf(err, SF_EFORMAT, "%s node '%s': attribute '%s' has no type", n->op_type,
                      n->name, an);
    default:
      return sf__errf(err, SF_EUNSUPPORTED,
                      "%s node '%s': attribute '%s' has unsupported type %d (tensor lists, "
                      "sparse tensors and type protos are not supported)",
                      n->op_type, n->name, an, type);
  }
nomem:
  return sf__errf(err, SF_ENOMEM, "out of memory loading attribute '%s'", an);
}

static int load_node(sf_graph *g, const Onnx__NodeProto *np, size_t idx, const char *base_dir,
                     sf_err *err) {
  const char *op = np->op_type;
  int rc = 0;
  int *in = NULL, *out = NULL;
  if (!op || !op[0])
    return sf__errf(err, SF_EFORMAT, "node %zu ('%s') has no op_type", idx, str_or(np->name, ""));
  if ((rc = check_name("op_type", op, err)) || (rc = check_name("node", np->name, err)) ||
      (rc = check_name("domain", np->domain, err)))
    return rc;
  /* the name sf__graph_add_node generates for unnamed nodes, for messages */
  char gen[64];
  snprintf(gen, sizeof gen, "%.40s_%d", op, g->n_nodes);
  const char *nname = str_or(np->name, gen);
  if (np->n_input > MAX_NODE_IO || np->n_output > MAX_NODE_IO)
    return sf__errf(err, SF_ELIMIT, "%s node '%s': more than %d inputs or outputs", op, nname,
                    MAX_NODE_IO);
  if (np->n_attribute > MAX_ATTRS)
    return sf__errf(err, SF_ELIMIT, "%s node '%s': %zu attributes (limit %d)", op, nname,
                    np->n_attribute, MAX_ATTRS);
  in = sf__malloc(sizeof(int) * (np->n_input + 1));
  out = sf__malloc(sizeof(int) * (np->n_output + 1));
  if (!in || !out) goto nomem;
  for (size_t i = 0; i < np->n_input; i++) {
    const char *s = np->input[i];
    if (!s || !s[0]) {
      in[i] = -1;
      continue;
    }
    if ((rc = check_name("tensor", s, err))) goto out;
    if ((in[i] = sf__graph_tensor(g, s)) < 0) goto nomem;
  }
  for (size_t i = 0; i < np->n_output; i++) {
    const char *s = np->output[i];
    if (!s || !s[0]) {
      out[i] = -1;
      continue;
    }
    if ((rc = check_name("tensor", s, err))) goto out;
    int id = sf__graph_tensor(g, s);
    if (id < 0) goto nomem;
    sf_gtensor *t = &g->tensors[id];
    if (t->kind != SF_TK_ACT) {
      rc = sf__errf(err, SF_EFORMAT, "%s node '%s' writes to '%s', which is a graph %s", op,
                    nname, s, t->kind == SF_TK_INPUT ? "input" : "initializer");
      goto out;
    }
    if (t->producer >= 0) {
      const sf_node *o = t->producer < g->n_nodes ? &g->nodes[t->producer] : NULL;
      rc = sf__errf(err, SF_EFORMAT, "tensor '%s' is produced twice (%s node '%s' and %s node '%s')",
                    s, o ? o->op_type : op, o ? o->name : nname, op, nname);
      goto out;
    }
    t->producer = g->n_nodes; /* the index the node will get */
    out[i] = id;
  }
  int ni = sf__graph_add_node(g, op, np->name, (int)np->n_input, in, (int)np->n_output, out);
  if (ni < 0) goto nomem;
  sf_node *n = &g->nodes[ni];
  if (!is_default_domain(np->domain)) {
    char *d = sf__strdup(np->domain);
    if (!d) goto nomem;
    free(n->domain);
    n->domain = d;
  }
  for (size_t i = 0; i < np->n_attribute; i++)
    if ((rc = load_attr(n, np->attribute[i], base_dir, err))) goto out;
  goto out;
nomem:
  rc = sf__errf(err, SF_ENOMEM, "out of memory loading %s node '%s'", op, nname);
out:
  free(in);
  free(out);
  return rc;
}

static int load_initializer(sf_graph *g, const Onnx__TensorProto *tp, const char *base_dir,
                            sf_err *err) {
  const char *name = tp->name;
  if (!name || !name[0]) return sf__errf(err, SF_EFORMAT, "initializer without a name");
  int rc = check_name("initializer", name, err);
  if (rc) return rc;
  if (sf__graph_find(g, name) >= 0)
    return sf__errf(err, SF_EFORMAT, "initializer '%s' appears twice", name);
  sf_tensor t;
  rc = sf__tensorproto_decode(tp, base_dir, &t, err);
  if (rc) return sf__errctx(err, rc, "initializer");
  int id = sf__graph_tensor(g, name);
  if (id < 0) {
    sf__tensor_deinit(&t);
    return sf__errf(err, SF_ENOMEM, "out of memory");
  }
  /* move the decoded buffer (it carries SF_READ_SLACK) into the graph: no second copy */
  sf_gtensor *gt = &g->tensors[id];
  sf__tensor_set_shape(gt, t.dtype, t.rank, t.dims);
  gt->t.data = t.data;
  gt->t.layout = SF_LAYOUT_PLAIN;
  gt->owns_data = 1;
  gt->kind = SF_TK_CONST;
  free(t.name);
  return 0;
}

/* ---- initializers located in the wire format ---- */

/* Field keys (field number << 3 | wire type 2, length-delimited). */
#define KEY_MODEL_GRAPH ((7u << 3) | 2u)
#define KEY_GRAPH_INITIALIZER ((5u << 3) | 2u)
#define KEY_TENSOR_RAW_DATA ((9u << 3) | 2u)

typedef struct wspan {
  size_t off, len; /* a whole field: key, length and value */
  size_t voff, vlen; /* its value */
} wspan;

/* Where build_graph takes the initializers from: the decoded message (spans == NULL) or the
 * serialized bytes buf, whose initializer fields are spans[0 .. n) (left out of the message). */
typedef struct init_src {
  const uint8_t *buf;
  wspan *spans;
  size_t n;
  int mapped; /* buf is a private file mapping: drop the pages of each decoded initializer */
} init_src;

static int wire_varint(const uint8_t *b, size_t n, size_t *i, uint64_t *v) {
  uint64_t x = 0;
  for (int sh = 0; sh < 64; sh += 7) {
    if (*i >= n) return -1;
    uint8_t c = b[(*i)++];
    x |= (uint64_t)(c & 0x7f) << sh;
    if (!(c & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

/* Next field of the message b[*i .. n): its key and span; -1 when malformed or a group. */
static int wire_field(const uint8_t *b, size_t n, size_t *i, uint64_t *key, wspan *sp) {
  size_t start = *i;
  uint64_t v;
  if (wire_varint(b, n, i, key) || (*key >> 3) == 0) return -1;
  sp->voff = *i;
  sp->vlen = 0;
  switch (*key & 7) {
  case 0:
    if (wire_varint(b, n, i, &v)) return -1;
    break;
  case 1:
    if (n - *i < 8) return -1;
    *i += 8;
    break;
  case 5:
    if (n - *i < 4) return -1;
    *i += 4;
    break;
  case 2:
    if (wire_varint(b, n, i, &v) || v > n - *i) return -1;
    sp->voff = *i;
    sp->vlen = (size_t)v;
    *i += (size_t)v;
    break;
  default: /* groups (3, 4) and invalid types */
    return -1;
  }
  sp->off = start;
  sp->len = *i - start;
  return 0;
}

static size_t varint_put(uint8_t *p, uint64_t v) {
  size_t k = 0;
  do {
    uint8_t c = v & 0x7f;
    v >>= 7;
    p[k++] = c | (v ? 0x80 : 0);
  } while (v);
  return k;
}

/* Cut the graph's initializer fields out of the ModelProto b: *skel = the message without them
 * (malloc'ed), src->spans = where they are in b. Returns 1 (nothing set) when the bytes are not
 * laid out as expected (malformed, a group, the graph field repeated): the caller decodes the
 * whole message instead, and protobuf-c reports what is wrong. */
static int split_initializers(const uint8_t *b, size_t n, uint8_t **skel, size_t *skel_len,
                              init_src *src, sf_err *err) {
  size_t i = 0, n_graph = 0;
  wspan g = {0}, f;
  uint64_t key;
  while (i < n) {
    if (wire_field(b, n, &i, &key, &f)) return 1;
    if (key == KEY_MODEL_GRAPH) {
      g = f;
      n_graph++;
    }
  }
  if (n_graph != 1) return 1;
  size_t cap = 0, cnt = 0, init_bytes = 0;
  for (i = g.voff; i < g.voff + g.vlen;) {
    if (wire_field(b, g.voff + g.vlen, &i, &key, &f)) return 1;
    cnt += key == KEY_GRAPH_INITIALIZER;
  }
  if (cnt > MAX_GRAPH_IO)
    return sf__errf(err, SF_ELIMIT, "graph has %zu initializers (limit %d)", cnt, MAX_GRAPH_IO);
  cap = cnt ? cnt : 1;
  wspan *spans = sf__malloc(sizeof *spans * cap);
  if (!spans) return sf__errf(err, SF_ENOMEM, "out of memory");
  cnt = 0;
  for (i = g.voff; i < g.voff + g.vlen;) {
    wire_field(b, g.voff + g.vlen, &i, &key, &f);
    if (key != KEY_GRAPH_INITIALIZER) continue;
    spans[cnt++] = f;
    init_bytes += f.len;
  }
  size_t glen = g.vlen - init_bytes;
  size_t len = n - g.len + 1 + 10 + glen;
  uint8_t *s = sf__malloc(len ? len : 1), *p = s;
  if (!s) {
    free(spans);
    return sf__errf(err, SF_ENOMEM, "out of memory");
  }
  memcpy(p, b, g.off);
  p += g.off;
  *p++ = KEY_MODEL_GRAPH;
  p += varint_put(p, glen);
  size_t from = g.voff;
  for (size_t k = 0; k < cnt; k++) {
    memcpy(p, b + from, spans[k].off - from);
    p += spans[k].off - from;
    from = spans[k].off + spans[k].len;
  }
  memcpy(p, b + from, g.voff + g.vlen - from);
  p += g.voff + g.vlen - from;
  memcpy(p, b + g.off + g.len, n - g.off - g.len);
  p += n - g.off - g.len;
  *skel = s;
  *skel_len = (size_t)(p - s);
  src->buf = b;
  src->spans = spans;
  src->n = cnt;
  return 0;
}

/* Unpack the initializer field sp of src. A raw_data field is left out of what protobuf-c
 * decodes and pointed at in place, *borrowed = 1 (the caller copies it once, into the tensor,
 * then calls unpacked_tensor_free). */
static Onnx__TensorProto *unpack_tensor(const init_src *src, const wspan *sp, int *borrowed) {
  const uint8_t *b = src->buf + sp->voff;
  size_t n = sp->vlen, i = 0, n_raw = 0;
  uint64_t key;
  wspan f, raw = {0};
  while (i < n) {
    if (wire_field(b, n, &i, &key, &f)) return NULL;
    if (key == KEY_TENSOR_RAW_DATA) {
      raw = f;
      n_raw++;
    }
  }
  *borrowed = 0;
  if (n_raw != 1) return onnx__tensor_proto__unpack(NULL, n, b);
  uint8_t *skel = sf__malloc(n - raw.len + 1);
  if (!skel) return NULL;
  memcpy(skel, b, raw.off);
  memcpy(skel + raw.off, b + raw.off + raw.len, n - raw.off - raw.len);
  Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, n - raw.len, skel);
  free(skel);
  if (!tp) return NULL;
  tp->has_raw_data = 1;
  tp->raw_data.len = raw.vlen;
  tp->raw_data.data = (uint8_t *)b + raw.voff; /* unpacked_tensor_free detaches it */
  *borrowed = 1;
  return tp;
}

static void unpacked_tensor_free(const init_src *src, const wspan *sp, Onnx__TensorProto *tp,
                                 int borrowed) {
  if (borrowed) {
    tp->has_raw_data = 0;
    tp->raw_data.len = 0;
    tp->raw_data.data = NULL;
  }
  onnx__tensor_proto__free_unpacked(tp, NULL);
  if (src->mapped) { /* drop the pages the field spanned (they are read again if touched) */
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)(src->buf + sp->off) & ~(pg - 1);
    uintptr_t hi = ((uintptr_t)(src->buf + sp->off + sp->len) + pg - 1) & ~(pg - 1);
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
  }
}

static int build_graph(const Onnx__ModelProto *m, const char *base_dir, const init_src *src,
                       sf_graph **out, sf_err *err) {
  int rc = 0;
  sf_graph *g = NULL;
  const Onnx__GraphProto *gp = m->graph;
  *out = NULL;
  if (!gp) return sf__errf(err, SF_EFORMAT, "model has no graph");
  if (gp->n_node > MAX_NODES || gp->n_input > MAX_GRAPH_IO || gp->n_output > MAX_GRAPH_IO ||
      gp->n_initializer > MAX_GRAPH_IO)
    return sf__errf(err, SF_ELIMIT, "graph has too many nodes, inputs, outputs or initializers");
  if (gp->n_sparse_initializer) {
    const Onnx__TensorProto *v = gp->sparse_initializer[0]->values;
    return sf__errf(err, SF_EUNSUPPORTED, "sparse initializer '%.200s' is not supported",
                    str_or(v ? v->name : NULL, "(unnamed)"));
  }

  /* opset of the default domain */
  int64_t opset = 0;
  int have_opset = 0;
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = m->opset_import[i];
    if (!is_default_domain(o->domain)) continue;
    int64_t v = o->has_version ? o->version : 0;
    if (have_opset && v != opset)
      return sf__errf(err, SF_EFORMAT, "model imports the default domain twice (opsets %lld, %lld)",
                      (long long)opset, (long long)v);
    opset = v;
    have_opset = 1;
  }
  if (!have_opset) {
    int uses_default = 0;
    for (size_t i = 0; i < gp->n_node; i++) uses_default |= is_default_domain(gp->node[i]->domain);
    if (uses_default && m->has_ir_version && m->ir_version >= 3)
      return sf__errf(err, SF_EFORMAT, "model imports no opset of the default ONNX domain");
    opset = 1; /* IR version 1-2 files predate opset_import */
  }
  if (opset < MIN_OPSET)
    return sf__errf(err, SF_EFORMAT, "invalid opset %lld for the default ONNX domain",
                    (long long)opset);
  if (opset > MAX_OPSET)
    return sf__errf(err, SF_EUNSUPPORTED,
                    "opset %lld of the default ONNX domain is not supported (%d..%d)",
                    (long long)opset, MIN_OPSET, MAX_OPSET);

  if (!(g = sf__graph_new())) goto nomem;
  g->opset = opset;
  g->ir_version = m->has_ir_version ? m->ir_version : 0;
  if ((rc = check_name("producer", m->producer_name, err)) ||
      (rc = check_name("producer version", m->producer_version, err)) ||
      (rc = check_name("graph", gp->name, err)))
    goto err;
  if (m->producer_name && !(g->producer_name = sf__strdup(m->producer_name))) goto nomem;
  if (m->producer_version && !(g->producer_version = sf__strdup(m->producer_version))) goto nomem;
  if (gp->name && !(g->name = sf__strdup(gp->name))) goto nomem;

  if (src && src->spans) {
    for (size_t i = 0; i < src->n; i++) {
      int borrowed = 0;
      Onnx__TensorProto *tp = unpack_tensor(src, &src->spans[i], &borrowed);
      if (!tp) {
        rc = sf__errf(err, SF_EFORMAT, "initializer %zu: not a valid TensorProto", i);
        goto err;
      }
      rc = load_initializer(g, tp, base_dir, err);
      unpacked_tensor_free(src, &src->spans[i], tp, borrowed);
      if (rc) goto err;
    }
  } else {
    for (size_t i = 0; i < gp->n_initializer; i++)
      if ((rc = load_initializer(g, gp->initializer[i], base_dir, err))) goto err;
  }

  g->inputs = sf__malloc(sizeof(int) * (gp->n_input + 1));
  g->outputs = sf__malloc(sizeof(int) * (gp->n_output + 1));
  if (!g->inputs || !g->outputs) goto nomem;
  for (size_t i = 0; i < gp->n_input; i++) {
    const Onnx__ValueInfoProto *vi = gp->input[i];
    if (!vi->name || !vi->name[0]) {
      rc = sf__errf(err, SF_EFORMAT, "graph input %zu has no name", i);
      goto err;
    }
    if ((rc = check_name("input", vi->name, err))) goto err;
    int id = sf__graph_find(g, vi->name);
    if (id >= 0 && g->tensors[id].kind == SF_TK_CONST) continue; /* initializer: a constant */
    if (id >= 0) {
      rc = sf__errf(err, SF_EFORMAT, "graph input '%s' is listed twice", vi->name);
      goto err;
    }
    if ((id = sf__graph_tensor(g, vi->name)) < 0) goto nomem;
    g->tensors[id].kind = SF_TK_INPUT;
    g->inputs[g->n_inputs++] = id;
    if ((rc = apply_type(&g->tensors[id], vi->type, "graph input", err))) goto err;
  }

  for (size_t i = 0; i < gp->n_node; i++)
    if ((rc = load_node(g, gp->node[i], i, base_dir, err))) goto err;

  for (size_t i = 0; i < gp->n_output; i++) {
    const Onnx__ValueInfoProto *vi = gp->output[i];
    if (!vi->name || !vi->name[0]) {
      rc = sf__errf(err, SF_EFORMAT, "graph output %zu has no name", i);
      goto err;
    }
    int id = sf__graph_find(g, vi->name);
    if (id < 0) {
      rc = sf__errf(err, SF_EFORMAT,
                    "graph output '%s' is not produced by any node, nor an input or initializer",
                    vi->name);
      goto err;
    }
    sf_gtensor *t = &g->tensors[id];
    if (t->is_output) {
      rc = sf__errf(err, SF_EFORMAT, "graph output '%s' is listed twice", vi->name);
      goto err;
    }
    t->is_output = 1;
    g->outputs[g->n_outputs++] = id;
    if (t->kind != SF_TK_CONST && (rc = apply_type(t, vi->type, "graph output", err))) goto err;
  }

  /* value_info: types of intermediate tensors; unknown names and non-tensor types are ignored */
  for (size_t i = 0; i < gp->n_value_info; i++) {
    const Onnx__ValueInfoProto *vi = gp->value_info[i];
    if (!vi->name) continue;
    int id = sf__graph_find(g, vi->name);
    if (id < 0) continue;
    sf_gtensor *t = &g->tensors[id];
    if (t->kind != SF_TK_ACT || t->is_output) continue;
    const Onnx__TypeProto *tp = vi->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE) continue;
    if ((rc = apply_type(t, tp, "value_info", err))) goto err;
  }

  sf__graph_index(g);
  *out = g;
  return 0;
nomem:
  rc = sf__errf(err, SF_ENOMEM, "out of memory building the graph");
err:
  sf__graph_free(g);
  return rc;
}

static Onnx__ModelProto *unpack_model(const void *buf, size_t len, sf_err *err) {
  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
  if (!m) sf__errf(err, SF_EFORMAT, "not a valid ONNX ModelProto (truncated or corrupt)");
  return m;
}

/* Decode buf (mapped: a private file mapping) into a graph, the initializers one at a time. */
static int parse_model(const uint8_t *buf, size_t len, int mapped, const char *base_dir,
                       sf_graph **out, sf_err *err) {
  uint8_t *skel = NULL;
  size_t skel_len = 0;
  init_src src = {.mapped = mapped};
  int rc = split_initializers(buf, len, &skel, &skel_len, &src, err);
  if (rc < 0) return rc;
  Onnx__ModelProto *m = rc ? unpack_model(buf, len, err) : unpack_model(skel, skel_len, err);
  free(skel);
  if (!m) {
    free(src.spans);
    return SF_EFORMAT;
  }
  rc = build_graph(m, base_dir, &src, out, err);
  onnx__model_proto__free_unpacked(m, NULL);
  free(src.spans);
  return rc;
}

int sf__onnx_parse(const void *buf, size_t len, const char *base_dir, sf_graph **out,
                   sf_err *err) {
  *out = NULL;
  if (!buf && len) return sf__errf(err, SF_EINVAL, "NULL model buffer");
  return parse_model(buf ? buf : (const uint8_t *)"", len, 0, base_dir, out, err);
}

static int model_new(sf_model **out, sf_graph *g, const char *path, sf_err *err) {
  sf_model *m = sf__calloc(1, sizeof *m);
  if (!m || (path && !(m->path = sf__strdup(path)))) {
    free(m);
    sf__graph_free(g);
    return sf__errf(err, SF_ENOMEM, "out of memory");
  }
  m->g = g;
  *out = m;
  return 0;
}

/* Map path read-only (*mapped = 1) or, where it cannot be mapped, read it (*mapped = 0). */
static int map_file(const char *path, uint8_t **buf, size_t *len, int *mapped, sf_err *err) {
  *mapped = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sf__errf(err, SF_EIO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    if ((int64_t)st.st_size > MODEL_FILE_MAX) {
      close(fd);
      return sf__errf(err, SF_ELIMIT, "%s: file is %lld bytes, limit is %lld", path,
                      (long long)st.st_size, (long long)MODEL_FILE_MAX);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p != MAP_FAILED) {
      close(fd);
      *buf = p;
      *len = (size_t)st.st_size;
      *mapped = 1;
      return 0;
    }
  }
  close(fd);
  void *data = NULL;
  int rc = sf__read_file(path, MODEL_FILE_MAX, &data, len, err);
  *buf = data;
  return rc;
}

int sf_model_load(sf_model **out, const char *path, sf_err *err) {
  if (!out || !path) return sf__errf(err, SF_EINVAL, "sf_model_load: NULL argument");
  *out = NULL;
  sf__malloc_policy();
  uint8_t *buf = NULL;
  size_t len = 0;
  int mapped = 0;
  int rc = map_file(path, &buf, &len, &mapped, err);
  if (rc) return rc;
  char *dir = sf__strdup(path);
  if (!dir) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto out;
  }
  char *slash = strrchr(dir, '/');
  if (!slash) strcpy(dir, ".");
  else if (slash == dir) dir[1] = 0;
  else *slash = 0;
  sf_graph *g = NULL;
  rc = parse_model(buf, len, mapped, dir, &g, err);
  free(dir);
  if (rc) {
    sf__errctx(err, rc, "%s", path);
    goto out;
  }
  rc = model_new(out, g, path, err);
out:
  if (mapped) munmap(buf, len);
  else free(buf);
  return rc;
}

int sf_model_load_buffer(sf_model **out, const void *buf, size_t len, const char *base_dir,
                         sf_err *err) {
  if (!out) return sf__errf(err, SF_EINVAL, "sf_model_load_buffer: NULL argument");
  *out = NULL;
  sf__malloc_policy();
  sf_graph *g = NULL;
  int rc = sf__onnx_parse(buf, len, base_dir, &g, err);
  if (rc) return rc;
  return model_new(out, g, NULL, err);
}

void sf_model_free(sf_model *m) {
  if (!m) return;
  sf__graph_free(m->g);
  free(m->path);
  free(m);
}
