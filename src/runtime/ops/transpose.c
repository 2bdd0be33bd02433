/* Transpose. On the hot path: the compiler inserts NCHW <-> NHWC transposes (perm [0,2,3,1],
 * [0,3,1,2], rank-3 [0,2,1]) around channels-last convolutions.
 *
 * The permutation is first simplified: size-1 dims are dropped and input dims that stay
 * adjacent in the output are merged. NCHW <-> NHWC then become a batch of 2-D matrix
 * transposes, done in 64x64 tiles (split across the thread pool) of 4x4 register-transposed
 * blocks for 4-byte elements. Anything else goes through a general N-D loop that copies
 * contiguous runs when the innermost dim stays innermost. Cost: one read and one write of the
 * tensor; no allocation. */
#include <string.h>

#include "runtime/ops/datamove.h"

#define TILE 64

typedef struct {
  int rank;
  int64_t dims[SF_MAX_RANK]; /* input dims */
  int perm[SF_MAX_RANK];
} tplan;

/* Drop size-1 dims and merge input dims that stay adjacent in the output. */
static void simplify(int rank, const int64_t *dims, const int *perm, tplan *p) {
  int newidx[SF_MAX_RANK], r1 = 0;
  int64_t d1[SF_MAX_RANK];
  for (int i = 0; i < rank; i++) {
    newidx[i] = dims[i] == 1 ? -1 : r1;
    if (dims[i] != 1) d1[r1++] = dims[i];
  }
  int p1[SF_MAX_RANK], n1 = 0;
  for (int j = 0; j < rank; j++)
    if (newidx[perm[j]] >= 0) p1[n1++] = newidx[perm[j]];
  /* Groups in output order; each is a run of consecutive input dims. */
  int gstart[SF_MAX_RANK], glen[SF_MAX_RANK], ng = 0;
  for (int j = 0; j < n1; j++) {
    if (ng && p1[j] == gstart[ng - 1] + glen[ng - 1]) {
      glen[ng - 1]++;
    } else {
      gstart[ng] = p1[j];
      glen[ng++] = 1;
    }
  }
  /* Rank of each group in input order. */
  int order[SF_MAX_RANK];
  for (int g = 0; g < ng; g++) {
    int rk = 0;
    for (int h = 0; h < ng; h++) rk += gstart[h] < gstart[g];
    order[g] = rk;
  }
  p->rank = ng;
  for (int g = 0; g < ng; g++) {
    int64_t s = 1;
    for (int i = 0; i < glen[g]; i++) s *= d1[gstart[g] + i];
    p->dims[order[g]] = s;
    p->perm[g] = order[g];
  }
}

/* ---- batched 2-D transpose: in[b][r][c] -> out[b][c][r] ---------------------------------- */

typedef struct {
  const char *in;
  char *out;
  int64_t B, R, C, nrt, nct;
  size_t es;
  int colmajor;
} t2d_ctx;

typedef uint32_t v4u __attribute__((vector_size(16)));
#if defined(__clang__)
#define SHUF(a, b, i0, i1, i2, i3) __builtin_shufflevector(a, b, i0, i1, i2, i3)
#else
typedef int32_t v4i __attribute__((vector_size(16)));
#define SHUF(a, b, i0, i1, i2, i3) __builtin_shuffle(a, b, (v4i){i0, i1, i2, i3})
#endif

static inline v4u ld4(const uint32_t *p) {
  v4u v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void st4(uint32_t *p, v4u v) { memcpy(p, &v, sizeof v); }

static inline void blk4(const uint32_t *s, uint32_t *d, int64_t C, int64_t R) {
  v4u a = ld4(s), b = ld4(s + C), x = ld4(s + 2 * C), y = ld4(s + 3 * C);
  v4u t0 = SHUF(a, b, 0, 4, 1, 5), t1 = SHUF(a, b, 2, 6, 3, 7);
  v4u t2 = SHUF(x, y, 0, 4, 1, 5), t3 = SHUF(x, y, 2, 6, 3, 7);
  st4(d, SHUF(t0, t2, 0, 1, 4, 5));
  st4(d + R, SHUF(t0, t2, 2, 3, 6, 7));
  st4(d + 2 * R, SHUF(t1, t3, 0, 1, 4, 5));
  st4(d + 3 * R, SHUF(t1, t3, 2, 3, 6, 7));
}

/* 4-byte tile. colmajor walks the tile by output rows (4 at a time) so that writes are
 * sequential: better when the output row stride R is a large power of two (many output lines
 * would otherwise map to the same cache set). */
static void tile32(const uint32_t *in, uint32_t *out, int64_t R, int64_t C, int64_t r0,
                   int64_t r1, int64_t c0, int64_t c1, int colmajor) {
  int64_t r4 = r0 + (r1 - r0) / 4 * 4, c4 = c0 + (c1 - c0) / 4 * 4;
  if (colmajor) {
    for (int64_t c = c0; c < c4; c += 4)
      for (int64_t r = r0; r < r4; r += 4) blk4(in + r * C + c, out + c * R + r, C, R);
  } else {
    for (int64_t r = r0; r < r4; r += 4)
      for (int64_t c = c0; c < c4; c += 4) blk4(in + r * C + c, out + c * R + r, C, R);
  }
  for (int64_t r = r0; r < r4; r++)
    for (int64_t c = c4; c < c1; c++) out[c * R + r] = in[r * C + c];
  if (r4 == r0) { /* fewer than 4 rows (e.g. a 3-channel image): sequential writes */
    for (int64_t c = c0; c < c1; c++)
      for (int64_t r = r0; r < r1; r++) out[c * R + r] = in[r * C + c];
    return;
  }
  for (int64_t r = r4; r < r1; r++)
    for (int64_t c = c0; c < c1; c++) out[c * R + r] = in[r * C + c];
}

#define TILE_SCALAR(name, T)                                                                   \
  static void name(const T *in, T *out, int64_t R, int64_t C, int64_t r0, int64_t r1,          \
                   int64_t c0, int64_t c1) {                                                   \
    for (int64_t rb = r0; rb < r1; rb += 8) {                                                  \
      int64_t re = rb + 8 < r1 ? rb + 8 : r1;                                                  \
      for (int64_t cb = c0; cb < c1; cb += 8) {                                                \
        int64_t ce = cb + 8 < c1 ? cb + 8 : c1;                                                \
        for (int64_t c = cb; c < ce; c++)                                                      \
          for (int64_t r = rb; r < re; r++) out[c * R + r] = in[r * C + c];                    \
      }                                                                                        \
    }                                                                                          \
  }
TILE_SCALAR(tile8, uint8_t)
TILE_SCALAR(tile16, uint16_t)
TILE_SCALAR(tile64, uint64_t)

static void t2d_task(void *vctx, size_t i) {
  const t2d_ctx *t = vctx;
  int64_t per = t->nrt * t->nct, b = (int64_t)i / per, rem = (int64_t)i % per;
  int64_t r0 = rem / t->nct * TILE, c0 = rem % t->nct * TILE;
  int64_t r1 = r0 + TILE < t->R ? r0 + TILE : t->R, c1 = c0 + TILE < t->C ? c0 + TILE : t->C;
  int64_t plane = t->R * t->C * (int64_t)t->es;
  const char *in = t->in + b * plane;
  char *out = t->out + b * plane;
  switch (t->es) {
    case 4:
      tile32((const uint32_t *)in, (uint32_t *)out, t->R, t->C, r0, r1, c0, c1, t->colmajor);
      break;
    case 1: tile8((const uint8_t *)in, (uint8_t *)out, t->R, t->C, r0, r1, c0, c1); break;
    case 2: tile16((const uint16_t *)in, (uint16_t *)out, t->R, t->C, r0, r1, c0, c1); break;
    case 8: tile64((const uint64_t *)in, (uint64_t *)out, t->R, t->C, r0, r1, c0, c1); break;
    default:
      for (int64_t r = r0; r < r1; r++)
        for (int64_t c = c0; c < c1; c++)
          memcpy(out + (c * t->R + r) * (int64_t)t->es, in + (r * t->C + c) * (int64_t)t->es,
                 t->es);
  }
}

static void transpose2d(pthreadpool_t pool, const void *in, void *out, int64_t B, int64_t R,
                        int64_t C, size_t es) {
  t2d_ctx t = {in, out, B, R, C, (R + TILE - 1) / TILE, (C + TILE - 1) / TILE, es, 0};
  /* Output rows a multiple of 1 KiB apart alias in the cache: write them sequentially instead
   * (unless the input rows have the same problem). */
  t.colmajor = (R * (int64_t)es) % 1024 == 0 && (C * (int64_t)es) % 1024 != 0;
  size_t ntask = (size_t)(B * t.nrt * t.nct);
  /* Small tensors are not worth waking the pool. */
  if (B * R * C * (int64_t)es < 64 * 1024) pool = NULL;
  sf__parallel_for(pool, ntask, t2d_task, &t);
}

/* ---- general N-D -------------------------------------------------------------------------- */

typedef struct {
  const char *in;
  char *out;
  int rank;
  int64_t od[SF_MAX_RANK];  /* output dims */
  int64_t ist[SF_MAX_RANK]; /* input byte stride of each output dim */
  int64_t ostride0;         /* output bytes per index of output dim 0 */
  size_t es;
  int contig; /* innermost output dim is contiguous in the input */
} gen_ctx;

static void gen_task(void *vctx, size_t i0) {
  const gen_ctx *g = vctx;
  int r = g->rank, L = r - 1;
  const char *in = g->in + (int64_t)i0 * g->ist[0];
  char *out = g->out + (int64_t)i0 * g->ostride0;
  int64_t n = g->od[L], s = g->ist[L];
  size_t es = g->es;
  int64_t idx[SF_MAX_RANK] = {0}, off = 0;
  /* Dims 1..L-1 are iterated; dim 0 is the task index; dim L is the inner loop. */
  for (;;) {
    const char *src = in + off;
    if (g->contig) {
      memcpy(out, src, (size_t)n * es);
      out += n * (int64_t)es;
    } else if (es == 4) {
      uint32_t *o = (uint32_t *)out;
      for (int64_t j = 0; j < n; j++) memcpy(o + j, src + j * s, 4);
      out += n * 4;
    } else {
      for (int64_t j = 0; j < n; j++, out += es) memcpy(out, src + j * s, es);
    }
    int d = L - 1;
    for (; d >= 1; d--) {
      off += g->ist[d];
      if (++idx[d] < g->od[d]) break;
      off -= g->od[d] * g->ist[d];
      idx[d] = 0;
    }
    if (d < 1) break;
  }
}

static void general(pthreadpool_t pool, const void *in, void *out, const tplan *p, size_t es) {
  gen_ctx g = {.in = in, .out = out, .es = es};
  int64_t istr[SF_MAX_RANK], acc = (int64_t)es;
  for (int d = p->rank - 1; d >= 0; d--) {
    istr[d] = acc;
    acc *= p->dims[d];
  }
  /* Rank >= 2 here; pad to rank 2 is not needed (simplify gives rank >= 2). */
  g.rank = p->rank;
  for (int j = 0; j < p->rank; j++) {
    g.od[j] = p->dims[p->perm[j]];
    g.ist[j] = istr[p->perm[j]];
  }
  g.contig = g.ist[p->rank - 1] == (int64_t)es;
  g.ostride0 = (int64_t)es;
  for (int j = 1; j < p->rank; j++) g.ostride0 *= g.od[j];
  if (acc < 64 * 1024) pool = NULL;
  sf__parallel_for(pool, (size_t)g.od[0], gen_task, &g);
}

static int64_t prod(int rank, const int64_t *dims) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  return n;
}

void sf__transpose_general(pthreadpool_t pool, const void *in, void *out, int rank,
                           const int64_t *dims, const int *perm, size_t esize) {
  int64_t n = prod(rank, dims);
  if (n == 0) return;
  tplan p;
  simplify(rank, dims, perm, &p);
  if (p.rank <= 1) {
    memcpy(out, in, (size_t)n * esize);
    return;
  }
  general(pool, in, out, &p, esize);
}

void sf__transpose(pthreadpool_t pool, const void *in, void *out, int rank, const int64_t *dims,
                   const int *perm, size_t esize) {
  int64_t n = prod(rank, dims);
  if (n == 0) return;
  tplan p;
  simplify(rank, dims, perm, &p);
  if (p.rank <= 1) {
    memcpy(out, in, (size_t)n * esize);
  } else if (p.rank == 2) {
    transpose2d(pool, in, out, 1, p.dims[0], p.dims[1], esize);
  } else if (p.rank == 3 && p.perm[0] == 0 && p.perm[1] == 2 && p.perm[2] == 1) {
    transpose2d(pool, in, out, p.dims[0], p.dims[1], p.dims[2], esize);
  } else {
    general(pool, in, out, &p, esize);
  }
}

/* ---- operator ----------------------------------------------------------------------------- */

static int read_perm(sf_kctx *k, int r, int *perm) {
  const int64_t *a;
  int n = sf__attr_ints(k->node, "perm", &a);
  if (n < 0) {
    for (int i = 0; i < r; i++) perm[i] = r - 1 - i;
    return 0;
  }
  if (n != r) return sf__op_err(k, SF_EINVAL, "perm has %d entries for rank %d", n, r);
  int seen[SF_MAX_RANK] = {0};
  for (int i = 0; i < r; i++) {
    if (a[i] < 0 || a[i] >= r || seen[a[i]])
      return sf__op_err(k, SF_EINVAL, "perm is not a permutation of 0..%d", r - 1);
    seen[a[i]] = 1;
    perm[i] = (int)a[i];
  }
  return 0;
}

static int transpose_infer(sf_kctx *k) {
  sf_gtensor *in = sf__in(k->g, k->node, 0);
  if (!in) return sf__op_err(k, SF_EINVAL, "input 0 is missing");
  size_t es;
  int rc = dm_esize(k, &in->t, &es), perm[SF_MAX_RANK];
  if (rc < 0) return rc;
  if ((rc = read_perm(k, in->t.rank, perm)) < 0) return rc;
  int64_t dims[SF_MAX_RANK];
  for (int i = 0; i < in->t.rank; i++) dims[i] = in->t.dims[perm[i]];
  return dm_set_out(k, 0, in->t.dtype, in->t.rank, dims);
}

static int transpose_run(sf_kctx *k) {
  sf_gtensor *in = sf__in(k->g, k->node, 0), *out = sf__out(k->g, k->node, 0);
  int perm[SF_MAX_RANK];
  int rc = read_perm(k, in->t.rank, perm);
  if (rc < 0) return rc;
  if (dm_numel(&in->t) != dm_numel(&out->t))
    return sf__op_err(k, SF_EINTERNAL, "input and output element counts differ");
  sf__transpose(k->pool, in->t.data, out->t.data, in->t.rank, in->t.dims, perm,
                sf_dtype_size(in->t.dtype));
  return 0;
}

const sf_op_def sf__op_Transpose = {"Transpose", 0, transpose_infer, NULL, transpose_run, NULL,
                                    NULL, NULL};
