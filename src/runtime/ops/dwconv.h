/* Depthwise 2-D convolution for channels-last float32 with AVX-512 (private to ops/conv.c).
 *
 * Applies to group == C == M (one input channel per output channel), kernels 3x3 and 5x5 with
 * stride 1 or 2 along each axis (and 1x3, 1x5 with stride 1: 1-D), dilation 1, padding below
 * the kernel size, at least 16 channels, rows of up to ~200 columns (the staged input rows
 * must fit 64 KiB of stack), on CPUs with AVX-512F. Outputs are computed 16 channels x 8
 * pixels at a time in registers, bias first, and the fused activation (clamp or Swish) is
 * applied to the registers before the single store, so a following activation costs no extra
 * pass over memory. Work split: one task per (image, block of 16 channels, range of output
 * rows); rows are split only when there are fewer such tasks than 4 per thread.
 *
 *   sf_dw_shape s = {...};
 *   if (sf__dw_supported(&s)) { sf__dw_create(&s, w, b, pool, &op); ... sf__dw_run(op, x, y, pool); }
 *
 * Accuracy: each output is the plain sum of its taps (FMAs, kernel row by row) plus the bias,
 * then Swish as ops/vmath_avx512.h; tests/unit_dwconv.c bounds the error by 1e-6 of the sum of
 * the terms' magnitudes. */
#ifndef SF_DWCONV_H
#define SF_DWCONV_H

#include <stdint.h>

#include <pthreadpool.h>

typedef struct sf_dw sf_dw;

enum { SF_DW_ACT_NONE = 0, SF_DW_ACT_CLAMP = 1, SF_DW_ACT_SWISH = 2 };

typedef struct sf_dw_shape {
  int64_t N, H, W, C; /* input N,H,W,C (physical); the output is N,OH,OW,C */
  int64_t OH, OW;
  int64_t kh, kw, sh, sw; /* kernel and strides */
  int64_t pt, pl;         /* top and left padding; bottom/right follow from OH, OW */
  int act;                /* SF_DW_ACT_*: applied to the output */
  float lo, hi;           /* clamp bounds (SF_DW_ACT_CLAMP) */
} sf_dw_shape;

/* 1 when this kernel handles the shape on this CPU (see above). Pure apart from the CPU check. */
int sf__dw_supported(const sf_dw_shape *s);

/* Packs the weights: w is ONNX [C][1][kh][kw], b is [C] or NULL; neither is referenced
 * afterwards. pool only sizes the work split. 0, SF_EINVAL (unsupported shape) or SF_ENOMEM. */
int sf__dw_create(const sf_dw_shape *s, const float *w, const float *b, pthreadpool_t pool,
                  sf_dw **out);
/* One convolution x (N,H,W,C) -> y (N,OH,OW,C); y must not overlap x. No allocation. */
void sf__dw_run(const sf_dw *op, const float *x, float *y, pthreadpool_t pool);
void sf__dw_free(sf_dw *op); /* NULL ok */

#endif
