/* Tensor payloads (format in net.h): descriptors plus per-tensor encoded data. The encoder records
 * the codec it actually used for each tensor: fp16 and zfp apply to float32 only (zfp also needs
 * finite values), and an lz4 or zfp encoding that would not be smaller than the raw bytes is
 * replaced by raw. The parser validates every field before anything is trusted. */
#include <math.h>
#include <string.h>

#include "net/net.h"
#include "net/net_priv.h"
#include "util/util.h"

#define NAME_MAX_WIRE 255 /* sf_wire_tensor.name holds 255 bytes + terminator */

/* ---- encoding ------------------------------------------------------------------------------- */

/* Validate a tensor to be sent; its data size in *bytes. */
static int check_tensor(const sf_tensor *t, int i, size_t *bytes, sf_err *err) {
  const char *name = t->name ? t->name : "";
  if (strlen(name) > NAME_MAX_WIRE)
    return sf__errf(err, SF_ELIMIT, "tensor %d: name longer than %d bytes", i, NAME_MAX_WIRE);
  if (sf_dtype_size(t->dtype) == 0)
    return sf__errf(err, SF_EUNSUPPORTED, "tensor '%s': dtype %d cannot be sent", name, t->dtype);
  if (t->rank < 0 || t->rank > SF_MAX_RANK)
    return sf__errf(err, SF_EINVAL, "tensor '%s': rank %d", name, t->rank);
  if (t->layout != SF_LAYOUT_PLAIN && t->layout != SF_LAYOUT_NHWC)
    return sf__errf(err, SF_EINVAL, "tensor '%s': layout %d", name, t->layout);
  int64_t nb = (int64_t)sf_dtype_size(t->dtype);
  for (int d = 0; d < t->rank; d++)
    if (t->dims[d] < 0 || t->dims[d] > SF_MAX_DIM ||
        sf__mul_ok(nb, t->dims[d], SF_MAX_TENSOR_BYTES, &nb) < 0)
      return sf__errf(err, SF_ELIMIT, "tensor '%s': dim %d = %lld is negative or too large", name,
                      d, (long long)t->dims[d]);
  if (nb > 0 && !t->data) return sf__errf(err, SF_EINVAL, "tensor '%s': no data", name);
  if ((uint64_t)nb > SIZE_MAX) return sf__errf(err, SF_ELIMIT, "tensor '%s': too large", name);
  *bytes = (size_t)nb;
  return 0;
}

/* The codec used for t when `codec` is asked. */
static int effective_codec(const sf_tensor *t, size_t bytes, int codec) {
  if (bytes == 0) return SF_CODEC_RAW;
  if (codec == SF_CODEC_LZ4) return SF_CODEC_LZ4;
  if (t->dtype != SF_F32) return SF_CODEC_RAW;
  if (codec == SF_CODEC_ZFP) {
    const float *f = t->data;
    for (size_t i = 0; i < bytes / 4; i++)
      if (!isfinite(f[i])) return SF_CODEC_RAW;
  }
  return codec;
}

/* Append the data of t encoded with codec; *used is the codec actually used (raw when an lz4 or
 * zfp encoding would not be smaller). */
static int put_data(sf_buf *out, const sf_tensor *t, size_t bytes, int codec, double tol, int *used,
                    sf_err *err) {
  size_t start = out->len;
  int rc = 0;
  if (codec == SF_CODEC_FP16)
    rc = sf__fp16_encode(out, t->data, bytes / 4, err);
  else if (codec == SF_CODEC_LZ4)
    rc = sf__lz4_encode(out, t->data, bytes, err);
  else if (codec == SF_CODEC_ZFP)
    rc = sf__zfp_encode(out, t->data, bytes / 4, tol, err);
  if (rc < 0) return rc;
  if (codec == SF_CODEC_FP16 || (codec != SF_CODEC_RAW && out->len - start < bytes)) {
    *used = codec;
    return 0;
  }
  out->len = start;
  *used = SF_CODEC_RAW;
  if (sf__buf_put(out, t->data, bytes) < 0)
    return sf__errf(err, SF_ENOMEM, "cannot allocate %zu bytes for tensor data", bytes);
  return 0;
}

/* Append one tensor: descriptor, then data; enc_bytes and codec are patched in afterwards. */
static int put_tensor(sf_buf *out, const sf_tensor *t, int i, int codec, double tol, sf_err *err) {
  size_t bytes = 0;
  int rc = check_tensor(t, i, &bytes, err);
  if (rc < 0) return rc;
  const char *name = t->name ? t->name : "";
  size_t nl = strlen(name), dl = 2 + nl + 4 + 8 * (size_t)t->rank + 16;
  if (sf__buf_reserve(out, dl) < 0) return sf__errf(err, SF_ENOMEM, "out of memory");
  uint8_t *d = out->data + out->len;
  sf__st16(d, (uint16_t)nl);
  memcpy(d + 2, name, nl);
  d += 2 + nl;
  d[0] = (uint8_t)t->dtype;
  d[2] = (uint8_t)t->rank;
  d[3] = (uint8_t)t->layout;
  for (int k = 0; k < t->rank; k++) sf__st64(d + 4 + 8 * k, (uint64_t)t->dims[k]);
  sf__st64(d + 4 + 8 * t->rank, bytes);
  size_t desc_off = (size_t)(d - out->data), enc_off = out->len + dl - 8;
  out->len += dl;
  int used;
  rc = put_data(out, t, bytes, effective_codec(t, bytes, codec), tol, &used, err);
  if (rc < 0) return sf__errctx(err, rc, "tensor '%s'", name);
  out->data[desc_off + 1] = (uint8_t)used; /* the buffer may have moved: use offsets */
  sf__st64(out->data + enc_off, out->len - enc_off - 8);
  return 0;
}

/* Append a payload with the n tensors to out (out->len is restored on failure). */
int sf__tensors_encode(sf_buf *out, const sf_tensor *ts, int n, int codec, double tol,
                       sf_err *err) {
  if (n < 0 || n > SF_WIRE_MAX_TENSORS)
    return sf__errf(err, SF_ELIMIT, "%d tensors in one payload (at most %d)", n,
                    SF_WIRE_MAX_TENSORS);
  if (codec < 0 || codec >= SF_CODEC_COUNT)
    return sf__errf(err, SF_EINVAL, "unknown codec %d", codec);
  if (tol < 0 || !isfinite(tol)) return sf__errf(err, SF_EINVAL, "zfp tolerance %g", tol);
  if (tol == 0) tol = SF_ZFP_DEFAULT_TOL;
  size_t start = out->len;
  uint8_t cnt[4];
  sf__st32(cnt, (uint32_t)n);
  int rc = sf__buf_put(out, cnt, 4) < 0 ? sf__errf(err, SF_ENOMEM, "out of memory") : 0;
  for (int i = 0; i < n && rc == 0; i++) rc = put_tensor(out, &ts[i], i, codec, tol, err);
  if (rc < 0) out->len = start;
  return rc;
}

/* ---- parsing -------------------------------------------------------------------------------- */

/* Bounds-checked reader over the payload. */
typedef struct rd {
  const uint8_t *p;
  size_t len, pos;
} rd;

static int rd_need(rd *r, size_t n) {
  return r->len - r->pos >= n;
}

/* Validate dtype, codec, rank, layout, dims and sizes of a parsed descriptor. */
static int check_wire(sf_wire_tensor *w, int i, sf_err *err) {
  if (w->rank < 0 || w->rank > SF_MAX_RANK)
    return sf__errf(err, SF_EFORMAT, "tensor %d '%s': rank %d (at most %d)", i, w->name, w->rank,
                    SF_MAX_RANK);
  if (sf_dtype_size(w->dtype) == 0)
    return sf__errf(err, SF_EFORMAT, "tensor %d '%s': unknown dtype %d", i, w->name, w->dtype);
  if (w->codec < 0 || w->codec >= SF_CODEC_COUNT)
    return sf__errf(err, SF_EFORMAT, "tensor %d '%s': unknown codec %d", i, w->name, w->codec);
  if ((w->codec == SF_CODEC_FP16 || w->codec == SF_CODEC_ZFP) && w->dtype != SF_F32)
    return sf__errf(err, SF_EFORMAT, "tensor %d '%s': codec %s on %s data", i, w->name,
                    sf__codec_name(w->codec), sf_dtype_name(w->dtype));
  if (w->layout != SF_LAYOUT_PLAIN && w->layout != SF_LAYOUT_NHWC)
    return sf__errf(err, SF_EFORMAT, "tensor %d '%s': unknown layout %d", i, w->name, w->layout);
  int64_t nb = (int64_t)sf_dtype_size(w->dtype);
  for (int d = 0; d < w->rank; d++)
    if (w->dims[d] < 0 || w->dims[d] > SF_MAX_DIM ||
        sf__mul_ok(nb, w->dims[d], SF_MAX_TENSOR_BYTES, &nb) < 0)
      return sf__errf(err, SF_EFORMAT, "tensor %d '%s': dim %d = %lld out of range", i, w->name, d,
                      (long long)w->dims[d]);
  if (w->raw_bytes != (uint64_t)nb)
    return sf__errf(err, SF_EFORMAT, "tensor %d '%s': raw_bytes %llu, shape gives %lld", i, w->name,
                    (unsigned long long)w->raw_bytes, (long long)nb);
  if ((w->codec == SF_CODEC_RAW && w->enc_bytes != w->raw_bytes) ||
      (w->codec == SF_CODEC_FP16 && w->enc_bytes != w->raw_bytes / 2))
    return sf__errf(err, SF_EFORMAT, "tensor %d '%s': %llu encoded bytes for %s of %llu bytes", i,
                    w->name, (unsigned long long)w->enc_bytes, sf__codec_name(w->codec),
                    (unsigned long long)w->raw_bytes);
  return 0;
}

/* Parse one descriptor and locate its data. */
static int parse_one(rd *r, sf_wire_tensor *w, int i, sf_err *err) {
  memset(w, 0, sizeof *w);
  if (!rd_need(r, 2)) goto trunc;
  size_t nl = sf__ld16(r->p + r->pos);
  r->pos += 2;
  if (nl > NAME_MAX_WIRE)
    return sf__errf(err, SF_EFORMAT, "tensor %d: name of %zu bytes (at most %d)", i, nl,
                    NAME_MAX_WIRE);
  if (!rd_need(r, nl + 4)) goto trunc;
  memcpy(w->name, r->p + r->pos, nl);
  w->name[nl] = 0;
  if (strlen(w->name) != nl) return sf__errf(err, SF_EFORMAT, "tensor %d: NUL in its name", i);
  const uint8_t *d = r->p + r->pos + nl;
  w->dtype = d[0], w->codec = d[1], w->rank = d[2], w->layout = d[3];
  r->pos += nl + 4;
  if (w->rank > SF_MAX_RANK)
    return sf__errf(err, SF_EFORMAT, "tensor %d '%s': rank %d (at most %d)", i, w->name, w->rank,
                    SF_MAX_RANK);
  if (!rd_need(r, 8 * (size_t)w->rank + 16)) goto trunc;
  for (int k = 0; k < w->rank; k++) w->dims[k] = (int64_t)sf__ld64(r->p + r->pos + 8 * k);
  r->pos += 8 * (size_t)w->rank;
  w->raw_bytes = sf__ld64(r->p + r->pos);
  w->enc_bytes = sf__ld64(r->p + r->pos + 8);
  r->pos += 16;
  int rc = check_wire(w, i, err);
  if (rc < 0) return rc;
  if (w->enc_bytes > r->len - r->pos)
    return sf__errf(err, SF_EFORMAT, "tensor %d '%s': %llu encoded bytes, only %zu left", i,
                    w->name, (unsigned long long)w->enc_bytes, r->len - r->pos);
  w->enc = r->p + r->pos;
  r->pos += (size_t)w->enc_bytes;
  return 0;
trunc:
  return sf__errf(err, SF_EFORMAT, "tensor %d: descriptor truncated at payload offset %zu", i,
                  r->pos);
}

int sf__tensors_parse(const uint8_t *p, size_t len, sf_wire_tensor *out, int max, sf_err *err) {
  rd r = {p, len, 0};
  if (len < 4) return sf__errf(err, SF_EFORMAT, "tensor payload of %zu bytes has no count", len);
  uint32_t n = sf__ld32(p);
  r.pos = 4;
  if (n > SF_WIRE_MAX_TENSORS || (int64_t)n > (int64_t)max)
    return sf__errf(err, SF_ELIMIT, "tensor payload holds %u tensors (at most %d accepted)", n,
                    max < SF_WIRE_MAX_TENSORS ? max : SF_WIRE_MAX_TENSORS);
  for (uint32_t i = 0; i < n; i++) {
    int rc = parse_one(&r, &out[i], (int)i, err);
    if (rc < 0) return rc;
  }
  if (r.pos != len)
    return sf__errf(err, SF_EFORMAT, "tensor payload has %zu trailing bytes", len - r.pos);
  return (int)n;
}

/* ---- decoding ------------------------------------------------------------------------------- */

int sf__tensor_decode(const sf_wire_tensor *w, void *dst, size_t dst_bytes, sf_err *err) {
  sf_wire_tensor c = *w;
  c.name[sizeof c.name - 1] = 0;
  int rc = check_wire(&c, 0, err);
  if (rc < 0) return rc;
  if (c.raw_bytes > dst_bytes)
    return sf__errf(err, SF_ESHAPE, "tensor '%s': %llu bytes do not fit in %zu", c.name,
                    (unsigned long long)c.raw_bytes, dst_bytes);
  if (c.enc_bytes && !c.enc) return sf__errf(err, SF_EINVAL, "tensor '%s': no data", c.name);
  size_t raw = (size_t)c.raw_bytes, enc = (size_t)c.enc_bytes;
  switch (c.codec) {
    case SF_CODEC_RAW:
      if (raw) memcpy(dst, c.enc, raw);
      break;
    case SF_CODEC_FP16:
      rc = sf__fp16_decode(c.enc, enc, dst, raw / 4, err);
      break;
    case SF_CODEC_LZ4:
      rc = sf__lz4_decode(c.enc, enc, dst, raw, err);
      break;
    default:
      rc = sf__zfp_decode(c.enc, enc, dst, raw / 4, err);
      break;
  }
  if (rc < 0) return sf__errctx(err, rc, "tensor '%s'", c.name);
  return 0;
}
