/* ONNX model and tensor I/O: ModelProto round trips, robustness against truncated and corrupted
 * files, TensorProto and .npy parsing/writing, external data and the loader's rejections. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "onnx/onnx.h"
#include "onnx/onnx.pb-c.h"

#define TESTDATA "/usr/share/libonnx-testdata/data"

/* ---- helpers --------------------------------------------------------------------------- */

static char tmpdir[64];

static int setup_tmp(void **st) {
  (void)st;
  strcpy(tmpdir, "/tmp/sf_unit_onnx_XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}
static int teardown_tmp(void **st) {
  (void)st;
  DIR *d = opendir(tmpdir);
  if (d) {
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)))
      if (e->d_name[0] != '.') {
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
      }
    closedir(d);
  }
  rmdir(tmpdir);
  return 0;
}
static void tmp_path(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "%s/%s", tmpdir, name);
}

static int file_exists(const char *p) {
  struct stat s;
  return stat(p, &s) == 0;
}

static void *read_all(const char *path, size_t *len) {
  void *buf = NULL;
  sf_err e = {0};
  if (sf__read_file(path, (int64_t)1 << 30, &buf, len, &e)) return NULL;
  return buf;
}

static const char *tname(const sf_graph *g, int id) { return id < 0 ? "" : g->tensors[id].t.name; }

static void assert_tensor_equal(const sf_tensor *a, const sf_tensor *b) {
  assert_int_equal(a->dtype, b->dtype);
  assert_int_equal(a->rank, b->rank);
  for (int i = 0; i < a->rank; i++) assert_int_equal(a->dims[i], b->dims[i]);
  int64_t nb = sf_tensor_nbytes(a);
  assert_true(nb >= 0);
  if (nb) assert_memory_equal(a->data, b->data, (size_t)nb);
}

static void assert_attr_equal(const sf_attr *a, const sf_attr *b) {
  assert_string_equal(a->name, b->name);
  assert_int_equal(a->type, b->type);
  switch (a->type) {
    case SF_ATTR_FLOAT: assert_memory_equal(&a->f, &b->f, sizeof a->f); break;
    case SF_ATTR_INT: assert_int_equal(a->i, b->i); break;
    case SF_ATTR_STRING: assert_string_equal(a->s, b->s); break;
    case SF_ATTR_FLOATS:
      assert_int_equal(a->n, b->n);
      if (a->n) assert_memory_equal(a->floats, b->floats, sizeof(float) * (size_t)a->n);
      break;
    case SF_ATTR_INTS:
      assert_int_equal(a->n, b->n);
      if (a->n) assert_memory_equal(a->ints, b->ints, sizeof(int64_t) * (size_t)a->n);
      break;
    case SF_ATTR_STRINGS:
      assert_int_equal(a->n, b->n);
      for (int i = 0; i < a->n; i++) assert_string_equal(a->strings[i], b->strings[i]);
      break;
    case SF_ATTR_TENSOR: assert_tensor_equal(a->tensor, b->tensor); break;
    default: fail_msg("unexpected attribute type %d", a->type);
  }
}

/* Type information of a non-constant tensor. */
static void assert_type_equal(const sf_gtensor *a, const sf_gtensor *b) {
  assert_string_equal(a->t.name, b->t.name);
  assert_int_equal(a->t.dtype, b->t.dtype);
  assert_int_equal(a->shape_known, b->shape_known);
  if (!a->shape_known) return;
  assert_int_equal(a->t.rank, b->t.rank);
  for (int i = 0; i < a->t.rank; i++) {
    assert_int_equal(a->t.dims[i], b->t.dims[i]);
    const char *pa = a->dim_params ? a->dim_params[i] : NULL;
    const char *pb = b->dim_params ? b->dim_params[i] : NULL;
    if (pa || pb) {
      assert_non_null(pa);
      assert_non_null(pb);
      assert_string_equal(pa, pb);
    }
  }
}

/* Structural equality of two loaded graphs: live nodes in stored order, constants read by them,
 * inputs, outputs and the types of intermediate tensors. */
static void assert_graph_equal(const sf_graph *a, const sf_graph *b) {
  assert_int_equal(a->opset, b->opset);
  int ia = 0, ib = 0;
  for (;;) {
    while (ia < a->n_nodes && a->nodes[ia].dead) ia++;
    while (ib < b->n_nodes && b->nodes[ib].dead) ib++;
    if (ia == a->n_nodes || ib == b->n_nodes) break;
    const sf_node *na = &a->nodes[ia++], *nb = &b->nodes[ib++];
    assert_string_equal(na->op_type, nb->op_type);
    assert_string_equal(na->name, nb->name);
    assert_string_equal(na->domain, nb->domain);
    /* trailing omitted inputs/outputs may be dropped by the writer */
    int nia = na->n_in, nib = nb->n_in, noa = na->n_out, nob = nb->n_out;
    while (nia > 0 && na->in[nia - 1] < 0) nia--;
    while (nib > 0 && nb->in[nib - 1] < 0) nib--;
    while (noa > 0 && na->out[noa - 1] < 0) noa--;
    while (nob > 0 && nb->out[nob - 1] < 0) nob--;
    assert_int_equal(nia, nib);
    assert_int_equal(noa, nob);
    for (int i = 0; i < nia; i++) {
      assert_string_equal(tname(a, na->in[i]), tname(b, nb->in[i]));
      if (na->in[i] >= 0 && a->tensors[na->in[i]].kind == SF_TK_CONST) {
        assert_int_equal(b->tensors[nb->in[i]].kind, SF_TK_CONST);
        assert_tensor_equal(&a->tensors[na->in[i]].t, &b->tensors[nb->in[i]].t);
      } else if (na->in[i] >= 0) {
        assert_type_equal(&a->tensors[na->in[i]], &b->tensors[nb->in[i]]);
      }
    }
    for (int i = 0; i < noa; i++) assert_string_equal(tname(a, na->out[i]), tname(b, nb->out[i]));
    assert_int_equal(na->n_attr, nb->n_attr);
    for (int i = 0; i < na->n_attr; i++) assert_attr_equal(&na->attrs[i], &nb->attrs[i]);
  }
  assert_int_equal(ia, a->n_nodes);
  assert_int_equal(ib, b->n_nodes);
  assert_int_equal(a->n_inputs, b->n_inputs);
  for (int i = 0; i < a->n_inputs; i++) {
    assert_int_equal(b->tensors[b->inputs[i]].kind, SF_TK_INPUT);
    assert_type_equal(&a->tensors[a->inputs[i]], &b->tensors[b->inputs[i]]);
  }
  assert_int_equal(a->n_outputs, b->n_outputs);
  for (int i = 0; i < a->n_outputs; i++) {
    const sf_gtensor *ta = &a->tensors[a->outputs[i]], *tb = &b->tensors[b->outputs[i]];
    assert_int_equal(ta->kind, tb->kind);
    if (ta->kind == SF_TK_CONST) assert_tensor_equal(&ta->t, &tb->t);
    else assert_type_equal(ta, tb);
  }
}

static sf_graph *parse_ok(const void *buf, size_t len, const char *base_dir) {
  sf_graph *g = NULL;
  sf_err e = {0};
  int rc = sf__onnx_parse(buf, len, base_dir, &g, &e);
  if (rc) fail_msg("parse failed (%d): %s", rc, e.msg);
  return g;
}

static void *serialize_ok(const sf_graph *g, size_t *len) {
  void *buf = NULL;
  sf_err e = {0};
  int rc = sf__onnx_serialize(g, &buf, len, &e);
  if (rc) fail_msg("serialize failed (%d): %s", rc, e.msg);
  return buf;
}

/* ---- a small model built with the graph API ------------------------------------------- */

static sf_graph *build_small(void) {
  sf_graph *g = sf__graph_new();
  assert_non_null(g);
  g->opset = 13;
  g->ir_version = 8;
  int x = sf__graph_tensor(g, "x");
  int64_t xd[4] = {-1, 3, 4, 4};
  sf__tensor_set_shape(&g->tensors[x], SF_F32, 4, xd);
  g->tensors[x].kind = SF_TK_INPUT;
  g->tensors[x].dim_params = calloc(SF_MAX_RANK, sizeof(char *));
  g->tensors[x].dim_params[0] = strdup("batch");

  int w = sf__graph_tensor(g, "w");
  int64_t wd[4] = {2, 3, 1, 1};
  float wv[6] = {1, -2, 3.5f, 0.25f, -1e-3f, 7};
  assert_int_equal(sf__tensor_set_const(g, w, SF_F32, 4, wd, wv), 0);
  int b = sf__graph_tensor(g, "b");
  int64_t bd[1] = {2};
  float bv[2] = {0.5f, -0.5f};
  assert_int_equal(sf__tensor_set_const(g, b, SF_F32, 1, bd, bv), 0);
  int sh = sf__graph_tensor(g, "shape");
  int64_t shd[1] = {2};
  int64_t shv[2] = {0, -1};
  assert_int_equal(sf__tensor_set_const(g, sh, SF_I64, 1, shd, shv), 0);
  int unused = sf__graph_tensor(g, "unused_const");
  assert_int_equal(sf__tensor_set_const(g, unused, SF_I64, 1, shd, shv), 0);

  int c = sf__graph_tensor(g, "c"), r = sf__graph_tensor(g, "r"), y = sf__graph_tensor(g, "y");
  int64_t cd[4] = {-1, 2, 2, 2};
  sf__tensor_set_shape(&g->tensors[c], SF_F32, 4, cd);

  int cin[3] = {x, w, b}, cout[1] = {c};
  int n0 = sf__graph_add_node(g, "Conv", "conv1", 3, cin, 1, cout);
  sf_node *n = &g->nodes[n0];
  int64_t ks[2] = {1, 1}, strides[2] = {2, 2}, pads[4] = {0, 0, 0, 0};
  sf__node_set_ints(n, "kernel_shape", ks, 2);
  sf__node_set_ints(n, "strides", strides, 2);
  sf__node_set_ints(n, "pads", pads, 4);
  sf__node_set_int(n, "group", 1);
  sf__node_set_string(n, "auto_pad", "NOTSET");

  /* a custom-domain node carrying one attribute of every type and an omitted input */
  int rin[3] = {c, -1, sh}, rout[2] = {r, -1};
  int n1 = sf__graph_add_node(g, "Custom", "", 3, rin, 2, rout);
  n = &g->nodes[n1];
  free(n->domain);
  n->domain = strdup("com.example");
  sf__node_set_float(n, "alpha", 0.125f);
  float fl[3] = {1.5f, -2, INFINITY};
  sf__node_set_floats(n, "fl", fl, 3);
  sf__node_set_ints(n, "empty", NULL, 0);
  sf_attr *a = sf__node_add_attr(n, "names", SF_ATTR_STRINGS);
  a->n = 2;
  a->strings = calloc(2, sizeof(char *));
  a->strings[0] = strdup("one");
  a->strings[1] = strdup("");
  a = sf__node_add_attr(n, "value", SF_ATTR_TENSOR);
  a->tensor = calloc(1, sizeof(sf_tensor));
  a->tensor->name = strdup("value");
  a->tensor->dtype = SF_BOOL;
  a->tensor->rank = 2;
  a->tensor->dims[0] = 1;
  a->tensor->dims[1] = 3;
  a->tensor->data = malloc(3);
  memcpy(a->tensor->data, "\1\0\1", 3);

  int yin[1] = {r}, yout[1] = {y};
  sf__graph_add_node(g, "Relu", "relu", 1, yin, 1, yout);
  int64_t yd[2] = {-1, 16};
  sf__tensor_set_shape(&g->tensors[y], SF_F32, 2, yd);

  /* a dead node must not be written */
  int din[1] = {x}, dout[1] = {sf__graph_tensor(g, "dead_out")};
  int nd = sf__graph_add_node(g, "Relu", "dead", 1, din, 1, dout);
  g->nodes[nd].dead = 1;

  g->inputs = malloc(sizeof(int));
  g->inputs[0] = x;
  g->n_inputs = 1;
  g->outputs = malloc(sizeof(int));
  g->outputs[0] = y;
  g->n_outputs = 1;
  g->tensors[y].is_output = 1;
  return g;
}

static void test_roundtrip_built(void **st) {
  (void)st;
  sf_graph *g = build_small();
  size_t len = 0;
  void *buf = serialize_ok(g, &len);
  sf_graph *h = parse_ok(buf, len, NULL);
  assert_graph_equal(g, h);
  /* the unused constant and the dead node are gone; the generated name survives */
  assert_int_equal(sf__graph_find(h, "unused_const"), -1);
  assert_int_equal(sf__graph_find(h, "dead_out"), -1);
  assert_int_equal(h->n_nodes, 3);
  assert_string_equal(h->nodes[1].name, "Custom_1");
  assert_string_equal(h->nodes[1].domain, "com.example");
  assert_int_equal(h->nodes[1].in[1], -1);
  assert_int_equal(h->nodes[1].n_out, 1); /* trailing omitted output dropped */
  assert_int_equal(h->tensors[sf__graph_find(h, "w")].kind, SF_TK_CONST);
  assert_string_equal(h->tensors[h->inputs[0]].dim_params[0], "batch");
  assert_int_equal(h->tensors[h->inputs[0]].t.dims[0], -1);
  /* value_info of the intermediate 'c' */
  const sf_gtensor *c = &h->tensors[sf__graph_find(h, "c")];
  assert_int_equal(c->shape_known, 1);
  assert_int_equal(c->t.rank, 4);
  assert_int_equal(c->t.dims[1], 2);
  /* serialize(parse(serialize(g))) == serialize(g) byte for byte */
  size_t len2 = 0;
  void *buf2 = serialize_ok(h, &len2);
  assert_int_equal(len, len2);
  assert_memory_equal(buf, buf2, len);
  free(buf);
  free(buf2);
  sf__graph_free(h);

  /* sorted graphs are written in execution order */
  sf_err e = {0};
  assert_int_equal(sf__graph_toposort(g, &e), 0);
  buf = serialize_ok(g, &len);
  h = parse_ok(buf, len, NULL);
  assert_string_equal(h->nodes[0].name, "conv1");
  free(buf);
  sf__graph_free(h);

  /* a compiled (channels-last) graph is refused */
  g->nodes[0].layout = SF_LAYOUT_NHWC;
  assert_int_equal(sf__onnx_serialize(g, &buf, &len, &e), SF_EUNSUPPORTED);
  sf__graph_free(g);
}

/* parse -> serialize -> parse on every conformance model the loader accepts. */
static void test_roundtrip_conformance(void **st) {
  (void)st;
  static const char *const cats[] = {"node", "pytorch-converted", "pytorch-operator", "simple"};
  int done = 0;
  for (size_t c = 0; c < 4; c++) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", TESTDATA, cats[c]);
    DIR *d = opendir(dir);
    if (!d) continue;
    struct dirent *e;
    while ((e = readdir(d))) {
      if (strncmp(e->d_name, "test_", 5)) continue;
      char p[1024];
      snprintf(p, sizeof p, "%s/%s/model.onnx", dir, e->d_name);
      size_t len;
      void *buf = read_all(p, &len);
      if (!buf) continue;
      sf_graph *g = NULL;
      sf_err er = {0};
      if (sf__onnx_parse(buf, len, NULL, &g, &er)) {
        /* only unsupported features may be refused */
        if (er.code != SF_EUNSUPPORTED) fail_msg("%s: %s", p, er.msg);
        free(buf);
        continue;
      }
      size_t l1, l2;
      void *b1 = serialize_ok(g, &l1);
      sf_graph *h = parse_ok(b1, l1, NULL);
      assert_graph_equal(g, h);
      void *b2 = serialize_ok(h, &l2);
      assert_int_equal(l1, l2);
      assert_memory_equal(b1, b2, l1);
      free(b1);
      free(b2);
      sf__graph_free(g);
      sf__graph_free(h);
      free(buf);
      done++;
    }
    closedir(d);
  }
  if (!done) skip();
  print_message("round trip: %d conformance models\n", done);
  assert_true(done > 500);
}

static const char *real_model(void) {
  static const char *const cands[] = {
      TESTDATA "/pytorch-converted/test_Conv2d/model.onnx",
      TESTDATA "/node/test_conv_with_strides_padding/model.onnx",
  };
  for (size_t i = 0; i < 2; i++)
    if (file_exists(cands[i])) return cands[i];
  return NULL;
}

static void test_truncated(void **st) {
  (void)st;
  const char *path = real_model();
  if (!path) skip();
  size_t len;
  unsigned char *buf = read_all(path, &len);
  assert_non_null(buf);
  int failures = 0, cuts = 0;
  for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : len / 97 + 1)) {
    sf_graph *g = NULL;
    sf_err e = {0};
    int rc = sf__onnx_parse(buf, cut, NULL, &g, &e);
    cuts++;
    if (rc) {
      assert_true(rc < 0);
      assert_null(g);
      assert_true(e.msg[0] != 0);
      failures++;
    } else {
      sf__graph_free(g);
    }
  }
  /* almost every cut must be detected (a cut at a field boundary can still decode) */
  print_message("truncation: %d of %d cuts refused\n", failures, cuts);
  assert_true(failures >= cuts * 9 / 10);

  /* through a file: the error names the file */
  char p[256];
  tmp_path(p, sizeof p, "trunc.onnx");
  sf_err e = {0};
  assert_int_equal(sf__write_file(p, buf, len - 7, &e), 0);
  sf_model *m = NULL;
  int rc = sf_model_load(&m, p, &e);
  assert_true(rc < 0);
  assert_null(m);
  assert_non_null(strstr(e.msg, "trunc.onnx"));
  /* empty file and missing file */
  assert_int_equal(sf__write_file(p, buf, 0, &e), 0);
  rc = sf_model_load(&m, p, &e);
  assert_true(rc < 0);
  tmp_path(p, sizeof p, "missing.onnx");
  assert_int_equal(sf_model_load(&m, p, &e), SF_EIO);
  free(buf);
}

static void test_corruption(void **st) {
  (void)st;
  const char *path = real_model();
  if (!path) skip();
  size_t len;
  unsigned char *orig = read_all(path, &len);
  assert_non_null(orig);
  unsigned char *buf = malloc(len);
  uint64_t s = 0x9E3779B97F4A7C15ull;
  int ok = 0;
  for (int v = 0; v < 200; v++) {
    memcpy(buf, orig, len);
    int flips = 1 + v % 8;
    for (int f = 0; f < flips; f++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      size_t at = (size_t)(s % len);
      buf[at] = (unsigned char)(v % 3 == 0 ? 0xff : v % 3 == 1 ? buf[at] ^ (1u << (s >> 60 & 7))
                                                              : (s >> 32));
    }
    sf_graph *g = NULL;
    sf_err e = {0};
    int rc = sf__onnx_parse(buf, len, NULL, &g, &e);
    assert_true(rc <= 0);
    if (!rc) {
      ok++;
      /* whatever decoded must also be writable or refused cleanly */
      void *out = NULL;
      size_t ol = 0;
      if (!sf__onnx_serialize(g, &out, &ol, &e)) free(out);
      sf__graph_free(g);
    } else {
      assert_null(g);
    }
  }
  print_message("corruption: %d of 200 variants still decoded\n", ok);
  free(buf);
  free(orig);
}

/* ---- .npy ------------------------------------------------------------------------------ */

static void npy_roundtrip(int dtype, int rank, const int64_t *dims, const void *data) {
  sf_tensor t = {.name = "t", .dtype = dtype, .rank = rank, .data = (void *)data};
  for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
  void *buf = NULL;
  size_t len = 0;
  sf_err e = {0};
  assert_int_equal(sf__npy_serialize(&t, &buf, &len, &e), 0);
  /* v1.0 header, data 64-byte aligned */
  assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
  size_t hl = ((unsigned char *)buf)[8] | (size_t)((unsigned char *)buf)[9] << 8;
  assert_int_equal((10 + hl) % 64, 0);
  assert_int_equal(((char *)buf)[10 + hl - 1], '\n');
  sf_tensor u;
  assert_int_equal(sf__npy_parse(buf, len, &u, &e), 0);
  assert_tensor_equal(&t, &u);
  sf__tensor_deinit(&u);
  /* through a file; the name comes from the file name */
  char p[256];
  tmp_path(p, sizeof p, "arr.npy");
  assert_int_equal(sf__tensor_save_npy(p, &t, &e), 0);
  assert_int_equal(sf__tensor_load_file(p, &u, &e), 0);
  assert_string_equal(u.name, "arr");
  assert_tensor_equal(&t, &u);
  sf__tensor_deinit(&u);
  free(buf);
}

static void test_npy_roundtrip(void **st) {
  (void)st;
  float f[6] = {1, -2.5f, 3e-8f, INFINITY, -0.0f, 1e30f};
  int64_t d23[2] = {2, 3}, d6[1] = {6}, d0[1] = {0};
  npy_roundtrip(SF_F32, 2, d23, f);
  npy_roundtrip(SF_F32, 1, d6, f);
  npy_roundtrip(SF_F32, 0, NULL, f);
  npy_roundtrip(SF_F32, 1, d0, f);
  int64_t l[6] = {INT64_MIN, -1, 0, 1, INT64_MAX, 42};
  npy_roundtrip(SF_I64, 2, d23, l);
  uint8_t b[6] = {1, 0, 0, 1, 1, 0};
  npy_roundtrip(SF_BOOL, 2, d23, b);
  int64_t d8[8] = {1, 2, 1, 3, 1, 1, 1, 1};
  npy_roundtrip(SF_U8, 8, d8, b);
}

/* An .npy file with the given header text and data size. */
static void *make_npy(const char *hdr, int major, size_t data_len, size_t *len) {
  size_t hl = strlen(hdr), pre = major == 1 ? 10 : 12;
  unsigned char *p = calloc(1, pre + hl + data_len + 1);
  memcpy(p, "\x93NUMPY", 6);
  p[6] = (unsigned char)major;
  p[8] = (unsigned char)(hl & 0xff);
  p[9] = (unsigned char)(hl >> 8);
  memcpy(p + pre, hdr, hl);
  *len = pre + hl + data_len;
  return p;
}

static int npy_rc(const char *hdr, int major, size_t data_len, sf_tensor *t) {
  size_t len;
  void *p = make_npy(hdr, major, data_len, &len);
  sf_err e = {0};
  int rc = sf__npy_parse(p, len, t, &e);
  free(p);
  return rc;
}

static void test_npy_parse(void **st) {
  (void)st;
  sf_tensor t;
  /* key order, spacing, python-2 long suffix, version 2 and 3 */
  assert_int_equal(npy_rc("{'shape': (2L, 3), 'fortran_order': False, 'descr': '<i4'}\n", 1, 24, &t), 0);
  assert_int_equal(t.dtype, SF_I32);
  assert_int_equal(t.rank, 2);
  assert_int_equal(t.dims[1], 3);
  sf__tensor_deinit(&t);
  assert_int_equal(npy_rc("{'descr': '<f2', 'fortran_order': False, 'shape': (4,), }", 2, 8, &t), 0);
  assert_int_equal(t.dtype, SF_F16);
  sf__tensor_deinit(&t);
  assert_int_equal(npy_rc("{'descr': '|b1', 'fortran_order': False, 'shape': (), }", 3, 1, &t), 0);
  assert_int_equal(t.dtype, SF_BOOL);
  assert_int_equal(t.rank, 0);
  sf__tensor_deinit(&t);
  const char *types[] = {"<f8", "<i8", "<i2", "|i1", "|u1", "<u2", "<u4", "<u8"};
  const int sizes[] = {8, 8, 2, 1, 1, 2, 4, 8};
  for (int i = 0; i < 8; i++) {
    char h[128];
    snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (3,), }", types[i]);
    assert_int_equal(npy_rc(h, 1, 3 * (size_t)sizes[i], &t), 0);
    assert_int_equal(sf_dtype_size(t.dtype), sizes[i]);
    sf__tensor_deinit(&t);
  }

  /* absurd shapes are refused before any allocation */
  assert_int_equal(npy_rc("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }", 1, 0, &t), SF_ELIMIT);
  assert_int_equal(npy_rc("{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576), }", 1, 0, &t), SF_ELIMIT);
  assert_int_equal(npy_rc("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", 1, 0, &t), SF_ELIMIT);
  assert_int_equal(npy_rc("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", 1, 4, &t), SF_ELIMIT);
  assert_null(t.data);
  /* unsupported */
  assert_int_equal(npy_rc("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 1, 16, &t), SF_EUNSUPPORTED);
  assert_int_equal(npy_rc("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 1, 8, &t), SF_EUNSUPPORTED);
  assert_int_equal(npy_rc("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 1, 16, &t), SF_EUNSUPPORTED);
  assert_int_equal(npy_rc("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 1, 8, &t), SF_EUNSUPPORTED);
  assert_int_equal(npy_rc("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 4, 8, &t), SF_EUNSUPPORTED);
  /* malformed */
  assert_int_equal(npy_rc("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 1, 7, &t), SF_EFORMAT);
  assert_int_equal(npy_rc("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 1, 9, &t), SF_EFORMAT);
  assert_int_equal(npy_rc("{'descr': '<f4', 'shape': (2,), ", 1, 8, &t), SF_EFORMAT);
  assert_int_equal(npy_rc("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 1, 8, &t), SF_EFORMAT);
  assert_int_equal(npy_rc("{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", 1, 8, &t), SF_EFORMAT);
  assert_int_equal(npy_rc("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 1, 8, &t), SF_EFORMAT);
  sf_err e = {0};
  assert_int_equal(sf__npy_parse("NUMPY", 5, &t, &e), SF_EFORMAT);
  /* header length beyond the file */
  size_t len;
  unsigned char *p = make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 1, 8, &len);
  p[9] = 0x7f;
  assert_int_equal(sf__npy_parse(p, len, &t, &e), SF_EFORMAT);
  p[6] = 2;
  p[11] = 0x7f; /* v2: a 2 GB header */
  assert_int_equal(sf__npy_parse(p, len, &t, &e), SF_ELIMIT);
  free(p);
  /* strings cannot be written */
  sf_tensor s = {.name = "s", .dtype = SF_STRING, .rank = 0};
  void *buf;
  assert_int_equal(sf__npy_serialize(&s, &buf, &len, &e), SF_EUNSUPPORTED);
}

/* ---- TensorProto ----------------------------------------------------------------------- */

static int tp_rc(Onnx__TensorProto *tp, sf_tensor *t) {
  size_t len = onnx__tensor_proto__get_packed_size(tp);
  void *buf = malloc(len + 1);
  onnx__tensor_proto__pack(tp, buf);
  sf_err e = {0};
  int rc = sf__tensorproto_parse(buf, len, t, &e);
  free(buf);
  return rc;
}

static void test_tensorproto(void **st) {
  (void)st;
  /* serialize / parse round trip */
  int16_t v[6] = {1, -2, 3, -4, 5, 32767};
  sf_tensor t = {.name = "x", .dtype = SF_I16, .rank = 2, .dims = {3, 2}, .data = v};
  void *buf;
  size_t len;
  sf_err e = {0};
  assert_int_equal(sf__tensorproto_serialize(&t, &buf, &len, &e), 0);
  sf_tensor u;
  assert_int_equal(sf__tensorproto_parse(buf, len, &u, &e), 0);
  assert_string_equal(u.name, "x");
  assert_tensor_equal(&t, &u);
  sf__tensor_deinit(&u);
  char p[256];
  tmp_path(p, sizeof p, "x.pb");
  assert_int_equal(sf__write_file(p, buf, len, &e), 0);
  assert_int_equal(sf__tensor_load_file(p, &u, &e), 0);
  assert_tensor_equal(&t, &u);
  sf__tensor_deinit(&u);
  free(buf);

  /* typed fields */
  Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
  int64_t dims[2] = {2, 2};
  tp.n_dims = 2;
  tp.dims = dims;
  tp.has_data_type = 1;
  float fd[4] = {1, 2, 3, 4};
  tp.data_type = SF_F32;
  tp.n_float_data = 4;
  tp.float_data = fd;
  assert_int_equal(tp_rc(&tp, &u), 0);
  assert_memory_equal(u.data, fd, sizeof fd);
  sf__tensor_deinit(&u);
  tp.n_float_data = 3; /* count does not match the shape */
  assert_int_equal(tp_rc(&tp, &u), SF_EFORMAT);
  tp.n_float_data = 0;
  int32_t id[4] = {1, 0, 7, 0};
  tp.n_int32_data = 4;
  tp.int32_data = id;
  tp.data_type = SF_BOOL; /* bools travel in int32_data */
  assert_int_equal(tp_rc(&tp, &u), 0);
  assert_memory_equal(u.data, "\1\0\1\0", 4);
  sf__tensor_deinit(&u);
  int32_t hd[4] = {0x3c00, 0xc000, 0, 0x7c00}; /* float16 bit patterns */
  tp.int32_data = hd;
  tp.data_type = SF_F16;
  assert_int_equal(tp_rc(&tp, &u), 0);
  assert_int_equal(((uint16_t *)u.data)[1], 0xc000);
  sf__tensor_deinit(&u);
  tp.n_int32_data = 0;
  int64_t ld[4] = {1, 2, 3, 4};
  tp.data_type = SF_I64;
  tp.n_int64_data = 4;
  tp.int64_data = ld;
  assert_int_equal(tp_rc(&tp, &u), 0);
  assert_memory_equal(u.data, ld, sizeof ld);
  sf__tensor_deinit(&u);
  /* raw_data wins and must have the exact size */
  tp.has_raw_data = 1;
  tp.raw_data.len = 31;
  tp.raw_data.data = (uint8_t *)ld;
  assert_int_equal(tp_rc(&tp, &u), SF_EFORMAT);
  tp.raw_data.len = 32;
  assert_int_equal(tp_rc(&tp, &u), 0);
  sf__tensor_deinit(&u);
  /* bad dims and types */
  dims[0] = -1;
  assert_int_equal(tp_rc(&tp, &u), SF_EFORMAT);
  dims[0] = (int64_t)1 << 40;
  assert_int_equal(tp_rc(&tp, &u), SF_ELIMIT);
  dims[0] = (int64_t)1 << 30;
  dims[1] = (int64_t)1 << 30;
  assert_int_equal(tp_rc(&tp, &u), SF_ELIMIT);
  dims[0] = dims[1] = 2;
  tp.data_type = SF_STRING;
  assert_int_equal(tp_rc(&tp, &u), SF_EUNSUPPORTED);
  tp.data_type = 99;
  assert_int_equal(tp_rc(&tp, &u), SF_EFORMAT);
  tp.data_type = SF_F32;
  tp.has_data_location = 1;
  tp.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
  assert_true(tp_rc(&tp, &u) < 0); /* external data without a model directory */
  assert_int_equal(sf__tensorproto_parse("\xff\xff\xff", 3, &u, &e), SF_EFORMAT);
}

/* ---- models built directly with protobuf-c ------------------------------------------------ */

typedef struct knobs {
  int64_t opset;
  const char *ext_location; /* initializer 'w' in an external file */
  const char *ext_offset, *ext_length;
  int graph_attr;   /* give the node a GRAPH attribute */
  int dup_producer; /* two nodes write 'y' */
  size_t raw_len;   /* raw_data length of 'w' (0: correct) */
  int sparse;       /* add a sparse initializer */
  int w_as_input;   /* list 'w' among the graph inputs too */
  const char *domain;
  const char *node_name;
} knobs;

/* Model: x[N,3] + w[2,3] -> y[N,3]. */
static void *make_model(const knobs *k, size_t *len) {
  static float wv[6] = {1, 2, 3, 4, 5, 6};
  Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
  Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
  Onnx__OperatorSetIdProto op = ONNX__OPERATOR_SET_ID_PROTO__INIT, *ops[1] = {&op};
  m.has_ir_version = 1;
  m.ir_version = 8;
  m.n_opset_import = 1;
  m.opset_import = ops;
  op.domain = (char *)(k->domain ? k->domain : "");
  op.has_version = 1;
  op.version = k->opset ? k->opset : 13;
  m.graph = &g;
  g.name = "g";

  Onnx__TensorShapeProto__Dimension d0 = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT,
                                    d1 = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
  d0.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
  d0.dim_param = "N";
  d1.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
  d1.dim_value = 3;
  Onnx__TensorShapeProto__Dimension *dv[2] = {&d0, &d1};
  Onnx__TensorShapeProto shp = ONNX__TENSOR_SHAPE_PROTO__INIT;
  shp.n_dim = 2;
  shp.dim = dv;
  Onnx__TypeProto__Tensor tt = ONNX__TYPE_PROTO__TENSOR__INIT;
  tt.has_elem_type = 1;
  tt.elem_type = SF_F32;
  tt.shape = &shp;
  Onnx__TypeProto ty = ONNX__TYPE_PROTO__INIT;
  ty.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  ty.tensor_type = &tt;
  Onnx__ValueInfoProto vx = ONNX__VALUE_INFO_PROTO__INIT, vy = ONNX__VALUE_INFO_PROTO__INIT,
                       vw = ONNX__VALUE_INFO_PROTO__INIT;
  vx.name = "x";
  vx.type = &ty;
  vy.name = "y";
  vy.type = &ty;
  vw.name = "w";
  Onnx__ValueInfoProto *ins[2] = {&vx, &vw}, *outs[1] = {&vy};
  g.n_input = k->w_as_input ? 2 : 1;
  g.input = ins;
  g.n_output = 1;
  g.output = outs;

  Onnx__TensorProto w = ONNX__TENSOR_PROTO__INIT;
  int64_t wd[2] = {2, 3};
  w.name = "w";
  w.n_dims = 2;
  w.dims = wd;
  w.has_data_type = 1;
  w.data_type = SF_F32;
  Onnx__StringStringEntryProto e0 = ONNX__STRING_STRING_ENTRY_PROTO__INIT,
                               e1 = ONNX__STRING_STRING_ENTRY_PROTO__INIT,
                               e2 = ONNX__STRING_STRING_ENTRY_PROTO__INIT;
  Onnx__StringStringEntryProto *ev[3] = {&e0, &e1, &e2};
  if (k->ext_location) {
    w.has_data_location = 1;
    w.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    e0.key = "location";
    e0.value = (char *)k->ext_location;
    e1.key = "offset";
    e1.value = (char *)(k->ext_offset ? k->ext_offset : "0");
    e2.key = "length";
    e2.value = (char *)(k->ext_length ? k->ext_length : "24");
    w.n_external_data = 3;
    w.external_data = ev;
  } else {
    w.has_raw_data = 1;
    w.raw_data.len = k->raw_len ? k->raw_len : sizeof wv;
    w.raw_data.data = (uint8_t *)wv;
  }
  Onnx__TensorProto *inits[1] = {&w};
  g.n_initializer = 1;
  g.initializer = inits;

  Onnx__SparseTensorProto sp = ONNX__SPARSE_TENSOR_PROTO__INIT, *sps[1] = {&sp};
  Onnx__TensorProto spv = ONNX__TENSOR_PROTO__INIT;
  spv.name = "sp";
  sp.values = &spv;
  if (k->sparse) {
    g.n_sparse_initializer = 1;
    g.sparse_initializer = sps;
  }

  Onnx__NodeProto n0 = ONNX__NODE_PROTO__INIT, n1 = ONNX__NODE_PROTO__INIT;
  char *n0in[2] = {"x", "w"}, *n0out[1] = {"y"}, *n1in[1] = {"x"};
  n0.op_type = "Add";
  n0.name = (char *)k->node_name;
  n0.domain = (char *)k->domain;
  n0.n_input = 2;
  n0.input = n0in;
  n0.n_output = 1;
  n0.output = n0out;
  Onnx__AttributeProto ga = ONNX__ATTRIBUTE_PROTO__INIT, *gav[1] = {&ga};
  Onnx__GraphProto sub = ONNX__GRAPH_PROTO__INIT;
  if (k->graph_attr) {
    ga.name = "then_branch";
    ga.has_type = 1;
    ga.type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH;
    ga.g = &sub;
    n0.n_attribute = 1;
    n0.attribute = gav;
  }
  n1.op_type = "Relu";
  n1.n_input = 1;
  n1.input = n1in;
  n1.n_output = 1;
  n1.output = n0out;
  Onnx__NodeProto *nodes[2] = {&n0, &n1};
  g.n_node = k->dup_producer ? 2 : 1;
  g.node = nodes;

  *len = onnx__model_proto__get_packed_size(&m);
  void *buf = malloc(*len);
  onnx__model_proto__pack(&m, buf);
  return buf;
}

static int model_rc(const knobs *k, const char *base_dir, sf_graph **g, sf_err *e) {
  size_t len;
  void *buf = make_model(k, &len);
  *g = NULL;
  int rc = sf__onnx_parse(buf, len, base_dir, g, e);
  free(buf);
  return rc;
}

static void test_loader(void **st) {
  (void)st;
  sf_graph *g;
  sf_err e = {0};
  knobs k = {0};
  assert_int_equal(model_rc(&k, NULL, &g, &e), 0);
  assert_int_equal(g->opset, 13);
  assert_int_equal(g->n_inputs, 1);
  assert_int_equal(g->n_nodes, 1);
  assert_string_equal(g->nodes[0].name, "Add_0");
  assert_string_equal(g->nodes[0].domain, "");
  const sf_gtensor *x = &g->tensors[g->inputs[0]];
  assert_int_equal(x->kind, SF_TK_INPUT);
  assert_int_equal(x->t.dims[0], -1);
  assert_string_equal(x->dim_params[0], "N");
  assert_int_equal(x->t.dims[1], 3);
  const sf_gtensor *w = &g->tensors[sf__graph_find(g, "w")];
  assert_int_equal(w->kind, SF_TK_CONST);
  assert_int_equal(((float *)w->t.data)[5], 6.0f);
  sf__graph_free(g);

  /* an initializer also listed as an input is a constant, not an input */
  k = (knobs){.w_as_input = 1, .domain = "ai.onnx", .node_name = "add"};
  assert_int_equal(model_rc(&k, NULL, &g, &e), 0);
  assert_int_equal(g->n_inputs, 1);
  assert_string_equal(g->nodes[0].domain, "");
  assert_string_equal(g->nodes[0].name, "add");
  sf__graph_free(g);

  k = (knobs){.opset = 22};
  assert_int_equal(model_rc(&k, NULL, &g, &e), SF_EUNSUPPORTED);
  assert_non_null(strstr(e.msg, "opset 22"));
  k = (knobs){.opset = -1};
  assert_int_equal(model_rc(&k, NULL, &g, &e), SF_EFORMAT);
  k = (knobs){.graph_attr = 1, .node_name = "cond"};
  assert_int_equal(model_rc(&k, NULL, &g, &e), SF_EUNSUPPORTED);
  assert_non_null(strstr(e.msg, "cond"));
  assert_non_null(strstr(e.msg, "subgraphs"));
  k = (knobs){.dup_producer = 1};
  assert_int_equal(model_rc(&k, NULL, &g, &e), SF_EFORMAT);
  assert_non_null(strstr(e.msg, "'y'"));
  k = (knobs){.raw_len = 20};
  assert_int_equal(model_rc(&k, NULL, &g, &e), SF_EFORMAT);
  assert_non_null(strstr(e.msg, "'w'"));
  k = (knobs){.sparse = 1};
  assert_int_equal(model_rc(&k, NULL, &g, &e), SF_EUNSUPPORTED);
  assert_null(g);
  /* a custom domain without any default-domain node loads (the runtime decides later) */
  k = (knobs){.domain = "com.example"};
  assert_int_equal(model_rc(&k, NULL, &g, &e), 0);
  assert_string_equal(g->nodes[0].domain, "com.example");
  sf__graph_free(g);
  /* garbage */
  assert_int_equal(sf__onnx_parse("\x0a\xff\xff\xff\xff\x0f", 6, NULL, &g, &e), SF_EFORMAT);
  assert_non_null(strstr(e.msg, "ModelProto"));
  assert_int_equal(sf__onnx_parse("", 0, NULL, &g, &e), SF_EFORMAT); /* empty: no graph */
  sf_model *m = NULL;
  assert_int_equal(sf_model_load_buffer(&m, "", 0, NULL, &e), SF_EFORMAT);
  assert_null(m);
  sf_model_free(NULL);
}

static void test_external_data(void **st) {
  (void)st;
  /* weights.bin: 16 bytes of padding, then w */
  float wv[6] = {10, 20, 30, 40, 50, 60};
  unsigned char file[16 + sizeof wv];
  memset(file, 0xee, 16);
  memcpy(file + 16, wv, sizeof wv);
  char p[256];
  sf_err e = {0};
  tmp_path(p, sizeof p, "weights.bin");
  assert_int_equal(sf__write_file(p, file, sizeof file, &e), 0);
  knobs k = {.ext_location = "weights.bin", .ext_offset = "16", .ext_length = "24"};
  size_t len;
  void *buf = make_model(&k, &len);
  tmp_path(p, sizeof p, "model.onnx");
  assert_int_equal(sf__write_file(p, buf, len, &e), 0);
  free(buf);
  sf_model *m = NULL;
  int rc = sf_model_load(&m, p, &e);
  if (rc) fail_msg("%s", e.msg);
  const sf_gtensor *w = &m->g->tensors[sf__graph_find(m->g, "w")];
  assert_int_equal(w->kind, SF_TK_CONST);
  assert_memory_equal(w->t.data, wv, sizeof wv);
  /* written back inline, it loads without the side file */
  void *out;
  size_t ol;
  assert_int_equal(sf__onnx_serialize(m->g, &out, &ol, &e), 0);
  sf_graph *h = parse_ok(out, ol, NULL);
  assert_graph_equal(m->g, h);
  sf__graph_free(h);
  free(out);
  sf_model_free(m);

  sf_graph *g;
  /* from a buffer, external data needs a directory */
  assert_int_equal(model_rc(&k, NULL, &g, &e), SF_EUNSUPPORTED);
  assert_int_equal(model_rc(&k, tmpdir, &g, &e), 0);
  sf__graph_free(g);
  /* escapes from the model directory are refused */
  static const char *const bad[] = {"../x", "a/../../x", "/etc/passwd", "..", "sub/..\\x", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    k.ext_location = bad[i];
    assert_int_equal(model_rc(&k, tmpdir, &g, &e), SF_EFORMAT);
    assert_null(g);
  }
  k.ext_location = "weights.bin";
  k.ext_length = "20"; /* does not match the shape */
  assert_int_equal(model_rc(&k, tmpdir, &g, &e), SF_EFORMAT);
  k.ext_length = NULL;
  k.ext_offset = "17"; /* runs past the end of the file */
  assert_int_equal(model_rc(&k, tmpdir, &g, &e), SF_EFORMAT);
  k.ext_offset = "-1";
  assert_int_equal(model_rc(&k, tmpdir, &g, &e), SF_EFORMAT);
  k.ext_offset = "0";
  k.ext_location = "nothere.bin";
  assert_int_equal(model_rc(&k, tmpdir, &g, &e), SF_EIO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_built),
      cmocka_unit_test(test_roundtrip_conformance),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_corruption),
      cmocka_unit_test(test_npy_roundtrip),
      cmocka_unit_test(test_npy_parse),
      cmocka_unit_test(test_tensorproto),
      cmocka_unit_test(test_loader),
      cmocka_unit_test(test_external_data),
  };
  return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
