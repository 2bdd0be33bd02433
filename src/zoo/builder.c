/* Zoo model builder: Keras-style layers as ONNX nodes with deterministic weights (builder.h). */
#include "zoo/builder.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* No fused multiply-add: the weights must not depend on the compiler or the CPU's FMA. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* ---- errors, random numbers, bookkeeping ------------------------------------------------- */

static int fail(sf_zb *b, int code, const char *fmt, const char *arg) {
  if (!b->rc) {
    b->rc = code;
    sf__errf(b->err, code, fmt, arg ? arg : "");
  }
  return -1;
}
#define NOMEM(b) fail(b, SF_ENOMEM, "out of memory building the model%s", "")

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static inline uint64_t next_u64(sf_zb *b) {
  uint64_t *s = b->s;
  uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return r;
}

/* Uniform in [lo, hi): 53 random bits, computed in double and rounded once to float. */
static inline float unif(sf_zb *b, double lo, double hi) {
  double u = (double)(next_u64(b) >> 11) * 0x1p-53;
  return (float)(lo + (hi - lo) * u);
}

static int ensure_info(sf_zb *b) {
  int need = b->g->n_tensors;
  if (need <= b->cap_info) return 0;
  int old = b->cap_info;
  if (sf__grow((void **)&b->info, &b->cap_info, need, sizeof *b->info)) return NOMEM(b);
  memset(b->info + old, 0, sizeof *b->info * (size_t)(b->cap_info - old));
  return 0;
}

static float *scratch(sf_zb *b, int64_t n) {
  if ((size_t)n > b->cap) {
    float *p = realloc(b->buf, sizeof(float) * (size_t)n);
    if (!p) {
      NOMEM(b);
      return NULL;
    }
    b->buf = p;
    b->cap = (size_t)n;
  }
  return b->buf;
}

/* A new activation tensor named name (must be unused) or, if name is NULL, a fresh name made
 * from base. */
static int new_tensor(sf_zb *b, const char *name, const char *base) {
  int id;
  if (name) {
    if (sf__graph_find(b->g, name) >= 0)
      return fail(b, SF_EINTERNAL, "zoo: duplicate tensor name '%s'", name);
    id = sf__graph_tensor(b->g, name);
  } else {
    id = sf__graph_new_tensor(b->g, base);
  }
  if (id < 0) return NOMEM(b);
  if (ensure_info(b)) return -1;
  return id;
}

/* Node named after its single output. Returns the node index or -1. */
static int add_node(sf_zb *b, const char *op, int n_in, const int *in, int out) {
  int ni = sf__graph_add_node(b->g, op, b->g->tensors[out].t.name, n_in, in, 1, &out);
  return ni < 0 ? NOMEM(b) : ni;
}

static sf_node *node_at(sf_zb *b, int ni) {
  return &b->g->nodes[ni];
}

static int set_ints(sf_zb *b, int ni, const char *attr, const int64_t *v, int n) {
  return sf__node_set_ints(node_at(b, ni), attr, v, n) ? NOMEM(b) : 0;
}
static int set_int(sf_zb *b, int ni, const char *attr, int64_t v) {
  return sf__node_set_int(node_at(b, ni), attr, v) ? NOMEM(b) : 0;
}
static int set_float(sf_zb *b, int ni, const char *attr, float v) {
  return sf__node_set_float(node_at(b, ni), attr, v) ? NOMEM(b) : 0;
}

/* Make tensor id a constant; dtype F32 or F64. */
static int set_const(sf_zb *b, int id, int dtype, int rank, const int64_t *dims, const void *v) {
  int rc = sf__tensor_set_const(b->g, id, dtype, rank, dims, v);
  if (rc) return fail(b, rc, "zoo: cannot store constant '%s'", b->g->tensors[id].t.name);
  return 0;
}

/* A float parameter "<layer>/<what>" of uniform values in [lo, hi). */
static int param(sf_zb *b, const char *layer, const char *what, int rank, const int64_t *dims,
                 double lo, double hi) {
  char nm[512];
  snprintf(nm, sizeof nm, "%s/%s", layer, what);
  int id = new_tensor(b, nm, NULL);
  if (id < 0) return -1;
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  float *p = scratch(b, n);
  if (!p) return -1;
  for (int64_t i = 0; i < n; i++) p[i] = unif(b, lo, hi);
  return set_const(b, id, SF_F32, rank, dims, p) ? -1 : id;
}

static int check_in(sf_zb *b, int x, int rank, const char *what) {
  if (b->rc) return -1;
  if (x < 0 || x >= b->g->n_tensors || b->info[x].rank != rank)
    return fail(b, SF_EINTERNAL, "zoo: bad input tensor for %s", what);
  return 0;
}

/* Output info: rank 4 [1,c,h,w] or rank 2 [1,c]. */
static void set_info(sf_zb *b, int id, int rank, int64_t c, int64_t h, int64_t w) {
  sf_zb_info *t = &b->info[id];
  t->rank = rank;
  t->d[0] = 1;
  t->d[1] = c;
  t->d[2] = rank == 4 ? h : 0;
  t->d[3] = rank == 4 ? w : 0;
}

/* ---- lifecycle --------------------------------------------------------------------------- */

int sf__zb_init(sf_zb *b, const char *model_name, uint64_t seed, sf_err *err) {
  memset(b, 0, sizeof *b);
  b->err = err;
  b->input = -1;
  b->seed = seed;
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) b->s[i] = splitmix64(&x);
  b->g = sf__graph_new();
  if (!b->g) return sf__errf(err, SF_ENOMEM, "out of memory");
  b->g->opset = 13;
  b->g->ir_version = 8;
  b->g->name = sf__strdup(model_name);
  b->g->producer_name = sf__strdup("seifer-zoo");
  b->g->producer_version = sf__strdup(SF_VERSION);
  if (!b->g->name || !b->g->producer_name || !b->g->producer_version) {
    sf__zb_deinit(b);
    return sf__errf(err, SF_ENOMEM, "out of memory");
  }
  return 0;
}

void sf__zb_deinit(sf_zb *b) {
  sf__graph_free(b->g);
  free(b->buf);
  free(b->info);
  free(b->hyper);
  free(b->ones);
  memset(b, 0, sizeof *b);
}

int sf__zb_finish(sf_zb *b, int out, sf_graph **g) {
  *g = NULL;
  if (b->rc) return b->rc;
  if (out < 0 || out >= b->g->n_tensors || !b->info[out].rank || b->input < 0)
    return fail(b, SF_EINTERNAL, "zoo: model has no input or output%s", ""), b->rc;
  if (sf__zb_calibrate(b)) return b->rc;
  sf_graph *gr = b->g;
  gr->inputs = sf__malloc(sizeof(int));
  gr->outputs = sf__malloc(sizeof(int));
  if (!gr->inputs || !gr->outputs) return NOMEM(b), b->rc;
  gr->inputs[0] = b->input;
  gr->outputs[0] = out;
  gr->n_inputs = gr->n_outputs = 1;
  const sf_zb_info *t = &b->info[out];
  sf__tensor_set_shape(&gr->tensors[out], SF_F32, t->rank, t->d);
  gr->tensors[out].is_output = 1;
  *g = gr;
  b->g = NULL;
  return 0;
}

int sf__zb_input(sf_zb *b, const char *name, int c, int h, int w, double lo, double hi) {
  if (b->rc) return -1;
  int id = new_tensor(b, name, NULL);
  if (id < 0) return -1;
  int64_t d[4] = {1, c, h, w};
  sf__tensor_set_shape(&b->g->tensors[id], SF_F32, 4, d);
  b->g->tensors[id].kind = SF_TK_INPUT;
  set_info(b, id, 4, c, h, w);
  b->input = id;
  b->in_lo = lo;
  b->in_hi = hi;
  return id;
}

const char *sf__zb_name(sf_zb *b, const char *fmt, ...) {
  char *s = b->names[b->name_i++ & 3];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s, sizeof b->names[0], fmt, ap);
  va_end(ap);
  return s;
}

/* ---- padding ----------------------------------------------------------------------------- */

sf_zb_pad sf__zb_pads(int t, int l, int bt, int r) {
  return (sf_zb_pad){t, l, bt, r};
}
sf_zb_pad sf__zb_sym(int p) {
  return (sf_zb_pad){p, p, p, p};
}

/* TensorFlow SAME: output ceil(in / s), the odd pixel of padding at the end. */
static void tf_same(int64_t in, int k, int s, int *before, int *after) {
  int64_t out = (in + s - 1) / s;
  int64_t total = (out - 1) * s + k - in;
  if (total < 0) total = 0;
  *before = (int)(total / 2);
  *after = (int)(total - total / 2);
}

sf_zb_pad sf__zb_same(sf_zb *b, int x, int kh, int kw, int stride) {
  sf_zb_pad p = {0, 0, 0, 0};
  if (check_in(b, x, 4, "'same' padding")) return p;
  tf_same(b->info[x].d[2], kh, stride, &p.t, &p.b);
  tf_same(b->info[x].d[3], kw, stride, &p.l, &p.r);
  return p;
}

sf_zb_pad sf__zb_correct_pad(sf_zb *b, int x, int k) {
  sf_zb_pad p = {0, 0, 0, 0};
  if (check_in(b, x, 4, "correct_pad")) return p;
  int ah = 1 - (int)(b->info[x].d[2] % 2), aw = 1 - (int)(b->info[x].d[3] % 2);
  p.t = k / 2 - ah;
  p.b = k / 2;
  p.l = k / 2 - aw;
  p.r = k / 2;
  return p;
}

static int64_t out_dim(int64_t in, int k, int s, int p0, int p1) {
  int64_t span = in + p0 + p1 - k;
  return span < 0 ? 0 : span / s + 1;
}

/* ---- shared non-trainable constants ------------------------------------------------------ */

static int cached(sf_zb_cache *c, int n, double v) {
  for (int i = 0; i < n; i++)
    if (c[i].v == v) return c[i].id;
  return -1;
}

/* float64 initializer (rank 0 or [n] filled with v) -> Cast to float. */
static int cast_const(sf_zb *b, const char *name, int64_t n, double v) {
  char nm[128];
  snprintf(nm, sizeof nm, "%s/f64", name);
  int src = new_tensor(b, nm, NULL);
  if (src < 0) return -1;
  double *p = sf__malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
  if (!p) return NOMEM(b);
  for (int64_t i = 0; i < (n > 0 ? n : 1); i++) p[i] = v;
  int rc = set_const(b, src, SF_F64, n > 0 ? 1 : 0, &n, p);
  free(p);
  if (rc) return -1;
  int id = new_tensor(b, name, NULL);
  if (id < 0) return -1;
  int ni = add_node(b, "Cast", 1, &src, id);
  if (ni < 0 || set_int(b, ni, "to", SF_F32)) return -1;
  return id;
}

static int cache_put(sf_zb *b, sf_zb_cache **c, int *n, int *cap, double v, int id) {
  if (sf__grow((void **)c, cap, *n + 1, sizeof **c)) return NOMEM(b);
  (*c)[(*n)++] = (sf_zb_cache){v, id};
  return 0;
}

int sf__zb_hyper(sf_zb *b, double v) {
  if (b->rc) return -1;
  int id = cached(b->hyper, b->n_hyper, v);
  if (id >= 0) return id;
  char nm[64];
  snprintf(nm, sizeof nm, "hyper_%d", b->n_hyper);
  id = cast_const(b, nm, 0, v);
  if (id < 0 || cache_put(b, &b->hyper, &b->n_hyper, &b->cap_hyper, v, id)) return -1;
  return id;
}

/* Unit BatchNorm scale of c channels, shared per channel count. */
static int ones(sf_zb *b, int64_t c) {
  int id = cached(b->ones, b->n_ones, (double)c);
  if (id >= 0) return id;
  char nm[64];
  snprintf(nm, sizeof nm, "unit_scale_%lld", (long long)c);
  id = cast_const(b, nm, c, 1.0);
  if (id < 0 || cache_put(b, &b->ones, &b->n_ones, &b->cap_ones, (double)c, id)) return -1;
  return id;
}

int sf__zb_const(sf_zb *b, const char *name, int rank, const int64_t *dims, const float *v) {
  if (b->rc) return -1;
  int id = new_tensor(b, name, NULL);
  if (id < 0 || set_const(b, id, SF_F32, rank, dims, v)) return -1;
  return id;
}

/* ---- layers ------------------------------------------------------------------------------ */

int sf__zb_conv(sf_zb *b, int x, const char *name, int oc, int kh, int kw, int stride,
                sf_zb_pad pad, int groups, int bias) {
  if (check_in(b, x, 4, "Conv")) return -1;
  const sf_zb_info xi = b->info[x];
  int64_t ic = xi.d[1];
  if (groups < 1 || ic % groups || oc % groups || kh < 1 || kw < 1 || stride < 1)
    return fail(b, SF_EINTERNAL, "zoo: bad convolution '%s'", name);
  int64_t oh = out_dim(xi.d[2], kh, stride, pad.t, pad.b);
  int64_t ow = out_dim(xi.d[3], kw, stride, pad.l, pad.r);
  if (oh < 1 || ow < 1)
    return fail(b, SF_EINTERNAL, "zoo: convolution '%s' has empty output", name);
  int y = new_tensor(b, name, "conv");
  if (y < 0) return -1;
  const char *ln = b->g->tensors[y].t.name;
  char layer[256];
  snprintf(layer, sizeof layer, "%s", ln);
  int64_t fan_in = ic / groups * kh * kw;
  double a = sqrt(6.0 / (double)fan_in);
  int64_t wd[4] = {oc, ic / groups, kh, kw};
  int w = param(b, layer, groups > 1 && groups == ic ? "depthwise_kernel" : "kernel", 4, wd, -a, a);
  int64_t bd[1] = {oc};
  int bi = bias ? param(b, layer, "bias", 1, bd, -0.1, 0.1) : -1;
  if (w < 0 || (bias && bi < 0)) return -1;
  int in[3] = {x, w, bi};
  int ni = add_node(b, "Conv", bias ? 3 : 2, in, y);
  if (ni < 0) return -1;
  int64_t ks[2] = {kh, kw}, st[2] = {stride, stride}, pd[4] = {pad.t, pad.l, pad.b, pad.r};
  if (set_ints(b, ni, "kernel_shape", ks, 2) || set_ints(b, ni, "strides", st, 2) ||
      set_ints(b, ni, "pads", pd, 4) || set_int(b, ni, "group", groups))
    return -1;
  set_info(b, y, 4, oc, oh, ow);
  return y;
}

int sf__zb_bn(sf_zb *b, int x, const char *name, float eps, int scale) {
  if (check_in(b, x, 4, "BatchNormalization")) return -1;
  const sf_zb_info xi = b->info[x];
  int64_t c = xi.d[1];
  int y = new_tensor(b, name, "bn");
  if (y < 0) return -1;
  char layer[256];
  snprintf(layer, sizeof layer, "%s", b->g->tensors[y].t.name);
  int64_t d[1] = {c};
  int gm = scale ? param(b, layer, "gamma", 1, d, 0.8, 1.2) : ones(b, c);
  int bt = param(b, layer, "beta", 1, d, -0.1, 0.1);
  /* jitter of the statistics; calib.c turns them into the moving mean and variance */
  int mn = param(b, layer, "moving_mean", 1, d, -0.1, 0.1);
  int vr = param(b, layer, "moving_variance", 1, d, 0.5, 1.5);
  if (gm < 0 || bt < 0 || mn < 0 || vr < 0) return -1;
  int in[5] = {x, gm, bt, mn, vr};
  int ni = add_node(b, "BatchNormalization", 5, in, y);
  if (ni < 0 || set_float(b, ni, "epsilon", eps)) return -1;
  set_info(b, y, 4, c, xi.d[2], xi.d[3]);
  return y;
}

/* One-input node with the same shape as its input. Returns the output id. */
static int unary(sf_zb *b, int x, const char *op, const char *name, const char *base) {
  if (b->rc) return -1;
  if (x < 0 || !b->info[x].rank) return fail(b, SF_EINTERNAL, "zoo: bad input for %s", op);
  int y = new_tensor(b, name, base);
  if (y < 0 || add_node(b, op, 1, &x, y) < 0) return -1;
  b->info[y] = b->info[x];
  return y;
}

int sf__zb_relu(sf_zb *b, int x, const char *name) {
  return unary(b, x, "Relu", name, "relu");
}

int sf__zb_sigmoid(sf_zb *b, int x, const char *name) {
  return unary(b, x, "Sigmoid", name, "sigmoid");
}

int sf__zb_relu6(sf_zb *b, int x, const char *name) {
  if (b->rc) return -1;
  int lo = sf__zb_hyper(b, 0.0), hi = sf__zb_hyper(b, 6.0);
  if (lo < 0 || hi < 0 || x < 0) return -1;
  int y = new_tensor(b, name, "relu6");
  int in[3] = {x, lo, hi};
  if (y < 0 || add_node(b, "Clip", 3, in, y) < 0) return -1;
  b->info[y] = b->info[x];
  return y;
}

/* x * f(x) where f is a unary gate node (Sigmoid or HardSigmoid) named "<name>/gate". */
static int gated(sf_zb *b, int x, const char *name, const char *gate, const char *base) {
  if (b->rc) return -1;
  char gn[300];
  if (name) snprintf(gn, sizeof gn, "%s/gate", name);
  int s = unary(b, x, gate, name ? gn : NULL, base);
  if (s < 0) return -1;
  if (!strcmp(gate, "HardSigmoid")) {
    int ni = b->g->n_nodes - 1;
    if (set_float(b, ni, "alpha", (float)(1.0 / 6.0)) || set_float(b, ni, "beta", 0.5f)) return -1;
  }
  int y = new_tensor(b, name, base);
  int in[2] = {x, s};
  if (y < 0 || add_node(b, "Mul", 2, in, y) < 0) return -1;
  b->info[y] = b->info[x];
  return y;
}

int sf__zb_swish(sf_zb *b, int x, const char *name) {
  return gated(b, x, name, "Sigmoid", "swish");
}
int sf__zb_hardswish(sf_zb *b, int x, const char *name) {
  return gated(b, x, name, "HardSigmoid", "hardswish");
}

/* Elementwise binary node; the output has x's shape (z broadcasts into x). */
static int binary(sf_zb *b, int x, int z, const char *op, const char *name, const char *base) {
  if (b->rc) return -1;
  if (x < 0 || z < 0) return fail(b, SF_EINTERNAL, "zoo: bad input for %s", op);
  int y = new_tensor(b, name, base);
  int in[2] = {x, z};
  if (y < 0 || add_node(b, op, 2, in, y) < 0) return -1;
  b->info[y] = b->info[x];
  return y;
}

int sf__zb_add(sf_zb *b, int x, int z, const char *name) {
  if (b->rc) return -1;
  if (x >= 0 && z >= 0 &&
      (b->info[x].rank != b->info[z].rank ||
       memcmp(b->info[x].d, b->info[z].d, sizeof b->info[x].d)))
    return fail(b, SF_EINTERNAL, "zoo: Add '%s' of different shapes", name);
  return binary(b, x, z, "Add", name, "add");
}

int sf__zb_mul(sf_zb *b, int x, int z, const char *name) {
  return binary(b, x, z, "Mul", name, "mul");
}

int sf__zb_scale(sf_zb *b, int x, double s, const char *name) {
  return binary(b, x, sf__zb_hyper(b, s), "Mul", name, "scale");
}

int sf__zb_concat(sf_zb *b, int n, const int *xs, const char *name) {
  if (b->rc) return -1;
  int64_t c = 0;
  for (int i = 0; i < n; i++) {
    if (check_in(b, xs[i], 4, "Concat")) return -1;
    if (b->info[xs[i]].d[2] != b->info[xs[0]].d[2] || b->info[xs[i]].d[3] != b->info[xs[0]].d[3])
      return fail(b, SF_EINTERNAL, "zoo: Concat '%s' of different spatial sizes", name);
    c += b->info[xs[i]].d[1];
  }
  int y = new_tensor(b, name, "concat");
  if (y < 0) return -1;
  int ni = add_node(b, "Concat", n, xs, y);
  if (ni < 0 || set_int(b, ni, "axis", 1)) return -1;
  set_info(b, y, 4, c, b->info[xs[0]].d[2], b->info[xs[0]].d[3]);
  return y;
}

static int pool(sf_zb *b, int x, const char *op, const char *name, const char *base, int k,
                int stride, sf_zb_pad pad) {
  if (check_in(b, x, 4, op)) return -1;
  const sf_zb_info xi = b->info[x];
  int64_t oh = out_dim(xi.d[2], k, stride, pad.t, pad.b);
  int64_t ow = out_dim(xi.d[3], k, stride, pad.l, pad.r);
  if (oh < 1 || ow < 1) return fail(b, SF_EINTERNAL, "zoo: pooling '%s' has empty output", name);
  int y = new_tensor(b, name, base);
  if (y < 0) return -1;
  int ni = add_node(b, op, 1, &x, y);
  int64_t ks[2] = {k, k}, st[2] = {stride, stride}, pd[4] = {pad.t, pad.l, pad.b, pad.r};
  if (ni < 0 || set_ints(b, ni, "kernel_shape", ks, 2) || set_ints(b, ni, "strides", st, 2) ||
      set_ints(b, ni, "pads", pd, 4))
    return -1;
  if (!strcmp(op, "AveragePool") && set_int(b, ni, "count_include_pad", 0)) return -1;
  set_info(b, y, 4, xi.d[1], oh, ow);
  return y;
}

int sf__zb_maxpool(sf_zb *b, int x, const char *name, int k, int stride, sf_zb_pad pad) {
  return pool(b, x, "MaxPool", name, "maxpool", k, stride, pad);
}

int sf__zb_avgpool(sf_zb *b, int x, const char *name, int k, int stride, sf_zb_pad pad) {
  return pool(b, x, "AveragePool", name, "avgpool", k, stride, pad);
}

int sf__zb_gap(sf_zb *b, int x, const char *name) {
  if (check_in(b, x, 4, "GlobalAveragePool")) return -1;
  int y = new_tensor(b, name, "gap");
  if (y < 0 || add_node(b, "GlobalAveragePool", 1, &x, y) < 0) return -1;
  set_info(b, y, 4, b->info[x].d[1], 1, 1);
  return y;
}

int sf__zb_flatten(sf_zb *b, int x, const char *name) {
  if (check_in(b, x, 4, "Flatten")) return -1;
  int y = new_tensor(b, name, "flatten");
  if (y < 0) return -1;
  int ni = add_node(b, "Flatten", 1, &x, y);
  if (ni < 0 || set_int(b, ni, "axis", 1)) return -1;
  const sf_zb_info *xi = &b->info[x];
  set_info(b, y, 2, xi->d[1] * xi->d[2] * xi->d[3], 0, 0);
  return y;
}

int sf__zb_dense(sf_zb *b, int x, const char *name, int units, int bias) {
  if (check_in(b, x, 2, "Gemm")) return -1;
  int64_t k = b->info[x].d[1];
  int y = new_tensor(b, name, "dense");
  if (y < 0) return -1;
  char layer[256];
  snprintf(layer, sizeof layer, "%s", b->g->tensors[y].t.name);
  double a = sqrt(6.0 / (double)k);
  int64_t wd[2] = {k, units}, bd[1] = {units};
  int w = param(b, layer, "kernel", 2, wd, -a, a);
  int bi = bias ? param(b, layer, "bias", 1, bd, -0.1, 0.1) : -1;
  if (w < 0 || (bias && bi < 0)) return -1;
  int in[3] = {x, w, bi};
  if (add_node(b, "Gemm", bias ? 3 : 2, in, y) < 0) return -1;
  set_info(b, y, 2, units, 0, 0);
  return y;
}

int sf__zb_softmax(sf_zb *b, int x, const char *name) {
  if (check_in(b, x, 2, "Softmax")) return -1;
  int y = unary(b, x, "Softmax", name, "softmax");
  if (y < 0 || set_int(b, b->g->n_nodes - 1, "axis", 1)) return -1;
  return y;
}

int sf__zb_norm(sf_zb *b, int x, int mean, int var, const char *name) {
  if (check_in(b, x, 4, "Normalization") || mean < 0 || var < 0) return -1;
  int c = binary(b, x, mean, "Sub", sf__zb_name(b, "%s/centred", name), "sub");
  int s = new_tensor(b, sf__zb_name(b, "%s/std", name), NULL);
  if (c < 0 || s < 0 || add_node(b, "Sqrt", 1, &var, s) < 0) return -1;
  return binary(b, c, s, "Div", name, "div");
}
