/* Measured transfer sizes: how many bytes each crossing tensor takes on the wire under every
 * codec, from one inference of the model with all crossing tensors kept (lz4 and zfp ratios
 * depend on the data: ReLU zeros, smoothness). */
#include <math.h>
#include <string.h>

#include "onnx/onnx.h"
#include "partition/partition.h"

/* Smooth image-like values in [-1, 1]: a few low-frequency waves per channel. */
static void synth_fill(sf_tensor *t) {
  int64_t n = sf_tensor_numel(t);
  if (t->dtype != SF_F32) {
    memset(t->data, 0, (size_t)sf_tensor_nbytes(t));
    return;
  }
  float *x = t->data;
  int64_t w = t->rank >= 1 ? t->dims[t->rank - 1] : 1, h = t->rank >= 2 ? t->dims[t->rank - 2] : 1;
  if (w < 1) w = 1;
  if (h < 1) h = 1;
  for (int64_t i = 0; i < n; i++) {
    int64_t c = i / (w * h), y = (i / w) % h, xx = i % w;
    double v = 0.6 * sin(0.11 * (double)xx + 0.7 * (double)c) * cos(0.07 * (double)y - 0.3 * (double)c) +
               0.3 * sin(0.013 * (double)(xx * y) + (double)c);
    x[i] = (float)(v > 1 ? 1 : v < -1 ? -1 : v);
  }
}

/* Bytes of one tensor encoded alone with codec (payload minus the 4-byte count). */
static int encoded_size(const sf_tensor *t, int codec, double tol, sf_buf *b, double *out, sf_err *err) {
  b->len = 0;
  int rc = sf__tensors_encode(b, t, 1, codec, tol, err);
  if (rc < 0) return rc;
  *out = (double)b->len - 4;
  return 0;
}

int sf__partition_measure_codecs(sf_partition *p, const sf_tensor *inputs, int n_inputs, double tol,
                                 sf_err *err) {
  sf_graph *sg = NULL;
  sf_session *s = NULL;
  sf_buf b = {0};
  double *cb = NULL;
  int rc = sf__partition_stage_graph(p, 0, p->n_ops, &sg, err);
  if (rc < 0) return rc;
  const sf_graph *g = p->g;
  /* every crossing activation becomes a graph output (graph inputs are known already) */
  int cap = sg->n_outputs;
  for (int pos = 0; pos <= p->n_ops; pos++) cap += p->cross_off[pos + 1] - p->cross_off[pos];
  int *outs = sf__malloc(sizeof(int) * (size_t)(cap + 1));
  char *seen = sf__calloc((size_t)g->n_tensors + 1, 1);
  cb = sf__calloc((size_t)g->n_tensors * SF_CODEC_COUNT + 1, sizeof(double));
  if (!outs || !seen || !cb) {
    free(outs);
    free(seen);
    rc = sf__errf(err, SF_ENOMEM, "out of memory");
    goto done;
  }
  int no = 0;
  for (int i = 0; i < sg->n_outputs; i++) outs[no++] = sg->outputs[i];
  for (int k = 0; k < p->cross_off[p->n_ops + 1]; k++) {
    int tid = p->cross[k];
    if (seen[tid] || g->tensors[tid].kind == SF_TK_INPUT) continue;
    seen[tid] = 1;
    int sid = sf__graph_find(sg, g->tensors[tid].t.name);
    int dup = 0;
    for (int i = 0; i < no && !dup; i++) dup = outs[i] == sid;
    if (sid >= 0 && !dup) outs[no++] = sid;
  }
  free(seen);
  free(sg->outputs);
  sg->outputs = outs;
  sg->n_outputs = no;

  struct sf_model m = {.g = sg};
  sf_session_opts so = sf_session_opts_default();
  so.no_fold = 1; /* every crossing tensor exists as computed by an unfused stage */
  if ((rc = sf_session_new(&s, &m, &so, err)) < 0) goto done;
  for (int i = 0; i < sf_session_n_inputs(s); i++) {
    sf_tensor *t = sf_session_input(s, i);
    const sf_tensor *given = NULL;
    for (int k = 0; k < n_inputs; k++)
      if (!strcmp(inputs[k].name, t->name)) given = &inputs[k];
    if (given) {
      if (given->dtype != t->dtype || sf_tensor_nbytes(given) != sf_tensor_nbytes(t)) {
        rc = sf__errf(err, SF_ESHAPE, "sample input '%s': type or size differs from the model's", t->name);
        goto done;
      }
      memcpy(t->data, given->data, (size_t)sf_tensor_nbytes(t));
    } else {
      synth_fill(t);
    }
  }
  if ((rc = sf_session_run(s, err)) < 0) goto done;
  /* sizes: session outputs by name, graph inputs from the session inputs */
  for (int tid = 0; tid < g->n_tensors; tid++) {
    const sf_gtensor *gt = &g->tensors[tid];
    if (gt->kind == SF_TK_CONST || !gt->t.name) continue;
    const sf_tensor *v = NULL;
    int k = sf_session_input_index(s, gt->t.name);
    if (k >= 0) v = sf_session_input(s, k);
    for (int o = 0; !v && o < sf_session_n_outputs(s); o++)
      if (!strcmp(sf_session_output(s, o)->name, gt->t.name)) v = sf_session_output(s, o);
    if (!v) continue;
    for (int c = 0; c < SF_CODEC_COUNT; c++)
      if ((rc = encoded_size(v, c, tol, &b, &cb[(size_t)tid * SF_CODEC_COUNT + (size_t)c], err)) < 0)
        goto done;
  }
  free(p->codec_bytes);
  p->codec_bytes = cb;
  cb = NULL;
done:
  free(cb);
  sf__buf_deinit(&b);
  sf_session_free(s);
  sf__graph_free(sg);
  return rc;
}

void sf__partition_apply_codec(sf_partition *p, int codec) {
  for (int i = 0; i < p->costs.n; i++) p->costs.cut_bytes[i] = sf__partition_codec_bytes(p, p->costs.pos[i], codec);
}
