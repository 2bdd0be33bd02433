/* Data plane wire layer: connections (with optional paced sends that emulate a link's bandwidth),
 * length-prefixed frames with a versioned, checksummed header, tensor payloads with per-tensor
 * codecs (raw, fp16, lz4, zfp), and HMAC-SHA256 challenge-response authentication.
 *
 * Usage sketch (client side of a link):
 *
 *     sf_conn *c = NULL;
 *     if (sf__conn_connect(&c, "127.0.0.1:7001", 5000, &err) < 0) ...
 *     if (sf__auth_client(c, &secret, "gateway", &err) < 0) ...      // before any tensor moves
 *     sf_buf b = {0};
 *     sf__tensors_encode(&b, tensors, n, SF_CODEC_LZ4, 0, &err);
 *     sf__frame_send(c, &(sf_frame_hdr){.type = SF_FR_INFER, .request_id = 42}, b.data, b.len, &err);
 *     sf_frame f = {0};
 *     sf__frame_recv(c, &f, SF_FRAME_MAX_PAYLOAD, 10000, &err);      // f.hdr, f.payload
 *     sf__frame_deinit(&f); sf__buf_deinit(&b); sf__conn_free(c);
 *
 * Every function returns 0 (or a non-negative count) on success and a negative SF_E* code with a
 * message in err on failure. A peer that sends anything malformed gets SF_EFORMAT (or SF_ELIMIT)
 * naming the field; the caller closes that connection. */
#ifndef SF_NET_H
#define SF_NET_H

#include <stddef.h>
#include <stdint.h>

#include "seifer/seifer.h"

/* ---- growable byte buffer ----------------------------------------------------------------- */
typedef struct sf_buf {
  uint8_t *data;
  size_t len, cap;
} sf_buf;
int sf__buf_reserve(sf_buf *b, size_t extra);            /* room for len+extra bytes */
int sf__buf_put(sf_buf *b, const void *p, size_t n);
void sf__buf_deinit(sf_buf *b);

/* ---- connections ---------------------------------------------------------------------------- */
typedef struct sf_conn sf_conn; /* one TCP connection (TCP_NODELAY), opaque */

/* Parse "host:port" / "[v6]:port" / ":port" (any address). */
int sf__listen(const char *addr, int backlog, int *fd_out, sf_err *err);
/* Port actually bound (after listening on port 0). */
int sf__listen_port(int fd);
/* Accept with timeout (ms, -1 = forever); returns 0 and *out, or SF_EIO / SF_ENOTFOUND on timeout. */
int sf__conn_accept(int lfd, int timeout_ms, sf_conn **out, sf_err *err);
int sf__conn_connect(sf_conn **out, const char *addr, int timeout_ms, sf_err *err);
sf_conn *sf__conn_from_fd(int fd);
void sf__conn_free(sf_conn *c);                          /* closes; NULL is a no-op */
int sf__conn_fd(const sf_conn *c);
const char *sf__conn_peer(const sf_conn *c);             /* "ip:port" for logs */
/* Pace sends to bytes_per_s (0 = unpaced): a token bucket so the connection behaves like a link of
 * that bandwidth (used by `seifer up` to emulate the cluster file's links on one machine). */
void sf__conn_set_rate(sf_conn *c, double bytes_per_s);
int sf__conn_write(sf_conn *c, const void *p, size_t n, sf_err *err);            /* all or error */
int sf__conn_read(sf_conn *c, void *p, size_t n, int timeout_ms, sf_err *err);   /* all or error */
/* Bytes sent / received so far. */
uint64_t sf__conn_bytes_out(const sf_conn *c);
uint64_t sf__conn_bytes_in(const sf_conn *c);
/* Make blocked reads/writes on this connection return SF_EIO soon (from another thread). */
void sf__conn_shutdown(sf_conn *c);

/* ---- frames --------------------------------------------------------------------------------- */
#define SF_FRAME_MAGIC 0x52464553u /* "SEFR" little-endian */
#define SF_FRAME_VERSION 1
#define SF_FRAME_HDR_BYTES 48
#define SF_FRAME_MAX_PAYLOAD ((uint64_t)1 << 30)

typedef enum sf_frame_type {
  SF_FR_CHALLENGE = 1, /* server -> client: nonce */
  SF_FR_AUTH = 2,      /* client -> server: nonce + proof + role */
  SF_FR_AUTH_OK = 3,   /* server -> client: proof of the server */
  SF_FR_INFER = 4,     /* tensors flowing down the pipeline */
  SF_FR_RESULT = 5,    /* final tensors back to the gateway */
  SF_FR_ERROR = 6,     /* UTF-8 message; request_id names the failed request (0 = connection) */
  SF_FR_HEARTBEAT = 7, /* JSON status (may be empty) */
  SF_FR_STAGE = 8,     /* stage model: 32-byte SHA-256 digest + model bytes (may be digest only) */
  SF_FR_STAGE_OK = 9,  /* JSON: loaded stage description */
  SF_FR_CONFIG = 10,   /* JSON: worker configuration (next hop, codec, link rate, ...) */
  SF_FR_DRAIN = 11,    /* stop taking work, finish what is queued */
  SF_FR_BYE = 12,
  SF_FR_PROBE = 13,      /* link probe, JSON: controller <-> worker request / result on the
                            control link; prober <-> peer start / result on a "probe" link */
  SF_FR_PROBE_DATA = 14, /* probe bytes: flags SF_PROBE_PING = echo me (RTT), else bulk */
  SF_FR_TYPE_MAX = 14
} sf_frame_type;
#define SF_PROBE_PING 1 /* SF_FR_PROBE_DATA flag */
/* Link probe limits (docs/probe.md): bulk phase length and size cap, RTT samples. */
#define SF_PROBE_DEFAULT_SECONDS 1.0
#define SF_PROBE_MIN_SECONDS 0.05
#define SF_PROBE_MAX_SECONDS 30.0
#define SF_PROBE_DEFAULT_BYTES (256.0 * 1048576)
#define SF_PROBE_MAX_BYTES (16.0 * 1073741824)
#define SF_PROBE_DEFAULT_PINGS 10

typedef struct sf_frame_hdr {
  uint16_t type;        /* sf_frame_type */
  uint16_t flags;
  uint32_t pipeline;    /* which pipeline (replicated plans) / generation */
  uint32_t stage;       /* stage index the frame is addressed to or comes from */
  uint64_t request_id;
  uint64_t payload_len; /* filled by send; checked against max by recv */
  uint32_t payload_crc; /* CRC-32C of the payload; filled by send, verified by recv */
} sf_frame_hdr;

typedef struct sf_frame {
  sf_frame_hdr hdr;
  uint8_t *payload; /* owned, capacity reused across recv calls */
  size_t cap;
} sf_frame;

/* Wire header (48 bytes, little-endian): magic u32, version u16, type u16, flags u16, reserved u16,
 * pipeline u32, stage u32, request_id u64, payload_len u64, payload_crc u32, reserved u32,
 * header_crc u32 (CRC-32C of the first 44 bytes). */
int sf__frame_send(sf_conn *c, const sf_frame_hdr *h, const void *payload, size_t len, sf_err *err);
/* Send with the payload in two parts (e.g. small prefix + big body) without copying. */
int sf__frame_send2(sf_conn *c, const sf_frame_hdr *h, const void *p1, size_t n1, const void *p2,
                    size_t n2, sf_err *err);
/* Receive one frame; payload_len above max_payload -> SF_ELIMIT; bad magic/version/type/crc ->
 * SF_EFORMAT; timeout (ms, -1 forever) -> SF_EIO with "timed out". */
int sf__frame_recv(sf_conn *c, sf_frame *f, uint64_t max_payload, int timeout_ms, sf_err *err);
void sf__frame_deinit(sf_frame *f);
uint32_t sf__crc32c(uint32_t crc, const void *p, size_t n);
const char *sf__frame_type_name(int type);

/* ---- tensor payloads and codecs ------------------------------------------------------------- */
typedef enum sf_codec_id { SF_CODEC_RAW = 0, SF_CODEC_FP16 = 1, SF_CODEC_LZ4 = 2, SF_CODEC_ZFP = 3,
                           SF_CODEC_COUNT = 4 } sf_codec_id;
/* "raw", "fp16", "lz4", "zfp" <-> id; -1 when unknown. */
int sf__codec_parse(const char *name);
const char *sf__codec_name(int id);
/* True when the codec reproduces float32 data exactly (raw, lz4). */
int sf__codec_lossless(int id);
/* Default zfp absolute error tolerance (fixed-accuracy mode) and documented fp16 relative error. */
#define SF_ZFP_DEFAULT_TOL 1e-3

/* Payload: u32 count, then per tensor: u16 name_len, name bytes, u8 dtype, u8 codec, u8 rank,
 * u8 layout, i64 dims[rank], u64 raw_bytes, u64 enc_bytes, enc bytes. fp16 and zfp apply to
 * float32 tensors only; other dtypes are sent raw (or lz4) whatever codec is asked.
 * tol: zfp accuracy (0 = SF_ZFP_DEFAULT_TOL). */
int sf__tensors_encode(sf_buf *out, const sf_tensor *ts, int n, int codec, double tol, sf_err *err);

/* A decoded descriptor; enc points into the payload (valid while the payload lives). */
typedef struct sf_wire_tensor {
  char name[256];
  int dtype, codec, rank, layout;
  int64_t dims[SF_MAX_RANK];
  uint64_t raw_bytes, enc_bytes;
  const uint8_t *enc;
} sf_wire_tensor;
#define SF_WIRE_MAX_TENSORS 256
/* Parse and validate the descriptors (count <= max, names, dtype known, rank <= SF_MAX_RANK,
 * dims >= 0 and <= SF_MAX_DIM, raw_bytes == numel*dtype size <= SF_MAX_TENSOR_BYTES, enc within
 * payload). Returns the count. */
int sf__tensors_parse(const uint8_t *p, size_t len, sf_wire_tensor *out, int max, sf_err *err);
/* Decode one tensor's data into dst (exactly raw_bytes bytes). */
int sf__tensor_decode(const sf_wire_tensor *w, void *dst, size_t dst_bytes, sf_err *err);

/* ---- authentication ------------------------------------------------------------------------- */
#define SF_SECRET_MAX 256
typedef struct sf_secret {
  uint8_t key[SF_SECRET_MAX];
  size_t len; /* >= 16 */
} sf_secret;
/* Secret file: hex text (64 hex digits written by keygen; 32..512 digits accepted), optional
 * trailing newline; anything else is refused naming the file and the offset. */
int sf__secret_load(sf_secret *s, const char *path, sf_err *err);
/* Write 32 random bytes as 64 hex digits + newline, mode 0600; refuses to overwrite. */
int sf__secret_generate(const char *path, sf_err *err);
/* Mutual challenge-response (both sides prove the secret; nonces 32 bytes from RAND_bytes;
 * proof = HMAC-SHA256(key, "seifer-auth-v1" | role | nonce_server | nonce_client), compared with
 * CRYPTO_memcmp). role names the client ("gateway", "worker", "controller", ...); the server gets
 * the client's role in role_out (may be NULL). timeout_ms bounds the whole exchange. */
int sf__auth_server(sf_conn *c, const sf_secret *s, int timeout_ms, char *role_out, size_t role_cap,
                    sf_err *err);
int sf__auth_client(sf_conn *c, const sf_secret *s, const char *role, int timeout_ms, sf_err *err);

/* SHA-256 of a buffer (stage model digests); hex is 65 bytes with the terminator. */
void sf__sha256(const void *p, size_t n, uint8_t out[32]);
void sf__hex(const uint8_t *p, size_t n, char *out);

/* ---- codec estimates, write timeout ------------------------------------------------------ */
/* Encoded / raw bytes of the codec on a float32 sample (tol for zfp, 0 = SF_ZFP_DEFAULT_TOL):
 * what sf__tensors_encode would send for such data, descriptors aside; 1.0 for an empty sample,
 * raw, or data the codec would not shrink (such data is sent raw). Estimates transfer bytes. */
double sf__codec_ratio(int codec, const float *sample, size_t n, double tol);
/* Longest a write may wait for the peer to take data before failing with SF_EIO "timed out"
 * (-1 = forever, the default). Safe from any thread. */
void sf__conn_set_write_timeout(sf_conn *c, int timeout_ms);
/* Authentication detail: each proof carries a direction byte after the label ('C' for the
 * client's, 'S' for the server's), so neither side can echo the other's; payload formats are
 * documented at the top of auth.c. */

#endif
