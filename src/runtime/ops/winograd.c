/* Winograd F(m x m, 3 x 3) convolution, channels-last float32 (see winograd.h).
 *
 * Transforms (Lavin & Gray; F(6) with the interpolation points 0, +-1, +-2, +-1/2, inf):
 * 1-D input transform B^T (alpha x alpha), output transform A^T (m x alpha), kernel transform
 * G (alpha x 3); 2-D: V = B^T d B, U = G g G^T, Y = A^T (U .* V) A. The element-wise product
 * summed over input channels is one GEMM per (xi, nu) position of the alpha x alpha tile.
 *
 * The input and output transforms work on 8 channels at a time (GCC vector extensions), tiles
 * split over the thread pool; they are compiled for the baseline ISA and again for AVX2+FMA
 * (function-level target attribute), chosen at creation by CPU features. The GEMMs are XNNPACK
 * fully-connected operators ([tiles x C] x [C x M], weights packed by XNNPACK), set up on the
 * fixed scratch buffers; with a pool of several threads and enough GEMMs, whole GEMMs run
 * single-threaded in parallel (one pool dispatch for all of them). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#pragma GCC optimize("O3", "no-trapping-math", "fp-contract=fast")
#endif

#include "runtime/ops/winograd.h"

#include <math.h>
#include <string.h>

#include <xnnpack.h>

#include "util/util.h"

/* Tiles per block (the rows of the GEMMs): as many as fit V and Mb together in WS_L2 floats
 * (1 MiB: the block stays in a core's L2 between the three phases), but at least WS_ROWS so
 * that every pass over the transformed weights (alpha^2 C M floats, streamed once per block)
 * feeds enough rows, and at most what fits WS_MAX floats (16 MiB; a block has >= 1 tile).
 * Measured (1 thread): 56x56x64 F(4) takes 0.75 ms with 1 MiB blocks, 0.9-1.2 ms with
 * 4-16 MiB blocks; 35x35x256 F(4) 5.6-7.4 ms with 1 MiB (14-tile) blocks, 5.1 ms with 56-tile
 * blocks (each block streams all 9.4 MB of transformed weights). */
#define WS_L2 ((int64_t)1 << 18)
#define WS_ROWS 56
#define WS_MAX ((int64_t)1 << 22)
#define WA_MAX 8 /* largest alpha */

typedef float wv8 __attribute__((vector_size(32)));
typedef int32_t wi8 __attribute__((vector_size(32)));
typedef float wv8u __attribute__((vector_size(32), aligned(4))); /* unaligned access */
#define LDU(p) (*(const wv8u *)(const void *)(p))
#define STU(p, v) (*(wv8u *)(void *)(p) = (v))

#define WI static inline __attribute__((always_inline))

typedef struct wjob wjob;
typedef void (*wtask_fn)(void *job, size_t start, size_t count);

struct sf_wino {
  sf_wino_shape s;
  int m, A;
  int64_t th, tw, T; /* tiles per image column / row, total tiles (whole batch) */
  int64_t tb;        /* tiles per block (scratch rows) */
  int64_t set_nb;    /* batch size the GEMMs are set up for (-1: none) */
  int set_pooled;    /* ... and whether with the pool (1) or for single-threaded runs (0) */
  const float *x;
  float *y;
  float *bias; /* [M], zeros when absent */
  float lo, hi;
  float *v, *mb;              /* scratch V and Mb of one block */
  int64_t vps, vrs, mps, mrs; /* plane and row (tile) strides of V and Mb, in floats */
  wtask_fn in_fn, out_fn;
  xnn_operator_t fc[WA_MAX * WA_MAX];
};

struct wjob {
  const sf_wino *w;
  int64_t t0; /* first tile of the block */
  int fail;
};

/* ---- 1-D transforms on vectors d[0], d[ds], ... ------------------------------------------ */

/* o = B^T d (alpha values in, alpha out). */
WI void in1d(int m, const wv8 *d, int ds, wv8 *o, int os) {
  if (m == 2) {
    wv8 d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds];
    o[0] = d0 - d2;
    o[os] = d1 + d2;
    o[2 * os] = d2 - d1;
    o[3 * os] = d1 - d3;
  } else if (m == 4) {
    wv8 d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds], d5 = d[5 * ds];
    wv8 a = d4 - 4.0f * d2, b = d3 - 4.0f * d1, c = d4 - d2, e = 2.0f * (d3 - d1);
    o[0] = 4.0f * (d0 - d2) + (d4 - d2);
    o[os] = a + b;
    o[2 * os] = a - b;
    o[3 * os] = c + e;
    o[4 * os] = c - e;
    o[5 * os] = 4.0f * (d1 - d3) + (d5 - d3);
  } else {
    wv8 d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds];
    wv8 d4 = d[4 * ds], d5 = d[5 * ds], d6 = d[6 * ds], d7 = d[7 * ds];
    o[0] = (d0 - d6) + 5.25f * (d4 - d2);
    o[7 * os] = (d7 - d1) + 5.25f * (d3 - d5);
    wv8 a = (d2 + d6) - 4.25f * d4, b = (d1 + d5) - 4.25f * d3;
    o[os] = a + b;
    o[2 * os] = a - b;
    a = (0.25f * d2 + d6) - 1.25f * d4;
    b = (0.5f * d1 + 2.0f * d5) - 2.5f * d3;
    o[3 * os] = a + b;
    o[4 * os] = a - b;
    a = d6 + 4.0f * (d2 - 1.25f * d4);
    b = (2.0f * d1 + 0.5f * d5) - 2.5f * d3;
    o[5 * os] = a + b;
    o[6 * os] = a - b;
  }
}

/* o = A^T d (alpha values in, m out). */
WI void out1d(int m, const wv8 *d, int ds, wv8 *o, int os) {
  if (m == 2) {
    wv8 d1 = d[ds], d2 = d[2 * ds];
    o[0] = d[0] + d1 + d2;
    o[os] = (d1 - d2) - d[3 * ds];
  } else if (m == 4) {
    wv8 s1 = d[ds] + d[2 * ds], t1 = d[ds] - d[2 * ds];
    wv8 s2 = d[3 * ds] + d[4 * ds], t2 = d[3 * ds] - d[4 * ds];
    o[0] = d[0] + s1 + s2;
    o[os] = t1 + 2.0f * t2;
    o[2 * os] = s1 + 4.0f * s2;
    o[3 * os] = (t1 + 8.0f * t2) + d[5 * ds];
  } else {
    wv8 s1 = d[ds] + d[2 * ds], t1 = d[ds] - d[2 * ds];
    wv8 s2 = d[3 * ds] + d[4 * ds], t2 = d[3 * ds] - d[4 * ds];
    wv8 s3 = d[5 * ds] + d[6 * ds], t3 = d[5 * ds] - d[6 * ds];
    o[0] = d[0] + s1 + s2 + s3;
    o[os] = t1 + 2.0f * t2 + 0.5f * t3;
    o[2 * os] = s1 + 4.0f * s2 + 0.25f * s3;
    o[3 * os] = t1 + 8.0f * t2 + 0.125f * t3;
    o[4 * os] = s1 + 16.0f * s2 + 0.0625f * s3;
    o[5 * os] = (t1 + 32.0f * t2 + 0.03125f * t3) + d[7 * ds];
  }
}

/* Kernel transform matrices G (alpha x 3). */
static const double G2[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}};
static const double G4[6][3] = {{1 / 4., 0, 0},
                                {-1 / 6., -1 / 6., -1 / 6.},
                                {-1 / 6., 1 / 6., -1 / 6.},
                                {1 / 24., 1 / 12., 1 / 6.},
                                {1 / 24., -1 / 12., 1 / 6.},
                                {0, 0, 1}};
static const double G6[8][3] = {{1, 0, 0},
                                {-2 / 9., -2 / 9., -2 / 9.},
                                {-2 / 9., 2 / 9., -2 / 9.},
                                {1 / 90., 1 / 45., 2 / 45.},
                                {1 / 90., -1 / 45., 2 / 45.},
                                {32 / 45., 16 / 45., 8 / 45.},
                                {32 / 45., -16 / 45., 8 / 45.},
                                {0, 0, 1}};

/* ---- tile transforms ----------------------------------------------------------------------- */

/* nc (<= 8) channels starting at c of one input tile: xs[e] is the pixel of tap e or NULL
 * (padding); V[e] goes to vd + e * ps. */
WI void in_group(int m, const float *const *xs, int64_t c, int nc, float *vd, int64_t ps) {
  const int A = m + 2;
  wv8 d[WA_MAX * WA_MAX], t[WA_MAX * WA_MAX];
  if (nc == 8) {
    for (int e = 0; e < A * A; e++) d[e] = xs[e] ? LDU(xs[e] + c) : (wv8){0};
  } else {
    for (int e = 0; e < A * A; e++) {
      float tmp[8] = {0};
      if (xs[e]) memcpy(tmp, xs[e] + c, sizeof(float) * (size_t)nc);
      d[e] = LDU(tmp);
    }
  }
  for (int j = 0; j < A; j++) in1d(m, d + j, A, t + j, A);
  for (int i = 0; i < A; i++) in1d(m, t + i * A, 1, d + i * A, 1);
  if (nc == 8) {
    for (int e = 0; e < A * A; e++) STU(vd + e * ps, d[e]);
  } else {
    for (int e = 0; e < A * A; e++) {
      float tmp[8];
      STU(tmp, d[e]);
      memcpy(vd + e * ps, tmp, sizeof(float) * (size_t)nc);
    }
  }
}

WI void in_tiles(int m, void *job, size_t start, size_t count) {
  const wjob *j = job;
  const sf_wino *w = j->w;
  const int A = m + 2;
  const int64_t C = w->s.C, H = w->s.H, W = w->s.W, tpi = w->th * w->tw, ps = w->vps;
  for (size_t r = start; r < start + count; r++) {
    int64_t t = j->t0 + (int64_t)r, n = t / tpi, q = t % tpi;
    int64_t iy0 = (q / w->tw) * m - w->s.pt, ix0 = (q % w->tw) * m - w->s.pl;
    const float *xs[WA_MAX * WA_MAX];
    for (int a = 0; a < A; a++)
      for (int b = 0; b < A; b++) {
        int64_t iy = iy0 + a, ix = ix0 + b;
        xs[a * A + b] =
            (iy >= 0 && iy < H && ix >= 0 && ix < W) ? w->x + ((n * H + iy) * W + ix) * C : NULL;
      }
    float *vd = w->v + (int64_t)r * w->vrs;
    int64_t c = 0;
    for (; c + 8 <= C; c += 8) in_group(m, xs, c, 8, vd + c, ps);
    if (c < C) in_group(m, xs, c, (int)(C - c), vd + c, ps);
  }
}

/* nc (<= 8) channels starting at c of one output tile: Mb[e] at md + e * ps; output pixel
 * (i, j) of the tile goes to ys[i * m + j] (NULL: outside the image). */
WI void out_group(int m, const float *md, int64_t ps, float *const *ys, int64_t c, int nc,
                  const float *bias, float lo, float hi) {
  const int A = m + 2;
  wv8 d[WA_MAX * WA_MAX], t[WA_MAX * WA_MAX], o[WA_MAX], bv = {0};
  wv8 vlo = (wv8){0} + lo, vhi = (wv8){0} + hi;
  if (nc == 8) {
    for (int e = 0; e < A * A; e++) d[e] = LDU(md + e * ps);
    bv = LDU(bias + c);
  } else {
    float tmp[8] = {0};
    for (int e = 0; e < A * A; e++) {
      memcpy(tmp, md + e * ps, sizeof(float) * (size_t)nc);
      d[e] = LDU(tmp);
    }
    memcpy(tmp, bias + c, sizeof(float) * (size_t)nc);
    bv = LDU(tmp);
  }
  for (int j = 0; j < A; j++) out1d(m, d + j, A, t + j, A);
  for (int i = 0; i < m; i++) {
    out1d(m, t + i * A, 1, o, 1);
    for (int jj = 0; jj < m; jj++) {
      float *yp = ys[i * m + jj];
      if (!yp) continue;
      wv8 v = o[jj] + bv;
      wi8 k = v < vlo;
      v = (wv8)(((wi8)v & ~k) | ((wi8)vlo & k));
      k = v > vhi;
      v = (wv8)(((wi8)v & ~k) | ((wi8)vhi & k));
      if (nc == 8) {
        STU(yp + c, v);
      } else {
        float tmp[8];
        STU(tmp, v);
        memcpy(yp + c, tmp, sizeof(float) * (size_t)nc);
      }
    }
  }
}

WI void out_tiles(int m, void *job, size_t start, size_t count) {
  const wjob *j = job;
  const sf_wino *w = j->w;
  const int64_t M = w->s.M, OH = w->s.OH, OW = w->s.OW, tpi = w->th * w->tw, ps = w->mps;
  for (size_t r = start; r < start + count; r++) {
    int64_t t = j->t0 + (int64_t)r, n = t / tpi, q = t % tpi;
    int64_t oy0 = (q / w->tw) * m, ox0 = (q % w->tw) * m;
    float *ys[(WA_MAX - 2) * (WA_MAX - 2)];
    for (int a = 0; a < m; a++)
      for (int b = 0; b < m; b++) {
        int64_t oy = oy0 + a, ox = ox0 + b;
        ys[a * m + b] = (oy < OH && ox < OW) ? w->y + ((n * OH + oy) * OW + ox) * M : NULL;
      }
    const float *md = w->mb + (int64_t)r * w->mrs;
    int64_t c = 0;
    for (; c + 8 <= M; c += 8) out_group(m, md + c, ps, ys, c, 8, w->bias, w->lo, w->hi);
    if (c < M) out_group(m, md + c, ps, ys, c, (int)(M - c), w->bias, w->lo, w->hi);
  }
}

/* Instantiations per tile size and ISA. */
#define WINO_VARIANT(sfx, attr, m)                               \
  attr static void in_##sfx##m(void *job, size_t s, size_t n) {  \
    in_tiles(m, job, s, n);                                      \
  }                                                              \
  attr static void out_##sfx##m(void *job, size_t s, size_t n) { \
    out_tiles(m, job, s, n);                                     \
  }
WINO_VARIANT(base, , 2)
WINO_VARIANT(base, , 4)
WINO_VARIANT(base, , 6)
#if defined(__x86_64__) && defined(__GNUC__)
#define WINO_AVX2 __attribute__((target("avx2,fma")))
WINO_VARIANT(avx2, WINO_AVX2, 2)
WINO_VARIANT(avx2, WINO_AVX2, 4)
WINO_VARIANT(avx2, WINO_AVX2, 6)
#endif

static void pick_kernels(sf_wino *w) {
  static const wtask_fn in_b[3] = {in_base2, in_base4, in_base6};
  static const wtask_fn out_b[3] = {out_base2, out_base4, out_base6};
  int i = w->m / 2 - 1;
  w->in_fn = in_b[i];
  w->out_fn = out_b[i];
#if defined(__x86_64__) && defined(__GNUC__)
  static const wtask_fn in_a[3] = {in_avx22, in_avx24, in_avx26};
  static const wtask_fn out_a[3] = {out_avx22, out_avx24, out_avx26};
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    w->in_fn = in_a[i];
    w->out_fn = out_a[i];
  }
#endif
}

/* ---- selection ----------------------------------------------------------------------------- */

/* Cost model, fitted to single-layer measurements on the development machine (AMD EPYC Zen 4,
 * XNNPACK 2022 f32 GEMM micro-kernels of 7 rows at ~110 GFLOP/s per core, ~20 GB/s for
 * weights streamed from DRAM, as in a network whose weights exceed the caches). With
 * c = compute time and b = weight-traffic time, a layer takes max(c, b) + min(c, b) / 2:
 *   direct: c = 2 OH OW 9 C M / 110 GFLOP/s,  b = 9 C M floats / 20 GB/s
 *   F(m):   c = alpha^2 * 2 * rows * C * M / 110 GFLOP/s, rows = tiles of every block rounded
 *           up to 7 (the micro-kernel computes 7 rows at a time),
 *           b = blocks * alpha^2 * C * M floats / 20 GB/s,
 *           plus transforms tiles * alpha^2 * (0.45 ns * C + 0.3 ns * M) and, with a pool,
 *           5 us per block (three dispatches).
 * Threads divide the compute and transform terms; weight traffic gains 1.3x with 2+ threads.
 * Measured per layer (1 thread, ms, direct / F(2) / F(4) / F(6)): ResNet-50 56x56x64
 * 2.0/1.1/0.69/0.77, 28x28x128 2.0/1.0/0.65/0.68, 14x14x256 2.1/1.16/1.33/1.8, 7x7x512
 * 2.5/2.3/2.0/3.7; Inception-ResNet-v2 147x147 32->64 6.9/4.4/3.3/3.2, 71x71 80->192
 * 12.2/6.8/4.6/3.9, 35x35 32->32 0.19/0.13/0.089/0.083, 35x35 256->256 12.6/7.1/5.0/4.3,
 * 17x17 256->288 3.4/2.1/1.9/2.0 (2 threads: about half of each). The model errs towards
 * the direct convolution for small layers whose weights stay in cache in such measurements.
 * Winograd is chosen when the model predicts at least 15% less time than direct (the model's
 * error and the memory of the transformed weights); F(6) only when it beats F(2) and F(4) by
 * 10% (it holds 1.8 times the weights of F(4)). */
#define WM_FLOPS 110e9
#define WM_BW (20e9 / 4) /* floats per second */

static int64_t wm_tb(int A, int64_t C, int64_t M, int64_t T);

static double wm_mix(double c, double b) {
  return c > b ? c + 0.5 * b : b + 0.5 * c;
}

static double wm_direct(const sf_wino_shape *s, int nt) {
  double cm = (double)s->C * (double)s->M;
  return wm_mix(2.0 * (double)(s->N * s->OH * s->OW) * 9.0 * cm / WM_FLOPS / nt,
                9.0 * cm / WM_BW / (nt > 1 ? 1.3 : 1.0));
}

static double wm_wino(const sf_wino_shape *s, int m, int nt) {
  int A = m + 2;
  int64_t T = s->N * ((s->OH + m - 1) / m) * ((s->OW + m - 1) / m);
  int64_t tb = wm_tb(A, s->C, s->M, T), nblk = (T + tb - 1) / tb, rb = (T + nblk - 1) / nblk;
  double cm = (double)s->C * (double)s->M, a2 = A * A;
  double rows = (double)nblk * (double)((rb + 6) / 7 * 7);
  double t = wm_mix(a2 * 2.0 * rows * cm / WM_FLOPS / nt,
                    (double)nblk * a2 * cm / WM_BW / (nt > 1 ? 1.3 : 1.0));
  t += (double)T * a2 * (0.45e-9 * (double)s->C + 0.3e-9 * (double)s->M) / nt;
  if (nt > 1) t += 5e-6 * (double)nblk;
  return t;
}

int sf__wino_choose(const sf_wino_shape *s, int threads) {
  int nt = threads < 1 ? 1 : threads;
  if (s->N < 1 || s->C < 1 || s->M < 1 || s->OH < 1 || s->OW < 1) return 0;
  double td = wm_direct(s, nt), t2 = wm_wino(s, 2, nt), t4 = wm_wino(s, 4, nt),
         t6 = wm_wino(s, 6, nt);
  int m = t2 <= t4 ? 2 : 4;
  double tm = m == 2 ? t2 : t4;
  if (t6 < 0.9 * tm) {
    m = 6;
    tm = t6;
  }
  return tm < 0.85 * td ? m : 0;
}

/* ---- creation ------------------------------------------------------------------------------ */

/* Tiles per block for T tiles in all (see WS_L2). */
static int64_t wm_tb(int A, int64_t C, int64_t M, int64_t T) {
  int64_t per_tile = (int64_t)A * A * (C + M), tb = WS_L2 / per_tile;
  if (tb < WS_ROWS) tb = WS_ROWS;
  if (tb > WS_MAX / per_tile) tb = WS_MAX / per_tile;
  if (tb < 1) tb = 1;
  if (tb > T) tb = T;
  return tb;
}

void sf__wino_free(sf_wino *w) {
  if (!w) return;
  for (int e = 0; e < WA_MAX * WA_MAX; e++)
    if (w->fc[e]) xnn_delete_operator(w->fc[e]);
  free(w->bias);
  free(w->v);
  free(w->mb);
  free(w);
}

int64_t sf__wino_scratch_floats(const sf_wino *w) {
  return w ? w->A * w->A * w->tb * (w->s.C + w->s.M) : 0;
}

/* Sets every GEMM up for nb rows of the block, with the pool or for single-threaded runs. */
static int setup_gemms(sf_wino *w, int64_t nb, int pooled, pthreadpool_t pool) {
  if (w->set_nb == nb && w->set_pooled == pooled) return 0;
  w->set_nb = -1;
  for (int e = 0; e < w->A * w->A; e++)
    if (xnn_setup_fully_connected_nc_f32(w->fc[e], (size_t)nb, w->v + e * w->vps,
                                         w->mb + e * w->mps,
                                         pooled ? pool : NULL) != xnn_status_success)
      return SF_EINTERNAL;
  w->set_nb = nb;
  w->set_pooled = pooled;
  return 0;
}

/* Whole GEMMs in parallel, each single-threaded, when the pool has several threads and there
 * are at least 4 GEMMs per thread (alpha^2 = 16, 36 or 64); otherwise one after the other, each
 * split over the pool. */
static int gemm_per_task(const sf_wino *w, pthreadpool_t pool) {
  size_t nt = pool ? pthreadpool_get_threads_count(pool) : 1;
  return nt > 1 && (size_t)(w->A * w->A) >= 4 * nt;
}

int sf__wino_create(const sf_wino_shape *s, int m, const float *wt, const float *b, float lo,
                    float hi, const float *x, float *y, pthreadpool_t pool, sf_wino **out) {
  *out = NULL;
  if ((m != 2 && m != 4 && m != 6) || s->N < 1 || s->H < 1 || s->W < 1 || s->C < 1 || s->M < 1 ||
      s->OH < 1 || s->OW < 1 || s->pt < 0 || s->pl < 0 || s->OH > s->H + s->pt ||
      s->OW > s->W + s->pl)
    return SF_EINVAL;
  const double(*G)[3] = m == 2 ? G2 : m == 4 ? G4 : G6;
  int rc = SF_ENOMEM;
  float *ub = NULL;
  sf_wino *w = sf__calloc(1, sizeof *w);
  if (!w) return SF_ENOMEM;
  w->s = *s;
  w->m = m;
  w->A = m + 2;
  w->th = (s->OH + m - 1) / m;
  w->tw = (s->OW + m - 1) / m;
  w->T = s->N * w->th * w->tw;
  w->x = x;
  w->y = y;
  w->lo = lo;
  w->hi = hi;
  w->set_nb = -1;
  const int A = w->A;
  const int64_t C = s->C, M = s->M;
  int64_t tb = wm_tb(A, C, M, w->T), nblk = (w->T + tb - 1) / tb;
  w->tb = (w->T + nblk - 1) / nblk; /* equal blocks */
  /* Tile-major V[tile][A*A][C] and Mb[tile][A*A][M]: each transform reads or writes one
   * contiguous run per tile, the GEMMs use row strides A*A*C and A*A*M. Measured against the
   * plane-major layout [A*A][tile][C] (A*A strided streams per tile): 56x56x64 F(4) 0.74 ms vs
   * 0.99 ms, 71x71 80->192 F(6) 4.1 ms vs 4.6 ms. */
  w->vps = C, w->vrs = A * A * C, w->mps = M, w->mrs = A * A * M;
  size_t extra = 64; /* XNNPACK may read XNN_EXTRA_BYTES past its inputs */
  if (!(w->v = sf__aligned_alloc(sizeof(float) * (size_t)(A * A * w->tb * C) + extra)) ||
      !(w->mb = sf__aligned_alloc(sizeof(float) * (size_t)(A * A * w->tb * M) + extra)) ||
      !(w->bias = sf__calloc((size_t)M, sizeof(float))))
    goto err;
  if (b) memcpy(w->bias, b, sizeof(float) * (size_t)M);
  pick_kernels(w);

  /* U[xi][nu][oc][ic] = (G g G^T)[xi][nu], one row xi of planes at a time. */
  if (!(ub = sf__malloc(sizeof(float) * (size_t)(A * M * C)))) goto err;
  for (int xi = 0; xi < A; xi++) {
    for (int64_t oc = 0; oc < M; oc++)
      for (int64_t ic = 0; ic < C; ic++) {
        const float *g = wt + (oc * C + ic) * 9;
        double t[3];
        for (int bb = 0; bb < 3; bb++)
          t[bb] = G[xi][0] * g[bb] + G[xi][1] * g[3 + bb] + G[xi][2] * g[6 + bb];
        for (int nu = 0; nu < A; nu++)
          ub[(nu * M + oc) * C + ic] = (float)(t[0] * G[nu][0] + t[1] * G[nu][1] + t[2] * G[nu][2]);
      }
    for (int nu = 0; nu < A; nu++)
      if (xnn_create_fully_connected_nc_f32((size_t)C, (size_t)M, (size_t)w->vrs, (size_t)w->mrs,
                                            ub + nu * M * C, NULL, -INFINITY, INFINITY, 0,
                                            &w->fc[xi * A + nu]) != xnn_status_success) {
        rc = SF_EUNSUPPORTED;
        goto err;
      }
  }
  free(ub);
  ub = NULL;
  if (setup_gemms(w, w->tb, !gemm_per_task(w, pool), pool)) {
    rc = SF_EUNSUPPORTED;
    goto err;
  }
  *out = w;
  return 0;
err:
  free(ub);
  sf__wino_free(w);
  return rc;
}

/* ---- run ----------------------------------------------------------------------------------- */

static void gemm_task(void *job, size_t e) {
  wjob *j = job;
  if (xnn_run_operator(j->w->fc[e], NULL) != xnn_status_success)
    __atomic_store_n(&j->fail, 1, __ATOMIC_RELAXED);
}

int sf__wino_run(sf_wino *w, pthreadpool_t pool) {
  size_t nt = pool ? pthreadpool_get_threads_count(pool) : 1;
  int per_task = gemm_per_task(w, pool);
  for (int64_t t0 = 0; t0 < w->T; t0 += w->tb) {
    int64_t nb = w->T - t0 < w->tb ? w->T - t0 : w->tb;
    if (setup_gemms(w, nb, !per_task, pool)) return SF_EINTERNAL;
    wjob j = {.w = w, .t0 = t0};
    /* about 8 transform tasks per thread */
    size_t grain = (size_t)nb / (8 * nt);
    if (grain < 1) grain = 1;
    pthreadpool_parallelize_1d_tile_1d(pool, w->in_fn, &j, (size_t)nb, grain, 0);
    if (per_task) {
      pthreadpool_parallelize_1d(pool, gemm_task, &j, (size_t)(w->A * w->A), 0);
      if (j.fail) return SF_EINTERNAL;
    } else {
      for (int e = 0; e < w->A * w->A; e++)
        if (xnn_run_operator(w->fc[e], pool) != xnn_status_success) return SF_EINTERNAL;
    }
    pthreadpool_parallelize_1d_tile_1d(pool, w->out_fn, &j, (size_t)nb, grain, 0);
  }
  return 0;
}
