/* Link authentication: a cluster secret shared by every node, proven in both directions with an
 * HMAC-SHA256 challenge-response before any tensor moves. Also the secret file and SHA-256/hex.
 *
 * Exchange (frame payloads):
 *   server -> client  SF_FR_CHALLENGE  nonce_s (32 bytes)
 *   client -> server  SF_FR_AUTH       nonce_c (32) | proof_c (32) | role (1..64 bytes, 0x20..0x7e)
 *   server -> client  SF_FR_AUTH_OK    proof_s (32)
 * with proof_X = HMAC-SHA256(key, "seifer-auth-v1" | X | role | nonce_s | nonce_c) where X is the
 * single byte 'C' for the client's proof and 'S' for the server's (so neither side can answer
 * with the other's proof). A side that rejects the other sends SF_FR_ERROR with the reason
 * (request_id 0) and fails with SF_EINVAL "authentication failed: ...". Nothing is logged here. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/net.h"
#include "net/net_priv.h"
#include "util/util.h"

#define NONCE 32
#define PROOF 32
#define ROLE_MAX 64
#define AUTH_LABEL "seifer-auth-v1"
#define SECRET_FILE_MAX 4096

/* ---- SHA-256 and hex ------------------------------------------------------------------------ */

void sf__sha256(const void *p, size_t n, uint8_t out[32]) {
  unsigned len = 32;
  if (!EVP_Digest(p, n, out, &len, EVP_sha256(), NULL)) memset(out, 0, 32);
}

/* Lower-case hex of n bytes into out (2n+1 bytes with the terminator). */
void sf__hex(const uint8_t *p, size_t n, char *out) {
  static const char dig[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = dig[p[i] >> 4];
    out[2 * i + 1] = dig[p[i] & 15];
  }
  out[2 * n] = 0;
}

/* ---- secret file ---------------------------------------------------------------------------- */

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decode the hex text of a secret file (digits, then an optional "\n" or "\r\n"). */
static int secret_parse(sf_secret *s, const char *t, size_t len, const char *path, sf_err *err) {
  size_t nd = 0;
  while (nd < len && hexval((unsigned char)t[nd]) >= 0) nd++;
  size_t rest = len - nd;
  if (!(rest == 0 || (rest == 1 && t[nd] == '\n') || (rest == 2 && !memcmp(t + nd, "\r\n", 2))))
    return sf__errf(err, SF_EFORMAT,
                    "%s: not a hex digit at offset %zu (a secret file holds hex "
                    "digits and an optional newline)",
                    path, nd);
  if (nd % 2) return sf__errf(err, SF_EFORMAT, "%s: odd number of hex digits (%zu)", path, nd);
  if (nd < 32 || nd > 2 * SF_SECRET_MAX)
    return sf__errf(err, SF_EFORMAT,
                    "%s: secret of %zu hex digits (need 32..%d; "
                    "`seifer keygen` writes 64)",
                    path, nd, 2 * SF_SECRET_MAX);
  for (size_t i = 0; i < nd / 2; i++)
    s->key[i] =
        (uint8_t)(hexval((unsigned char)t[2 * i]) << 4 | hexval((unsigned char)t[2 * i + 1]));
  s->len = nd / 2;
  return 0;
}

int sf__secret_load(sf_secret *s, const char *path, sf_err *err) {
  void *data = NULL;
  size_t len = 0;
  memset(s, 0, sizeof *s);
  int rc = sf__read_file(path, SECRET_FILE_MAX, &data, &len, err);
  if (rc < 0) return rc;
  if (len == 0)
    rc = sf__errf(err, SF_EFORMAT, "%s: empty secret file", path);
  else
    rc = secret_parse(s, data, len, path, err);
  OPENSSL_cleanse(data, len);
  free(data);
  if (rc < 0) OPENSSL_cleanse(s, sizeof *s);
  return rc;
}

int sf__secret_generate(const char *path, sf_err *err) {
  uint8_t key[32];
  char text[66];
  if (RAND_bytes(key, sizeof key) != 1)
    return sf__errf(err, SF_EINTERNAL, "%s: no random bytes from the system", path);
  sf__hex(key, sizeof key, text);
  text[64] = '\n';
  OPENSSL_cleanse(key, sizeof key);
  int rc = 0, fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    rc = errno == EEXIST
             ? sf__errf(err, SF_EINVAL, "%s: already exists (refusing to overwrite a secret)", path)
             : sf__errf(err, SF_EIO, "%s: cannot create: %s", path, strerror(errno));
    goto out;
  }
  size_t done = 0;
  while (done < 65) {
    ssize_t w = write(fd, text + done, 65 - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    done += (size_t)w;
  }
  if (done != 65 || fchmod(fd, 0600) < 0 || fsync(fd) < 0) {
    rc = sf__errf(err, SF_EIO, "%s: write failed: %s", path, strerror(errno));
    unlink(path);
  }
  close(fd);
out:
  OPENSSL_cleanse(text, sizeof text);
  return rc;
}

/* ---- challenge-response --------------------------------------------------------------------- */

/* proof = HMAC-SHA256(key, label | dir | role | ns | nc). */
static void proof(const sf_secret *s, char dir, const char *role, size_t rl, const uint8_t *ns,
                  const uint8_t *nc, uint8_t out[PROOF]) {
  uint8_t msg[sizeof AUTH_LABEL + ROLE_MAX + 2 * NONCE];
  size_t n = sizeof AUTH_LABEL - 1;
  memcpy(msg, AUTH_LABEL, n);
  msg[n++] = (uint8_t)dir;
  memcpy(msg + n, role, rl);
  n += rl;
  memcpy(msg + n, ns, NONCE);
  memcpy(msg + n + NONCE, nc, NONCE);
  unsigned ol = PROOF;
  if (!HMAC(EVP_sha256(), s->key, (int)s->len, msg, n + 2 * NONCE, out, &ol)) memset(out, 0, PROOF);
}

/* A role is 1..64 printable ASCII bytes. */
static int role_ok(const char *r, size_t n) {
  if (n == 0 || n > ROLE_MAX) return 0;
  for (size_t i = 0; i < n; i++)
    if (r[i] < 0x20 || r[i] > 0x7e) return 0;
  return 1;
}

static double deadline_of(int timeout_ms) {
  return timeout_ms >= 0 ? sf__now() + timeout_ms / 1000.0 + 1e-9 : 0;
}

/* Tell the peer why it is refused (best effort: the connection is closed by the caller anyway). */
static void send_refusal(sf_conn *c, const char *why) {
  sf_frame_hdr h = {.type = SF_FR_ERROR};
  sf__frame_send(c, &h, why, strlen(why), NULL);
}

/* Fail because the peer sent an ERROR frame: quote its (sanitised) message. */
static int peer_refused(const sf_frame *f, const char *who, sf_err *err) {
  char msg[256];
  size_t n = f->hdr.payload_len < sizeof msg - 1 ? (size_t)f->hdr.payload_len : sizeof msg - 1;
  for (size_t i = 0; i < n; i++)
    msg[i] = (f->payload[i] >= 0x20 && f->payload[i] < 0x7f) ? (char)f->payload[i] : '?';
  msg[n] = 0;
  return sf__errf(err, SF_EINVAL, "authentication failed: %s refused: %s", who, msg);
}

static int secret_ok(const sf_secret *s, sf_err *err) {
  if (!s || s->len < 16 || s->len > SF_SECRET_MAX)
    return sf__errf(err, SF_EINVAL, "authentication: no usable cluster secret");
  return 0;
}

/* Server side, after sending the challenge: receive and check the client's AUTH frame. */
static int server_check(sf_conn *c, const sf_secret *s, const uint8_t *ns, sf_frame *f,
                        double deadline, sf_err *err) {
  int rc = sf__frame_recv_until(c, f, 2 * NONCE + 256 + ROLE_MAX, deadline, err);
  if (rc < 0) return sf__errctx(err, rc, "authentication failed");
  if (f->hdr.type == SF_FR_ERROR) return peer_refused(f, "client", err);
  if (f->hdr.type != SF_FR_AUTH) {
    send_refusal(c, "authentication required");
    return sf__errf(err, SF_EFORMAT, "authentication failed: %s sent a %s frame instead of auth",
                    sf__conn_peer(c), sf__frame_type_name(f->hdr.type));
  }
  size_t rl = f->hdr.payload_len > 2 * NONCE ? (size_t)f->hdr.payload_len - 2 * NONCE : 0;
  const char *role = rl ? (const char *)f->payload + 2 * NONCE : "";
  if (!role_ok(role, rl)) {
    send_refusal(c, "authentication failed: malformed auth frame");
    return sf__errf(err, SF_EFORMAT,
                    "authentication failed: %s sent a malformed auth frame "
                    "(%llu bytes; role must be 1..%d printable characters)",
                    sf__conn_peer(c), (unsigned long long)f->hdr.payload_len, ROLE_MAX);
  }
  uint8_t want[PROOF];
  proof(s, 'C', role, rl, ns, f->payload, want);
  int ok = CRYPTO_memcmp(want, f->payload + NONCE, PROOF) == 0;
  OPENSSL_cleanse(want, sizeof want);
  if (!ok) {
    send_refusal(c, "authentication failed: wrong cluster secret");
    return sf__errf(err, SF_EINVAL,
                    "authentication failed: %s (role '%.*s') does not prove the "
                    "cluster secret",
                    sf__conn_peer(c), (int)rl, role);
  }
  return 0;
}

int sf__auth_server(sf_conn *c, const sf_secret *s, int timeout_ms, char *role_out, size_t role_cap,
                    sf_err *err) {
  double deadline = deadline_of(timeout_ms);
  uint8_t ns[NONCE], ps[PROOF];
  sf_frame f = {0};
  int rc = secret_ok(s, err);
  if (rc < 0) return rc;
  if (RAND_bytes(ns, NONCE) != 1)
    return sf__errf(err, SF_EINTERNAL, "authentication: no random bytes from the system");
  rc = sf__frame_send(c, &(sf_frame_hdr){.type = SF_FR_CHALLENGE}, ns, NONCE, err);
  if (rc < 0) goto fail_ctx;
  if ((rc = server_check(c, s, ns, &f, deadline, err)) < 0) goto out;
  size_t rl = (size_t)f.hdr.payload_len - 2 * NONCE;
  const char *role = (const char *)f.payload + 2 * NONCE;
  proof(s, 'S', role, rl, ns, f.payload, ps);
  rc = sf__frame_send(c, &(sf_frame_hdr){.type = SF_FR_AUTH_OK}, ps, PROOF, err);
  if (rc < 0) goto fail_ctx;
  if (role_out && role_cap) {
    size_t n = rl < role_cap - 1 ? rl : role_cap - 1;
    memcpy(role_out, role, n);
    role_out[n] = 0;
  }
  goto out;
fail_ctx:
  sf__errctx(err, rc, "authentication failed");
out:
  sf__frame_deinit(&f);
  return rc;
}

/* Client side: receive a frame that must be `type` with exactly `len` payload bytes. */
static int client_expect(sf_conn *c, sf_frame *f, int type, size_t len, double deadline,
                         sf_err *err) {
  int rc = sf__frame_recv_until(c, f, 4096, deadline, err);
  if (rc < 0) return sf__errctx(err, rc, "authentication failed");
  if (f->hdr.type == SF_FR_ERROR) return peer_refused(f, "server", err);
  if (f->hdr.type != type || f->hdr.payload_len != len)
    return sf__errf(err, SF_EFORMAT,
                    "authentication failed: %s sent a %s frame of %llu bytes, "
                    "expected %s",
                    sf__conn_peer(c), sf__frame_type_name(f->hdr.type),
                    (unsigned long long)f->hdr.payload_len, sf__frame_type_name(type));
  return 0;
}

int sf__auth_client(sf_conn *c, const sf_secret *s, const char *role, int timeout_ms, sf_err *err) {
  double deadline = deadline_of(timeout_ms);
  uint8_t ns[NONCE], msg[2 * NONCE + ROLE_MAX], ps[PROOF];
  sf_frame f = {0};
  size_t rl = role ? strlen(role) : 0;
  int rc = secret_ok(s, err);
  if (rc < 0) return rc;
  if (!role_ok(role, rl))
    return sf__errf(err, SF_EINVAL, "authentication: role must be 1..%d printable characters",
                    ROLE_MAX);
  if ((rc = client_expect(c, &f, SF_FR_CHALLENGE, NONCE, deadline, err)) < 0) goto out;
  memcpy(ns, f.payload, NONCE);
  if (RAND_bytes(msg, NONCE) != 1) {
    rc = sf__errf(err, SF_EINTERNAL, "authentication: no random bytes from the system");
    goto out;
  }
  proof(s, 'C', role, rl, ns, msg, msg + NONCE);
  memcpy(msg + 2 * NONCE, role, rl);
  rc = sf__frame_send(c, &(sf_frame_hdr){.type = SF_FR_AUTH}, msg, 2 * NONCE + rl, err);
  if (rc < 0) {
    sf__errctx(err, rc, "authentication failed");
    goto out;
  }
  if ((rc = client_expect(c, &f, SF_FR_AUTH_OK, PROOF, deadline, err)) < 0) goto out;
  proof(s, 'S', role, rl, ns, msg, ps);
  if (CRYPTO_memcmp(ps, f.payload, PROOF) != 0) {
    send_refusal(c, "authentication failed: server proof mismatch");
    rc = sf__errf(err, SF_EINVAL,
                  "authentication failed: server %s does not prove the cluster "
                  "secret",
                  sf__conn_peer(c));
  }
out:
  OPENSSL_cleanse(ps, sizeof ps);
  sf__frame_deinit(&f);
  return rc;
}
