/* Gemm and MatMul (float32), and the blocked single-precision GEMM engine shared with the
 * convolution fallbacks (ops/conv.c).
 *
 * Paths:
 *   - constant right-hand matrix (Linear layers): XNNPACK fully-connected operator created once in
 *     prepare (B packed inside XNNPACK; alpha folded into the weights, beta*C into the bias when C
 *     is a row vector or a scalar, otherwise added by a post pass in run);
 *   - anything else (non-constant B, transA, batched B, XNNPACK refusing the shape): sf__sgemm.
 *
 * sf__sgemm: C(i,j) = clamp(alpha * sum_k A(i,k) B(k,j) + beta * C(i,j) + bias[i], lo, hi) with
 * arbitrary element strides for A, B and C, B optionally supplied by a packing callback (implicit
 * im2col) and A optionally pre-packed once (constant weights). Cache-blocked: KC x MC panels of A
 * and KC x NR panels of B, packed into the task's stack (~40 KiB); 6x8 register micro-kernel
 * written with GCC vector extensions (SSE/NEON, multiply-add contraction where the target has
 * FMA) plus a 12x8 AVX2/FMA kernel chosen at run time on x86-64; parallelised over row-block x
 * 256-column tiles with sf__parallel_for. Cost: 2*M*N*K flops, plus packing A once per column
 * tile (unless pre-packed) and each B panel once per row block. No heap allocation.
 */
#include <math.h>
#include <string.h>

#include <xnnpack.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GM_X86 1
#endif

#include "runtime/op.h"
#include "runtime/ops/sgemm.h"

/* ---- GEMM engine ------------------------------------------------------------------------- */

#define GM_MR 6
#define GM_NR 8
#define GM_KC 128
#define GM_MC 72  /* multiple of GM_MR */
#define GM_NC 256 /* multiple of GM_NR */

typedef float gm_v4 __attribute__((vector_size(16)));

/* Engine declared in ops/sgemm.h. Pre-packed A (rsa == csa == 0): the tasks then span many
 * rows, so each B panel is packed fewer times. */

typedef struct gm_job {
  int64_t M, N, K;
  float alpha, beta, lo, hi;
  const float *A, *B, *bias;
  int64_t rsa, csa, rsb, csb, rsc, csc;
  sf_packb_fn pack_b;
  const void *pack_ctx;
  float *C;
  const float *apacked; /* pre-packed A (blocks of GM_KC columns, strips of GM_MR rows) */
  int64_t mpad;          /* M rounded up to GM_MR */
  int64_t mc;            /* rows per task */
  int64_t nt;            /* column tiles */
  int avx2;              /* use the x86 AVX2/FMA kernel */
} gm_job;

/* acc[MR][NR] = sum_k a[k][MR] (x) b[k][NR] */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("fp-contract=fast")))
#endif
static void gm_kernel(int kc, const float *restrict a, const float *restrict b,
                      float *restrict acc) {
  gm_v4 c0a = {0}, c0b = {0}, c1a = {0}, c1b = {0}, c2a = {0}, c2b = {0};
  gm_v4 c3a = {0}, c3b = {0}, c4a = {0}, c4b = {0}, c5a = {0}, c5b = {0};
  for (int k = 0; k < kc; k++) {
    gm_v4 b0, b1;
    memcpy(&b0, b, sizeof b0);
    memcpy(&b1, b + 4, sizeof b1);
    c0a += a[0] * b0;
    c0b += a[0] * b1;
    c1a += a[1] * b0;
    c1b += a[1] * b1;
    c2a += a[2] * b0;
    c2b += a[2] * b1;
    c3a += a[3] * b0;
    c3b += a[3] * b1;
    c4a += a[4] * b0;
    c4b += a[4] * b1;
    c5a += a[5] * b0;
    c5b += a[5] * b1;
    a += GM_MR;
    b += GM_NR;
  }
  memcpy(acc + 0, &c0a, 16);
  memcpy(acc + 4, &c0b, 16);
  memcpy(acc + 8, &c1a, 16);
  memcpy(acc + 12, &c1b, 16);
  memcpy(acc + 16, &c2a, 16);
  memcpy(acc + 20, &c2b, 16);
  memcpy(acc + 24, &c3a, 16);
  memcpy(acc + 28, &c3b, 16);
  memcpy(acc + 32, &c4a, 16);
  memcpy(acc + 36, &c4b, 16);
  memcpy(acc + 40, &c5a, 16);
  memcpy(acc + 44, &c5b, 16);
}

#ifdef GM_X86
/* Two row strips at once: acc0 = a0 (x) b, acc1 = a1 (x) b (12 ymm accumulators). */
__attribute__((target("avx2,fma"))) static void gm_kernel2_avx2(int kc, const float *restrict a0,
                                                                 const float *restrict a1,
                                                                 const float *restrict b,
                                                                 float *restrict acc0,
                                                                 float *restrict acc1) {
  __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
  __m256 d0 = c0, d1 = c0, d2 = c0, d3 = c0, d4 = c0, d5 = c0;
  for (int k = 0; k < kc; k++) {
    __m256 bv = _mm256_loadu_ps(b);
    c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + 0), bv, c0);
    c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + 1), bv, c1);
    c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + 2), bv, c2);
    c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + 3), bv, c3);
    c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + 4), bv, c4);
    c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(a0 + 5), bv, c5);
    d0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + 0), bv, d0);
    d1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + 1), bv, d1);
    d2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + 2), bv, d2);
    d3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + 3), bv, d3);
    d4 = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + 4), bv, d4);
    d5 = _mm256_fmadd_ps(_mm256_broadcast_ss(a1 + 5), bv, d5);
    a0 += GM_MR;
    a1 += GM_MR;
    b += GM_NR;
  }
  _mm256_storeu_ps(acc0 + 0, c0);
  _mm256_storeu_ps(acc0 + 8, c1);
  _mm256_storeu_ps(acc0 + 16, c2);
  _mm256_storeu_ps(acc0 + 24, c3);
  _mm256_storeu_ps(acc0 + 32, c4);
  _mm256_storeu_ps(acc0 + 40, c5);
  _mm256_storeu_ps(acc1 + 0, d0);
  _mm256_storeu_ps(acc1 + 8, d1);
  _mm256_storeu_ps(acc1 + 16, d2);
  _mm256_storeu_ps(acc1 + 24, d3);
  _mm256_storeu_ps(acc1 + 32, d4);
  _mm256_storeu_ps(acc1 + 40, d5);
}

static int gm_have_avx2(void) {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

/* Rows [i0, i0+mc) x k [k0, k0+kc) of A into strips of GM_MR rows: dst[strip][k][r]. */
static void gm_pack_a(const gm_job *j, int64_t i0, int64_t mc, int64_t k0, int kc, float *dst) {
  for (int64_t s = 0; s < mc; s += GM_MR) {
    float *d = dst + (size_t)s * (size_t)kc;
    for (int r = 0; r < GM_MR; r++) {
      int64_t i = i0 + s + r;
      if (s + r >= mc) {
        for (int k = 0; k < kc; k++) d[k * GM_MR + r] = 0.0f;
        continue;
      }
      const float *src = j->A + i * j->rsa + k0 * j->csa;
      if (j->csa == 1)
        for (int k = 0; k < kc; k++) d[k * GM_MR + r] = src[k];
      else
        for (int k = 0; k < kc; k++) d[k * GM_MR + r] = src[k * j->csa];
    }
  }
}

static void gm_pack_b(const gm_job *j, int64_t k0, int kc, int64_t j0, int nr, float *dst) {
  if (nr < GM_NR) memset(dst, 0, sizeof(float) * (size_t)kc * GM_NR);
  if (j->pack_b) {
    j->pack_b(j->pack_ctx, k0, kc, j0, nr, dst, GM_NR);
    return;
  }
  const float *B = j->B;
  if (j->csb == 1) {
    for (int k = 0; k < kc; k++) {
      const float *src = B + (k0 + k) * j->rsb + j0;
      if (nr == GM_NR)
        memcpy(dst + k * GM_NR, src, sizeof(float) * GM_NR);
      else
        for (int c = 0; c < nr; c++) dst[k * GM_NR + c] = src[c];
    }
  } else {
    for (int c = 0; c < nr; c++) {
      const float *src = B + k0 * j->rsb + (j0 + c) * j->csb;
      for (int k = 0; k < kc; k++) dst[k * GM_NR + c] = src[k * j->rsb];
    }
  }
}

static void gm_store(const gm_job *j, int64_t i0, int mr, int64_t j0, int nr, const float *acc,
                     int first, int last) {
  const float alpha = j->alpha, beta = j->beta, lo = j->lo, hi = j->hi;
  const int64_t csc = j->csc;
  for (int r = 0; r < mr; r++) {
    float *restrict row = j->C + (i0 + r) * j->rsc + j0 * csc;
    const float *restrict a = acc + r * GM_NR;
    float v[GM_NR];
    if (csc == 1 && nr == GM_NR) {
      if (!first)
        for (int c = 0; c < GM_NR; c++) v[c] = alpha * a[c] + row[c];
      else if (beta != 0.0f)
        for (int c = 0; c < GM_NR; c++) v[c] = alpha * a[c] + beta * row[c];
      else
        for (int c = 0; c < GM_NR; c++) v[c] = alpha * a[c];
    } else {
      for (int c = 0; c < nr; c++) {
        float o = first && beta == 0.0f ? 0.0f : row[c * csc];
        v[c] = alpha * a[c] + (first ? beta * o : o);
      }
    }
    if (last) {
      float bias = j->bias ? j->bias[i0 + r] : 0.0f;
      for (int c = 0; c < GM_NR; c++) {
        float t = v[c] + bias;
        v[c] = t < lo ? lo : (t > hi ? hi : t);
      }
    }
    if (csc == 1 && nr == GM_NR)
      memcpy(row, v, sizeof v);
    else
      for (int c = 0; c < nr; c++) row[c * csc] = v[c];
  }
}

static void gm_task(void *ctx, size_t t) {
  const gm_job *j = ctx;
  _Alignas(64) float apack_buf[GM_MC * GM_KC];
  _Alignas(64) float bpack[GM_KC * GM_NR];
  _Alignas(64) float acc[GM_MR * GM_NR], acc1[GM_MR * GM_NR];
  int64_t i0 = (int64_t)(t / (size_t)j->nt) * j->mc, c0 = (int64_t)(t % (size_t)j->nt) * GM_NC;
  int mc = (int)(j->M - i0 < j->mc ? j->M - i0 : j->mc);
  int ncol = (int)(j->N - c0 < GM_NC ? j->N - c0 : GM_NC);
  if (j->K == 0) {
    memset(acc, 0, sizeof acc);
    for (int jj = 0; jj < ncol; jj += GM_NR)
      for (int ii = 0; ii < mc; ii += GM_MR)
        gm_store(j, i0 + ii, mc - ii < GM_MR ? mc - ii : GM_MR, c0 + jj,
                 ncol - jj < GM_NR ? ncol - jj : GM_NR, acc, 1, 1);
    return;
  }
  for (int64_t k0 = 0; k0 < j->K; k0 += GM_KC) {
    int kc = (int)(j->K - k0 < GM_KC ? j->K - k0 : GM_KC);
    int first = k0 == 0, last = k0 + kc >= j->K;
    const float *apack = apack_buf;
    if (j->apacked)
      apack = j->apacked + k0 * j->mpad + i0 * kc;
    else
      gm_pack_a(j, i0, mc, k0, kc, apack_buf);
    for (int jj = 0; jj < ncol; jj += GM_NR) {
      int nr = ncol - jj < GM_NR ? ncol - jj : GM_NR;
      gm_pack_b(j, k0, kc, c0 + jj, nr, bpack);
      int ii = 0;
#ifdef GM_X86
      if (j->avx2)
        for (; ii + GM_MR < mc; ii += 2 * GM_MR) {
          gm_kernel2_avx2(kc, apack + (size_t)ii * (size_t)kc,
                          apack + (size_t)(ii + GM_MR) * (size_t)kc, bpack, acc, acc1);
          gm_store(j, i0 + ii, GM_MR, c0 + jj, nr, acc, first, last);
          gm_store(j, i0 + ii + GM_MR, mc - ii - GM_MR < GM_MR ? mc - ii - GM_MR : GM_MR,
                   c0 + jj, nr, acc1, first, last);
        }
#endif
      for (; ii < mc; ii += GM_MR) {
        gm_kernel(kc, apack + (size_t)ii * (size_t)kc, bpack, acc);
        gm_store(j, i0 + ii, mc - ii < GM_MR ? mc - ii : GM_MR, c0 + jj, nr, acc, first, last);
      }
    }
  }
}

void sf__sgemm(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t rsa,
               int64_t csa, const float *B, int64_t rsb, int64_t csb, sf_packb_fn pack_b,
               const void *pack_ctx, float beta, float *C, int64_t rsc, int64_t csc,
               const float *bias_row, float lo, float hi, pthreadpool_t pool) {
  if (M <= 0 || N <= 0) return;
  gm_job j = {.M = M, .N = N, .K = K < 0 ? 0 : K, .alpha = alpha, .beta = beta, .lo = lo,
              .hi = hi, .A = A, .B = B, .bias = bias_row, .rsa = rsa, .csa = csa, .rsb = rsb,
              .csb = csb, .rsc = rsc, .csc = csc, .pack_b = pack_b, .pack_ctx = pack_ctx, .C = C};
  j.nt = (N + GM_NC - 1) / GM_NC;
#ifdef GM_X86
  j.avx2 = gm_have_avx2();
#endif
  /* threading pays off above ~100k multiply-adds */
  if ((double)M * (double)N * (double)(K + 1) < 1e5) pool = NULL;
  j.mc = GM_MC;
  if (rsa == 0 && csa == 0) {
    /* pre-packed A: as few row blocks as keep every thread busy (about 4 tasks per thread) */
    j.apacked = A;
    j.mpad = (M + GM_MR - 1) / GM_MR * GM_MR;
    int64_t threads = pool ? (int64_t)pthreadpool_get_threads_count(pool) : 1;
    int64_t mt = threads > 1 ? (4 * threads + j.nt - 1) / j.nt : 1;
    int64_t strips = j.mpad / GM_MR;
    if (mt > strips) mt = strips;
    j.mc = (strips + mt - 1) / mt * GM_MR;
  }
  int64_t mt = (M + j.mc - 1) / j.mc;
  sf__parallel_for(pool, (size_t)(mt * j.nt), gm_task, &j);
}

int64_t sf__sgemm_packed_floats(int64_t M, int64_t K) {
  return (M + GM_MR - 1) / GM_MR * GM_MR * K;
}

void sf__sgemm_pack_a(int64_t M, int64_t K, const float *A, int64_t rsa, int64_t csa, float *dst) {
  gm_job j = {.M = M, .K = K, .A = A, .rsa = rsa, .csa = csa};
  int64_t mpad = (M + GM_MR - 1) / GM_MR * GM_MR;
  for (int64_t k0 = 0; k0 < K; k0 += GM_KC) {
    int kc = (int)(K - k0 < GM_KC ? K - k0 : GM_KC);
    gm_pack_a(&j, 0, M, k0, kc, dst + k0 * mpad);
  }
}

/* ---- shared helpers ---------------------------------------------------------------------- */

static float act_lo(const sf_node *n) { return n->fused_act == SF_ACT_CLAMP ? n->act_min : -INFINITY; }
static float act_hi(const sf_node *n) { return n->fused_act == SF_ACT_CLAMP ? n->act_max : INFINITY; }

static int check_f32(sf_kctx *k, int i) {
  sf_gtensor *t = sf__in(k->g, k->node, i);
  if (t && t->t.dtype != SF_F32)
    return sf__op_err(k, SF_EUNSUPPORTED, "input %d has dtype %s (only float32 is supported)", i,
                      sf_dtype_name(t->t.dtype));
  return 0;
}

static int64_t numel(const sf_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) n *= t->dims[i];
  return n;
}

typedef struct fc_state {
  xnn_operator_t op; /* NULL: sf__sgemm path */
  int post;          /* Gemm: add beta*C and clamp after XNNPACK */
} fc_state;

static void fc_release(sf_node *n) {
  fc_state *s = n->state;
  if (s && s->op) xnn_delete_operator(s->op);
  free(s);
  n->state = NULL;
}

/* XNNPACK fully-connected operator for out[batch, N] = in[batch, K] * W (+ bias). kn: W is [K,N]
 * (else [N,K]); scale multiplies W. Returns NULL when XNNPACK refuses or on allocation failure
 * (the caller falls back to sf__sgemm). */
static xnn_operator_t fc_create(int64_t K, int64_t N, const float *W, int kn, float scale,
                                const float *bias, float lo, float hi) {
  float *wc = NULL;
  const float *wp = W;
  if (scale != 1.0f) {
    int64_t n = K * N;
    if (!(wc = sf__malloc(sizeof(float) * (size_t)n))) return NULL;
    for (int64_t i = 0; i < n; i++) wc[i] = W[i] * scale;
    wp = wc;
  }
  xnn_operator_t op = NULL;
  if (xnn_create_fully_connected_nc_f32((size_t)K, (size_t)N, (size_t)K, (size_t)N, wp, bias, lo,
                                        hi, kn ? XNN_FLAG_TRANSPOSE_WEIGHTS : 0,
                                        &op) != xnn_status_success)
    op = NULL;
  free(wc);
  return op;
}

/* ---- Gemm -------------------------------------------------------------------------------- */

static int gemm_infer(sf_kctx *k) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  int rc;
  if (n->n_in < 2 || !sf__in(g, n, 0) || !sf__in(g, n, 1))
    return sf__op_err(k, SF_EFORMAT, "needs inputs A and B");
  for (int i = 0; i < 3; i++)
    if ((rc = check_f32(k, i))) return rc;
  const sf_tensor *a = &sf__in(g, n, 0)->t, *b = &sf__in(g, n, 1)->t;
  sf_gtensor *c = sf__in(g, n, 2);
  if (a->rank != 2 || b->rank != 2)
    return sf__op_err(k, SF_ESHAPE, "A and B must be 2-D (got rank %d and %d)", a->rank, b->rank);
  int ta = sf__attr_int(n, "transA", 0) != 0, tb = sf__attr_int(n, "transB", 0) != 0;
  int64_t M = ta ? a->dims[1] : a->dims[0], K = ta ? a->dims[0] : a->dims[1];
  int64_t K2 = tb ? b->dims[1] : b->dims[0], N = tb ? b->dims[0] : b->dims[1];
  if (K != K2)
    return sf__op_err(k, SF_ESHAPE, "inner dimensions differ (%lld vs %lld)", (long long)K,
                      (long long)K2);
  if (c) {
    const sf_tensor *ct = &c->t;
    if (ct->rank > 2) return sf__op_err(k, SF_ESHAPE, "C has rank %d (at most 2)", ct->rank);
    int64_t cm = ct->rank == 2 ? ct->dims[0] : 1, cn = ct->rank >= 1 ? ct->dims[ct->rank - 1] : 1;
    if ((cm != 1 && cm != M) || (cn != 1 && cn != N))
      return sf__op_err(k, SF_ESHAPE, "C cannot be broadcast to %lldx%lld", (long long)M,
                        (long long)N);
  }
  if (n->n_out < 1 || !sf__out(g, n, 0)) return sf__op_err(k, SF_EFORMAT, "needs an output");
  int64_t od[2] = {M, N};
  sf__tensor_set_shape(sf__out(g, n, 0), SF_F32, 2, od);
  return 0;
}

/* beta*C(i,j) with C unidirectionally broadcast to [M,N]. */
static float gemm_c_at(const sf_tensor *c, int64_t i, int64_t j) {
  int64_t cm = c->rank == 2 ? c->dims[0] : 1, cn = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
  return ((const float *)c->data)[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)];
}

static int gemm_prepare(sf_kctx *k) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  fc_state *s = sf__calloc(1, sizeof *s);
  if (!s) return sf__op_err(k, SF_ENOMEM, "out of memory");
  n->state = s;
  sf_gtensor *a = sf__in(g, n, 0), *b = sf__in(g, n, 1), *c = sf__in(g, n, 2);
  int ta = sf__attr_int(n, "transA", 0) != 0, tb = sf__attr_int(n, "transB", 0) != 0;
  float alpha = sf__attr_float(n, "alpha", 1.0f), beta = sf__attr_float(n, "beta", 1.0f);
  if (b->kind != SF_TK_CONST || ta || !isfinite(alpha)) return 0;
  int64_t M = a->t.dims[0], K = a->t.dims[1], N = tb ? b->t.dims[0] : b->t.dims[1];
  if (M == 0 || N == 0 || K == 0) return 0;
  float lo = act_lo(n), hi = act_hi(n);
  float *bias = NULL;
  int as_bias = c && beta != 0.0f && c->kind == SF_TK_CONST &&
                (c->t.rank < 2 || c->t.dims[0] == 1);
  if (as_bias) {
    if (!(bias = sf__malloc(sizeof(float) * (size_t)N))) return sf__op_err(k, SF_ENOMEM, "out of memory");
    for (int64_t j = 0; j < N; j++) bias[j] = beta * gemm_c_at(&c->t, 0, j);
  }
  s->post = c && beta != 0.0f && !as_bias;
  s->op = fc_create(K, N, b->t.data, !tb, alpha, bias, s->post ? -INFINITY : lo,
                    s->post ? INFINITY : hi);
  free(bias);
  if (s->op &&
      xnn_setup_fully_connected_nc_f32(s->op, (size_t)M, a->t.data, sf__out(g, n, 0)->t.data,
                                       k->pool) != xnn_status_success) {
    xnn_delete_operator(s->op);
    s->op = NULL;
  }
  if (s->op) n->packed_inputs |= (1u << 1) | (as_bias && !s->post ? 1u << 2 : 0); /* B (and C) */
  return 0;
}

static int gemm_run(sf_kctx *k) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  fc_state *s = n->state;
  const sf_tensor *a = &sf__in(g, n, 0)->t, *b = &sf__in(g, n, 1)->t;
  sf_gtensor *cg = sf__in(g, n, 2);
  sf_tensor *y = &sf__out(g, n, 0)->t;
  int ta = sf__attr_int(n, "transA", 0) != 0, tb = sf__attr_int(n, "transB", 0) != 0;
  float alpha = sf__attr_float(n, "alpha", 1.0f), beta = sf__attr_float(n, "beta", 1.0f);
  int64_t M = y->dims[0], N = y->dims[1], K = ta ? a->dims[0] : a->dims[1];
  float lo = act_lo(n), hi = act_hi(n);
  float *Y = y->data;
  if (s && s->op) {
    if (xnn_run_operator(s->op, k->pool) != xnn_status_success)
      return sf__op_err(k, SF_EINTERNAL, "XNNPACK fully-connected failed");
    if (s->post)
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
          float v = Y[i * N + j] + beta * gemm_c_at(&cg->t, i, j);
          Y[i * N + j] = v < lo ? lo : (v > hi ? hi : v);
        }
    return 0;
  }
  float bet = 0.0f;
  if (cg && beta != 0.0f) {
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) Y[i * N + j] = gemm_c_at(&cg->t, i, j);
    bet = beta;
  }
  sf__sgemm(M, N, K, alpha, a->data, ta ? 1 : K, ta ? M : 1, b->data, tb ? 1 : N, tb ? K : 1,
            NULL, NULL, bet, Y, N, 1, NULL, lo, hi, k->pool);
  return 0;
}

static int64_t gemm_flops(sf_kctx *k) {
  const sf_tensor *a = &sf__in(k->g, k->node, 0)->t, *y = &sf__out(k->g, k->node, 0)->t;
  int64_t K = sf__attr_int(k->node, "transA", 0) ? a->dims[0] : a->dims[1];
  return 2 * y->dims[0] * y->dims[1] * K;
}

const sf_op_def sf__op_Gemm = {
    .op_type = "Gemm",
    .infer = gemm_infer,
    .prepare = gemm_prepare,
    .run = gemm_run,
    .release = fc_release,
    .flops = gemm_flops,
};

/* ---- MatMul ------------------------------------------------------------------------------ */

/* Numpy matmul shapes: A [..., M, K] (1-D: [K] -> [1,K]), B [..., K, N] (1-D: [K] -> [K,1]). */
typedef struct mm_shape {
  int64_t M, N, K;
  int rb;                   /* batch rank of the output */
  int64_t bd[SF_MAX_RANK];  /* output batch dims */
  int64_t as[SF_MAX_RANK];  /* A batch strides (0 where broadcast), per output batch dim */
  int64_t bs[SF_MAX_RANK];
  int64_t nbatch;
} mm_shape;

static int mm_shape_of(const sf_tensor *a, const sf_tensor *b, mm_shape *s, int *orank,
                       int64_t *odims) {
  if (a->rank < 1 || b->rank < 1) return -1;
  int64_t M = a->rank == 1 ? 1 : a->dims[a->rank - 2], K = a->dims[a->rank - 1];
  int64_t K2 = b->rank == 1 ? b->dims[0] : b->dims[b->rank - 2];
  int64_t N = b->rank == 1 ? 1 : b->dims[b->rank - 1];
  if (K != K2) return -1;
  int ra = a->rank > 2 ? a->rank - 2 : 0, rb = b->rank > 2 ? b->rank - 2 : 0;
  int r = ra > rb ? ra : rb;
  int64_t sa = M * K, sb = K * N;
  s->nbatch = 1;
  for (int i = r - 1; i >= 0; i--) {
    int ia = i - (r - ra), ib = i - (r - rb);
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    if (da != db && da != 1 && db != 1) return -1;
    s->bd[i] = da == 1 ? db : da;
    s->as[i] = da == 1 ? 0 : sa;
    s->bs[i] = db == 1 ? 0 : sb;
    sa *= da;
    sb *= db;
    s->nbatch *= s->bd[i];
  }
  s->M = M;
  s->N = N;
  s->K = K;
  s->rb = r;
  int o = 0;
  for (int i = 0; i < r; i++) odims[o++] = s->bd[i];
  if (a->rank > 1) odims[o++] = M;
  if (b->rank > 1) odims[o++] = N;
  *orank = o;
  return 0;
}

static int matmul_infer(sf_kctx *k) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  int rc;
  if (n->n_in < 2 || !sf__in(g, n, 0) || !sf__in(g, n, 1))
    return sf__op_err(k, SF_EFORMAT, "needs inputs A and B");
  for (int i = 0; i < 2; i++)
    if ((rc = check_f32(k, i))) return rc;
  if (n->n_out < 1 || !sf__out(g, n, 0)) return sf__op_err(k, SF_EFORMAT, "needs an output");
  const sf_tensor *a = &sf__in(g, n, 0)->t, *b = &sf__in(g, n, 1)->t;
  mm_shape s;
  int orank;
  int64_t od[SF_MAX_RANK + 2];
  if (mm_shape_of(a, b, &s, &orank, od) < 0 || orank > SF_MAX_RANK) {
    char sa[128], sb[128];
    return sf__op_err(k, SF_ESHAPE, "cannot multiply %s by %s", sf__shape_str(a, sa, sizeof sa),
                      sf__shape_str(b, sb, sizeof sb));
  }
  sf__tensor_set_shape(sf__out(g, n, 0), SF_F32, orank, od);
  return 0;
}

static int matmul_prepare(sf_kctx *k) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  fc_state *s = sf__calloc(1, sizeof *s);
  if (!s) return sf__op_err(k, SF_ENOMEM, "out of memory");
  n->state = s;
  sf_gtensor *a = sf__in(g, n, 0), *b = sf__in(g, n, 1);
  if (b->kind != SF_TK_CONST || b->t.rank > 2) return 0;
  int64_t K = a->t.dims[a->t.rank - 1], N = b->t.rank == 1 ? 1 : b->t.dims[1];
  int64_t batch = K ? numel(&a->t) / K : 0;
  if (batch == 0 || N == 0 || K == 0) return 0;
  s->op = fc_create(K, N, b->t.data, 1, 1.0f, NULL, act_lo(n), act_hi(n));
  if (s->op && xnn_setup_fully_connected_nc_f32(s->op, (size_t)batch, a->t.data,
                                                sf__out(g, n, 0)->t.data,
                                                k->pool) != xnn_status_success) {
    xnn_delete_operator(s->op);
    s->op = NULL;
  }
  if (s->op) n->packed_inputs |= 1u << 1; /* B lives in the XNNPACK operator */
  return 0;
}

typedef struct mm_job {
  const mm_shape *s;
  const float *A, *B;
  float *Y;
  float lo, hi;
} mm_job;

/* One matrix product of the batch (pool: parallelise inside it, or NULL). */
static void mm_one(const mm_job *j, int64_t bi, pthreadpool_t pool) {
  const mm_shape *s = j->s;
  int64_t ao = 0, bo = 0, rem = bi;
  for (int i = s->rb - 1; i >= 0; i--) {
    int64_t c = rem % s->bd[i];
    rem /= s->bd[i];
    ao += c * s->as[i];
    bo += c * s->bs[i];
  }
  sf__sgemm(s->M, s->N, s->K, 1.0f, j->A + ao, s->K, 1, j->B + bo, s->N, 1, NULL, NULL, 0.0f,
            j->Y + bi * s->M * s->N, s->N, 1, NULL, j->lo, j->hi, pool);
}

static void mm_batch(void *ctx, size_t bi) { mm_one(ctx, (int64_t)bi, NULL); }

static int matmul_run(sf_kctx *k) {
  sf_graph *g = k->g;
  sf_node *n = k->node;
  fc_state *st = n->state;
  if (st && st->op) {
    if (xnn_run_operator(st->op, k->pool) != xnn_status_success)
      return sf__op_err(k, SF_EINTERNAL, "XNNPACK fully-connected failed");
    return 0;
  }
  const sf_tensor *a = &sf__in(g, n, 0)->t, *b = &sf__in(g, n, 1)->t;
  mm_shape s;
  int orank;
  int64_t od[SF_MAX_RANK + 2];
  if (mm_shape_of(a, b, &s, &orank, od) < 0) return sf__op_err(k, SF_EINTERNAL, "shape changed");
  mm_job j = {.s = &s, .A = a->data, .B = b->data, .Y = sf__out(g, n, 0)->t.data,
              .lo = act_lo(n), .hi = act_hi(n)};
  double per = (double)s.M * (double)s.N * (double)s.K;
  if (s.nbatch > 1 && per < 4e6) {
    sf__parallel_for(k->pool, (size_t)s.nbatch, mm_batch, &j);
  } else {
    for (int64_t bi = 0; bi < s.nbatch; bi++) mm_one(&j, bi, k->pool);
  }
  return 0;
}

static int64_t matmul_flops(sf_kctx *k) {
  const sf_tensor *a = &sf__in(k->g, k->node, 0)->t, *b = &sf__in(k->g, k->node, 1)->t;
  mm_shape s;
  int orank;
  int64_t od[SF_MAX_RANK + 2];
  if (mm_shape_of(a, b, &s, &orank, od) < 0) return 0;
  return 2 * s.nbatch * s.M * s.N * s.K;
}

const sf_op_def sf__op_MatMul = {
    .op_type = "MatMul",
    .infer = matmul_infer,
    .prepare = matmul_prepare,
    .run = matmul_run,
    .release = fc_release,
    .flops = matmul_flops,
};
