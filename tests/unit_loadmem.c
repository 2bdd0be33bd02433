/* Loading holds the weights once: a model file (mapped, initializers decoded one at a time) and
 * the same bytes from a buffer give identical constants, an unusual encoding (the graph field
 * repeated, which protobuf merges) takes the whole-message path to the same graph, and in a fresh
 * child process the resident peak of loading mobilenetv2 and of creating a session that releases
 * its weights stays near the weights (not two or three times them). Also: a session's kernel
 * and constant bytes (sf_session_stats) and the model refusing a second session. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "onnx/onnx.h"
#include "zoo/zoo.h"

static void *zoo_bytes(const char *name, size_t *len) {
  sf_err err = {0};
  void *buf = NULL;
  int rc = sf__zoo_serialize(name, 1, &buf, len, &err);
  if (rc) print_error("%s: %s\n", name, err.msg);
  assert_int_equal(rc, 0);
  return buf;
}

static char *write_tmp(const void *buf, size_t len) {
  char *path = strdup("/tmp/sf-loadmem-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, buf, len), (ssize_t)len);
  close(fd);
  return path;
}

/* Every constant of a equals the one of the same name in b (dtype, shape, bytes). */
static void same_constants(const sf_model *a, const sf_model *b) {
  int n = 0;
  assert_int_equal(a->g->n_tensors, b->g->n_tensors);
  assert_int_equal(a->g->n_nodes, b->g->n_nodes);
  for (int i = 0; i < a->g->n_tensors; i++) {
    const sf_gtensor *x = &a->g->tensors[i];
    if (x->kind != SF_TK_CONST) continue;
    int j = sf__graph_find(b->g, x->t.name);
    assert_true(j >= 0);
    const sf_gtensor *y = &b->g->tensors[j];
    assert_int_equal(y->kind, SF_TK_CONST);
    assert_int_equal(x->t.dtype, y->t.dtype);
    assert_int_equal(x->t.rank, y->t.rank);
    int64_t nb = sf_tensor_nbytes(&x->t);
    assert_int_equal(nb, sf_tensor_nbytes(&y->t));
    assert_true(x->t.data && y->t.data);
    assert_memory_equal(x->t.data, y->t.data, (size_t)nb);
    n++;
  }
  assert_true(n > 0);
}

static void test_file_buffer_fallback(void **state) {
  (void)state;
  size_t len = 0;
  void *buf = zoo_bytes("tiny-inception", &len);
  char *path = write_tmp(buf, len);
  sf_err err = {0};
  sf_model *mf = NULL, *mb = NULL, *mm = NULL;
  assert_int_equal(sf_model_load(&mf, path, &err), 0);
  assert_int_equal(sf_model_load_buffer(&mb, buf, len, NULL, &err), 0);
  same_constants(mf, mb);
  /* the graph field again, empty: protobuf merges it into the first (whole-message path) */
  unsigned char *dup = malloc(len + 2);
  memcpy(dup, buf, len);
  dup[len] = (7 << 3) | 2;
  dup[len + 1] = 0;
  assert_int_equal(sf_model_load_buffer(&mm, dup, len + 2, NULL, &err), 0);
  same_constants(mf, mm);
  /* a truncated file is refused either way */
  sf_model *bad = NULL;
  assert_true(sf_model_load_buffer(&bad, buf, len - 7, NULL, &err) < 0);
  assert_null(bad);
  sf_model_free(mf);
  sf_model_free(mb);
  sf_model_free(mm);
  free(dup);
  unlink(path);
  free(path);
  free(buf);
}

static int64_t status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  int64_t v = -1;
  size_t n = strlen(key);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, key, n)) v = strtoll(line + n, NULL, 10);
  fclose(f);
  return v;
}

/* Reset VmHWM to the current resident size (Linux >= 4.0); 0 on success. */
static int reset_peak(void) {
  FILE *f = fopen("/proc/self/clear_refs", "w");
  if (!f) return -1;
  int ok = fputs("5", f) >= 0;
  return fclose(f) == 0 && ok ? 0 : -1;
}

/* In a child: peak growth of loading path and of a release_weights session, against the raw
 * weights. Exit status: 0 ok, 1 too much, 2 could not measure (skipped). */
static int child_peaks(const char *path, int64_t weights) {
#ifdef __SANITIZE_ADDRESS__
  return 2; /* freed memory stays in the sanitizer's quarantine: nothing to measure */
#endif
  if (status_kb("VmHWM:") < 0 || reset_peak()) return 2;
  int64_t rss0 = status_kb("VmRSS:") * 1024;
  sf_err err = {0};
  sf_model *m = NULL;
  if (sf_model_load(&m, path, &err)) return 1;
  int64_t load = status_kb("VmHWM:") * 1024 - rss0;
  sf_session_opts o = sf_session_opts_default();
  o.threads = 1;
  o.release_weights = 1;
  sf_session *s = NULL;
  if (sf_session_new(&s, m, &o, &err)) return 1;
  int64_t sess = status_kb("VmHWM:") * 1024 - rss0;
  sf_session_stats st;
  sf_session_get_stats(s, &st);
  /* the model lent its weights to the session for good */
  sf_session *s2 = NULL;
  int refused = sf_session_new(&s2, m, &o, &err) < 0 && strstr(err.msg, "released");
  int64_t held = st.arena_bytes + st.kernel_bytes + st.const_bytes;
  fprintf(stderr,
          "    weights %.1f MB: load peak +%.1f MB; session peak +%.1f MB (arena %.1f, kernels "
          "%.1f, constants %.1f)\n",
          weights / 1e6, load / 1e6, sess / 1e6, st.arena_bytes / 1e6, st.kernel_bytes / 1e6,
          st.const_bytes / 1e6);
  int ok = refused && st.kernel_bytes > 0 && st.const_bytes < weights / 10 &&
           load <= weights * 5 / 4 + (4 << 20) &&        /* once, plus one tensor's pages */
           sess <= held + weights / 2 + (4 << 20);      /* not raw + folded + packed */
  sf_session_free(s);
  sf_model_free(m);
  return ok ? 0 : 1;
}

static void test_peak_memory(void **state) {
  (void)state;
  size_t len = 0;
  void *buf = zoo_bytes("mobilenetv2", &len);
  char *path = write_tmp(buf, len);
  free(buf);
  sf_err err = {0};
  sf_model *m = NULL;
  assert_int_equal(sf_model_load(&m, path, &err), 0);
  int64_t weights = 0;
  for (int i = 0; i < m->g->n_tensors; i++)
    if (m->g->tensors[i].kind == SF_TK_CONST) weights += sf_tensor_nbytes(&m->g->tensors[i].t);
  sf_model_free(m);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) _exit(child_peaks(path, weights));
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  unlink(path);
  free(path);
  assert_true(WIFEXITED(st));
  if (WEXITSTATUS(st) == 2) {
    print_message("    skipped: no /proc/self/clear_refs, or a sanitizer build\n");
    return;
  }
  assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_file_buffer_fallback),
      cmocka_unit_test(test_peak_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
