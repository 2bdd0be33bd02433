/* Depthwise convolution, channels-last, AVX-512 (see dwconv.h).
 *
 * Why: XNNPACK's depthwise micro-kernels (2022) go through an indirection buffer and keep one
 * accumulator per 16 channels, so a 3x3 layer runs a chain of 9 dependent FMAs per output
 * vector; they reached 15-33 GFLOP/s on EfficientNet-B1's layers (2-core AMD EPYC Zen 4),
 * 1.8x the time ONNX Runtime's NCHWc kernels take.
 *
 * Both variants below accumulate 8 neighbouring output pixels of one block of 16 channels at
 * once (8 independent FMA chains; the KW weight vectors of a kernel row sit in registers and
 * each input vector is loaded once per kernel row), start from the bias and apply the
 * activation (clamp or Swish) in registers before the single store. A row whose interior is
 * not a multiple of 8 pixels ends with a block overlapping the previous one (the same values
 * written twice).
 *
 * Staged (5x5, 1-D, and 3x3 stride 1 on inputs up to DW_DIRECT_BYTES): a task owns one block of
 * 16 channels of one image over a range of output rows. The input rows it needs are copied once
 * each into a ring of KH rows on the stack, laid out [column][16] with the left and right
 * padding as zeros (rows in the top / bottom padding point at a zero row), so the inner loop
 * has no bounds tests and addresses every tap with a constant offset; rows narrower than 8
 * outputs use blocks of 4 and 1.
 *
 * Direct (3x3 stride 2, and 3x3 on larger inputs): a task owns a range of output rows and does
 * every channel block of a row before the next row, so the input is read in memory order (the
 * staged variant, block-major, would fetch a tensor larger than L2 from L3 once per block).
 * Interior columns read the input in place (pixel stride C, rows in the padding skipped);
 * the border columns test their taps. Staging would also copy 4 values per 9 FMAs at stride 2.
 * Measured on EfficientNet-B1 / MobileNetV2 layers: 112x112x32 3x3 0.137 ms staged, 0.096 ms
 * direct; 14x14x576 3x3 0.044 staged, 0.048 direct; 8x8x1152 5x5 0.070 staged, 0.118 direct.
 *
 * Layout: weights are packed per block of 16 channels as [block][kh][kw][16] (zero beyond C),
 * the bias as [block][16]. */
#if defined(__GNUC__) && !defined(__clang__)
/* also in debug builds: the kernels rely on loops unrolled at compile time (at -O0 they run 7x
 * slower than XNNPACK's prebuilt ones) */
#pragma GCC optimize("O3")
#endif
#include "runtime/ops/dwconv.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/op.h"
#include "runtime/ops/vkern.h"
#include "runtime/ops/vmath_avx512.h"
#include "util/util.h"

#define DW_MAXKH 7
#define DW_J 8                 /* output pixels per register block */
#define DW_STAGE_FLOATS 16384  /* ring of staged input rows (64 KiB of stack per task) */
#ifndef DW_DIRECT_BYTES
#define DW_DIRECT_BYTES (512 << 10)
#endif

typedef void (*dw_task_fn)(const struct sf_dw *d, const float *xn, float *yn, int64_t cb,
                           int64_t oh0, int64_t oh1);

struct sf_dw {
  sf_dw_shape s;
  int64_t nb;      /* blocks of 16 channels */
  int64_t wp;      /* staged row width (columns, padding included) */
  int64_t tblocks; /* channel blocks in the task split (1: each task does every block) */
  int64_t chunks;  /* row ranges per (image, task block) */
  int64_t rows;    /* output rows per range */
  float *w;        /* [nb][kh][kw][16] */
  float *b;        /* [nb][16] */
  dw_task_fn fn;
};

/* Columns of a staged row: the padded input must cover the taps of every output column. */
static int64_t staged_width(const sf_dw_shape *s) {
  int64_t need = (s->OW - 1) * s->sw + s->kw, have = s->pl + s->W;
  return need > have ? need : have;
}

#if defined(__x86_64__) && defined(__GNUC__)

#if defined(__clang__)
#define DW_UNROLL _Pragma("unroll")
#else
#define DW_UNROLL _Pragma("GCC unroll 24")
#endif
#define DW_INLINE static inline SF_AVX512_TARGET __attribute__((always_inline))

typedef struct dw_epi {
  int act;
  __m512 lo, hi;
} dw_epi;

/* Activation, then the store of the block's channels. */
DW_INLINE void dw_out(float *y, __m512 v, __mmask16 m, const dw_epi *e) {
  if (e->act == SF_DW_ACT_SWISH)
    v = sf__v512_swish(v);
  else if (e->act == SF_DW_ACT_CLAMP)
    v = _mm512_min_ps(_mm512_max_ps(v, e->lo), e->hi);
  _mm512_mask_storeu_ps(y, m, v);
}

/* J output pixels from staged column c0 (in units of 16 floats): rows[q] are the staged input
 * rows, wr the packed weights of the block; y advances by C per pixel. */
DW_INLINE void dw_block(const float *const *rows, const float *wr, int64_t c0, __m512 bias,
                        float *y, int64_t C, __mmask16 m, const dw_epi *e, const int KH,
                        const int KW, const int SW, const int J) {
  __m512 acc[DW_J], wv[5];
  DW_UNROLL for (int j = 0; j < J; j++) acc[j] = bias;
  for (int q = 0; q < KH; q++) {
    const float *xp = rows[q] + c0 * 16;
    DW_UNROLL for (int kw = 0; kw < KW; kw++) wv[kw] = _mm512_load_ps(wr + (q * KW + kw) * 16);
    DW_UNROLL for (int i = 0; i < (J - 1) * SW + KW; i++) {
      __m512 xv = _mm512_load_ps(xp + i * 16);
      DW_UNROLL for (int kw = 0; kw < KW; kw++) {
        int d = i - kw, j = d / SW;
        if (d >= 0 && d % SW == 0 && j < J) acc[j] = _mm512_fmadd_ps(xv, wv[kw], acc[j]);
      }
    }
  }
  DW_UNROLL for (int j = 0; j < J; j++) dw_out(y + j * C, acc[j], m, e);
}

/* Copies input row ih of block cb (channels masked by m) into dst as [wp][16], zero padding. */
DW_INLINE void dw_stage(const sf_dw *d, const float *xn, int64_t ih, int64_t cb, __mmask16 m,
                        float *dst) {
  const sf_dw_shape *s = &d->s;
  const float *src = xn + ih * s->W * s->C + cb * 16;
  const __m512 z = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c < s->pl; c++) _mm512_store_ps(dst + c * 16, z);
  for (int64_t ix = 0; ix < s->W; ix++, c++)
    _mm512_store_ps(dst + c * 16, _mm512_maskz_loadu_ps(m, src + ix * s->C));
  for (; c < d->wp; c++) _mm512_store_ps(dst + c * 16, z);
}

/* Output rows [oh0, oh1) of block cb of one image (xn, yn: the image's input and output). */
DW_INLINE void dw_task_impl(const sf_dw *d, const float *xn, float *yn, int64_t cb,
                            int64_t oh0, int64_t oh1, const int KH, const int KW,
                            const int SW) {
  const sf_dw_shape *s = &d->s;
  const int64_t C = s->C, OW = s->OW, wp = d->wp, sh = s->sh;
  float stage[DW_STAGE_FLOATS] __attribute__((aligned(64)));
  float *zero = stage + KH * wp * 16; /* one row of zeros after the ring */
  memset(zero, 0, sizeof(float) * (size_t)(wp * 16));
  dw_epi e = {s->act, _mm512_set1_ps(s->lo), _mm512_set1_ps(s->hi)};
  __mmask16 m = cb * 16 + 16 <= C ? (__mmask16)0xFFFF : (__mmask16)((1u << (C - cb * 16)) - 1u);
  const float *wr = d->w + cb * KH * KW * 16;
  __m512 bias = _mm512_load_ps(d->b + cb * 16);
  int64_t next = -1; /* rows below next are staged (ring slot ih % KH) */
  for (int64_t oh = oh0; oh < oh1; oh++) {
    const float *rows[DW_MAXKH];
    int64_t ih0 = oh * sh - s->pt;
    for (int q = 0; q < KH; q++) {
      int64_t ih = ih0 + q;
      if (ih < 0 || ih >= s->H) {
        rows[q] = zero;
        continue;
      }
      float *slot = stage + (ih % KH) * wp * 16;
      if (ih >= next || ih < next - KH) dw_stage(d, xn, ih, cb, m, slot);
      rows[q] = slot;
    }
    int64_t last = ih0 + KH - 1 < s->H ? ih0 + KH - 1 : s->H - 1;
    if (last + 1 > next) next = last + 1;
    float *yr = yn + oh * OW * C + cb * 16;
    int64_t ow = 0;
    if (OW >= DW_J) {
      for (; ow + DW_J <= OW; ow += DW_J)
        dw_block(rows, wr, ow * SW, bias, yr + ow * C, C, m, &e, KH, KW, SW, DW_J);
      if (ow < OW) /* overlap the previous block: same values */
        dw_block(rows, wr, (OW - DW_J) * SW, bias, yr + (OW - DW_J) * C, C, m, &e, KH, KW, SW,
                 DW_J);
    } else {
      for (; ow + 4 <= OW; ow += 4)
        dw_block(rows, wr, ow * SW, bias, yr + ow * C, C, m, &e, KH, KW, SW, 4);
      for (; ow < OW; ow++) dw_block(rows, wr, ow * SW, bias, yr + ow * C, C, m, &e, KH, KW, SW, 1);
    }
  }
}

/* ---- direct variant (3x3) ------------------------------------------------------------ */

/* J output pixels whose taps are all inside the image; x[q] at the first tap's input pixel. */
DW_INLINE void dw_block_direct(const float *const *x, const float *const *w, int nr, int64_t C,
                               __m512 bias, float *y, __mmask16 m, const dw_epi *e,
                               const int KW, const int SW, const int J) {
  __m512 acc[DW_J], wv[5];
  DW_UNROLL for (int j = 0; j < J; j++) acc[j] = bias;
  for (int q = 0; q < nr; q++) {
    DW_UNROLL for (int kw = 0; kw < KW; kw++) wv[kw] = _mm512_load_ps(w[q] + kw * 16);
    DW_UNROLL for (int i = 0; i < (J - 1) * SW + KW; i++) {
      __m512 xv = _mm512_maskz_loadu_ps(m, x[q] + i * C);
      DW_UNROLL for (int kw = 0; kw < KW; kw++) {
        int d = i - kw, j = d / SW;
        if (d >= 0 && d % SW == 0 && j < J) acc[j] = _mm512_fmadd_ps(xv, wv[kw], acc[j]);
      }
    }
  }
  DW_UNROLL for (int j = 0; j < J; j++) dw_out(y + j * C, acc[j], m, e);
}

/* One output pixel whose taps may leave the image; x[q] at input column 0. */
DW_INLINE void dw_pixel_direct(const float *const *x, const float *const *w, int nr,
                               int64_t ix0, int64_t W, int64_t C, __m512 bias, float *y,
                               __mmask16 m, const dw_epi *e, const int KW) {
  __m512 acc = bias;
  for (int q = 0; q < nr; q++)
    for (int kw = 0; kw < KW; kw++) {
      int64_t ix = ix0 + kw;
      if (ix < 0 || ix >= W) continue;
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x[q] + ix * C),
                            _mm512_load_ps(w[q] + kw * 16), acc);
    }
  dw_out(y, acc, m, e);
}

/* Output rows [oh0, oh1), every channel block (cb is ignored: tasks of the direct variant
 * cover all channels, so the input is read in memory order). */
DW_INLINE void dw_task_direct(const sf_dw *d, const float *xn, float *yn, int64_t cb_unused,
                              int64_t oh0, int64_t oh1, const int KW, const int SW) {
  (void)cb_unused;
  const sf_dw_shape *s = &d->s;
  const int64_t C = s->C, W = s->W, OW = s->OW, pl = s->pl;
  dw_epi e = {s->act, _mm512_set1_ps(s->lo), _mm512_set1_ps(s->hi)};
  /* columns [oa, ob): ow * SW - pl >= 0 and ow * SW - pl + KW - 1 <= W - 1 */
  int64_t oa = (pl + SW - 1) / SW, ob = W - KW + pl >= 0 ? (W - KW + pl) / SW + 1 : 0;
  if (oa > OW) oa = OW;
  if (ob > OW) ob = OW;
  if (ob < oa) ob = oa;
  for (int64_t oh = oh0; oh < oh1; oh++) {
    const float *xr[DW_MAXKH];
    int64_t khs[DW_MAXKH];
    int nr = 0;
    for (int kh = 0; kh < (int)s->kh; kh++) {
      int64_t ih = oh * s->sh - s->pt + kh;
      if (ih < 0 || ih >= s->H) continue;
      xr[nr] = xn + ih * W * C;
      khs[nr++] = kh;
    }
    for (int64_t cb = 0; cb < d->nb; cb++) {
      const float *x[DW_MAXKH], *w[DW_MAXKH], *xi[DW_MAXKH];
      for (int q = 0; q < nr; q++) {
        x[q] = xr[q] + cb * 16;
        w[q] = d->w + (cb * s->kh + khs[q]) * KW * 16;
      }
      __mmask16 m =
          cb * 16 + 16 <= C ? (__mmask16)0xFFFF : (__mmask16)((1u << (C - cb * 16)) - 1u);
      __m512 bias = _mm512_load_ps(d->b + cb * 16);
      float *yr = yn + oh * OW * C + cb * 16;
      int64_t ow = 0;
      for (; ow < oa; ow++)
        dw_pixel_direct(x, w, nr, ow * SW - pl, W, C, bias, yr + ow * C, m, &e, KW);
      for (; ow < ob; ow += DW_J) {
        int64_t o = ow + DW_J <= ob ? ow : ob - DW_J; /* last block overlaps the previous one */
        if (o < oa) break;
        for (int q = 0; q < nr; q++) xi[q] = x[q] + (o * SW - pl) * C;
        dw_block_direct(xi, w, nr, C, bias, yr + o * C, m, &e, KW, SW, DW_J);
      }
      for (; ow < ob; ow++) { /* fewer than 8 interior columns */
        for (int q = 0; q < nr; q++) xi[q] = x[q] + (ow * SW - pl) * C;
        dw_block_direct(xi, w, nr, C, bias, yr + ow * C, m, &e, KW, SW, 1);
      }
      for (ow = ob; ow < OW; ow++)
        dw_pixel_direct(x, w, nr, ow * SW - pl, W, C, bias, yr + ow * C, m, &e, KW);
    }
  }
}

static SF_AVX512_TARGET void dw_task_d331(const sf_dw *d, const float *xn, float *yn,
                                          int64_t cb, int64_t oh0, int64_t oh1) {
  dw_task_direct(d, xn, yn, cb, oh0, oh1, 3, 1);
}

static SF_AVX512_TARGET void dw_task_d332(const sf_dw *d, const float *xn, float *yn,
                                          int64_t cb, int64_t oh0, int64_t oh1) {
  dw_task_direct(d, xn, yn, cb, oh0, oh1, 3, 2);
}

#define DW_VARIANT(KH, KW, SW)                                                                 \
  static SF_AVX512_TARGET void dw_task_##KH##KW##SW(const sf_dw *d, const float *xn,           \
                                                    float *yn, int64_t cb, int64_t oh0,        \
                                                    int64_t oh1) {                             \
    dw_task_impl(d, xn, yn, cb, oh0, oh1, KH, KW, SW);                                         \
  }
DW_VARIANT(3, 3, 1)
DW_VARIANT(5, 5, 1)
DW_VARIANT(5, 5, 2)
DW_VARIANT(1, 3, 1) /* 1-D */
DW_VARIANT(1, 5, 1)

/* Direct for 3x3 when the input exceeds DW_DIRECT_BYTES (the staged variant, block-major,
 * would fetch it from L3 once per block) or at stride 2 (staging would copy 4 values per 9
 * FMAs); staged otherwise. */
static dw_task_fn pick_fn(const sf_dw_shape *s) {
  static const struct {
    int kh, kw, sw;
    dw_task_fn fn;
  } v[] = {{3, 3, 1, dw_task_331}, {5, 5, 1, dw_task_551}, {5, 5, 2, dw_task_552},
           {1, 3, 1, dw_task_131}, {1, 5, 1, dw_task_151}};
  if (s->kh == 3 && s->kw == 3 && s->sw == 2) return dw_task_d332;
  if (s->kh == 3 && s->kw == 3 && s->H * s->W * s->C * (int64_t)sizeof(float) > DW_DIRECT_BYTES)
    return dw_task_d331;
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
    if (s->kh == v[i].kh && s->kw == v[i].kw && s->sw == v[i].sw) return v[i].fn;
  return NULL;
}

static int dw_is_direct(dw_task_fn fn) { return fn == dw_task_d331 || fn == dw_task_d332; }

int sf__dw_supported(const sf_dw_shape *s) {
  if (!sf__cpu_avx512()) return 0;
  if (s->C < 16 || s->N < 1 || s->H < 1 || s->W < 1 || s->OH < 1 || s->OW < 1) return 0;
  if (s->sh < 1 || s->sh > 2 || s->pt < 0 || s->pl < 0 || s->pt >= s->kh || s->pl >= s->kw)
    return 0;
  if (!pick_fn(s)) return 0;
  if ((s->kh + 1) * staged_width(s) * 16 > DW_STAGE_FLOATS) return 0;
  return s->act == SF_DW_ACT_NONE || s->act == SF_DW_ACT_CLAMP || s->act == SF_DW_ACT_SWISH;
}

#else /* no AVX-512 build support */

static dw_task_fn pick_fn(const sf_dw_shape *s) {
  (void)s;
  return NULL;
}

static int dw_is_direct(dw_task_fn fn) {
  (void)fn;
  return 0;
}

int sf__dw_supported(const sf_dw_shape *s) {
  (void)s;
  return 0;
}

#endif

int sf__dw_create(const sf_dw_shape *s, const float *w, const float *b, pthreadpool_t pool,
                  sf_dw **out) {
  *out = NULL;
  if (!sf__dw_supported(s)) return SF_EINVAL;
  sf_dw *d = sf__calloc(1, sizeof *d);
  if (!d) return SF_ENOMEM;
  d->s = *s;
  d->nb = (s->C + 15) / 16;
  d->wp = staged_width(s);
  int64_t kk = s->kh * s->kw;
  d->w = sf__aligned_alloc(sizeof(float) * (size_t)(d->nb * kk * 16));
  d->b = sf__aligned_alloc(sizeof(float) * (size_t)(d->nb * 16));
  if (!d->w || !d->b) {
    sf__dw_free(d);
    return SF_ENOMEM;
  }
  for (int64_t cb = 0; cb < d->nb; cb++)
    for (int64_t q = 0; q < kk; q++)
      for (int64_t l = 0; l < 16; l++) {
        int64_t c = cb * 16 + l;
        d->w[(cb * kk + q) * 16 + l] = c < s->C ? w[c * kk + q] : 0.0f;
      }
  for (int64_t c = 0; c < d->nb * 16; c++) d->b[c] = c < s->C && b ? b[c] : 0.0f;
  /* split the rows only when there are too few (image, block) tasks for the threads: each
   * range restages the KH - 1 rows above it */
  d->fn = pick_fn(s);
  d->tblocks = dw_is_direct(d->fn) ? 1 : d->nb; /* the direct variant does every block */
  size_t threads = pool ? pthreadpool_get_threads_count(pool) : 1;
  int64_t want = threads > 1 ? (int64_t)threads * 4 : 1;
  d->chunks = (want + s->N * d->tblocks - 1) / (s->N * d->tblocks);
  if (d->chunks > s->OH) d->chunks = s->OH;
  if (d->chunks < 1) d->chunks = 1;
  d->rows = (s->OH + d->chunks - 1) / d->chunks;
  d->chunks = (s->OH + d->rows - 1) / d->rows;
  *out = d;
  return 0;
}

typedef struct dw_job {
  const sf_dw *d;
  const float *x;
  float *y;
} dw_job;

static void dw_task(void *ctx, size_t t) {
  const dw_job *j = ctx;
  const sf_dw *d = j->d;
  const sf_dw_shape *s = &d->s;
  int64_t ch = (int64_t)t % d->chunks, r = (int64_t)t / d->chunks;
  int64_t cb = r % d->tblocks, n = r / d->tblocks;
  int64_t oh0 = ch * d->rows, oh1 = oh0 + d->rows < s->OH ? oh0 + d->rows : s->OH;
  d->fn(d, j->x + n * s->H * s->W * s->C, j->y + n * s->OH * s->OW * s->C, cb, oh0, oh1);
}

void sf__dw_run(const sf_dw *d, const float *x, float *y, pthreadpool_t pool) {
  dw_job j = {d, x, y};
  sf__parallel_for(pool, (size_t)(d->s.N * d->tblocks * d->chunks), dw_task, &j);
}

void sf__dw_free(sf_dw *d) {
  if (!d) return;
  free(d->w);
  free(d->b);
  free(d);
}
