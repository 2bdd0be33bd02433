/* Candidate cuts of a model and the cost of every stage between two cuts. See partition.h and
 * docs/partition.md.
 *
 * Cost: one shape-inference pass over a shared clone of the model, O(L + T) per candidate order,
 * one compile of another clone with every kernel prepared once (the memory each holds), and
 * O(n_cuts * L) for the memory table (one sweep per first cut, with running sums of the weights
 * and kernels and a running maximum for the load peak). */
#include "partition/partition.h"

#include <string.h>

#include "graph/compile.h"
#include "runtime/op.h"
#include "runtime/session.h"

/* Arena bytes of one buffer, as the runtime's memory plan rounds it (compile.c plan_memory). */
#define PAD_BYTES(n) (((n) + SF_READ_SLACK + 63) & ~(int64_t)63)

sf_partition_opts sf_partition_opts_default(void) {
  sf_partition_opts o;
  memset(&o, 0, sizeof o);
  o.order = SF_ORDER_AUTO;
  return o;
}

void sf__pcosts_deinit(sf_pcosts *c) {
  if (!c) return;
  free(c->pos);
  free(c->flops_before);
  free(c->cut_bytes);
  free(c->mem);
  free(c->measured_s);
  free(c->measured_before);
  memset(c, 0, sizeof *c);
}

void sf__partition_deinit(sf_partition *p) {
  if (!p) return;
  sf__graph_free(p->g);
  free(p->ops);
  free(p->prod_pos);
  free(p->last_pos);
  free(p->cross_off);
  free(p->cross);
  free(p->pos_bytes);
  free(p->pos_f32_bytes);
  free(p->flops_at);
  free(p->nhwc);
  free(p->kern_bytes);
  free(p->kern_peak);
  free(p->packed_bytes);
  free(p->fused_prev);
  free(p->kept);
  free(p->codec_bytes);
  sf__pcosts_deinit(&p->costs);
  memset(p, 0, sizeof *p);
}

int sf__partition_crossing(const sf_partition *p, int pos, const int **ids) {
  if (pos < 0 || pos > p->n_ops) {
    *ids = NULL;
    return 0;
  }
  *ids = p->cross + p->cross_off[pos];
  return p->cross_off[pos + 1] - p->cross_off[pos];
}

double sf__partition_codec_bytes(const sf_partition *p, int pos, int codec) {
  if (pos < 0 || pos > p->n_ops) return 0;
  if (p->codec_bytes && codec >= 0 && codec < SF_CODEC_COUNT) {
    double b = 0;
    for (int k = p->cross_off[pos]; k < p->cross_off[pos + 1]; k++)
      b += p->codec_bytes[(size_t)p->cross[k] * SF_CODEC_COUNT + (size_t)codec];
    return b;
  }
  switch (codec) {
  case SF_CODEC_FP16:
    return p->pos_bytes[pos] - p->pos_f32_bytes[pos] / 2;
  default:
    return p->pos_bytes[pos];
  }
}

static int is_act(const sf_gtensor *t) { return t->kind != SF_TK_CONST; }

/* ---- operator orders ---- */

/* Depth-first post-order from the graph outputs: a node is placed once all producers of its
 * inputs are placed; inputs are explored first to last (rev = 0) or last to first (rev = 1), so
 * one branch of a block is finished before the next is started. Returns the count placed. */
static int dfs_order(const sf_graph *g, int rev, int *order, int *stack_n, int *stack_j,
                     char *state) {
  int no = 0;
  memset(state, 0, (size_t)g->n_nodes);
  for (int oi = 0; oi < g->n_outputs; oi++) {
    int root = g->tensors[g->outputs[oi]].producer;
    if (root < 0 || state[root]) continue;
    int sp = 0;
    stack_n[sp] = root;
    stack_j[sp] = 0;
    state[root] = 1;
    sp++;
    while (sp > 0) {
      int ni = stack_n[sp - 1];
      const sf_node *n = &g->nodes[ni];
      int pushed = 0;
      while (stack_j[sp - 1] < n->n_in) {
        int j = stack_j[sp - 1]++;
        int id = n->in[rev ? n->n_in - 1 - j : j];
        if (id < 0 || !is_act(&g->tensors[id])) continue;
        int pr = g->tensors[id].producer;
        if (pr < 0 || state[pr]) continue;
        state[pr] = 1;
        stack_n[sp] = pr;
        stack_j[sp] = 0;
        sp++;
        pushed = 1;
        break;
      }
      if (pushed) continue;
      state[ni] = 2;
      order[no++] = ni;
      sp--;
    }
  }
  return no;
}

/* prod_pos / last_pos of every tensor for an order; returns the sum over positions of the
 * crossing bytes (the order's cost). */
static double positions(const sf_graph *g, const int *order, int L, int *prod, int *last) {
  for (int i = 0; i < g->n_tensors; i++) prod[i] = last[i] = -1;
  for (int q = 0; q < L; q++) {
    const sf_node *n = &g->nodes[order[q]];
    for (int j = 0; j < n->n_in; j++)
      if (n->in[j] >= 0 && is_act(&g->tensors[n->in[j]])) last[n->in[j]] = q;
    for (int j = 0; j < n->n_out; j++)
      if (n->out[j] >= 0) prod[n->out[j]] = q;
  }
  for (int i = 0; i < g->n_outputs; i++)
    if (is_act(&g->tensors[g->outputs[i]])) last[g->outputs[i]] = L;
  double cost = 0;
  for (int i = 0; i < g->n_tensors; i++) {
    const sf_gtensor *t = &g->tensors[i];
    if (!is_act(t) || last[i] < 0 || last[i] <= prod[i]) continue;
    int64_t nb = sf_tensor_nbytes(&t->t);
    if (nb > 0) cost += (double)nb * (last[i] - prod[i]);
  }
  return cost;
}

static int choose_order(sf_partition *p, int want, sf_err *err) {
  sf_graph *g = p->g;
  int L = 0;
  for (int oi = 0; oi < g->n_order; oi++) L += !g->nodes[g->order[oi]].dead;
  int nn = g->n_nodes ? g->n_nodes : 1;
  int *cand = sf__malloc(sizeof(int) * (size_t)nn * 3);
  int *sn = sf__malloc(sizeof(int) * (size_t)nn), *sj = sf__malloc(sizeof(int) * (size_t)nn);
  char *state = sf__malloc((size_t)nn);
  int rc = 0;
  if (!cand || !sn || !sj || !state) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory ordering the graph");
    goto out;
  }
  int nf = 0;
  for (int oi = 0; oi < g->n_order; oi++)
    if (!g->nodes[g->order[oi]].dead) cand[2 * nn + nf++] = g->order[oi];
  int ok[3] = {0, 0, 1};
  ok[0] = dfs_order(g, 0, cand, sn, sj, state) == L;
  ok[1] = dfs_order(g, 1, cand + nn, sn, sj, state) == L;
  int kinds[3] = {SF_ORDER_DFS, SF_ORDER_DFS_REV, SF_ORDER_FILE};
  int best = -1;
  double best_cost = 0;
  for (int k = 0; k < 3; k++) {
    if (!ok[k] || (want != SF_ORDER_AUTO && want != kinds[k])) continue;
    double c = positions(g, cand + (size_t)k * nn, L, p->prod_pos, p->last_pos);
    if (best < 0 || c < best_cost) {
      best = k;
      best_cost = c;
    }
  }
  if (best < 0) { /* a DFS order misses nodes only for nodes that reach no output (pruned) */
    rc = sf__errf(err, SF_EINTERNAL, "order %d does not cover the graph", want);
    goto out;
  }
  p->n_ops = L;
  p->order = kinds[best];
  p->ops = sf__malloc(sizeof(int) * (size_t)(L ? L : 1));
  if (!p->ops) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto out;
  }
  memcpy(p->ops, cand + (size_t)best * nn, sizeof(int) * (size_t)L);
  positions(g, p->ops, L, p->prod_pos, p->last_pos);
out:
  free(cand);
  free(sn);
  free(sj);
  free(state);
  return rc;
}

/* ---- crossings ---- */
static int crossings(sf_partition *p, sf_err *err) {
  const sf_graph *g = p->g;
  int L = p->n_ops;
  p->cross_off = sf__calloc((size_t)L + 2, sizeof(int));
  p->pos_bytes = sf__calloc((size_t)L + 1, sizeof(double));
  p->pos_f32_bytes = sf__calloc((size_t)L + 1, sizeof(double));
  if (!p->cross_off || !p->pos_bytes || !p->pos_f32_bytes)
    return sf__errf(err, SF_ENOMEM, "out of memory");
  int64_t total = 0;
  for (int i = 0; i < g->n_tensors; i++) {
    if (!is_act(&g->tensors[i]) || p->last_pos[i] < 0) continue;
    int lo = p->prod_pos[i] + 1, hi = p->last_pos[i]; /* crosses positions lo..hi */
    if (hi < lo) continue;
    int64_t nb = sf_tensor_nbytes(&g->tensors[i].t);
    for (int q = lo; q <= hi; q++) {
      p->cross_off[q + 1]++;
      p->pos_bytes[q] += (double)nb;
      if (g->tensors[i].t.dtype == SF_F32) p->pos_f32_bytes[q] += (double)nb;
    }
    total += hi - lo + 1;
  }
  for (int q = 0; q <= L; q++) p->cross_off[q + 1] += p->cross_off[q];
  p->cross = sf__malloc(sizeof(int) * (size_t)(total ? total : 1));
  int *fill = sf__calloc((size_t)L + 1, sizeof(int));
  if (!p->cross || !fill) {
    free(fill);
    return sf__errf(err, SF_ENOMEM, "out of memory");
  }
  for (int i = 0; i < g->n_tensors; i++) {
    if (!is_act(&g->tensors[i]) || p->last_pos[i] < 0) continue;
    for (int q = p->prod_pos[i] + 1; q <= p->last_pos[i]; q++)
      p->cross[p->cross_off[q] + fill[q]++] = i;
  }
  free(fill);
  for (int q = 0; q <= L; q++) p->n_singleton += p->cross_off[q + 1] - p->cross_off[q] == 1;
  return 0;
}

/* ---- memory model ---- */
static int uf_root(int *par, int i) {
  while (par[i] != i) {
    par[i] = par[par[i]];
    i = par[i];
  }
  return i;
}

static int act_follower(const sf_node *n) {
  return !n->domain[0] && (!strcmp(n->op_type, "Relu") || !strcmp(n->op_type, "Clip"));
}

static int act_host(const sf_node *n) {
  static const char *const h[] = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add",
                                  "Sub",  "Mul",           "Div",  NULL};
  for (int i = 0; h[i]; i++)
    if (!strcmp(n->op_type, h[i])) return !n->domain[0];
  return 0;
}

/* The memory model: the runtime's buffer sharing applied over the whole order - reshape-family
 * aliases (SF_OPF_ALIAS), in-place element-wise ops (SF_OPF_INPLACE, when the input dies there)
 * and the compiler's fusions (Conv+BatchNormalization, an activation into its producer,
 * Sigmoid+Mul), whose intermediate tensor gets no buffer of its own. A group of shared tensors
 * is one buffer (bytes padded as the arena pads them) living from its first producer to its last
 * consumer. A fusion or in-place edge at operator q is lost in a stage that starts after its
 * input was produced (the input is a stage input) or, for in-place, whose output leaves the
 * stage: the stage then needs edge_bytes[q] more at q. */
typedef struct mmodel {
  int ng;             /* groups */
  int *glo, *ghi;     /* group lifetime (operator positions) */
  int64_t *gbytes;
  int *gfirst;        /* tie-break of equal sizes: first appearance */
  int64_t *live;      /* L: bytes of the groups alive at each operator */
  int *edge_x;        /* L: tensor whose buffer operator q takes over (-1 none) */
  int *edge_inplace;  /* L: that edge is in-place (lost if the output crosses the stage end) */
  int64_t *edge_bytes;
  double ratio;       /* greedy arena / live peak of the whole model */
  const char *nhwc;   /* per tensor: stored channels-last by the runtime (layout conversions at
                         stage boundaries), may be NULL */
  int *gtensor;       /* per group: a member tensor (the root) */
} mmodel;

static void mm_free(mmodel *mm) {
  free(mm->glo);
  free(mm->ghi);
  free(mm->gbytes);
  free(mm->gfirst);
  free(mm->live);
  free(mm->edge_x);
  free(mm->edge_inplace);
  free(mm->edge_bytes);
  free(mm->gtensor);
  memset(mm, 0, sizeof *mm);
}

typedef struct gbuf {
  int64_t size, off;
  int lo, hi, first;
} gbuf;

static int cmp_gbuf(const void *a, const void *b) {
  const gbuf *x = a, *y = b;
  if (x->size != y->size) return x->size > y->size ? -1 : 1;
  return x->first - y->first;
}

/* Arena of the stage [a, b) planned as compile.c plan_memory does: buffers by decreasing size,
 * each at the lowest offset free of the placed buffers alive at the same time. bufs: scratch of
 * ng + L entries, live: scratch of as many pointers. O(m^2) for m buffers in the stage. */
/* Time of operator q in a stage plan: 64 q + 32; the layout conversions of the stage's inputs
 * run in the slots before it (64 a + k), those of its outputs after the last operator. */
#define T_OP(q) ((q) * 64 + 32)

/* Does a stage [a, b) run a channels-last convolution-like operator on stage input t? */
static int nhwc_consumer(const sf_partition *p, int t, int a, int b) {
  for (int q = a; q < b && q <= p->last_pos[t]; q++) {
    const sf_node *n = &p->g->nodes[p->ops[q]];
    if (n->n_in > 0 && n->in[0] == t && n->op && (n->op->flags & SF_OPF_NHWC)) return 1;
  }
  return 0;
}

/* Is t (produced in the stage starting at a) written channels-last: by a convolution-like
 * operator, or by an element-wise one fed by such a tensor of the stage? */
static int nhwc_producer(const sf_partition *p, int t, int a) {
  for (int depth = 0; depth < 8; depth++) {
    int q = p->prod_pos[t];
    if (q < a) return 0;
    const sf_node *n = &p->g->nodes[p->ops[q]];
    if (!n->op) return 0;
    if (n->op->flags & SF_OPF_NHWC) return 1;
    if (!(n->op->flags & SF_OPF_AGNOSTIC)) return 0;
    int next = -1;
    for (int j = 0; j < n->n_in && next < 0; j++)
      if (n->in[j] >= 0 && p->g->tensors[n->in[j]].kind != SF_TK_CONST &&
          p->prod_pos[n->in[j]] >= a && p->nhwc[n->in[j]])
        next = n->in[j];
    if (next < 0) return 0;
    t = next;
  }
  return 1;
}

static int64_t greedy_arena(const mmodel *mm, const sf_partition *p, int a, int b, gbuf *bufs,
                            gbuf **live) {
  int m = 0, kin = 0, kout = 0;
  int end = (b - 1) * 64 + 63;
  for (int i = 0; i < mm->ng; i++) {
    if (mm->ghi[i] < a || mm->glo[i] >= b) continue;
    int lo = mm->glo[i] < a ? a * 64 : T_OP(mm->glo[i]);
    int hi = mm->ghi[i] >= b ? end : T_OP(mm->ghi[i]);
    int t = mm->gtensor[i];
    if (mm->nhwc && mm->nhwc[t] && mm->glo[i] < a && nhwc_consumer(p, t, a, b)) {
      /* a channels-last stage input: converted at the start, the plain copy dies there */
      int k = kin < 31 ? kin++ : 31;
      bufs[m++] = (gbuf){.size = mm->gbytes[i], .lo = lo, .hi = a * 64 + k, .first = mm->gfirst[i]};
      lo = a * 64 + k;
    }
    if (mm->nhwc && mm->nhwc[t] && mm->ghi[i] >= b && mm->glo[i] >= a && nhwc_producer(p, t, a)) {
      /* a channels-last stage output: produced into a twin, converted into the plain output */
      int k = kout < 28 ? kout++ : 28;
      bufs[m++] = (gbuf){.size = mm->gbytes[i], .lo = lo, .hi = (b - 1) * 64 + 34 + k,
                         .first = mm->gfirst[i]};
    }
    bufs[m++] = (gbuf){.size = mm->gbytes[i], .lo = lo, .hi = hi, .first = mm->gfirst[i]};
  }
  for (int q = a; q < b; q++) {
    int x = mm->edge_x[q];
    if (x < 0) continue;
    const sf_node *n = &p->g->nodes[p->ops[q]];
    if (p->prod_pos[x] < a || (mm->edge_inplace[q] && p->last_pos[n->out[0]] >= b))
      bufs[m++] = (gbuf){.size = mm->edge_bytes[q], .lo = T_OP(q), .hi = T_OP(q), .first = q};
  }
  qsort(bufs, (size_t)m, sizeof *bufs, cmp_gbuf);
  int64_t total = 0;
  for (int i = 0; i < m; i++) {
    int nl = 0;
    for (int j = 0; j < i; j++)
      if (bufs[j].lo <= bufs[i].hi && bufs[i].lo <= bufs[j].hi) live[nl++] = &bufs[j];
    for (int x = 1; x < nl; x++)
      for (int y = x; y > 0 && live[y - 1]->off > live[y]->off; y--) {
        gbuf *t = live[y];
        live[y] = live[y - 1];
        live[y - 1] = t;
      }
    int64_t off = 0;
    for (int x = 0; x < nl; x++) {
      if (live[x]->off >= off + bufs[i].size) break;
      if (live[x]->off + live[x]->size > off) off = live[x]->off + live[x]->size;
    }
    bufs[i].off = off;
    if (off + bufs[i].size > total) total = off + bufs[i].size;
  }
  return total;
}

/* Peak of the live bytes over [a, b) with the lost edges: a lower bound of greedy_arena. */
static int64_t live_peak(const mmodel *mm, const sf_partition *p, int a, int b) {
  int64_t best = 0;
  for (int q = a; q < b; q++) {
    int64_t v = mm->live[q];
    int x = mm->edge_x[q];
    if (x >= 0 && (p->prod_pos[x] < a ||
                   (mm->edge_inplace[q] && p->last_pos[p->g->nodes[p->ops[q]].out[0]] >= b)))
      v += mm->edge_bytes[q];
    if (v > best) best = v;
  }
  return best;
}

/* Stages longer than this many operators get live_peak * ratio (bounded below by the exact plans
 * of their first and last window) instead of the O(m^2) plan: keeps the table O(n * L * W). */
#define EXACT_WINDOW 128

static int64_t stage_arena(const mmodel *mm, const sf_partition *p, int a, int b, gbuf *bufs,
                           gbuf **live) {
  if (b - a <= EXACT_WINDOW) return greedy_arena(mm, p, a, b, bufs, live);
  int64_t est = (int64_t)((double)live_peak(mm, p, a, b) * mm->ratio);
  int64_t w1 = greedy_arena(mm, p, a, a + EXACT_WINDOW, bufs, live);
  int64_t w2 = greedy_arena(mm, p, b - EXACT_WINDOW, b, bufs, live);
  if (w1 > est) est = w1;
  if (w2 > est) est = w2;
  return est;
}

static int mm_build(const sf_partition *p, mmodel *mm, gbuf **bufs, gbuf ***live, sf_err *err) {
  const char *nhwc = p->nhwc;
  const sf_graph *g = p->g;
  int L = p->n_ops, nt = g->n_tensors;
  memset(mm, 0, sizeof *mm);
  mm->nhwc = nhwc;
  size_t tn = (size_t)(nt ? nt : 1), ln = (size_t)L + 1;
  int *par = sf__malloc(sizeof(int) * tn);
  int *lo = sf__malloc(sizeof(int) * tn);
  int *hi = sf__malloc(sizeof(int) * tn);
  int64_t *diff = sf__calloc(ln + 1, sizeof(int64_t));
  mm->glo = sf__malloc(sizeof(int) * tn);
  mm->ghi = sf__malloc(sizeof(int) * tn);
  mm->gbytes = sf__malloc(sizeof(int64_t) * tn);
  mm->gfirst = sf__malloc(sizeof(int) * tn);
  mm->live = sf__calloc(ln, sizeof(int64_t));
  mm->edge_x = sf__malloc(sizeof(int) * ln);
  mm->edge_inplace = sf__calloc(ln, sizeof(int));
  mm->edge_bytes = sf__calloc(ln, sizeof(int64_t));
  mm->gtensor = sf__malloc(sizeof(int) * tn);
  *bufs = sf__malloc(sizeof(gbuf) * (3 * tn + ln));
  *live = sf__malloc(sizeof(gbuf *) * (tn + ln));
  int rc = 0;
  if (!par || !lo || !hi || !diff || !mm->glo || !mm->ghi || !mm->gbytes || !mm->gfirst ||
      !mm->live || !mm->edge_x || !mm->gtensor || !mm->edge_inplace || !mm->edge_bytes || !*bufs || !*live) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto out;
  }
  for (int i = 0; i < nt; i++) {
    par[i] = i;
    int s = p->prod_pos[i] < 0 ? 0 : p->prod_pos[i];
    int e = p->last_pos[i] < s ? s : p->last_pos[i];
    lo[i] = s;
    hi[i] = e > L - 1 ? L - 1 : e;
  }
  for (int q = 0; q <= L; q++) mm->edge_x[q] = -1;
#define JOIN(x, y, inplace)                                                                    \
  do {                                                                                         \
    int rx_ = uf_root(par, (x)), ry_ = uf_root(par, (y));                                      \
    if (rx_ != ry_) {                                                                          \
      par[ry_] = rx_;                                                                          \
      if (lo[ry_] < lo[rx_]) lo[rx_] = lo[ry_];                                                \
      if (hi[ry_] > hi[rx_]) hi[rx_] = hi[ry_];                                                \
    }                                                                                          \
    if ((inplace) >= 0) {                                                                      \
      mm->edge_x[q] = (x);                                                                     \
      mm->edge_inplace[q] = (inplace);                                                         \
      mm->edge_bytes[q] = PAD_BYTES(sf_tensor_nbytes(&g->tensors[(y)].t));                     \
    }                                                                                          \
  } while (0)
  for (int q = 0; q < L; q++) {
    const sf_node *n = &g->nodes[p->ops[q]];
    if (n->n_in < 1 || n->n_out < 1 || n->in[0] < 0 || n->out[0] < 0) continue;
    int x = n->in[0], y = n->out[0];
    const sf_gtensor *tx = &g->tensors[x], *ty = &g->tensors[y];
    int64_t bx = sf_tensor_nbytes(&tx->t), by = sf_tensor_nbytes(&ty->t);
    int single = p->last_pos[x] == q && !tx->is_output && tx->n_consumers == 1;
    const sf_node *pr = tx->producer >= 0 ? &g->nodes[tx->producer] : NULL;
    if (n->op && (n->op->flags & SF_OPF_ALIAS) && is_act(tx) && bx == by) {
      JOIN(x, y, -1);
    } else if (pr && single && bx == by && tx->t.dtype == SF_F32 &&
               ((!strcmp(n->op_type, "BatchNormalization") && !strcmp(pr->op_type, "Conv")) ||
                (act_follower(n) && act_host(pr)))) {
      JOIN(x, y, 0);
    } else if (n->n_in == 2 && !strcmp(n->op_type, "Mul") && n->in[1] >= 0 &&
               (x = n->in[1], tx = &g->tensors[x], pr = tx->producer >= 0 ? &g->nodes[tx->producer] : NULL) &&
               !strcmp(pr->op_type, "Sigmoid") && p->last_pos[x] == q && tx->n_consumers == 1 &&
               !tx->is_output && pr->in[0] == n->in[0]) {
      JOIN(x, y, 0); /* Swish: the sigmoid's output gets no buffer */
    } else if (n->op && (n->op->flags & SF_OPF_INPLACE) && n->n_out == 1 && !ty->is_output) {
      for (int j = 0; j < n->n_in && j < 2; j++) {
        int xi = n->in[j];
        if (xi < 0) continue;
        const sf_gtensor *t = &g->tensors[xi];
        int r = uf_root(par, xi);
        if (t->kind != SF_TK_ACT || g->tensors[r].kind != SF_TK_ACT || g->tensors[r].is_output ||
            hi[r] != q || sf_tensor_nbytes(&t->t) != by)
          continue;
        int dup = 0;
        for (int k = 0; k < n->n_in; k++) dup += n->in[k] == xi;
        if (dup > 1) continue;
        JOIN(xi, y, 1);
        break;
      }
    }
  }
#undef JOIN
  for (int i = 0; i < nt; i++) {
    const sf_gtensor *t = &g->tensors[i];
    if (!is_act(t) || uf_root(par, i) != i || L == 0) continue;
    if (p->prod_pos[i] < 0 && p->last_pos[i] < 0) continue;
    int64_t nb = sf_tensor_nbytes(&t->t); /* members of a group have equal sizes */
    nb = PAD_BYTES(nb > 0 ? nb : 0);
    diff[lo[i]] += nb;
    diff[hi[i] + 1] -= nb;
    mm->glo[mm->ng] = lo[i];
    mm->ghi[mm->ng] = hi[i];
    mm->gbytes[mm->ng] = nb;
    mm->gtensor[mm->ng] = i;
    mm->gfirst[mm->ng] = p->prod_pos[i] < 0 ? -nt + i : lo[i] * 4;
    mm->ng++;
  }
  int64_t acc = 0;
  for (int q = 0; q < L; q++) {
    acc += diff[q];
    mm->live[q] = acc;
  }
  int64_t lp = live_peak(mm, p, 0, L);
  mm->ratio = lp > 0 ? (double)greedy_arena(mm, p, 0, L, *bufs, *live) / (double)lp : 1;
  if (mm->ratio < 1) mm->ratio = 1;
out:
  free(par);
  free(lo);
  free(hi);
  free(diff);
  if (rc) {
    mm_free(mm);
    free(*bufs);
    free(*live);
    *bufs = NULL;
    *live = NULL;
  }
  return rc;
}

/* ---- stage memory: weights, kernels, load peak (docs/partition.md "Memory model") ---- */

/* Running sums over the operators of a stage [a, q), extended one operator at a time. */
typedef struct stage_acc {
  int64_t raw;   /* constants read, each once (the model as loaded) */
  int64_t kept;  /* constants held unpacked, each once, + compiler-made ones */
  int64_t kern;  /* kernel state */
  int64_t pw;    /* raw bytes of the packed constants */
  int64_t best;  /* max over r in the stage of: kernels of [a, r) + kern_peak of r - raw packed
                    bytes of [a, r); load peak = pw + best */
  int n;         /* operators added */
} stage_acc;

/* Add operator q; stamp (per tensor) and tag (the stage's id) count each constant once. */
static void acc_add(const sf_partition *p, stage_acc *s, int q, int *stamp, int tag) {
  const sf_graph *g = p->g;
  const sf_node *n = &g->nodes[p->ops[q]];
  for (int j = 0; j < n->n_in; j++) {
    int id = n->in[j];
    if (id < 0 || is_act(&g->tensors[id]) || stamp[id] == tag) continue;
    stamp[id] = tag;
    int64_t nb = sf_tensor_nbytes(&g->tensors[id].t);
    s->raw += nb;
    if (p->kept[id]) s->kept += nb;
  }
  /* while q packs: the kernels before it, the raw weights of q and of the operators after it,
   * and what q's preparation adds at its high mark (its kernel + transient copies) */
  int64_t v = s->kern + p->kern_peak[q] - s->pw;
  if (s->n++ == 0 || v > s->best) s->best = v;
  s->kern += p->kern_bytes[q];
  s->pw += p->packed_bytes[q];
}

static int64_t acc_total(const sf_partition *p, const stage_acc *s, int a, int b, int64_t arena,
                         sf_stage_mem *m) {
  sf_stage_mem x;
  x.base = SF_PROCESS_BASE_BYTES;
  x.arena = arena;
  x.kernels = s->kern;
  x.consts = s->kept;
  x.io = SF_STAGE_IO_SLOTS * ((int64_t)p->pos_bytes[a] + (int64_t)p->pos_bytes[b]);
  x.load = s->pw + s->best;
  x.raw = s->raw;
  int64_t run = x.kernels + x.io > x.load ? x.kernels + x.io : x.load;
  int64_t held = x.arena + x.consts + run;
  x.total = x.base + (held > x.raw ? held : x.raw);
  if (m) *m = x;
  return x.total;
}

int64_t sf__partition_stage_mem_parts(const sf_partition *p, int a, int b, sf_stage_mem *m) {
  if (a < 0 || b > p->n_ops || a >= b) return -1;
  const sf_graph *g = p->g;
  int *stamp = sf__malloc(sizeof(int) * (size_t)(g->n_tensors ? g->n_tensors : 1));
  if (!stamp) return -1;
  for (int t = 0; t < g->n_tensors; t++) stamp[t] = -1;
  stage_acc s = {0};
  for (int q = a; q < b; q++) acc_add(p, &s, q, stamp, 0);
  free(stamp);
  /* the model is rebuilt per call (O(T + L)); costs.mem caches every pair of candidate cuts */
  mmodel mm;
  gbuf *bufs = NULL, **live = NULL;
  if (mm_build(p, &mm, &bufs, &live, NULL)) return -1;
  int64_t ar = stage_arena(&mm, p, a, b, bufs, live);
  mm_free(&mm);
  free(bufs);
  free(live);
  return acc_total(p, &s, a, b, ar, m);
}

int64_t sf__partition_stage_mem(const sf_partition *p, int a, int b, int64_t *weights,
                                int64_t *arena) {
  sf_stage_mem m;
  int64_t t = sf__partition_stage_mem_parts(p, a, b, &m);
  if (t < 0) return t;
  if (weights) *weights = m.kernels + m.consts;
  if (arena) *arena = m.arena;
  return t;
}

/* Kernel memory per operator position, from the compiled graph cg (clone of the model whose
 * node and tensor ids below the model's counts are those of p->g): bytes each live node's
 * prepared kernel holds (measured by sf__kernel_bytes), the raw constants it packs, and the
 * constants read unpacked. ok = 0 (cg not compiled or not measured): every constant an operator
 * reads counts as packed, kernel bytes = those raw bytes. */
static void kernel_facts(sf_partition *p, const sf_graph *cg, const int64_t *kb,
                         const int64_t *kpeak, int ok) {
  const sf_graph *g = p->g;
  for (int q = 0; q < p->n_ops; q++) {
    int ni = p->ops[q];
    const sf_node *cn = ok && ni < cg->n_nodes ? &cg->nodes[ni] : NULL;
    if (!ok) {
      const sf_node *n = &g->nodes[ni];
      for (int j = 0; j < n->n_in; j++)
        if (n->in[j] >= 0 && !is_act(&g->tensors[n->in[j]]))
          p->packed_bytes[q] += sf_tensor_nbytes(&g->tensors[n->in[j]].t);
      p->kern_bytes[q] = p->packed_bytes[q];
      p->kern_peak[q] = 2 * p->packed_bytes[q];
      continue;
    }
    if (!cn || cn->dead) continue;
    p->kern_bytes[q] = kb[ni];
    p->kern_peak[q] = kpeak[ni] > kb[ni] ? kpeak[ni] : kb[ni];
    for (int j = 0; j < cn->n_in; j++) {
      int id = cn->in[j];
      if (id < 0 || cg->tensors[id].kind != SF_TK_CONST) continue;
      int64_t nb = sf_tensor_nbytes(&cg->tensors[id].t);
      if (j < 32 && (cn->packed_inputs >> j & 1u)) {
        p->packed_bytes[q] += nb;
        continue;
      }
      int pid = sf__graph_find(g, cg->tensors[id].t.name);
      if (pid >= 0 && !is_act(&g->tensors[pid])) p->kept[pid] = 1;
      else { /* made by the compiler for this operator */
        p->kern_bytes[q] += nb;
        p->kern_peak[q] += nb;
      }
    }
  }
}

/* Positions whose operator the compile fused into the operator just before it (its node is dead
 * in the compiled copy and its first input is that operator's output). */
static void fusion_facts(sf_partition *p, const sf_graph *cg) {
  const sf_graph *g = p->g;
  for (int q = 1; q < p->n_ops; q++) {
    const sf_node *n = &g->nodes[p->ops[q]];
    int ci = p->ops[q] < cg->n_nodes && !strcmp(cg->nodes[p->ops[q]].name, n->name) ? p->ops[q] : -1;
    for (int k = 0; ci < 0 && k < cg->n_nodes; k++)
      if (!strcmp(cg->nodes[k].name, n->name)) ci = k;
    if (ci < 0 || !cg->nodes[ci].dead || n->n_in < 1 || n->in[0] < 0) continue;
    if (p->prod_pos[n->in[0]] == q - 1) {
      p->fused_prev[q] = 1;
      p->n_fused++;
    }
  }
}

/* What the runtime does with the model, from one compile of a copy as a session does (fusion,
 * layout) with every kernel prepared once: which tensors are stored channels-last (looked up by
 * name; a tensor the compiler fused away takes the layout its producer would give it: a rank-4
 * float output of a Conv is channels-last) and the memory of each operator's kernel. */
static int runtime_facts(sf_partition *p, const sf_model *m, const sf_partition_opts *o,
                         sf_err *err) {
  const sf_graph *g = p->g;
  size_t L = (size_t)(p->n_ops ? p->n_ops : 1);
  p->nhwc = sf__calloc((size_t)g->n_tensors + 1, 1);
  p->kept = sf__calloc((size_t)g->n_tensors + 1, 1);
  p->kern_bytes = sf__calloc(L, sizeof(int64_t));
  p->kern_peak = sf__calloc(L, sizeof(int64_t));
  p->packed_bytes = sf__calloc(L, sizeof(int64_t));
  p->fused_prev = sf__calloc(L + 1, 1);
  if (!p->nhwc || !p->kept || !p->kern_bytes || !p->kern_peak || !p->packed_bytes || !p->fused_prev)
    return sf__errf(err, SF_ENOMEM, "out of memory");
  sf_graph *cg = sf__graph_clone_shared(m->g);
  if (!cg) return sf__errf(err, SF_ENOMEM, "out of memory");
  sf_compile_opts co = {.n_shapes = o->n_shapes, .shapes = o->shapes, .layout = -1};
  sf_compile_result cr;
  sf_err e2 = {0};
  int rc = sf__graph_compile(cg, &co, &cr, &e2);
  for (int i = 0; i < g->n_tensors; i++) {
    const sf_gtensor *t = &g->tensors[i];
    if (t->kind == SF_TK_CONST) continue;
    int id = rc ? -1 : sf__graph_find(cg, t->t.name);
    if (id >= 0 && cg->tensors[id].last_use >= 0) {
      p->nhwc[i] = cg->tensors[id].t.layout == SF_LAYOUT_NHWC;
    } else {
      const sf_node *pr = t->producer >= 0 ? &g->nodes[t->producer] : NULL;
      p->nhwc[i] = pr && !strcmp(pr->op_type, "Conv") && t->t.rank == 4 && t->t.dtype == SF_F32;
    }
  }
  size_t nn = (size_t)(cg->n_nodes ? cg->n_nodes : 1);
  int64_t *kb = rc ? NULL : sf__calloc(nn, sizeof(int64_t));
  int64_t *kp = rc ? NULL : sf__calloc(nn, sizeof(int64_t));
  int ok = kb && kp &&
           !sf__kernel_bytes(cg, cr.arena_bytes, o->threads > 1 ? o->threads : 1, kb, kp, &e2);
  kernel_facts(p, cg, kb, kp, ok);
  if (!rc) fusion_facts(p, cg);
  p->kern_measured = ok;
  free(kb);
  free(kp);
  sf__graph_free(cg);
  return 0;
}

/* ---- candidate cuts and the table ---- */
static int pick_cuts(sf_partition *p, const sf_partition_opts *o, sf_err *err) {
  int L = p->n_ops;
  sf_pcosts *c = &p->costs;
  c->pos = sf__malloc(sizeof(int) * ((size_t)L + 1));
  if (!c->pos) return sf__errf(err, SF_ENOMEM, "out of memory");
  int n = 0;
  for (int q = 0; q <= L; q++) {
    if (!o->split_fusions && q > 0 && q < L && p->fused_prev[q]) continue;
    int keep = !o->thin || q == 0 || q == L;
    if (!keep) {
      double b = p->pos_bytes[q];
      int nc = p->cross_off[q + 1] - p->cross_off[q];
      keep = nc == 1 || b <= o->thin_bytes ||
             (b <= p->pos_bytes[q - 1] && b <= p->pos_bytes[q + 1]);
    }
    if (keep) c->pos[n++] = q;
  }
  c->n = n;
  return 0;
}

static int fill_costs(sf_partition *p, sf_err *err) {
  const sf_graph *g = p->g;
  sf_pcosts *c = &p->costs;
  int L = p->n_ops, n = c->n;
  c->flops_before = sf__malloc(sizeof(double) * (size_t)n);
  c->cut_bytes = sf__malloc(sizeof(double) * (size_t)n);
  c->mem = sf__calloc((size_t)n * (size_t)n, sizeof(int64_t));
  c->measured_s = NULL;
  c->measured_before = NULL;
  c->ref_flops_per_s = 0;
  mmodel mm = {0};
  gbuf *bufs = NULL, **live = NULL;
  int *stamp = sf__malloc(sizeof(int) * (size_t)(g->n_tensors ? g->n_tensors : 1));
  int *cut_at = sf__malloc(sizeof(int) * ((size_t)L + 1));
  int rc = 0;
  if (!c->flops_before || !c->cut_bytes || !c->mem || !stamp || !cut_at) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory for the cost table (%d cuts)", n);
    goto out;
  }
  if ((rc = mm_build(p, &mm, &bufs, &live, err))) goto out;
  for (int i = 0; i < n; i++) {
    c->flops_before[i] = p->flops_at[c->pos[i]];
    c->cut_bytes[i] = p->pos_bytes[c->pos[i]];
  }
  for (int q = 0; q <= L; q++) cut_at[q] = -1;
  for (int i = 0; i < n; i++) cut_at[c->pos[i]] = i;
  for (int t = 0; t < g->n_tensors; t++) stamp[t] = -1;
  for (int i = 0; i < n; i++) {
    int a = c->pos[i];
    stage_acc sa = {0};
    for (int q = a; q < L; q++) {
      acc_add(p, &sa, q, stamp, i);
      int j = cut_at[q + 1];
      if (j > i)
        c->mem[(size_t)i * n + j] =
            acc_total(p, &sa, a, q + 1, stage_arena(&mm, p, a, q + 1, bufs, live), NULL);
    }
  }
out:
  mm_free(&mm);
  free(bufs);
  free(live);
  free(stamp);
  free(cut_at);
  return rc;
}

int sf__partition_analyze(const sf_model *m, const sf_partition_opts *o, sf_partition *p,
                          sf_err *err) {
  sf_partition_opts def = sf_partition_opts_default();
  if (!o) o = &def;
  memset(p, 0, sizeof *p);
  if (err) {
    err->code = 0;
    err->msg[0] = 0;
  }
  if (!m || !m->g) return sf__errf(err, SF_EINVAL, "no model");
  if (o->order < SF_ORDER_AUTO || o->order > SF_ORDER_FILE)
    return sf__errf(err, SF_EINVAL, "unknown operator order %d", o->order);
  double t0 = sf__now();
  int rc = 0;
  if (!(p->g = sf__graph_clone_shared(m->g))) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory copying the model");
    goto fail;
  }
  sf_compile_opts co = {.n_shapes = o->n_shapes, .shapes = o->shapes, .layout = 0};
  sf_compile_result cr;
  if ((rc = sf__graph_infer_only(p->g, &co, &cr, err))) goto fail;
  sf__graph_index(p->g);
  int nt = p->g->n_tensors;
  p->prod_pos = sf__malloc(sizeof(int) * (size_t)(nt ? nt : 1));
  p->last_pos = sf__malloc(sizeof(int) * (size_t)(nt ? nt : 1));
  if (!p->prod_pos || !p->last_pos) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto fail;
  }
  if ((rc = choose_order(p, o->order, err))) goto fail;
  if (p->n_ops < 1) {
    rc = sf__errf(err, SF_EINVAL, "the model has no operator left after constant folding");
    goto fail;
  }
  if ((rc = crossings(p, err))) goto fail;
  p->flops_at = sf__malloc(sizeof(double) * ((size_t)p->n_ops + 1));
  if (!p->flops_at) {
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto fail;
  }
  p->flops_at[0] = 0;
  for (int q = 0; q < p->n_ops; q++)
    p->flops_at[q + 1] = p->flops_at[q] + (double)p->g->nodes[p->ops[q]].flops;
  if ((rc = runtime_facts(p, m, o, err))) goto fail;
  if ((rc = pick_cuts(p, o, err))) goto fail;
  if ((rc = fill_costs(p, err))) goto fail;
  p->analyze_s = sf__now() - t0;
  return 0;
fail:
  sf__partition_deinit(p);
  return rc;
}
