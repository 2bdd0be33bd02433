/* Kubernetes client: quantities, kubeconfig and in-cluster configuration, the objects the
 * controller generates, and the client against the API server emulator (tests/kube): list and
 * watch with bookmarks, 410 -> re-list, server-side apply conflicts, Lease failover, token
 * rotation, TLS, a node turning NotReady. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "control/k8s.h"
#include "control/k8s_ctl.h"
#include "control/k8s_driver.h"
#include "net/net.h"
#include "kube/kubeemu.h"

/* ---- helpers -----------------------------------------------------------------------------------
 */
typedef struct env {
  char dir[256];
  char token_file[300];   /* what the emulator accepts */
  char client_token[300]; /* what the client reads */
  kemu *e;
  sf_k8s_config c;
  sf_k8s *k;
} env;

static void write_text(const char *path, const char *s) {
  char tmp[400];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  assert_non_null(f);
  fputs(s, f);
  fclose(f);
  assert_int_equal(rename(tmp, path), 0);
}

static void env_up(env *v, int tls) {
  memset(v, 0, sizeof *v);
  snprintf(v->dir, sizeof v->dir, "/tmp/sf-unit-k8s-XXXXXX");
  assert_non_null(mkdtemp(v->dir));
  snprintf(v->token_file, sizeof v->token_file, "%s/emu-token", v->dir);
  snprintf(v->client_token, sizeof v->client_token, "%s/token", v->dir);
  write_text(v->token_file, "t0ken-one\n");
  write_text(v->client_token, "t0ken-one\n");
  kemu_opts o = {.listen = "127.0.0.1:0",
                 .token_file = v->token_file,
                 .tls_dir = tls ? v->dir : NULL,
                 .bookmark_ms = 60000,
                 .quiet = 1};
  char err[256];
  if (kemu_start(&v->e, &o, err, sizeof err) < 0) fail_msg("%s", err);
  snprintf(v->c.server, sizeof v->c.server, "%s", kemu_url(v->e));
  snprintf(v->c.token_file, sizeof v->c.token_file, "%s", v->client_token);
  snprintf(v->c.ns, sizeof v->c.ns, "seifer");
  if (tls) snprintf(v->c.ca_file, sizeof v->c.ca_file, "%s/ca.crt", v->dir);
  sf_err e = {0};
  if (sf__k8s_new(&v->k, &v->c, &e) < 0) fail_msg("%s", e.msg);
  assert_int_equal(sf__k8s_request(v->k, "POST", "/emu/namespaces/seifer", NULL, "", NULL, &e), 0);
}

static void env_down(env *v) {
  sf__k8s_free(v->k);
  kemu_stop(v->e);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", v->dir);
  assert_int_equal(system(cmd), 0);
}

static void emu_post(env *v, const char *path, const char *body) {
  sf_err e = {0};
  if (sf__k8s_request(v->k, "POST", path, "application/json", body ? body : "", NULL, &e) < 0)
    fail_msg("%s", e.msg);
}
static void add_node(env *v, const char *name, const char *mem, int ready) {
  char b[256];
  snprintf(b, sizeof b, "{\"name\":\"%s\",\"memory\":\"%s\",\"ready\":%s}", name, mem,
           ready ? "true" : "false");
  emu_post(v, "/emu/nodes", b);
}

static const cJSON *find_node(const cJSON *arr, const char *name) {
  const cJSON *it;
  cJSON_ArrayForEach(it, arr) {
    const cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(it, "metadata"), "name");
    if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return it;
  }
  return NULL;
}

/* Wait (up to ms) until node name's readiness in inf's cache is ready; returns 1 if seen. */
static int wait_ready(sf_k8s_informer *inf, const char *name, int ready, int ms) {
  double end = sf__now() + ms / 1000.0;
  uint64_t gen = 0;
  for (;;) {
    cJSON *all = sf__k8s_informer_snapshot(inf, &gen);
    const cJSON *n = find_node(all, name);
    sf_k8s_node nd;
    int ok = n && sf__k8s_node_parse(n, &nd, NULL) == 0 && nd.ready == ready;
    cJSON_Delete(all);
    if (ok) return 1;
    double left = end - sf__now();
    if (left <= 0) return 0;
    sf__k8s_informer_wait(inf, gen, (int)(left * 1000) + 1);
  }
}

static int wait_count(sf_k8s_informer *inf, int count, int ms) {
  double end = sf__now() + ms / 1000.0;
  for (;;) {
    uint64_t gen;
    cJSON *all = sf__k8s_informer_snapshot(inf, &gen);
    int n = cJSON_GetArraySize(all);
    cJSON_Delete(all);
    if (n == count) return 1;
    double left = end - sf__now();
    if (left <= 0) return 0;
    sf__k8s_informer_wait(inf, gen, (int)(left * 1000) + 1);
  }
}

/* ---- quantities --------------------------------------------------------------------------------
 */
static void test_quantity(void **state) {
  (void)state;
  struct {
    const char *s;
    int64_t v;
  } ok[] = {
      {"0", 0},
      {"1", 1},
      {"128974848", 128974848},
      {"1Ki", 1024},
      {"512Mi", 512LL << 20},
      {"1.5Gi", 3LL << 29},
      {"2Ti", 2LL << 40},
      {"1Pi", 1LL << 50},
      {"1Ei", 1LL << 60},
      {"1k", 1000},
      {"129M", 129000000},
      {"3G", 3000000000LL},
      {"1T", 1000000000000LL},
      {"2P", 2000000000000000LL},
      {"129e6", 129000000},
      {"1E3", 1000},
      {"1.5e3", 1500},
      {"12e-1", 2},
      {"100m", 1},
      {"1500m", 2},
      {"1000m", 1},
      {"999999n", 1},
      {"5u", 1},
      {"+7Ki", 7168},
      {"0.5Ki", 512},
      {".5Mi", 524288},
      {"1.000000000000000000000Ei", 1LL << 60},
      {"0.1", 1},
      {"7E", 7000000000000000000LL},
      {"16089276Ki", 16089276LL * 1024},
      {"-0", 0},
      {"1e0", 1},
      {"3.0", 3},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int64_t v = -1;
    sf_err e = {0};
    if (sf__k8s_quantity_bytes(ok[i].s, &v, &e) < 0) fail_msg("'%s': %s", ok[i].s, e.msg);
    if (v != ok[i].v)
      fail_msg("'%s' -> %lld, want %lld", ok[i].s, (long long)v, (long long)ok[i].v);
  }
  const char *bad[] = {
      "",    "Mi",  "1Qi", "1 Mi", "-1",  "-5Mi", "1.2.3", "1ii",
      "8Ei", "10E", "1e",  "1e+",  "abc", "1KiB", "1mi",   "99999999999999999999999999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t v;
    sf_err e = {0};
    if (sf__k8s_quantity_bytes(bad[i], &v, &e) == 0)
      fail_msg("'%s' accepted as %lld", bad[i], (long long)v);
    assert_true(strstr(e.msg, "quantity") != NULL);
  }
  int64_t m;
  assert_int_equal(sf__k8s_quantity_milli("250m", &m, NULL), 0);
  assert_int_equal(m, 250);
  assert_int_equal(sf__k8s_quantity_milli("2", &m, NULL), 0);
  assert_int_equal(m, 2000);
  assert_int_equal(sf__k8s_quantity_milli("0.1", &m, NULL), 0);
  assert_int_equal(m, 100);
  char q[32];
  sf__k8s_quantity_mib(1, q, sizeof q);
  assert_string_equal(q, "1Mi");
  sf__k8s_quantity_mib(300LL << 20, q, sizeof q);
  assert_string_equal(q, "300Mi");
  sf__k8s_quantity_mib((300LL << 20) + 1, q, sizeof q);
  assert_string_equal(q, "301Mi");
}

static void test_names(void **state) {
  (void)state;
  assert_true(sf__k8s_dns_label("resnet50-p1-s0"));
  assert_false(sf__k8s_dns_label("ResNet"));
  assert_false(sf__k8s_dns_label("-a"));
  assert_false(sf__k8s_dns_label("a-"));
  assert_false(sf__k8s_dns_label(""));
  char l64[65];
  memset(l64, 'a', 64);
  l64[64] = 0;
  assert_false(sf__k8s_dns_label(l64));
  assert_true(sf__k8s_dns_subdomain("edge-1.lab.example"));
  assert_false(sf__k8s_dns_subdomain("edge-1..lab"));
  assert_false(sf__k8s_dns_subdomain(".a"));
  assert_true(sf__k8s_label_value(""));
  assert_true(sf__k8s_label_value("v1.2_b-3"));
  assert_false(sf__k8s_label_value("-x"));
  assert_false(sf__k8s_label_value("a b"));
}

/* ---- configuration ------------------------------------------------------------------------------
 */
static const char *K3S_YAML =
    "apiVersion: v1\n"
    "clusters:\n"
    "- cluster:\n"
    "    certificate-authority-data: "
    "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmFiYwotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg==\n"
    "    server: https://127.0.0.1:6443\n"
    "  name: default\n"
    "- cluster:\n"
    "    insecure-skip-tls-verify: true\n"
    "    server: \"http://127.0.0.1:8080/\"\n"
    "  name: other\n"
    "contexts:\n"
    "- context:\n"
    "    cluster: default\n"
    "    user: default\n"
    "  name: default\n"
    "- context:\n"
    "    cluster: other\n"
    "    namespace: edge   # a comment\n"
    "    user: tok\n"
    "  name: other\n"
    "current-context: default\n"
    "kind: Config\n"
    "preferences: {}\n"
    "users:\n"
    "- name: default\n"
    "  user:\n"
    "    client-certificate-data: Y2VydA==\n"
    "    client-key-data: a2V5\n"
    "- name: tok\n"
    "  user:\n"
    "    token: 'abc''def'\n"
    "    tokenFile: tok.txt\n";

static void test_kubeconfig(void **state) {
  (void)state;
  char dir[] = "/tmp/sf-unit-kc-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[300];
  snprintf(path, sizeof path, "%s/config", dir);
  write_text(path, K3S_YAML);
  sf_k8s_config c;
  sf_err e = {0};
  if (sf__k8s_config_kubeconfig(&c, path, NULL, &e) < 0) fail_msg("%s", e.msg);
  assert_string_equal(c.server, "https://127.0.0.1:6443");
  assert_non_null(c.ca_pem);
  assert_true(strstr(c.ca_pem, "BEGIN CERTIFICATE") != NULL);
  assert_string_equal(c.cert_pem, "cert");
  assert_string_equal(c.key_pem, "key");
  assert_string_equal(c.ns, "default");
  assert_int_equal(c.insecure, 0);
  sf__k8s_config_deinit(&c);
  if (sf__k8s_config_kubeconfig(&c, path, "other", &e) < 0) fail_msg("%s", e.msg);
  assert_string_equal(c.server, "http://127.0.0.1:8080");
  assert_int_equal(c.insecure, 1);
  assert_string_equal(c.token, "abc'def");
  char want[400];
  snprintf(want, sizeof want, "%s/tok.txt", dir);
  assert_string_equal(c.token_file, want);
  assert_string_equal(c.ns, "edge");
  sf__k8s_config_deinit(&c);
  assert_int_not_equal(sf__k8s_config_kubeconfig(&c, path, "nope", &e), 0);
  assert_true(strstr(e.msg, "nope") != NULL);
  /* exec plugins are refused by name */
  write_text(path, "current-context: a\ncontexts:\n- name: a\n  context: {cluster: c}\n");
  assert_int_not_equal(sf__k8s_config_kubeconfig(&c, path, NULL, &e), 0);
  assert_true(strstr(e.msg, "flow") != NULL);
  write_text(
      path,
      "current-context: a\ncontexts:\n- name: a\n  context:\n    cluster: c\n    user: u\n"
      "clusters:\n- name: c\n  cluster:\n    server: https://x:1\nusers:\n- name: u\n  user:\n"
      "    exec:\n      command: aws\n");
  assert_int_not_equal(sf__k8s_config_kubeconfig(&c, path, NULL, &e), 0);
  assert_true(strstr(e.msg, "exec") != NULL);
  /* JSON kubeconfig (kubectl config view -o json) */
  write_text(
      path,
      "{\"current-context\":\"a\",\"contexts\":[{\"name\":\"a\",\"context\":{\"cluster\":\"c\"}}],"
      "\"clusters\":[{\"name\":\"c\",\"cluster\":{\"server\":\"https://10.0.0.1:6443\"}}]}");
  if (sf__k8s_config_kubeconfig(&c, path, NULL, &e) < 0) fail_msg("%s", e.msg);
  assert_string_equal(c.server, "https://10.0.0.1:6443");
  sf__k8s_config_deinit(&c);
  /* YAML errors name the line */
  cJSON *y = sf__k8s_yaml_parse("a: 1\n\tb: 2\n", 11, &e);
  assert_null(y);
  assert_true(strstr(e.msg, "line 2") != NULL);
  const char *yt = "a:\n  - x\n  - y: 1\n    z: \"q\\\"\"\nb: |\n  l1\n  l2\n";
  y = sf__k8s_yaml_parse(yt, strlen(yt), &e);
  assert_non_null(y);
  char *s = cJSON_PrintUnformatted(y);
  assert_string_equal(s, "{\"a\":[\"x\",{\"y\":\"1\",\"z\":\"q\\\"\"}],\"b\":\"l1\\nl2\"}");
  free(s);
  cJSON_Delete(y);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static void test_incluster(void **state) {
  (void)state;
  env v;
  env_up(&v, 1);
  char sa[300];
  snprintf(sa, sizeof sa, "%s/sa", v.dir);
  assert_int_equal(mkdir(sa, 0700), 0);
  char p[400];
  snprintf(p, sizeof p, "%s/token", sa);
  write_text(p, "t0ken-one\n");
  snprintf(p, sizeof p, "%s/namespace", sa);
  write_text(p, "seifer");
  char cmd[700];
  snprintf(cmd, sizeof cmd, "cp '%s/ca.crt' '%s/ca.crt'", v.dir, sa);
  assert_int_equal(system(cmd), 0);
  const char *port = strrchr(kemu_url(v.e), ':') + 1;
  setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", port, 1);
  sf_k8s_config c;
  sf_err e = {0};
  if (sf__k8s_config_incluster(&c, sa, &e) < 0) fail_msg("%s", e.msg);
  assert_string_equal(c.ns, "seifer");
  sf_k8s *k;
  assert_int_equal(sf__k8s_new(&k, &c, &e), 0);
  cJSON *items = NULL;
  char rv[32];
  if (sf__k8s_list(k, &sf__k8s_nodes, NULL, NULL, &items, rv, sizeof rv, &e) < 0)
    fail_msg("%s", e.msg);
  assert_int_equal(cJSON_GetArraySize(items), 0);
  cJSON_Delete(items);
  sf__k8s_free(k);
  /* without the CA the server's certificate is refused; insecure skips the check */
  c.ca_file[0] = 0;
  assert_int_equal(sf__k8s_new(&k, &c, &e), 0);
  assert_int_not_equal(sf__k8s_list(k, &sf__k8s_nodes, NULL, NULL, &items, rv, sizeof rv, &e), 0);
  sf__k8s_free(k);
  c.insecure = 1;
  assert_int_equal(sf__k8s_new(&k, &c, &e), 0);
  assert_int_equal(sf__k8s_list(k, &sf__k8s_nodes, NULL, NULL, &items, rv, sizeof rv, &e), 0);
  cJSON_Delete(items);
  sf__k8s_free(k);
  sf__k8s_config_deinit(&c);
  unsetenv("KUBERNETES_SERVICE_PORT");
  assert_int_not_equal(sf__k8s_config_incluster(&c, sa, &e), 0);
  assert_true(strstr(e.msg, "KUBERNETES_SERVICE") != NULL);
  unsetenv("KUBERNETES_SERVICE_HOST");
  env_down(&v);
}

/* ---- objects -----------------------------------------------------------------------------------
 */
static sf_k8s_stage a_stage(void) {
  sf_k8s_stage s = {.ns = "seifer",
                    .model = "resnet50",
                    .model_uid = "0b3c-11",
                    .version = "3",
                    .plan_generation = 7,
                    .pipeline = 4,
                    .stage = 1,
                    .n_stages = 5,
                    .node = "edge-2",
                    .memory_bytes = (96LL << 20) + 5,
                    .port = 7101,
                    .image = "ghcr.io/x/seifer:0.1.0",
                    .secret = "seifer-cluster-secret",
                    .threads = 2,
                    .digest = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"};
  return s;
}

static const cJSON *at(const cJSON *o, const char *path) {
  char b[256];
  snprintf(b, sizeof b, "%s", path);
  for (char *save = NULL, *p = strtok_r(b, ".", &save); p && o; p = strtok_r(NULL, ".", &save)) {
    char *end;
    long i = strtol(p, &end, 10);
    o = *end == 0 ? cJSON_GetArrayItem(o, (int)i) : cJSON_GetObjectItemCaseSensitive(o, p);
  }
  return o;
}
static const char *at_s(const cJSON *o, const char *path) {
  const cJSON *v = at(o, path);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static void test_stage_deployment(void **state) {
  (void)state;
  sf_k8s_stage s = a_stage();
  sf_err e = {0};
  cJSON *d = sf__k8s_stage_deployment(&s, &e);
  if (!d) fail_msg("%s", e.msg);
  assert_string_equal(at_s(d, "metadata.name"), "resnet50-edge-2");
  assert_string_equal(
      cJSON_GetObjectItem(at(d, "metadata.labels"), "seifer.dev/stage")->valuestring, "1");
  assert_string_equal(
      cJSON_GetObjectItem(at(d, "metadata.labels"), "seifer.dev/pipeline")->valuestring, "4");
  assert_null(cJSON_GetObjectItem(at(d, "spec.selector.matchLabels"), "seifer.dev/stage"));
  assert_int_equal(at(d, "spec.replicas")->valueint, 1);
  assert_string_equal(at_s(d, "spec.strategy.type"), "Recreate");
  const cJSON *c = at(d, "spec.template.spec.containers.0");
  assert_string_equal(at_s(c, "resources.requests.memory"), "97Mi");
  assert_string_equal(at_s(c, "resources.limits.memory"), "97Mi");
  assert_non_null(at(c, "readinessProbe.tcpSocket"));
  assert_non_null(at(c, "livenessProbe.tcpSocket"));
  assert_null(at(d, "spec.template.spec.nodeName"));
  const cJSON *ex =
      at(d,
         "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution."
         "nodeSelectorTerms.0.matchExpressions.0");
  assert_string_equal(at_s(ex, "key"), "kubernetes.io/hostname");
  assert_string_equal(at_s(ex, "operator"), "In");
  assert_string_equal(at_s(ex, "values.0"), "edge-2");
  /* every selector label is on the pod template; generation and version only on the Deployment */
  const cJSON *l;
  cJSON_ArrayForEach(l, at(d, "spec.selector.matchLabels")) {
    const cJSON *tl =
        cJSON_GetObjectItemCaseSensitive(at(d, "spec.template.metadata.labels"), l->string);
    assert_non_null(tl);
    assert_string_equal(tl->valuestring, l->valuestring);
  }
  assert_string_equal(
      cJSON_GetObjectItem(at(d, "metadata.labels"), "seifer.dev/plan-generation")->valuestring,
      "7");
  assert_string_equal(
      cJSON_GetObjectItem(at(d, "metadata.labels"), "seifer.dev/model")->valuestring, "resnet50");
  assert_null(
      cJSON_GetObjectItem(at(d, "spec.template.metadata.labels"), "seifer.dev/plan-generation"));
  assert_string_equal(at_s(d, "metadata.ownerReferences.0.kind"), "SeiferModel");
  assert_int_equal(at(c, "ports.0.hostPort")->valueint, 7101);
  /* a new plan generation that leaves the stage in place changes nothing in the pod template */
  s.plan_generation = 8;
  cJSON *d2 = sf__k8s_stage_deployment(&s, &e);
  assert_true(cJSON_Compare(at(d, "spec.template"), at(d2, "spec.template"), 1));
  cJSON_Delete(d2);
  /* moving it does */
  s.node = "edge-3";
  d2 = sf__k8s_stage_deployment(&s, &e);
  assert_false(cJSON_Compare(at(d, "spec.template"), at(d2, "spec.template"), 1));
  cJSON_Delete(d2);
  cJSON_Delete(d);
  /* a long node name still gives a valid name of at most 63 characters, distinct per node */
  char n1[128], n2[128];
  s.node = "rack-17-shelf-3-jetson-orin-nano-0042.edge.factory-floor.example.org";
  assert_int_equal(sf__k8s_stage_name(&s, n1, sizeof n1, &e), 0);
  s.node = "rack-17-shelf-3-jetson-orin-nano-0043.edge.factory-floor.example.org";
  assert_int_equal(sf__k8s_stage_name(&s, n2, sizeof n2, &e), 0);
  assert_true(strlen(n1) <= 63 && sf__k8s_dns_label(n1) && sf__k8s_label_value(n1));
  assert_string_not_equal(n1, n2);
  assert_null(sf__k8s_stage_deployment(&s, &e)); /* too long for the hostname label: */
  s.hostname = "jetson-0043";                    /* the Node's own kubernetes.io/hostname label */
  d2 = sf__k8s_stage_deployment(&s, &e);
  if (!d2) fail_msg("%s", e.msg);
  cJSON_Delete(d2);
  /* bad input is refused with the reason */
  s = a_stage();
  s.model = "ResNet";
  assert_null(sf__k8s_stage_deployment(&s, &e));
  assert_true(strstr(e.msg, "DNS-1123") != NULL);
  s = a_stage();
  s.memory_bytes = 0;
  assert_null(sf__k8s_stage_deployment(&s, &e));
  s = a_stage();
  s.port = 70000;
  assert_null(sf__k8s_stage_deployment(&s, &e));
  s = a_stage();
  s.node = "Edge_2";
  assert_null(sf__k8s_stage_deployment(&s, &e));
}

static void test_status_lease_objects(void **state) {
  (void)state;
  sf_k8s_condition cs[] = {
      {"Ready", "True", "PipelineServing", "5 stages on 5 nodes", "2026-01-01T00:00:00Z"}};
  sf_k8s_plan_stage ps[] = {{0, "edge-1", "resnet50-edge-1", 100 << 20, 0.02}};
  sf_k8s_model_status st = {.name = "resnet50",
                            .observed_generation = 3,
                            .version = "3",
                            .plan_generation = 7,
                            .pipeline = 4,
                            .stages = ps,
                            .n_stages = 1,
                            .bottleneck_s = 0.05,
                            .predicted_throughput = 20,
                            .measured_throughput = -1,
                            .ready_nodes = 5,
                            .nodes = 6,
                            .conds = cs,
                            .n_conds = 1};
  sf_err e = {0};
  cJSON *o = sf__k8s_model_status(&st, &e);
  if (!o) fail_msg("%s", e.msg);
  assert_string_equal(at_s(o, "status.conditions.0.reason"), "PipelineServing");
  assert_null(at(o, "status.measuredThroughput"));
  assert_null(at(o, "spec"));
  cJSON_Delete(o);
  cs[0].reason = "not camel";
  assert_null(sf__k8s_model_status(&st, &e));
  sf_k8s_lease_state ls = {.holder = "a",
                           .duration_s = 15,
                           .acquire = "2026-01-01T00:00:00.000000Z",
                           .renew = "2026-01-01T00:00:01.000000Z",
                           .transitions = 2};
  o = sf__k8s_lease_object("seifer", "seifer-controller", &ls, "42");
  assert_string_equal(at_s(o, "metadata.resourceVersion"), "42");
  assert_int_equal(at(o, "spec.leaseDurationSeconds")->valueint, 15);
  cJSON_Delete(o);
  char t[40];
  sf__k8s_microtime(1.5, t, sizeof t);
  assert_string_equal(t, "1970-01-01T00:00:01.500000Z");
}

static void test_parse(void **state) {
  (void)state;
  const char *node =
      "{\"metadata\":{\"name\":\"edge-1\",\"labels\":{\"kubernetes.io/hostname\":\"edge-1\"}},"
      "\"spec\":{\"unschedulable\":true},\"status\":{\"allocatable\":{\"memory\":\"3917820Ki\","
      "\"cpu\":\"3500m\"},\"conditions\":[{\"type\":\"MemoryPressure\",\"status\":\"False\"},"
      "{\"type\":\"Ready\",\"status\":\"True\"}],\"addresses\":[{\"type\":\"Hostname\",\"address\":"
      "\"edge-1\"},{\"type\":\"InternalIP\",\"address\":\"10.0.0.7\"}]}}";
  cJSON *j = cJSON_Parse(node);
  sf_k8s_node n;
  sf_err e = {0};
  assert_int_equal(sf__k8s_node_parse(j, &n, &e), 0);
  assert_string_equal(n.name, "edge-1");
  assert_string_equal(n.address, "10.0.0.7");
  assert_int_equal(n.ready, 1);
  assert_int_equal(n.unschedulable, 1);
  assert_int_equal(n.memory, 3917820LL * 1024);
  assert_int_equal(n.cpu_milli, 3500);
  assert_string_equal(sf__k8s_label(j, "kubernetes.io/hostname"), "edge-1");
  cJSON_Delete(j);
  j = cJSON_Parse(
      "{\"metadata\":{\"name\":\"x\"},\"status\":{\"allocatable\":{\"memory\":\"12Qi\"}}}");
  assert_int_not_equal(sf__k8s_node_parse(j, &n, &e), 0);
  assert_true(strstr(e.msg, "allocatable.memory") != NULL);
  cJSON_Delete(j);
  j = cJSON_Parse(
      "{\"metadata\":{\"name\":\"m\",\"namespace\":\"seifer\",\"uid\":\"u1\",\"generation\":4},"
      "\"spec\":{\"model\":{\"uri\":\"https://models.example/m.onnx\",\"version\":\"2\",\"sha256\":"
      "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"},\"codec\":\"zfp\","
      "\"gateway\":{\"timeoutSeconds\":30},\"placement\":{\"nodeSelector\":{\"seifer.dev/"
      "edge\":\"true\"}}}}");
  sf_k8s_model m;
  if (sf__k8s_model_parse(j, &m, &e) < 0) fail_msg("%s", e.msg);
  assert_string_equal(m.version, "2");
  assert_string_equal(m.codec, "zfp");
  assert_string_equal(m.objective, "throughput");
  assert_int_equal(m.generation, 4);
  assert_string_equal(m.node_selector, "seifer.dev/edge=true");
  cJSON_Delete(j);
  j = cJSON_Parse(
      "{\"metadata\":{\"name\":\"m\"},\"spec\":{\"model\":{\"uri\":\"x\"},\"codec\":\"gzip\"}}");
  assert_int_not_equal(sf__k8s_model_parse(j, &m, &e), 0);
  assert_true(strstr(e.msg, "gzip") != NULL);
  cJSON_Delete(j);
}

/* ---- against the emulator
 * ------------------------------------------------------------------------ */
static void test_list_watch_bookmarks_expiry(void **state) {
  (void)state;
  env v;
  env_up(&v, 0);
  add_node(&v, "edge-1", "512Mi", 1);
  add_node(&v, "edge-2", "1Gi", 1);
  sf_k8s_informer *inf;
  sf_err e = {0};
  sf_k8s_informer_opts o = {.kind = &sf__k8s_nodes, .watch_timeout_s = 60};
  if (sf__k8s_informer_start(&inf, &v.c, &o, &e) < 0) fail_msg("%s", e.msg);
  assert_true(wait_count(inf, 2, 10000));
  /* changes arrive by the watch */
  add_node(&v, "edge-3", "2Gi", 1);
  assert_true(wait_count(inf, 3, 10000));
  sf_k8s_informer_stats st;
  sf__k8s_informer_stats(inf, &st);
  assert_int_equal(st.lists, 1);
  assert_true(st.synced);
  /* a bookmark moves the resourceVersion without changing the cache */
  emu_post(&v, "/emu/namespaces/other", NULL); /* the store's revision moves on */
  char rv_before[32];
  snprintf(rv_before, sizeof rv_before, "%s", st.rv);
  emu_post(&v, "/emu/bookmark", NULL);
  for (int i = 0; i < 200; i++) {
    sf__k8s_informer_stats(inf, &st);
    if (st.bookmarks > 0) break;
    usleep(20000);
  }
  assert_true(st.bookmarks > 0);
  assert_true(atol(st.rv) > atol(rv_before));
  /* the watch ends and the history is compacted: the next watch gets 410 and the informer lists
   * again */
  emu_post(&v, "/emu/expire", NULL);
  for (int i = 0; i < 500; i++) {
    sf__k8s_informer_stats(inf, &st);
    if (st.lists >= 2) break;
    usleep(20000);
  }
  assert_int_equal(st.expired, 1);
  assert_int_equal(st.lists, 2);
  assert_true(wait_count(inf, 3, 1000));
  /* and it keeps watching after the re-list: a node turning NotReady is seen within a second */
  emu_post(&v, "/emu/nodes/edge-2/ready?status=False", NULL);
  assert_true(wait_ready(inf, "edge-2", 0, 1000));
  {
    sf_k8s_resp r;
    assert_int_equal(sf__k8s_request(v.k, "DELETE", "/emu/nodes/edge-1", NULL, NULL, &r, &e), 0);
    sf__k8s_resp_free(&r);
  }
  assert_true(wait_count(inf, 2, 1000));
  sf__k8s_informer_stats(inf, &st);
  assert_int_equal(st.lists, 2);
  sf__k8s_informer_stop(inf);
  env_down(&v);
}

static void test_apply_conflicts(void **state) {
  (void)state;
  env v;
  env_up(&v, 0);
  add_node(&v, "edge-2", "1Gi", 1);
  sf_k8s_stage s = a_stage();
  s.model_uid = NULL;
  sf_err e = {0};
  cJSON *d = sf__k8s_stage_deployment(&s, &e);
  char path[256], name[64];
  assert_int_equal(sf__k8s_stage_name(&s, name, sizeof name, &e), 0);
  assert_int_equal(sf__k8s_path(path, sizeof path, &sf__k8s_deployments, "seifer", name, NULL, &e),
                   0);
  long code = 0;
  cJSON *out = NULL;
  if (sf__k8s_apply(v.k, path, d, "seifer-controller", 0, &out, &code, &e) < 0)
    fail_msg("%s", e.msg);
  assert_int_equal(code, 201);
  assert_string_equal(at_s(out, "metadata.managedFields.0.manager"), "seifer-controller");
  cJSON_Delete(out);
  /* the same apply again changes nothing */
  cJSON *got = NULL;
  assert_int_equal(sf__k8s_get(v.k, path, &got, NULL, &e), 0);
  char rv1[32];
  snprintf(rv1, sizeof rv1, "%s", at_s(got, "metadata.resourceVersion"));
  assert_string_equal(at_s(got, "status.conditions.0.status"), "True"); /* the node is Ready */
  cJSON_Delete(got);
  assert_int_equal(sf__k8s_apply(v.k, path, d, "seifer-controller", 0, &out, &code, &e), 0);
  assert_string_equal(at_s(out, "metadata.resourceVersion"), rv1);
  cJSON_Delete(out);
  /* someone scales it: a conflict on .spec.replicas unless forced */
  char scale_json[400];
  snprintf(scale_json, sizeof scale_json,
           "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"%s\"},"
           "\"spec\":{\"replicas\":3}}",
           name);
  cJSON *scale = cJSON_Parse(scale_json);
  assert_int_not_equal(sf__k8s_apply(v.k, path, scale, "kubectl", 0, NULL, &code, &e), 0);
  assert_int_equal(code, 409);
  assert_true(strstr(e.msg, ".spec.replicas") != NULL);
  assert_int_equal(sf__k8s_apply(v.k, path, scale, "kubectl", 1, NULL, &code, &e), 0);
  cJSON_Delete(scale);
  /* now the controller's unforced apply conflicts; its forced one takes the field back */
  assert_int_not_equal(sf__k8s_apply(v.k, path, d, "seifer-controller", 0, NULL, &code, &e), 0);
  assert_int_equal(code, 409);
  assert_true(strstr(e.msg, "kubectl") != NULL);
  assert_int_equal(sf__k8s_apply(v.k, path, d, "seifer-controller", 1, &out, &code, &e), 0);
  assert_int_equal(at(out, "spec.replicas")->valueint, 1);
  assert_int_equal(at(out, "metadata.generation")->valueint, 3); /* create, scale, take back */
  cJSON_Delete(out);
  /* a new plan generation that leaves the stage in place: labels change, the pod template not */
  s.plan_generation = 8;
  cJSON_Delete(d);
  d = sf__k8s_stage_deployment(&s, &e);
  assert_int_equal(sf__k8s_apply(v.k, path, d, "seifer-controller", 1, &out, &code, &e), 0);
  assert_int_equal(at(out, "metadata.generation")->valueint, 3);
  assert_string_equal(
      cJSON_GetObjectItem(at(out, "metadata.labels"), "seifer.dev/plan-generation")->valuestring,
      "8");
  cJSON_Delete(out);
  /* the stage moves to a node that is not Ready: its Deployment there is not available */
  add_node(&v, "edge-3", "1Gi", 0);
  cJSON_Delete(d);
  s.node = "edge-3";
  d = sf__k8s_stage_deployment(&s, &e);
  char path3[256];
  assert_int_equal(sf__k8s_stage_name(&s, name, sizeof name, &e), 0);
  assert_string_equal(name, "resnet50-edge-3");
  assert_int_equal(
      sf__k8s_path(path3, sizeof path3, &sf__k8s_deployments, "seifer", name, NULL, &e), 0);
  assert_int_equal(sf__k8s_apply(v.k, path3, d, "seifer-controller", 1, &out, &code, &e), 0);
  assert_string_equal(
      at_s(out,
           "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuring"
           "Execution.nodeSelectorTerms.0.matchExpressions.0.values.0"),
      "edge-3");
  cJSON_Delete(out);
  assert_int_equal(sf__k8s_get(v.k, path3, &got, NULL, &e), 0);
  assert_string_equal(at_s(got, "status.conditions.0.status"), "False");
  assert_true(strstr(at_s(got, "status.conditions.0.message"), "not ready") != NULL);
  cJSON_Delete(got);
  /* a memory request above the node's allocatable memory cannot be scheduled */
  add_node(&v, "edge-3", "64Mi", 1);
  assert_int_equal(sf__k8s_get(v.k, path3, &got, NULL, &e), 0);
  assert_true(strstr(at_s(got, "status.conditions.0.message"), "Insufficient memory") != NULL);
  cJSON_Delete(got);
  /* the stage Deployments of the model, by label */
  char sel[256], rv[32];
  sf__k8s_stage_selector("resnet50", sel, sizeof sel);
  cJSON *items = NULL;
  assert_int_equal(sf__k8s_list(v.k, &sf__k8s_deployments, NULL, sel, &items, rv, sizeof rv, &e),
                   0);
  assert_int_equal(cJSON_GetArraySize(items), 2);
  cJSON_Delete(items);
  /* the API server's validation answers 422 for what the generator would never send */
  cJSON *bad = cJSON_Duplicate(d, 1);
  cJSON_ReplaceItemInObject(cJSON_GetObjectItem(cJSON_GetObjectItem(bad, "spec"), "selector"),
                            "matchLabels", cJSON_Parse("{\"x\":\"y\"}"));
  assert_int_not_equal(sf__k8s_apply(v.k, path3, bad, "seifer-controller", 1, NULL, &code, &e), 0);
  assert_int_equal(code, 422);
  cJSON_Delete(bad);
  /* nor a changed selector (it is immutable), even when the template matches it */
  bad = cJSON_Duplicate(d, 1);
  cJSON_AddStringToObject((cJSON *)at(bad, "spec.selector.matchLabels"), "x", "y");
  cJSON_AddStringToObject((cJSON *)at(bad, "spec.template.metadata.labels"), "x", "y");
  assert_int_not_equal(sf__k8s_apply(v.k, path3, bad, "seifer-controller", 1, NULL, &code, &e), 0);
  assert_int_equal(code, 422);
  assert_true(strstr(e.msg, "immutable") != NULL);
  cJSON_Delete(bad);
  /* delete, twice: the second finds nothing and still counts as done */
  assert_int_equal(sf__k8s_delete(v.k, path3, &code, &e), 0);
  assert_int_equal(code, 200);
  assert_int_equal(sf__k8s_delete(v.k, path3, &code, &e), 0);
  assert_int_equal(code, 404);
  /* a field manager is required */
  assert_int_not_equal(sf__k8s_apply(v.k, path, d, "", 0, NULL, &code, &e), 0);
  cJSON_Delete(d);
  env_down(&v);
}

static void test_model_status(void **state) {
  (void)state;
  env v;
  env_up(&v, 0);
  cJSON *m = cJSON_Parse(
      "{\"apiVersion\":\"seifer.dev/v1alpha1\",\"kind\":\"SeiferModel\",\"metadata\":{\"name\":"
      "\"resnet50\"},\"spec\":{\"model\":{\"uri\":\"https://m/r.onnx\",\"version\":\"1\"}}}");
  char path[256], spath[256];
  sf_err e = {0};
  assert_int_equal(
      sf__k8s_path(path, sizeof path, &sf__k8s_seifermodels, "seifer", "resnet50", NULL, &e), 0);
  assert_int_equal(
      sf__k8s_path(spath, sizeof spath, &sf__k8s_seifermodels, "seifer", "resnet50", "status", &e),
      0);
  assert_int_equal(sf__k8s_apply(v.k, path, m, "kubectl", 0, NULL, NULL, &e), 0);
  sf_k8s_condition cs[] = {{"Ready", "False", "Planning", "", "2026-01-01T00:00:00Z"}};
  sf_k8s_model_status st = {.name = "resnet50",
                            .observed_generation = 1,
                            .version = "",
                            .bottleneck_s = -1,
                            .predicted_throughput = -1,
                            .measured_throughput = -1,
                            .conds = cs,
                            .n_conds = 1};
  cJSON *so = sf__k8s_model_status(&st, &e);
  cJSON *out = NULL;
  if (sf__k8s_apply(v.k, spath, so, "seifer-controller", 1, &out, NULL, &e) < 0)
    fail_msg("%s", e.msg);
  assert_string_equal(at_s(out, "status.conditions.0.reason"), "Planning");
  assert_int_equal(at(out, "metadata.generation")->valueint, 1);
  assert_string_equal(at_s(out, "spec.model.version"), "1");
  cJSON_Delete(out);
  cJSON_Delete(so);
  /* a version bump changes the generation; status writes never do */
  cJSON_ReplaceItemInObject(cJSON_GetObjectItem(cJSON_GetObjectItem(m, "spec"), "model"), "version",
                            cJSON_CreateString("2"));
  assert_int_equal(sf__k8s_apply(v.k, path, m, "kubectl", 0, &out, NULL, &e), 0);
  assert_int_equal(at(out, "metadata.generation")->valueint, 2);
  assert_string_equal(at_s(out, "status.conditions.0.reason"), "Planning"); /* status kept */
  cJSON_Delete(out);
  cJSON_Delete(m);
  env_down(&v);
}

static void test_lease_failover(void **state) {
  (void)state;
  env v;
  env_up(&v, 0);
  sf_err e = {0};
  sf_k8s_lease_opts a = {.name = "seifer-controller", .identity = "controller-a"};
  sf_k8s_lease_opts b = {.name = "seifer-controller", .identity = "controller-b"};
  sf_k8s_lease_state sa = {0}, sb = {0};
  /* simulated monotonic time: deterministic */
  assert_int_equal(sf__k8s_lease_try(v.k, &a, &sa, 100.0, &e), 1); /* creates the lease */
  assert_int_equal(sf__k8s_lease_try(v.k, &b, &sb, 100.0, &e), 0);
  assert_string_equal(sb.holder, "controller-a");
  assert_int_equal(sf__k8s_lease_try(v.k, &a, &sa, 102.0, &e), 1); /* renews */
  assert_int_equal(sf__k8s_lease_try(v.k, &b, &sb, 102.0, &e),
                   0); /* sees the renewal: waits 15 s from now */
  /* a stops renewing (it is partitioned); b must wait the whole lease duration from its last
   * observation of a change, never less */
  assert_int_equal(sf__k8s_lease_try(v.k, &b, &sb, 116.9, &e), 0);
  assert_int_equal(sf__k8s_lease_try(v.k, &b, &sb, 117.1, &e), 1);
  assert_int_equal(sb.transitions, 1);
  /* a's renew deadline (10 s) passed long before b could take over (15 s) */
  assert_true(102.0 + 10.0 < 117.1);
  /* a comes back: it sees b's lease and stands down */
  assert_int_equal(sf__k8s_lease_try(v.k, &a, &sa, 118.0, &e), 0);
  assert_int_equal(sa.leading, 0);
  assert_int_equal(sa.losses, 1);
  /* a stale write is refused (optimistic concurrency) */
  char path[256];
  assert_int_equal(
      sf__k8s_path(path, sizeof path, &sf__k8s_leases, "seifer", "seifer-controller", NULL, &e), 0);
  sf_k8s_lease_state steal = {.holder = "intruder", .duration_s = 15};
  cJSON *l = sf__k8s_lease_object("seifer", "seifer-controller", &steal, "1");
  char *body = cJSON_PrintUnformatted(l);
  sf_k8s_resp r;
  assert_int_not_equal(sf__k8s_request(v.k, "PUT", path, "application/json", body, &r, &e), 0);
  assert_int_equal(r.code, 409);
  assert_string_equal(r.reason, "Conflict");
  sf__k8s_resp_free(&r);
  free(body);
  cJSON_Delete(l);
  /* b releases: a can take it at once */
  assert_int_equal(sf__k8s_lease_release(v.k, &b, &sb, &e), 0);
  assert_int_equal(sf__k8s_lease_try(v.k, &a, &sa, 118.5, &e), 1);
  assert_int_equal(sa.transitions, 2);

  /* two electors in threads with short timings: never both leading; failover on stop */
  sf_k8s_lease_opts fa = {
      .name = "elect", .identity = "one", .lease_ms = 1500, .renew_ms = 1000, .retry_ms = 100};
  sf_k8s_lease_opts fb = fa;
  fb.identity = "two";
  sf_k8s_elector *ea, *eb;
  assert_int_equal(sf__k8s_elector_start(&ea, &v.c, &fa, &e), 0);
  int led = 0;
  for (int i = 0; i < 300 && !led; i++) {
    led = sf__k8s_elector_leading(ea);
    usleep(10000);
  }
  assert_true(led);
  assert_int_equal(sf__k8s_elector_start(&eb, &v.c, &fb, &e), 0);
  int both = 0, b_led = 0;
  for (int i = 0; i < 50; i++) { /* 0.5 s: b must not take a lease a keeps renewing */
    int x = sf__k8s_elector_leading(ea), y = sf__k8s_elector_leading(eb);
    both |= x && y;
    b_led |= y;
    usleep(10000);
  }
  assert_false(both);
  assert_false(b_led);
  sf__k8s_elector_stop(ea); /* releases */
  for (int i = 0; i < 300 && !b_led; i++) {
    b_led = sf__k8s_elector_leading(eb);
    usleep(10000);
  }
  assert_true(b_led);
  sf_k8s_lease_state st;
  sf__k8s_elector_state(eb, &st);
  assert_string_equal(st.holder, "two");
  sf__k8s_elector_stop(eb);
  /* bad timings are refused */
  fa.renew_ms = 2000;
  assert_int_not_equal(sf__k8s_elector_start(&ea, &v.c, &fa, &e), 0);
  env_down(&v);
}

static void test_token_rotation(void **state) {
  (void)state;
  env v;
  env_up(&v, 0);
  sf_err e = {0};
  cJSON *items;
  char rv[32];
  assert_int_equal(sf__k8s_list(v.k, &sf__k8s_nodes, NULL, NULL, &items, rv, sizeof rv, &e), 0);
  cJSON_Delete(items);
  /* the kubelet rotates the projected token: the server accepts only the new one */
  write_text(v.token_file, "t0ken-two\n");
  write_text(v.client_token, "t0ken-two\n");
  if (sf__k8s_list(v.k, &sf__k8s_nodes, NULL, NULL, &items, rv, sizeof rv, &e) < 0)
    fail_msg("%s", e.msg);
  cJSON_Delete(items);
  /* a wrong token is a 401 with the API's message */
  write_text(v.token_file, "t0ken-three\n");
  sf_k8s_resp r;
  assert_int_not_equal(sf__k8s_request(v.k, "GET", "/api/v1/nodes", NULL, NULL, &r, &e), 0);
  assert_int_equal(r.code, 401);
  assert_true(strstr(e.msg, "Unauthorized") != NULL);
  sf__k8s_resp_free(&r);
  /* an informer keeps working across a rotation (its watch is re-established with the new token) */
  write_text(v.client_token, "t0ken-three\n");
  sf_k8s_informer *inf;
  sf_k8s_informer_opts o = {.kind = &sf__k8s_nodes};
  assert_int_equal(sf__k8s_informer_start(&inf, &v.c, &o, &e), 0);
  add_node(&v, "edge-1", "1Gi", 1);
  assert_true(wait_count(inf, 1, 10000));
  write_text(v.token_file, "t0ken-four\n");
  write_text(v.client_token, "t0ken-four\n");
  emu_post(&v, "/emu/expire", NULL); /* the watch ends; the next requests use the new token */
  add_node(&v, "edge-2", "1Gi", 1);
  assert_true(wait_count(inf, 2, 10000));
  sf_k8s_informer_stats st;
  sf__k8s_informer_stats(inf, &st);
  assert_int_equal(st.lists, 2);
  sf__k8s_informer_stop(inf);
  env_down(&v);
}

static void test_driver(void **state) {
  (void)state;
  env v;
  env_up(&v, 0);
  emu_post(&v, "/emu/nodes", "{\"name\":\"edge-1\",\"memory\":\"1Gi\"}");
  emu_post(&v, "/emu/nodes", "{\"name\":\"edge-2\",\"memory\":\"1Gi\",\"address\":\"127.0.0.2\"}");
  sf_driver d;
  sf_err e = {0};
  sf_k8s_driver_opts o = {
      .config = &v.c, .model = "resnet50", .model_uid = "u-1", .image = "seifer:0.1.0"};
  if (sf__driver_k8s(&d, &o, &e) < 0) fail_msg("%s", e.msg);
  assert_string_equal(d.ops->name, "kubernetes");
  for (int i = 0; i < 500 && sf__driver_k8s_node_ready(&d, "edge-2") != 1; i++) usleep(10000);
  assert_int_equal(sf__driver_k8s_node_ready(&d, "edge-2"), 1);
  assert_int_equal(sf__driver_k8s_node_ready(&d, "edge-9"), -1);
  /* a worker before any plan: the default memory; its address is the Node's and the port */
  sf_proc p = {.role = SF_PROC_WORKER, .node = "edge-2"};
  if (d.ops->start(d.ctx, &p, &e) < 0) fail_msg("%s", e.msg);
  assert_string_equal(p.addr, "127.0.0.2:7100");
  cJSON *got = NULL;
  const char *path = "/apis/apps/v1/namespaces/seifer/deployments/resnet50-edge-2";
  assert_int_equal(sf__k8s_get(v.k, path, &got, NULL, &e), 0);
  assert_string_equal(at_s(got, "spec.template.spec.containers.0.resources.limits.memory"),
                      "256Mi");
  cJSON_Delete(got);
  /* the stage assigned to the node: its memory and labels at the next start */
  sf_k8s_assignment a = {.pipeline = 3,
                         .stage = 1,
                         .n_stages = 2,
                         .plan_generation = 5,
                         .version = "2",
                         .memory_bytes = 100 << 20};
  assert_int_equal(sf__driver_k8s_assign(&d, "edge-2", &a, &e), 0);
  assert_int_equal(d.ops->start(d.ctx, &p, &e), 0);
  assert_int_equal(sf__k8s_get(v.k, path, &got, NULL, &e), 0);
  assert_string_equal(at_s(got, "spec.template.spec.containers.0.resources.requests.memory"),
                      "100Mi");
  assert_string_equal(
      cJSON_GetObjectItem(at(got, "metadata.labels"), "seifer.dev/stage")->valuestring, "1");
  assert_string_equal(at_s(got, "metadata.ownerReferences.0.uid"), "u-1");
  cJSON_Delete(got);
  assert_int_equal(d.ops->alive(d.ctx, &p), 1);
  sf_proc procs[8];
  int n = d.ops->list(d.ctx, procs, 8);
  assert_int_equal(n, 2);
  assert_int_equal(procs[0].role, SF_PROC_WORKER);
  assert_string_equal(procs[0].node, "edge-2");
  assert_string_equal(procs[0].addr, "127.0.0.2:7100");
  assert_int_equal(procs[1].role, SF_PROC_GATEWAY);
  assert_string_equal(procs[1].addr, "seifer-gateway.seifer.svc:7000");
  /* the node turns NotReady: the driver's descriptor wakes and the worker counts as gone */
  char buf[64];
  while (read(sf__driver_k8s_fd(&d), buf, sizeof buf) > 0) {
  }
  emu_post(&v, "/emu/nodes/edge-2/ready?status=False", NULL);
  struct pollfd pf = {.fd = sf__driver_k8s_fd(&d), .events = POLLIN};
  assert_int_equal(poll(&pf, 1, 1000), 1);
  assert_true(wait_ready(sf__driver_k8s_nodes(&d), "edge-2", 0, 1000));
  assert_int_equal(d.ops->alive(d.ctx, &p), 0);
  /* stop deletes the Deployment */
  emu_post(&v, "/emu/nodes/edge-2/ready?status=True", NULL);
  assert_true(wait_ready(sf__driver_k8s_nodes(&d), "edge-2", 1, 1000));
  assert_int_equal(d.ops->alive(d.ctx, &p), 1);
  assert_int_equal(d.ops->stop(d.ctx, &p, 1000), 0);
  assert_int_equal(d.ops->alive(d.ctx, &p), 0);
  long code = 0;
  assert_int_equal(sf__k8s_get(v.k, path, &got, &code, &e), SF_ENOTFOUND);
  /* a node the cluster does not have */
  sf_proc q = {.role = SF_PROC_WORKER, .node = "edge-9"};
  assert_int_not_equal(d.ops->start(d.ctx, &q, &e), 0);
  assert_true(strstr(e.msg, "not in the cluster") != NULL);
  /* the gateway is the static Deployment and Service */
  sf_proc g = {.role = SF_PROC_GATEWAY};
  assert_int_equal(d.ops->start(d.ctx, &g, &e), 0);
  assert_string_equal(g.url, "http://seifer-gateway.seifer.svc:8000");
  assert_int_equal(d.ops->alive(d.ctx, &g), 0); /* not deployed in this emulator */
  sf__driver_free(&d);
  /* bad options are refused before anything runs */
  o.model = "ResNet";
  assert_int_not_equal(sf__driver_k8s(&d, &o, &e), 0);
  env_down(&v);
}

/* The seifer binary beside this test's directory (build/seifer), or NULL. */
static const char *seifer_exe(void) {
  static char path[4096];
  char self[4000];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return NULL;
  self[n] = 0;
  char *slash = strrchr(self, '/');
  if (!slash) return NULL;
  *slash = 0;
  snprintf(path, sizeof path, "%s/../seifer", self);
  return access(path, X_OK) == 0 ? path : NULL;
}

/* Connect to a worker as the controller and read its status; 0 and its node name, or < 0. */
static int worker_status(const char *addr, const sf_secret *sec, char *node, size_t cap) {
  sf_conn *c = NULL;
  sf_err e = {0};
  if (sf__ctl_connect_timeout(&c, addr, sec, 1000, &e) < 0) return -1;
  char *reply = NULL;
  int rc = sf__ctl_status(c, 2000, &reply, &e);
  sf_wstatus st;
  if (rc == 0) rc = sf__wstatus_parse(reply, strlen(reply), &st, &e);
  if (rc == 0) snprintf(node, cap, "%s", st.node);
  free(reply);
  sf__conn_free(c);
  return rc;
}
static int wait_worker(const char *addr, const sf_secret *sec, char *node, size_t cap, int up, int ms) {
  for (int t = 0; t < ms; t += 100) {
    int ok = worker_status(addr, sec, node, cap) == 0;
    if (ok == up) return 1;
    usleep(100000);
  }
  return 0;
}

/* The driver with real workers: the emulated kubelet runs each stage Deployment's container
 * (`seifer worker` on the node's address), the controller's side connects over the
 * authenticated link; a node that dies takes its worker with it; one that returns gets it back. */
static void test_driver_workers(void **state) {
  (void)state;
  const char *exe = seifer_exe();
  if (!exe) skip();
  env v;
  memset(&v, 0, sizeof v);
  snprintf(v.dir, sizeof v.dir, "/tmp/sf-unit-k8s-XXXXXX");
  assert_non_null(mkdtemp(v.dir));
  char kdir[300];
  snprintf(kdir, sizeof kdir, "%s/kubelet", v.dir);
  kemu_opts ko = {.listen = "127.0.0.1:0", .quiet = 1, .kubelet_exe = exe, .kubelet_dir = kdir};
  char eb[256];
  if (kemu_start(&v.e, &ko, eb, sizeof eb) < 0) fail_msg("%s", eb);
  snprintf(v.c.server, sizeof v.c.server, "%s", kemu_url(v.e));
  snprintf(v.c.ns, sizeof v.c.ns, "seifer");
  sf_err e = {0};
  assert_int_equal(sf__k8s_new(&v.k, &v.c, &e), 0);
  emu_post(&v, "/emu/namespaces/seifer", NULL);
  /* the cluster secret, as `kubectl create secret` would write it */
  char secret_path[400];
  snprintf(secret_path, sizeof secret_path, "%s/cluster.secret", v.dir);
  assert_int_equal(sf__secret_generate(secret_path, &e), 0);
  sf_secret sec;
  assert_int_equal(sf__secret_load(&sec, secret_path, &e), 0);
  FILE *f = fopen(secret_path, "r");
  char hex[80] = "";
  assert_non_null(fgets(hex, sizeof hex, f));
  fclose(f);
  hex[strcspn(hex, "\r\n")] = 0;
  char body[400];
  snprintf(body, sizeof body, "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":"
           "\"seifer-cluster-secret\"},\"stringData\":{\"secret\":\"%s\"}}", hex);
  if (sf__k8s_request(v.k, "POST", "/api/v1/namespaces/seifer/secrets", "application/json", body, NULL, &e) < 0)
    fail_msg("%s", e.msg);
  /* two nodes on two loopback addresses */
  emu_post(&v, "/emu/nodes", "{\"name\":\"edge-1\",\"memory\":\"2Gi\",\"address\":\"127.0.0.11\"}");
  emu_post(&v, "/emu/nodes", "{\"name\":\"edge-2\",\"memory\":\"2Gi\",\"address\":\"127.0.0.12\"}");
  int port = 20000 + (int)(getpid() % 20000);
  sf_driver d;
  sf_k8s_driver_opts o = {.config = &v.c, .model = "tiny", .image = "seifer:0.1.0", .port = port, .threads = 1};
  if (sf__driver_k8s(&d, &o, &e) < 0) fail_msg("%s", e.msg);
  for (int i = 0; i < 500 && sf__driver_k8s_node_ready(&d, "edge-2") != 1; i++) usleep(10000);
  sf_proc p1 = {.role = SF_PROC_WORKER, .node = "edge-1"}, p2 = {.role = SF_PROC_WORKER, .node = "edge-2"};
  if (d.ops->start(d.ctx, &p1, &e) < 0 || d.ops->start(d.ctx, &p2, &e) < 0) fail_msg("%s", e.msg);
  char node[64] = "";
  assert_true(wait_worker(p1.addr, &sec, node, sizeof node, 1, 15000));
  assert_string_equal(node, "edge-1");
  assert_true(wait_worker(p2.addr, &sec, node, sizeof node, 1, 15000));
  assert_string_equal(node, "edge-2");
  /* edge-1 dies: its worker is gone, the driver says so */
  emu_post(&v, "/emu/nodes/edge-1/ready?status=Unknown", NULL);
  assert_true(wait_worker(p1.addr, &sec, node, sizeof node, 0, 5000));
  assert_true(wait_ready(sf__driver_k8s_nodes(&d), "edge-1", 0, 1000));
  assert_int_equal(d.ops->alive(d.ctx, &p1), 0);
  assert_int_equal(d.ops->alive(d.ctx, &p2), 1);
  /* it returns: the kubelet starts the worker again */
  emu_post(&v, "/emu/nodes/edge-1/ready?status=True", NULL);
  assert_true(wait_worker(p1.addr, &sec, node, sizeof node, 1, 15000));
  /* stop: the Deployment goes, and its worker with it */
  assert_int_equal(d.ops->stop(d.ctx, &p2, 5000), 0);
  assert_true(wait_worker(p2.addr, &sec, node, sizeof node, 0, 10000));
  sf__driver_free(&d);
  env_down(&v);
}

/* The controller's Kubernetes hook alone: the Node informer's descriptor turns readable when a
 * Node turns NotReady or is deleted, and the hook marks exactly that node down with the reason
 * (no control link involved: the nodes' links are absent here). */
static int ctl_wait_down(ctl *C, int idx, int timeout_ms) {
  int fd = sf__driver_k8s_fd(&C->drv);
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 10) > 0) sf__k8s_ctl_nodes_changed(C);
    if (!C->nodes[idx].up) return 1;
  }
  return 0;
}

static void test_ctl_nodes_changed(void **state) {
  (void)state;
  env v;
  env_up(&v, 0);
  emu_post(&v, "/emu/nodes", "{\"name\":\"edge-1\",\"memory\":\"1Gi\",\"address\":\"127.0.0.11\"}");
  emu_post(&v, "/emu/nodes", "{\"name\":\"edge-2\",\"memory\":\"1Gi\",\"address\":\"127.0.0.12\"}");
  emu_post(&v, "/emu/nodes", "{\"name\":\"edge-3\",\"memory\":\"1Gi\",\"address\":\"127.0.0.13\"}");
  ctl *C = calloc(1, sizeof *C);
  assert_non_null(C);
  sf_controller_opts o = {.restart_ms = 1000};
  volatile sig_atomic_t stop = 0;
  C->o = &o;
  C->stop = &stop;
  sf_err e = {0};
  const char *cl = "{\"nodes\": [{\"name\": \"edge-1\", \"memory_mb\": 64, \"gflops\": 1},"
                   " {\"name\": \"edge-2\", \"memory_mb\": 64, \"gflops\": 1},"
                   " {\"name\": \"edge-3\", \"memory_mb\": 64, \"gflops\": 1}],"
                   " \"default_link\": {\"mbps\": 100}}";
  assert_int_equal(sf__cluster_parse(cl, strlen(cl), &C->cl, &e), 0);
  C->have_cl = 1;
  sf_k8s_driver_opts dopt = {.config = &v.c, .model = "tiny", .image = "seifer:0.1.0"};
  if (sf__driver_k8s(&C->drv, &dopt, &e) < 0) fail_msg("%s", e.msg);
  for (int i = 0; i < 500 && sf__driver_k8s_node_ready(&C->drv, "edge-3") != 1; i++) usleep(10000);
  for (int i = 0; i < 3; i++) C->nodes[i].up = 1;
  sf__k8s_ctl_nodes_changed(C); /* the first list: everything Ready */
  for (int i = 0; i < 3; i++) assert_int_equal(C->nodes[i].up, 1);
  /* NotReady: that node only, at once */
  double t0 = sf__now();
  emu_post(&v, "/emu/nodes/edge-2/ready?status=False", NULL);
  assert_true(ctl_wait_down(C, 1, 5000));
  printf("# NotReady seen and marked down %.1f ms after the API accepted the flip\n",
         (sf__now() - t0) * 1e3);
  assert_non_null(strstr(C->nodes[1].why, "Node not Ready"));
  assert_int_equal(C->nodes[0].up, 1);
  assert_int_equal(C->nodes[2].up, 1);
  /* deleted */
  sf_k8s_resp r = {0};
  assert_int_equal(sf__k8s_request(v.k, "DELETE", "/emu/nodes/edge-3", NULL, NULL, &r, &e), 0);
  sf__k8s_resp_free(&r);
  assert_true(ctl_wait_down(C, 2, 5000));
  assert_non_null(strstr(C->nodes[2].why, "Node deleted"));
  assert_int_equal(C->nodes[0].up, 1);
  sf__driver_free(&C->drv);
  sf__cluster_deinit(&C->cl);
  free(C);
  env_down(&v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_quantity),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_kubeconfig),
      cmocka_unit_test(test_stage_deployment),
      cmocka_unit_test(test_status_lease_objects),
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_incluster),
      cmocka_unit_test(test_list_watch_bookmarks_expiry),
      cmocka_unit_test(test_apply_conflicts),
      cmocka_unit_test(test_model_status),
      cmocka_unit_test(test_lease_failover),
      cmocka_unit_test(test_token_rotation),
      cmocka_unit_test(test_driver),
      cmocka_unit_test(test_driver_workers),
      cmocka_unit_test(test_ctl_nodes_changed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
