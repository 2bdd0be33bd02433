/* Data-movement operators: Concat, Split, Slice, Gather, Pad (ONNX opsets 7..18).
 *
 * All kernels copy contiguous runs with memcpy. Slice and Pad plans (small fixed-size structs)
 * are computed in prepare; run() never allocates. Concat runs in either layout: in
 * channels-last mode the compiler has remapped its axis, and it works on physical dims. */
#include <string.h>

#include "runtime/ops/datamove.h"

/* ---- Concat ------------------------------------------------------------------------------- */

static int concat_infer(sf_kctx *k) {
  const sf_node *n = k->node;
  sf_gtensor *a = sf__in(k->g, n, 0);
  if (!a) return sf__op_err(k, SF_EINVAL, "input 0 is missing");
  const sf_attr *ax = sf__attr(n, "axis");
  if (!ax) return sf__op_err(k, SF_EINVAL, "attribute 'axis' is missing");
  size_t es;
  int rc = dm_esize(k, &a->t, &es);
  if (rc < 0) return rc;
  int r = a->t.rank;
  int axis = sf__norm_axis(ax->i, r);
  if (axis < 0)
    return sf__op_err(k, SF_EINVAL, "axis %lld out of range for rank %d", (long long)ax->i, r);
  int64_t dims[SF_MAX_RANK];
  memcpy(dims, a->t.dims, sizeof dims);
  dims[axis] = 0;
  char b1[128], b2[128];
  for (int i = 0; i < n->n_in; i++) {
    sf_gtensor *t = sf__in(k->g, n, i);
    if (!t) return sf__op_err(k, SF_EINVAL, "input %d is missing", i);
    if (t->t.dtype != a->t.dtype)
      return sf__op_err(k, SF_EINVAL, "input %d has dtype %s, input 0 has %s", i,
                        sf_dtype_name(t->t.dtype), sf_dtype_name(a->t.dtype));
    int bad = t->t.rank != r;
    for (int d = 0; d < r && !bad; d++) bad = d != axis && t->t.dims[d] != a->t.dims[d];
    if (bad)
      return sf__op_err(k, SF_ESHAPE, "input %d shape %s does not match input 0 shape %s on axis %d",
                        i, sf__shape_str(&t->t, b1, sizeof b1), sf__shape_str(&a->t, b2, sizeof b2),
                        axis);
    dims[axis] += t->t.dims[axis];
    if (dims[axis] > SF_MAX_DIM) return sf__op_err(k, SF_ELIMIT, "output too large");
  }
  return dm_set_out(k, 0, a->t.dtype, r, dims);
}

typedef struct {
  sf_kctx *k;
  char *out;
  int64_t outer, orow, chunk; /* rows of the output, bytes per row, rows per task */
  int axis;
} concat_ctx;

/* Rows [i*chunk, (i+1)*chunk) of the output: one memcpy per input per row. */
static void concat_task(void *vctx, size_t ti) {
  const concat_ctx *c = vctx;
  const sf_node *n = c->k->node;
  int64_t j0 = (int64_t)ti * c->chunk, j1 = j0 + c->chunk < c->outer ? j0 + c->chunk : c->outer;
  int64_t off = 0;
  for (int i = 0; i < n->n_in; i++) {
    const sf_tensor *t = &sf__in(c->k->g, n, i)->t;
    int64_t row = (int64_t)sf_dtype_size(t->dtype);
    for (int d = c->axis; d < t->rank; d++) row *= t->dims[d];
    if (row == 0) continue;
    const char *s = t->data;
    if (c->outer == 1) {
      memcpy(c->out + off, s, (size_t)row);
    } else {
      for (int64_t j = j0; j < j1; j++)
        memcpy(c->out + j * c->orow + off, s + j * row, (size_t)row);
    }
    off += row;
  }
}

static int concat_run(sf_kctx *k) {
  const sf_node *n = k->node;
  sf_gtensor *out = sf__out(k->g, n, 0);
  int r = out->t.rank;
  int axis = sf__norm_axis(sf__attr_int(n, "axis", 0), r);
  if (axis < 0) return sf__op_err(k, SF_EINTERNAL, "bad axis");
  concat_ctx c = {k, out->t.data, 1, (int64_t)sf_dtype_size(out->t.dtype), 1, axis};
  for (int d = 0; d < axis; d++) c.outer *= out->t.dims[d];
  for (int d = axis; d < r; d++) c.orow *= out->t.dims[d];
  if (c.outer == 0 || c.orow == 0) return 0;
  /* About 64 KiB per task; small outputs stay on the calling thread. */
  c.chunk = (65536 + c.orow - 1) / c.orow;
  if (c.chunk > c.outer) c.chunk = c.outer;
  size_t ntask = (size_t)((c.outer + c.chunk - 1) / c.chunk);
  sf__parallel_for(ntask > 1 ? k->pool : NULL, ntask, concat_task, &c);
  return 0;
}

/* ---- Split -------------------------------------------------------------------------------- */

#define SPLIT_MAX 4096 /* outputs of one Split */

/* Sizes of the outputs along axis into sz[0..n_out). */
static int split_sizes(sf_kctx *k, const sf_tensor *in, int axis, int64_t *sz) {
  const sf_node *n = k->node;
  int nout = n->n_out, cnt = -1, rc;
  int64_t dim = in->dims[axis];
  const int64_t *a;
  int na = sf__attr_ints(n, "split", &a);
  if (na >= 0) {
    if (na != nout)
      return sf__op_err(k, SF_EINVAL, "split has %d values for %d outputs", na, nout);
    memcpy(sz, a, (size_t)na * sizeof *sz);
    cnt = na;
  } else if (sf__in(k->g, n, 1)) {
    if ((rc = dm_const_ints(k, 1, "split", sz, SPLIT_MAX, &cnt)) < 0) return rc;
    if (cnt != nout)
      return sf__op_err(k, SF_EINVAL, "split has %d values for %d outputs", cnt, nout);
  }
  if (cnt >= 0) {
    int64_t sum = 0;
    for (int i = 0; i < cnt; i++) {
      if (sz[i] < 0) return sf__op_err(k, SF_ESHAPE, "negative split size %lld", (long long)sz[i]);
      if (sz[i] > SF_MAX_DIM) return sf__op_err(k, SF_ELIMIT, "split size too large");
      sum += sz[i];
    }
    if (sum != dim)
      return sf__op_err(k, SF_ESHAPE, "split sizes sum to %lld but axis %d has size %lld",
                        (long long)sum, axis, (long long)dim);
    return 0;
  }
  int64_t nparts = sf__attr_int(n, "num_outputs", nout);
  if (nparts != nout)
    return sf__op_err(k, SF_EINVAL, "num_outputs is %lld but the node has %d outputs",
                      (long long)nparts, nout);
  if (dim % nout == 0) {
    for (int i = 0; i < nout; i++) sz[i] = dim / nout;
    return 0;
  }
  if (dm_opset(k) < 18)
    return sf__op_err(k, SF_ESHAPE, "axis %d of size %lld cannot be split into %d equal parts",
                      axis, (long long)dim, nout);
  /* Opset 18: chunks of ceil(dim / n), the last one smaller. */
  int64_t c = (dim + nout - 1) / nout, left = dim;
  for (int i = 0; i < nout; i++) {
    sz[i] = left < c ? left : c;
    left -= sz[i];
  }
  return 0;
}

static int split_infer(sf_kctx *k) {
  const sf_node *n = k->node;
  sf_gtensor *in = sf__in(k->g, n, 0);
  if (!in) return sf__op_err(k, SF_EINVAL, "input 0 is missing");
  size_t es;
  int rc = dm_esize(k, &in->t, &es);
  if (rc < 0) return rc;
  if (n->n_out < 1 || n->n_out > SPLIT_MAX)
    return sf__op_err(k, SF_EUNSUPPORTED, "%d outputs (1..%d supported)", n->n_out, SPLIT_MAX);
  int64_t ax = sf__attr_int(n, "axis", 0);
  int axis = sf__norm_axis(ax, in->t.rank);
  if (axis < 0)
    return sf__op_err(k, SF_EINVAL, "axis %lld out of range for rank %d", (long long)ax,
                      in->t.rank);
  int64_t *sz = sf__malloc((size_t)n->n_out * sizeof *sz);
  if (!sz) return sf__op_err(k, SF_ENOMEM, "out of memory");
  rc = split_sizes(k, &in->t, axis, sz);
  for (int i = 0; i < n->n_out && rc >= 0; i++)
    if (!sf__out(k->g, n, i)) rc = sf__op_err(k, SF_EINVAL, "output %d is missing", i);
  for (int i = 0; i < n->n_out && rc >= 0; i++) {
    int64_t dims[SF_MAX_RANK];
    memcpy(dims, in->t.dims, sizeof dims);
    dims[axis] = sz[i];
    rc = dm_set_out(k, i, in->t.dtype, in->t.rank, dims);
  }
  free(sz);
  return rc;
}

static int split_run(sf_kctx *k) {
  const sf_node *n = k->node;
  sf_gtensor *in = sf__in(k->g, n, 0);
  int r = in->t.rank;
  int axis = sf__norm_axis(sf__attr_int(n, "axis", 0), r);
  size_t es = sf_dtype_size(in->t.dtype);
  int64_t outer = 1, irow = (int64_t)es, inner = (int64_t)es;
  for (int d = 0; d < axis; d++) outer *= in->t.dims[d];
  for (int d = axis; d < r; d++) irow *= in->t.dims[d];
  for (int d = axis + 1; d < r; d++) inner *= in->t.dims[d];
  const char *s = in->t.data;
  int64_t off = 0;
  for (int i = 0; i < n->n_out; i++) {
    sf_gtensor *t = sf__out(k->g, n, i);
    /* Output sizes along the axis come from the (fixed) output shapes. */
    if (!t) return sf__op_err(k, SF_EINVAL, "output %d is missing", i);
    int64_t len = t->t.dims[axis];
    int64_t row = len * inner;
    if (row) {
      char *o = t->t.data;
      for (int64_t j = 0; j < outer; j++) memcpy(o + j * row, s + j * irow + off, (size_t)row);
    }
    off += row;
  }
  return 0;
}

/* ---- Slice -------------------------------------------------------------------------------- */

typedef struct {
  int rank;
  int64_t start[SF_MAX_RANK], step[SF_MAX_RANK], count[SF_MAX_RANK];
} slice_plan;

static int slice_plan_make(sf_kctx *k, const sf_tensor *in, slice_plan *p) {
  const sf_node *n = k->node;
  int r = in->rank, ns = 0, ne = 0, na = -1, nst = -1, rc;
  int64_t st[SF_MAX_RANK], en[SF_MAX_RANK], ax[SF_MAX_RANK], sp[SF_MAX_RANK];
  if (sf__in(k->g, n, 1)) {
    if ((rc = dm_const_ints(k, 1, "starts", st, SF_MAX_RANK, &ns)) < 0) return rc;
    if ((rc = dm_const_ints(k, 2, "ends", en, SF_MAX_RANK, &ne)) < 0) return rc;
    if (sf__in(k->g, n, 3) && (rc = dm_const_ints(k, 3, "axes", ax, SF_MAX_RANK, &na)) < 0)
      return rc;
    if (sf__in(k->g, n, 4) && (rc = dm_const_ints(k, 4, "steps", sp, SF_MAX_RANK, &nst)) < 0)
      return rc;
  } else {
    /* Slice-1: attributes. */
    const int64_t *a;
    ns = sf__attr_ints(n, "starts", &a);
    if (ns < 0 || ns > SF_MAX_RANK) return sf__op_err(k, SF_EINVAL, "bad or missing 'starts'");
    memcpy(st, a, (size_t)ns * sizeof *st);
    ne = sf__attr_ints(n, "ends", &a);
    if (ne < 0 || ne > SF_MAX_RANK) return sf__op_err(k, SF_EINVAL, "bad or missing 'ends'");
    memcpy(en, a, (size_t)ne * sizeof *en);
    na = sf__attr_ints(n, "axes", &a);
    if (na > SF_MAX_RANK) return sf__op_err(k, SF_EINVAL, "too many axes");
    if (na > 0) memcpy(ax, a, (size_t)na * sizeof *ax);
  }
  if (ns != ne) return sf__op_err(k, SF_EINVAL, "starts has %d values, ends %d", ns, ne);
  if (na >= 0 && na != ns) return sf__op_err(k, SF_EINVAL, "axes has %d values, starts %d", na, ns);
  if (nst >= 0 && nst != ns)
    return sf__op_err(k, SF_EINVAL, "steps has %d values, starts %d", nst, ns);
  p->rank = r;
  char seen[SF_MAX_RANK] = {0};
  for (int d = 0; d < r; d++) {
    p->start[d] = 0;
    p->step[d] = 1;
    p->count[d] = in->dims[d];
  }
  for (int i = 0; i < ns; i++) {
    int64_t a0 = na >= 0 ? ax[i] : i;
    int a = sf__norm_axis(a0, r);
    if (a < 0)
      return sf__op_err(k, SF_EINVAL, "axis %lld out of range for rank %d", (long long)a0, r);
    if (seen[a]) return sf__op_err(k, SF_EINVAL, "axis %d repeated", a);
    seen[a] = 1;
    int64_t dim = in->dims[a], step = nst >= 0 ? sp[i] : 1, s = st[i], e = en[i];
    if (step == 0) return sf__op_err(k, SF_EINVAL, "step 0 on axis %d", a);
    /* |step| > dim selects at most one element: bound it so offsets cannot overflow. */
    if (step > dim + 1) step = dim + 1;
    if (step < -(dim + 1)) step = -(dim + 1);
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    int64_t cnt;
    if (step > 0) {
      s = s < 0 ? 0 : s > dim ? dim : s;
      e = e < 0 ? 0 : e > dim ? dim : e;
      cnt = e > s ? (e - s + step - 1) / step : 0;
    } else {
      s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
      e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
      cnt = s > e ? (s - e - step - 1) / (-step) : 0;
    }
    p->start[a] = s;
    p->step[a] = step;
    p->count[a] = cnt;
  }
  return 0;
}

static int slice_infer(sf_kctx *k) {
  sf_gtensor *in = sf__in(k->g, k->node, 0);
  if (!in) return sf__op_err(k, SF_EINVAL, "input 0 is missing");
  size_t es;
  int rc = dm_esize(k, &in->t, &es);
  if (rc < 0) return rc;
  slice_plan p;
  if ((rc = slice_plan_make(k, &in->t, &p)) < 0) return rc;
  return dm_set_out(k, 0, in->t.dtype, p.rank, p.count);
}

/* Plans are computed once in prepare (the shape-like inputs are constants). */
static void plan_release(sf_node *n) {
  free(n->state);
  n->state = NULL;
}

static int slice_prepare(sf_kctx *k) {
  plan_release(k->node);
  slice_plan *p = sf__malloc(sizeof *p);
  if (!p) return sf__op_err(k, SF_ENOMEM, "out of memory");
  k->node->state = p;
  return slice_plan_make(k, &sf__in(k->g, k->node, 0)->t, p);
}

static int slice_run(sf_kctx *k) {
  sf_gtensor *in = sf__in(k->g, k->node, 0), *out = sf__out(k->g, k->node, 0);
  slice_plan p;
  int rc;
  if (k->node->state) p = *(const slice_plan *)k->node->state;
  else if ((rc = slice_plan_make(k, &in->t, &p)) < 0) return rc;
  int r = p.rank;
  size_t es = sf_dtype_size(in->t.dtype);
  int64_t total = 1;
  for (int d = 0; d < r; d++) total *= p.count[d];
  if (total == 0) return 0;
  int64_t stride[SF_MAX_RANK];
  int64_t sacc = (int64_t)es;
  for (int d = r - 1; d >= 0; d--) {
    stride[d] = sacc;
    sacc *= in->t.dims[d];
  }
  /* Trailing axes taken whole form one contiguous block. */
  int64_t block = (int64_t)es;
  int last = r - 1;
  while (last >= 0 && p.start[last] == 0 && p.step[last] == 1 &&
         p.count[last] == in->t.dims[last]) {
    block *= in->t.dims[last];
    last--;
  }
  const char *src = in->t.data;
  char *dst = out->t.data;
  int64_t base = 0;
  for (int d = 0; d < r; d++) base += p.start[d] * stride[d];
  if (last < 0) {
    memcpy(dst, src, (size_t)block);
    return 0;
  }
  int64_t icnt = p.count[last], istep = p.step[last] * stride[last];
  int64_t idx[SF_MAX_RANK] = {0}, off = base;
  for (;;) {
    if (p.step[last] == 1) {
      memcpy(dst, src + off, (size_t)(icnt * block));
      dst += icnt * block;
    } else if (block == 4) {
      for (int64_t i = 0; i < icnt; i++, dst += 4) memcpy(dst, src + off + i * istep, 4);
    } else {
      for (int64_t i = 0; i < icnt; i++, dst += block) memcpy(dst, src + off + i * istep, (size_t)block);
    }
    int d = last - 1;
    for (; d >= 0; d--) {
      off += p.step[d] * stride[d];
      if (++idx[d] < p.count[d]) break;
      off -= p.count[d] * p.step[d] * stride[d];
      idx[d] = 0;
    }
    if (d < 0) break;
  }
  return 0;
}

/* ---- Gather ------------------------------------------------------------------------------- */

static int gather_infer(sf_kctx *k) {
  sf_gtensor *in = sf__in(k->g, k->node, 0), *ind = sf__in(k->g, k->node, 1);
  if (!in || !ind) return sf__op_err(k, SF_EINVAL, "inputs are missing");
  size_t es;
  int rc = dm_esize(k, &in->t, &es);
  if (rc < 0) return rc;
  if (ind->t.dtype != SF_I64 && ind->t.dtype != SF_I32)
    return sf__op_err(k, SF_EUNSUPPORTED, "indices of dtype %s are not supported",
                      sf_dtype_name(ind->t.dtype));
  int r = in->t.rank, q = ind->t.rank;
  int64_t ax = sf__attr_int(k->node, "axis", 0);
  int axis = sf__norm_axis(ax, r);
  if (axis < 0)
    return sf__op_err(k, SF_EINVAL, "axis %lld out of range for rank %d", (long long)ax, r);
  if (r - 1 + q > SF_MAX_RANK)
    return sf__op_err(k, SF_EUNSUPPORTED, "output rank %d exceeds %d", r - 1 + q, SF_MAX_RANK);
  if (ind->kind == SF_TK_CONST && ind->t.data) {
    int64_t n = dm_numel(&ind->t), dim = in->t.dims[axis];
    for (int64_t i = 0; i < n; i++) {
      int64_t v = sf__int_at(&ind->t, i);
      if (v < -dim || v >= dim)
        return sf__op_err(k, SF_EINVAL, "index %lld out of range for axis %d of size %lld",
                          (long long)v, axis, (long long)dim);
    }
  }
  int64_t dims[SF_MAX_RANK];
  int o = 0;
  for (int d = 0; d < axis; d++) dims[o++] = in->t.dims[d];
  for (int d = 0; d < q; d++) dims[o++] = ind->t.dims[d];
  for (int d = axis + 1; d < r; d++) dims[o++] = in->t.dims[d];
  return dm_set_out(k, 0, in->t.dtype, o, dims);
}

static int gather_run(sf_kctx *k) {
  sf_gtensor *in = sf__in(k->g, k->node, 0), *ind = sf__in(k->g, k->node, 1);
  sf_gtensor *out = sf__out(k->g, k->node, 0);
  int r = in->t.rank;
  int axis = sf__norm_axis(sf__attr_int(k->node, "axis", 0), r);
  size_t es = sf_dtype_size(in->t.dtype);
  int64_t outer = 1, inner = (int64_t)es, dim = in->t.dims[axis], ni = dm_numel(&ind->t);
  for (int d = 0; d < axis; d++) outer *= in->t.dims[d];
  for (int d = axis + 1; d < r; d++) inner *= in->t.dims[d];
  if (outer == 0 || ni == 0 || inner == 0) return 0;
  const char *src = in->t.data;
  char *dst = out->t.data;
  const int64_t *i64 = ind->t.dtype == SF_I64 ? ind->t.data : NULL;
  const int32_t *i32 = ind->t.dtype == SF_I32 ? ind->t.data : NULL;
  for (int64_t j = 0; j < ni; j++) {
    int64_t v = i64 ? i64[j] : i32[j];
    if (v < -dim || v >= dim)
      return sf__op_err(k, SF_EINVAL, "index %lld out of range for axis %d of size %lld",
                        (long long)v, axis, (long long)dim);
  }
  for (int64_t o = 0; o < outer; o++) {
    const char *s = src + o * dim * inner;
    for (int64_t j = 0; j < ni; j++, dst += inner) {
      int64_t v = i64 ? i64[j] : i32[j];
      if (v < 0) v += dim;
      memcpy(dst, s + v * inner, (size_t)inner);
    }
  }
  return 0;
}

/* ---- Pad ---------------------------------------------------------------------------------- */

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP };

typedef struct {
  int mode, rank;
  int64_t begin[SF_MAX_RANK], end[SF_MAX_RANK];
} pad_plan;

static int pad_plan_make(sf_kctx *k, const sf_tensor *in, pad_plan *p) {
  const sf_node *n = k->node;
  int r = in->rank, np = 0, rc;
  const char *m = sf__attr_string(n, "mode", "constant");
  if (!strcmp(m, "constant")) p->mode = PAD_CONSTANT;
  else if (!strcmp(m, "reflect")) p->mode = PAD_REFLECT;
  else if (!strcmp(m, "edge")) p->mode = PAD_EDGE;
  else if (!strcmp(m, "wrap")) p->mode = PAD_WRAP;
  else return sf__op_err(k, SF_EUNSUPPORTED, "mode '%s' is not supported", m);
  int64_t pads[2 * SF_MAX_RANK], axes[SF_MAX_RANK];
  int na = -1;
  if (sf__in(k->g, n, 1)) {
    if ((rc = dm_const_ints(k, 1, "pads", pads, 2 * SF_MAX_RANK, &np)) < 0) return rc;
    if (sf__in(k->g, n, 3) && (rc = dm_const_ints(k, 3, "axes", axes, SF_MAX_RANK, &na)) < 0)
      return rc;
  } else {
    const int64_t *a;
    np = sf__attr_ints(n, "pads", &a);
    if (np < 0) np = sf__attr_ints(n, "paddings", &a);
    if (np < 0) return sf__op_err(k, SF_EINVAL, "pads are missing");
    if (np > 2 * SF_MAX_RANK) return sf__op_err(k, SF_EINVAL, "too many pads (%d)", np);
    memcpy(pads, a, (size_t)np * sizeof *pads);
  }
  int nax = na >= 0 ? na : r;
  if (np != 2 * nax)
    return sf__op_err(k, SF_EINVAL, "pads has %d values, expected %d", np, 2 * nax);
  p->rank = r;
  for (int d = 0; d < r; d++) p->begin[d] = p->end[d] = 0;
  char seen[SF_MAX_RANK] = {0};
  for (int i = 0; i < nax; i++) {
    int a = na >= 0 ? sf__norm_axis(axes[i], r) : i;
    if (a < 0) return sf__op_err(k, SF_EINVAL, "axis %lld out of range", (long long)axes[i]);
    if (seen[a]) return sf__op_err(k, SF_EINVAL, "axis %d repeated", a);
    seen[a] = 1;
    int64_t b = pads[i], e = pads[i + nax];
    if (b > SF_MAX_DIM || e > SF_MAX_DIM || b < -SF_MAX_DIM || e < -SF_MAX_DIM)
      return sf__op_err(k, SF_ELIMIT, "pad too large on axis %d", a);
    int64_t od = in->dims[a] + b + e;
    if (od < 0)
      return sf__op_err(k, SF_ESHAPE, "pads %lld,%lld on axis %d of size %lld give a negative size",
                        (long long)b, (long long)e, a, (long long)in->dims[a]);
    /* Non-constant modes need source data on every padded axis. */
    int64_t kept = in->dims[a] + (b < 0 ? b : 0) + (e < 0 ? e : 0);
    if (p->mode != PAD_CONSTANT && od > 0 && kept <= 0 && (b > 0 || e > 0))
      return sf__op_err(k, SF_ESHAPE, "mode '%s' cannot pad axis %d which has no elements left",
                        m, a);
    p->begin[a] = b;
    p->end[a] = e;
  }
  return 0;
}

static int pad_infer(sf_kctx *k) {
  sf_gtensor *in = sf__in(k->g, k->node, 0);
  if (!in) return sf__op_err(k, SF_EINVAL, "input 0 is missing");
  size_t es;
  int rc = dm_esize(k, &in->t, &es);
  if (rc < 0) return rc;
  pad_plan p;
  if ((rc = pad_plan_make(k, &in->t, &p)) < 0) return rc;
  sf_gtensor *cv = sf__in(k->g, k->node, 2);
  if (cv && (cv->t.dtype != in->t.dtype || dm_numel(&cv->t) > 1))
    return sf__op_err(k, SF_EINVAL, "constant_value must be a scalar of the input dtype");
  int64_t dims[SF_MAX_RANK];
  for (int d = 0; d < p.rank; d++) dims[d] = in->t.dims[d] + p.begin[d] + p.end[d];
  return dm_set_out(k, 0, in->t.dtype, p.rank, dims);
}

/* Source index on one axis of output index o, or -1 for the constant. Data-keeping range of
 * the axis (after negative pads crop it) is [lo, hi) in input coordinates. */
static inline int64_t pad_map(int mode, int64_t o, int64_t begin, int64_t dim, int64_t lo,
                              int64_t hi) {
  int64_t i = o - begin;
  if (i >= lo && i < hi) return i;
  switch (mode) {
    case PAD_CONSTANT: return -1;
    case PAD_EDGE: return i < lo ? lo : hi - 1;
    case PAD_WRAP: {
      int64_t len = hi - lo, m = (i - lo) % len;
      return lo + (m < 0 ? m + len : m);
    }
    default: { /* reflect about the first and last kept elements */
      int64_t len = hi - lo;
      if (len == 1) return lo;
      int64_t per = 2 * (len - 1), m = (i - lo) % per;
      if (m < 0) m += per;
      return lo + (m < len ? m : per - m);
    }
  }
}

static void fill_value(char *dst, const unsigned char *v, size_t es, int64_t n, int zero) {
  if (n <= 0) return;
  if (zero) {
    memset(dst, 0, (size_t)n * es);
    return;
  }
  for (int64_t i = 0; i < n; i++) memcpy(dst + i * (int64_t)es, v, es);
}

static int pad_prepare(sf_kctx *k) {
  plan_release(k->node);
  pad_plan *p = sf__malloc(sizeof *p);
  if (!p) return sf__op_err(k, SF_ENOMEM, "out of memory");
  k->node->state = p;
  return pad_plan_make(k, &sf__in(k->g, k->node, 0)->t, p);
}

static int pad_run(sf_kctx *k) {
  const sf_node *n = k->node;
  sf_gtensor *in = sf__in(k->g, n, 0), *out = sf__out(k->g, n, 0);
  pad_plan p;
  int rc;
  if (n->state) p = *(const pad_plan *)n->state;
  else if ((rc = pad_plan_make(k, &in->t, &p)) < 0) return rc;
  int r = p.rank;
  size_t es = sf_dtype_size(in->t.dtype);
  int64_t total = dm_numel(&out->t);
  if (total == 0) return 0;
  /* Constant value in the input dtype. */
  unsigned char cv[8] = {0};
  int zero = 1;
  sf_gtensor *cvt = sf__in(k->g, n, 2);
  if (cvt && dm_numel(&cvt->t) == 1) {
    memcpy(cv, cvt->t.data, es);
  } else if (!cvt && sf__attr(n, "value")) {
    dm_from_double(in->t.dtype, sf__attr_float(n, "value", 0), cv); /* Pad-2 */
  }
  for (size_t i = 0; i < es; i++) zero &= cv[i] == 0;

  if (r == 0) {
    memcpy(out->t.data, in->t.data, es);
    return 0;
  }
  int64_t lo[SF_MAX_RANK], hi[SF_MAX_RANK], istr[SF_MAX_RANK];
  int64_t acc = (int64_t)es;
  for (int d = r - 1; d >= 0; d--) {
    lo[d] = p.begin[d] < 0 ? -p.begin[d] : 0;
    hi[d] = in->t.dims[d] - (p.end[d] < 0 ? -p.end[d] : 0);
    istr[d] = acc;
    acc *= in->t.dims[d];
  }
  int L = r - 1;
  int64_t olast = out->t.dims[L], dlast = in->t.dims[L];
  /* Innermost row: output [c0, c1) maps contiguously to input [c0 - begin, c1 - begin). */
  int64_t c0 = p.begin[L] + lo[L], c1 = p.begin[L] + hi[L];
  if (c0 < 0) c0 = 0;
  if (c1 > olast) c1 = olast;
  if (c1 < c0) c1 = c0;
  const char *src = in->t.data;
  char *dst = out->t.data;
  int64_t idx[SF_MAX_RANK] = {0};
  int64_t rows = total / olast;
  for (int64_t row = 0; row < rows; row++, dst += olast * (int64_t)es) {
    int64_t off = 0;
    int cst = 0;
    for (int d = 0; d < L && !cst; d++) {
      int64_t s = pad_map(p.mode, idx[d], p.begin[d], in->t.dims[d], lo[d], hi[d]);
      if (s < 0) cst = 1;
      else off += s * istr[d];
    }
    if (cst || (p.mode == PAD_CONSTANT && c1 == c0)) {
      fill_value(dst, cv, es, olast, zero);
    } else {
      const char *s = src + off;
      if (p.mode == PAD_CONSTANT) {
        fill_value(dst, cv, es, c0, zero);
        fill_value(dst + c1 * (int64_t)es, cv, es, olast - c1, zero);
      } else {
        for (int64_t o = 0; o < c0; o++)
          memcpy(dst + o * (int64_t)es,
                 s + pad_map(p.mode, o, p.begin[L], dlast, lo[L], hi[L]) * (int64_t)es, es);
        for (int64_t o = c1; o < olast; o++)
          memcpy(dst + o * (int64_t)es,
                 s + pad_map(p.mode, o, p.begin[L], dlast, lo[L], hi[L]) * (int64_t)es, es);
      }
      dm_copy(dst + c0 * (int64_t)es, s + (c0 - p.begin[L]) * (int64_t)es,
              (size_t)(c1 - c0) * es);
    }
    for (int d = L - 1; d >= 0; d--) {
      if (++idx[d] < out->t.dims[d]) break;
      idx[d] = 0;
    }
  }
  return 0;
}

/* ---- definitions -------------------------------------------------------------------------- */

const sf_op_def sf__op_Concat = {"Concat", SF_OPF_AGNOSTIC | SF_OPF_AXIS, concat_infer, NULL,
                                 concat_run, NULL, NULL, NULL};
const sf_op_def sf__op_Split = {"Split", 0, split_infer, NULL, split_run, NULL, NULL, NULL};
const sf_op_def sf__op_Slice = {"Slice", 0, slice_infer, slice_prepare, slice_run, plan_release,
                                NULL, NULL};
const sf_op_def sf__op_Gather = {"Gather", 0, gather_infer, NULL, gather_run, NULL, NULL, NULL};
const sf_op_def sf__op_Pad = {"Pad", 0, pad_infer, pad_prepare, pad_run, plan_release, NULL, NULL};
