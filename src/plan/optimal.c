/* Exact placement: branch and bound over (cut, node, set of used nodes) with a polynomial
 * relaxation as bound, a dead-state memo and node symmetry breaking. See docs/planner.md for
 * the algorithm, its proof of optimality and its cost.
 *
 * Search state: the stages placed so far end at cut c on node v, S = nodes used, t = |S|,
 * cur = max cost so far (gateway input, stage computes, transfers between placed stages).
 * A child places the next stage (c, j) on an unused node w: cost max(cur, link(c, v, w),
 * stage(c, j, w)); at j = n-1 the plan completes with the gateway output transfer.
 * Bound: f[r][j][w] = least possible max of the remaining costs when the output of cut j is on
 * node w and at most r more stages may follow, ignoring that nodes must be distinct (a walk in
 * the layered graph (cut, node)); computed by DP in O(R (n^2 m + n m^2)). */
#include <math.h>
#include <string.h>

#include "plan/plan.h"

#define MEMO_MAX_BYTES ((size_t)256 << 20)
#define TABLE_MAX_ENTRIES ((size_t)8 << 20)
#define BOUND_MAX_BYTES ((size_t)128 << 20)

typedef struct child {
  int w, j;
  double x, bound; /* cost including this stage; lower bound of any completion */
} child;

typedef struct bb {
  const sf_pcosts *c;
  const sf_cluster *cl;
  const unsigned char *usable; /* NULL: every node may run a stage */
  int n, m, K, gw, W;
  double *in_s, *out_s;     /* gateway transfers per node */
  int *scls, nscls;         /* stage class of a node (same memory and speed) */
  double *stab;             /* n*n*nscls stage times (inf: does not fit), or NULL */
  int *prev_eq;             /* previous node interchangeable with this one, or -1 */
  int *ord;                 /* m*(m-1): other nodes by decreasing bandwidth from each node */
  double *f;                /* nl layers of n*m bounds */
  int nl, nexact;           /* layers 0..nexact-1 exact; layer nl-1 may be unlimited */
  /* search */
  uint64_t *S;
  int *cuts, *nodes, t;
  int *best_cuts, *best_nodes, best_k;
  double best, root_lb;
  int *need; /* fewest stages from cut j to the end on the largest memory (n+1: none) */
  child *stack;
  int stack_cap, stack_n;
  long long expanded;
  double t0, limit;
  int aborted, done;
  /* memo of dead states: key (c, v, S) */
  uint64_t *pool;
  size_t pool_n, pool_cap, stride;
  uint32_t *tab;
  size_t tab_cap, tab_n;
  int memo_full;
} bb;

static inline double st_time(const bb *b, int i, int j, int w) {
  if (b->usable && !b->usable[w]) return INFINITY;
  if (b->stab) return b->stab[((size_t)i * b->n + j) * b->nscls + b->scls[w]];
  if (sf__pcosts_mem(b->c, i, j) > b->cl->nodes[w].mem_bytes) return INFINITY;
  return sf__stage_compute_s(b->c, b->cl, i, j, w);
}

static inline double link_t(const bb *b, int cut, int u, int v) {
  return sf__link_s(b->c, b->cl, cut, u, v);
}

static inline double *fl(const bb *b, int r) {
  int L = r < b->nexact ? r : b->nl - 1;
  return b->f + (size_t)L * b->n * b->m;
}

static inline double dmax(double a, double b) { return a > b ? a : b; }

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

static uint64_t dbits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}

/* Nodes u and v are interchangeable: swapping them maps every plan to one of equal cost. */
static int equivalent(const bb *b, int u, int v) {
  const sf_cluster *cl = b->cl;
  int m = cl->n;
  const double *bw = cl->bw;
  if (u == cl->gateway || v == cl->gateway) return 0;
  if (b->usable && !b->usable[u] != !b->usable[v]) return 0;
  if (cl->nodes[u].mem_bytes != cl->nodes[v].mem_bytes ||
      cl->nodes[u].flops_per_s != cl->nodes[v].flops_per_s)
    return 0;
  if (bw[(size_t)u * m + v] != bw[(size_t)v * m + u]) return 0;
  for (int x = 0; x < m; x++) {
    if (x == u || x == v) continue;
    if (bw[(size_t)u * m + x] != bw[(size_t)v * m + x] || bw[(size_t)x * m + u] != bw[(size_t)x * m + v])
      return 0;
  }
  return 1;
}

static int cmp_u64idx(const void *a, const void *b) {
  const uint64_t *x = a, *y = b;
  return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

/* prev_eq by hashing each node's order-independent signature, then exact checks. */
static int symmetry(bb *b) {
  int m = b->m;
  const sf_cluster *cl = b->cl;
  uint64_t *h = sf__malloc((size_t)m * 2 * sizeof *h);
  if (!h) return SF_ENOMEM;
  for (int u = 0; u < m; u++) {
    uint64_t s = mix64((uint64_t)cl->nodes[u].mem_bytes) ^ mix64(dbits(cl->nodes[u].flops_per_s) + 7);
    for (int x = 0; x < m; x++)
      if (x != u)
        s += mix64(dbits(cl->bw[(size_t)u * m + x]) ^ 0x1234567ULL) ^
             mix64(dbits(cl->bw[(size_t)x * m + u]) + 0x9e3779b97f4a7c15ULL);
    h[2 * u] = u == cl->gateway ? mix64((uint64_t)u + 99) : s;
    h[2 * u + 1] = (uint64_t)u;
  }
  qsort(h, (size_t)m, 2 * sizeof *h, cmp_u64idx);
  for (int u = 0; u < m; u++) b->prev_eq[u] = -1;
  for (int a = 0; a < m;) {
    int e = a;
    while (e < m && h[2 * e] == h[2 * a]) e++;
    /* group [a, e) sorted by node index; link each node to the last earlier equivalent one */
    for (int i = a + 1; i < e; i++) {
      int u = (int)h[2 * i + 1];
      for (int k = i - 1; k >= a; k--) {
        int v = (int)h[2 * k + 1];
        if (equivalent(b, v, u)) {
          b->prev_eq[u] = v;
          break;
        }
      }
    }
    a = e;
  }
  free(h);
  return 0;
}

typedef struct bwi {
  double bw;
  int i;
} bwi;
static int cmp_bw_desc(const void *a, const void *b) {
  const bwi *x = a, *y = b;
  return x->bw > y->bw ? -1 : x->bw < y->bw ? 1 : x->i - y->i;
}

/* g[c*m+w] = least max over stage (c, j) on w and the bound fprev[j][w]. */
static void layer_g(const bb *b, const double *fprev, double *g) {
  int n = b->n, m = b->m;
  for (int c = 0; c < n - 1; c++)
    for (int w = 0; w < m; w++) {
      double best = INFINITY;
      for (int j = c + 1; j < n; j++) {
        double s = st_time(b, c, j, w);
        if (s >= best) continue;
        double v = dmax(s, fprev[(size_t)j * m + w]);
        if (v < best) best = v;
      }
      g[(size_t)c * m + w] = best;
    }
}

/* f[c][v] from g (row c only): least max(link(c, v, w), g[c][w]) over w != v. */
static void layer_f_row(const bb *b, const double *g, int c, double *f) {
  int m = b->m;
  for (int v = 0; v < m; v++) {
    double best = INFINITY;
    const int *o = b->ord + (size_t)v * (m - 1);
    for (int k = 0; k < m - 1; k++) {
      int w = o[k];
      double l = link_t(b, c, v, w);
      if (l >= best) break;
      double x = dmax(l, g[(size_t)c * m + w]);
      if (x < best) best = x;
    }
    f[(size_t)c * m + v] = best;
  }
}

static int bounds(bb *b) {
  int n = b->n, m = b->m;
  size_t layer = (size_t)n * m;
  /* layers: r = 0..K exact when they fit the budget, otherwise exact up to nexact-1 and an
   * unlimited-stages layer for the rest (a valid lower bound for any r). */
  size_t maxl = BOUND_MAX_BYTES / (layer * sizeof(double));
  if (maxl < 3) maxl = 3;
  if ((size_t)b->K + 1 <= maxl) {
    b->nl = b->K + 1;
    b->nexact = b->K + 1;
  } else {
    b->nl = (int)maxl;
    b->nexact = (int)maxl - 1;
  }
  b->f = sf__malloc((size_t)b->nl * layer * sizeof(double));
  double *g = sf__malloc(layer * sizeof(double));
  if (!b->f || !g) {
    free(g);
    return SF_ENOMEM;
  }
  /* layer 0: complete only at the last cut */
  double *f0 = b->f;
  for (size_t i = 0; i < layer; i++) f0[i] = INFINITY;
  for (int v = 0; v < m; v++) f0[(size_t)(n - 1) * m + v] = b->out_s[v];
  int stable = 0;
  for (int r = 1; r < b->nexact; r++) {
    double *fp = b->f + (size_t)(r - 1) * layer, *fr = b->f + (size_t)r * layer;
    if (stable) {
      memcpy(fr, fp, layer * sizeof(double));
      continue;
    }
    if (b->limit > 0 && sf__now() - b->t0 > b->limit / 4) {
      /* out of time for exact layers: the unlimited layer bounds every r >= this one */
      b->nexact = r;
      b->nl = r + 1;
      break;
    }
    layer_g(b, fp, g);
    for (int c = 0; c < n - 1; c++) layer_f_row(b, g, c, fr);
    for (int v = 0; v < m; v++) fr[(size_t)(n - 1) * m + v] = b->out_s[v];
    stable = !memcmp(fr, fp, layer * sizeof(double));
  }
  if (b->nl > b->nexact) {
    /* unlimited stages: cuts increase, so one pass in decreasing cut order */
    double *fu = b->f + (size_t)(b->nl - 1) * layer;
    if (stable) {
      memcpy(fu, fu - layer, layer * sizeof(double));
    } else {
      for (int v = 0; v < m; v++) fu[(size_t)(n - 1) * m + v] = b->out_s[v];
      for (int c = n - 2; c >= 0; c--) {
        for (int w = 0; w < m; w++) {
          double best = INFINITY;
          for (int j = c + 1; j < n; j++) {
            double s = st_time(b, c, j, w);
            if (s >= best) continue;
            double v = dmax(s, fu[(size_t)j * m + w]);
            if (v < best) best = v;
          }
          g[(size_t)c * m + w] = best;
        }
        layer_f_row(b, g, c, fu);
      }
    }
  }
  /* root bound: first stage (0, j) on any node, input from the gateway */
  double lb = INFINITY;
  for (int w = 0; w < m; w++)
    for (int j = 1; j < n; j++) {
      double s = dmax(b->in_s[w], st_time(b, 0, j, w));
      double v = dmax(s, fl(b, b->K - 1)[(size_t)j * m + w]);
      if (v < lb) lb = v;
    }
  b->root_lb = lb;
  free(g);
  return 0;
}

/* ---- dead-state memo ---------------------------------------------------------------------- */
static uint64_t key_hash(const bb *b, int c, int v) {
  uint64_t h = mix64(((uint64_t)(uint32_t)c << 32 | (uint32_t)v) + 0x51ed27ULL);
  for (int i = 0; i < b->W; i++) h = mix64(h ^ b->S[i]) + (uint64_t)i;
  return h | 1;
}

static int memo_find(const bb *b, uint64_t h, int c, int v) {
  if (!b->tab) return 0;
  size_t mask = b->tab_cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    uint32_t e = b->tab[i];
    if (!e) return 0;
    const uint64_t *p = b->pool + (size_t)(e - 1) * b->stride;
    if (p[0] == h && p[1] == ((uint64_t)(uint32_t)c << 32 | (uint32_t)v) &&
        !memcmp(p + 2, b->S, (size_t)b->W * sizeof(uint64_t)))
      return 1;
  }
}

static void memo_insert(bb *b, uint64_t h, int c, int v) {
  if (b->memo_full) return;
  if (b->pool_n == b->pool_cap || 2 * (b->tab_n + 1) > b->tab_cap) {
    size_t ncap = b->pool_cap ? 2 * b->pool_cap : 4096;
    size_t bytes = ncap * b->stride * sizeof(uint64_t) + 2 * ncap * sizeof(uint32_t);
    if (bytes > MEMO_MAX_BYTES || ncap >= 0x7fffffffu) {
      b->memo_full = 1;
      return;
    }
    uint64_t *np = sf__realloc(b->pool, ncap * b->stride * sizeof(uint64_t));
    if (!np) {
      b->memo_full = 1;
      return;
    }
    b->pool = np;
    b->pool_cap = ncap;
    uint32_t *nt = sf__calloc(2 * ncap, sizeof *nt);
    if (!nt) {
      b->memo_full = 1;
      return;
    }
    free(b->tab);
    b->tab = nt;
    b->tab_cap = 2 * ncap;
    for (size_t e = 0; e < b->pool_n; e++) {
      size_t i = b->pool[e * b->stride] & (b->tab_cap - 1);
      while (b->tab[i]) i = (i + 1) & (b->tab_cap - 1);
      b->tab[i] = (uint32_t)(e + 1);
    }
  }
  uint64_t *p = b->pool + b->pool_n * b->stride;
  p[0] = h;
  p[1] = (uint64_t)(uint32_t)c << 32 | (uint32_t)v;
  memcpy(p + 2, b->S, (size_t)b->W * sizeof(uint64_t));
  b->pool_n++;
  size_t i = h & (b->tab_cap - 1);
  while (b->tab[i]) i = (i + 1) & (b->tab_cap - 1);
  b->tab[i] = (uint32_t)b->pool_n;
  b->tab_n++;
}

/* ---- search ------------------------------------------------------------------------------- */
static int cmp_child(const void *a, const void *b) {
  const child *x = a, *y = b;
  if (x->bound != y->bound) return x->bound < y->bound ? -1 : 1;
  if (x->x != y->x) return x->x < y->x ? -1 : 1;
  if (x->w != y->w) return x->w - y->w;
  return x->j - y->j;
}

/* (bound, stages) can beat the incumbent (best, best_k) lexicographically. */
static inline int improves(const bb *b, double bound, int stages) {
  return bound < b->best || (bound == b->best && stages < b->best_k);
}

static void record(bb *b, int w, int j, double val) {
  b->best = val;
  b->best_k = b->t + 1;
  memcpy(b->best_cuts, b->cuts, (size_t)(b->t + 1) * sizeof(int));
  memcpy(b->best_nodes, b->nodes, (size_t)b->t * sizeof(int));
  b->best_cuts[b->t + 1] = j;
  b->best_nodes[b->t] = w;
  if (b->best <= b->root_lb && b->best_k <= b->need[0]) b->done = 1;
}

static inline int in_S(const bb *b, int w) { return (int)(b->S[w >> 6] >> (w & 63)) & 1; }

/* Explore the state after t placed stages ending at cut c on node v (v = -1 at the root). */
static int search(bb *b, int c, int v, double cur) {
  int m = b->m, n = b->n, t = b->t;
  int base = b->stack_n;
  double *fnext = t + 1 < b->K ? fl(b, b->K - t - 1) : NULL;
  for (int w = 0; w < m; w++) {
    if (in_S(b, w)) continue;
    if (b->prev_eq[w] >= 0 && !in_S(b, b->prev_eq[w])) continue;
    double l = v < 0 ? b->in_s[w] : link_t(b, c, v, w);
    double xl = dmax(cur, l);
    if (xl > b->best) continue;
    for (int j = c + 1; j < n; j++) {
      double x = dmax(xl, st_time(b, c, j, w));
      if (!improves(b, x, t + 1 + b->need[j])) continue;
      if (j == n - 1) {
        double val = dmax(x, b->out_s[w]);
        if (improves(b, val, t + 1)) record(b, w, j, val);
        continue;
      }
      if (!fnext) continue;
      double bd = dmax(x, fnext[(size_t)j * m + w]);
      if (!improves(b, bd, t + 1 + b->need[j])) continue;
      if (b->stack_n == b->stack_cap) {
        int rc = sf__grow((void **)&b->stack, &b->stack_cap, b->stack_n + 1, sizeof *b->stack);
        if (rc) return rc;
      }
      b->stack[b->stack_n++] = (child){w, j, x, bd};
    }
    if (b->done) break;
  }
  int nch = b->stack_n - base;
  if (nch > 1) qsort(b->stack + base, (size_t)nch, sizeof *b->stack, cmp_child);
  for (int k = 0; k < nch && !b->done && !b->aborted; k++) {
    child ch = b->stack[base + k];
    if (ch.bound > b->best) break; /* sorted by bound */
    if (!improves(b, ch.bound, t + 1 + b->need[ch.j])) continue;
    if ((++b->expanded & 15) == 0 && b->limit > 0 && sf__now() - b->t0 > b->limit) {
      b->aborted = 1;
      break;
    }
    b->S[ch.w >> 6] |= 1ULL << (ch.w & 63);
    uint64_t h = key_hash(b, ch.j, ch.w);
    if (!memo_find(b, h, ch.j, ch.w)) {
      b->nodes[t] = ch.w;
      b->cuts[t + 1] = ch.j;
      b->t = t + 1;
      int rc = search(b, ch.j, ch.w, ch.x);
      b->t = t;
      if (rc) return rc;
      if (!b->aborted && !b->done && ch.x < b->best) memo_insert(b, h, ch.j, ch.w);
    }
    b->S[ch.w >> 6] &= ~(1ULL << (ch.w & 63));
  }
  b->stack_n = base;
  return 0;
}

static void bb_free(bb *b) {
  free(b->in_s);
  free(b->out_s);
  free(b->scls);
  free(b->stab);
  free(b->prev_eq);
  free(b->ord);
  free(b->f);
  free(b->S);
  free(b->cuts);
  free(b->nodes);
  free(b->best_cuts);
  free(b->best_nodes);
  free(b->need);
  free(b->stack);
  free(b->pool);
  free(b->tab);
}

static int optimal_solve(const sf_pcosts *c, const sf_cluster *cl, const sf_plan_opts *o,
                         sf_plan *out, sf_err *err) {
  bb b;
  memset(&b, 0, sizeof b);
  int rc = 0, n = c->n, m = cl->n;
  sf_plan seed;
  memset(&seed, 0, sizeof seed);
  b.c = c;
  b.cl = cl;
  b.n = n;
  b.m = m;
  b.gw = cl->gateway;
  b.usable = o->usable;
  int n_usable = 0;
  for (int w = 0; w < m; w++) n_usable += sf__node_usable(o, w);
  b.K = o->max_stages > 0 && o->max_stages < n_usable ? o->max_stages : n_usable;
  if (b.K > n - 1) b.K = n - 1;
  b.W = (m + 63) / 64;
  b.stride = 2 + (size_t)b.W;
  b.t0 = sf__now();
  b.limit = o->time_limit_s;
  b.best = INFINITY;
  b.in_s = sf__calloc((size_t)m, sizeof(double));
  b.out_s = sf__calloc((size_t)m, sizeof(double));
  b.scls = sf__calloc((size_t)m, sizeof(int));
  b.prev_eq = sf__calloc((size_t)m, sizeof(int));
  b.ord = sf__malloc((size_t)m * (m > 1 ? m - 1 : 1) * sizeof(int));
  b.S = sf__calloc((size_t)b.W, sizeof(uint64_t));
  b.cuts = sf__calloc((size_t)b.K + 2, sizeof(int));
  b.nodes = sf__calloc((size_t)b.K + 1, sizeof(int));
  b.best_cuts = sf__calloc((size_t)b.K + 2, sizeof(int));
  b.best_nodes = sf__calloc((size_t)b.K + 1, sizeof(int));
  b.need = sf__calloc((size_t)n, sizeof(int));
  if (!b.need || !b.in_s || !b.out_s || !b.scls || !b.prev_eq || !b.ord || !b.S || !b.cuts || !b.nodes ||
      !b.best_cuts || !b.best_nodes)
    goto nomem;
  for (int w = 0; w < m; w++) {
    b.in_s[w] = b.gw >= 0 ? link_t(&b, 0, b.gw, w) : 0;
    b.out_s[w] = b.gw >= 0 ? link_t(&b, n - 1, w, b.gw) : 0;
  }
  /* stage classes: nodes with equal memory and speed have equal stage times */
  for (int w = 0; w < m; w++) {
    b.scls[w] = -1;
    for (int u = 0; u < w && b.nscls < 64; u++)
      if (cl->nodes[u].mem_bytes == cl->nodes[w].mem_bytes &&
          cl->nodes[u].flops_per_s == cl->nodes[w].flops_per_s) {
        b.scls[w] = b.scls[u];
        break;
      }
    if (b.scls[w] < 0) b.scls[w] = b.nscls++;
  }
  if ((size_t)n * n * b.nscls <= TABLE_MAX_ENTRIES) {
    int *rep = sf__malloc((size_t)b.nscls * sizeof(int));
    b.stab = sf__malloc((size_t)n * n * b.nscls * sizeof(double));
    if (!rep || !b.stab) {
      free(rep);
      goto nomem;
    }
    for (int w = m - 1; w >= 0; w--) rep[b.scls[w]] = w;
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++)
        for (int k = 0; k < b.nscls; k++) {
          double s = INFINITY;
          if (j > i && sf__pcosts_mem(c, i, j) <= cl->nodes[rep[k]].mem_bytes)
            s = sf__stage_compute_s(c, cl, i, j, rep[k]);
          b.stab[((size_t)i * n + j) * b.nscls + k] = s;
        }
    free(rep);
  }
  if ((rc = symmetry(&b))) goto nomem;
  /* nodes that may not run a stage count as used from the start */
  for (int w = 0; w < m; w++)
    if (!sf__node_usable(o, w)) b.S[w >> 6] |= 1ULL << (w & 63);
  {
    int64_t cap = 0;
    for (int w = 0; w < m; w++)
      if (sf__node_usable(o, w) && cl->nodes[w].mem_bytes > cap) cap = cl->nodes[w].mem_bytes;
    b.need[n - 1] = 0;
    for (int i = n - 2; i >= 0; i--) {
      b.need[i] = n + 1;
      for (int j = i + 1; j < n; j++)
        if (sf__pcosts_mem(c, i, j) <= cap && b.need[j] + 1 < b.need[i]) b.need[i] = b.need[j] + 1;
    }
  }
  {
    bwi *tmp = sf__malloc((size_t)m * sizeof *tmp);
    if (!tmp) goto nomem;
    for (int v = 0; v < m; v++) {
      int *row = b.ord + (size_t)v * (m - 1), k = 0;
      for (int w = 0; w < m; w++)
        if (w != v) tmp[k++] = (bwi){cl->bw[(size_t)v * m + w], w};
      qsort(tmp, (size_t)k, sizeof *tmp, cmp_bw_desc);
      for (int i = 0; i < k; i++) row[i] = tmp[i].i;
    }
    free(tmp);
  }
  if ((rc = bounds(&b))) goto nomem;
  /* incumbent: the joint baseline (any feasible plan gives a valid upper bound) */
  {
    sf_err e2 = {0};
    int ok = !sf__solver_joint.solve(c, cl, o, &seed, &e2) && seed.n_stages > 0 &&
             seed.n_stages <= b.K && isfinite(seed.bottleneck_s);
    for (int s = 0; ok && s < seed.n_stages; s++) ok = sf__node_usable(o, seed.stages[s].node);
    if (ok) {
      b.best = seed.bottleneck_s;
      b.best_k = seed.n_stages;
      for (int s = 0; s < seed.n_stages; s++) {
        b.best_cuts[s] = seed.stages[s].cut_from;
        b.best_nodes[s] = seed.stages[s].node;
      }
      b.best_cuts[seed.n_stages] = n - 1;
    }
    sf__plan_deinit(&seed);
  }
  if (b.best <= b.root_lb && b.best_k <= b.need[0]) b.done = 1;
  b.cuts[0] = 0;
  if (!b.done && isfinite(b.root_lb)) {
    if ((rc = search(&b, 0, -1, 0))) goto nomem;
  }
  memset(out, 0, sizeof *out);
  if (b.best_k == 0) {
    out->bottleneck_s = INFINITY;
    out->optimal = !b.aborted;
    out->gap = b.aborted ? INFINITY : 0;
  } else {
    if ((rc = sf__plan_eval(c, cl, b.best_k, b.best_cuts, b.best_nodes, out, err))) goto fail;
    SF_CHECK(out->bottleneck_s == b.best);
    out->optimal = !b.aborted || b.best <= b.root_lb;
    double lb = b.root_lb < b.best ? b.root_lb : b.best;
    out->gap = out->optimal || !(b.best > 0) ? 0 : (b.best - lb) / b.best;
  }
  bb_free(&b);
  return 0;
nomem:
  rc = sf__errf(err, SF_ENOMEM, "plan: out of memory (optimal solver, %d cuts, %d nodes)", n, m);
fail:
  bb_free(&b);
  return rc;
}

const sf_solver sf__solver_optimal = {"optimal", optimal_solve};
