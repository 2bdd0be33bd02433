/* Frames: a 48-byte little-endian header (layout in net.h) protected by its own CRC-32C, then
 * payload_len bytes protected by payload_crc. The receiver checks magic, header checksum, version,
 * type, reserved fields and the size limit before reading (or allocating for) the payload. */
#include <pthread.h>
#include <string.h>

#include "net/net.h"
#include "net/net_priv.h"
#include "util/util.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/* Payloads up to this size get their whole buffer at once; larger ones grow as bytes arrive, so a
 * peer that announces a big frame and stalls does not make us allocate it. */
#define FRAME_EAGER_BYTES ((size_t)4 << 20)

/* ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) --------------------------------- */

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static int crc_hw;

/* Build the slice-by-8 tables and pick the SSE4.2 instruction when the CPU has it. */
static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
    crc_tab[0][i] = c;
  }
  for (int t = 1; t < 8; t++)
    for (int i = 0; i < 256; i++)
      crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
#if defined(__x86_64__)
  __builtin_cpu_init();
  crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

/* Slice-by-8 over the raw (non-inverted) state c. */
static uint32_t crc_sw(uint32_t c, const uint8_t *p, size_t n) {
  for (; n && ((uintptr_t)p & 7); n--) c = (c >> 8) ^ crc_tab[0][(c ^ *p++) & 0xff];
  for (; n >= 8; n -= 8, p += 8) {
    uint32_t lo = c ^ sf__ld32(p), hi = sf__ld32(p + 4);
    c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
        crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
        crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
  }
  for (; n; n--) c = (c >> 8) ^ crc_tab[0][(c ^ *p++) & 0xff];
  return c;
}

#if defined(__x86_64__)
/* The SSE4.2 crc32 instruction computes exactly this CRC, 8 bytes at a time. */
__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t c, const uint8_t *p,
                                                            size_t n) {
  for (; n && ((uintptr_t)p & 7); n--) c = _mm_crc32_u8(c, *p++);
  uint64_t c64 = c;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c64 = _mm_crc32_u64(c64, w);
  }
  c = (uint32_t)c64;
  for (; n; n--) c = _mm_crc32_u8(c, *p++);
  return c;
}
#endif

/* CRC-32C of p[0..n) continuing from crc (0 to start): crc32c(0, "123456789", 9) = 0xE3069283. */
uint32_t sf__crc32c(uint32_t crc, const void *p, size_t n) {
  pthread_once(&crc_once, crc_init);
  uint32_t c = ~crc;
#if defined(__x86_64__)
  if (crc_hw) return ~crc_sse42(c, p, n);
#endif
  return ~crc_sw(c, p, n);
}

/* ---- names ---------------------------------------------------------------------------------- */

const char *sf__frame_type_name(int type) {
  static const char *const names[] = {NULL,     "challenge", "auth",      "auth_ok", "infer",
                                      "result", "error",     "heartbeat", "stage",   "stage_ok",
                                      "config", "drain",     "bye",       "probe",   "probe_data"};
  if (type < 1 || type > SF_FR_TYPE_MAX) return "unknown";
  return names[type];
}

/* ---- sending -------------------------------------------------------------------------------- */

/* Serialise h (with the given payload length and checksum) into the 48-byte wire header. */
static void hdr_pack(uint8_t b[SF_FRAME_HDR_BYTES], const sf_frame_hdr *h, uint64_t len,
                     uint32_t pcrc) {
  memset(b, 0, SF_FRAME_HDR_BYTES);
  sf__st32(b + 0, SF_FRAME_MAGIC);
  sf__st16(b + 4, SF_FRAME_VERSION);
  sf__st16(b + 6, h->type);
  sf__st16(b + 8, h->flags);
  sf__st32(b + 12, h->pipeline);
  sf__st32(b + 16, h->stage);
  sf__st64(b + 20, h->request_id);
  sf__st64(b + 28, len);
  sf__st32(b + 36, pcrc);
  sf__st32(b + 44, sf__crc32c(0, b, 44));
}

/* Send one frame whose payload is p1 followed by p2 (either may be empty); h->payload_len and
 * h->payload_crc are computed here. Header and payload go out in one vectored write. */
int sf__frame_send2(sf_conn *c, const sf_frame_hdr *h, const void *p1, size_t n1, const void *p2,
                    size_t n2, sf_err *err) {
  if (h->type < 1 || h->type > SF_FR_TYPE_MAX)
    return sf__errf(err, SF_EINVAL, "frame send: unknown frame type %u", (unsigned)h->type);
  uint32_t pcrc = sf__crc32c(sf__crc32c(0, p1, n1), p2, n2);
  uint8_t hb[SF_FRAME_HDR_BYTES];
  hdr_pack(hb, h, (uint64_t)n1 + n2, pcrc);
  sf_iov v[3] = {{hb, sizeof hb}, {p1, n1}, {p2, n2}};
  int rc = sf__conn_writev(c, v, 3, err);
  if (rc < 0) return sf__errctx(err, rc, "sending %s frame", sf__frame_type_name(h->type));
  return 0;
}

int sf__frame_send(sf_conn *c, const sf_frame_hdr *h, const void *payload, size_t len,
                   sf_err *err) {
  return sf__frame_send2(c, h, payload, len, NULL, 0, err);
}

/* ---- receiving ------------------------------------------------------------------------------ */

/* Validate a wire header and unpack it into h. SF_EFORMAT / SF_ELIMIT naming the field. */
static int hdr_unpack(const uint8_t b[SF_FRAME_HDR_BYTES], uint64_t max_payload, sf_frame_hdr *h,
                      const char *peer, sf_err *err) {
  uint32_t magic = sf__ld32(b);
  if (magic != SF_FRAME_MAGIC)
    return sf__errf(err, SF_EFORMAT, "%s: bad frame magic 0x%08x (not a seifer data-plane peer?)",
                    peer, magic);
  uint32_t hcrc = sf__ld32(b + 44), want = sf__crc32c(0, b, 44);
  if (hcrc != want)
    return sf__errf(err, SF_EFORMAT, "%s: frame header checksum mismatch (0x%08x, expected 0x%08x)",
                    peer, hcrc, want);
  unsigned ver = sf__ld16(b + 4), type = sf__ld16(b + 6);
  if (ver != SF_FRAME_VERSION)
    return sf__errf(err, SF_EFORMAT, "%s: unsupported frame version %u (this build speaks %d)",
                    peer, ver, SF_FRAME_VERSION);
  if (type < 1 || type > SF_FR_TYPE_MAX)
    return sf__errf(err, SF_EFORMAT, "%s: unknown frame type %u", peer, type);
  if (sf__ld16(b + 10) || sf__ld32(b + 40))
    return sf__errf(err, SF_EFORMAT, "%s: reserved frame header fields are not zero", peer);
  uint64_t len = sf__ld64(b + 28);
  if (len > max_payload || len > SIZE_MAX)
    return sf__errf(err, SF_ELIMIT, "%s: %s frame payload of %llu bytes exceeds the limit of %llu",
                    peer, sf__frame_type_name((int)type), (unsigned long long)len,
                    (unsigned long long)max_payload);
  *h = (sf_frame_hdr){.type = (uint16_t)type,
                      .flags = sf__ld16(b + 8),
                      .pipeline = sf__ld32(b + 12),
                      .stage = sf__ld32(b + 16),
                      .request_id = sf__ld64(b + 20),
                      .payload_len = len,
                      .payload_crc = sf__ld32(b + 36)};
  return 0;
}

/* Read len payload bytes into f->payload, growing it (never shrinking) as data arrives. */
static int payload_read(sf_conn *c, sf_frame *f, size_t len, int idle_ms, double deadline,
                        sf_err *err) {
  size_t got = 0;
  while (got < len) {
    if (got == f->cap || !f->payload) {
      size_t want = f->cap * 2 > FRAME_EAGER_BYTES ? f->cap * 2 : FRAME_EAGER_BYTES;
      if (want > len) want = len;
      if (want < f->cap) want = f->cap;
      uint8_t *p = sf__realloc(f->payload, want);
      if (!p)
        return sf__errf(err, SF_ENOMEM, "%s: cannot allocate %zu bytes for a frame payload",
                        sf__conn_peer(c), want);
      f->payload = p;
      f->cap = want;
    }
    size_t upto = len < f->cap ? len : f->cap;
    int rc = sf__conn_read_until(c, f->payload + got, upto - got, idle_ms, deadline, err);
    if (rc < 0) return rc;
    got = upto;
  }
  return 0;
}

/* Receive one frame: header, checks, payload, payload checksum. */
static int frame_recv(sf_conn *c, sf_frame *f, uint64_t max_payload, int idle_ms, double deadline,
                      sf_err *err) {
  uint8_t b[SF_FRAME_HDR_BYTES];
  sf_frame_hdr h;
  int rc = sf__conn_read_until(c, b, sizeof b, idle_ms, deadline, err);
  if (rc < 0) return rc;
  if ((rc = hdr_unpack(b, max_payload, &h, sf__conn_peer(c), err)) < 0) return rc;
  if ((rc = payload_read(c, f, (size_t)h.payload_len, idle_ms, deadline, err)) < 0) return rc;
  uint32_t pcrc = sf__crc32c(0, f->payload, (size_t)h.payload_len);
  if (pcrc != h.payload_crc)
    return sf__errf(err, SF_EFORMAT, "%s: %s frame payload checksum mismatch (%llu bytes)",
                    sf__conn_peer(c), sf__frame_type_name(h.type),
                    (unsigned long long)h.payload_len);
  f->hdr = h;
  return 0;
}

int sf__frame_recv(sf_conn *c, sf_frame *f, uint64_t max_payload, int timeout_ms, sf_err *err) {
  return frame_recv(c, f, max_payload, timeout_ms, 0, err);
}

int sf__frame_recv_until(sf_conn *c, sf_frame *f, uint64_t max_payload, double deadline,
                         sf_err *err) {
  return frame_recv(c, f, max_payload, -1, deadline, err);
}

/* Free the payload buffer; the frame is empty and reusable afterwards. */
void sf__frame_deinit(sf_frame *f) {
  if (!f) return;
  free(f->payload);
  memset(f, 0, sizeof *f);
}
