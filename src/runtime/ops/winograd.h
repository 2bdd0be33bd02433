/* Winograd convolution F(m x m, 3 x 3) for channels-last float32 (private to ops/conv.c).
 *
 * Applies to group 1, kernel 3x3, stride 1, dilation 1, any padding. m is 2, 4 or 6 (tile of
 * m x m outputs from an alpha x alpha input tile, alpha = m + 2). Per run, in blocks of tiles:
 *   V[tiles][alpha^2][C] = B^T d B   (input transform, parallel over tiles)
 *   Mb[.][e][.] = V[.][e][.] x U[e]  (alpha^2 GEMMs [tiles x C] x [C x M], XNNPACK FC operators
 *                                     holding U = G g G^T, transformed once at creation)
 *   Y = clamp(A^T Mb A + bias)       (output transform straight into NHWC Y)
 * Memory: U takes alpha^2/9 times the size of W (F(2): 1.8x, F(4): 4x, F(6): 7.1x); the
 * scratch (V and Mb of one block of tiles) is about 1 MiB, more for wide layers (at least 56
 * tiles per block, see winograd.c), never above 16 MiB unless a single tile needs more.
 * Accuracy (float32, error relative to the sum of |terms| of an output): F(2) ~1e-7 like
 * direct convolution, F(4) ~2e-6, F(6) ~6e-6 (tests/unit_winograd.c). */
#ifndef SF_WINOGRAD_H
#define SF_WINOGRAD_H

#include <stdint.h>

#include <pthreadpool.h>

#include "seifer/seifer.h"

typedef struct sf_wino sf_wino;

typedef struct sf_wino_shape {
  int64_t N, H, W, C; /* input, physical N,H,W,C */
  int64_t M, OH, OW;  /* output channels and spatial size (output is N,OH,OW,M) */
  int64_t pt, pl;     /* top and left padding; bottom/right follow from OH, OW */
} sf_wino_shape;

/* Tile size (2, 4 or 6) expected to beat XNNPACK's convolution for this shape with `threads`
 * threads, or 0 when the direct convolution should be kept. Pure function of its arguments. */
int sf__wino_choose(const sf_wino_shape *s, int threads);

/* Creates the operator for fixed buffers x (N,H,W,C) and y (N,OH,OW,M); w is ONNX OIHW
 * [M][C][3][3], b is [M] or NULL; the output is clamped to [lo, hi]. w and b are not referenced
 * afterwards. Returns 0, SF_ENOMEM, SF_EINVAL (bad m or shape) or SF_EUNSUPPORTED (XNNPACK
 * refused a GEMM operator: the caller should use another path). pool only sizes the work split. */
int sf__wino_create(const sf_wino_shape *s, int m, const float *w, const float *b, float lo,
                    float hi, const float *x, float *y, pthreadpool_t pool, sf_wino **out);
/* One convolution; no allocation. 0 or SF_EINTERNAL (XNNPACK failure). */
int sf__wino_run(sf_wino *op, pthreadpool_t pool);
void sf__wino_free(sf_wino *op); /* NULL ok */

/* Floats of scratch one operator allocates (for tests and accounting). */
int64_t sf__wino_scratch_floats(const sf_wino *op);

#endif
