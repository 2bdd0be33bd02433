/* A real worker (sf__worker_run in a thread) against hostile and honest peers: a wrong secret,
 * garbage, a header with a bad checksum, an oversized and a truncated frame each close only that
 * connection; then the controller ships a stage (digest first, then the bytes), an upstream peer
 * sends a good request (RESULT comes back to the next hop) and one with a wrong shape (an ERROR
 * naming the problem travels on), and the worker drains and stops cleanly. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "onnx/onnx.h"
#include "serve/serve.h"
#include "zoo/zoo.h"

static sf_secret secret;
static char dir[64], port_file[128];
static volatile sig_atomic_t stop_flag;
static int worker_rc = -100;

static void *worker_thread(void *arg) {
  (void)arg;
  sf_worker_opts o = {.listen = "127.0.0.1:0", .name = "t", .cache_dir = dir, .secret = &secret,
                      .threads = 1, .queue = 2, .heartbeat_ms = 100, .max_model_bytes = 64 << 20,
                      .port_file = port_file};
  sf_err err = {0};
  worker_rc = sf__worker_run(&o, &stop_flag, &err);
  return NULL;
}

static char addr[64];

static sf_conn *dial(const char *role) {
  sf_conn *c = NULL;
  sf_err err = {0};
  assert_int_equal(sf__conn_connect(&c, addr, 2000, &err), 0);
  if (role) assert_int_equal(sf__auth_client(c, &secret, role, 2000, &err), 0);
  return c;
}

/* The worker closed c: reads end with an error (EOF) soon, not a timeout (what it sent before
 * closing, e.g. its challenge, is skipped). */
static void assert_closed(sf_conn *c) {
  uint8_t b;
  sf_err err = {0};
  double t0 = sf__now();
  int n = 0;
  while (n < 4096 && sf__conn_read(c, &b, 1, 3000, &err) == 0) n++;
  assert_true(n < 4096);
  assert_true(sf__now() - t0 < 2.9);
}

static void header(uint8_t *h, int type, uint64_t len) {
  memset(h, 0, 48);
  uint32_t magic = SF_FRAME_MAGIC;
  uint16_t ver = SF_FRAME_VERSION, t = (uint16_t)type;
  memcpy(h, &magic, 4);
  memcpy(h + 4, &ver, 2);
  memcpy(h + 6, &t, 2);
  memcpy(h + 28, &len, 8);
  uint32_t crc = sf__crc32c(0, h, 44);
  memcpy(h + 44, &crc, 4);
}

static void test_worker(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/seifer-unit-serve-%d", (int)getpid());
  snprintf(port_file, sizeof port_file, "%s.port", dir);
  for (size_t i = 0; i < 32; i++) secret.key[i] = (uint8_t)(i * 7 + 3);
  secret.len = 32;
  pthread_t th;
  pthread_create(&th, NULL, worker_thread, NULL);
  int port = 0;
  for (int i = 0; i < 200 && !port; i++) {
    FILE *f = fopen(port_file, "r");
    if (f) {
      if (fscanf(f, "%d", &port) != 1) port = 0;
      fclose(f);
    }
    if (!port) usleep(10000);
  }
  assert_true(port > 0);
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  sf_err err = {0};

  /* wrong secret: refused */
  sf_secret wrong = secret;
  wrong.key[0] ^= 1;
  sf_conn *c = dial(NULL);
  assert_true(sf__auth_client(c, &wrong, "gateway", 2000, &err) < 0);
  sf__conn_free(c);
  /* garbage before authenticating */
  c = dial(NULL);
  char junk[64];
  memset(junk, 'G', sizeof junk);
  assert_int_equal(sf__conn_write(c, junk, sizeof junk, &err), 0);
  assert_closed(c);
  sf__conn_free(c);
  /* authenticated, then a header with a bad checksum */
  uint8_t h[48];
  c = dial("gateway");
  header(h, SF_FR_INFER, 16);
  h[20] ^= 0xff;
  assert_int_equal(sf__conn_write(c, h, 48, &err), 0);
  assert_closed(c);
  sf__conn_free(c);
  /* an oversized frame (1 TiB announced) */
  c = dial("gateway");
  header(h, SF_FR_INFER, (uint64_t)1 << 40);
  assert_int_equal(sf__conn_write(c, h, 48, &err), 0);
  assert_closed(c);
  sf__conn_free(c);
  /* a truncated frame, then the peer goes away */
  c = dial("gateway");
  header(h, SF_FR_INFER, 1000);
  assert_int_equal(sf__conn_write(c, h, 48, &err), 0);
  assert_int_equal(sf__conn_write(c, "0123456789", 10, &err), 0);
  sf__conn_free(c);

  /* the controller ships a stage and points it at our "gateway" */
  int lfd = -1;
  assert_int_equal(sf__listen("127.0.0.1:0", 4, &lfd, &err), 0);
  void *model = NULL;
  size_t mlen = 0;
  assert_int_equal(sf__zoo_serialize("tiny-cnn", 1, &model, &mlen, &err), 0);
  sf_conn *ctl = dial("controller");
  uint8_t d[32];
  sf__sha256(model, mlen, d);
  sf_frame f = {0};
  assert_int_equal(sf__frame_send(ctl, &(sf_frame_hdr){.type = SF_FR_STAGE}, d, 32, &err), 0);
  do assert_int_equal(sf__frame_recv(ctl, &f, 1 << 20, 5000, &err), 0);
  while (f.hdr.type == SF_FR_HEARTBEAT);
  assert_int_equal(f.hdr.type, SF_FR_ERROR); /* not cached yet: the worker asks for the bytes */
  assert_int_equal(sf__frame_send2(ctl, &(sf_frame_hdr){.type = SF_FR_STAGE}, d, 32, model, mlen, &err), 0);
  do assert_int_equal(sf__frame_recv(ctl, &f, 1 << 20, 10000, &err), 0);
  while (f.hdr.type == SF_FR_HEARTBEAT);
  assert_int_equal(f.hdr.type, SF_FR_STAGE_OK);
  char cfg[256];
  snprintf(cfg, sizeof cfg, "{\"next\":\"127.0.0.1:%d\",\"last\":true,\"codec\":\"lz4\"}", sf__listen_port(lfd));
  assert_int_equal(sf__frame_send(ctl, &(sf_frame_hdr){.type = SF_FR_CONFIG}, cfg, strlen(cfg), &err), 0);
  do assert_int_equal(sf__frame_recv(ctl, &f, 1 << 20, 5000, &err), 0);
  while (f.hdr.type == SF_FR_HEARTBEAT);
  assert_int_equal(f.hdr.type, SF_FR_CONFIG);
  /* a malformed config is refused with a reason, the link stays up */
  assert_int_equal(sf__frame_send(ctl, &(sf_frame_hdr){.type = SF_FR_CONFIG}, "{\"codec\":7}", 11, &err), 0);
  do assert_int_equal(sf__frame_recv(ctl, &f, 1 << 20, 5000, &err), 0);
  while (f.hdr.type == SF_FR_HEARTBEAT);
  assert_int_equal(f.hdr.type, SF_FR_ERROR);

  /* a good request and one with a wrong shape */
  sf_model *m = NULL;
  assert_int_equal(sf_model_load_buffer(&m, model, mlen, NULL, &err), 0);
  sf_session *s = NULL;
  sf_session_opts so = sf_session_opts_default();
  so.threads = 1;
  assert_int_equal(sf_session_new(&s, m, &so, &err), 0);
  sf_tensor in = *sf_session_input(s, 0);
  memset(in.data, 0, (size_t)sf_tensor_nbytes(&in));
  for (int64_t i = 0; i < sf_tensor_numel(&in); i++) ((float *)in.data)[i] = (float)(i % 17) / 17.0f;
  sf_buf b = {0}; /* encoded before the run: the arena may reuse the input's buffer */
  assert_int_equal(sf__tensors_encode(&b, &in, 1, SF_CODEC_RAW, 0, &err), 0);
  assert_int_equal(sf_session_run(s, &err), 0);
  sf_conn *up = dial("gateway");
  assert_int_equal(sf__frame_send(up, &(sf_frame_hdr){.type = SF_FR_INFER, .request_id = 7}, b.data, b.len, &err), 0);
  sf_conn *back = NULL;
  assert_int_equal(sf__conn_accept(lfd, 5000, &back, &err), 0);
  char role[64];
  assert_int_equal(sf__auth_server(back, &secret, 5000, role, sizeof role, &err), 0);
  assert_string_equal(role, "worker");
  assert_int_equal(sf__frame_recv(back, &f, 1 << 20, 5000, &err), 0);
  assert_int_equal(f.hdr.type, SF_FR_RESULT);
  assert_int_equal(f.hdr.request_id, 7);
  sf_wire_tensor wt[4];
  assert_int_equal(sf__tensors_parse(f.payload, f.hdr.payload_len, wt, 4, &err), 1);
  const sf_tensor *ref = sf_session_output(s, 0);
  float *got = malloc(wt[0].raw_bytes);
  assert_int_equal(sf__tensor_decode(&wt[0], got, wt[0].raw_bytes, &err), 0);
  assert_int_equal(wt[0].raw_bytes, (uint64_t)sf_tensor_nbytes(ref));
  assert_memory_equal(got, ref->data, wt[0].raw_bytes); /* lz4 is exact */
  free(got);

  sf_tensor bad = in;
  bad.dims[bad.rank - 1] -= 1;
  b.len = 0;
  assert_int_equal(sf__tensors_encode(&b, &bad, 1, SF_CODEC_RAW, 0, &err), 0);
  assert_int_equal(sf__frame_send(up, &(sf_frame_hdr){.type = SF_FR_INFER, .request_id = 8}, b.data, b.len, &err), 0);
  assert_int_equal(sf__frame_recv(back, &f, 1 << 20, 5000, &err), 0);
  assert_int_equal(f.hdr.type, SF_FR_ERROR);
  assert_int_equal(f.hdr.request_id, 8);
  assert_non_null(memmem(f.payload, f.hdr.payload_len, "shape", 5));

  /* drain and stop */
  stop_flag = 1;
  pthread_join(th, NULL);
  assert_int_equal(worker_rc, 0);
  sf__frame_deinit(&f);
  sf__buf_deinit(&b);
  sf__conn_free(up);
  sf__conn_free(back);
  sf__conn_free(ctl);
  close(lfd);
  sf_session_free(s);
  sf_model_free(m);
  free(model);
  unlink(port_file);
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_worker)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
