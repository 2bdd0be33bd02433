/* SEIFER's placement heuristics, reimplemented from their description for comparison; every
 * result is scored by sf__plan_eval like the exact solver.
 *   random: random cuts that fit memory, random distinct nodes (seeded).
 *   joint:  minimum total-transfer partition (DP under the memory capacity), then a greedy
 *           nearest-neighbour path on inverse bandwidth from every start node; best kept.
 *   kpath:  the same partition; transfer sizes binned into classes; for each class, largest
 *           first, every run of consecutive transfers of the class gets the path of the needed
 *           length maximising its minimum bandwidth (binary search over edge thresholds,
 *           colour-coding k-path search), among the nodes still free. */
#include <math.h>
#include <string.h>

#include "plan/plan.h"

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static int rng_int(uint64_t *s, int n) { return (int)(rng_next(s) % (uint64_t)n); }

/* Stage limit: opts, usable nodes and cuts (0 when no node may run a stage). */
static int max_stages(const sf_pcosts *c, const sf_cluster *cl, const sf_plan_opts *o) {
  int nu = 0;
  for (int v = 0; v < cl->n; v++) nu += sf__node_usable(o, v);
  int K = o->max_stages > 0 && o->max_stages < nu ? o->max_stages : nu;
  return K < c->n - 1 ? K : c->n - 1;
}

static void infeasible(sf_plan *out) {
  memset(out, 0, sizeof *out);
  out->bottleneck_s = INFINITY;
  out->gap = INFINITY;
}

/* Minimum total interior transfer bytes with at most K stages each fitting cap bytes.
 * Writes cuts (k+1 entries) and returns k, or 0 when nothing fits. O(K n^2). */
static int min_transfer_partition(const sf_pcosts *c, int64_t cap, int K, int *cuts, int *ok) {
  int n = c->n;
  double *T = sf__malloc((size_t)(K + 1) * n * sizeof *T);
  int *from = sf__malloc((size_t)(K + 1) * n * sizeof *from);
  *ok = T && from;
  if (!*ok) {
    free(T);
    free(from);
    return 0;
  }
  for (size_t i = 0; i < (size_t)(K + 1) * n; i++) T[i] = INFINITY;
  T[0] = 0;
  for (int t = 1; t <= K; t++)
    for (int j = 1; j < n; j++) {
      double add = j < n - 1 ? c->cut_bytes[j] : 0, best = INFINITY;
      int arg = -1;
      for (int i = 0; i < j; i++) {
        double v = T[(size_t)(t - 1) * n + i];
        if (v == INFINITY || sf__pcosts_mem(c, i, j) > cap) continue;
        if (v + add < best) best = v + add, arg = i;
      }
      T[(size_t)t * n + j] = best;
      from[(size_t)t * n + j] = arg;
    }
  int bk = 0;
  double bv = INFINITY;
  for (int t = 1; t <= K; t++)
    if (T[(size_t)t * n + n - 1] < bv) bv = T[(size_t)t * n + n - 1], bk = t;
  if (bk) {
    int j = n - 1;
    for (int t = bk; t >= 1; t--) {
      cuts[t] = j;
      j = from[(size_t)t * n + j];
    }
    cuts[0] = 0;
  }
  free(T);
  free(from);
  return bk;
}

/* Smallest / largest memory of the usable nodes (0 when none is usable). */
static int64_t mem_min(const sf_cluster *cl, const sf_plan_opts *o) {
  int64_t v = 0;
  for (int i = 0; i < cl->n; i++)
    if (sf__node_usable(o, i) && (!v || cl->nodes[i].mem_bytes < v)) v = cl->nodes[i].mem_bytes;
  return v;
}
static int64_t mem_max(const sf_cluster *cl, const sf_plan_opts *o) {
  int64_t v = 0;
  for (int i = 0; i < cl->n; i++)
    if (sf__node_usable(o, i) && cl->nodes[i].mem_bytes > v) v = cl->nodes[i].mem_bytes;
  return v;
}

/* SEIFER's partition: capacity = the smallest node memory (the largest if nothing fits). */
static int partition(const sf_pcosts *c, const sf_cluster *cl, const sf_plan_opts *o, int K,
                     int *cuts, sf_err *err) {
  int ok;
  int k = min_transfer_partition(c, mem_min(cl, o), K, cuts, &ok);
  if (ok && !k) k = min_transfer_partition(c, mem_max(cl, o), K, cuts, &ok);
  if (!ok) return sf__errf(err, SF_ENOMEM, "plan: out of memory");
  return k;
}

/* ---- random ------------------------------------------------------------------------------- */
static int random_solve(const sf_pcosts *c, const sf_cluster *cl, const sf_plan_opts *o,
                        sf_plan *out, sf_err *err) {
  int n = c->n, m = cl->n, K = max_stages(c, cl, o), rc = 0;
  int64_t cap = mem_max(cl, o);
  uint64_t rng = o->seed ^ 0x5eed5eedULL;
  int *need = sf__malloc((size_t)n * sizeof *need), *cuts = sf__malloc((size_t)(K + 2) * sizeof *cuts);
  int *perm = sf__malloc((size_t)m * sizeof *perm), *cand = sf__malloc((size_t)n * sizeof *cand);
  if (!need || !cuts || !perm || !cand) {
    rc = sf__errf(err, SF_ENOMEM, "plan: out of memory");
    goto done;
  }
  /* need[c] = fewest stages from cut c to the end (n+1 = impossible) */
  need[n - 1] = 0;
  for (int i = n - 2; i >= 0; i--) {
    need[i] = n + 1;
    for (int j = i + 1; j < n; j++)
      if (sf__pcosts_mem(c, i, j) <= cap && need[j] + 1 < need[i]) need[i] = need[j] + 1;
  }
  infeasible(out);
  if (K < 1 || need[0] > K) goto done;
  for (int attempt = 0; attempt < 100; attempt++) {
    int k = 0, at = 0;
    cuts[0] = 0;
    while (at < n - 1) {
      int nc = 0;
      for (int j = at + 1; j < n; j++)
        if (sf__pcosts_mem(c, at, j) <= cap && k + 1 + need[j] <= K) cand[nc++] = j;
      at = cand[rng_int(&rng, nc)]; /* nc >= 1: need[at] + k <= K holds by construction */
      cuts[++k] = at;
    }
    int nu = 0; /* the usable nodes, shuffled */
    for (int i = 0; i < m; i++)
      if (sf__node_usable(o, i)) perm[nu++] = i;
    for (int i = nu - 1; i > 0; i--) {
      int r = rng_int(&rng, i + 1), x = perm[i];
      perm[i] = perm[r];
      perm[r] = x;
    }
    sf__plan_deinit(out);
    if ((rc = sf__plan_eval(c, cl, k, cuts, perm, out, err))) goto done;
    if (isfinite(out->bottleneck_s)) break;
  }
  out->gap = INFINITY;
done:
  free(need);
  free(cuts);
  free(perm);
  free(cand);
  return rc;
}

/* ---- joint -------------------------------------------------------------------------------- */
static int joint_solve(const sf_pcosts *c, const sf_cluster *cl, const sf_plan_opts *o,
                       sf_plan *out, sf_err *err) {
  int m = cl->n, K = max_stages(c, cl, o), rc = 0;
  int *cuts = sf__malloc((size_t)(K + 2) * sizeof *cuts), *path = sf__malloc((size_t)m * sizeof *path);
  unsigned char *used = sf__calloc((size_t)m, 1);
  sf_plan p;
  memset(&p, 0, sizeof p);
  infeasible(out);
  if (!cuts || !path || !used) {
    rc = sf__errf(err, SF_ENOMEM, "plan: out of memory");
    goto done;
  }
  if (K < 1) goto done;
  int k = partition(c, cl, o, K, cuts, err);
  if (k < 0) {
    rc = k;
    goto done;
  }
  if (!k) goto done;
  for (int s = 0; s < m; s++) {
    if (!sf__node_usable(o, s)) continue;
    for (int v = 0; v < m; v++) used[v] = !sf__node_usable(o, v);
    path[0] = s;
    used[s] = 1;
    for (int t = 1; t < k; t++) {
      int u = path[t - 1], best = -1;
      for (int v = 0; v < m; v++)
        if (!used[v] && (best < 0 || cl->bw[(size_t)u * m + v] > cl->bw[(size_t)u * m + best])) best = v;
      path[t] = best;
      used[best] = 1;
    }
    if ((rc = sf__plan_eval(c, cl, k, cuts, path, &p, err))) goto done;
    if (out->n_stages == 0 || p.bottleneck_s < out->bottleneck_s) {
      sf__plan_deinit(out);
      *out = p;
      memset(&p, 0, sizeof p);
    } else {
      sf__plan_deinit(&p);
    }
  }
  out->gap = INFINITY;
done:
  sf__plan_deinit(&p);
  free(cuts);
  free(path);
  free(used);
  return rc;
}

/* ---- kpath -------------------------------------------------------------------------------- */
#define KP_MAX_FREE 10 /* colour-coding up to this many free nodes per path */
#define KP_TRIALS 16

typedef struct edge {
  double bw;
  int u, v;
} edge;

static int cmp_edge_desc(const void *a, const void *b) {
  const edge *x = a, *y = b;
  return x->bw > y->bw ? -1 : x->bw < y->bw ? 1 : (x->u != y->u ? x->u - y->u : x->v - y->v);
}

typedef struct kp {
  const sf_cluster *cl;
  int m;
  edge *e;
  int ne;
  int *adj; /* m*(m-1): other nodes by decreasing bandwidth from each node */
  unsigned char *used;
  int *col, *pred;
  unsigned char *reach;
  uint64_t rng;
} kp;

/* Colour-coding: a path s?, q free nodes, e? using only links of bandwidth >= thr; s / e = -1
 * when that end is free. On success writes the q free nodes to out. KP_TRIALS random
 * colourings, each a DP over (colour set, last node): O(2^q m deg). */
static int kp_find(kp *k, double thr, int s, int e, int q, int *out) {
  int m = k->m;
  const double *bw = k->cl->bw;
  if (q == 0) return bw[(size_t)s * m + e] >= thr;
  size_t nm = (size_t)1 << q;
  for (int trial = 0; trial < KP_TRIALS; trial++) {
    for (int v = 0; v < m; v++) k->col[v] = k->used[v] ? -1 : rng_int(&k->rng, q);
    memset(k->reach, 0, nm * m);
    for (int v = 0; v < m; v++) {
      if (k->col[v] < 0 || (s >= 0 && bw[(size_t)s * m + v] < thr)) continue;
      k->reach[((size_t)1 << k->col[v]) * m + v] = 1;
      k->pred[((size_t)1 << k->col[v]) * m + v] = -1;
    }
    for (size_t mask = 1; mask < nm; mask++)
      for (int u = 0; u < m; u++) {
        if (!k->reach[mask * m + u]) continue;
        const int *adj = k->adj + (size_t)u * (m - 1);
        for (int i = 0; i < m - 1; i++) {
          int v = adj[i];
          if (bw[(size_t)u * m + v] < thr) break;
          if (k->col[v] < 0 || (mask >> k->col[v] & 1)) continue;
          size_t nmask = mask | (size_t)1 << k->col[v];
          if (!k->reach[nmask * m + v]) {
            k->reach[nmask * m + v] = 1;
            k->pred[nmask * m + v] = u;
          }
        }
      }
    size_t full = nm - 1;
    for (int v = 0; v < m; v++) {
      if (!k->reach[full * m + v] || (e >= 0 && bw[(size_t)v * m + e] < thr)) continue;
      size_t mask = full;
      int x = v;
      for (int t = q - 1; t >= 0; t--) {
        out[t] = x;
        int p = k->pred[mask * m + x];
        mask &= ~((size_t)1 << k->col[x]);
        x = p;
      }
      return 1;
    }
  }
  return 0;
}

/* Greedy fallback: free slots of a run filled by the highest-bandwidth free neighbour. */
static void kp_greedy(kp *k, int s, int q, int *out) {
  int m = k->m, u = s;
  for (int t = 0; t < q; t++) {
    int best = -1;
    for (int v = 0; v < m; v++)
      if (!k->used[v] && (best < 0 || (u >= 0 && k->cl->bw[(size_t)u * m + v] > k->cl->bw[(size_t)u * m + best])))
        best = v;
    out[t] = best;
    k->used[best] = 1;
    u = best;
  }
  for (int t = 0; t < q; t++) k->used[out[t]] = 0;
}

static int kpath_solve(const sf_pcosts *c, const sf_cluster *cl, const sf_plan_opts *o,
                       sf_plan *out, sf_err *err) {
  int m = cl->n, K = max_stages(c, cl, o), rc = 0, B = o->kpath_classes > 0 ? o->kpath_classes : 5;
  kp k;
  memset(&k, 0, sizeof k);
  k.cl = cl;
  k.m = m;
  k.rng = o->seed ^ 0x6b70617468ULL;
  int *cuts = sf__malloc((size_t)(K + 2) * sizeof *cuts), *slot = sf__malloc((size_t)(K + 1) * sizeof *slot);
  int *cls = sf__malloc((size_t)(K + 1) * sizeof *cls), *tmp = sf__malloc((size_t)(K + 1) * sizeof *tmp);
  size_t ne = (size_t)m * (m - 1);
  k.e = sf__malloc((ne ? ne : 1) * sizeof *k.e);
  k.adj = sf__malloc((ne ? ne : 1) * sizeof *k.adj);
  k.used = sf__calloc((size_t)m, 1);
  k.col = sf__malloc((size_t)m * sizeof *k.col);
  k.pred = sf__malloc(((size_t)m << KP_MAX_FREE) * sizeof *k.pred);
  k.reach = sf__malloc((size_t)m << KP_MAX_FREE);
  infeasible(out);
  if (!cuts || !slot || !cls || !tmp || !k.e || !k.adj || !k.used || !k.col || !k.pred || !k.reach) {
    rc = sf__errf(err, SF_ENOMEM, "plan: out of memory");
    goto done;
  }
  if (K < 1) goto done;
  for (int v = 0; v < m; v++) k.used[v] = !sf__node_usable(o, v); /* never placed */
  int ns = partition(c, cl, o, K, cuts, err);
  if (ns < 0) {
    rc = ns;
    goto done;
  }
  if (!ns) goto done;
  k.ne = 0;
  for (int u = 0; u < m; u++)
    for (int v = 0; v < m; v++)
      if (u != v) k.e[k.ne++] = (edge){cl->bw[(size_t)u * m + v], u, v};
  qsort(k.e, (size_t)k.ne, sizeof *k.e, cmp_edge_desc);
  {
    int *fill = sf__calloc((size_t)m, sizeof *fill);
    if (!fill) {
      rc = sf__errf(err, SF_ENOMEM, "plan: out of memory");
      goto done;
    }
    for (int i = 0; i < k.ne; i++) k.adj[(size_t)k.e[i].u * (m - 1) + fill[k.e[i].u]++] = k.e[i].v;
    free(fill);
  }
  for (int t = 0; t < ns; t++) slot[t] = -1;
  /* transfer t (0..ns-2) goes from slot t to slot t+1 and carries cut_bytes[cuts[t+1]] */
  double lo = INFINITY, hi = -INFINITY;
  for (int t = 0; t + 1 < ns; t++) {
    double b = c->cut_bytes[cuts[t + 1]];
    if (b < lo) lo = b;
    if (b > hi) hi = b;
  }
  for (int t = 0; t + 1 < ns; t++) {
    double b = c->cut_bytes[cuts[t + 1]];
    int q = hi > lo ? (int)((b - lo) / (hi - lo) * B) : 0;
    cls[t] = q >= B ? B - 1 : q;
  }
  for (int q = B - 1; q >= 0; q--)
    for (int a = 0; a + 1 < ns; a++) {
      if (cls[a] != q || (a > 0 && cls[a - 1] == q)) continue;
      int e = a;
      while (e + 1 < ns - 1 && cls[e + 1] == q) e++;
      /* transfers a..e: slots a..e+1; the ends may already be placed */
      int s0 = slot[a], s1 = slot[e + 1];
      int f0 = s0 >= 0 ? a + 1 : a, f1 = s1 >= 0 ? e : e + 1, nf = f1 - f0 + 1;
      if (nf < 0) nf = 0;
      int found = 0;
      if (nf <= KP_MAX_FREE) {
        /* binary search: fewest leading edges (highest threshold) admitting the path */
        int lo_i = 1, hi_i = k.ne;
        if (k.ne > 0 && kp_find(&k, k.e[k.ne - 1].bw, s0, s1, nf, tmp)) {
          found = 1;
          while (lo_i < hi_i) {
            int mid = lo_i + (hi_i - lo_i) / 2;
            if (kp_find(&k, k.e[mid - 1].bw, s0, s1, nf, tmp))
              hi_i = mid;
            else
              lo_i = mid + 1;
          }
          if (!kp_find(&k, k.e[hi_i - 1].bw, s0, s1, nf, tmp))
            found = kp_find(&k, k.e[k.ne - 1].bw, s0, s1, nf, tmp);
        }
      }
      if (!found) kp_greedy(&k, s0, nf, tmp);
      for (int t = 0; t < nf; t++) {
        slot[f0 + t] = tmp[t];
        k.used[tmp[t]] = 1;
      }
    }
  /* a single stage (no transfers): the node with the best gateway links, else node 0 */
  for (int t = 0; t < ns; t++)
    if (slot[t] < 0) {
      int best = -1;
      double bt = INFINITY;
      for (int v = 0; v < m; v++) {
        if (k.used[v]) continue;
        double x = cl->gateway >= 0
                       ? fmax(sf__link_s(c, cl, 0, cl->gateway, v), sf__link_s(c, cl, c->n - 1, v, cl->gateway))
                       : 0;
        if (best < 0 || x < bt) best = v, bt = x;
      }
      slot[t] = best;
      k.used[best] = 1;
    }
  memset(out, 0, sizeof *out);
  if ((rc = sf__plan_eval(c, cl, ns, cuts, slot, out, err))) goto done;
  out->gap = INFINITY;
done:
  free(cuts);
  free(slot);
  free(cls);
  free(tmp);
  free(k.e);
  free(k.adj);
  free(k.used);
  free(k.col);
  free(k.pred);
  free(k.reach);
  return rc;
}

const sf_solver sf__solver_random = {"random", random_solve};
const sf_solver sf__solver_joint = {"joint", joint_solve};
const sf_solver sf__solver_kpath = {"kpath", kpath_solve};
