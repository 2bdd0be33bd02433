/* Sessions: a model compiled for fixed input shapes, with one arena and prepared kernels.
 *
 * Memory (what a process serving one session holds, see docs/partition.md "memory model"):
 * the arena, the kernels' state (packed weights, indirection buffers, scratch: measured per node
 * from the allocator's statistics, sf_session_stats.kernel_bytes) and the constants no kernel
 * packed (const_bytes). With release_weights the session takes the model's weights and frees
 * each one as soon as its last reader has packed it, so creation peaks near the larger of the
 * raw and the packed weights (plus one operator's transient), not their sum. */
#include <pthread.h>
#include <string.h>
#include <xnnpack.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "graph/compile.h"
#include "onnx/onnx.h"
#include "runtime/op.h"
#include "runtime/session.h"

struct sf_session {
  sf_graph *g;
  pthreadpool_t pool;
  void *arena;
  sf_compile_result cr;
  int64_t params, weights_bytes;
  int64_t kernel_bytes, const_bytes;
  int n_run; /* nodes executed per inference */
  sf_node_profile *prof; /* per executed node when profiling, else NULL */
};

/* Bytes in use by the allocator (heap chunks + mapped blocks), or -1 where it cannot tell
 * (not glibc >= 2.33, or a sanitizer's allocator). Counts every thread's allocations. */
static int64_t heap_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)) && \
    !defined(__SANITIZE_ADDRESS__)
  struct mallinfo2 mi = mallinfo2();
  return (int64_t)(mi.uordblks + mi.hblkhd);
#else
  return -1;
#endif
}

/* XNNPACK allocates through these (the default allocator's calls) so that the heap's high mark
 * while a kernel is prepared can be seen: at each XNNPACK allocation (the packed weights,
 * indirection buffers), the bytes in use plus the block, while measuring on this thread. */
static _Thread_local int64_t tl_mark = -1; /* -1: not measuring */

static void mark(size_t size) {
  if (tl_mark < 0) return;
  int64_t h = heap_in_use();
  if (h >= 0 && h + (int64_t)size > tl_mark) tl_mark = h + (int64_t)size;
}
static void *xa_allocate(void *ctx, size_t size) {
  mark(size);
  return malloc(size);
}
static void *xa_reallocate(void *ctx, void *p, size_t size) {
  mark(size);
  return realloc(p, size);
}
static void xa_deallocate(void *ctx, void *p) { free(p); }
static void *xa_aligned_allocate(void *ctx, size_t alignment, size_t size) {
  mark(size);
  void *p = NULL;
  if (alignment < sizeof(void *)) alignment = sizeof(void *);
  return posix_memalign(&p, alignment, size) ? NULL : p;
}
static const struct xnn_allocator xnn_alloc = {.allocate = xa_allocate,
                                               .reallocate = xa_reallocate,
                                               .deallocate = xa_deallocate,
                                               .aligned_allocate = xa_aligned_allocate,
                                               .aligned_deallocate = xa_deallocate};

/* Bytes of the constant inputs node n packed (the fallback when heap_in_use cannot tell). */
static int64_t packed_input_bytes(const sf_graph *g, const sf_node *n) {
  int64_t b = 0;
  for (int j = 0; j < n->n_in && j < 32; j++) {
    const sf_gtensor *t = n->in[j] >= 0 ? &g->tensors[n->in[j]] : NULL;
    if (t && t->kind == SF_TK_CONST && (n->packed_inputs >> j & 1u)) b += sf_tensor_nbytes(&t->t);
  }
  return b;
}

/* Prepare node n and measure what its state holds and the heap's high mark meanwhile, both
 * above the bytes in use before (see sf__kernel_bytes). */
static int prepare_measured(sf_graph *g, sf_node *n, pthreadpool_t pool, int64_t *bytes,
                            int64_t *peak, sf_err *err) {
  *bytes = *peak = 0;
  if (!n->op->prepare) return 0;
  sf_kctx k = {.g = g, .node = n, .pool = pool, .err = err};
  int64_t h0 = heap_in_use();
  tl_mark = h0;
  int rc = n->op->prepare(&k);
  int64_t h1 = heap_in_use(), top = tl_mark;
  tl_mark = -1;
  if (rc) {
    if (err && !err->msg[0]) sf__op_err(&k, rc, "kernel preparation failed");
    return rc;
  }
  if (h0 >= 0 && h1 >= 0) {
    *bytes = h1 > h0 ? h1 - h0 : 0;
    *peak = top > h1 ? top - h0 : *bytes;
  } else {
    *bytes = packed_input_bytes(g, n);
    *peak = 2 * *bytes; /* unknown: assume a transient copy of the source */
  }
  return 0;
}

static pthread_once_t xnn_once = PTHREAD_ONCE_INIT;
static enum xnn_status xnn_init_status;
static void xnn_init(void) { xnn_init_status = xnn_initialize(&xnn_alloc); }

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

int sf__kernel_bytes(sf_graph *g, int64_t arena_bytes, int threads, int64_t *bytes,
                     int64_t *peak, sf_err *err) {
  int rc = sf__xnn_init(err);
  if (rc) return rc;
  for (int i = 0; i < g->n_nodes; i++) bytes[i] = peak[i] = 0;
  pthreadpool_t pool = NULL;
  void *arena = NULL;
  if (threads > 1 && !(pool = pthreadpool_create((size_t)threads))) {
    rc = sf__errf(err, SF_ENOMEM, "cannot create a pool of %d threads", threads);
    goto out;
  }
  if (!(arena = sf__aligned_alloc((size_t)arena_bytes + 64))) {
    rc = sf__errf(err, SF_ENOMEM, "cannot allocate a %lld-byte arena", (long long)arena_bytes);
    goto out;
  }
  sf__graph_bind_arena(g, arena);
  for (int oi = 0; oi < g->n_order && !rc; oi++) {
    sf_node *n = &g->nodes[g->order[oi]];
    if (n->dead) continue;
    rc = prepare_measured(g, n, pool, &bytes[g->order[oi]], &peak[g->order[oi]], err);
    if (n->state && n->op->release) n->op->release(n);
    n->state = NULL;
  }
out:
  free(arena);
  if (pool) pthreadpool_destroy(pool);
  return rc;
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

/* Weight release (sf_session_opts.release_weights): the session takes ownership of the model's
 * weights (the model keeps names and shapes, no data, and refuses new sessions), so that the
 * compiler frees a constant it replaces at once (Conv+BatchNormalization folding) and a
 * constant is freed as soon as nothing will read it again - at once if the compiled graph does
 * not use it, or when the last of its consumers has packed it (node->packed_inputs). */
typedef struct releaser {
  int *left; /* per tensor: consumers that still read it; -1 never release */
} releaser;

/* Move the model's constant buffers to the session graph; *orig (n_tensors of m) keeps each
 * taken pointer for give_back. */
static int take_weights(sf_session *s, sf_model *m, void ***orig) {
  int n = m->g->n_tensors < s->g->n_tensors ? m->g->n_tensors : s->g->n_tensors;
  *orig = sf__calloc((size_t)(n ? n : 1), sizeof(void *));
  if (!*orig) return SF_ENOMEM;
  for (int i = 0; i < n; i++) {
    sf_gtensor *mt = &m->g->tensors[i], *t = &s->g->tensors[i];
    if (mt->kind != SF_TK_CONST || !mt->owns_data || !mt->t.data || t->t.data != mt->t.data)
      continue;
    (*orig)[i] = mt->t.data;
    t->owns_data = 1;
    mt->owns_data = 0;
    mt->t.data = NULL;
    m->weights_released = 1;
  }
  return 0;
}

/* Session creation failed: return the buffers still intact to the model (it stays usable when
 * all of them are). */
static void give_back(sf_session *s, sf_model *m, void **orig) {
  int lost = 0;
  int n = m->g->n_tensors < s->g->n_tensors ? m->g->n_tensors : s->g->n_tensors;
  for (int i = 0; i < n; i++) {
    if (!orig[i]) continue;
    sf_gtensor *mt = &m->g->tensors[i], *t = &s->g->tensors[i];
    if (t->owns_data && t->t.data == orig[i]) {
      mt->t.data = orig[i];
      mt->owns_data = 1;
      t->owns_data = 0;
    } else {
      lost = 1;
    }
  }
  m->weights_released = lost;
}

static void free_const(sf_gtensor *t) {
  if (t->kind != SF_TK_CONST || !t->t.data || !t->owns_data) return;
  free(t->t.data);
  t->t.data = NULL;
  t->owns_data = 0;
}

static int releaser_init(releaser *r, sf_session *s) {
  sf_graph *g = s->g;
  r->left = sf__calloc((size_t)(g->n_tensors ? g->n_tensors : 1), sizeof(int));
  if (!r->left) return SF_ENOMEM;
  for (int oi = 0; oi < g->n_order; oi++) {
    const sf_node *n = &g->nodes[g->order[oi]];
    if (n->dead) continue;
    for (int j = 0; j < n->n_in; j++)
      if (n->in[j] >= 0) r->left[n->in[j]]++;
  }
  for (int i = 0; i < g->n_inputs; i++) r->left[g->inputs[i]] = -1;
  for (int i = 0; i < g->n_outputs; i++) r->left[g->outputs[i]] = -1;
  /* constants the compiled graph does not read */
  for (int i = 0; i < g->n_tensors; i++)
    if (!r->left[i]) free_const(&g->tensors[i]);
  return 0;
}

/* After node n's prepare: release constants whose last reader has packed them. */
static void releaser_after(releaser *r, sf_session *s, const sf_node *n) {
  for (int j = 0; j < n->n_in && j < 32; j++) {
    int id = n->in[j];
    if (id < 0 || !(n->packed_inputs >> j & 1u) || r->left[id] <= 0) continue;
    if (--r->left[id] == 0) free_const(&s->g->tensors[id]);
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
  if (o->release_weights) sf__malloc_policy();
  void **orig = NULL;
  releaser rel = {0};
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
  if (o->release_weights && take_weights(s, m, &orig)) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
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
  sf_graph *g = s->g;
  char *seen = sf__calloc((size_t)(g->n_tensors ? g->n_tensors : 1), 1);
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
  if (o->release_weights && releaser_init(&rel, s)) {
    free(seen);
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto fail;
  }
  s->arena = sf__aligned_alloc((size_t)s->cr.arena_bytes + 64);
  if (!s->arena) {
    free(seen);
    rc = sf__errf(err, SF_ENOMEM, "cannot allocate the %lld-byte activation arena",
                  (long long)s->cr.arena_bytes);
    goto fail;
  }
  memset(s->arena, 0, (size_t)s->cr.arena_bytes + 64);
  sf__graph_bind_arena(s->g, s->arena);
  for (int oi = 0; oi < g->n_order; oi++) {
    sf_node *n = &g->nodes[g->order[oi]];
    if (n->dead) continue;
    s->n_run++;
    int64_t kb = 0, kp = 0;
    if ((rc = prepare_measured(g, n, s->pool, &kb, &kp, err))) {
      free(seen);
      goto fail;
    }
    s->kernel_bytes += kb;
    if (rel.left) releaser_after(&rel, s, n);
  }
  /* constants still held: those no kernel packed (all of them without release_weights) */
  memset(seen, 0, (size_t)g->n_tensors);
  for (int oi = 0; oi < g->n_order; oi++) {
    const sf_node *n = &g->nodes[g->order[oi]];
    if (n->dead) continue;
    for (int j = 0; j < n->n_in; j++) {
      const sf_gtensor *t = sf__in(g, n, j);
      if (t && t->kind == SF_TK_CONST && t->t.data && !seen[n->in[j]]) {
        seen[n->in[j]] = 1;
        s->const_bytes += sf_tensor_nbytes(&t->t);
      }
    }
  }
  free(seen);
  free(rel.left);
  free(orig);
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
  if (o->release_weights) malloc_trim(0); /* hand the freed weights' heap pages back */
#endif
  *out = s;
  return 0;
fail:
  free(rel.left);
  if (orig) {
    release_states(s->g);
    give_back(s, m, orig);
    free(orig);
  }
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
  st->kernel_bytes = s->kernel_bytes;
  st->const_bytes = s->const_bytes;
  st->params = s->params;
  st->flops = s->cr.flops;
  st->n_nodes = s->n_run;
}
