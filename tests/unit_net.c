/* Data-plane wire layer (src/net): frames over socketpairs and loopback TCP, every header
 * corruption and truncation, fuzzed frames and tensor payloads (must fail cleanly, never crash:
 * run under ASan), codec round trips and error bounds, authentication, pacing, secret files.
 * Deterministic: fixed seeds. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <zfp.h>

#include "net/net.h"
#include "net/net_priv.h"
#include "util/util.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static float frand(void) {
  return (float)((next() >> 11) * 0x1p-53);
} /* [0, 1) */

/* Two connected sf_conn ends over a unix socketpair. */
static void conn_pair(sf_conn **a, sf_conn **b) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  *a = sf__conn_from_fd(sv[0]);
  *b = sf__conn_from_fd(sv[1]);
  assert_non_null(*a);
  assert_non_null(*b);
}

/* A conn reading from a socketpair whose other end is the raw fd *wfd. */
static sf_conn *raw_pair(int *wfd) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  sf_conn *c = sf__conn_from_fd(sv[0]);
  assert_non_null(c);
  *wfd = sv[1];
  return c;
}

static void write_all(int fd, const void *p, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(fd, (const uint8_t *)p + done, n - done);
    assert_true(w > 0);
    done += (size_t)w;
  }
}

/* Wire bytes of one frame, built independently of frame.c (header layout from net.h). */
static size_t build_frame(uint8_t *out, int type, uint64_t rid, const void *p, size_t n) {
  memset(out, 0, SF_FRAME_HDR_BYTES);
  sf__st32(out, SF_FRAME_MAGIC);
  sf__st16(out + 4, SF_FRAME_VERSION);
  sf__st16(out + 6, (uint16_t)type);
  sf__st16(out + 8, 0x5a);
  sf__st32(out + 12, 3);
  sf__st32(out + 16, 7);
  sf__st64(out + 20, rid);
  sf__st64(out + 28, n);
  sf__st32(out + 36, sf__crc32c(0, p, n));
  sf__st32(out + 44, sf__crc32c(0, out, 44));
  if (n) memcpy(out + SF_FRAME_HDR_BYTES, p, n);
  return SF_FRAME_HDR_BYTES + n;
}
static void refresh_hdr_crc(uint8_t *b) {
  sf__st32(b + 44, sf__crc32c(0, b, 44));
}

/* Feed bytes to a fresh connection (then EOF) and receive one frame; returns the code. */
static int recv_bytes(const uint8_t *b, size_t n, uint64_t max, sf_err *err) {
  int wfd;
  sf_conn *c = raw_pair(&wfd);
  write_all(wfd, b, n);
  close(wfd);
  sf_frame f = {0};
  int rc = sf__frame_recv(c, &f, max, 2000, err);
  sf__frame_deinit(&f);
  sf__conn_free(c);
  return rc;
}

/* ---- CRC ------------------------------------------------------------------------------------ */

static uint32_t crc_ref(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
  }
  return ~c;
}

static void test_crc32c(void **st) {
  (void)st;
  assert_int_equal(sf__crc32c(0, "123456789", 9), 0xE3069283u);
  assert_int_equal(sf__crc32c(0, NULL, 0), 0);
  uint8_t buf[1000];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)next();
  for (size_t off = 0; off < 9; off++)
    for (size_t n = 0; n < 300; n += 7) {
      uint32_t whole = sf__crc32c(0, buf + off, n);
      assert_int_equal(whole, crc_ref(buf + off, n));
      assert_int_equal(sf__crc32c(sf__crc32c(0, buf + off, n / 3), buf + off + n / 3, n - n / 3),
                       whole);
    }
}

/* ---- frames --------------------------------------------------------------------------------- */

typedef struct sender {
  sf_conn *c;
  sf_frame_hdr h;
  const uint8_t *p1, *p2;
  size_t n1, n2;
  int rc;
  sf_err err;
} sender;

static void *send_thread(void *arg) {
  sender *s = arg;
  s->rc = sf__frame_send2(s->c, &s->h, s->p1, s->n1, s->p2, s->n2, &s->err);
  return NULL;
}

/* Send (from a thread, so big payloads do not deadlock) and receive one frame; check it. */
static void round_trip(sf_conn *a, sf_conn *b, size_t n1, size_t n2, sf_frame *f) {
  uint8_t *p = sf__malloc(n1 + n2);
  for (size_t i = 0; i < n1 + n2; i++) p[i] = (uint8_t)(i * 131 + (i >> 9));
  sender s = {
      .c = a,
      .h = {.type = SF_FR_INFER, .flags = 9, .pipeline = 2, .stage = 5, .request_id = 1ull << 40},
      .p1 = p,
      .n1 = n1,
      .p2 = p + n1,
      .n2 = n2};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, send_thread, &s), 0);
  sf_err err = {0};
  int rc = sf__frame_recv(b, f, SF_FRAME_MAX_PAYLOAD, 10000, &err);
  pthread_join(th, NULL);
  if (rc < 0) print_error("recv: %s\n", err.msg);
  assert_int_equal(s.rc, 0);
  assert_int_equal(rc, 0);
  assert_int_equal(f->hdr.type, SF_FR_INFER);
  assert_int_equal(f->hdr.flags, 9);
  assert_int_equal(f->hdr.pipeline, 2);
  assert_int_equal(f->hdr.stage, 5);
  assert_true(f->hdr.request_id == 1ull << 40);
  assert_true(f->hdr.payload_len == n1 + n2);
  assert_true(n1 + n2 == 0 || memcmp(f->payload, p, n1 + n2) == 0);
  free(p);
}

static void test_frame_socketpair(void **st) {
  (void)st;
  sf_conn *a, *b;
  conn_pair(&a, &b);
  sf_frame f = {0};
  size_t sizes[][2] = {{0, 0}, {1, 0}, {0, 1}, {100, 1000}, {3 << 20, 5}, {7, 9 << 20}, {10, 10}};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    round_trip(a, b, sizes[i][0], sizes[i][1], &f);
    if (i == 5) assert_true(f.cap >= (9u << 20) + 7);
  }
  assert_true(f.cap >= (9u << 20) + 7); /* grow only */
  assert_true(sf__conn_bytes_out(a) == sf__conn_bytes_in(b));
  assert_true(sf__conn_bytes_in(b) > (12u << 20));
  sf__frame_deinit(&f);
  sf__conn_free(a);
  sf__conn_free(b);
}

typedef struct acceptor {
  int lfd;
  sf_conn *c;
  int rc;
  sf_err err;
} acceptor;

static void *accept_thread(void *arg) {
  acceptor *a = arg;
  a->rc = sf__conn_accept(a->lfd, 5000, &a->c, &a->err);
  return NULL;
}

/* A connected client/server pair over loopback TCP. */
static void tcp_pair(sf_conn **cli, sf_conn **srv) {
  sf_err err = {0};
  int lfd = -1;
  assert_int_equal(sf__listen("127.0.0.1:0", 4, &lfd, &err), 0);
  int port = sf__listen_port(lfd);
  assert_true(port > 0);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  acceptor ac = {.lfd = lfd};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, accept_thread, &ac), 0);
  int rc = sf__conn_connect(cli, addr, 5000, &err);
  pthread_join(th, NULL);
  assert_int_equal(rc, 0);
  assert_int_equal(ac.rc, 0);
  *srv = ac.c;
  close(lfd);
}

static void test_frame_tcp(void **st) {
  (void)st;
  sf_conn *cli, *srv;
  tcp_pair(&cli, &srv);
  assert_non_null(strstr(sf__conn_peer(cli), "127.0.0.1:"));
  assert_non_null(strstr(sf__conn_peer(srv), "127.0.0.1:"));
  sf_frame f = {0};
  round_trip(cli, srv, 12345, 2 << 20, &f);
  round_trip(srv, cli, 0, 0, &f);
  round_trip(srv, cli, 1 << 20, 0, &f);
  assert_true(sf__conn_bytes_out(cli) == sf__conn_bytes_in(srv));
  sf__frame_deinit(&f);
  sf__conn_free(cli);
  sf__conn_free(srv);
}

static void test_listen_connect_errors(void **st) {
  (void)st;
  sf_err err = {0};
  int fd = -1;
  const char *bad[] = {"nocolon", "1.2.3.4:", "1.2.3.4:99999", "1.2.3.4:-1",
                       "::1:80",  "[::1]80",  "host:8x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(sf__listen(bad[i], 4, &fd, &err), SF_EINVAL);
    assert_non_null(strstr(err.msg, "address"));
  }
  assert_int_equal(sf__listen(":0", 4, &fd, &err), 0); /* any address */
  int port = sf__listen_port(fd);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  sf_conn *c = NULL, *s = NULL;
  assert_int_equal(sf__conn_connect(&c, addr, 2000, &err), 0);
  assert_int_equal(sf__conn_accept(fd, 2000, &s, &err), 0);
  sf__conn_free(c);
  sf__conn_free(s);
  assert_int_equal(sf__conn_accept(fd, 50, &s, &err), SF_ENOTFOUND); /* timeout */
  close(fd);
  /* nothing listens there any more */
  assert_int_equal(sf__conn_connect(&c, addr, 2000, &err), SF_EIO);
  assert_non_null(strstr(err.msg, "refused"));
  if (sf__listen("[::1]:0", 4, &fd, &err) == 0) { /* IPv6 loopback when the host has it */
    snprintf(addr, sizeof addr, "[::1]:%d", sf__listen_port(fd));
    assert_int_equal(sf__conn_connect(&c, addr, 2000, &err), 0);
    assert_int_equal(sf__conn_accept(fd, 2000, &s, &err), 0);
    assert_non_null(strstr(sf__conn_peer(s), "[::1]:"));
    sf__conn_free(c);
    sf__conn_free(s);
    close(fd);
  }
}

static void test_frame_corruption(void **st) {
  (void)st;
  uint8_t good[SF_FRAME_HDR_BYTES + 100], b[sizeof good];
  uint8_t pl[100];
  for (int i = 0; i < 100; i++) pl[i] = (uint8_t)i;
  size_t n = build_frame(good, SF_FR_RESULT, 77, pl, sizeof pl);
  sf_err err = {0};
  assert_int_equal(recv_bytes(good, n, 1 << 20, &err), 0);

  struct {
    const char *what;
    int off, val, fix_crc, code;
    const char *msg;
  } cases[] = {
      {"magic", 0, 'X', 0, SF_EFORMAT, "magic"},
      {"magic (crc fixed)", 3, 0, 1, SF_EFORMAT, "magic"},
      {"version", 4, 2, 1, SF_EFORMAT, "version"},
      {"type 0", 6, 0, 1, SF_EFORMAT, "type"},
      {"type past the last", 6, SF_FR_TYPE_MAX + 1, 1, SF_EFORMAT, "type"},
      {"reserved", 10, 1, 1, SF_EFORMAT, "reserved"},
      {"reserved2", 40, 1, 1, SF_EFORMAT, "reserved"},
      {"flags without crc", 8, 0x77, 0, SF_EFORMAT, "header checksum"},
      {"header crc", 44, 0x01, 0, SF_EFORMAT, "header checksum"},
      {"payload crc", 36, 0xee, 1, SF_EFORMAT, "payload checksum"},
      {"payload byte", SF_FRAME_HDR_BYTES + 50, 0xff, 0, SF_EFORMAT, "payload checksum"},
      {"payload_len over max", 31, 0x01, 1, SF_ELIMIT, "limit"},
      {"payload_len 2^63", 35, 0x80, 1, SF_ELIMIT, "limit"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    memcpy(b, good, n);
    b[cases[i].off] = (uint8_t)cases[i].val;
    if (cases[i].fix_crc) refresh_hdr_crc(b);
    memset(&err, 0, sizeof err);
    int rc = recv_bytes(b, n, 1 << 20, &err);
    if (rc != cases[i].code || !strstr(err.msg, cases[i].msg))
      print_error("%s: rc %d, '%s'\n", cases[i].what, rc, err.msg);
    assert_int_equal(rc, cases[i].code);
    assert_non_null(strstr(err.msg, cases[i].msg));
  }
  /* the limit is the caller's: 100 bytes over a max of 99 */
  assert_int_equal(recv_bytes(good, n, 99, &err), SF_ELIMIT);
  assert_int_equal(recv_bytes(good, n, 100, &err), 0);
}

static void test_frame_truncated(void **st) {
  (void)st;
  uint8_t good[SF_FRAME_HDR_BYTES + 64], pl[64] = {1, 2, 3};
  size_t n = build_frame(good, SF_FR_HEARTBEAT, 1, pl, sizeof pl);
  for (size_t cut = 0; cut < n; cut++) {
    sf_err err = {0};
    assert_int_equal(recv_bytes(good, cut, 1 << 20, &err), SF_EIO);
    assert_non_null(strstr(err.msg, "closed"));
  }
}

static void test_frame_timeout_and_shutdown(void **st) {
  (void)st;
  sf_conn *a, *b;
  conn_pair(&a, &b);
  sf_frame f = {0};
  sf_err err = {0};
  double t0 = sf__now();
  assert_int_equal(sf__frame_recv(b, &f, 1024, 100, &err), SF_EIO);
  assert_non_null(strstr(err.msg, "timed out"));
  assert_true(sf__now() - t0 >= 0.09);
  /* half a header, then silence: still a timeout */
  uint8_t hb[SF_FRAME_HDR_BYTES + 1];
  build_frame(hb, SF_FR_BYE, 0, NULL, 0);
  assert_int_equal(sf__conn_write(a, hb, 20, &err), 0);
  assert_int_equal(sf__frame_recv(b, &f, 1024, 100, &err), SF_EIO);
  assert_non_null(strstr(err.msg, "timed out"));
  /* a shut-down connection fails at once, reads and writes alike */
  sf__conn_shutdown(b);
  assert_int_equal(sf__frame_recv(b, &f, 1024, -1, &err), SF_EIO);
  assert_int_equal(sf__conn_write(b, hb, 10, &err), SF_EIO);
  sf__frame_deinit(&f);
  sf__conn_free(a);
  sf__conn_free(b);
}

typedef struct blocked {
  sf_conn *c;
  int rc;
  sf_err err;
} blocked;

static void *blocked_reader(void *arg) {
  blocked *r = arg;
  sf_frame f = {0};
  r->rc = sf__frame_recv(r->c, &f, 1024, -1, &r->err);
  sf__frame_deinit(&f);
  return NULL;
}

static void test_shutdown_wakes_reader(void **st) {
  (void)st;
  sf_conn *a, *b;
  tcp_pair(&a, &b);
  blocked r = {.c = b, .rc = 1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, blocked_reader, &r), 0);
  usleep(50000);
  sf__conn_shutdown(b);
  pthread_join(th, NULL);
  assert_int_equal(r.rc, SF_EIO);
  sf__conn_free(a);
  sf__conn_free(b);
}

/* Random mutations of valid frames: every outcome but a crash is acceptable; nearly all fail. */
static void test_fuzz_frames(void **st) {
  (void)st;
  enum { ITER = 3000 };
  uint8_t pl[300], good[SF_FRAME_HDR_BYTES + 300], b[SF_FRAME_HDR_BYTES + 400];
  int ok = 0, fails = 0;
  for (int it = 0; it < ITER; it++) {
    size_t pn = next() % sizeof pl;
    for (size_t i = 0; i < pn; i++) pl[i] = (uint8_t)next();
    size_t n = build_frame(good, 1 + (int)(next() % SF_FR_TYPE_MAX), next(), pl, pn);
    memcpy(b, good, n);
    int kind = (int)(next() % 6);
    if (kind == 0) { /* flip bits */
      for (int k = 1 + (int)(next() % 4); k > 0; k--)
        b[next() % n] ^= (uint8_t)(1u << (next() % 8));
    } else if (kind == 1) { /* random bytes in the header, checksum repaired */
      for (int k = 1 + (int)(next() % 3); k > 0; k--) b[next() % 44] = (uint8_t)next();
      refresh_hdr_crc(b);
    } else if (kind == 2) { /* truncate */
      n = next() % n;
    } else if (kind == 3) { /* random payload_len, checksum repaired */
      sf__st64(b + 28, next() >> (next() % 64));
      refresh_hdr_crc(b);
    } else if (kind == 4) { /* garbage */
      for (size_t i = 0; i < n; i++) b[i] = (uint8_t)next();
    } else { /* bytes appended: the first frame is still valid */
      size_t extra = next() % 100;
      for (size_t i = 0; i < extra; i++) b[n + i] = (uint8_t)next();
      n += extra;
    }
    sf_err err = {0};
    int rc = recv_bytes(b, n, 1 << 16, &err);
    if (rc == 0)
      ok++;
    else {
      assert_true(rc == SF_EFORMAT || rc == SF_ELIMIT || rc == SF_EIO);
      assert_true(err.msg[0] != 0);
      fails++;
    }
  }
  print_message("frame fuzz: %d rejected, %d accepted\n", fails, ok);
  assert_true(fails > ITER / 2);
}

/* ---- codecs --------------------------------------------------------------------------------- */

static void fill(float *x, size_t n, int relu) {
  for (size_t i = 0; i < n; i++) {
    float v = (frand() - 0.5f) * 8.0f + sinf((float)i * 0.01f) * 2.0f;
    x[i] = relu && v < 0 ? 0.0f : v;
  }
}

/* Encode one tensor, parse, decode; return the codec used and check the error bound. */
static int codec_trip(int codec, const float *x, int64_t rows, int64_t cols, double tol) {
  size_t n = (size_t)(rows * cols);
  sf_tensor t = {.name = "act/0",
                 .dtype = SF_F32,
                 .rank = 2,
                 .dims = {rows, cols},
                 .layout = SF_LAYOUT_PLAIN,
                 .data = (void *)x};
  sf_buf b = {0};
  sf_err err = {0};
  assert_int_equal(sf__buf_put(&b, "pre", 3), 0); /* encode appends */
  assert_int_equal(sf__tensors_encode(&b, &t, 1, codec, tol, &err), 0);
  sf_wire_tensor w[2];
  assert_int_equal(sf__tensors_parse(b.data + 3, b.len - 3, w, 2, &err), 1);
  assert_string_equal(w[0].name, "act/0");
  assert_int_equal(w[0].rank, 2);
  assert_true(w[0].dims[0] == rows && w[0].dims[1] == cols);
  assert_true(w[0].raw_bytes == n * 4);
  float *y = sf__aligned_alloc(n * 4 + 4);
  int rc = sf__tensor_decode(&w[0], y, n * 4, &err);
  if (rc < 0) print_error("decode: %s\n", err.msg);
  assert_int_equal(rc, 0);
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)y[i] - (double)x[i]);
    if (w[0].codec == SF_CODEC_FP16) e /= fmax(fabs((double)x[i]), 0x1p-14); /* relative */
    if (e > worst) worst = e;
  }
  if (sf__codec_lossless(w[0].codec))
    assert_true(memcmp(x, y, n * 4) == 0);
  else if (w[0].codec == SF_CODEC_FP16)
    assert_true(worst <= 0x1p-11);
  else
    assert_true(worst <= (tol > 0 ? tol : SF_ZFP_DEFAULT_TOL));
  int used = w[0].codec;
  if (n >= 1000)
    print_message("  %-4s -> %-4s %7zu floats: %5.1f%% of raw, max err %.3g\n",
                  sf__codec_name(codec), sf__codec_name(used), n,
                  100.0 * (double)w[0].enc_bytes / (double)(n * 4), worst);
  free(y);
  sf__buf_deinit(&b);
  return used;
}

static void test_codec_round_trips(void **st) {
  (void)st;
  size_t n = 64 * 1000 + 3; /* several zfp chunks, a partial block */
  float *x = sf__malloc(n * 4);
  for (int relu = 0; relu < 2; relu++) {
    fill(x, n, relu);
    assert_int_equal(codec_trip(SF_CODEC_RAW, x, 1, (int64_t)n, 0), SF_CODEC_RAW);
    assert_int_equal(codec_trip(SF_CODEC_FP16, x, 1, (int64_t)n, 0), SF_CODEC_FP16);
    int l = codec_trip(SF_CODEC_LZ4, x, 1, (int64_t)n, 0);
    if (relu) assert_int_equal(l, SF_CODEC_LZ4); /* half zeros: lz4 pays off */
    assert_int_equal(codec_trip(SF_CODEC_ZFP, x, 1, (int64_t)n, 0), SF_CODEC_ZFP);
    assert_int_equal(codec_trip(SF_CODEC_ZFP, x, 1, (int64_t)n, 1e-2), SF_CODEC_ZFP);
    assert_int_equal(codec_trip(SF_CODEC_ZFP, x, 1, (int64_t)n, 1e-5), SF_CODEC_ZFP);
  }
  /* small and odd shapes */
  for (int64_t m = 1; m < 40; m += 3) {
    fill(x, (size_t)m, 1);
    for (int c = 0; c < SF_CODEC_COUNT; c++) codec_trip(c, x, 1, m, 0);
  }
  /* lz4 over more than one 1 MiB chunk */
  size_t big = (3u << 20) / 4 + 11;
  float *y = sf__malloc(big * 4);
  fill(y, big, 1);
  assert_int_equal(codec_trip(SF_CODEC_LZ4, y, 11, (int64_t)big / 11, 0), SF_CODEC_LZ4);
  free(y);
  /* non-finite values cannot go through zfp: sent raw, exact */
  fill(x, 1000, 0);
  x[17] = INFINITY;
  x[99] = NAN;
  assert_int_equal(codec_trip(SF_CODEC_ZFP, x, 10, 100, 0), SF_CODEC_RAW);
  free(x);
}

static void test_fp16_conversion(void **st) {
  (void)st;
  struct {
    float f;
    uint16_t h;
  } exact[] = {{0.0f, 0x0000},        {-0.0f, 0x8000},
               {1.0f, 0x3c00},        {-2.0f, 0xc000},
               {65504.0f, 0x7bff},    {INFINITY, 0x7c00},
               {-INFINITY, 0xfc00},   {0x1p-14f, 0x0400},
               {0x1p-24f, 0x0001},    {0x1p-25f, 0x0000},
               {0x1.8p-25f, 0x0001},  {65520.0f, 0x7c00},
               {65519.0f, 0x7bff},    {1e6f, 0x7c00},
               {0x1.002p0f, 0x3c00}, /* tie, even */
               {0x1.006p0f, 0x3c02}, /* tie, rounds up to even */
               {0x3p-24f, 0x0003},    {0x1.ff8p-15f, 0x03ff},
               {0x1.ffcp-15f, 0x0400}}; /* subnormal tie rounds up to the smallest normal */
  for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
    if (sf__f32_to_f16(exact[i].f) != exact[i].h)
      print_error("%a -> 0x%04x, expected 0x%04x\n", (double)exact[i].f, sf__f32_to_f16(exact[i].f),
                  exact[i].h);
    assert_int_equal(sf__f32_to_f16(exact[i].f), exact[i].h);
  }
  assert_true(isnan(sf__f16_to_f32(sf__f32_to_f16(NAN))));
  assert_true((sf__f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (sf__f32_to_f16(NAN) & 0x3ff));
  /* every half value converts to float and back to itself */
  for (uint32_t h = 0; h < 0x10000; h++) {
    float f = sf__f16_to_f32((uint16_t)h);
    if (isnan(f)) continue;
    assert_int_equal(sf__f32_to_f16(f), h);
  }
  assert_true(sf__f16_to_f32(0x0001) == 0x1p-24f);
  assert_true(sf__f16_to_f32(0x8400) == -0x1p-14f);
}

static void test_int64_and_zero_size(void **st) {
  (void)st;
  int64_t v[24];
  for (int i = 0; i < 24; i++) v[i] = (int64_t)next();
  float empty = 0;
  sf_tensor ts[3] = {
      {.name = "ids", .dtype = SF_I64, .rank = 3, .dims = {2, 3, 4}, .data = v},
      {.name = "", .dtype = SF_F32, .rank = 2, .dims = {0, 5}, .data = NULL},
      {.name = "scalar", .dtype = SF_F32, .rank = 0, .data = &empty},
  };
  for (int codec = 0; codec < SF_CODEC_COUNT; codec++) {
    sf_buf b = {0};
    sf_err err = {0};
    assert_int_equal(sf__tensors_encode(&b, ts, 3, codec, 0, &err), 0);
    sf_wire_tensor w[3];
    assert_int_equal(sf__tensors_parse(b.data, b.len, w, 3, &err), 3);
    assert_int_equal(w[0].dtype, SF_I64);
    assert_true(w[0].codec == (codec == SF_CODEC_LZ4 ? SF_CODEC_LZ4 : SF_CODEC_RAW) ||
                w[0].codec == SF_CODEC_RAW);
    int64_t back[24];
    assert_int_equal(sf__tensor_decode(&w[0], back, sizeof back, &err), 0);
    assert_memory_equal(back, v, sizeof v);
    assert_true(w[1].raw_bytes == 0 && w[1].dims[0] == 0);
    assert_int_equal(sf__tensor_decode(&w[1], back, 0, &err), 0);
    assert_int_equal(w[2].rank, 0);
    assert_true(w[2].raw_bytes == 4);
    /* too small a destination is refused */
    assert_int_equal(sf__tensor_decode(&w[0], back, sizeof back - 1, &err), SF_ESHAPE);
    /* fewer slots than tensors */
    assert_int_equal(sf__tensors_parse(b.data, b.len, w, 2, &err), SF_ELIMIT);
    sf__buf_deinit(&b);
  }
  /* bad arguments: the buffer is left as it was */
  sf_buf b = {0};
  sf_err err = {0};
  sf_tensor bad = {.name = "x", .dtype = SF_F32, .rank = 1, .dims = {-1}, .data = v};
  assert_int_equal(sf__buf_put(&b, "abc", 3), 0);
  assert_true(sf__tensors_encode(&b, &bad, 1, SF_CODEC_RAW, 0, &err) < 0);
  assert_true(b.len == 3);
  bad.dims[0] = 2;
  bad.dtype = SF_STRING;
  assert_true(sf__tensors_encode(&b, &bad, 1, SF_CODEC_RAW, 0, &err) < 0);
  assert_true(sf__tensors_encode(&b, ts, 1, 9, 0, &err) < 0);
  assert_true(sf__tensors_encode(&b, ts, 1, SF_CODEC_ZFP, -1, &err) < 0);
  assert_true(b.len == 3);
  sf__buf_deinit(&b);
}

/* Hand-made payload with one descriptor; fields overridable. */
typedef struct desc {
  int name_len, dtype, codec, rank, layout;
  int64_t dims[9];
  uint64_t raw, enc;
  size_t data, trailing;
  uint32_t count;
} desc;

static size_t make_payload(uint8_t *p, const desc *d) {
  size_t o = 0;
  sf__st32(p, d->count);
  o += 4;
  sf__st16(p + o, (uint16_t)d->name_len);
  o += 2;
  memset(p + o, 'n', (size_t)(d->name_len > 300 ? 300 : d->name_len));
  o += (size_t)(d->name_len > 300 ? 300 : d->name_len);
  p[o++] = (uint8_t)d->dtype;
  p[o++] = (uint8_t)d->codec;
  p[o++] = (uint8_t)d->rank;
  p[o++] = (uint8_t)d->layout;
  for (int k = 0; k < d->rank && k < 9; k++, o += 8) sf__st64(p + o, (uint64_t)d->dims[k]);
  sf__st64(p + o, d->raw);
  sf__st64(p + o + 8, d->enc);
  o += 16;
  memset(p + o, 0, d->data + d->trailing);
  return o + d->data + d->trailing;
}

static void test_parse_errors(void **st) {
  (void)st;
  static uint8_t p[4096];
  sf_wire_tensor w[4];
  sf_err err = {0};
  const desc ok = {.count = 1,
                   .name_len = 3,
                   .dtype = SF_F32,
                   .codec = SF_CODEC_RAW,
                   .rank = 2,
                   .dims = {2, 3},
                   .raw = 24,
                   .enc = 24,
                   .data = 24};
  assert_int_equal(sf__tensors_parse(p, make_payload(p, &ok), w, 4, &err), 1);
  struct {
    const char *what, *msg;
    int code;
    desc d;
  } cases[] = {
      {"count", "tensors", SF_ELIMIT, ok},
      {"huge count", "tensors", SF_ELIMIT, ok},
      {"name", "name", SF_EFORMAT, ok},
      {"dtype", "dtype", SF_EFORMAT, ok},
      {"string", "dtype", SF_EFORMAT, ok},
      {"codec", "codec", SF_EFORMAT, ok},
      {"rank", "rank", SF_EFORMAT, ok},
      {"negative dim", "dim", SF_EFORMAT, ok},
      {"huge dim", "dim", SF_EFORMAT, ok},
      {"raw_bytes", "raw_bytes", SF_EFORMAT, ok},
      {"enc past end", "left", SF_EFORMAT, ok},
      {"trailing", "trailing", SF_EFORMAT, ok},
      {"raw enc size", "encoded", SF_EFORMAT, ok},
      {"fp16 on int", "codec", SF_EFORMAT, ok},
      {"layout", "layout", SF_EFORMAT, ok},
      {"truncated", "truncated", SF_EFORMAT, ok},
      {"product over limit", "dim", SF_EFORMAT, ok},
  };
  cases[0].d.count = 5;
  cases[1].d.count = 0xffffffffu;
  cases[2].d.name_len = 300;
  cases[3].d.dtype = 99;
  cases[4].d.dtype = SF_STRING;
  cases[5].d.codec = 4;
  cases[6].d.rank = 9;
  cases[7].d.dims[1] = -3;
  cases[8].d.dims[1] = SF_MAX_DIM + 1;
  cases[9].d.raw = 25;
  cases[10].d.enc = 1000, cases[10].d.codec = SF_CODEC_LZ4;
  cases[11].d.trailing = 1;
  cases[12].d.enc = 23, cases[12].d.data = 23;
  cases[13].d.dtype = SF_I32, cases[13].d.codec = SF_CODEC_FP16;
  cases[14].d.layout = 7;
  cases[15].d.data = 0, cases[15].d.enc = 0, cases[15].d.rank = 8; /* dims run past the end */
  cases[16].d.dims[0] = SF_MAX_DIM, cases[16].d.dims[1] = SF_MAX_DIM;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = make_payload(p, &cases[i].d);
    if (i == 15) n = 4 + 2 + 3 + 4 + 20;
    memset(&err, 0, sizeof err);
    int rc = sf__tensors_parse(p, n, w, 4, &err);
    if (rc != cases[i].code || !strstr(err.msg, cases[i].msg))
      print_error("%s: rc %d '%s'\n", cases[i].what, rc, err.msg);
    assert_int_equal(rc, cases[i].code);
    assert_non_null(strstr(err.msg, cases[i].msg));
  }
  assert_int_equal(sf__tensors_parse(p, 3, w, 4, &err), SF_EFORMAT);
  /* a name with a NUL byte */
  size_t n = make_payload(p, &ok);
  p[7] = 0;
  assert_int_equal(sf__tensors_parse(p, n, w, 4, &err), SF_EFORMAT);
}

/* Mutated tensor payloads through parse and decode: errors, never a crash or an overrun. */
static void test_fuzz_tensors(void **st) {
  (void)st;
  enum { ITER = 4000 };
  float x[700];
  int32_t iv[50];
  sf_buf enc[SF_CODEC_COUNT] = {{0}};
  for (int c = 0; c < SF_CODEC_COUNT; c++) {
    fill(x, 700, c & 1);
    for (int i = 0; i < 50; i++) iv[i] = (int32_t)next();
    sf_tensor ts[2] = {{.name = "a", .dtype = SF_F32, .rank = 3, .dims = {7, 10, 10}, .data = x},
                       {.name = "bb", .dtype = SF_I32, .rank = 1, .dims = {50}, .data = iv}};
    sf_err err = {0};
    assert_int_equal(sf__tensors_encode(&enc[c], ts, 2, c, 0, &err), 0);
  }
  uint8_t *b = sf__malloc(enc[SF_CODEC_RAW].len + 64);
  float *dst = sf__aligned_alloc(1 << 16);
  int parsed = 0, decoded = 0, rejected = 0;
  for (int it = 0; it < ITER; it++) {
    const sf_buf *src = &enc[it % SF_CODEC_COUNT];
    size_t n = src->len;
    memcpy(b, src->data, n);
    int kind = (int)(next() % 4);
    if (kind == 0) {
      for (int k = 1 + (int)(next() % 4); k > 0; k--)
        b[next() % n] ^= (uint8_t)(1u << (next() % 8));
    } else if (kind == 1) {
      for (int k = 1 + (int)(next() % 8); k > 0; k--) b[next() % n] = (uint8_t)next();
    } else if (kind == 2) {
      n = next() % n;
    } else { /* damage the encoded data region only (past the first descriptor) */
      for (int k = 1 + (int)(next() % 16); k > 0; k--) b[40 + next() % (n - 40)] = (uint8_t)next();
    }
    sf_wire_tensor w[4];
    sf_err err = {0};
    int cnt = sf__tensors_parse(b, n, w, 4, &err);
    if (cnt < 0) {
      rejected++;
      assert_true(err.msg[0] != 0);
      continue;
    }
    parsed++;
    for (int i = 0; i < cnt; i++) {
      if (w[i].raw_bytes > (1 << 16)) continue;
      int rc = sf__tensor_decode(&w[i], dst, (size_t)w[i].raw_bytes, &err);
      if (rc == 0)
        decoded++;
      else
        assert_true(rc == SF_EFORMAT && err.msg[0]);
    }
  }
  print_message("tensor fuzz: %d rejected by parse, %d parsed, %d tensors decoded\n", rejected,
                parsed, decoded);
  assert_true(rejected > 0 && parsed > 0);
  free(b);
  free(dst);
  for (int c = 0; c < SF_CODEC_COUNT; c++) sf__buf_deinit(&enc[c]);
}

/* The zfp decoder's safety rests on this: with maxbits = 256 per 4-float block (what codec.c sets),
 * decoding any bit pattern reads at most blocks * 32 bytes (+ read-ahead). Check it on hostile
 * streams (all ones, random) decoded from a buffer far larger than the bound. */
static void test_zfp_read_bound(void **st) {
  (void)st;
  size_t sizes[] = {1, 3, 4, 5, 100, 4097, 16384};
  float *dst = sf__aligned_alloc(16384 * 4);
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    size_t m = sizes[si], blocks = (m + 3) / 4, cap = blocks * 32 * 4 + 64;
    uint8_t *buf = sf__aligned_alloc(cap);
    for (int pat = 0; pat < 4; pat++) {
      for (size_t i = 0; i < cap; i++) buf[i] = pat == 0 ? 0xff : (uint8_t)next();
      for (int minexp = -200; minexp <= 100; minexp += 100) {
        zfp_stream *zs = zfp_stream_open(NULL);
        bitstream *bs = stream_open(buf, cap);
        assert_true(zfp_stream_set_params(zs, ZFP_MIN_BITS, 256, ZFP_MAX_PREC, minexp));
        zfp_stream_set_bit_stream(zs, bs);
        zfp_stream_rewind(zs);
        zfp_field *f = zfp_field_1d(dst, zfp_type_float, m);
        size_t used = zfp_decompress(zs, f);
        assert_true(used <= blocks * 32 + 8);
        zfp_field_free(f);
        stream_close(bs);
        zfp_stream_close(zs);
      }
    }
    free(buf);
  }
  free(dst);
}

static void test_codec_names_and_ratio(void **st) {
  (void)st;
  for (int c = 0; c < SF_CODEC_COUNT; c++) assert_int_equal(sf__codec_parse(sf__codec_name(c)), c);
  assert_int_equal(sf__codec_parse("gzip"), -1);
  assert_int_equal(sf__codec_parse(NULL), -1);
  assert_string_equal(sf__codec_name(9), "unknown");
  assert_true(sf__codec_lossless(SF_CODEC_LZ4) && !sf__codec_lossless(SF_CODEC_ZFP));
  assert_string_equal(sf__frame_type_name(SF_FR_AUTH_OK), "auth_ok");
  assert_string_equal(sf__frame_type_name(0), "unknown");
  float x[4096];
  for (int i = 0; i < 4096; i++) x[i] = sinf((float)i * 0.01f); /* smooth */
  assert_true(sf__codec_ratio(SF_CODEC_RAW, x, 4096, 0) == 1.0);
  assert_true(fabs(sf__codec_ratio(SF_CODEC_FP16, x, 4096, 0) - 0.5) < 1e-9);
  double z3 = sf__codec_ratio(SF_CODEC_ZFP, x, 4096, 1e-3),
         z1 = sf__codec_ratio(SF_CODEC_ZFP, x, 4096, 1e-1);
  print_message("zfp ratio on a smooth signal: %.3f at 1e-3, %.3f at 1e-1\n", z3, z1);
  assert_true(z3 < 0.5 && z1 < z3);
  memset(x, 0, sizeof x);
  assert_true(sf__codec_ratio(SF_CODEC_LZ4, x, 4096, 0) < 0.05);
  assert_true(sf__codec_ratio(SF_CODEC_LZ4, x, 0, 0) == 1.0);
}

/* ---- authentication ------------------------------------------------------------------------- */

typedef struct auth_srv {
  sf_conn *c;
  const sf_secret *s;
  char role[80];
  int rc;
  sf_err err;
} auth_srv;

static void *auth_server_thread(void *arg) {
  auth_srv *a = arg;
  a->rc = sf__auth_server(a->c, a->s, 3000, a->role, sizeof a->role, &a->err);
  return NULL;
}

static void secret_of(sf_secret *s, uint8_t seed) {
  memset(s, 0, sizeof *s);
  s->len = 32;
  for (int i = 0; i < 32; i++) s->key[i] = (uint8_t)(seed * 31 + i);
}

/* Run the exchange over a fresh pair; returns the client's code, server result in *srv. */
static int auth_run(const sf_secret *ks, const sf_secret *kc, const char *role, auth_srv *srv,
                    sf_err *cerr) {
  sf_conn *a, *b;
  conn_pair(&a, &b);
  *srv = (auth_srv){.c = a, .s = ks, .rc = 1};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, auth_server_thread, srv), 0);
  int rc = sf__auth_client(b, kc, role, 3000, cerr);
  if (rc < 0) sf__conn_shutdown(b);
  pthread_join(th, NULL);
  if (rc == 0 && srv->rc == 0) { /* the link is usable afterwards */
    sf_frame f = {0};
    assert_int_equal(sf__frame_send(b, &(sf_frame_hdr){.type = SF_FR_BYE}, "x", 1, cerr), 0);
    assert_int_equal(sf__frame_recv(a, &f, 16, 1000, cerr), 0);
    assert_int_equal(f.hdr.type, SF_FR_BYE);
    sf__frame_deinit(&f);
  }
  sf__conn_free(a);
  sf__conn_free(b);
  return rc;
}

static void test_auth(void **st) {
  (void)st;
  sf_secret k1, k2;
  secret_of(&k1, 1);
  secret_of(&k2, 2);
  auth_srv srv;
  sf_err err = {0};
  assert_int_equal(auth_run(&k1, &k1, "gateway", &srv, &err), 0);
  assert_int_equal(srv.rc, 0);
  assert_string_equal(srv.role, "gateway");
  assert_int_equal(auth_run(&k2, &k2, "worker 3", &srv, &err), 0);
  assert_string_equal(srv.role, "worker 3");
  /* wrong secret: both sides fail and say so */
  memset(&err, 0, sizeof err);
  assert_int_equal(auth_run(&k1, &k2, "controller", &srv, &err), SF_EINVAL);
  assert_true(srv.rc < 0);
  assert_non_null(strstr(err.msg, "authentication failed"));
  assert_non_null(strstr(srv.err.msg, "authentication failed"));
  assert_non_null(strstr(srv.err.msg, "controller"));
  /* a key that differs in length only */
  sf_secret k3 = k1;
  k3.len = 31;
  assert_true(auth_run(&k1, &k3, "gateway", &srv, &err) < 0);
  assert_true(srv.rc < 0);
  /* bad roles are refused by the client before anything is sent */
  char longrole[80];
  memset(longrole, 'r', 79);
  longrole[79] = 0;
  sf_conn *a, *b;
  conn_pair(&a, &b);
  assert_int_equal(sf__auth_client(b, &k1, longrole, 100, &err), SF_EINVAL);
  assert_int_equal(sf__auth_client(b, &k1, "", 100, &err), SF_EINVAL);
  assert_int_equal(sf__auth_client(b, &k1, "tab\there", 100, &err), SF_EINVAL);
  sf__conn_free(a);
  sf__conn_free(b);
}

/* The client side is raw bytes: garbage, the wrong frame, a malformed AUTH, or silence. */
static void test_auth_garbage(void **st) {
  (void)st;
  sf_secret k;
  secret_of(&k, 5);
  for (int kind = 0; kind < 5; kind++) {
    int wfd;
    sf_conn *c = raw_pair(&wfd);
    auth_srv srv = {.c = c, .s = &k, .rc = 1};
    uint8_t b[SF_FRAME_HDR_BYTES + 200];
    size_t n = 0;
    if (kind == 0) {
      n = 100;
      for (size_t i = 0; i < n; i++) b[i] = (uint8_t)next();
    } else if (kind == 1) {
      n = build_frame(b, SF_FR_INFER, 1, "data", 4);
    } else if (kind == 2) {
      uint8_t pl[64] = {0};
      n = build_frame(b, SF_FR_AUTH, 0, pl, 64); /* no role */
    } else if (kind == 3) {
      uint8_t pl[70] = {0};
      memcpy(pl + 64, "x\x01yzzz", 6); /* control byte in the role */
      n = build_frame(b, SF_FR_AUTH, 0, pl, 70);
    }
    if (n) write_all(wfd, b, n);
    double t0 = sf__now();
    if (kind == 4)
      srv.rc = sf__auth_server(c, &k, 200, srv.role, sizeof srv.role, &srv.err);
    else
      auth_server_thread(&srv);
    assert_true(srv.rc < 0);
    assert_non_null(strstr(srv.err.msg, "authentication failed"));
    if (kind == 4) {
      assert_non_null(strstr(srv.err.msg, "timed out"));
      assert_true(sf__now() - t0 < 2.0);
    }
    close(wfd);
    sf__conn_free(c);
  }
  /* a server that answers the challenge with garbage fails the client */
  int wfd;
  sf_conn *c = raw_pair(&wfd);
  uint8_t b[SF_FRAME_HDR_BYTES + 32], nonce[32] = {1};
  size_t n = build_frame(b, SF_FR_CHALLENGE, 0, nonce, 32);
  write_all(wfd, b, n);
  n = build_frame(b, SF_FR_AUTH_OK, 0, nonce, 32); /* a proof without the secret */
  write_all(wfd, b, n);
  sf_err err = {0};
  assert_int_equal(sf__auth_client(c, &k, "gateway", 1000, &err), SF_EINVAL);
  assert_non_null(strstr(err.msg, "authentication failed"));
  close(wfd);
  sf__conn_free(c);
}

/* ---- pacing --------------------------------------------------------------------------------- */

typedef struct drain {
  sf_conn *c;
  int rc;
  uint64_t len;
} drain;

static void *drain_thread(void *arg) {
  drain *d = arg;
  sf_frame f = {0};
  sf_err err = {0};
  d->rc = sf__frame_recv(d->c, &f, SF_FRAME_MAX_PAYLOAD, 10000, &err);
  d->len = f.hdr.payload_len;
  sf__frame_deinit(&f);
  return NULL;
}

static void test_pacing(void **st) {
  (void)st;
  sf_conn *cli, *srv;
  tcp_pair(&cli, &srv);
  size_t n = 2000000;
  uint8_t *p = sf__calloc(n, 1);
  drain d = {.c = srv};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, drain_thread, &d), 0);
  sf__conn_set_rate(cli, 8e6);
  sf_err err = {0};
  double t0 = sf__now();
  assert_int_equal(sf__frame_send(cli, &(sf_frame_hdr){.type = SF_FR_INFER}, p, n, &err), 0);
  pthread_join(th, NULL);
  double dt = sf__now() - t0;
  print_message("2 MB at 8 MB/s took %.3f s\n", dt);
  assert_int_equal(d.rc, 0);
  assert_true(d.len == n);
  assert_true(dt >= 0.15); /* loose lower bound only */
  assert_true(sf__conn_bytes_out(cli) == n + SF_FRAME_HDR_BYTES);
  /* unpaced again: a small write goes out at once */
  sf__conn_set_rate(cli, 0);
  assert_int_equal(pthread_create(&th, NULL, drain_thread, &d), 0);
  assert_int_equal(sf__frame_send(cli, &(sf_frame_hdr){.type = SF_FR_INFER}, p, 1000, &err), 0);
  pthread_join(th, NULL);
  assert_int_equal(d.rc, 0);
  free(p);
  sf__conn_free(cli);
  sf__conn_free(srv);
}

/* ---- secret files --------------------------------------------------------------------------- */

static void put_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_secret_files(void **st) {
  (void)st;
  char dir[] = "/tmp/sf_unit_net_XXXXXX", path[256];
  assert_non_null(mkdtemp(dir));
  sf_secret s;
  sf_err err = {0};
  snprintf(path, sizeof path, "%s/key", dir);
  assert_int_equal(sf__secret_generate(path, &err), 0);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  assert_true(sb.st_size == 65);
  assert_int_equal(sf__secret_load(&s, path, &err), 0);
  assert_true(s.len == 32);
  assert_int_equal(sf__secret_generate(path, &err), SF_EINVAL); /* never overwrites */
  assert_non_null(strstr(err.msg, "exists"));
  struct {
    const char *text, *msg;
  } bad[] = {{"0123456789abcdef0123456789abcdeX\n", "offset 31"},
             {"0123456789abcdef\n", "16 hex digits"},
             {"0123456789abcdef0123456789abcdef0\n", "odd"},
             {"", "empty"},
             {"0123456789abcdef0123456789abcdef\n\n", "offset 32"},
             {" 0123456789abcdef0123456789abcdef", "offset 0"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(path, sizeof path, "%s/bad%zu", dir, i);
    put_file(path, bad[i].text);
    memset(&err, 0, sizeof err);
    assert_int_equal(sf__secret_load(&s, path, &err), SF_EFORMAT);
    if (!strstr(err.msg, bad[i].msg)) print_error("'%s': %s\n", bad[i].text, err.msg);
    assert_non_null(strstr(err.msg, bad[i].msg));
    assert_non_null(strstr(err.msg, path));
    unlink(path);
  }
  snprintf(path, sizeof path, "%s/crlf", dir);
  put_file(path, "00112233445566778899AABBCCDDEEFF\r\n");
  assert_int_equal(sf__secret_load(&s, path, &err), 0);
  assert_true(s.len == 16 && s.key[15] == 0xff);
  unlink(path);
  snprintf(path, sizeof path, "%s/missing", dir);
  assert_int_equal(sf__secret_load(&s, path, &err), SF_EIO);
  assert_non_null(strstr(err.msg, "missing"));
  assert_non_null(strstr(err.msg, "cannot open"));
  snprintf(path, sizeof path, "%s/key", dir);
  unlink(path);
  rmdir(dir);
  /* sha256 + hex */
  uint8_t d[32];
  char hex[65];
  sf__sha256("abc", 3, d);
  sf__hex(d, 32, hex);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32c),
      cmocka_unit_test(test_frame_socketpair),
      cmocka_unit_test(test_frame_tcp),
      cmocka_unit_test(test_listen_connect_errors),
      cmocka_unit_test(test_frame_corruption),
      cmocka_unit_test(test_frame_truncated),
      cmocka_unit_test(test_frame_timeout_and_shutdown),
      cmocka_unit_test(test_shutdown_wakes_reader),
      cmocka_unit_test(test_fuzz_frames),
      cmocka_unit_test(test_codec_round_trips),
      cmocka_unit_test(test_fp16_conversion),
      cmocka_unit_test(test_int64_and_zero_size),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_fuzz_tensors),
      cmocka_unit_test(test_zfp_read_bound),
      cmocka_unit_test(test_codec_names_and_ratio),
      cmocka_unit_test(test_auth),
      cmocka_unit_test(test_auth_garbage),
      cmocka_unit_test(test_pacing),
      cmocka_unit_test(test_secret_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
