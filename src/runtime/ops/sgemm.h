/* The plain-C single-precision GEMM engine of ops/gemm.c, shared with ops/conv.c.
 *
 *   C = alpha * A(MxK) * B(KxN) + beta * C (+ bias_row), clamped to [lo, hi]
 *
 * A(i,k) = A[i*rsa + k*csa]; rsa == csa == 0 means A was pre-packed by sf__sgemm_pack_a (weights
 * packed once in prepare). B(k,j) = B[k*rsb + j*csb], or gathered by pack_b when it is not NULL
 * (implicit im2col). Cache-blocked, parallel over row/column blocks with pool; no heap use. */
#ifndef SF_SGEMM_H
#define SF_SGEMM_H

#include <pthreadpool.h>
#include <stdint.h>

/* Packs B(k, j) for k in [k0, k0+kc), j in [j0, j0+nc) into dst[(k-k0)*ldd + (j-j0)]. */
typedef void (*sf_packb_fn)(const void *ctx, int64_t k0, int kc, int64_t j0, int nc, float *dst,
                            int ldd);

void sf__sgemm(int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t rsa,
               int64_t csa, const float *B, int64_t rsb, int64_t csb, sf_packb_fn pack_b,
               const void *pack_ctx, float beta, float *C, int64_t rsc, int64_t csc,
               const float *bias_row, float lo, float hi, pthreadpool_t pool);
/* Floats of a packed M x K matrix, and the packing itself. */
int64_t sf__sgemm_packed_floats(int64_t M, int64_t K);
void sf__sgemm_pack_a(int64_t M, int64_t K, const float *A, int64_t rsa, int64_t csa, float *dst);

#endif
