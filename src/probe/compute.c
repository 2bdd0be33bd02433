/* Compute probe: per-operator times of a model measured with the runtime's profiling, the costs
 * file that stores them, and their use as the planner's measured stage times. See probe.h.
 *
 * Cost: warmup + iters inferences of the whole model, O(L x iters) memory for the samples
 * (bounded by SF_PROBE_MAX_SAMPLES). */
#include <cJSON.h>
#include <math.h>
#include <string.h>

#include "probe/probe.h"

sf_probe_compute_opts sf_probe_compute_opts_default(void) {
  sf_probe_compute_opts o;
  memset(&o, 0, sizeof o);
  o.iters = 20;
  o.warmup = 2;
  return o;
}

void sf__op_times_deinit(sf_op_times *t) {
  if (!t) return;
  for (int q = 0; q < t->n_ops; q++) {
    if (t->names) free(t->names[q]);
    if (t->op_types) free(t->op_types[q]);
  }
  free(t->names);
  free(t->op_types);
  free(t->seconds);
  memset(t, 0, sizeof *t);
}

static int times_alloc(sf_op_times *t, int n) {
  t->names = sf__calloc((size_t)n, sizeof *t->names);
  t->op_types = sf__calloc((size_t)n, sizeof *t->op_types);
  t->seconds = sf__calloc((size_t)n, sizeof *t->seconds);
  if (!t->names || !t->op_types || !t->seconds) return SF_ENOMEM;
  t->n_ops = n;
  return 0;
}

static void fill_input(sf_tensor *t, uint64_t seed) {
  int64_t n = sf_tensor_numel(t);
  if (!t->data || n <= 0) return;
  uint64_t x = seed * 2654435761u + 1;
  for (int64_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    double u = (double)(x >> 11) / 9007199254740992.0;
    if (t->dtype == SF_F32)
      ((float *)t->data)[i] = (float)(u * 2.0 - 1.0);
    else if (t->dtype == SF_F64)
      ((double *)t->data)[i] = u * 2.0 - 1.0;
    else
      memset((char *)t->data + i * (int64_t)sf_dtype_size(t->dtype), 0, sf_dtype_size(t->dtype));
  }
}

void sf__probe_fill_inputs(sf_session *s) {
  for (int i = 0; i < sf_session_n_inputs(s); i++) fill_input(sf_session_input(s, i), (uint64_t)i + 1);
}

/* name -> positions with that name, as a chain: head in the map, next[] links in order. */
typedef struct name_index {
  sf_strmap map;
  int *next;
  unsigned char *taken;
} name_index;

static int index_build(name_index *ix, int n, char *const *names) {
  sf__strmap_init(&ix->map);
  ix->next = sf__malloc(sizeof *ix->next * (size_t)(n ? n : 1));
  ix->taken = sf__calloc((size_t)(n ? n : 1), 1);
  if (!ix->next || !ix->taken) return SF_ENOMEM;
  for (int q = n - 1; q >= 0; q--) {
    ix->next[q] = sf__strmap_get(&ix->map, names[q]);
    if (sf__strmap_put(&ix->map, names[q], q)) return SF_ENOMEM;
  }
  return 0;
}

/* First position named name not taken yet (and take it); else the first one; -1 if none. */
static int index_take(name_index *ix, const char *name) {
  int first = sf__strmap_get(&ix->map, name);
  for (int q = first; q >= 0; q = ix->next[q])
    if (!ix->taken[q]) {
      ix->taken[q] = 1;
      return q;
    }
  return first;
}

static void index_free(name_index *ix) {
  sf__strmap_deinit(&ix->map);
  free(ix->next);
  free(ix->taken);
}

static int cmp_tot(const void *a, const void *b) {
  const double *x = a, *y = b;
  return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

int sf__probe_compute(sf_model *m, const sf_partition *pa, const sf_probe_compute_opts *o,
                      sf_op_times *out, sf_err *err) {
  memset(out, 0, sizeof *out);
  if (!m || !pa || !o) return sf__errf(err, SF_EINVAL, "probe: missing argument");
  int L = pa->n_ops, rc = 0;
  if (o->iters < 1 || o->iters > 1000000 || o->warmup < 0 || o->warmup > 1000000 ||
      o->threads < 0 || o->threads > 1024)
    return sf__errf(err, SF_EINVAL, "probe: iterations %d, warm-up %d, threads %d out of range",
                    o->iters, o->warmup, o->threads);
  if (L < 1) return sf__errf(err, SF_EINVAL, "probe: the model has no operators");
  if ((int64_t)L * o->iters > SF_PROBE_MAX_SAMPLES)
    return sf__errf(err, SF_ELIMIT, "probe: %d operators x %d iterations exceed %d samples; use "
                    "fewer iterations", L, o->iters, SF_PROBE_MAX_SAMPLES);
  sf_session *s = NULL;
  name_index ix;
  memset(&ix, 0, sizeof ix);
  int *target = NULL, n_e = 0;
  double *prev = NULL, *samples = NULL, *tot = NULL;
  sf_session_opts so = sf_session_opts_default();
  so.threads = o->threads;
  so.n_shapes = o->n_shapes;
  so.shapes = o->shapes;
  if ((rc = sf_session_new(&s, m, &so, err)) < 0) {
    sf__errctx(err, rc, "probe");
    goto fail;
  }
  sf__probe_fill_inputs(s);
  int warm = o->warmup > 0 ? o->warmup : 1;
  for (int i = 0; i < warm; i++)
    if ((rc = sf_session_run(s, err)) < 0) {
      sf__errctx(err, rc, "probe: inference");
      goto fail;
    }
  sf_session_set_profiling(s, 1);
  const sf_node_profile *ent;
  n_e = sf_session_profile(s, &ent);
  if (n_e <= 0) {
    rc = sf__errf(err, SF_ENOMEM, "probe: out of memory for the profile");
    goto fail;
  }
  if ((rc = times_alloc(out, L))) goto nomem;
  for (int q = 0; q < L; q++) {
    const sf_node *nd = &pa->g->nodes[pa->ops[q]];
    out->names[q] = sf__strdup(nd->name ? nd->name : "");
    out->op_types[q] = sf__strdup(nd->op_type ? nd->op_type : "");
    if (!out->names[q] || !out->op_types[q]) goto nomem;
  }
  if (index_build(&ix, L, out->names)) goto nomem;
  target = sf__malloc(sizeof *target * (size_t)n_e);
  prev = sf__calloc((size_t)n_e, sizeof *prev);
  samples = sf__calloc((size_t)L * (size_t)o->iters, sizeof *samples);
  tot = sf__calloc((size_t)o->iters * 3, sizeof *tot);
  if (!target || !prev || !samples || !tot) goto nomem;
  /* runtime node -> operator position; nodes of no operator go to the one run before them */
  int last = -1, matched = 0;
  for (int e = 0; e < n_e; e++) {
    int q = ent[e].name ? index_take(&ix, ent[e].name) : -1;
    if (q >= 0) matched++, last = q;
    target[e] = q >= 0 ? q : -1 - (last >= 0 ? last : 0);
  }
  if (!matched) {
    rc = sf__errf(err, SF_EINTERNAL, "probe: no runtime node matches an operator of the model");
    goto fail;
  }
  /* unmatched before the first matched node: the first matched one */
  int first = -1;
  for (int e = 0; e < n_e && first < 0; e++) first = target[e];
  for (int e = 0; e < n_e && target[e] < 0; e++) target[e] = -1 - first;
  for (int e = 0; e < n_e; e++) prev[e] = ent[e].seconds;
  for (int it = 0; it < o->iters; it++) {
    if ((rc = sf_session_run(s, err)) < 0) {
      sf__errctx(err, rc, "probe: inference");
      goto fail;
    }
    double sum = 0, un = 0;
    for (int e = 0; e < n_e; e++) {
      double d = ent[e].seconds - prev[e];
      prev[e] = ent[e].seconds;
      int q = target[e] >= 0 ? target[e] : -1 - target[e];
      if (target[e] < 0) un += d;
      samples[(size_t)it * L + q] += d;
      sum += d;
    }
    tot[3 * it] = sum;
    tot[3 * it + 1] = it;
    tot[3 * it + 2] = un;
  }
  /* the faster half of the inferences (by total time) */
  double *order = sf__malloc(sizeof *order * 2 * (size_t)o->iters);
  if (!order) goto nomem;
  for (int it = 0; it < o->iters; it++) order[2 * it] = tot[3 * it], order[2 * it + 1] = it;
  qsort(order, (size_t)o->iters, 2 * sizeof *order, cmp_tot);
  int keep = (o->iters + 1) / 2;
  for (int k = 0; k < keep; k++) {
    int it = (int)order[2 * k + 1];
    for (int q = 0; q < L; q++) out->seconds[q] += samples[(size_t)it * L + q];
    out->unmatched_s += tot[3 * it + 2];
  }
  free(order);
  out->total_s = 0;
  for (int q = 0; q < L; q++) {
    out->seconds[q] /= keep;
    if (out->seconds[q] < 0) out->seconds[q] = 0;
    out->total_s += out->seconds[q];
  }
  out->unmatched_s /= keep;
  out->flops = pa->flops_at[L];
  out->threads = o->threads ? o->threads : sf__ncpu();
  out->iters = o->iters;
  if (out->flops > 0 && out->total_s > 0) {
    out->ref_flops_per_s = out->flops / out->total_s;
    snprintf(out->reference, sizeof out->reference, "measured");
  } else {
    out->ref_flops_per_s = 1e9;
    snprintf(out->reference, sizeof out->reference, "default (no flops)");
  }
  goto out;
nomem:
  rc = sf__errf(err, SF_ENOMEM, "probe: out of memory (%d operators)", L);
fail:
  sf__op_times_deinit(out);
out:
  index_free(&ix);
  free(target);
  free(prev);
  free(samples);
  free(tot);
  sf_session_free(s);
  return rc < 0 ? rc : 0;
}

/* ---- the costs file ----------------------------------------------------------------------- */
char *sf__op_times_json(const sf_op_times *t, const char *model) {
  cJSON *root = cJSON_CreateObject();
  if (!root) return NULL;
  cJSON_AddStringToObject(root, "kind", SF_COSTS_KIND);
  cJSON_AddNumberToObject(root, "version", 1);
  cJSON_AddStringToObject(root, "model", model ? model : "");
  cJSON_AddNumberToObject(root, "operators", t->n_ops);
  cJSON_AddNumberToObject(root, "threads", t->threads);
  cJSON_AddNumberToObject(root, "iters", t->iters);
  cJSON_AddStringToObject(root, "reference", t->reference);
  cJSON_AddNumberToObject(root, "ref_gflops", t->ref_flops_per_s / 1e9);
  cJSON_AddNumberToObject(root, "model_gflop", t->flops / 1e9);
  cJSON_AddNumberToObject(root, "total_s", t->total_s);
  cJSON_AddNumberToObject(root, "unmatched_s", t->unmatched_s);
  cJSON *ops = cJSON_AddArrayToObject(root, "ops");
  for (int q = 0; ops && q < t->n_ops; q++) {
    cJSON *o = cJSON_CreateObject();
    if (!o) break;
    cJSON_AddStringToObject(o, "name", t->names[q]);
    cJSON_AddStringToObject(o, "op_type", t->op_types[q]);
    cJSON_AddNumberToObject(o, "seconds", t->seconds[q]);
    cJSON_AddItemToArray(ops, o);
  }
  char *s = cJSON_Print(root);
  cJSON_Delete(root);
  return s;
}

static int num_field(const cJSON *o, const char *key, double lo, double hi, double *v,
                     const char *where, sf_err *err) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
    return sf__errf(err, SF_EFORMAT, "costs: %s'%s' must be a finite number", where, key);
  if (x->valuedouble < lo || x->valuedouble > hi)
    return sf__errf(err, SF_EFORMAT, "costs: %s'%s' = %g is out of range [%g, %g]", where, key,
                    x->valuedouble, lo, hi);
  *v = x->valuedouble;
  return 0;
}

static const char *str_field(const cJSON *o, const char *key, size_t max, const char *where,
                             sf_err *err) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsString(x) || !x->valuestring) {
    sf__errf(err, SF_EFORMAT, "costs: %s'%s' must be a string", where, key);
    return NULL;
  }
  if (strlen(x->valuestring) > max) {
    sf__errf(err, SF_ELIMIT, "costs: %s'%s' is longer than %zu bytes", where, key, max);
    return NULL;
  }
  return x->valuestring;
}

int sf__op_times_parse(const char *json, size_t len, sf_op_times *out, sf_err *err) {
  memset(out, 0, sizeof *out);
  int rc = 0;
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (!root || !cJSON_IsObject(root)) {
    rc = sf__errf(err, SF_EFORMAT, "costs: not a JSON object");
    goto fail;
  }
  const char *kind = str_field(root, "kind", 64, "", err);
  if (!kind) {
    rc = SF_EFORMAT;
    goto fail;
  }
  if (strcmp(kind, SF_COSTS_KIND)) {
    rc = sf__errf(err, SF_EFORMAT, "costs: 'kind' is '%.64s', expected '%s' (made by `seifer probe "
                  "compute`)", kind, SF_COSTS_KIND);
    goto fail;
  }
  double v, nops, ref;
  if ((rc = num_field(root, "version", 1, 1, &v, "", err)) ||
      (rc = num_field(root, "operators", 1, SF_PROBE_MAX_OPS, &nops, "", err)) ||
      (rc = num_field(root, "ref_gflops", 1e-9, 1e9, &ref, "", err)))
    goto fail;
  if (nops != floor(nops)) {
    rc = sf__errf(err, SF_EFORMAT, "costs: 'operators' must be an integer");
    goto fail;
  }
  const cJSON *ops = cJSON_GetObjectItemCaseSensitive(root, "ops");
  if (!cJSON_IsArray(ops) || cJSON_GetArraySize(ops) != (int)nops) {
    rc = sf__errf(err, SF_EFORMAT, "costs: 'ops' must be an array of 'operators' (%d) entries",
                  (int)nops);
    goto fail;
  }
  if (times_alloc(out, (int)nops)) goto nomem;
  out->ref_flops_per_s = ref * 1e9;
  const cJSON *x;
  if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(root, "threads")) && x->valuedouble >= 0 &&
      x->valuedouble <= 1e6)
    out->threads = (int)x->valuedouble;
  if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(root, "iters")) && x->valuedouble >= 0 &&
      x->valuedouble <= 1e9)
    out->iters = (int)x->valuedouble;
  if (cJSON_IsNumber(x = cJSON_GetObjectItemCaseSensitive(root, "model_gflop")) &&
      isfinite(x->valuedouble) && x->valuedouble >= 0)
    out->flops = x->valuedouble * 1e9;
  if (cJSON_IsString(x = cJSON_GetObjectItemCaseSensitive(root, "reference")) && x->valuestring)
    snprintf(out->reference, sizeof out->reference, "%s", x->valuestring);
  int q = 0;
  const cJSON *op;
  cJSON_ArrayForEach(op, ops) {
    char where[48];
    snprintf(where, sizeof where, "ops[%d]: ", q);
    if (!cJSON_IsObject(op)) {
      rc = sf__errf(err, SF_EFORMAT, "costs: ops[%d] must be an object", q);
      goto fail;
    }
    const char *nm = str_field(op, "name", 4096, where, err);
    const char *ty = nm ? str_field(op, "op_type", 256, where, err) : NULL;
    if (!nm || !ty) {
      rc = err ? err->code : SF_EFORMAT;
      goto fail;
    }
    if ((rc = num_field(op, "seconds", 0, 1e6, &out->seconds[q], where, err))) goto fail;
    out->names[q] = sf__strdup(nm);
    out->op_types[q] = sf__strdup(ty);
    if (!out->names[q] || !out->op_types[q]) goto nomem;
    out->total_s += out->seconds[q];
    q++;
  }
  cJSON_Delete(root);
  return 0;
nomem:
  rc = sf__errf(err, SF_ENOMEM, "costs: out of memory");
fail:
  cJSON_Delete(root);
  sf__op_times_deinit(out);
  return rc;
}

int sf__op_times_apply(const sf_op_times *t, const sf_partition *pa, sf_pcosts *c, sf_err *err) {
  int L = pa->n_ops, rc = 0;
  if (t->n_ops != L)
    return sf__errf(err, SF_EINVAL, "costs: %d operators measured, the model has %d (measured for "
                    "another model or other input shapes?)", t->n_ops, L);
  double *s = sf__malloc(sizeof *s * (size_t)L);
  name_index ix;
  memset(&ix, 0, sizeof ix);
  if (!s) return sf__errf(err, SF_ENOMEM, "costs: out of memory");
  int same = 1;
  for (int q = 0; q < L && same; q++) same = !strcmp(t->names[q], pa->g->nodes[pa->ops[q]].name);
  if (same) {
    memcpy(s, t->seconds, sizeof *s * (size_t)L);
  } else { /* another operator order: match by name */
    if (index_build(&ix, L, t->names)) {
      rc = sf__errf(err, SF_ENOMEM, "costs: out of memory");
      goto out;
    }
    for (int q = 0; q < L; q++) {
      const char *nm = pa->g->nodes[pa->ops[q]].name;
      int k = index_take(&ix, nm);
      if (k < 0) {
        rc = sf__errf(err, SF_EINVAL, "costs: no time for operator '%s' (position %d): measured "
                      "for another model?", nm, q);
        goto out;
      }
      s[q] = t->seconds[k];
    }
  }
  rc = sf__pcosts_set_op_times(c, s, L, t->ref_flops_per_s, err);
out:
  index_free(&ix);
  free(s);
  return rc;
}
