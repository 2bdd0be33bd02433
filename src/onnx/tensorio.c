/* Tensor I/O: ONNX TensorProto (decoded by protobuf-c) and NumPy .npy files <-> sf_tensor.
 *
 * Everything read from outside is bounded before allocation: rank <= SF_MAX_RANK, each dim in
 * [0, SF_MAX_DIM], total bytes <= SF_MAX_TENSOR_BYTES, npy header <= NPY_MAX_HEADER bytes.
 * Data buffers are malloc'ed with SF_READ_SLACK zero bytes after the data. Cost: one copy of
 * the data per conversion. Host byte order is little-endian (checked at compile time), as are
 * raw_data and the .npy files we accept.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "onnx/onnx.h"
#include "onnx/onnx.pb-c.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "seifer's tensor I/O assumes a little-endian host"
#endif

#define NPY_MAX_HEADER (1 << 16)
/* Largest file sf__tensor_load_file reads: the largest tensor plus room for the header. */
#define TENSOR_FILE_MAX (SF_MAX_TENSOR_BYTES + (1 << 20))

void sf__tensor_deinit(sf_tensor *t) {
  if (!t) return;
  free(t->name);
  free(t->data);
  t->name = NULL;
  t->data = NULL;
}

/* Data buffer of nbytes plus zeroed read slack. */
static void *alloc_data(int64_t nbytes) {
  char *p = sf__malloc((size_t)nbytes + SF_READ_SLACK);
  if (p) memset(p + nbytes, 0, SF_READ_SLACK);
  return p;
}

/* Validate rank/dims/dtype and compute the byte size. `what` names the tensor in errors. */
static int check_shape(const char *what, int dtype, size_t rank, const int64_t *dims,
                       int64_t *numel, int64_t *nbytes, sf_err *err) {
  size_t es = sf_dtype_size(dtype);
  if (dtype == SF_STRING)
    return sf__errf(err, SF_EUNSUPPORTED, "%s: string tensors are not supported", what);
  if (!es) {
    if (dtype == 14 || dtype == 15 || dtype == 16)
      return sf__errf(err, SF_EUNSUPPORTED, "%s: data type %d (complex/bfloat16) is not supported",
                      what, dtype);
    return sf__errf(err, SF_EFORMAT, "%s: invalid data type %d", what, dtype);
  }
  if (rank > SF_MAX_RANK)
    return sf__errf(err, SF_ELIMIT, "%s: rank %zu exceeds the limit of %d", what, rank,
                    SF_MAX_RANK);
  int64_t n = 1;
  for (size_t i = 0; i < rank; i++) {
    if (dims[i] < 0)
      return sf__errf(err, SF_EFORMAT, "%s: negative dimension %lld", what, (long long)dims[i]);
    if (dims[i] > SF_MAX_DIM)
      return sf__errf(err, SF_ELIMIT, "%s: dimension %lld exceeds the limit of %lld", what,
                      (long long)dims[i], (long long)SF_MAX_DIM);
    if (sf__mul_ok(n, dims[i], SF_MAX_TENSOR_BYTES, &n))
      return sf__errf(err, SF_ELIMIT, "%s: more than %lld elements", what,
                      (long long)SF_MAX_TENSOR_BYTES);
  }
  int64_t nb;
  if (sf__mul_ok(n, (int64_t)es, SF_MAX_TENSOR_BYTES, &nb))
    return sf__errf(err, SF_ELIMIT, "%s: %lld elements of %s exceed the %lld-byte tensor limit",
                    what, (long long)n, sf_dtype_name(dtype), (long long)SF_MAX_TENSOR_BYTES);
  *numel = n;
  *nbytes = nb;
  return 0;
}

static void normalise_bool(uint8_t *p, int64_t n) {
  for (int64_t i = 0; i < n; i++) p[i] = p[i] != 0;
}

/* ---- TensorProto ------------------------------------------------------------------------ */

/* Strict non-negative decimal (at most 18 digits). */
static int parse_u63(const char *s, int64_t *out) {
  if (!s || !*s) return -1;
  int64_t v = 0;
  int nd = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || ++nd > 18) return -1;
    v = v * 10 + (*s - '0');
  }
  *out = v;
  return 0;
}

/* A relative path without ".." components. */
static int safe_relpath(const char *p) {
  if (!p[0] || p[0] == '/' || p[0] == '\\') return 0;
  if (strlen(p) > SF_MAX_NAME) return 0;
  const char *c = p;
  while (*c) {
    size_t n = strcspn(c, "/\\");
    if (n == 2 && c[0] == '.' && c[1] == '.') return 0;
    c += n;
    if (*c) c++;
  }
  return 1;
}

static int read_external(const Onnx__TensorProto *tp, const char *base_dir, const char *what,
                         void *data, int64_t nbytes, sf_err *err) {
  const char *loc = NULL;
  int64_t off = 0, length = -1;
  for (size_t i = 0; i < tp->n_external_data; i++) {
    const Onnx__StringStringEntryProto *e = tp->external_data[i];
    if (!e->key) continue;
    if (!strcmp(e->key, "location")) {
      loc = e->value;
    } else if (!strcmp(e->key, "offset")) {
      if (parse_u63(e->value, &off))
        return sf__errf(err, SF_EFORMAT, "%s: invalid external data offset '%.64s'", what,
                        e->value ? e->value : "");
    } else if (!strcmp(e->key, "length")) {
      if (parse_u63(e->value, &length))
        return sf__errf(err, SF_EFORMAT, "%s: invalid external data length '%.64s'", what,
                        e->value ? e->value : "");
    }
  }
  if (!loc || !loc[0])
    return sf__errf(err, SF_EFORMAT, "%s: external data without a location", what);
  if (!safe_relpath(loc))
    return sf__errf(err, SF_EFORMAT,
                    "%s: external data location '%.256s' rejected (must be a relative path "
                    "inside the model's directory, without '..')",
                    what, loc);
  if (!base_dir)
    return sf__errf(err, SF_EUNSUPPORTED,
                    "%s: external data '%.256s' needs the model's directory (model loaded from a "
                    "buffer)",
                    what, loc);
  if (length >= 0 && length != nbytes)
    return sf__errf(err, SF_EFORMAT, "%s: external data length %lld, expected %lld bytes", what,
                    (long long)length, (long long)nbytes);
  size_t pl = strlen(base_dir) + strlen(loc) + 2;
  char *path = sf__malloc(pl);
  if (!path) return sf__errf(err, SF_ENOMEM, "out of memory");
  snprintf(path, pl, "%s/%s", base_dir, loc);
  int rc = 0;
  FILE *f = fopen(path, "rb");
  struct stat st;
  if (!f) {
    rc = sf__errf(err, SF_EIO, "%s: cannot open external data file '%s': %s", what, path,
                  strerror(errno));
    goto out;
  }
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    rc = sf__errf(err, SF_EIO, "%s: external data '%s' is not a regular file", what, path);
    goto out;
  }
  if (off > (int64_t)st.st_size || nbytes > (int64_t)st.st_size - off) {
    rc = sf__errf(err, SF_EFORMAT,
                  "%s: external data file '%s' has %lld bytes; the tensor needs %lld at offset "
                  "%lld",
                  what, path, (long long)st.st_size, (long long)nbytes, (long long)off);
    goto out;
  }
  if (fseeko(f, (off_t)off, SEEK_SET) != 0 ||
      (nbytes && fread(data, 1, (size_t)nbytes, f) != (size_t)nbytes)) {
    rc = sf__errf(err, SF_EIO, "%s: cannot read external data file '%s'", what, path);
    goto out;
  }
out:
  if (f) fclose(f);
  free(path);
  return rc;
}

/* Copy `n` typed values into data converting to the element type. */
#define COPY_TYPED(SRC, DT)                                          \
  do {                                                               \
    DT *d_ = (DT *)data;                                             \
    for (int64_t i_ = 0; i_ < numel; i_++) d_[i_] = (DT)(SRC)[i_];   \
  } while (0)

int sf__tensorproto_decode(const Onnx__TensorProto *tp, const char *base_dir, sf_tensor *t,
                           sf_err *err) {
  memset(t, 0, sizeof *t);
  const char *name = tp->name ? tp->name : "";
  char what[160];
  snprintf(what, sizeof what, "tensor '%.120s'", name[0] ? name : "(unnamed)");
  if (strlen(name) > SF_MAX_NAME)
    return sf__errf(err, SF_ELIMIT, "tensor name longer than %d bytes", SF_MAX_NAME);
  int dtype = tp->has_data_type ? tp->data_type : 0;
  int64_t numel = 0, nbytes = 0;
  int rc = check_shape(what, dtype, tp->n_dims, tp->dims, &numel, &nbytes, err);
  if (rc) return rc;
  if (tp->segment)
    return sf__errf(err, SF_EUNSUPPORTED, "%s: segmented tensors are not supported", what);
  void *data = alloc_data(nbytes);
  char *nm = sf__strdup(name);
  if (!data || !nm) {
    rc = sf__errf(err, SF_ENOMEM, "%s: cannot allocate %lld bytes", what, (long long)nbytes);
    goto err;
  }
  if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
    rc = read_external(tp, base_dir, what, data, nbytes, err);
    if (rc) goto err;
  } else if (tp->has_raw_data) {
    if ((int64_t)tp->raw_data.len != nbytes) {
      rc = sf__errf(err, SF_EFORMAT,
                    "%s: raw_data has %zu bytes, expected %lld (%lld elements of %s)", what,
                    tp->raw_data.len, (long long)nbytes, (long long)numel,
                    sf_dtype_name(dtype));
      goto err;
    }
    if (nbytes) memcpy(data, tp->raw_data.data, (size_t)nbytes);
  } else {
    size_t have;
    const char *field;
    switch (dtype) {
      case SF_F32: have = tp->n_float_data; field = "float_data"; break;
      case SF_F64: have = tp->n_double_data; field = "double_data"; break;
      case SF_I64: have = tp->n_int64_data; field = "int64_data"; break;
      case SF_U32: case SF_U64: have = tp->n_uint64_data; field = "uint64_data"; break;
      default: have = tp->n_int32_data; field = "int32_data"; break;
    }
    if ((int64_t)have != numel) {
      rc = sf__errf(err, SF_EFORMAT, "%s: %s holds %zu values, expected %lld (shape product)",
                    what, field, have, (long long)numel);
      goto err;
    }
    if (numel) {
      switch (dtype) {
        case SF_F32: memcpy(data, tp->float_data, (size_t)nbytes); break;
        case SF_F64: memcpy(data, tp->double_data, (size_t)nbytes); break;
        case SF_I64: memcpy(data, tp->int64_data, (size_t)nbytes); break;
        case SF_U64: memcpy(data, tp->uint64_data, (size_t)nbytes); break;
        case SF_U32: COPY_TYPED(tp->uint64_data, uint32_t); break;
        case SF_I32: memcpy(data, tp->int32_data, (size_t)nbytes); break;
        case SF_I16: COPY_TYPED(tp->int32_data, int16_t); break;
        case SF_U16: case SF_F16: COPY_TYPED(tp->int32_data, uint16_t); break;
        case SF_I8: COPY_TYPED(tp->int32_data, int8_t); break;
        case SF_U8: case SF_BOOL: COPY_TYPED(tp->int32_data, uint8_t); break;
        default:
          rc = sf__errf(err, SF_EINTERNAL, "%s: unhandled data type %d", what, dtype);
          goto err;
      }
    }
  }
  if (dtype == SF_BOOL) normalise_bool(data, numel);
  t->name = nm;
  t->dtype = dtype;
  t->rank = (int)tp->n_dims;
  for (size_t i = 0; i < tp->n_dims; i++) t->dims[i] = tp->dims[i];
  t->layout = SF_LAYOUT_PLAIN;
  t->data = data;
  return 0;
err:
  free(data);
  free(nm);
  return rc;
}

int sf__tensorproto_encode(const sf_tensor *t, Onnx__TensorProto *tp, sf_err *err) {
  static uint8_t empty[1];
  const char *nm = t->name ? t->name : "";
  if (t->layout != SF_LAYOUT_PLAIN)
    return sf__errf(err, SF_EINVAL, "tensor '%s': cannot serialize a channels-last tensor", nm);
  if (t->rank < 0 || t->rank > SF_MAX_RANK)
    return sf__errf(err, SF_EINVAL, "tensor '%s': invalid rank %d", nm, t->rank);
  if (!sf_dtype_size(t->dtype))
    return sf__errf(err, SF_EUNSUPPORTED, "tensor '%s': cannot serialize data type %s", nm,
                    sf_dtype_name(t->dtype));
  int64_t nb = sf_tensor_nbytes(t);
  if (nb < 0)
    return sf__errf(err, SF_EINVAL, "tensor '%s': cannot serialize an unknown shape", nm);
  if (nb && !t->data) return sf__errf(err, SF_EINVAL, "tensor '%s': has no data", nm);
  tp->name = (char *)nm;
  tp->has_data_type = 1;
  tp->data_type = t->dtype;
  tp->n_dims = (size_t)t->rank;
  tp->dims = (int64_t *)t->dims;
  tp->has_raw_data = 1;
  tp->raw_data.len = (size_t)nb;
  tp->raw_data.data = nb ? (uint8_t *)t->data : empty;
  return 0;
}

int sf__tensorproto_parse(const void *buf, size_t len, sf_tensor *t, sf_err *err) {
  memset(t, 0, sizeof *t);
  Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, len, buf);
  if (!tp) return sf__errf(err, SF_EFORMAT, "not a valid ONNX TensorProto (truncated or corrupt)");
  int rc = sf__tensorproto_decode(tp, NULL, t, err);
  onnx__tensor_proto__free_unpacked(tp, NULL);
  return rc;
}

int sf__tensorproto_serialize(const sf_tensor *t, void **buf, size_t *len, sf_err *err) {
  Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
  int rc = sf__tensorproto_encode(t, &tp, err);
  if (rc) return rc;
  size_t n = onnx__tensor_proto__get_packed_size(&tp);
  uint8_t *p = sf__malloc(n);
  if (!p) return sf__errf(err, SF_ENOMEM, "cannot allocate %zu bytes", n);
  size_t w = onnx__tensor_proto__pack(&tp, p);
  if (w != n) {
    free(p);
    return sf__errf(err, SF_EINTERNAL, "TensorProto packing wrote %zu of %zu bytes", w, n);
  }
  *buf = p;
  *len = n;
  return 0;
}

/* ---- .npy -------------------------------------------------------------------------------- */

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

static const struct {
  char kind;
  int size;
  int dtype;
} npy_types[] = {
    {'f', 4, SF_F32}, {'f', 8, SF_F64}, {'f', 2, SF_F16}, {'i', 8, SF_I64}, {'i', 4, SF_I32},
    {'i', 2, SF_I16}, {'i', 1, SF_I8},  {'u', 1, SF_U8},  {'u', 2, SF_U16}, {'u', 4, SF_U32},
    {'u', 8, SF_U64}, {'b', 1, SF_BOOL}, {'?', 1, SF_BOOL},
};

/* Cursor over the header text (a Python dict literal). */
typedef struct npy_cur {
  const char *p, *end;
} npy_cur;

static void npy_ws(npy_cur *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}
static int npy_eat(npy_cur *c, char ch) {
  npy_ws(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}
/* Quoted string into out (bounded). */
static int npy_str(npy_cur *c, char *out, size_t cap) {
  npy_ws(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return -1;
  char q = *c->p++;
  size_t n = 0;
  while (c->p < c->end && *c->p != q) {
    if (n + 1 >= cap) return -1;
    out[n++] = *c->p++;
  }
  if (c->p >= c->end) return -1;
  c->p++;
  out[n] = 0;
  return 0;
}
static int npy_word(npy_cur *c, const char *w) {
  npy_ws(c);
  size_t n = strlen(w);
  if ((size_t)(c->end - c->p) >= n && !memcmp(c->p, w, n)) {
    c->p += n;
    return 1;
  }
  return 0;
}
/* Non-negative integer, possibly with a Python 2 'L' suffix; -1 if malformed or > SF_MAX_DIM. */
static int64_t npy_int(npy_cur *c) {
  npy_ws(c);
  int64_t v = 0;
  int nd = 0;
  while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
    if (++nd > 12) return -2; /* > 10^12: beyond any limit */
    v = v * 10 + (*c->p++ - '0');
  }
  if (!nd) return -1;
  if (c->p < c->end && (*c->p == 'L' || *c->p == 'l')) c->p++;
  return v;
}

int sf__npy_parse(const void *buf, size_t len, sf_tensor *t, sf_err *err) {
  memset(t, 0, sizeof *t);
  const unsigned char *b = buf;
  if (len < 10 || memcmp(b, npy_magic, 6))
    return sf__errf(err, SF_EFORMAT, "not a .npy file (bad magic)");
  int major = b[6];
  size_t hl, hstart;
  if (major == 1) {
    hl = (size_t)b[8] | (size_t)b[9] << 8;
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12) return sf__errf(err, SF_EFORMAT, ".npy file truncated in its header");
    hl = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    hstart = 12;
  } else {
    return sf__errf(err, SF_EUNSUPPORTED, ".npy format version %d.%d is not supported", major,
                    b[7]);
  }
  if (hl > NPY_MAX_HEADER)
    return sf__errf(err, SF_ELIMIT, ".npy header of %zu bytes exceeds the limit of %d", hl,
                    NPY_MAX_HEADER);
  if (hl > len - hstart) return sf__errf(err, SF_EFORMAT, ".npy file truncated in its header");
  npy_cur c = {(const char *)b + hstart, (const char *)b + hstart + hl};
  char descr[32] = "";
  int have_descr = 0, have_shape = 0, fortran = 0;
  int rank = 0;
  int64_t dims[SF_MAX_RANK];
  if (!npy_eat(&c, '{')) goto bad;
  for (;;) {
    if (npy_eat(&c, '}')) break;
    char key[32];
    if (npy_str(&c, key, sizeof key) || !npy_eat(&c, ':')) goto bad;
    if (!strcmp(key, "descr")) {
      if (npy_str(&c, descr, sizeof descr)) {
        return sf__errf(err, SF_EUNSUPPORTED,
                        ".npy dtype is not a simple type (structured arrays are not supported)");
      }
      have_descr = 1;
    } else if (!strcmp(key, "fortran_order")) {
      if (npy_word(&c, "True")) fortran = 1;
      else if (npy_word(&c, "False")) fortran = 0;
      else goto bad;
    } else if (!strcmp(key, "shape")) {
      if (!npy_eat(&c, '(')) goto bad;
      rank = 0;
      for (;;) {
        if (npy_eat(&c, ')')) break;
        int64_t v = npy_int(&c);
        if (v == -1) goto bad;
        if (rank >= SF_MAX_RANK)
          return sf__errf(err, SF_ELIMIT, ".npy array has more than %d dimensions", SF_MAX_RANK);
        if (v < 0 || v > SF_MAX_DIM)
          return sf__errf(err, SF_ELIMIT, ".npy dimension exceeds the limit of %lld",
                          (long long)SF_MAX_DIM);
        dims[rank++] = v;
        if (npy_eat(&c, ')')) break;
        if (!npy_eat(&c, ',')) goto bad;
      }
      have_shape = 1;
    } else {
      goto bad;
    }
    if (npy_eat(&c, '}')) break;
    if (!npy_eat(&c, ',')) goto bad;
  }
  if (!have_descr || !have_shape) goto bad;
  if (fortran)
    return sf__errf(err, SF_EUNSUPPORTED, ".npy array in Fortran order is not supported");
  /* descr: byte order, kind, size */
  char bo = descr[0];
  const char *ty = descr + 1;
  if (bo != '<' && bo != '>' && bo != '|' && bo != '=') {
    bo = '|';
    ty = descr;
  }
  int dtype = 0, esz = 0;
  if (ty[0] && ty[1] && isdigit((unsigned char)ty[1]) && !ty[2]) {
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
      if (npy_types[i].kind == ty[0] && npy_types[i].size == ty[1] - '0') {
        dtype = npy_types[i].dtype;
        esz = npy_types[i].size;
      }
  } else if (ty[0] == '?' && !ty[1]) {
    dtype = SF_BOOL;
    esz = 1;
  }
  if (!dtype || (bo == '>' && esz > 1))
    return sf__errf(err, SF_EUNSUPPORTED, ".npy dtype '%s' is not supported", descr);
  int64_t numel, nbytes;
  int rc = check_shape(".npy array", dtype, (size_t)rank, dims, &numel, &nbytes, err);
  if (rc) return rc;
  size_t off = hstart + hl;
  if ((int64_t)(len - off) != nbytes)
    return sf__errf(err, SF_EFORMAT, ".npy data has %zu bytes, expected %lld (%lld x %s)",
                    len - off, (long long)nbytes, (long long)numel, sf_dtype_name(dtype));
  void *data = alloc_data(nbytes);
  char *nm = sf__strdup("");
  if (!data || !nm) {
    free(data);
    free(nm);
    return sf__errf(err, SF_ENOMEM, "cannot allocate %lld bytes", (long long)nbytes);
  }
  if (nbytes) memcpy(data, b + off, (size_t)nbytes);
  if (dtype == SF_BOOL) normalise_bool(data, numel);
  t->name = nm;
  t->dtype = dtype;
  t->rank = rank;
  for (int i = 0; i < rank; i++) t->dims[i] = dims[i];
  t->layout = SF_LAYOUT_PLAIN;
  t->data = data;
  return 0;
bad:
  return sf__errf(err, SF_EFORMAT, ".npy header is malformed");
}

static const char *npy_descr(int dtype) {
  switch (dtype) {
    case SF_F32: return "<f4";
    case SF_F64: return "<f8";
    case SF_F16: return "<f2";
    case SF_I64: return "<i8";
    case SF_I32: return "<i4";
    case SF_I16: return "<i2";
    case SF_I8: return "|i1";
    case SF_U8: return "|u1";
    case SF_U16: return "<u2";
    case SF_U32: return "<u4";
    case SF_U64: return "<u8";
    case SF_BOOL: return "|b1";
  }
  return NULL;
}

int sf__npy_serialize(const sf_tensor *t, void **buf, size_t *len, sf_err *err) {
  const char *nm = t->name && t->name[0] ? t->name : "(unnamed)";
  const char *descr = npy_descr(t->dtype);
  if (!descr)
    return sf__errf(err, SF_EUNSUPPORTED, "tensor '%s': cannot write data type %s to .npy", nm,
                    sf_dtype_name(t->dtype));
  if (t->layout != SF_LAYOUT_PLAIN)
    return sf__errf(err, SF_EINVAL, "tensor '%s': cannot write a channels-last tensor", nm);
  if (t->rank < 0 || t->rank > SF_MAX_RANK)
    return sf__errf(err, SF_EINVAL, "tensor '%s': invalid rank %d", nm, t->rank);
  int64_t nb = sf_tensor_nbytes(t);
  if (nb < 0) return sf__errf(err, SF_EINVAL, "tensor '%s': unknown shape", nm);
  if (nb && !t->data) return sf__errf(err, SF_EINVAL, "tensor '%s': has no data", nm);
  char hdr[512];
  int o = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  for (int i = 0; i < t->rank; i++)
    o += snprintf(hdr + o, sizeof hdr - (size_t)o, "%lld,%s", (long long)t->dims[i],
                  (t->rank > 1 && i + 1 < t->rank) ? " " : "");
  if (t->rank > 1) o--; /* "(2, 3,)" -> "(2, 3)"; rank 1 keeps "(3,)" */
  o += snprintf(hdr + o, sizeof hdr - (size_t)o, "), }");
  /* pad with spaces and a final newline so that the data starts on a 64-byte boundary */
  size_t total = 10 + (size_t)o + 1;
  size_t pad = (64 - total % 64) % 64;
  size_t hl = (size_t)o + pad + 1;
  size_t n = 10 + hl + (size_t)nb;
  unsigned char *p = sf__malloc(n);
  if (!p) return sf__errf(err, SF_ENOMEM, "cannot allocate %zu bytes", n);
  memcpy(p, npy_magic, 6);
  p[6] = 1;
  p[7] = 0;
  p[8] = (unsigned char)(hl & 0xff);
  p[9] = (unsigned char)(hl >> 8);
  memcpy(p + 10, hdr, (size_t)o);
  memset(p + 10 + o, ' ', pad);
  p[10 + hl - 1] = '\n';
  if (nb) memcpy(p + 10 + hl, t->data, (size_t)nb);
  *buf = p;
  *len = n;
  return 0;
}

/* ---- files ------------------------------------------------------------------------------- */

static int has_suffix(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a >= b && !strcmp(s + a - b, suf);
}

int sf__tensor_load_file(const char *path, sf_tensor *t, sf_err *err) {
  memset(t, 0, sizeof *t);
  void *buf = NULL;
  size_t len = 0;
  int rc = sf__read_file(path, TENSOR_FILE_MAX, &buf, &len, err);
  if (rc) return rc;
  int is_npy = (len >= 6 && !memcmp(buf, npy_magic, 6)) || has_suffix(path, ".npy");
  rc = is_npy ? sf__npy_parse(buf, len, t, err) : sf__tensorproto_parse(buf, len, t, err);
  free(buf);
  if (rc) return sf__errctx(err, rc, "%s", path);
  if (is_npy) {
    /* an .npy file carries no name: use the file name without directory and extension */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (has_suffix(base, ".npy")) n -= 4;
    char *nm = sf__malloc(n + 1);
    if (!nm) {
      sf__tensor_deinit(t);
      return sf__errf(err, SF_ENOMEM, "out of memory");
    }
    memcpy(nm, base, n);
    nm[n] = 0;
    free(t->name);
    t->name = nm;
  }
  return 0;
}

int sf__tensor_save_npy(const char *path, const sf_tensor *t, sf_err *err) {
  void *buf = NULL;
  size_t len = 0;
  int rc = sf__npy_serialize(t, &buf, &len, err);
  if (rc) return sf__errctx(err, rc, "%s", path);
  rc = sf__write_file(path, buf, len, err);
  free(buf);
  return rc;
}
