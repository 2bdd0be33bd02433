/* Several disjoint pipelines behind one gateway: the score under the shared-gateway model
 * (plan.h), the search and the upper bound. See docs/planner.md, "Several pipelines".
 *
 * Search: (1) beta(s), the best single pipeline with at most s stages, for s = 1..s* (s* the
 * stage count of the best pipeline); (2) for every stage cap s, greedy peeling: take beta(s),
 * remove its nodes, solve again on the rest with the same cap, and so on while the total
 * grows; (3) with the exact solver on at most SUBSET_MAX_NODES usable nodes, the best pipeline
 * inside every node subset and a DP over subset partitions (exact when the gateway's round
 * does not bind). The best set found is returned.
 *
 * Upper bound (min of): the nodes' total speed over the work of one inference (additive costs
 * only); max over k of min(H(k), k / G(k)) where H(k) is the best sum of 1 / lb(s_p) over k
 * pipelines of s_p stages with sum s_p <= usable nodes (lb(s) a proven lower bound of beta(s))
 * and G(k) the least possible gateway round of k pipelines (the k smallest input / output
 * transfers from / to the gateway); the subset DP's value with lower bounds, capped the same
 * way. Cost: O(s*) solves for beta, O(sum over caps of the pipelines peeled) solves, and up to
 * 2^10 solves plus O(K 3^10) for the subset DP. */
#include <math.h>
#include <string.h>

#include "plan/plan.h"

#define SUBSET_MAX_NODES 10  /* subset DP: at most 2^10 - 1 single solves ... */
#define SUBSET_BUDGET_S 10.0 /* ... in at most this long (else the DP is skipped) */
#define BOUND_DP_MAX_OPS 5e7 /* stage-count knapsack of the bound; beyond it a weaker bound */
#define TIE_TOL 1e-12        /* totals this close (relative) are equal */
#define OPT_TOL 1e-9         /* total within this of the upper bound: proven optimal */

double sf__multi_score(const sf_cluster *cl, int k, const sf_plan *p, double *rates,
                       double *round_s) {
  double A = 0, D = 0;
  if (cl->gateway >= 0)
    for (int i = 0; i < k; i++) {
      A += p[i].gateway_in_s;
      if (p[i].n_stages > 0) D += p[i].stages[p[i].n_stages - 1].link_s;
    }
  double R = A > D ? A : D, T = 0;
  for (int i = 0; i < k; i++) {
    double b = p[i].bottleneck_s > R ? p[i].bottleneck_s : R;
    double r = b > 0 ? 1 / b : INFINITY;
    if (rates) rates[i] = r;
    T += r;
  }
  if (round_s) *round_s = R;
  return T;
}

void sf__multiplan_deinit(sf_multiplan *mp) {
  if (!mp) return;
  for (int i = 0; i < mp->n_pipelines; i++) sf__plan_deinit(&mp->pipelines[i]);
  free(mp->pipelines);
  free(mp->rate_per_s);
  memset(mp, 0, sizeof *mp);
}

/* ---- sets of pipelines -------------------------------------------------------------------- */
typedef struct mset {
  int k, cap;
  sf_plan *p;
  double T;
  int nodes;
} mset;

static void mset_clear(mset *s) {
  for (int i = 0; i < s->k; i++) sf__plan_deinit(&s->p[i]);
  s->k = 0;
  s->T = 0;
  s->nodes = 0;
}

static void mset_free(mset *s) {
  mset_clear(s);
  free(s->p);
  memset(s, 0, sizeof *s);
}

static int plan_copy(sf_plan *dst, const sf_plan *src) {
  *dst = *src;
  dst->stages = NULL;
  if (src->n_stages > 0) {
    dst->stages = sf__malloc(sizeof *dst->stages * (size_t)src->n_stages);
    if (!dst->stages) {
      dst->n_stages = 0;
      return SF_ENOMEM;
    }
    memcpy(dst->stages, src->stages, sizeof *dst->stages * (size_t)src->n_stages);
  }
  return 0;
}

static int mset_push(mset *s, const sf_plan *p) {
  if (sf__grow((void **)&s->p, &s->cap, s->k + 1, sizeof *s->p)) return SF_ENOMEM;
  if (plan_copy(&s->p[s->k], p)) return SF_ENOMEM;
  s->k++;
  return 0;
}

static void mset_score(const sf_cluster *cl, mset *s) {
  s->T = sf__multi_score(cl, s->k, s->p, NULL, NULL);
  s->nodes = 0;
  for (int i = 0; i < s->k; i++) s->nodes += s->p[i].n_stages;
}

static int mset_copy(mset *dst, const mset *src) {
  mset_clear(dst);
  for (int i = 0; i < src->k; i++)
    if (mset_push(dst, &src->p[i])) return SF_ENOMEM;
  dst->T = src->T;
  dst->nodes = src->nodes;
  return 0;
}

/* a beats b: a larger total (beyond TIE_TOL), then fewer pipelines, then fewer nodes. */
static int better(const mset *a, const mset *b) {
  if (a->k == 0) return 0;
  if (b->k == 0) return 1;
  if (a->T > b->T * (1 + TIE_TOL)) return 1;
  if (b->T > a->T * (1 + TIE_TOL)) return 0;
  if (a->k != b->k) return a->k < b->k;
  return a->nodes < b->nodes;
}

/* ---- single solves ------------------------------------------------------------------------ */
/* A plan that fits (heuristics may return stages that do not fit memory: bottleneck +inf). */
static int feasible(const sf_plan *p) { return p->n_stages > 0 && isfinite(p->bottleneck_s); }

typedef struct mctx {
  const sf_solver *s;
  const sf_pcosts *c;
  const sf_cluster *cl;
  const sf_plan_opts *o;
  int solves;
  sf_cluster loaded; /* cl with the gateway's links slowed by the pipelines already placed */
  double *bw;        /* loaded.bw, allocated on first use */
} mctx;

static int solve1(mctx *x, int max_stages, const unsigned char *usable, sf_plan *p, sf_err *err) {
  sf_plan_opts o = *x->o;
  if (x->o->max_stages > 0 && (max_stages <= 0 || max_stages > x->o->max_stages))
    max_stages = x->o->max_stages;
  o.max_stages = max_stages;
  o.usable = usable;
  x->solves++;
  return sf__plan_solve(x->s, x->c, x->cl, &o, p, err);
}

/* The next pipeline of a peel, found on the cluster whose gateway links already carry the
 * round (A, D) of the pipelines placed: its input transfer from the gateway counts A + a
 * (0 when its first stage runs on the gateway), its output transfer D + d. So the solver
 * weighs starting on the gateway or on a node with a fast gateway link against the rest. The
 * plan is then scored on the real cluster (its optimal / gap flags are cleared). */
static int solve_loaded(mctx *x, int max_stages, const unsigned char *usable, double A, double D,
                        sf_plan *p, sf_err *err) {
  const sf_cluster *cl = x->cl;
  const sf_pcosts *c = x->c;
  int m = cl->n, g = cl->gateway;
  double bin = c->cut_bytes[0], bout = c->cut_bytes[c->n - 1];
  if (g < 0 || ((A <= 0 || bin <= 0) && (D <= 0 || bout <= 0))) return solve1(x, max_stages, usable, p, err);
  if (!x->bw) {
    x->bw = sf__malloc(sizeof *x->bw * (size_t)m * (size_t)m);
    if (!x->bw) return sf__errf(err, SF_ENOMEM, "plan: out of memory (%d nodes)", m);
    memcpy(x->bw, cl->bw, sizeof *x->bw * (size_t)m * (size_t)m);
    x->loaded = *cl;
    x->loaded.bw = x->bw;
  }
  for (int v = 0; v < m; v++) {
    if (v == g) continue;
    size_t gv = (size_t)g * m + v, vg = (size_t)v * m + g;
    x->bw[gv] = bin > 0 ? bin / (A + bin / cl->bw[gv]) : cl->bw[gv];
    x->bw[vg] = bout > 0 ? bout / (D + bout / cl->bw[vg]) : cl->bw[vg];
  }
  const sf_cluster *keep = x->cl;
  x->cl = &x->loaded;
  int rc = solve1(x, max_stages, usable, p, err);
  x->cl = keep;
  if (rc || !feasible(p)) return rc;
  int cuts[SF_PLAN_MAX_NODES + 1], nodes[SF_PLAN_MAX_NODES];
  for (int t = 0; t < p->n_stages; t++) {
    cuts[t] = p->stages[t].cut_from;
    nodes[t] = p->stages[t].node;
  }
  int k = p->n_stages;
  cuts[k] = p->stages[k - 1].cut_to;
  const char *alg = p->algorithm;
  double solve_s = p->solve_s;
  sf__plan_deinit(p);
  if ((rc = sf__plan_eval(c, cl, k, cuts, nodes, p, err))) return rc;
  p->algorithm = alg;
  p->solve_s = solve_s;
  p->gap = INFINITY;
  return 0;
}

/* Proven lower bound of the best bottleneck of the solve that returned p (+inf: proven
 * infeasible; 0: nothing proven). */
static double plan_lb(const sf_plan *p) {
  if (p->n_stages == 0) return p->optimal ? INFINITY : 0;
  if (!isfinite(p->gap)) return 0;
  double lb = p->bottleneck_s * (1 - p->gap);
  return lb > 0 ? lb : 0;
}

static void mark_used(unsigned char *use, const sf_plan *p) {
  for (int t = 0; t < p->n_stages; t++) use[p->stages[t].node] = 0;
}

static double inv(double b) { return b > 0 ? 1 / b : INFINITY; }

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int cmp_plan_b(const void *a, const void *b) {
  const sf_plan *x = a, *y = b;
  if (x->bottleneck_s != y->bottleneck_s) return x->bottleneck_s < y->bottleneck_s ? -1 : 1;
  if (x->n_stages != y->n_stages) return x->n_stages - y->n_stages;
  return x->stages[0].node - y->stages[0].node;
}

/* ---- subset DP ---------------------------------------------------------------------------- */
/* F[k][Y] = best sum of val[X] over at most k disjoint X inside Y; arg = X taken with Y's
 * lowest node (0: that node unused). */
static void subset_dp(int mu, int K, const double *val, double *F, int *arg) {
  size_t N = (size_t)1 << mu;
  for (size_t Y = 0; Y < N; Y++) F[Y] = 0, arg[Y] = 0;
  for (int k = 1; k <= K; k++) {
    double *Fk = F + (size_t)k * N, *Fp = F + (size_t)(k - 1) * N;
    int *ak = arg + (size_t)k * N;
    Fk[0] = 0;
    ak[0] = 0;
    for (size_t Y = 1; Y < N; Y++) {
      size_t low = Y & (~Y + 1), rest = Y ^ low;
      double best = Fk[Y ^ low];
      int barg = 0;
      for (size_t sub = rest;; sub = (sub - 1) & rest) {
        size_t X = sub | low;
        if (val[X] > 0) {
          double v = val[X] + Fp[Y ^ X];
          if (v > best) best = v, barg = (int)X;
        }
        if (!sub) break;
      }
      Fk[Y] = best;
      ak[Y] = barg;
    }
  }
}

/* ---- the search --------------------------------------------------------------------------- */
int sf__plan_multi(const sf_solver *s, const sf_pcosts *c, const sf_cluster *cl,
                   const sf_plan_opts *o, int max_pipelines, sf_multiplan *out, sf_err *err) {
  memset(out, 0, sizeof *out);
  if (!s || !c || !cl || !o) return sf__errf(err, SF_EINVAL, "plan: missing argument");
  if (max_pipelines < 0 || max_pipelines > SF_PLAN_MAX_NODES)
    return sf__errf(err, SF_EINVAL, "plan: %d pipelines (need 0..%d)", max_pipelines,
                    SF_PLAN_MAX_NODES);
  if (cl->n < 1 || cl->n > SF_PLAN_MAX_NODES || !cl->nodes)
    return sf__errf(err, SF_EINVAL, "plan: cluster has %d nodes (need 1..%d)", cl->n,
                    SF_PLAN_MAX_NODES);
  double t0 = sf__now();
  int m = cl->n, rc = 0, mu = 0, smax = 0, smin = 0;
  mctx x;
  memset(&x, 0, sizeof x);
  x.s = s;
  x.c = c;
  x.cl = cl;
  x.o = o;
  unsigned char *base = sf__malloc((size_t)m), *use = sf__malloc((size_t)m);
  sf_plan *bp = NULL, p;
  memset(&p, 0, sizeof p);
  double *lbs = NULL, *G = NULL, *av = NULL, *dv = NULL, *H = NULL, *h0 = NULL, *h1 = NULL;
  double *vb = NULL, *vl = NULL, *F = NULL;
  int *arg = NULL, *idx = NULL;
  sf_plan *sp = NULL;
  size_t N = 0;
  mset best = {0}, cur = {0};
  if (!base || !use) goto nomem;
  for (int v = 0; v < m; v++) {
    base[v] = (unsigned char)sf__node_usable(o, v);
    mu += base[v];
  }
  int Kp = max_pipelines > 0 && max_pipelines < mu ? max_pipelines : mu;

  /* 1. beta(s) for s = 1..s* */
  bp = sf__calloc((size_t)m + 2, sizeof *bp);
  lbs = sf__calloc((size_t)m + 2, sizeof *lbs);
  if (!bp || !lbs) goto nomem;
  {
    sf_plan star;
    if ((rc = solve1(&x, 0, base, &star, err))) goto fail;
    if (!feasible(&star)) { /* nothing fits */
      out->optimal = star.optimal;
      out->gap = star.optimal ? 0 : INFINITY;
      out->upper_bound_per_s = star.optimal ? 0 : INFINITY;
      sf__plan_deinit(&star);
      goto done;
    }
    smax = star.n_stages;
    bp[smax] = star;
  }
  lbs[smax] = plan_lb(&bp[smax]);
  smin = smax;
  for (int k = smax - 1; k >= 1; k--) {
    if ((rc = solve1(&x, k, base, &bp[k], err))) goto fail;
    double lb = plan_lb(&bp[k]);
    lbs[k] = lb > lbs[k + 1] ? lb : lbs[k + 1];
    if (!feasible(&bp[k])) {
      for (int j = k - 1; j >= 1; j--) lbs[j] = lbs[k]; /* fewer stages cannot fit either */
      break;
    }
    smin = k;
  }

  /* 2. greedy peeling with every stage cap */
  for (int cap = smin; cap <= smax; cap++) {
    if (!feasible(&bp[cap])) continue;
    mset_clear(&cur);
    memcpy(use, base, (size_t)m);
    double lastT = 0;
    const sf_plan *next = &bp[cap];
    for (;;) {
      if (mset_push(&cur, next)) goto nomem;
      mark_used(use, next);
      sf__plan_deinit(&p);
      mset_score(cl, &cur);
      if (!(cur.T > lastT)) break; /* the pipeline does not raise the total */
      lastT = cur.T;
      if (better(&cur, &best) && mset_copy(&best, &cur)) goto nomem;
      if (cur.k >= Kp) break;
      if (o->time_limit_s > 0 && sf__now() - t0 > o->time_limit_s) break;
      double A = 0, D = 0;
      for (int i = 0; i < cur.k && cl->gateway >= 0; i++) {
        A += cur.p[i].gateway_in_s;
        D += cur.p[i].stages[cur.p[i].n_stages - 1].link_s;
      }
      if ((rc = solve_loaded(&x, cap, use, A, D, &p, err))) goto fail;
      if (!feasible(&p)) break;
      next = &p;
    }
  }
  sf__plan_deinit(&p);

  /* gateway round bound: G(k) = max(k smallest inputs, k smallest outputs) */
  G = sf__calloc((size_t)mu + 1, sizeof *G);
  av = sf__calloc((size_t)mu + 1, sizeof *av);
  dv = sf__calloc((size_t)mu + 1, sizeof *dv);
  if (!G || !av || !dv) goto nomem;
  if (cl->gateway >= 0) {
    int i = 0;
    for (int v = 0; v < m; v++) {
      if (!base[v]) continue;
      av[i] = sf__link_s(c, cl, 0, cl->gateway, v);
      dv[i++] = sf__link_s(c, cl, c->n - 1, v, cl->gateway);
    }
    qsort(av, (size_t)mu, sizeof *av, cmp_double);
    qsort(dv, (size_t)mu, sizeof *dv, cmp_double);
    double A = 0, D = 0;
    for (int k = 1; k <= mu; k++) {
      A += av[k - 1];
      D += dv[k - 1];
      G[k] = A > D ? A : D;
    }
  }

  /* 3. subset DP on small clusters with the exact solver */
  double U_dp = INFINITY;
  if (s == &sf__solver_optimal && Kp >= 2 && mu <= SUBSET_MAX_NODES) {
    double budget = SUBSET_BUDGET_S;
    if (o->time_limit_s > 0 && o->time_limit_s < budget) budget = o->time_limit_s;
    N = (size_t)1 << mu;
    int K = Kp < mu ? Kp : mu;
    idx = sf__malloc(sizeof *idx * (size_t)mu);
    vb = sf__calloc(N, sizeof *vb);
    vl = sf__calloc(N, sizeof *vl);
    sp = sf__calloc(N, sizeof *sp);
    F = sf__malloc(sizeof *F * N * (size_t)(K + 1));
    arg = sf__malloc(sizeof *arg * N * (size_t)(K + 1));
    if (!idx || !vb || !vl || !sp || !F || !arg) goto nomem;
    for (int v = 0, i = 0; v < m; v++)
      if (base[v]) idx[i++] = v;
    int ok = 1, done_n = 0;
    double t_dp = sf__now();
    for (size_t X = 1; X < N && ok; X++) {
      int pc = __builtin_popcountll((unsigned long long)X);
      if (pc < smax && isinf(lbs[pc])) continue; /* proven: too few nodes */
      memset(use, 0, (size_t)m);
      for (int i = 0; i < mu; i++)
        if (X >> i & 1) use[idx[i]] = 1;
      if ((rc = solve1(&x, 0, use, &sp[X], err))) goto fail;
      if (feasible(&sp[X])) vb[X] = inv(sp[X].bottleneck_s);
      double lb = plan_lb(&sp[X]);
      vl[X] = isinf(lb) ? 0 : inv(lb);
      /* out of time, or on course to be (projected from the solves so far) */
      double now = sf__now();
      done_n++;
      if (now - t0 > budget ||
          (done_n >= 32 && (now - t_dp) / done_n * (double)(N - 1) > 1.5 * (budget - (t_dp - t0))))
        ok = 0;
    }
    if (ok) {
      /* bound: at most j pipelines, each round at least G(j) */
      subset_dp(mu, K, vl, F, arg);
      U_dp = 0;
      for (int j = 1; j <= K; j++) {
        double u = F[(size_t)j * N + N - 1];
        if (cl->gateway >= 0 && G[j] > 0 && j / G[j] < u) u = j / G[j];
        if (u > U_dp) U_dp = u;
      }
      /* candidates: the best partition into at most j pipelines, scored with the gateway */
      subset_dp(mu, K, vb, F, arg);
      for (int j = 1; j <= K; j++) {
        mset_clear(&cur);
        size_t Y = N - 1;
        int k = j;
        while (Y && k > 0) {
          int X = arg[(size_t)k * N + Y];
          if (!X) {
            Y &= Y - 1;
            continue;
          }
          if (mset_push(&cur, &sp[X])) goto nomem;
          Y ^= (size_t)X;
          k--;
        }
        if (!cur.k) continue;
        mset_score(cl, &cur);
        if (better(&cur, &best) && mset_copy(&best, &cur)) goto nomem;
      }
    }
  }

  /* 4. upper bound */
  double U = INFINITY;
  if (!c->measured_s) {
    double work = c->measured_before
                      ? (c->measured_before[c->n - 1] - c->measured_before[0]) * c->ref_flops_per_s
                      : c->flops_before[c->n - 1] - c->flops_before[0];
    double speed = 0;
    for (int v = 0; v < m; v++)
      if (base[v]) speed += cl->nodes[v].flops_per_s;
    if (work > 0) U = speed / work;
  }
  {
    /* stage-count knapsack: items s (lbs[s] finite), value 1 / lbs[s], size s */
    int s0 = 0, s1 = smax < mu ? smax : mu;
    for (int k = 1; k <= s1 && !s0; k++)
      if (!isinf(lbs[k])) s0 = k;
    double U_b = INFINITY;
    if (s0) {
      int Kb = mu / s0 < Kp ? mu / s0 : Kp;
      H = sf__calloc((size_t)Kb + 1, sizeof *H);
      h0 = sf__malloc(sizeof *h0 * ((size_t)mu + 1));
      h1 = sf__malloc(sizeof *h1 * ((size_t)mu + 1));
      if (!H || !h0 || !h1) goto nomem;
      int finite = 1;
      for (int k = s0; k <= s1; k++) finite &= lbs[k] > 0;
      if (!finite) {
        for (int k = 1; k <= Kb; k++) H[k] = INFINITY;
      } else if ((double)Kb * (mu + 1) * (s1 - s0 + 1) > BOUND_DP_MAX_OPS) {
        for (int k = 1; k <= Kb; k++) H[k] = k / lbs[s1]; /* each pipeline <= 1 / beta(s*) */
      } else {
        for (int b = 0; b <= mu; b++) h0[b] = 0;
        for (int k = 1; k <= Kb; k++) {
          for (int b = 0; b <= mu; b++) {
            double bestv = -INFINITY;
            for (int z = s0; z <= s1 && z <= b; z++) {
              double v = h0[b - z] + 1 / lbs[z];
              if (v > bestv) bestv = v;
            }
            h1[b] = bestv;
          }
          H[k] = h1[mu];
          memcpy(h0, h1, sizeof *h0 * ((size_t)mu + 1));
        }
      }
      U_b = 0;
      for (int k = 1; k <= Kb; k++) {
        double u = H[k];
        if (cl->gateway >= 0 && G[k] > 0 && k / G[k] < u) u = k / G[k];
        if (u > U_b) U_b = u;
      }
    }
    if (U_b < U) U = U_b;
    if (U_dp < U) U = U_dp;
  }

  /* result: pipelines best first */
  out->n_pipelines = best.k;
  out->pipelines = best.p;
  best.p = NULL;
  best.k = best.cap = 0;
  qsort(out->pipelines, (size_t)out->n_pipelines, sizeof *out->pipelines, cmp_plan_b);
  out->rate_per_s = sf__calloc((size_t)out->n_pipelines, sizeof *out->rate_per_s);
  if (!out->rate_per_s) goto nomem;
  out->throughput_per_s = sf__multi_score(cl, out->n_pipelines, out->pipelines, out->rate_per_s,
                                          &out->gateway_round_s);
  {
    double T = out->throughput_per_s;
    SF_CHECK(!(U < T * (1 - OPT_TOL))); /* a valid bound is never below an achieved total */
    if (U < T) U = T;                     /* rounding */
    out->upper_bound_per_s = U;
    out->optimal = T >= U * (1 - OPT_TOL);
    out->gap = out->optimal ? 0 : isinf(U) ? INFINITY : (U - T) / U;
  }
done:
  out->algorithm = s->name;
  out->solves = x.solves;
  out->solve_s = sf__now() - t0;
  rc = 0;
  goto out;
nomem:
  rc = sf__errf(err, SF_ENOMEM, "plan: out of memory (several pipelines, %d nodes)", m);
fail:
  sf__multiplan_deinit(out);
out:
  sf__plan_deinit(&p);
  if (bp)
    for (int k = 0; k <= m + 1; k++) sf__plan_deinit(&bp[k]);
  if (sp)
    for (size_t X = 0; X < N; X++) sf__plan_deinit(&sp[X]);
  free(sp);
  free(bp);
  free(lbs);
  free(G);
  free(av);
  free(dv);
  free(H);
  free(h0);
  free(h1);
  free(vb);
  free(vl);
  free(F);
  free(arg);
  free(idx);
  free(base);
  free(use);
  mset_free(&best);
  mset_free(&cur);
  free(x.bw);
  return rc;
}
