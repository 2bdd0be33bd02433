/* Sessions: a model compiled for fixed input shapes, with one arena and prepared kernels. */
#include <pthread.h>
#include <string.h>
#include <xnnpack.h>

#include "graph/compile.h"
#include "onnx/onnx.h"
#include "runtime/op.h"

struct sf_session {
  sf_graph *g;
  pthreadpool_t pool;
  void *arena;
  sf_compile_result cr;
  int64_t params, weights_bytes;
  int n_run; /* nodes executed per inference */
  sf_node_profile *prof; /* per executed node when profiling, else NULL */
};

static pthread_once_t xnn_once = PTHREAD_ONCE_INIT;
static enum xnn_status xnn_init_status;
static void xnn_init(void) { xnn_init_status = xnn_initialize(NULL); }

int sf__xnn_init(sf_err *err) {
  pthread_once(&xnn_once, xnn_init);
  if (xnn_init_status != xnn_status_success)
    return sf__errf(err, SF_EINTERNAL, "XNNPACK initialisation failed (status %d)",
                    (int)xnn_init_status);
  return 0;
}

sf_session_opts sf_session_opts_default(void) {
  sf_session_opts o;
  memset(&o, 0, sizeof o);
  o.layout = -1;
  return o;
}

static void release_states(sf_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    sf_node *n = &g->nodes[i];
    if (n->state && n->op && n->op->release) n->op->release(n);
    n->state = NULL;
  }
}

void sf_session_free(sf_session *s) {
  if (!s) return;
  if (s->g) {
    release_states(s->g);
    /* arena-backed tensors do not own their data */
    sf__graph_free(s->g);
  }
  if (s->pool) pthreadpool_destroy(s->pool);
  free(s->prof);
  free(s->arena);
  free(s);
}

/* Weight release (sf_session_opts.release_weights): a constant is freed as soon as nothing will
 * read it again - at once if the compiled graph does not use it (e.g. a convolution's weights
 * replaced by BatchNormalization-folded ones), or when the last of its consumers has packed it
 * (node->packed_inputs). Borrowed data is freed in the model, which then refuses new sessions. */
typedef struct releaser {
  int *left; /* per tensor: consumers that still read it; -1 never release */
} releaser;

static void free_const(sf_session *s, sf_model *m, int id) {
  sf_gtensor *t = &s->g->tensors[id];
  if (t->kind != SF_TK_CONST || !t->t.data) return;
  if (t->owns_data) {
    free(t->t.data);
  } else if (id < m->g->n_tensors && m->g->tensors[id].t.data == t->t.data &&
             m->g->tensors[id].owns_data) {
    free(m->g->tensors[id].t.data);
    m->g->tensors[id].t.data = NULL;
    m->g->tensors[id].owns_data = 0;
    m->weights_released = 1;
  } else {
    return;
  }
  t->t.data = NULL;
  t->owns_data = 0;
}

static int releaser_init(releaser *r, sf_session *s, sf_model *m) {
  sf_graph *g = s->g;
  r->left = sf__calloc((size_t)g->n_tensors, sizeof(int));
  if (!r->left) return SF_ENOMEM;
  for (int oi = 0; oi < g->n_order; oi++) {
    const sf_node *n = &g->nodes[g->order[oi]];
    for (int j = 0; j < n->n_in; j++)
      if (n->in[j] >= 0) r->left[n->in[j]]++;
  }
  for (int i = 0; i < g->n_inputs; i++) r->left[g->inputs[i]] = -1;
  for (int i = 0; i < g->n_outputs; i++) r->left[g->outputs[i]] = -1;
  /* model constants the compiled graph no longer reads */
  for (int i = 0; i < m->g->n_tensors && i < g->n_tensors; i++)
    if (!r->left[i] && m->g->tensors[i].kind == SF_TK_CONST && m->g->tensors[i].owns_data) {
      int is_io = 0;
      for (int k = 0; k < m->g->n_inputs; k++) is_io |= m->g->inputs[k] == i;
      for (int k = 0; k < m->g->n_outputs; k++) is_io |= m->g->outputs[k] == i;
      if (!is_io) {
        free(m->g->tensors[i].t.data);
        m->g->tensors[i].t.data = NULL;
        m->g->tensors[i].owns_data = 0;
        if (g->tensors[i].kind == SF_TK_CONST && !g->tensors[i].owns_data) g->tensors[i].t.data = NULL;
        m->weights_released = 1;
      }
    }
  return 0;
}

/* After node n's prepare: release constants whose last reader has packed them. */
static void releaser_after(releaser *r, sf_session *s, sf_model *m, const sf_node *n) {
  for (int j = 0; j < n->n_in && j < 32; j++) {
    int id = n->in[j];
    if (id < 0 || !(n->packed_inputs >> j & 1u) || r->left[id] <= 0) continue;
    if (--r->left[id] == 0) free_const(s, m, id);
  }
}

int sf_session_new(sf_session **out, sf_model *m, const sf_session_opts *o, sf_err *err) {
  sf_session_opts def = sf_session_opts_default();
  if (!o) o = &def;
  *out = NULL;
  int rc = sf__xnn_init(err);
  if (rc) return rc;
  if (!m || !m->g) return sf__errf(err, SF_EINVAL, "no model");
  if (m->weights_released)
    return sf__errf(err, SF_EINVAL,
                    "the model's weights were released by an earlier session (release_weights)");
  if (o->threads < 0 || o->threads > 1024)
    return sf__errf(err, SF_EINVAL, "thread count %d out of range (0 = all cores)", o->threads);
  sf_session *s = sf__calloc(1, sizeof *s);
  if (!s) return sf__errf(err, SF_ENOMEM, "out of memory");
  int threads = o->threads ? o->threads : sf__ncpu();
  if (threads > 1 && !(s->pool = pthreadpool_create((size_t)threads))) {
    rc = sf__errf(err, SF_ENOMEM, "cannot create a pool of %d threads", threads);
    goto fail;
  }
  /* parameters: float initializers and float Constant nodes of the model as stored */
  for (int i = 0; i < m->g->n_tensors; i++) {
    const sf_gtensor *t = &m->g->tensors[i];
    if (t->kind == SF_TK_CONST && t->t.dtype == SF_F32) s->params += sf_tensor_numel(&t->t);
  }
  for (int i = 0; i < m->g->n_nodes; i++) {
    const sf_node *n = &m->g->nodes[i];
    const sf_attr *a = strcmp(n->op_type, "Constant") ? NULL : sf__attr(n, "value");
    if (a && a->tensor && a->tensor->dtype == SF_F32) s->params += sf_tensor_numel(a->tensor);
  }
  if (!(s->g = sf__graph_clone_shared(m->g))) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory copying the model");
    goto fail;
  }
  sf_compile_opts co = {.n_shapes = o->n_shapes,
                        .shapes = o->shapes,
                        .n_values = o->n_values,
                        .values = o->values,
                        .no_fuse = o->no_fold,
                        .layout = o->layout,
                        .pool = s->pool};
  if ((rc = sf__graph_compile(s->g, &co, &s->cr, err))) goto fail;
  s->arena = sf__aligned_alloc((size_t)s->cr.arena_bytes + 64);
  if (!s->arena) {
    rc = sf__errf(err, SF_ENOMEM, "cannot allocate the %lld-byte activation arena",
                  (long long)s->cr.arena_bytes);
    goto fail;
  }
  memset(s->arena, 0, (size_t)s->cr.arena_bytes + 64);
  sf__graph_bind_arena(s->g, s->arena);
  sf_graph *g = s->g;
  char *seen = sf__calloc((size_t)g->n_tensors, 1);
  if (!seen) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto fail;
  }
  for (int oi = 0; oi < g->n_order; oi++) {
    sf_node *n = &g->nodes[g->order[oi]];
    if (n->dead) continue;
    for (int j = 0; j < n->n_in; j++) {
      sf_gtensor *t = sf__in(g, n, j);
      if (t && t->kind == SF_TK_CONST && !seen[n->in[j]]) {
        seen[n->in[j]] = 1; /* count each constant once */
        s->weights_bytes += sf_tensor_nbytes(&t->t);
      }
    }
  }
  free(seen);
  releaser rel = {0};
  if (o->release_weights && releaser_init(&rel, s, m)) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto fail;
  }
  for (int oi = 0; oi < g->n_order; oi++) {
    sf_node *n = &g->nodes[g->order[oi]];
    if (n->dead) continue;
    s->n_run++;
    if (!n->op->prepare) continue;
    sf_kctx k = {.g = g, .node = n, .pool = s->pool, .err = err};
    if ((rc = n->op->prepare(&k))) {
      if (err && !err->msg[0]) sf__op_err(&k, rc, "kernel preparation failed");
      free(rel.left);
      goto fail;
    }
    if (rel.left) releaser_after(&rel, s, m, n);
  }
  free(rel.left);
  *out = s;
  return 0;
fail:
  sf_session_free(s);
  return rc ? rc : SF_EINTERNAL;
}

int sf_session_n_inputs(const sf_session *s) { return s->g->n_inputs; }
int sf_session_n_outputs(const sf_session *s) { return s->g->n_outputs; }
sf_tensor *sf_session_input(sf_session *s, int i) {
  return (i >= 0 && i < s->g->n_inputs) ? &s->g->tensors[s->g->inputs[i]].t : NULL;
}
const sf_tensor *sf_session_output(sf_session *s, int i) {
  return (i >= 0 && i < s->g->n_outputs) ? &s->g->tensors[s->g->outputs[i]].t : NULL;
}
int sf_session_input_index(const sf_session *s, const char *name) {
  for (int i = 0; i < s->g->n_inputs; i++)
    if (!strcmp(s->g->tensors[s->g->inputs[i]].t.name, name)) return i;
  return -1;
}

void sf_session_set_profiling(sf_session *s, int on) {
  if (!on) {
    free(s->prof);
    s->prof = NULL;
    return;
  }
  if (s->prof) return;
  s->prof = sf__calloc((size_t)s->n_run, sizeof *s->prof);
  if (!s->prof) return;
  int i = 0;
  for (int oi = 0; oi < s->g->n_order; oi++) {
    const sf_node *n = &s->g->nodes[s->g->order[oi]];
    if (n->dead) continue;
    s->prof[i++] = (sf_node_profile){.name = n->name, .op_type = n->op_type, .flops = n->flops};
  }
}

int sf_session_profile(const sf_session *s, const sf_node_profile **entries) {
  *entries = s->prof;
  return s->prof ? s->n_run : 0;
}

int sf_session_run(sf_session *s, sf_err *err) {
  sf_graph *g = s->g;
  if (err) {
    err->code = 0;
    err->msg[0] = 0;
  }
  int pi = 0;
  for (int oi = 0; oi < g->n_order; oi++) {
    sf_node *n = &g->nodes[g->order[oi]];
    if (n->dead) continue;
    sf_kctx k = {.g = g, .node = n, .pool = s->pool, .err = err};
    double t0 = s->prof ? sf__now() : 0;
    int rc = n->op->run(&k);
    if (s->prof) s->prof[pi++].seconds += sf__now() - t0;
    if (rc) {
      if (err && !err->msg[0]) sf__op_err(&k, rc, "kernel failed");
      return rc;
    }
  }
  return 0;
}

void sf_session_get_stats(const sf_session *s, sf_session_stats *st) {
  memset(st, 0, sizeof *st);
  st->arena_bytes = s->cr.arena_bytes;
  st->weights_bytes = s->weights_bytes;
  st->params = s->params;
  st->flops = s->cr.flops;
  st->n_nodes = s->n_run;
}
