/* Array coders behind the tensor codecs: fp16 (IEEE half, round to nearest even), lz4 and zfp
 * (fixed accuracy), plus the codec names and a ratio estimate for the planner.
 *
 * Encodings (all integers little-endian):
 *   fp16: n u16 halves.
 *   lz4:  u32 chunk_bytes, then per chunk of chunk_bytes raw bytes (the last may be shorter):
 *         u32 clen, clen bytes of an LZ4 block.
 *   zfp:  u32 chunk_elems, i32 minexp, then per chunk of chunk_elems floats (the last may be
 *         shorter): u32 clen, clen bytes of a 1-D zfp stream (no zfp header).
 *         Streams are coded with maxbits = ZFP_BLOCK_BITS, above the most a 4-float block can
 *         use at full precision, so the accuracy is untouched while the decoder provably reads at
 *         most ZFP_BLOCK_BITS per block: each chunk is decoded from a zero-padded copy of that
 *         size, so a hostile stream can never make zfp read outside our buffer.
 * Chunking keeps every LZ4 call far below LZ4_MAX_INPUT_SIZE and the zfp scratch small. */
#include <lz4.h>
#include <math.h>
#include <string.h>
#include <zfp.h>

#include "net/net.h"
#include "net/net_priv.h"
#include "util/util.h"

#define LZ4_CHUNK ((size_t)1 << 20)       /* raw bytes per LZ4 block */
#define LZ4_CHUNK_MAX ((uint32_t)1 << 26) /* largest chunk a decoder accepts */
#define ZFP_CHUNK ((size_t)1 << 14)       /* floats per zfp stream */
#define ZFP_CHUNK_MAX ((uint32_t)1 << 18) /* largest chunk a decoder accepts */
#define ZFP_BLOCK_BITS 256u               /* maxbits per 4-float block (full precision < 180) */

/* ---- names ---------------------------------------------------------------------------------- */

static const char *const codec_names[SF_CODEC_COUNT] = {"raw", "fp16", "lz4", "zfp"};

int sf__codec_parse(const char *name) {
  for (int i = 0; name && i < SF_CODEC_COUNT; i++)
    if (!strcmp(name, codec_names[i])) return i;
  return -1;
}

const char *sf__codec_name(int id) {
  return id >= 0 && id < SF_CODEC_COUNT ? codec_names[id] : "unknown";
}

int sf__codec_lossless(int id) {
  return id == SF_CODEC_RAW || id == SF_CODEC_LZ4;
}

/* ---- fp16 ----------------------------------------------------------------------------------- */

uint16_t sf__f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) /* inf stays inf; nan stays a (quiet) nan with the top payload bits */
    return (uint16_t)(sign | 0x7c00 | (x > 0x7f800000u ? 0x200 | ((x >> 13) & 0x3ff) : 0));
  if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* >= 65520 rounds to inf */
  if (x < 0x38800000u) {                                  /* below 2^-14: subnormal or zero */
    unsigned s = 126u - (x >> 23);                        /* value = m >> s units of 2^-24 */
    if (s > 24) return sign;
    uint32_t m = (x & 0x7fffffu) | 0x800000u, k = m >> s, rem = m & ((1u << s) - 1),
             half = 1u << (s - 1);
    if (rem > half || (rem == half && (k & 1))) k++;
    return (uint16_t)(sign | k);
  }
  uint32_t h = (x >> 13) - (112u << 10), rem = x & 0x1fff; /* rebias exponent 127 -> 15 */
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return (uint16_t)(sign | h);
}

float sf__f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, x;
  if (e == 0) {
    float v = (float)m * 0x1p-24f; /* zero or subnormal, exact */
    return sign ? -v : v;
  }
  if (e == 31)
    x = sign | 0x7f800000u | (m << 13);
  else
    x = sign | ((e + 112) << 23) | (m << 13);
  float f;
  memcpy(&f, &x, 4);
  return f;
}

int sf__fp16_encode(sf_buf *out, const float *src, size_t n, sf_err *err) {
  if (n > SIZE_MAX / 2 || sf__buf_reserve(out, n * 2) < 0)
    return sf__errf(err, SF_ENOMEM, "fp16: cannot allocate %zu bytes", n * 2);
  uint8_t *d = out->data + out->len;
  for (size_t i = 0; i < n; i++) sf__st16(d + 2 * i, sf__f32_to_f16(src[i]));
  out->len += n * 2;
  return 0;
}

int sf__fp16_decode(const uint8_t *enc, size_t enc_bytes, float *dst, size_t n, sf_err *err) {
  if (n > SIZE_MAX / 2 || enc_bytes != n * 2)
    return sf__errf(err, SF_EFORMAT, "fp16: %zu encoded bytes for %zu values", enc_bytes, n);
  for (size_t i = 0; i < n; i++) {
    float f = sf__f16_to_f32(sf__ld16(enc + 2 * i));
    memcpy(dst + i, &f, 4); /* dst may be any caller buffer */
  }
  return 0;
}

/* ---- lz4 ------------------------------------------------------------------------------------ */

int sf__lz4_encode(sf_buf *out, const void *src, size_t n, sf_err *err) {
  size_t chunks = (n + LZ4_CHUNK - 1) / LZ4_CHUNK;
  size_t bound = 4 + chunks * (4 + (size_t)LZ4_COMPRESSBOUND((int)LZ4_CHUNK));
  if (sf__buf_reserve(out, bound) < 0)
    return sf__errf(err, SF_ENOMEM, "lz4: cannot allocate %zu bytes", bound);
  sf__st32(out->data + out->len, (uint32_t)LZ4_CHUNK);
  out->len += 4;
  for (size_t off = 0; off < n; off += LZ4_CHUNK) {
    int m = (int)(n - off < LZ4_CHUNK ? n - off : LZ4_CHUNK);
    char *d = (char *)out->data + out->len + 4;
    int c = LZ4_compress_default((const char *)src + off, d, m, LZ4_compressBound(m));
    if (c <= 0) return sf__errf(err, SF_EINTERNAL, "lz4: compression failed");
    sf__st32(out->data + out->len, (uint32_t)c);
    out->len += 4 + (size_t)c;
  }
  return 0;
}

int sf__lz4_decode(const uint8_t *enc, size_t enc_bytes, void *dst, size_t n, sf_err *err) {
  if (enc_bytes < 4) return sf__errf(err, SF_EFORMAT, "lz4: encoding shorter than its header");
  uint32_t chunk = sf__ld32(enc);
  if (chunk == 0 || chunk > LZ4_CHUNK_MAX)
    return sf__errf(err, SF_EFORMAT, "lz4: bad chunk size %u", chunk);
  size_t pos = 4;
  for (size_t off = 0; off < n; off += chunk) {
    int m = (int)(n - off < chunk ? n - off : chunk);
    if (enc_bytes - pos < 4)
      return sf__errf(err, SF_EFORMAT, "lz4: truncated at raw offset %zu", off);
    uint32_t clen = sf__ld32(enc + pos);
    pos += 4;
    if (clen > enc_bytes - pos || clen > (uint32_t)LZ4_compressBound(m))
      return sf__errf(err, SF_EFORMAT, "lz4: block of %u bytes at raw offset %zu overruns", clen,
                      off);
    int r = LZ4_decompress_safe((const char *)enc + pos, (char *)dst + off, (int)clen, m);
    if (r != m)
      return sf__errf(err, SF_EFORMAT, "lz4: corrupt block at raw offset %zu (%d of %d bytes)", off,
                      r, m);
    pos += clen;
  }
  if (pos != enc_bytes)
    return sf__errf(err, SF_EFORMAT, "lz4: %zu trailing bytes", enc_bytes - pos);
  return 0;
}

/* ---- zfp ------------------------------------------------------------------------------------ */

/* Scratch bytes that hold any zfp stream of m floats (maxbits per block) plus read-ahead. */
static size_t zfp_scratch_bytes(size_t m) {
  return (m + 3) / 4 * (ZFP_BLOCK_BITS / 8) + 64;
}

/* A zfp stream over buf[0..cap) coding with the given minexp (fixed accuracy, bounded maxbits). */
static zfp_stream *zfp_open(void *buf, size_t cap, int minexp) {
  zfp_stream *zs = zfp_stream_open(NULL);
  bitstream *bs = stream_open(buf, cap);
  if (!zs || !bs ||
      !zfp_stream_set_params(zs, ZFP_MIN_BITS, ZFP_BLOCK_BITS, ZFP_MAX_PREC, minexp)) {
    if (bs) stream_close(bs);
    if (zs) zfp_stream_close(zs);
    return NULL;
  }
  zfp_stream_set_bit_stream(zs, bs);
  zfp_stream_rewind(zs);
  return zs;
}

static void zfp_close(zfp_stream *zs) {
  if (!zs) return;
  stream_close(zfp_stream_bit_stream(zs));
  zfp_stream_close(zs);
}

/* minexp that zfp's fixed-accuracy mode derives from tol (errors stay <= tol). */
static int zfp_minexp(double tol) {
  zfp_stream *zs = zfp_stream_open(NULL);
  if (!zs) return ZFP_MIN_EXP;
  zfp_stream_set_accuracy(zs, tol);
  uint minbits, maxbits, maxprec;
  int minexp = ZFP_MIN_EXP;
  zfp_stream_params(zs, &minbits, &maxbits, &maxprec, &minexp);
  zfp_stream_close(zs);
  return minexp;
}

/* Compress m floats into scratch; returns the stream bytes (0 on failure). */
static size_t zfp_chunk_encode(const float *src, size_t m, int minexp, void *scratch, size_t cap) {
  zfp_stream *zs = zfp_open(scratch, cap, minexp);
  zfp_field *f = zfp_field_1d((void *)src, zfp_type_float, m);
  size_t r = 0;
  if (zs && f && zfp_stream_maximum_size(zs, f) <= cap) r = zfp_compress(zs, f);
  if (f) zfp_field_free(f);
  zfp_close(zs);
  return r;
}

int sf__zfp_encode(sf_buf *out, const float *src, size_t n, double tol, sf_err *err) {
  int rc = 0, minexp = zfp_minexp(tol);
  size_t cap = zfp_scratch_bytes(ZFP_CHUNK);
  void *scratch = sf__aligned_alloc(cap);
  if (!scratch || sf__buf_reserve(out, 8) < 0) {
    rc = sf__errf(err, SF_ENOMEM, "zfp: out of memory");
    goto out;
  }
  sf__st32(out->data + out->len, (uint32_t)ZFP_CHUNK);
  sf__st32(out->data + out->len + 4, (uint32_t)minexp);
  out->len += 8;
  for (size_t off = 0; off < n; off += ZFP_CHUNK) {
    size_t m = n - off < ZFP_CHUNK ? n - off : ZFP_CHUNK;
    size_t c = zfp_chunk_encode(src + off, m, minexp, scratch, cap);
    if (c == 0 || c > UINT32_MAX) {
      rc = sf__errf(err, SF_EINTERNAL, "zfp: compression failed at element %zu", off);
      goto out;
    }
    if (sf__buf_reserve(out, 4 + c) < 0) {
      rc = sf__errf(err, SF_ENOMEM, "zfp: out of memory");
      goto out;
    }
    sf__st32(out->data + out->len, (uint32_t)c);
    memcpy(out->data + out->len + 4, scratch, c);
    out->len += 4 + c;
  }
out:
  free(scratch);
  return rc;
}

/* Decode one chunk (clen bytes at enc, already bounds-checked) into m floats at dst. */
static int zfp_chunk_decode(const uint8_t *enc, size_t clen, int minexp, float *dst, size_t m,
                            void *scratch, size_t cap, size_t off, sf_err *err) {
  if (clen > cap - 64)
    return sf__errf(err, SF_EFORMAT, "zfp: stream of %zu bytes at element %zu is malformed", clen,
                    off);
  memcpy(scratch, enc, clen);
  memset((uint8_t *)scratch + clen, 0, cap - clen);
  zfp_stream *zs = zfp_open(scratch, cap, minexp);
  zfp_field *f = zfp_field_1d(dst, zfp_type_float, m);
  size_t used = (zs && f) ? zfp_decompress(zs, f) : 0;
  if (f) zfp_field_free(f);
  zfp_close(zs);
  if (used == 0 || used != clen)
    return sf__errf(err, SF_EFORMAT, "zfp: corrupt stream at element %zu (%zu of %zu bytes used)",
                    off, used, clen);
  return 0;
}

int sf__zfp_decode(const uint8_t *enc, size_t enc_bytes, float *dst, size_t n, sf_err *err) {
  if (enc_bytes < 8) return sf__errf(err, SF_EFORMAT, "zfp: encoding shorter than its header");
  if ((uintptr_t)dst % sizeof(float))
    return sf__errf(err, SF_EINVAL, "zfp: destination is not aligned for float");
  uint32_t chunk = sf__ld32(enc);
  int32_t minexp = (int32_t)sf__ld32(enc + 4);
  if (chunk < 4 || chunk > ZFP_CHUNK_MAX || chunk % 4)
    return sf__errf(err, SF_EFORMAT, "zfp: bad chunk size %u", chunk);
  if (minexp < ZFP_MIN_EXP || minexp > 1024)
    return sf__errf(err, SF_EFORMAT, "zfp: bad accuracy exponent %d", (int)minexp);
  size_t cap = zfp_scratch_bytes(chunk), pos = 8;
  void *scratch = sf__aligned_alloc(cap);
  if (!scratch) return sf__errf(err, SF_ENOMEM, "zfp: out of memory");
  int rc = 0;
  for (size_t off = 0; off < n && rc == 0; off += chunk) {
    size_t m = n - off < chunk ? n - off : chunk;
    uint32_t clen = enc_bytes - pos >= 4 ? sf__ld32(enc + pos) : 0;
    if (enc_bytes - pos < 4 || clen > enc_bytes - pos - 4) {
      rc = sf__errf(err, SF_EFORMAT, "zfp: truncated at element %zu", off);
      break;
    }
    rc = zfp_chunk_decode(enc + pos + 4, clen, minexp, dst + off, m, scratch, cap, off, err);
    pos += 4 + (size_t)clen;
  }
  if (rc == 0 && pos != enc_bytes)
    rc = sf__errf(err, SF_EFORMAT, "zfp: %zu trailing bytes", enc_bytes - pos);
  free(scratch);
  return rc;
}

/* ---- estimate ------------------------------------------------------------------------------- */

/* Encoded / raw bytes of n float32 samples under codec (tol for zfp, 0 = default); 1.0 when the
 * sample is empty or the codec fails. Matches what sf__tensors_encode would send for the data
 * bytes (the per-tensor descriptor is not counted; a codec that does not shrink falls back to raw).
 */
double sf__codec_ratio(int codec, const float *sample, size_t n, double tol) {
  if (!sample || n == 0) return 1.0;
  sf_buf b = {0};
  int rc = -1;
  if (codec == SF_CODEC_FP16)
    rc = sf__fp16_encode(&b, sample, n, NULL);
  else if (codec == SF_CODEC_LZ4)
    rc = sf__lz4_encode(&b, sample, n * sizeof(float), NULL);
  else if (codec == SF_CODEC_ZFP) {
    for (size_t i = 0; i < n; i++)
      if (!isfinite(sample[i])) goto out; /* would be sent raw */
    rc = sf__zfp_encode(&b, sample, n, tol > 0 ? tol : SF_ZFP_DEFAULT_TOL, NULL);
  }
out:;
  double r = rc == 0 ? (double)b.len / ((double)n * sizeof(float)) : 1.0;
  sf__buf_deinit(&b);
  return r < 1.0 ? r : 1.0;
}
