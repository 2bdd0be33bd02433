/* ONNX backend conformance runner.
 *
 *   conformance --data DIR [--exclude FILE] [--filter SUBSTR] [-v] [--threads N]
 *
 * Runs every test directory under DIR/{node,pytorch-converted,pytorch-operator,simple} (each has
 * model.onnx and test_data_set_N/{input_K.pb,output_K.pb}) in sorted order, in process: load the
 * model, skip it when an operator is unsupported, otherwise compile a session for the given
 * input shapes, run it and compare every output (floats: |a-b| <= atol + rtol*|b|, NaN == NaN;
 * integers and bools exactly). One line per test: PASS / FAIL / SKIP / XFAIL (a failure listed
 * in the exclude file). Exit status 1 on any failure not excluded, or when fewer than
 * MIN_PASSED tests pass on a full run (guards against silently skipping everything).
 *
 * Exclude file: one "test_name  reason" per line; '#' starts a comment.
 */
#include <dirent.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "onnx/onnx.h"
#include "runtime/op.h"

#define RTOL 1e-3
#define ATOL 1e-7
#define MIN_PASSED 200
#define MAX_FILES 64

static const char *const categories[] = {"node", "pytorch-converted", "pytorch-operator",
                                         "simple"};

enum { R_PASS, R_FAIL, R_SKIP };

typedef struct excl {
  char *name, *reason;
  int used;
} excl;

typedef struct runner {
  int verbose, threads;
  excl *ex;
  int n_ex, cap_ex;
} runner;

/* ---- small helpers ---- */

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}
static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the entries of dir that start with prefix. Returns count or -1. */
static int list_dir(const char *dir, const char *prefix, char ***out) {
  *out = NULL;
  DIR *d = opendir(dir);
  if (!d) return -1;
  char **v = NULL;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, prefix, strlen(prefix))) continue;
    if (sf__grow((void **)&v, &cap, n + 1, sizeof *v)) break;
    if (!(v[n] = sf__strdup(e->d_name))) break;
    n++;
  }
  closedir(d);
  if (n) qsort(v, (size_t)n, sizeof *v, cmp_str);
  *out = v;
  return n;
}
static void free_list(char **v, int n) {
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

static float half_to_float(uint16_t h) {
  uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  float f;
  if (e == 0) {
    f = ldexpf((float)m, -24);
    return s ? -f : f;
  }
  if (e == 31) return m ? NAN : (s ? -INFINITY : INFINITY);
  uint32_t bits = s | ((e + 112) << 23) | (m << 13);
  memcpy(&f, &bits, 4);
  return f;
}

static int is_float(int dt) { return dt == SF_F32 || dt == SF_F64 || dt == SF_F16; }

static double float_at(const sf_tensor *t, int64_t i) {
  switch (t->dtype) {
    case SF_F32: return ((const float *)t->data)[i];
    case SF_F64: return ((const double *)t->data)[i];
    case SF_F16: return half_to_float(((const uint16_t *)t->data)[i]);
  }
  return 0;
}

/* Integer element as a 64-bit pattern (exact comparison). */
static uint64_t bits_at(const sf_tensor *t, int64_t i) {
  size_t es = sf_dtype_size(t->dtype);
  const unsigned char *p = (const unsigned char *)t->data + (size_t)i * es;
  uint64_t v = 0;
  memcpy(&v, p, es);
  if (t->dtype == SF_BOOL) v = v != 0;
  return v;
}

static void fmt_value(const sf_tensor *t, int64_t i, char *buf, size_t n) {
  if (is_float(t->dtype)) {
    snprintf(buf, n, "%.9g", float_at(t, i));
    return;
  }
  uint64_t v = bits_at(t, i);
  switch (t->dtype) {
    case SF_I8: snprintf(buf, n, "%d", (int)(int8_t)v); break;
    case SF_I16: snprintf(buf, n, "%d", (int)(int16_t)v); break;
    case SF_I32: snprintf(buf, n, "%d", (int)(int32_t)v); break;
    case SF_I64: snprintf(buf, n, "%lld", (long long)(int64_t)v); break;
    default: snprintf(buf, n, "%llu", (unsigned long long)v); break;
  }
}

/* Compare got with expected; on mismatch write a reason into msg and return -1. */
static int compare(const sf_tensor *got, const sf_tensor *exp, const char *oname, char *msg,
                   size_t msz) {
  char s1[64], s2[64];
  if (got->dtype != exp->dtype) {
    snprintf(msg, msz, "output '%s': dtype %s, expected %s", oname, sf_dtype_name(got->dtype),
             sf_dtype_name(exp->dtype));
    return -1;
  }
  int same = got->rank == exp->rank;
  for (int i = 0; same && i < got->rank; i++) same = got->dims[i] == exp->dims[i];
  if (!same) {
    snprintf(msg, msz, "output '%s': shape %s, expected %s", oname, sf__shape_str(got, s1, sizeof s1),
             sf__shape_str(exp, s2, sizeof s2));
    return -1;
  }
  if (got->layout != SF_LAYOUT_PLAIN) {
    snprintf(msg, msz, "output '%s': returned in channels-last layout", oname);
    return -1;
  }
  int64_t n = sf_tensor_numel(exp);
  if (n > 0 && !got->data) {
    snprintf(msg, msz, "output '%s': no data", oname);
    return -1;
  }
  int64_t first = -1, bad = 0;
  double maxd = 0;
  for (int64_t i = 0; i < n; i++) {
    int ok;
    if (is_float(exp->dtype)) {
      double a = float_at(got, i), b = float_at(exp, i);
      if (isnan(b)) ok = isnan(a);
      else if (isinf(b)) ok = a == b;
      else {
        double d = fabs(a - b);
        ok = d <= ATOL + RTOL * fabs(b);
        if (!isnan(d) && d > maxd) maxd = d;
      }
    } else {
      ok = bits_at(got, i) == bits_at(exp, i);
    }
    if (!ok) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (first >= 0) {
    fmt_value(got, first, s1, sizeof s1);
    fmt_value(exp, first, s2, sizeof s2);
    char sh[64];
    snprintf(msg, msz,
             "output '%s' (%s %s): %lld of %lld values differ; first at index %lld: got %s, "
             "expected %s%s%.3g",
             oname, sf_dtype_name(exp->dtype), sf__shape_str(exp, sh, sizeof sh), (long long)bad,
             (long long)n, (long long)first, s1, s2,
             is_float(exp->dtype) ? " (max abs diff " : "", is_float(exp->dtype) ? maxd : 0.0);
    if (is_float(exp->dtype)) strncat(msg, ")", msz - strlen(msg) - 1);
    return -1;
  }
  return 0;
}

/* Load dir/<prefix>K.pb for K = 0.. while present. Returns count or negative error. */
static int load_set(const char *dir, const char *prefix, sf_tensor *ts, char *msg, size_t msz) {
  int n = 0;
  for (; n < MAX_FILES; n++) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s/%s%d.pb", dir, prefix, n) >= (int)sizeof p || !is_file(p)) break;
    sf_err e = {0};
    if (sf__tensor_load_file(p, &ts[n], &e) < 0) {
      snprintf(msg, msz, "%s", e.msg);
      for (int i = 0; i < n; i++) sf__tensor_deinit(&ts[i]);
      return e.code ? e.code : SF_EFORMAT;
    }
  }
  return n;
}

/* One test_data_set: returns R_PASS, R_FAIL or R_SKIP with msg. */
static int run_set(runner *r, sf_model *m, const char *sdir, char *msg, size_t msz) {
  const sf_graph *g = m->g;
  sf_tensor in[MAX_FILES], out[MAX_FILES];
  sf_input_shape shapes[MAX_FILES];
  int slot[MAX_FILES]; /* graph input index per input file */
  int res = R_FAIL;
  int n_out = 0;
  sf_session *s = NULL;
  /* test data of unsupported types (strings) -> SKIP */
  int n_in = load_set(sdir, "input_", in, msg, msz);
  if (n_in < 0) return n_in == SF_EUNSUPPORTED ? R_SKIP : R_FAIL;
  n_out = load_set(sdir, "output_", out, msg, msz);
  if (n_out < 0) {
    res = n_out == SF_EUNSUPPORTED ? R_SKIP : R_FAIL;
    n_out = 0;
    goto out;
  }
  if (n_in > g->n_inputs) {
    snprintf(msg, msz, "%d input files but the model has %d inputs", n_in, g->n_inputs);
    goto out;
  }
  for (int k = 0; k < n_in; k++) {
    slot[k] = k;
    for (int j = 0; in[k].name && in[k].name[0] && j < g->n_inputs; j++)
      if (!strcmp(g->tensors[g->inputs[j]].t.name, in[k].name)) slot[k] = j;
    for (int j = 0; j < k; j++)
      if (slot[j] == slot[k]) {
        snprintf(msg, msz, "input files %d and %d both map to graph input %d", j, k, slot[k]);
        goto out;
      }
    shapes[k].name = g->tensors[g->inputs[slot[k]]].t.name;
    shapes[k].rank = in[k].rank;
    memcpy(shapes[k].dims, in[k].dims, sizeof shapes[k].dims);
  }
  sf_session_opts o = sf_session_opts_default();
  if (r->threads > 0) o.threads = r->threads;
  o.n_shapes = n_in;
  o.shapes = shapes;
  /* shape-determining inputs (Reshape targets, Slice bounds, ...) are frozen to their values */
  sf_tensor vals[MAX_FILES];
  for (int k = 0; k < n_in; k++) {
    vals[k] = in[k];
    vals[k].name = (char *)shapes[k].name;
  }
  o.n_values = n_in;
  o.values = vals;
  sf_err e = {0};
  if (sf_session_new(&s, m, &o, &e) < 0) {
    snprintf(msg, msz, "session: %s", e.msg);
    s = NULL;
    goto out;
  }
  for (int k = 0; k < n_in; k++) {
    const char *gname = g->tensors[g->inputs[slot[k]]].t.name;
    int si = sf_session_input_index(s, gname);
    sf_tensor *t = si >= 0 ? sf_session_input(s, si) : NULL;
    if (!t) {
      snprintf(msg, msz, "session has no input '%s'", gname);
      goto out;
    }
    char s1[64], s2[64];
    int same = t->dtype == in[k].dtype && t->rank == in[k].rank && t->layout == SF_LAYOUT_PLAIN;
    for (int i = 0; same && i < t->rank; i++) same = t->dims[i] == in[k].dims[i];
    if (!same) {
      snprintf(msg, msz, "input '%s': session expects %s %s%s, test data is %s %s", gname,
               sf_dtype_name(t->dtype), sf__shape_str(t, s1, sizeof s1),
               t->layout == SF_LAYOUT_PLAIN ? "" : " (channels-last)", sf_dtype_name(in[k].dtype),
               sf__shape_str(&in[k], s2, sizeof s2));
      goto out;
    }
    /* an input frozen to its value at session creation (and folded away) has no buffer */
    int64_t nb = sf_tensor_nbytes(t);
    if (nb > 0 && t->data) memcpy(t->data, in[k].data, (size_t)nb);
  }
  if (sf_session_run(s, &e) < 0) {
    snprintf(msg, msz, "run: %s", e.msg);
    goto out;
  }
  int ns = sf_session_n_outputs(s);
  if (ns != n_out) {
    snprintf(msg, msz, "session has %d outputs, test data has %d", ns, n_out);
    goto out;
  }
  for (int k = 0; k < n_out; k++) {
    int si = k;
    for (int j = 0; out[k].name && out[k].name[0] && j < ns; j++) {
      const sf_tensor *t = sf_session_output(s, j);
      if (t && t->name && !strcmp(t->name, out[k].name)) si = j;
    }
    const sf_tensor *t = sf_session_output(s, si);
    if (!t) {
      snprintf(msg, msz, "session output %d missing", si);
      goto out;
    }
    if (compare(t, &out[k], t->name ? t->name : "?", msg, msz)) goto out;
  }
  res = R_PASS;
out:
  sf_session_free(s);
  for (int k = 0; k < n_in; k++) sf__tensor_deinit(&in[k]);
  for (int k = 0; k < n_out; k++) sf__tensor_deinit(&out[k]);
  return res;
}

static int run_test(runner *r, const char *tdir, char *msg, size_t msz) {
  char p[4096];
  if (snprintf(p, sizeof p, "%s/model.onnx", tdir) >= (int)sizeof p) {
    snprintf(msg, msz, "path too long");
    return R_FAIL;
  }
  sf_model *m = NULL;
  sf_err e = {0};
  if (sf_model_load(&m, p, &e) < 0) {
    /* subgraphs, sequence types, string tensors...: features, not bugs */
    snprintf(msg, msz, "%s", e.msg);
    return e.code == SF_EUNSUPPORTED ? R_SKIP : R_FAIL;
  }
  /* unsupported operators -> SKIP, naming them */
  const sf_graph *g = m->g;
  size_t o = 0;
  msg[0] = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const sf_node *n = &g->nodes[i];
    if (sf__op_find(n->domain, n->op_type)) continue;
    int dup = 0;
    for (int j = 0; j < i && !dup; j++)
      dup = !strcmp(g->nodes[j].op_type, n->op_type) && !strcmp(g->nodes[j].domain, n->domain);
    if (dup || o + 2 >= msz) continue;
    o += (size_t)snprintf(msg + o, msz - o, "%s%s%s%s", o ? ", " : "unsupported op ", n->domain,
                          n->domain[0] ? "." : "", n->op_type);
  }
  if (o) {
    sf_model_free(m);
    return R_SKIP;
  }
  char **sets = NULL;
  int ns = list_dir(tdir, "test_data_set_", &sets);
  int res = R_PASS;
  if (ns <= 0) {
    snprintf(msg, msz, "no test_data_set_* directories");
    res = R_FAIL;
  }
  for (int i = 0; i < ns && res == R_PASS; i++) {
    char sd[4096];
    if (snprintf(sd, sizeof sd, "%s/%s", tdir, sets[i]) >= (int)sizeof sd || !is_dir(sd)) continue;
    char m2[1500] = "";
    res = run_set(r, m, sd, m2, sizeof m2);
    if (res != R_PASS) snprintf(msg, msz, "%s: %s", sets[i], m2);
  }
  free_list(sets, ns > 0 ? ns : 0);
  sf_model_free(m);
  return res;
}

static int read_exclude(runner *r, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "conformance: cannot open exclude file %s\n", path);
    return -1;
  }
  char line[2048];
  while (fgets(line, sizeof line, f)) {
    char *h = strchr(line, '#');
    if (h) *h = 0;
    char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    size_t nl = strcspn(p, " \t\r\n");
    if (!nl) continue;
    char *reason = p + nl;
    if (*reason) *reason++ = 0;
    while (*reason == ' ' || *reason == '\t') reason++;
    reason[strcspn(reason, "\r\n")] = 0;
    if (sf__grow((void **)&r->ex, &r->cap_ex, r->n_ex + 1, sizeof *r->ex)) break;
    excl *x = &r->ex[r->n_ex++];
    x->name = sf__strdup(p);
    x->reason = sf__strdup(reason);
    x->used = 0;
  }
  fclose(f);
  return 0;
}

static excl *find_excl(runner *r, const char *name) {
  for (int i = 0; i < r->n_ex; i++)
    if (r->ex[i].name && !strcmp(r->ex[i].name, name)) return &r->ex[i];
  return NULL;
}

static void usage(void) {
  fprintf(stderr,
          "usage: conformance --data DIR [--exclude FILE] [--filter SUBSTR] [-v] [--threads N]\n");
}

int main(int argc, char **argv) {
  const char *data = NULL, *exclude = NULL, *filter = NULL;
  runner r = {0};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
    else if (!strcmp(argv[i], "--exclude") && i + 1 < argc) exclude = argv[++i];
    else if (!strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) r.threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "-v")) r.verbose = 1;
    else {
      usage();
      return 2;
    }
  }
  if (!data) {
    usage();
    return 2;
  }
  if (exclude && read_exclude(&r, exclude)) return 2;
  int passed = 0, failed = 0, xfailed = 0, skipped = 0, total = 0;
  double t_all = sf__now();
  for (size_t c = 0; c < sizeof categories / sizeof categories[0]; c++) {
    char cdir[4096];
    if (snprintf(cdir, sizeof cdir, "%s/%s", data, categories[c]) >= (int)sizeof cdir) continue;
    char **tests = NULL;
    int nt = list_dir(cdir, "test_", &tests);
    for (int i = 0; i < nt; i++) {
      const char *name = tests[i];
      if (filter && !strstr(name, filter)) continue;
      char tdir[4096];
      if (snprintf(tdir, sizeof tdir, "%s/%s", cdir, name) >= (int)sizeof tdir || !is_dir(tdir))
        continue;
      total++;
      char msg[2048] = "";
      double t0 = sf__now();
      int res = run_test(&r, tdir, msg, sizeof msg);
      double ms = (sf__now() - t0) * 1e3;
      excl *x = find_excl(&r, name);
      if (x) x->used = 1;
      if (res == R_PASS) {
        passed++;
        if (x)
          printf("PASS %s (listed in the exclude file: remove it)\n", name);
        else if (r.verbose)
          printf("PASS %s (%.1f ms)\n", name, ms);
        else
          printf("PASS %s\n", name);
      } else if (res == R_SKIP) {
        skipped++;
        printf("SKIP %s: %s\n", name, msg);
      } else if (x) {
        xfailed++;
        printf("XFAIL %s: %s [excluded: %s]\n", name, msg, x->reason);
      } else {
        failed++;
        printf("FAIL %s: %s\n", name, msg);
      }
      fflush(stdout);
    }
    free_list(tests, nt > 0 ? nt : 0);
  }
  if (!filter)
    for (int i = 0; i < r.n_ex; i++)
      if (!r.ex[i].used) printf("note: excluded test '%s' was not found\n", r.ex[i].name);
  printf("conformance: %d tests: %d passed, %d failed, %d failed but excluded, %d skipped "
         "(%.1f s)\n",
         total, passed, failed, xfailed, skipped, sf__now() - t_all);
  int rc = failed ? 1 : 0;
  if (!filter && passed < MIN_PASSED) {
    printf("conformance: only %d tests passed (at least %d expected on a full run)\n", passed,
           MIN_PASSED);
    rc = 1;
  }
  for (int i = 0; i < r.n_ex; i++) {
    free(r.ex[i].name);
    free(r.ex[i].reason);
  }
  free(r.ex);
  return rc;
}
