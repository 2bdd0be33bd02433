/* Open Inference Protocol (KServe v2) REST bodies; see kserve.h for the rules and the design. */
#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "serve/kserve.h"
#include "util/util.h"

/* ---- datatypes ------------------------------------------------------------------------------ */
static const struct {
  const char *name;
  int dtype;
} dtypes[] = {{"BOOL", SF_BOOL},  {"UINT8", SF_U8}, {"UINT16", SF_U16}, {"UINT32", SF_U32},
              {"UINT64", SF_U64}, {"INT8", SF_I8},  {"INT16", SF_I16},  {"INT32", SF_I32},
              {"INT64", SF_I64},  {"FP16", SF_F16}, {"FP32", SF_F32},   {"FP64", SF_F64}};
#define N_DTYPES (int)(sizeof dtypes / sizeof dtypes[0])
#define DTYPE_LIST \
  "BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64"

int sf__kserve_dtype(const char *name) {
  for (int i = 0; name && i < N_DTYPES; i++)
    if (!strcmp(name, dtypes[i].name)) return dtypes[i].dtype;
  return SF_UNDEFINED;
}

const char *sf__kserve_dtype_name(int dtype) {
  for (int i = 0; i < N_DTYPES; i++)
    if (dtypes[i].dtype == dtype) return dtypes[i].name;
  return NULL;
}

static int is_float(int dtype) {
  return dtype == SF_F32 || dtype == SF_F64 || dtype == SF_F16;
}

/* IEEE half <-> float/double, round to nearest even. */
static float half_to_float(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
  if (e == 0) {
    float f = ldexpf((float)m, -24);
    return s ? -f : f;
  }
  bits = s | (e == 0x1f ? 0x7f800000u : (e + 112) << 23) | (m << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static uint16_t double_to_half(double d) {
  uint16_t s = signbit(d) ? 0x8000 : 0;
  if (isnan(d)) return s | 0x7e00;
  double a = fabs(d);
  if (a >= 65520.0) return s | 0x7c00;
  if (a < 0x1p-14) return (uint16_t)(s | (uint16_t)nearbyint(a * 0x1p24));
  int e;
  frexp(a, &e);
  e -= 1;
  double m = nearbyint(ldexp(a, 10 - e));
  if (m >= 2048) {
    m = 1024;
    e++;
  }
  if (e > 15) return s | 0x7c00;
  return (uint16_t)(s | (uint16_t)((e + 15) << 10) | (uint16_t)((int)m - 1024));
}

/* ---- number formatting ---------------------------------------------------------------------- */
static const double p10[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28, 1e29, 1e30, 1e31,
    1e32, 1e33, 1e34, 1e35, 1e36, 1e37, 1e38, 1e39, 1e40, 1e41, 1e42, 1e43, 1e44, 1e45, 1e46, 1e47,
    1e48, 1e49, 1e50, 1e51, 1e52, 1e53, 1e54, 1e55, 1e56, 1e57, 1e58, 1e59, 1e60};

static size_t fmt_u64(char *p, uint64_t v) {
  char t[24];
  size_t n = 0;
  do {
    t[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) p[i] = t[n - 1 - i];
  return n;
}

static size_t fmt_i64(char *p, int64_t v) {
  if (v >= 0) return fmt_u64(p, (uint64_t)v);
  p[0] = '-';
  return 1 + fmt_u64(p + 1, (uint64_t)0 - (uint64_t)v);
}

static size_t fmt_nonfinite(char *p, double v) {
  const char *s = isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
  size_t n = strlen(s);
  memcpy(p, s, n);
  return n;
}

/* Exactly what snprintf("%.9g") prints for a finite float, without the libc cost in the common
 * case: the float (exact in a double) is scaled to a 9-digit integer with one correctly rounded
 * power of ten; the error is below 1e-6 of the last digit, so only values within 1e-5 of a
 * rounding tie go to snprintf. */
size_t sf__fmt_f32(char *p, float f) {
  if (!isfinite(f)) return fmt_nonfinite(p, f);
  char *p0 = p;
  double v = f;
  if (v == 0) {
    if (signbit(v)) *p++ = '-';
    *p++ = '0';
    return (size_t)(p - p0);
  }
  if (v < 0) {
    *p++ = '-';
    v = -v;
  }
  int e2;
  frexp(v, &e2); /* v in [2^(e2-1), 2^e2) */
  int e10 = (int)floor((e2 - 1) * 0.30102999566398120);
  double m = 0;
  for (int tries = 0; tries < 4; tries++) {
    int k = 8 - e10;
    m = k >= 0 ? v * p10[k] : v / p10[-k];
    if (m >= 1e9)
      e10++;
    else if (m < 1e8)
      e10--;
    else
      break;
  }
  double fl = floor(m), frac = m - fl;
  if (m < 1e8 || m >= 1e9 || fabs(frac - 0.5) < 1e-5)
    return (size_t)(p - p0) + (size_t)snprintf(p, 24, "%.9g", v);
  uint64_t r = (uint64_t)fl + (frac > 0.5);
  if (r >= 1000000000u) {
    r /= 10;
    e10++;
  }
  char d[9];
  for (int i = 8; i >= 0; i--) {
    d[i] = (char)('0' + r % 10);
    r /= 10;
  }
  int nd = 9;
  while (nd > 1 && d[nd - 1] == '0') nd--;
  if (e10 < -4 || e10 >= 9) {
    *p++ = d[0];
    if (nd > 1) {
      *p++ = '.';
      memcpy(p, d + 1, (size_t)nd - 1);
      p += nd - 1;
    }
    *p++ = 'e';
    *p++ = e10 < 0 ? '-' : '+';
    int ae = e10 < 0 ? -e10 : e10;
    if (ae < 10) *p++ = '0';
    p += fmt_u64(p, (uint64_t)ae);
  } else if (e10 >= 0) {
    memcpy(p, d, (size_t)e10 + 1);
    p += e10 + 1;
    if (nd > e10 + 1) {
      *p++ = '.';
      memcpy(p, d + e10 + 1, (size_t)(nd - e10 - 1));
      p += nd - e10 - 1;
    }
  } else {
    *p++ = '0';
    *p++ = '.';
    for (int i = 0; i < -e10 - 1; i++) *p++ = '0';
    memcpy(p, d, (size_t)nd);
    p += nd;
  }
  return (size_t)(p - p0);
}

/* One element of t at index i; at most 32 bytes. */
static size_t fmt_elem(char *p, const sf_tensor *t, int64_t i) {
  const void *d = t->data;
  switch (t->dtype) {
    case SF_F32:
      return sf__fmt_f32(p, ((const float *)d)[i]);
    case SF_F64: {
      double v = ((const double *)d)[i];
      return isfinite(v) ? (size_t)snprintf(p, 32, "%.17g", v) : fmt_nonfinite(p, v);
    }
    case SF_F16: {
      double v = half_to_float(((const uint16_t *)d)[i]);
      return isfinite(v) ? (size_t)snprintf(p, 32, "%.5g", v) : fmt_nonfinite(p, v);
    }
    case SF_BOOL:
      if (((const uint8_t *)d)[i]) {
        memcpy(p, "true", 4);
        return 4;
      }
      memcpy(p, "false", 5);
      return 5;
    case SF_U8:
      return fmt_u64(p, ((const uint8_t *)d)[i]);
    case SF_U16:
      return fmt_u64(p, ((const uint16_t *)d)[i]);
    case SF_U32:
      return fmt_u64(p, ((const uint32_t *)d)[i]);
    case SF_U64:
      return fmt_u64(p, ((const uint64_t *)d)[i]);
    case SF_I8:
      return fmt_i64(p, ((const int8_t *)d)[i]);
    case SF_I16:
      return fmt_i64(p, ((const int16_t *)d)[i]);
    case SF_I32:
      return fmt_i64(p, ((const int32_t *)d)[i]);
    case SF_I64:
      return fmt_i64(p, ((const int64_t *)d)[i]);
  }
  SF_CHECK(0 && "dtype checked by the caller");
  return 0;
}

/* ---- JSON writer with a sticky out-of-memory flag ------------------------------------------- */
typedef struct jw {
  sf_buf *b;
  int bad;
} jw;

static void jw_raw(jw *w, const void *p, size_t n) {
  if (!w->bad && sf__buf_put(w->b, p, n) < 0) w->bad = 1;
}
static void jw_s(jw *w, const char *s) {
  jw_raw(w, s, strlen(s));
}
static void jw_str(jw *w, const char *s) {
  if (!w->bad && sf__json_put_string(w->b, s) < 0) w->bad = 1;
}
static void jw_i64(jw *w, int64_t v) {
  char t[24];
  jw_raw(w, t, fmt_i64(t, v));
}

/* Length of the valid UTF-8 sequence at s (0 if invalid). */
static int utf8_len(const unsigned char *s) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) return (s[1] & 0xc0) == 0x80 ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
  }
  return 0;
}

int sf__json_put_string(sf_buf *b, const char *s) {
  size_t n = strlen(s);
  if (sf__buf_reserve(b, 6 * n + 2) < 0) return SF_ENOMEM;
  char *p = (char *)b->data + b->len, *p0 = p;
  const unsigned char *u = (const unsigned char *)s;
  *p++ = '"';
  for (size_t i = 0; i < n;) {
    unsigned c = u[i];
    if (c == '"' || c == '\\') {
      *p++ = '\\';
      *p++ = (char)c;
      i++;
    } else if (c < 0x20) {
      static const char hex[] = "0123456789abcdef";
      *p++ = '\\';
      switch (c) {
        case '\n':
          *p++ = 'n';
          break;
        case '\r':
          *p++ = 'r';
          break;
        case '\t':
          *p++ = 't';
          break;
        case '\b':
          *p++ = 'b';
          break;
        case '\f':
          *p++ = 'f';
          break;
        default:
          memcpy(p, "u00", 3);
          p += 3;
          *p++ = hex[c >> 4];
          *p++ = hex[c & 15];
      }
      i++;
    } else {
      int l = utf8_len(u + i); /* reads stop at the terminator: it fails the continuation tests */
      if (l == 0) {
        memcpy(p, "\\ufffd", 6);
        p += 6;
        i++;
      } else {
        memcpy(p, u + i, (size_t)l);
        p += l;
        i += (size_t)l;
      }
    }
  }
  *p++ = '"';
  b->len += (size_t)(p - p0);
  return 0;
}

/* "data":[...] values of t, flat, row-major. */
static void jw_data(jw *w, const sf_tensor *t, int64_t numel) {
  jw_s(w, "[");
  for (int64_t i = 0; i < numel && !w->bad;) {
    int64_t chunk = numel - i < 256 ? numel - i : 256;
    if (sf__buf_reserve(w->b, (size_t)chunk * 34) < 0) {
      w->bad = 1;
      return;
    }
    char *p = (char *)w->b->data + w->b->len, *p0 = p;
    for (int64_t k = 0; k < chunk; k++, i++) {
      if (i) *p++ = ',';
      p += fmt_elem(p, t, i);
    }
    w->b->len += (size_t)(p - p0);
  }
  jw_s(w, "]");
}

static void jw_shape(jw *w, const sf_tensor *t) {
  jw_s(w, "[");
  for (int d = 0; d < t->rank; d++) {
    if (d) jw_s(w, ",");
    jw_i64(w, t->dims[d] < 0 ? -1 : t->dims[d]);
  }
  jw_s(w, "]");
}

/* Check an outgoing tensor; numel/nbytes out. */
static int check_out_tensor(const sf_tensor *t, const char *kind, int need_data, int64_t *numel,
                            sf_err *err) {
  const char *nm = t->name ? t->name : "?";
  if (!t->name || !t->name[0] || strlen(t->name) >= SF_KSERVE_MAX_NAME)
    return sf__errf(err, SF_EINVAL, "%s '%.255s': name empty or longer than %d bytes", kind, nm,
                    SF_KSERVE_MAX_NAME - 1);
  if (!sf__kserve_dtype_name(t->dtype))
    return sf__errf(err, SF_EUNSUPPORTED, "%s '%s': datatype %s has no KServe v2 name", kind, nm,
                    sf_dtype_name(t->dtype));
  if (t->rank < 0 || t->rank > SF_MAX_RANK)
    return sf__errf(err, SF_EINVAL, "%s '%s': rank %d", kind, nm, t->rank);
  if (!need_data) return 0;
  *numel = sf_tensor_numel(t);
  if (*numel < 0) return sf__errf(err, SF_EINVAL, "%s '%s': shape not fully known", kind, nm);
  if (*numel > 0 && !t->data) return sf__errf(err, SF_EINVAL, "%s '%s': no data", kind, nm);
  return 0;
}

/* {"name","datatype","shape", "data" | "parameters":{"binary_data_size"}} */
static void jw_tensor(jw *w, const sf_tensor *t, int64_t numel, int binary) {
  jw_s(w, "{\"name\":");
  jw_str(w, t->name);
  jw_s(w, ",\"datatype\":\"");
  jw_s(w, sf__kserve_dtype_name(t->dtype));
  jw_s(w, "\",\"shape\":");
  jw_shape(w, t);
  if (binary) {
    jw_s(w, ",\"parameters\":{\"binary_data_size\":");
    jw_i64(w, numel * (int64_t)sf_dtype_size(t->dtype));
    jw_s(w, "}}");
  } else {
    jw_s(w, ",\"data\":");
    jw_data(w, t, numel);
    jw_s(w, "}");
  }
}

int sf__kserve_error_body(sf_buf *out, const char *msg) {
  jw w = {out, 0};
  jw_s(&w, "{\"error\":");
  jw_str(&w, msg ? msg : "");
  jw_s(&w, "}");
  return w.bad ? SF_ENOMEM : 0;
}

int sf__kserve_build_response(sf_buf *out, size_t *json_len, const char *model, const char *version,
                              const sf_kserve_req *req, const sf_tensor *outs, int n_outs,
                              sf_err *err) {
  int sel[SF_KSERVE_MAX_TENSORS], bin[SF_KSERVE_MAX_TENSORS], n = 0, rc;
  int64_t numel[SF_KSERVE_MAX_TENSORS];
  size_t start = out->len;
  if (n_outs < 0 || n_outs > SF_KSERVE_MAX_TENSORS)
    return sf__errf(err, SF_ELIMIT, "%d outputs (at most %d)", n_outs, SF_KSERVE_MAX_TENSORS);
  if (req && req->n_outputs > 0) {
    for (int k = 0; k < req->n_outputs; k++) {
      int found = -1;
      for (int i = 0; i < n_outs && found < 0; i++)
        if (outs[i].name && !strcmp(outs[i].name, req->outputs[k].name)) found = i;
      if (found < 0) {
        char names[512] = "";
        for (int i = 0; i < n_outs; i++)
          snprintf(names + strlen(names), sizeof names - strlen(names), "%s'%.100s'", i ? ", " : "",
                   outs[i].name ? outs[i].name : "?");
        return sf__errf(err, SF_ENOTFOUND,
                        "requested output '%s' is not an output of the model (%s)",
                        req->outputs[k].name, n_outs ? names : "none");
      }
      sel[n] = found;
      bin[n++] = req->outputs[k].binary;
    }
  } else {
    for (int i = 0; i < n_outs; i++) {
      sel[n] = i;
      bin[n++] = req ? req->binary_default : 0;
    }
  }
  for (int k = 0; k < n; k++)
    if ((rc = check_out_tensor(&outs[sel[k]], "output", 1, &numel[k], err)) < 0) return rc;
  jw w = {out, 0};
  jw_s(&w, "{\"model_name\":");
  jw_str(&w, model ? model : "");
  if (version && version[0]) {
    jw_s(&w, ",\"model_version\":");
    jw_str(&w, version);
  }
  if (req && req->id[0]) {
    jw_s(&w, ",\"id\":");
    jw_str(&w, req->id);
  }
  jw_s(&w, ",\"outputs\":[");
  for (int k = 0; k < n; k++) {
    if (k) jw_s(&w, ",");
    jw_tensor(&w, &outs[sel[k]], numel[k], bin[k]);
  }
  jw_s(&w, "]}");
  *json_len = out->len - start;
  for (int k = 0; k < n; k++)
    if (bin[k]) jw_raw(&w, outs[sel[k]].data, (size_t)numel[k] * sf_dtype_size(outs[sel[k]].dtype));
  if (w.bad) {
    out->len = start;
    return sf__errf(err, SF_ENOMEM, "out of memory writing the response");
  }
  return 0;
}

int sf__kserve_build_request(sf_buf *out, size_t *json_len, const sf_kserve_req *req,
                             int binary_inputs, sf_err *err) {
  int64_t numel[SF_KSERVE_MAX_TENSORS];
  size_t start = out->len;
  int rc;
  if (req->n_inputs < 1 || req->n_inputs > SF_KSERVE_MAX_TENSORS || req->n_outputs < 0 ||
      req->n_outputs > SF_KSERVE_MAX_TENSORS)
    return sf__errf(err, SF_EINVAL, "request with %d inputs and %d outputs (1..%d, 0..%d)",
                    req->n_inputs, req->n_outputs, SF_KSERVE_MAX_TENSORS, SF_KSERVE_MAX_TENSORS);
  for (int i = 0; i < req->n_inputs; i++)
    if ((rc = check_out_tensor(&req->inputs[i], "input", 1, &numel[i], err)) < 0) return rc;
  jw w = {out, 0};
  jw_s(&w, "{");
  if (req->id[0]) {
    jw_s(&w, "\"id\":");
    jw_str(&w, req->id);
    jw_s(&w, ",");
  }
  if (req->binary_default) jw_s(&w, "\"parameters\":{\"binary_data_output\":true},");
  jw_s(&w, "\"inputs\":[");
  for (int i = 0; i < req->n_inputs; i++) {
    if (i) jw_s(&w, ",");
    jw_tensor(&w, &req->inputs[i], numel[i], binary_inputs);
  }
  jw_s(&w, "]");
  if (req->n_outputs) {
    jw_s(&w, ",\"outputs\":[");
    for (int k = 0; k < req->n_outputs; k++) {
      jw_s(&w, k ? ",{\"name\":" : "{\"name\":");
      jw_str(&w, req->outputs[k].name);
      jw_s(&w, req->outputs[k].binary ? ",\"parameters\":{\"binary_data\":true}}"
                                      : ",\"parameters\":{\"binary_data\":false}}");
    }
    jw_s(&w, "]");
  }
  jw_s(&w, "}");
  *json_len = out->len - start;
  if (binary_inputs)
    for (int i = 0; i < req->n_inputs; i++)
      jw_raw(&w, req->inputs[i].data, (size_t)numel[i] * sf_dtype_size(req->inputs[i].dtype));
  if (w.bad) {
    out->len = start;
    return sf__errf(err, SF_ENOMEM, "out of memory writing the request");
  }
  return 0;
}

static void jw_meta_list(jw *w, const sf_tensor *ts, int n) {
  jw_s(w, "[");
  for (int i = 0; i < n; i++) {
    jw_s(w, i ? ",{\"name\":" : "{\"name\":");
    jw_str(w, ts[i].name);
    jw_s(w, ",\"datatype\":\"");
    jw_s(w, sf__kserve_dtype_name(ts[i].dtype));
    jw_s(w, "\",\"shape\":");
    jw_shape(w, &ts[i]);
    jw_s(w, "}");
  }
  jw_s(w, "]");
}

int sf__kserve_metadata(sf_buf *out, const char *model, const char *version, const sf_tensor *ins,
                        int n_in, const sf_tensor *outs, int n_out, sf_err *err) {
  int rc;
  size_t start = out->len;
  if (n_in < 0 || n_out < 0 || n_in > SF_KSERVE_MAX_TENSORS || n_out > SF_KSERVE_MAX_TENSORS)
    return sf__errf(err, SF_ELIMIT, "metadata with %d inputs and %d outputs (at most %d each)",
                    n_in, n_out, SF_KSERVE_MAX_TENSORS);
  for (int i = 0; i < n_in; i++)
    if ((rc = check_out_tensor(&ins[i], "input", 0, NULL, err)) < 0) return rc;
  for (int i = 0; i < n_out; i++)
    if ((rc = check_out_tensor(&outs[i], "output", 0, NULL, err)) < 0) return rc;
  jw w = {out, 0};
  jw_s(&w, "{\"name\":");
  jw_str(&w, model ? model : "");
  jw_s(&w, ",\"versions\":[");
  if (version && version[0]) jw_str(&w, version);
  jw_s(&w, "],\"platform\":\"seifer\",\"inputs\":");
  jw_meta_list(&w, ins, n_in);
  jw_s(&w, ",\"outputs\":");
  jw_meta_list(&w, outs, n_out);
  jw_s(&w, "}");
  if (w.bad) {
    out->len = start;
    return sf__errf(err, SF_ENOMEM, "out of memory writing the metadata");
  }
  return 0;
}

/* ---- JSON scanner --------------------------------------------------------------------------- */
/* Validates the whole text (RFC 8259, plus NaN/Infinity/-Infinity inside tensor data) and finds
 * the "data" arrays of the elements of the top-level array `list` ("inputs" or "outputs"). */
#define SCAN_MAX_DEPTH 64
enum { R_NONE, R_TOP, R_LIST, R_TENSOR, R_DATA, R_IN_DATA };

typedef struct scan_frame {
  uint8_t obj, role, seen;
  int count, j;
} scan_frame;

typedef struct scan_res {
  size_t start[SF_KSERVE_MAX_TENSORS], end[SF_KSERVE_MAX_TENSORS];
  uint8_t has[SF_KSERVE_MAX_TENSORS];
  int any;
} scan_res;

static int jerr(sf_err *err, size_t at, const char *what) {
  return sf__errf(err, SF_EFORMAT, "invalid JSON at byte %zu: %s", at, what);
}

static int is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
static int is_digit(char c) {
  return c >= '0' && c <= '9';
}
static int is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* *pos at the opening quote; leaves it after the closing one. */
static int scan_string(const char *s, size_t n, size_t *pos, sf_err *err) {
  size_t p = *pos + 1;
  for (;;) {
    if (p >= n) return jerr(err, *pos, "unterminated string");
    unsigned char c = (unsigned char)s[p];
    if (c == '"') break;
    if (c < 0x20) return jerr(err, p, "control character in a string");
    if (c == '\\') {
      if (p + 1 >= n) return jerr(err, *pos, "unterminated string");
      char e = s[p + 1];
      if (e == 'u') {
        if (p + 6 > n || !is_hex(s[p + 2]) || !is_hex(s[p + 3]) || !is_hex(s[p + 4]) ||
            !is_hex(s[p + 5]))
          return jerr(err, p, "bad \\u escape");
        p += 6;
        continue;
      }
      if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' &&
          e != 't')
        return jerr(err, p, "bad escape in a string");
      p += 2;
      continue;
    }
    p++;
  }
  *pos = p + 1;
  return 0;
}

static int match_word(const char *s, size_t n, size_t p, const char *w) {
  size_t l = strlen(w);
  return p + l <= n && !memcmp(s + p, w, l);
}

/* Numbers and literals; NaN, Infinity, -Infinity only when in_data. */
static int scan_scalar(const char *s, size_t n, size_t *pos, int in_data, sf_err *err) {
  size_t p = *pos;
  static const char *const words[] = {"true", "false", "null", "NaN", "Infinity", "-Infinity"};
  for (int i = 0; i < 6; i++)
    if (match_word(s, n, p, words[i])) {
      if (i >= 3 && !in_data)
        return jerr(err, p, "NaN and Infinity are accepted only inside tensor data arrays");
      *pos = p + strlen(words[i]);
      return 0;
    }
  if (s[p] == '-') p++;
  if (p >= n || !is_digit(s[p])) return jerr(err, *pos, "expected a value");
  if (s[p] == '0')
    p++;
  else
    while (p < n && is_digit(s[p])) p++;
  if (p < n && s[p] == '.') {
    p++;
    if (p >= n || !is_digit(s[p])) return jerr(err, p, "expected a digit after '.'");
    while (p < n && is_digit(s[p])) p++;
  }
  if (p < n && (s[p] == 'e' || s[p] == 'E')) {
    p++;
    if (p < n && (s[p] == '+' || s[p] == '-')) p++;
    if (p >= n || !is_digit(s[p])) return jerr(err, p, "expected a digit in the exponent");
    while (p < n && is_digit(s[p])) p++;
  }
  *pos = p;
  return 0;
}

/* Does the JSON string literal s[a..b) (quotes included) decode to w? Keys we look for are
 * short ASCII; escapes are decoded so that "\u0064ata" is "data" for us as for cJSON. */
static int key_is(const char *s, size_t a, size_t b, const char *w) {
  size_t wl = strlen(w), k = 0;
  for (size_t p = a + 1; p + 1 < b; k++) {
    char c = s[p];
    if (c == '\\') {
      char e = s[p + 1];
      if (e == 'u') {
        unsigned v = 0;
        for (int i = 2; i < 6; i++) {
          char h = s[p + i];
          v = v * 16 + (unsigned)(is_digit(h) ? h - '0' : (h | 0x20) - 'a' + 10);
        }
        if (v == 0 || v > 0x7f) return 0;
        c = (char)v;
        p += 6;
      } else {
        c = e == 'b'   ? '\b'
            : e == 'f' ? '\f'
            : e == 'n' ? '\n'
            : e == 'r' ? '\r'
            : e == 't' ? '\t'
                       : e;
        p += 2;
      }
    } else {
      p++;
    }
    if (k >= wl || c != w[k]) return 0;
  }
  return k == wl;
}

static int child_role(const scan_frame *f) {
  if (f->role == R_LIST) return R_TENSOR;
  if (f->role == R_DATA || f->role == R_IN_DATA) return R_IN_DATA;
  return R_NONE;
}

static int scan_json(const char *s, size_t n, const char *list, scan_res *res, sf_err *err) {
  scan_frame st[SCAN_MAX_DEPTH];
  int sp = 0, rc;
  enum { S_VALUE, S_VALUE_OR_END, S_AFTER, S_KEY, S_KEY_OR_END } state = S_VALUE;
  int next_role = R_TOP, next_j = 0;
  size_t p = 0;
  memset(res, 0, sizeof *res);
  for (;;) {
    while (p < n && is_ws(s[p])) p++;
    if (p >= n) {
      if (sp == 0 && state == S_AFTER) return 0;
      return jerr(err, p, "unexpected end of the JSON text");
    }
    char c = s[p];
    switch (state) {
      case S_VALUE_OR_END:
        if (c == ']') goto close;
        /* fall through */
      case S_VALUE: {
        if (sp == 0 && c != '{') return jerr(err, p, "the body must be a JSON object");
        if (c == '{' || c == '[') {
          if (sp == SCAN_MAX_DEPTH)
            return sf__errf(err, SF_ELIMIT, "JSON nested deeper than %d levels at byte %zu",
                            SCAN_MAX_DEPTH, p);
          scan_frame *f = &st[sp++];
          f->obj = c == '{';
          f->role = (uint8_t)next_role;
          if (f->obj && f->role != R_TOP && f->role != R_TENSOR) f->role = R_NONE;
          if (!f->obj && f->role != R_LIST && f->role != R_DATA && f->role != R_IN_DATA)
            f->role = R_NONE;
          f->count = 0;
          f->j = next_j;
          f->seen = 0;
          if (f->role == R_DATA) res->start[f->j] = p;
          p++;
          if (f->obj) {
            state = S_KEY_OR_END;
          } else {
            state = S_VALUE_OR_END;
            next_role = child_role(f);
            next_j = 0;
          }
          continue;
        }
        if (c == '"')
          rc = scan_string(s, n, &p, err);
        else
          rc = scan_scalar(s, n, &p, next_role == R_IN_DATA, err);
        if (rc < 0) return rc;
        state = S_AFTER;
        continue;
      }
      case S_AFTER: {
        if (sp == 0) return jerr(err, p, "text after the JSON object");
        scan_frame *f = &st[sp - 1];
        if (c == ',') {
          p++;
          if (f->obj) {
            state = S_KEY;
          } else {
            f->count++;
            if (f->role == R_LIST && f->count >= SF_KSERVE_MAX_TENSORS)
              return sf__errf(err, SF_ELIMIT, "%s: more than %d tensors", list,
                              SF_KSERVE_MAX_TENSORS);
            next_role = child_role(f);
            next_j = f->count;
            state = S_VALUE;
          }
          continue;
        }
        if (c == (f->obj ? '}' : ']')) goto close;
        return jerr(err, p, f->obj ? "expected ',' or '}'" : "expected ',' or ']'");
      }
      case S_KEY_OR_END:
        if (c == '}') goto close;
        /* fall through */
      case S_KEY: {
        if (c != '"') return jerr(err, p, "expected a string key");
        size_t k0 = p;
        if ((rc = scan_string(s, n, &p, err)) < 0) return rc;
        size_t k1 = p;
        while (p < n && is_ws(s[p])) p++;
        if (p >= n || s[p] != ':') return jerr(err, p, "expected ':' after a key");
        p++;
        scan_frame *f = &st[sp - 1];
        next_role = R_NONE;
        if (f->role == R_TOP && list && key_is(s, k0, k1, list)) {
          if (f->seen) return sf__errf(err, SF_EFORMAT, "duplicate key '%s'", list);
          f->seen = 1;
          next_role = R_LIST;
        } else if (f->role == R_TENSOR && key_is(s, k0, k1, "data")) {
          if (f->seen) return sf__errf(err, SF_EFORMAT, "%s[%d]: duplicate key 'data'", list, f->j);
          f->seen = 1;
          next_role = R_DATA;
          next_j = f->j;
        }
        state = S_VALUE;
        continue;
      }
    }
  close : {
    scan_frame *f = &st[--sp];
    p++;
    if (f->role == R_DATA) {
      res->end[f->j] = p;
      res->has[f->j] = 1;
      res->any = 1;
    }
    state = S_AFTER;
  }
  }
}

/* Scan, then parse the text with every data array replaced by "[]" with cJSON (a copy of the
 * text without the arrays: small, whatever the size of the tensors). */
static cJSON *parse_doc(const char *s, size_t n, const char *list, scan_res *sr, sf_err *err) {
  if (scan_json(s, n, list, sr, err) < 0) return NULL;
  cJSON *root;
  if (!sr->any) {
    root = cJSON_ParseWithLength(s, n);
  } else {
    size_t keep = n;
    for (int j = 0; j < SF_KSERVE_MAX_TENSORS; j++)
      if (sr->has[j]) keep -= sr->end[j] - sr->start[j] - 2;
    char *c = sf__malloc(keep);
    if (!c) {
      sf__errf(err, SF_ENOMEM, "out of memory parsing the JSON body");
      return NULL;
    }
    /* spans are disjoint and, by element index, in text order */
    size_t from = 0, o = 0;
    for (int j = 0; j < SF_KSERVE_MAX_TENSORS; j++) {
      if (!sr->has[j]) continue;
      memcpy(c + o, s + from, sr->start[j] + 1 - from);
      o += sr->start[j] + 1 - from;
      c[o++] = ']';
      from = sr->end[j];
    }
    memcpy(c + o, s + from, n - from);
    o += n - from;
    SF_CHECK(o == keep);
    root = cJSON_ParseWithLength(c, keep);
    free(c);
  }
  if (!root) sf__errf(err, SF_ENOMEM, "out of memory parsing the JSON body");
  return root;
}

/* ---- tensor data from the text -------------------------------------------------------------- */
static const char *shape_str(int rank, const int64_t *dims, char *buf, size_t cap) {
  size_t o = (size_t)snprintf(buf, cap, "[");
  for (int d = 0; d < rank && o < cap; d++)
    o += (size_t)snprintf(buf + o, cap - o, "%s%lld", d ? "," : "", (long long)dims[d]);
  if (o < cap) snprintf(buf + o, cap - o, "]");
  return buf;
}

/* Exactly rounded double of a JSON number token (validated by the scanner). */
static int token_double(const char *s, size_t a, size_t e, double *out) {
  size_t p = a;
  int neg = s[p] == '-';
  p += (size_t)neg;
  uint64_t m = 0;
  int digits = 0, scale = 0, fast = 1;
  for (; p < e && is_digit(s[p]); p++) {
    if (digits < 19) {
      m = m * 10 + (uint64_t)(s[p] - '0');
      digits += m != 0;
    } else {
      fast = 0;
    }
  }
  if (p < e && s[p] == '.')
    for (p++; p < e && is_digit(s[p]); p++) {
      if (digits < 19) {
        m = m * 10 + (uint64_t)(s[p] - '0');
        digits += m != 0;
        scale--;
      } else {
        fast = 0;
      }
    }
  if (p < e && (s[p] == 'e' || s[p] == 'E')) {
    p++;
    int eneg = s[p] == '-';
    if (s[p] == '+' || s[p] == '-') p++;
    long x = 0;
    for (; p < e && is_digit(s[p]); p++)
      if (x < 100000) x = x * 10 + (s[p] - '0');
    scale += (int)(eneg ? -x : x);
  }
  if (fast && m == 0) {
    *out = neg ? -0.0 : 0.0;
    return 0;
  }
  if (fast && m <= ((uint64_t)1 << 53) && scale >= -22 && scale <= 22) {
    double v = (double)m;
    v = scale < 0 ? v / p10[-scale] : v * p10[scale];
    *out = neg ? -v : v;
    return 0;
  }
  char sbuf[128], *buf = e - a < sizeof sbuf ? sbuf : sf__malloc(e - a + 1);
  if (!buf) return -1;
  memcpy(buf, s + a, e - a);
  buf[e - a] = 0;
  *out = strtod(buf, NULL);
  if (buf != sbuf) free(buf);
  return 0;
}

/* Read one value token at s[*pp] (end of the data array at b) into element i of t. */
static int read_value(const char *s, size_t *pp, size_t b, const sf_tensor *t, int64_t i,
                      const char *k, sf_err *err) {
  size_t a = *pp, e = a;
  while (e < b && s[e] != ',' && s[e] != ']' && !is_ws(s[e])) e++;
  *pp = e;
  int tl = (int)(e - a < 40 ? e - a : 40);
  const char *tok = s + a;
  if (s[a] == '[' || s[a] == '{' || s[a] == '"')
    return sf__errf(err, SF_EINVAL, "%s '%s': data[%lld]: expected a %s", k, t->name, (long long)i,
                    t->dtype == SF_BOOL ? "boolean" : "number");
  if (t->dtype == SF_BOOL) {
    int v = match_word(s, e, a, "true") && e - a == 4    ? 1
            : match_word(s, e, a, "false") && e - a == 5 ? 0
                                                         : -1;
    if (v < 0)
      return sf__errf(err, SF_EINVAL, "%s '%s': data[%lld]: '%.*s' is not true or false", k,
                      t->name, (long long)i, tl, tok);
    ((uint8_t *)t->data)[i] = (uint8_t)v;
    return 0;
  }
  if (is_float(t->dtype)) {
    double v;
    if ((e - a == 4 && !memcmp(tok, "null", 4)) || (e - a == 3 && !memcmp(tok, "NaN", 3)))
      v = NAN;
    else if (e - a == 8 && !memcmp(tok, "Infinity", 8))
      v = INFINITY;
    else if (e - a == 9 && !memcmp(tok, "-Infinity", 9))
      v = -INFINITY;
    else if (!(is_digit(tok[0]) || tok[0] == '-') || token_double(s, a, e, &v) < 0)
      return sf__errf(err, SF_EINVAL, "%s '%s': data[%lld]: '%.*s' is not a number", k, t->name,
                      (long long)i, tl, tok);
    if (t->dtype == SF_F64) {
      ((double *)t->data)[i] = v;
    } else if (t->dtype == SF_F32) {
      float f = (float)v;
      if (isinf(f) && isfinite(v))
        return sf__errf(err, SF_EINVAL, "%s '%s': data[%lld]: %.*s is out of the range of FP32", k,
                        t->name, (long long)i, tl, tok);
      ((float *)t->data)[i] = f;
    } else {
      uint16_t h = double_to_half(v);
      if ((h & 0x7fff) == 0x7c00 && isfinite(v))
        return sf__errf(err, SF_EINVAL, "%s '%s': data[%lld]: %.*s is out of the range of FP16", k,
                        t->name, (long long)i, tl, tok);
      ((uint16_t *)t->data)[i] = h;
    }
    return 0;
  }
  /* integers: an integer literal in the datatype's range */
  size_t p = a;
  int neg = s[p] == '-';
  p += (size_t)neg;
  size_t d0 = p;
  uint64_t mag = 0;
  int ovf = 0;
  for (; p < e && is_digit(s[p]); p++) {
    unsigned d = (unsigned)(s[p] - '0');
    if (mag > (UINT64_MAX - d) / 10)
      ovf = 1;
    else
      mag = mag * 10 + d;
  }
  if (p != e || p == d0)
    return sf__errf(err, SF_EINVAL, "%s '%s': data[%lld]: '%.*s' is not an integer", k, t->name,
                    (long long)i, tl, tok);
  int64_t lo;
  uint64_t hi;
  switch (t->dtype) {
    case SF_I8:
      lo = INT8_MIN, hi = INT8_MAX;
      break;
    case SF_I16:
      lo = INT16_MIN, hi = INT16_MAX;
      break;
    case SF_I32:
      lo = INT32_MIN, hi = INT32_MAX;
      break;
    case SF_I64:
      lo = INT64_MIN, hi = INT64_MAX;
      break;
    case SF_U8:
      lo = 0, hi = UINT8_MAX;
      break;
    case SF_U16:
      lo = 0, hi = UINT16_MAX;
      break;
    case SF_U32:
      lo = 0, hi = UINT32_MAX;
      break;
    default:
      lo = 0, hi = UINT64_MAX;
      break;
  }
  int in = !ovf && (neg ? mag == 0 || (lo < 0 && mag <= (uint64_t)0 - (uint64_t)lo) : mag <= hi);
  if (!in)
    return sf__errf(err, SF_EINVAL, "%s '%s': data[%lld]: %.*s is out of the range of %s", k,
                    t->name, (long long)i, tl, tok, sf__kserve_dtype_name(t->dtype));
  uint64_t u = neg ? (uint64_t)0 - mag : mag; /* two's complement */
  switch (t->dtype) {
    case SF_I8:
    case SF_U8:
      ((uint8_t *)t->data)[i] = (uint8_t)u;
      break;
    case SF_I16:
    case SF_U16:
      ((uint16_t *)t->data)[i] = (uint16_t)u;
      break;
    case SF_I32:
    case SF_U32:
      ((uint32_t *)t->data)[i] = (uint32_t)u;
      break;
    default:
      ((uint64_t *)t->data)[i] = u;
      break;
  }
  return 0;
}

/* Values of the data array s[a..b) into t (data allocated for numel elements): flat, or nested
 * exactly like the shape. */
static int read_data(const char *s, size_t a, size_t b, const sf_tensor *t, int64_t numel,
                     const char *k, sf_err *err) {
  char sh[200];
  size_t p = a;
  int depth = 0, rc;
  while (p < b) {
    while (p < b && is_ws(s[p])) p++;
    if (p < b && s[p] == '[') {
      depth++;
      p++;
    } else {
      break;
    }
  }
  int nested = depth > 1, R = nested ? t->rank : 1;
  if (nested && depth != t->rank)
    return sf__errf(err, SF_EINVAL,
                    "%s '%s': data is nested %d deep but the shape %s has rank %d (give the "
                    "values flat or nested like the shape)",
                    k, t->name, depth, shape_str(t->rank, t->dims, sh, sizeof sh), t->rank);
  int64_t cnt[SF_MAX_RANK + 2] = {0}, idx = 0;
  int level = 0;
  for (p = a; p < b;) {
    char c = s[p];
    if (is_ws(c) || c == ',') {
      p++;
    } else if (c == '[') {
      if (level >= R)
        return sf__errf(err, SF_EINVAL,
                        "%s '%s': data: unexpected nested array after %lld values%s", k, t->name,
                        (long long)idx, nested ? "" : " (flat data holds only values)");
      if (level >= 1) cnt[level]++;
      cnt[++level] = 0;
      p++;
    } else if (c == ']') {
      if (nested && cnt[level] != t->dims[level - 1])
        return sf__errf(err, SF_EINVAL,
                        "%s '%s': data: %lld elements along dimension %d (after %lld values) "
                        "where the shape %s has %lld",
                        k, t->name, (long long)cnt[level], level - 1, (long long)idx,
                        shape_str(t->rank, t->dims, sh, sizeof sh), (long long)t->dims[level - 1]);
      level--;
      p++;
    } else {
      if (level != R)
        return sf__errf(err, SF_EINVAL,
                        "%s '%s': data: a value at nesting depth %d (after %lld values), "
                        "expected depth %d",
                        k, t->name, level, (long long)idx, R);
      if (idx >= numel)
        return sf__errf(err, SF_EINVAL, "%s '%s': data has more than the %lld values of shape %s",
                        k, t->name, (long long)numel, shape_str(t->rank, t->dims, sh, sizeof sh));
      if ((rc = read_value(s, &p, b, t, idx, k, err)) < 0) return rc;
      cnt[level]++;
      idx++;
    }
  }
  if (idx != numel)
    return sf__errf(err, SF_EINVAL, "%s '%s': data has %lld values, shape %s needs %lld", k,
                    t->name, (long long)idx, shape_str(t->rank, t->dims, sh, sizeof sh),
                    (long long)numel);
  return 0;
}

/* ---- tensors from the JSON tree ------------------------------------------------------------- */
typedef struct pctx {
  const char *text; /* the JSON part of the body */
  const scan_res *sr;
  const uint8_t *bin; /* binary section still unread */
  size_t bin_left;
  const char *kind, *list; /* "input", "inputs" */
} pctx;

/* A JSON number that is an integer in [0, max]: 0 and *out, else -1. */
static int json_uint(const cJSON *v, double max, int64_t *out) {
  if (!cJSON_IsNumber(v)) return -1;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= max) || d != floor(d)) return -1;
  *out = (int64_t)d;
  return 0;
}

static int parse_tensor(pctx *c, const cJSON *o, int j, sf_tensor *t, int allow_dynamic,
                        sf_err *err) {
  char sh[200];
  const char *k = c->kind;
  if (!cJSON_IsObject(o))
    return sf__errf(err, SF_EFORMAT, "%s[%d]: expected an object", c->list, j);
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
  if (!cJSON_IsString(name) || !name->valuestring[0])
    return sf__errf(err, SF_EFORMAT, "%s[%d].name: expected a non-empty string", c->list, j);
  size_t nl = strlen(name->valuestring);
  if (nl >= SF_KSERVE_MAX_NAME)
    return sf__errf(err, SF_ELIMIT, "%s[%d].name: longer than %d bytes", c->list, j,
                    SF_KSERVE_MAX_NAME - 1);
  if (!(t->name = sf__strdup(name->valuestring))) return sf__errf(err, SF_ENOMEM, "out of memory");
  const char *nm = t->name;
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(o, "datatype");
  if (!cJSON_IsString(dt))
    return sf__errf(err, SF_EFORMAT, "%s '%s': datatype: expected a string", k, nm);
  t->dtype = sf__kserve_dtype(dt->valuestring);
  if (t->dtype == SF_UNDEFINED) {
    if (!strcmp(dt->valuestring, "BYTES") || !strcmp(dt->valuestring, "BF16"))
      return sf__errf(err, SF_EINVAL, "%s '%s': datatype %s is not supported", k, nm,
                      dt->valuestring);
    return sf__errf(err, SF_EINVAL,
                    "%s '%s': datatype '%.40s' unknown (expected one of " DTYPE_LIST ")", k, nm,
                    dt->valuestring);
  }
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(o, "shape");
  if (!cJSON_IsArray(shape))
    return sf__errf(err, SF_EFORMAT, "%s '%s': shape: expected an array of integers", k, nm);
  int rank = cJSON_GetArraySize(shape);
  if (rank > SF_MAX_RANK)
    return sf__errf(err, SF_ELIMIT, "%s '%s': shape has %d dims (at most %d)", k, nm, rank,
                    SF_MAX_RANK);
  t->rank = rank;
  int d = 0;
  for (const cJSON *x = shape->child; x; x = x->next, d++) {
    if (allow_dynamic && cJSON_IsNumber(x) && x->valuedouble == -1) {
      t->dims[d] = -1;
      continue;
    }
    if (json_uint(x, (double)SF_MAX_DIM, &t->dims[d]) < 0) {
      if (cJSON_IsNumber(x) && x->valuedouble < 0)
        return sf__errf(err, SF_EINVAL, "%s '%s': shape[%d] = %g: dims must be >= 0", k, nm, d,
                        x->valuedouble);
      if (cJSON_IsNumber(x) && x->valuedouble > (double)SF_MAX_DIM)
        return sf__errf(err, SF_ELIMIT, "%s '%s': shape[%d] = %g is larger than %lld", k, nm, d,
                        x->valuedouble, (long long)SF_MAX_DIM);
      return sf__errf(err, SF_EFORMAT, "%s '%s': shape[%d]: expected a non-negative integer", k, nm,
                      d);
    }
  }
  if (allow_dynamic) return 0; /* metadata: no data */
  int64_t numel = 1, nbytes;
  for (d = 0; d < rank; d++)
    if (sf__mul_ok(numel, t->dims[d], SF_MAX_TENSOR_BYTES, &numel) < 0)
      return sf__errf(err, SF_ELIMIT, "%s '%s': shape %s has too many elements", k, nm,
                      shape_str(rank, t->dims, sh, sizeof sh));
  if (sf__mul_ok(numel, (int64_t)sf_dtype_size(t->dtype), SF_MAX_TENSOR_BYTES, &nbytes) < 0)
    return sf__errf(err, SF_ELIMIT, "%s '%s': shape %s of %s is larger than %lld bytes", k, nm,
                    shape_str(rank, t->dims, sh, sizeof sh), dt->valuestring,
                    (long long)SF_MAX_TENSOR_BYTES);
  const cJSON *params = cJSON_GetObjectItemCaseSensitive(o, "parameters");
  const cJSON *bsz = NULL;
  if (params) {
    if (!cJSON_IsObject(params))
      return sf__errf(err, SF_EFORMAT, "%s '%s': parameters: expected an object", k, nm);
    bsz = cJSON_GetObjectItemCaseSensitive(params, "binary_data_size");
    if (cJSON_GetObjectItemCaseSensitive(params, "shared_memory_region"))
      return sf__errf(err, SF_EINVAL, "%s '%s': shared memory is not supported", k, nm);
  }
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(o, "data");
  if (bsz && data)
    return sf__errf(err, SF_EINVAL, "%s '%s': both data and parameters.binary_data_size", k, nm);
  if (bsz) {
    int64_t sz;
    if (json_uint(bsz, (double)SF_KSERVE_MAX_BODY, &sz) < 0)
      return sf__errf(err, SF_EINVAL,
                      "%s '%s': parameters.binary_data_size: expected an integer in [0, %zu]", k,
                      nm, SF_KSERVE_MAX_BODY);
    if (sz != nbytes)
      return sf__errf(err, SF_EINVAL,
                      "%s '%s': parameters.binary_data_size is %lld but shape %s of %s takes %lld "
                      "bytes",
                      k, nm, (long long)sz, shape_str(rank, t->dims, sh, sizeof sh),
                      dt->valuestring, (long long)nbytes);
    if ((uint64_t)sz > c->bin_left)
      return sf__errf(err, SF_EINVAL,
                      "%s '%s': parameters.binary_data_size %lld but only %zu bytes of binary data "
                      "are left in the body",
                      k, nm, (long long)sz, c->bin_left);
    if (!(t->data = sf__malloc((size_t)nbytes))) return sf__errf(err, SF_ENOMEM, "out of memory");
    memcpy(t->data, c->bin, (size_t)nbytes);
    c->bin += nbytes;
    c->bin_left -= (size_t)nbytes;
    if (t->dtype == SF_BOOL)
      for (int64_t i = 0; i < nbytes; i++)
        if (((uint8_t *)t->data)[i] > 1)
          return sf__errf(err, SF_EINVAL,
                          "%s '%s': binary BOOL element %lld is %u (must be 0 or 1)", k, nm,
                          (long long)i, ((uint8_t *)t->data)[i]);
    return 0;
  }
  if (!data)
    return sf__errf(err, SF_EINVAL,
                    "%s '%s': no data (give \"data\" or parameters.binary_data_size)", k, nm);
  if (!cJSON_IsArray(data) || !c->sr->has[j])
    return sf__errf(err, SF_EFORMAT, "%s '%s': data: expected an array", k, nm);
  size_t a = c->sr->start[j], b = c->sr->end[j];
  /* every value takes at least 2 characters ("1,"): bound the allocation by the text */
  if (numel > (int64_t)((b - a) / 2))
    return sf__errf(err, SF_EINVAL, "%s '%s': data has fewer values than the %lld of shape %s", k,
                    nm, (long long)numel, shape_str(rank, t->dims, sh, sizeof sh));
  if (!(t->data = sf__malloc((size_t)nbytes))) return sf__errf(err, SF_ENOMEM, "out of memory");
  return read_data(c->text, a, b, t, numel, k, err);
}

/* The tensor list under key c->list: count and duplicates checked. */
static int parse_list(pctx *c, const cJSON *root, int required, sf_tensor *ts, int *n,
                      sf_err *err) {
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(root, c->list);
  int rc;
  *n = 0;
  if (!l) {
    if (required) return sf__errf(err, SF_EFORMAT, "%s: missing", c->list);
    return 0;
  }
  if (!cJSON_IsArray(l)) return sf__errf(err, SF_EFORMAT, "%s: expected an array", c->list);
  int cnt = cJSON_GetArraySize(l);
  if (cnt > SF_KSERVE_MAX_TENSORS)
    return sf__errf(err, SF_ELIMIT, "%s: %d tensors (at most %d)", c->list, cnt,
                    SF_KSERVE_MAX_TENSORS);
  if (required && cnt == 0) return sf__errf(err, SF_EINVAL, "%s: empty", c->list);
  int j = 0;
  for (const cJSON *o = l->child; o; o = o->next, j++) {
    rc = parse_tensor(c, o, j, &ts[j], 0, err);
    *n = j + 1; /* owned by the caller from here, for cleanup */
    if (rc < 0) return rc;
    for (int i = 0; i < j; i++)
      if (!strcmp(ts[i].name, ts[j].name))
        return sf__errf(err, SF_EINVAL, "%s: duplicate name '%s'", c->list, ts[j].name);
  }
  if (c->bin_left)
    return sf__errf(err, SF_EINVAL,
                    "%zu bytes of binary data after the JSON are not claimed by any "
                    "parameters.binary_data_size",
                    c->bin_left);
  return 0;
}

/* Shared start: body bounds, header length, JSON scan and parse. */
static cJSON *open_body(const uint8_t *body, size_t len, long header_len, const char *list,
                        scan_res *sr, pctx *c, sf_err *err) {
  if (len > SF_KSERVE_MAX_BODY) {
    sf__errf(err, SF_ELIMIT, "body of %zu bytes (at most %zu)", len, SF_KSERVE_MAX_BODY);
    return NULL;
  }
  if (!body) len = 0;
  size_t jl = len;
  if (header_len < -1) {
    sf__errf(err, SF_EINVAL, "Inference-Header-Content-Length %ld is negative", header_len);
    return NULL;
  }
  if (header_len >= 0) {
    if ((size_t)header_len > len) {
      sf__errf(err, SF_EINVAL,
               "Inference-Header-Content-Length %ld is larger than the body (%zu bytes)",
               header_len, len);
      return NULL;
    }
    jl = (size_t)header_len;
  }
  if (jl == 0) {
    sf__errf(err, SF_EFORMAT, "empty body: expected a JSON object");
    return NULL;
  }
  c->text = (const char *)body;
  c->sr = sr;
  c->bin = body + jl;
  c->bin_left = len - jl;
  return parse_doc((const char *)body, jl, list, sr, err);
}

static int get_string(const cJSON *root, const char *key, char *out, size_t cap, sf_err *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  out[0] = 0;
  if (!v) return 0;
  if (!cJSON_IsString(v)) return sf__errf(err, SF_EFORMAT, "%s: expected a string", key);
  if (strlen(v->valuestring) >= cap)
    return sf__errf(err, SF_ELIMIT, "%s: longer than %zu bytes", key, cap - 1);
  strcpy(out, v->valuestring);
  return 0;
}

/* A boolean parameter: 0/1, -1 when absent, -2 (error set) when not a boolean. */
static int get_bool_param(const cJSON *params, const char *key, const char *where, sf_err *err) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, key);
  if (!v) return -1;
  if (!cJSON_IsBool(v)) {
    sf__errf(err, SF_EFORMAT, "%sparameters.%s: expected true or false", where, key);
    return -2;
  }
  return cJSON_IsTrue(v);
}

void sf__kserve_req_deinit(sf_kserve_req *r) {
  if (!r) return;
  for (int i = 0; i < r->n_inputs; i++) {
    free(r->inputs[i].name);
    free(r->inputs[i].data);
  }
  memset(r, 0, sizeof *r);
}

int sf__kserve_parse_request(const uint8_t *body, size_t len, long header_len, sf_kserve_req *r,
                             sf_err *err) {
  scan_res sr;
  pctx c = {.kind = "input", .list = "inputs"};
  int rc;
  memset(r, 0, sizeof *r);
  cJSON *root = open_body(body, len, header_len, "inputs", &sr, &c, err);
  if (!root) return err ? err->code : SF_EFORMAT;
  if ((rc = get_string(root, "id", r->id, sizeof r->id, err)) < 0) goto fail;
  const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
  if (params) {
    if (!cJSON_IsObject(params)) {
      rc = sf__errf(err, SF_EFORMAT, "parameters: expected an object");
      goto fail;
    }
    int b = get_bool_param(params, "binary_data_output", "", err);
    if (b == -2) {
      rc = err ? err->code : SF_EFORMAT;
      goto fail;
    }
    r->binary_default = b == 1;
  }
  const cJSON *outs = cJSON_GetObjectItemCaseSensitive(root, "outputs");
  if (outs) {
    if (!cJSON_IsArray(outs)) {
      rc = sf__errf(err, SF_EFORMAT, "outputs: expected an array");
      goto fail;
    }
    if (cJSON_GetArraySize(outs) > SF_KSERVE_MAX_TENSORS) {
      rc = sf__errf(err, SF_ELIMIT, "outputs: more than %d requested", SF_KSERVE_MAX_TENSORS);
      goto fail;
    }
    int k = 0;
    for (const cJSON *o = outs->child; o; o = o->next, k++) {
      const cJSON *nm = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, "name") : NULL;
      if (!cJSON_IsString(nm) || !nm->valuestring[0]) {
        rc = sf__errf(err, SF_EFORMAT, "outputs[%d].name: expected a non-empty string", k);
        goto fail;
      }
      if (strlen(nm->valuestring) >= SF_KSERVE_MAX_NAME) {
        rc = sf__errf(err, SF_ELIMIT, "outputs[%d].name: longer than %d bytes", k,
                      SF_KSERVE_MAX_NAME - 1);
        goto fail;
      }
      for (int i = 0; i < k; i++)
        if (!strcmp(r->outputs[i].name, nm->valuestring)) {
          rc = sf__errf(err, SF_EINVAL, "outputs: '%s' requested twice", nm->valuestring);
          goto fail;
        }
      strcpy(r->outputs[k].name, nm->valuestring);
      r->outputs[k].binary = -1;
      const cJSON *op = cJSON_GetObjectItemCaseSensitive(o, "parameters");
      if (op) {
        char where[300];
        snprintf(where, sizeof where, "output '%s': ", nm->valuestring);
        if (!cJSON_IsObject(op)) {
          rc = sf__errf(err, SF_EFORMAT, "%sparameters: expected an object", where);
          goto fail;
        }
        int b = get_bool_param(op, "binary_data", where, err);
        if (b == -2) {
          rc = err ? err->code : SF_EFORMAT;
          goto fail;
        }
        r->outputs[k].binary = b;
      }
      r->n_outputs = k + 1;
    }
    for (int i = 0; i < r->n_outputs; i++)
      if (r->outputs[i].binary < 0) r->outputs[i].binary = r->binary_default;
  }
  if ((rc = parse_list(&c, root, 1, r->inputs, &r->n_inputs, err)) < 0) goto fail;
  cJSON_Delete(root);
  return 0;
fail:
  cJSON_Delete(root);
  sf__kserve_req_deinit(r);
  return rc;
}

void sf__kserve_resp_deinit(sf_kserve_resp *r) {
  if (!r) return;
  for (int i = 0; i < r->n_outputs; i++) {
    free(r->outputs[i].name);
    free(r->outputs[i].data);
  }
  memset(r, 0, sizeof *r);
}

int sf__kserve_parse_response(const uint8_t *body, size_t len, long header_len, sf_kserve_resp *r,
                              sf_err *err) {
  scan_res sr;
  pctx c = {.kind = "output", .list = "outputs"};
  int rc;
  memset(r, 0, sizeof *r);
  cJSON *root = open_body(body, len, header_len, "outputs", &sr, &c, err);
  if (!root) return err ? err->code : SF_EFORMAT;
  if ((rc = get_string(root, "model_name", r->model_name, sizeof r->model_name, err)) < 0 ||
      (rc = get_string(root, "model_version", r->model_version, sizeof r->model_version, err)) <
          0 ||
      (rc = get_string(root, "id", r->id, sizeof r->id, err)) < 0 ||
      (rc = parse_list(&c, root, 0, r->outputs, &r->n_outputs, err)) < 0)
    goto fail;
  if (!cJSON_GetObjectItemCaseSensitive(root, "outputs")) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    rc = cJSON_IsString(e) ? sf__errf(err, SF_EINVAL, "error: %.900s", e->valuestring)
                           : sf__errf(err, SF_EFORMAT, "outputs: missing");
    goto fail;
  }
  cJSON_Delete(root);
  return 0;
fail:
  cJSON_Delete(root);
  sf__kserve_resp_deinit(r);
  return rc;
}

void sf__kserve_meta_deinit(sf_kserve_meta *m) {
  if (!m) return;
  for (int i = 0; i < m->n_inputs; i++) free(m->inputs[i].name);
  for (int i = 0; i < m->n_outputs; i++) free(m->outputs[i].name);
  memset(m, 0, sizeof *m);
}

static int parse_meta_list(const cJSON *root, const char *key, const char *kind, sf_tensor *ts,
                           int *n, sf_err *err) {
  pctx c = {.kind = kind, .list = key};
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(root, key);
  *n = 0;
  if (!l) return 0;
  if (!cJSON_IsArray(l)) return sf__errf(err, SF_EFORMAT, "%s: expected an array", key);
  if (cJSON_GetArraySize(l) > SF_KSERVE_MAX_TENSORS)
    return sf__errf(err, SF_ELIMIT, "%s: more than %d tensors", key, SF_KSERVE_MAX_TENSORS);
  int j = 0, rc;
  for (const cJSON *o = l->child; o; o = o->next, j++) {
    rc = parse_tensor(&c, o, j, &ts[j], 1, err);
    *n = j + 1;
    if (rc < 0) return rc;
  }
  return 0;
}

int sf__kserve_parse_metadata(const uint8_t *body, size_t len, sf_kserve_meta *m, sf_err *err) {
  scan_res sr;
  int rc;
  memset(m, 0, sizeof *m);
  if (!body || !len || len > SF_KSERVE_MAX_BODY)
    return sf__errf(err, SF_EFORMAT, "metadata: body of %zu bytes", body ? len : 0);
  cJSON *root = parse_doc((const char *)body, len, NULL, &sr, err);
  if (!root) return err ? err->code : SF_EFORMAT;
  if ((rc = get_string(root, "name", m->name, sizeof m->name, err)) < 0) goto fail;
  const cJSON *vs = cJSON_GetObjectItemCaseSensitive(root, "versions");
  if (vs) {
    if (!cJSON_IsArray(vs) || (vs->child && !cJSON_IsString(vs->child))) {
      rc = sf__errf(err, SF_EFORMAT, "versions: expected an array of strings");
      goto fail;
    }
    if (vs->child) snprintf(m->version, sizeof m->version, "%s", vs->child->valuestring);
  }
  if ((rc = parse_meta_list(root, "inputs", "input", m->inputs, &m->n_inputs, err)) < 0 ||
      (rc = parse_meta_list(root, "outputs", "output", m->outputs, &m->n_outputs, err)) < 0)
    goto fail;
  cJSON_Delete(root);
  return 0;
fail:
  cJSON_Delete(root);
  sf__kserve_meta_deinit(m);
  return rc;
}
