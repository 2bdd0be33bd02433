/* Control plane pieces (src/control): the model repository (Triton layout: ordering, what is not
 * a version, atomic adds that refuse to overwrite), worker configurations and statuses (JSON
 * round trip, comparison), the gateway's CONFIG (a reason only without pipelines), atomic files,
 * and the controller's state file (save, then load into a fresh controller: the pipeline, the
 * generation and the rejected versions come back; a pipeline naming an unknown node is dropped;
 * a state file of another model is refused). */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "control/controller.h"

static char tmpdir[64];

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/sf-unit-control-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_repo(void **state) {
  (void)state;
  char repo[PATH_MAX], src[PATH_MAX], p[PATH_MAX + 64];
  sf_err err = {0};
  snprintf(repo, sizeof repo, "%s/repo", tmpdir);
  snprintf(src, sizeof src, "%s/model.onnx", tmpdir);
  write_text(src, "bytes of a model");
  sf_repo_version v[8];
  assert_int_equal(sf__repo_scan(repo, "m", v, 8, &err), 0); /* no repository yet: no versions */
  assert_int_equal(sf__repo_add(repo, "m", 3, src, &err), 0);
  assert_int_equal(sf__repo_add(repo, "m", 1, src, &err), 0);
  assert_int_equal(sf__repo_add(repo, "m", 12, src, &err), 0);
  assert_true(sf__repo_add(repo, "m", 3, src, &err) < 0); /* exists */
  assert_non_null(strstr(err.msg, "exists"));
  assert_true(sf__repo_add(repo, "m", 0, src, &err) < 0);
  assert_true(sf__repo_add(repo, "../x", 2, src, &err) < 0);
  /* not versions: a name, a leading zero, zero, a version directory without model.onnx */
  const char *junk[] = {"abc", "07", "0", "5"};
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/m/%s", repo, junk[i]);
    assert_int_equal(mkdir(p, 0700), 0);
    if (i < 3) {
      snprintf(p, sizeof p, "%s/m/%s/model.onnx", repo, junk[i]);
      write_text(p, "x");
    }
  }
  int n = sf__repo_scan(repo, "m", v, 8, &err);
  assert_int_equal(n, 3);
  assert_int_equal(v[0].version, 12);
  assert_int_equal(v[1].version, 3);
  assert_int_equal(v[2].version, 1);
  assert_int_equal(v[0].size, 16);
  assert_non_null(strstr(v[1].path, "/m/3/model.onnx"));
  n = sf__repo_scan(repo, "m", v, 2, &err); /* the highest ones when the table is short */
  assert_int_equal(n, 2);
  assert_int_equal(v[0].version, 12);
  assert_int_equal(v[1].version, 3);
  char name[256];
  assert_int_equal(sf__repo_only_model(repo, name, sizeof name, &err), 0);
  assert_string_equal(name, "m");
  assert_int_equal(sf__repo_add(repo, "other", 1, src, &err), 0);
  assert_true(sf__repo_only_model(repo, name, sizeof name, &err) < 0);
  assert_non_null(strstr(err.msg, "several"));
}

static void test_worker_config(void **state) {
  (void)state;
  sf_wcfg c = {.stage = 2,
               .pipeline = 7,
               .last = 1,
               .codec = SF_CODEC_LZ4,
               .rate_bytes_per_s = 25e6 / 3,
               .compute_s = 0.0123456789};
  snprintf(c.next, sizeof c.next, "127.0.0.1:9000");
  char *js = sf__wcfg_json(&c);
  assert_non_null(js);
  sf_wstatus st;
  sf_err err = {0};
  assert_int_equal(sf__wstatus_parse(js, strlen(js), &st, &err), 0);
  assert_true(sf__wcfg_same(&c, &st));
  free(js);
  sf_wcfg d = c;
  d.last = 0;
  assert_false(sf__wcfg_same(&d, &st));
  d = c;
  snprintf(d.next, sizeof d.next, "127.0.0.1:9001");
  assert_false(sf__wcfg_same(&d, &st));
  d = c;
  d.compute_s = 0.02;
  assert_false(sf__wcfg_same(&d, &st));
  /* a worker's heartbeat */
  const char *hb =
      "{\"node\":\"n1\",\"digest\":\"ab\",\"stage\":1,\"pipeline\":3,\"next\":\"h:1\",\"last\":"
      "false,"
      "\"codec\":\"raw\",\"rate_bytes_per_s\":0,\"compute_s\":0,\"processed\":10,\"draining\":"
      "false}";
  assert_int_equal(sf__wstatus_parse(hb, strlen(hb), &st, &err), 0);
  assert_string_equal(st.node, "n1");
  assert_string_equal(st.digest, "ab");
  assert_int_equal(st.cfg.pipeline, 3);
  assert_int_equal(st.cfg.codec, SF_CODEC_RAW);
  assert_true(sf__wstatus_parse("[1]", 3, &st, &err) < 0);
  assert_true(sf__wstatus_parse("{", 1, &st, &err) < 0);
}

static void test_gateway_config(void **state) {
  (void)state;
  cJSON *in = cJSON_Parse("[{\"name\":\"x\",\"dtype\":1,\"shape\":[1,3]}]");
  cJSON *out = cJSON_Parse("[{\"name\":\"y\",\"dtype\":1,\"shape\":[1]}]");
  const char *addrs[] = {"a:1", "b:2"}, *nodes[] = {"na", "nb"};
  sf_gw_pipe p = {.id = 5, .codec = SF_CODEC_RAW, .n_stages = 2, .addrs = addrs, .nodes = nodes};
  char *s = sf__gateway_config_json("m", "3", in, out, &p, 1, "ignored with a pipeline");
  cJSON *j = cJSON_Parse(s);
  assert_non_null(j);
  assert_null(cJSON_GetObjectItem(j, "reason"));
  cJSON *pj = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "pipelines"), 0);
  assert_string_equal(cJSON_GetObjectItem(pj, "first")->valuestring, "a:1");
  assert_int_equal(cJSON_GetObjectItem(pj, "id")->valueint, 5);
  assert_string_equal(cJSON_GetObjectItem(j, "version")->valuestring, "3");
  cJSON_Delete(j);
  free(s);
  s = sf__gateway_config_json("m", "3", in, out, NULL, 0, "nothing fits");
  j = cJSON_Parse(s);
  assert_string_equal(cJSON_GetObjectItem(j, "reason")->valuestring, "nothing fits");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "pipelines")), 0);
  cJSON_Delete(j);
  free(s);
  /* the same inputs give the same text (the controller compares digests of it) */
  char *a = sf__gateway_config_json("m", "3", in, out, &p, 1, NULL),
       *b = sf__gateway_config_json("m", "3", in, out, &p, 1, NULL);
  assert_string_equal(a, b);
  free(a);
  free(b);
  cJSON_Delete(in);
  cJSON_Delete(out);
}

static void test_atomic_file(void **state) {
  (void)state;
  char path[PATH_MAX + 16];
  sf_err err = {0};
  snprintf(path, sizeof path, "%s/f.json", tmpdir);
  assert_int_equal(sf__write_file_atomic(path, "one", 3, &err), 0);
  assert_int_equal(sf__write_file_atomic(path, "second", 6, &err), 0);
  void *data = NULL;
  size_t len = 0;
  assert_int_equal(sf__read_file(path, 100, &data, &len, &err), 0);
  assert_int_equal(len, 6);
  assert_memory_equal(data, "second", 6);
  free(data);
  snprintf(path, sizeof path, "%s/missing/dir/f.json", tmpdir);
  assert_true(sf__write_file_atomic(path, "x", 1, &err) < 0);
  snprintf(path, sizeof path, "%s/a/b/c", tmpdir);
  assert_int_equal(sf__mkdirs(path), 0);
  assert_int_equal(sf__mkdirs(path), 0);
}

static const char cluster_json[] =
    "{\"nodes\": [{\"name\": \"gw\", \"memory_mb\": 64, \"gflops\": 5}, {\"name\": \"n1\", "
    "\"memory_mb\": 64, \"gflops\": 5},"
    " {\"name\": \"n2\", \"memory_mb\": 64, \"gflops\": 5}], \"default_link\": {\"mbps\": 100}, "
    "\"gateway\": \"gw\"}";

static ctl *new_ctl(const sf_controller_opts *o, const char *cluster, const char *model) {
  ctl *C = calloc(1, sizeof *C);
  sf_err err = {0};
  assert_non_null(C);
  C->o = o;
  assert_int_equal(sf__cluster_parse(cluster, strlen(cluster), &C->cl, &err), 0);
  C->have_cl = 1;
  snprintf(C->name, sizeof C->name, "%s", model);
  snprintf(C->repo, sizeof C->repo, "%s/repo", tmpdir);
  snprintf(C->state_path, sizeof C->state_path, "%s/controller.json", tmpdir);
  snprintf(C->status, sizeof C->status, "serving");
  return C;
}

static void free_ctl(ctl *C) {
  sf__cluster_deinit(&C->cl);
  free(C);
}

static void test_state_round_trip(void **state) {
  (void)state;
  sf_controller_opts o = {.cluster = "cluster.json", .codec = SF_CODEC_RAW};
  sf_err err = {0};
  ctl *A = new_ctl(&o, cluster_json, "tiny");
  A->gen = 9;
  cdeploy *d = &A->dep;
  d->active = 1;
  d->id = 9;
  snprintf(d->version, sizeof d->version, "2");
  snprintf(d->dir, sizeof d->dir, "/x/stages");
  d->n = 2;
  int cuts[] = {0, 17, 40}, nodes[] = {2, 0};
  memcpy(d->cuts, cuts, sizeof cuts);
  memcpy(d->nodes, nodes, sizeof nodes);
  for (int i = 0; i < 2; i++) memset(d->digest[i], 'a' + i, 64);
  crejected *r = &A->rej[A->n_rej++];
  snprintf(r->version, sizeof r->version, "3");
  snprintf(r->reason, sizeof r->reason, "does not load");
  r->size = 17;
  r->mtime_ns = 1795863774867347047LL; /* beyond a double's exact integers */
  assert_int_equal(sf__ctl_state_save(A, &err), 0);

  ctl *B = new_ctl(&o, cluster_json, "tiny");
  long pid = 0;
  assert_int_equal(sf__ctl_state_load(B, &pid, &err), 1);
  assert_int_equal(pid, (long)getpid());
  assert_int_equal(B->gen, 9);
  assert_true(B->dep.active);
  assert_int_equal(B->dep.id, 9);
  assert_int_equal(B->dep.n, 2);
  assert_memory_equal(B->dep.cuts, cuts, sizeof cuts);
  assert_memory_equal(B->dep.nodes, nodes, sizeof nodes);
  assert_string_equal(B->dep.digest[1], A->dep.digest[1]);
  assert_string_equal(B->dep.version, "2");
  assert_int_equal(B->n_rej, 1);
  assert_string_equal(B->rej[0].reason, "does not load");
  assert_true(B->rej[0].mtime_ns == 1795863774867347047LL);
  free_ctl(B);

  /* the same state on a cluster without node n2: the pipeline is dropped, the rest kept */
  const char *other =
      "{\"nodes\": [{\"name\": \"gw\", \"memory_mb\": 64, \"gflops\": 5}, "
      "{\"name\": \"n1\", \"memory_mb\": 64, \"gflops\": 5}], \"default_link\": {\"mbps\": 100}}";
  B = new_ctl(&o, other, "tiny");
  assert_int_equal(sf__ctl_state_load(B, &pid, &err), 1);
  assert_int_equal(B->dep.n, 0);
  assert_false(B->dep.active);
  assert_int_equal(B->gen, 9);
  free_ctl(B);

  /* another model's state is refused */
  B = new_ctl(&o, cluster_json, "other");
  assert_true(sf__ctl_state_load(B, &pid, &err) < 0);
  assert_non_null(strstr(err.msg, "tiny"));
  free_ctl(B);

  /* garbage is refused with the file named */
  write_text(A->state_path, "{not json");
  B = new_ctl(&o, cluster_json, "tiny");
  assert_true(sf__ctl_state_load(B, &pid, &err) < 0);
  assert_non_null(strstr(err.msg, "controller.json"));
  free_ctl(B);
  free_ctl(A);
}

/* The links in the state file: measured pairs and the cluster file's, side by side. */
static void test_state_links(void **state) {
  (void)state;
  sf_controller_opts o = {.cluster = "cluster.json", .codec = SF_CODEC_RAW, .probe_seconds = 0.3};
  sf_err err = {0};
  ctl *A = new_ctl(&o, cluster_json, "tiny");
  size_t nn = (size_t)A->cl.n * (size_t)A->cl.n;
  assert_null(A->cl.rtt); /* the file gives none */
  A->cl.rtt = calloc(nn, sizeof(double));
  A->file_bw = calloc(nn, sizeof(double));
  A->meas_t = calloc(nn, sizeof(double));
  assert_non_null(A->cl.rtt);
  assert_non_null(A->file_bw);
  assert_non_null(A->meas_t);
  memcpy(A->file_bw, A->cl.bw, nn * sizeof(double));
  A->probe = 1;
  snprintf(A->probe_note, sizeof A->probe_note, "measured");
  A->cl.bw[0 * 3 + 1] = 19.42e6 / 8; /* gw -> n1 measured */
  A->cl.rtt[0 * 3 + 1] = 0.00025;
  A->meas_t[0 * 3 + 1] = 1000;
  assert_int_equal(sf__ctl_state_save(A, &err), 0);
  void *txt = NULL;
  size_t len = 0;
  assert_int_equal(sf__read_file(A->state_path, 1 << 20, &txt, &len, &err), 0);
  cJSON *j = cJSON_ParseWithLength(txt, len);
  free(txt);
  cJSON *lk = cJSON_GetObjectItem(j, "links");
  assert_non_null(lk);
  assert_string_equal(cJSON_GetObjectItem(lk, "source")->valuestring, "measured");
  assert_true(cJSON_GetObjectItem(lk, "probe_seconds")->valuedouble == 0.3);
  cJSON *pairs = cJSON_GetObjectItem(lk, "pairs"), *e;
  assert_int_equal(cJSON_GetArraySize(pairs), 6);
  int seen = 0;
  cJSON_ArrayForEach(e, pairs) {
    const char *from = cJSON_GetObjectItem(e, "from")->valuestring;
    const char *to = cJSON_GetObjectItem(e, "to")->valuestring;
    const char *src = cJSON_GetObjectItem(e, "source")->valuestring;
    double mbps = cJSON_GetObjectItem(e, "mbps")->valuedouble;
    assert_true(cJSON_GetObjectItem(e, "file_mbps")->valuedouble == 100);
    if (!strcmp(from, "gw") && !strcmp(to, "n1")) {
      assert_string_equal(src, "measured");
      assert_true(mbps == 19.42);
      assert_true(cJSON_GetObjectItem(e, "rtt_ms")->valuedouble == 0.25);
      assert_true(cJSON_GetObjectItem(e, "measured_at")->valuedouble == 1000);
      seen++;
    } else {
      assert_string_equal(src, "cluster file");
      assert_true(mbps == 100);
      assert_null(cJSON_GetObjectItem(e, "measured_at"));
    }
  }
  assert_int_equal(seen, 1);
  cJSON_Delete(j);
  free(A->file_bw);
  free(A->meas_t);
  free_ctl(A);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_repo),
      cmocka_unit_test(test_worker_config),
      cmocka_unit_test(test_gateway_config),
      cmocka_unit_test(test_atomic_file),
      cmocka_unit_test(test_state_round_trip),
      cmocka_unit_test(test_state_links),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
