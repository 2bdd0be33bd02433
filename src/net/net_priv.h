/* Internals shared by the files of src/net (not part of the net.h contract): little-endian
 * byte access, vectored writes and deadline-bounded reads, and the per-codec array coders. */
#ifndef SF_NET_PRIV_H
#define SF_NET_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "net/net.h"

/* ---- little-endian load/store at any alignment --------------------------------------------- */
static inline void sf__st16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static inline void sf__st32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void sf__st64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t sf__ld16(const uint8_t *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t sf__ld32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t sf__ld64(const uint8_t *p) {
  return (uint64_t)sf__ld32(p) | ((uint64_t)sf__ld32(p + 4) << 32);
}

/* ---- connections ---------------------------------------------------------------------------- */
/* One piece of a vectored write. */
typedef struct sf_iov {
  const void *p;
  size_t n;
} sf_iov;
#define SF_IOV_MAX 8
/* Write all n (<= SF_IOV_MAX) pieces in order, paced like sf__conn_write; all or error. */
int sf__conn_writev(sf_conn *c, const sf_iov *v, int n, sf_err *err);
/* Read exactly n bytes. Waits at most idle_ms (-1 = forever) for each piece of data and never past
 * deadline (sf__now() seconds; <= 0 = none). Timeouts give SF_EIO "... timed out". */
int sf__conn_read_until(sf_conn *c, void *p, size_t n, int idle_ms, double deadline, sf_err *err);

/* ---- frames --------------------------------------------------------------------------------- */
/* sf__frame_recv with an absolute deadline (sf__now() seconds) for the whole frame. */
int sf__frame_recv_until(sf_conn *c, sf_frame *f, uint64_t max_payload, double deadline,
                         sf_err *err);

/* ---- array coders (codec.c) ------------------------------------------------------------------ */
/* Each encoder appends its encoding of the n bytes / floats at src to out and returns 0, or
 * a negative code (out->len is then unspecified: the caller rolls back). Each decoder checks the
 * encoding against the exact output size (raw bytes) and writes exactly that many bytes. */
int sf__fp16_encode(sf_buf *out, const float *src, size_t n, sf_err *err);
int sf__fp16_decode(const uint8_t *enc, size_t enc_bytes, float *dst, size_t n, sf_err *err);
int sf__lz4_encode(sf_buf *out, const void *src, size_t n, sf_err *err);
int sf__lz4_decode(const uint8_t *enc, size_t enc_bytes, void *dst, size_t n, sf_err *err);
int sf__zfp_encode(sf_buf *out, const float *src, size_t n, double tol, sf_err *err);
int sf__zfp_decode(const uint8_t *enc, size_t enc_bytes, float *dst, size_t n, sf_err *err);
/* IEEE binary16 <-> binary32, round to nearest even; inf, nan and subnormals preserved. */
uint16_t sf__f32_to_f16(float f);
float sf__f16_to_f32(uint16_t h);

#endif
