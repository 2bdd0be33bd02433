/* Link probes between two real workers (sf__worker_run in threads, loopback): every pair measured,
 * a mask, an unreachable worker, a wrong secret; heartbeats keep coming while a worker probes;
 * malformed requests are answered with an ERROR and the control link stays usable; a hostile
 * "probe" peer is closed; probe results and the cluster file with measured links. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "plan/plan.h"
#include "probe/link.h"
#include "control/control.h"
#include "serve/serve.h"
#include "zoo/zoo.h"

#define NW 2

static sf_secret secret;
static volatile sig_atomic_t stop_flag;
static char dirs[NW][64], port_files[NW][80], addrs[NW][64];
static pthread_t threads[NW];
static char cached[200]; /* a stage file a worker cached (removed at the end) */

static void *worker_thread(void *arg) {
  int i = (int)(intptr_t)arg;
  char name[8];
  snprintf(name, sizeof name, "w%d", i);
  sf_worker_opts o = {.listen = "127.0.0.1:0",
                      .name = name,
                      .cache_dir = dirs[i],
                      .secret = &secret,
                      .threads = 1,
                      .queue = 2,
                      .heartbeat_ms = 100,
                      .max_model_bytes = 1 << 20,
                      .port_file = port_files[i]};
  sf_err err = {0};
  sf__worker_run(&o, &stop_flag, &err);
  return NULL;
}

static int setup(void **state) {
  (void)state;
  for (size_t i = 0; i < 32; i++) secret.key[i] = (uint8_t)(i * 5 + 1);
  secret.len = 32;
  for (int i = 0; i < NW; i++) {
    snprintf(dirs[i], sizeof dirs[i], "/tmp/seifer-unit-probe-%d-%d", (int)getpid(), i);
    snprintf(port_files[i], sizeof port_files[i], "/tmp/seifer-unit-probe-%d-%d.port",
             (int)getpid(), i);
    pthread_create(&threads[i], NULL, worker_thread, (void *)(intptr_t)i);
  }
  for (int i = 0; i < NW; i++) {
    int port = 0;
    for (int k = 0; k < 300 && !port; k++) {
      FILE *f = fopen(port_files[i], "r");
      if (f) {
        if (fscanf(f, "%d", &port) != 1) port = 0;
        fclose(f);
      }
      if (!port) usleep(10000);
    }
    if (!port) return -1;
    snprintf(addrs[i], sizeof addrs[i], "127.0.0.1:%d", port);
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  stop_flag = 1;
  for (int i = 0; i < NW; i++) {
    pthread_join(threads[i], NULL);
    unlink(port_files[i]);
    if (cached[0]) unlink(cached);
    rmdir(dirs[i]);
  }
  return 0;
}

static sf_conn *dial(const char *addr, const char *role) {
  sf_conn *c = NULL;
  sf_err err = {0};
  assert_int_equal(sf__conn_connect(&c, addr, 2000, &err), 0);
  assert_int_equal(sf__auth_client(c, &secret, role, 2000, &err), 0);
  return c;
}

static sf_probe_opts quick(void) {
  sf_probe_opts o = sf__probe_opts_default();
  o.seconds = 0.1;
  o.bytes = 8 << 20;
  o.pings = 3;
  return o;
}

typedef struct counts {
  int ok, failed;
} counts;

static void count(void *ctx, int from, int to, const sf_probe_result *r, const sf_err *e) {
  counts *c = ctx;
  assert_true(from != to);
  assert_true((r != NULL) != (e != NULL));
  if (r)
    c->ok++;
  else
    c->failed++;
}

static void test_every_pair(void **state) {
  (void)state;
  const char *a[NW] = {addrs[0], addrs[1]};
  double mbps[NW * NW], rtt[NW * NW];
  counts cn = {0};
  sf_probe_opts o = quick();
  o.progress = count;
  o.ctx = &cn;
  sf_err err = {0};
  assert_int_equal(sf__probe_links(a, NW, &secret, &o, mbps, rtt, &err), 0);
  assert_int_equal(cn.ok, 2);
  assert_int_equal(cn.failed, 0);
  assert_true(mbps[0] == 0 && mbps[3] == 0 && rtt[0] == 0);
  assert_true(mbps[1] > 1 && mbps[2] > 1);
  assert_true(rtt[1] > 0 && rtt[1] < 1 && rtt[2] > 0 && rtt[2] < 1);

  /* only (1, 0): (0, 1) is left as it was */
  unsigned char only[NW * NW] = {0, 0, 1, 0};
  mbps[1] = -7;
  o.only = only;
  assert_int_equal(sf__probe_links(a, NW, &secret, &o, mbps, rtt, &err), 0);
  assert_true(mbps[1] == -7 && mbps[2] > 1);
}

static void test_failures(void **state) {
  (void)state;
  /* a third worker that is not there: its four pairs fail, the others are measured */
  const char *a[3] = {addrs[0], addrs[1], "127.0.0.1:1"};
  double mbps[9], rtt[9];
  counts cn = {0};
  sf_probe_opts o = quick();
  o.progress = count;
  o.ctx = &cn;
  o.timeout_ms = 1000;
  sf_err err = {0};
  assert_int_equal(sf__probe_links(a, 3, &secret, &o, mbps, rtt, &err), 4);
  assert_non_null(strstr(err.msg, "127.0.0.1:1"));
  assert_int_equal(cn.ok, 2);
  assert_int_equal(cn.failed, 4);
  assert_true(mbps[1] > 0 && mbps[3] > 0);
  assert_true(mbps[2] == 0 && rtt[2] == -1 && mbps[6] == 0 && rtt[7] == -1);

  /* a wrong secret: refused by every worker */
  sf_secret wrong = secret;
  wrong.key[3] ^= 0x10;
  assert_int_equal(sf__probe_links(a, 2, &wrong, &o, mbps, rtt, &err), 2);
  /* bad options and addresses fail before anything is tried */
  o.seconds = 0;
  assert_true(sf__probe_links(a, 2, &secret, &o, mbps, rtt, &err) < 0);
  o = quick();
  const char *bad[2] = {addrs[0], "nocolon"};
  assert_true(sf__probe_links(bad, 2, &secret, &o, mbps, rtt, &err) < 0);
  assert_non_null(strstr(err.msg, "host:port"));
}

/* Send a PROBE request with this payload on ctl; the ERROR answer must contain want. Heartbeats
 * on the way are counted into *hb. */
static void request_error(sf_conn *ctl, const char *payload, const char *want) {
  sf_err err = {0};
  sf_frame f = {0};
  sf_frame_hdr h = {.type = SF_FR_PROBE, .request_id = 99};
  assert_int_equal(sf__frame_send(ctl, &h, payload, strlen(payload), &err), 0);
  do assert_int_equal(sf__frame_recv(ctl, &f, 1 << 20, 10000, &err), 0);
  while (f.hdr.type == SF_FR_HEARTBEAT);
  assert_int_equal(f.hdr.type, SF_FR_ERROR);
  assert_int_equal(f.hdr.request_id, 99);
  char msg[1024];
  snprintf(msg, sizeof msg, "%.*s", (int)f.hdr.payload_len, (const char *)f.payload);
  if (!strstr(msg, want)) fail_msg("error '%s' does not mention '%s'", msg, want);
  sf__frame_deinit(&f);
}

static void test_control_link(void **state) {
  (void)state;
  sf_conn *ctl = dial(addrs[0], "controller");
  request_error(ctl, "not json", "JSON");
  request_error(ctl, "{\"peer\": 7}", "host:port");
  request_error(ctl, "{\"peer\": \"127.0.0.1:9\", \"seconds\": 99}", "seconds");
  request_error(ctl, "{\"peer\": \"127.0.0.1:9\", \"pings\": 0}", "pings");
  request_error(ctl, "{\"peer\": \"127.0.0.1:1\"}", "probe to 127.0.0.1:1");

  /* a probe of 0.6 s (not cut short by the byte cap): heartbeats keep coming meanwhile, the result
   * answers the request */
  char req[300];
  snprintf(req, sizeof req, "{\"peer\": \"%s\", \"seconds\": 0.6, \"bytes\": 1e10, \"pings\": 4}",
           addrs[1]);
  sf_err err = {0};
  sf_frame f = {0};
  sf_frame_hdr h = {.type = SF_FR_PROBE, .request_id = 7};
  assert_int_equal(sf__frame_send(ctl, &h, req, strlen(req), &err), 0);
  int hb = 0;
  for (;;) {
    assert_int_equal(sf__frame_recv(ctl, &f, 1 << 20, 10000, &err), 0);
    if (f.hdr.type != SF_FR_HEARTBEAT) break;
    hb++;
  }
  assert_int_equal(f.hdr.type, SF_FR_PROBE);
  assert_int_equal(f.hdr.request_id, 7);
  sf_probe_result r;
  assert_int_equal(sf__probe_result_parse((const char *)f.payload, f.hdr.payload_len, &r, &err), 0);
  assert_string_equal(r.peer, addrs[1]);
  assert_true(r.mbps > 0 && r.rtt_s > 0 && r.rtt_min_s <= r.rtt_s);
  assert_true(r.steady_bytes > 0 && r.steady_bytes <= r.bytes && r.steady_seconds <= r.seconds);
  assert_true(hb >= 2); /* 100 ms heartbeats over a 0.6 s probe */
  sf__frame_deinit(&f);

  /* sf__probe_link over the same link */
  sf_probe_opts o = quick();
  assert_int_equal(sf__probe_link(ctl, addrs[1], &o, &r, &err), 0);
  assert_true(r.mbps > 0);
  assert_true(sf__probe_link(ctl, "127.0.0.1:1", &o, &r, &err) < 0);
  assert_int_equal(sf__probe_link(ctl, addrs[1], &o, &r, &err), 0);
  sf__conn_free(ctl);
}

/* Compute probes on the control link: malformed requests and a worker without a stage get an
 * ERROR; with a stage shipped the worker times it (at least 3 runs, heartbeats in between when a
 * run outlasts the heartbeat interval) and reports the stage's digest. */
static void test_compute_probe(void **state) {
  (void)state;
  sf_conn *ctl = dial(addrs[1], "controller");
  request_error(ctl, "{\"compute\": 3}", "must be an object");
  request_error(ctl, "{\"compute\": {\"iters\": 0}}", "iters");
  request_error(ctl, "{\"compute\": {\"seconds\": 1e9}}", "seconds");
  request_error(ctl, "{\"compute\": {\"warmup\": -1}}", "warmup");
  request_error(ctl, "{\"compute\": {}}", "no stage loaded");
  sf_err err = {0};
  sf_compute_probe r;
  assert_int_equal(sf__ctl_compute_probe(ctl, 5, 0.05, 10000, &r, &err), SF_EINVAL);
  assert_non_null(strstr(err.msg, "no stage loaded"));

  void *model = NULL;
  size_t mlen = 0;
  assert_int_equal(sf__zoo_serialize("tiny-cnn", 1, &model, &mlen, &err), 0);
  assert_int_equal(sf__ctl_stage(ctl, model, mlen, 10000, NULL, &err), 0);
  uint8_t d[32];
  char hex[65];
  sf__sha256(model, mlen, d);
  sf__hex(d, 32, hex);
  free(model);
  snprintf(cached, sizeof cached, "%s/%s.onnx", dirs[1], hex);
  assert_int_equal(sf__ctl_compute_probe(ctl, 1, 0.01, 10000, &r, &err), 0);
  assert_true(r.runs >= 3); /* at least 3, even when 1 was asked */
  assert_true(r.mean_s > 0 && r.median_s > 0);
  assert_string_equal(r.digest, hex);
  assert_int_equal(sf__ctl_compute_probe(ctl, 50, 0.3, 10000, &r, &err), 0);
  assert_true(r.runs >= 3 && r.runs <= 50);
  /* the link is still in order: a status answers */
  char *reply = NULL;
  assert_int_equal(sf__ctl_status(ctl, 2000, &reply, &err), 0);
  assert_non_null(strstr(reply, hex));
  free(reply);
  sf__conn_free(ctl);
}

/* A "probe" peer that breaks the protocol is closed. */
static void assert_closed_after(const void *payload, size_t len, int type, int flags) {
  sf_conn *c = dial(addrs[1], "probe");
  sf_err err = {0};
  sf_frame f = {0};
  sf_frame_hdr h = {.type = (uint16_t)type, .flags = (uint16_t)flags};
  assert_int_equal(sf__frame_send(c, &h, payload, len, &err), 0);
  int rc = sf__frame_recv(c, &f, 1 << 20, 3000, &err);
  assert_true(rc < 0);
  assert_null(strstr(err.msg, "timed out"));
  sf__frame_deinit(&f);
  sf__conn_free(c);
}

static void test_hostile_peer(void **state) {
  (void)state;
  char big[100] = {0};
  assert_closed_after("xxxx", 4, SF_FR_PROBE_DATA, 0);                   /* bulk before the start */
  assert_closed_after(big, sizeof big, SF_FR_PROBE_DATA, SF_PROBE_PING); /* oversized ping */
  assert_closed_after("{", 1, SF_FR_PROBE, 0);                           /* start: not JSON */
  assert_closed_after("{\"seconds\": -1}", 15, SF_FR_PROBE, 0);          /* start: out of range */
  assert_closed_after("", 0, SF_FR_INFER, 0);                            /* not a probe frame */
  /* an honest ping is echoed */
  sf_conn *c = dial(addrs[1], "probe");
  sf_err err = {0};
  sf_frame f = {0};
  sf_frame_hdr h = {.type = SF_FR_PROBE_DATA, .flags = SF_PROBE_PING, .request_id = 5};
  assert_int_equal(sf__frame_send(c, &h, "abcdefgh", 8, &err), 0);
  assert_int_equal(sf__frame_recv(c, &f, 1 << 20, 3000, &err), 0);
  assert_int_equal(f.hdr.type, SF_FR_PROBE_DATA);
  assert_int_equal(f.hdr.request_id, 5);
  assert_memory_equal(f.payload, "abcdefgh", 8);
  sf__frame_deinit(&f);
  sf__conn_free(c);
}

static void test_result_parse(void **state) {
  (void)state;
  sf_probe_result r;
  sf_err err = {0};
  const char *good =
      "{\"peer\":\"a:1\",\"mbps\":20,\"rtt_ms\":2,\"rtt_min_ms\":1,\"bytes\":5,"
      "\"seconds\":1,\"steady_bytes\":4,\"steady_seconds\":0.8}";
  assert_int_equal(sf__probe_result_parse(good, strlen(good), &r, &err), 0);
  assert_true(r.mbps == 20 && r.rtt_s == 0.002 && r.rtt_min_s == 0.001);
  const char *neg =
      "{\"peer\":\"a:1\",\"mbps\":-1,\"rtt_ms\":2,\"rtt_min_ms\":1,\"bytes\":5,"
      "\"seconds\":1,\"steady_bytes\":4,\"steady_seconds\":0.8}";
  assert_true(sf__probe_result_parse(neg, strlen(neg), &r, &err) < 0);
  assert_non_null(strstr(err.msg, "mbps"));
  assert_true(sf__probe_result_parse("{\"peer\":\"a:1\"}", 14, &r, &err) < 0);
  assert_true(sf__probe_result_parse("[]", 2, &r, &err) < 0);
}

static void test_cluster_json(void **state) {
  (void)state;
  const char *in =
      "{\"nodes\": [{\"name\": \"a\", \"memory_mb\": 8, \"gflops\": 1, \"address\": \"h:1\"},"
      "{\"name\": \"b\", \"memory_mb\": 8, \"gflops\": 1}, {\"name\": \"c\", \"memory_mb\": 8, "
      "\"gflops\": 1}],"
      "\"links\": [{\"from\": \"a\", \"to\": \"b\", \"mbps\": 10, \"rtt_ms\": 2}],"
      "\"default_link\": {\"mbps\": 100}, \"gateway\": \"a\"}";
  /* measured: a -> c 50 Mbit/s 1 ms, c -> b 20; nothing else (b -> a failed: 0, -1) */
  double mbps[9] = {0, 0, 50, 0, 0, 0, 0, 20, 0}, rtt[9] = {0, 0, 0.001, -1, 0, 0, 0, 0.0005, 0};
  sf_err err = {0};
  char *out = sf__probe_cluster_json(in, strlen(in), 3, mbps, rtt, &err);
  assert_non_null(out);
  sf_cluster cl;
  assert_int_equal(sf__cluster_parse(out, strlen(out), &cl, &err), 0);
  assert_int_equal(cl.n, 3);
  assert_int_equal(cl.gateway, 0);
  assert_true(cl.bw[0 * 3 + 2] == 50e6 / 8 && cl.rtt[0 * 3 + 2] == 0.001);
  assert_true(cl.bw[2 * 3 + 1] == 20e6 / 8 && cl.rtt[2 * 3 + 1] == 0.0005);
  assert_true(cl.bw[2 * 3 + 0] == 100e6 / 8);                                /* default_link */
  assert_true(cl.bw[0 * 3 + 1] == 10e6 / 8 && cl.bw[1 * 3 + 0] == 10e6 / 8); /* kept, both ways */
  assert_true(cl.rtt[1 * 3 + 0] == 0.002);
  assert_non_null(strstr(out, "\"h:1\""));
  sf__cluster_deinit(&cl);
  free(out);
  assert_null(sf__probe_cluster_json(in, strlen(in), 2, mbps, rtt, &err));
  assert_non_null(strstr(err.msg, "nodes"));
  assert_null(sf__probe_cluster_json("[1]", 3, 3, mbps, rtt, &err));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_pair),   cmocka_unit_test(test_failures),
      cmocka_unit_test(test_control_link), cmocka_unit_test(test_compute_probe),
      cmocka_unit_test(test_hostile_peer),
      cmocka_unit_test(test_result_parse), cmocka_unit_test(test_cluster_json),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
