/* TCP connections: address parsing, listen/accept/connect with timeouts, all-or-error reads and
 * writes over a non-blocking socket driven by poll(), paced sends (a token bucket), byte counters.
 *
 * Threads: one reader and one writer may use a connection at the same time. The read path touches
 * only the fd and atomic counters; the pacing state is the writer's alone; the rate, the write
 * timeout and the shutdown flag are atomics that any thread may set. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "net/net.h"
#include "net/net_priv.h"
#include "util/util.h"

#define PACE_MIN_BURST 16384.0 /* bytes a paced link may send back to back ... */
#define PACE_BURST_S 0.001     /* ... or this many seconds' worth, whichever is larger */
#define PACE_SLEEP_SLICE 0.05  /* longest single sleep, so a shutdown is noticed soon */

struct sf_conn {
  int fd;
  char peer[80];
  _Atomic uint64_t bytes_in, bytes_out;
  _Atomic uint64_t rate_bits; /* double bytes/s, as bits (0 = unpaced) */
  _Atomic int write_timeout_ms;
  _Atomic int shut;
  /* writer-only pacing state */
  double tat;     /* when the emulated link will have sent everything so far (sf__now() s) */
  size_t prepaid; /* bytes already paced but not yet accepted by the kernel */
};

/* ---- addresses ------------------------------------------------------------------------------ */

/* Split "host:port", "[v6]:port" or ":port" into host (empty = any / loopback) and port. */
static int parse_addr(const char *addr, char host[256], char port[8], sf_err *err) {
  if (!addr) return sf__errf(err, SF_EINVAL, "no address given");
  const char *colon, *h = addr;
  size_t hl;
  if (addr[0] == '[') {
    const char *rb = strchr(addr, ']');
    if (!rb || rb[1] != ':')
      return sf__errf(err, SF_EINVAL, "address '%s': expected [v6-address]:port", addr);
    h = addr + 1;
    hl = (size_t)(rb - h);
    colon = rb + 1;
  } else {
    colon = strrchr(addr, ':');
    if (!colon) return sf__errf(err, SF_EINVAL, "address '%s': expected host:port", addr);
    if (memchr(addr, ':', (size_t)(colon - addr)))
      return sf__errf(err, SF_EINVAL, "address '%s': write IPv6 addresses as [addr]:port", addr);
    hl = (size_t)(colon - addr);
  }
  const char *p = colon + 1;
  size_t pl = strlen(p);
  char *end = NULL;
  long v = pl ? strtol(p, &end, 10) : -1;
  if (pl == 0 || pl > 5 || *end || p[0] == '-' || p[0] == '+' || v < 0 || v > 65535)
    return sf__errf(err, SF_EINVAL, "address '%s': bad port '%s' (0..65535)", addr, p);
  if (hl >= 256) return sf__errf(err, SF_EINVAL, "address '%.64s...': host name too long", addr);
  memcpy(host, h, hl);
  host[hl] = 0;
  snprintf(port, 8, "%ld", v);
  return 0;
}

/* "ip:port" / "[ip6]:port" of a socket address, "unix" for anything else. */
static void format_sockaddr(const struct sockaddr_storage *ss, char *out, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
  } else {
    snprintf(out, cap, "unix");
  }
}

/* ---- waiting ------------------------------------------------------------------------------- */

/* Milliseconds to wait: idle_ms (-1 forever) capped by the deadline (<= 0 none); -2 if past it. */
static int wait_ms(int idle_ms, double deadline) {
  if (deadline <= 0) return idle_ms < 0 ? -1 : idle_ms;
  double rem = (deadline - sf__now()) * 1000.0;
  if (rem <= 0) return -2;
  int r = rem > 2e9 ? 2000000000 : (int)ceil(rem);
  return (idle_ms >= 0 && idle_ms < r) ? idle_ms : r;
}

/* Wait until fd is ready for events (or has an error/hangup). 0 ready, 1 timed out, <0 errno. */
static int poll_fd(int fd, short events, int idle_ms, double deadline) {
  for (;;) {
    int ms = wait_ms(idle_ms, deadline);
    if (ms == -2) ms = 0; /* past the deadline: one last look */
    struct pollfd pf = {.fd = fd, .events = events};
    int r = poll(&pf, 1, ms);
    if (r > 0) return 0;
    if (r == 0) return 1;
    if (errno != EINTR) return -errno;
  }
}

/* Sleep until sf__now() reaches t (clock_nanosleep on the monotonic clock, EINTR-safe). */
static void sleep_until(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

/* ---- construction ---------------------------------------------------------------------------- */

/* Wrap a connected stream socket: non-blocking, TCP_NODELAY (when TCP), peer name. Takes the fd
 * on success; returns NULL when out of memory or the fd is unusable (fd left to the caller). */
sf_conn *sf__conn_from_fd(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return NULL;
  sf_conn *c = sf__calloc(1, sizeof *c);
  if (!c) return NULL;
  c->fd = fd;
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly on unix */
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
    format_sockaddr(&ss, c->peer, sizeof c->peer);
  else
    snprintf(c->peer, sizeof c->peer, "fd %d", fd);
  atomic_init(&c->write_timeout_ms, -1);
  return c;
}

/* Close the socket and free; NULL is a no-op. */
void sf__conn_free(sf_conn *c) {
  if (!c) return;
  close(c->fd);
  free(c);
}

int sf__conn_fd(const sf_conn *c) {
  return c->fd;
}
const char *sf__conn_peer(const sf_conn *c) {
  return c->peer;
}
uint64_t sf__conn_bytes_out(const sf_conn *c) {
  return atomic_load_explicit(&((sf_conn *)c)->bytes_out, memory_order_relaxed);
}
uint64_t sf__conn_bytes_in(const sf_conn *c) {
  return atomic_load_explicit(&((sf_conn *)c)->bytes_in, memory_order_relaxed);
}

/* Bytes per second (<= 0 or not finite = unpaced); safe from any thread. */
void sf__conn_set_rate(sf_conn *c, double bytes_per_s) {
  if (!(bytes_per_s > 0) || !isfinite(bytes_per_s)) bytes_per_s = 0;
  uint64_t bits;
  memcpy(&bits, &bytes_per_s, sizeof bits);
  atomic_store(&c->rate_bits, bits);
}

static double conn_rate(sf_conn *c) {
  uint64_t bits = atomic_load_explicit(&c->rate_bits, memory_order_relaxed);
  double r;
  memcpy(&r, &bits, sizeof r);
  return r;
}

/* Longest a write may wait without progress (-1 = forever, the default). */
void sf__conn_set_write_timeout(sf_conn *c, int timeout_ms) {
  atomic_store(&c->write_timeout_ms, timeout_ms < 0 ? -1 : timeout_ms);
}

/* Wake blocked readers/writers (they return SF_EIO); the fd stays open until sf__conn_free. */
void sf__conn_shutdown(sf_conn *c) {
  if (!c) return;
  atomic_store(&c->shut, 1);
  shutdown(c->fd, SHUT_RDWR);
}

/* ---- listen / accept / connect ------------------------------------------------------------- */

/* Try to bind and listen on one resolved address; fd or -errno. */
static int listen_one(const struct addrinfo *ai, int backlog) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return -errno;
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  return fd;
}

/* Listen on addr; an empty host listens on every address (dual-stack IPv6 first, else IPv4). */
int sf__listen(const char *addr, int backlog, int *fd_out, sf_err *err) {
  char host[256], port[8];
  int rc = parse_addr(addr, host, port, err);
  if (rc < 0) return rc;
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                  *res = NULL;
  int g = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
  if (g) return sf__errf(err, SF_EIO, "listen on %s: %s", addr, gai_strerror(g));
  int fd = -EADDRNOTAVAIL;
  for (int pass = 0; pass < 2 && fd < 0; pass++)
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
      if (!host[0] && (pass == 0) != (ai->ai_family == AF_INET6)) continue;
      if (host[0] && pass == 1) break;
      fd = listen_one(ai, backlog > 0 ? backlog : 16);
    }
  freeaddrinfo(res);
  if (fd < 0) return sf__errf(err, SF_EIO, "listen on %s: %s", addr, strerror(-fd));
  *fd_out = fd;
  return 0;
}

/* Local port of a bound socket, -1 on error. */
int sf__listen_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return -1;
}

/* Accept one connection within timeout_ms (-1 forever). 0 and *out; SF_ENOTFOUND when the time
 * passes without a connection; SF_EIO on a socket error (e.g. out of descriptors). */
int sf__conn_accept(int lfd, int timeout_ms, sf_conn **out, sf_err *err) {
  double deadline = timeout_ms >= 0 ? sf__now() + timeout_ms / 1000.0 : 0;
  for (;;) {
    int w = poll_fd(lfd, POLLIN, timeout_ms < 0 ? -1 : 0x7fffffff, deadline);
    if (w == 1) return sf__errf(err, SF_ENOTFOUND, "no connection within %d ms", timeout_ms);
    if (w < 0) return sf__errf(err, SF_EIO, "accept: %s", strerror(-w));
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      sf_conn *c = sf__conn_from_fd(fd);
      if (!c) {
        close(fd);
        return sf__errf(err, SF_ENOMEM, "accept: out of memory");
      }
      *out = c;
      return 0;
    }
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED ||
        errno == EPROTO)
      continue;
    return sf__errf(err, SF_EIO, "accept: %s", strerror(errno));
  }
}

/* Non-blocking connect to one address before the deadline; fd, or -errno (-ETIMEDOUT). */
static int connect_one(const struct addrinfo *ai, double deadline) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return -errno;
  int e = 0;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
    e = errno;
    if (e == EINPROGRESS || e == EINTR) {
      int w = poll_fd(fd, POLLOUT, -1, deadline);
      socklen_t sl = sizeof e;
      if (w == 1)
        e = ETIMEDOUT;
      else if (w < 0)
        e = -w;
      else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) < 0)
        e = errno;
    }
  }
  if (e) {
    close(fd);
    return -e;
  }
  return fd;
}

/* Connect to "host:port" (every resolved address in turn) within timeout_ms (-1 = no limit). */
int sf__conn_connect(sf_conn **out, const char *addr, int timeout_ms, sf_err *err) {
  char host[256], port[8];
  int rc = parse_addr(addr, host, port, err);
  if (rc < 0) return rc;
  double deadline = timeout_ms >= 0 ? sf__now() + timeout_ms / 1000.0 : 0;
  struct addrinfo hints = {.ai_family = AF_UNSPEC,
                           .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV},
                  *res = NULL;
  int g = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
  if (g) return sf__errf(err, SF_EIO, "connect to %s: %s", addr, gai_strerror(g));
  int fd = -EADDRNOTAVAIL;
  for (struct addrinfo *ai = res; ai && fd < 0 && fd != -ETIMEDOUT; ai = ai->ai_next)
    fd = connect_one(ai, deadline);
  freeaddrinfo(res);
  if (fd == -ETIMEDOUT)
    return sf__errf(err, SF_EIO, "connect to %s: timed out after %d ms", addr, timeout_ms);
  if (fd < 0) return sf__errf(err, SF_EIO, "connect to %s: %s", addr, strerror(-fd));
  sf_conn *c = sf__conn_from_fd(fd);
  if (!c) {
    close(fd);
    return sf__errf(err, SF_ENOMEM, "connect to %s: out of memory", addr);
  }
  *out = c;
  return 0;
}

/* ---- writing ------------------------------------------------------------------------------- */

/* Token bucket (GCRA form): block until a chunk of k bytes may leave at the given rate, i.e. until
 * the emulated link's backlog after it is at most one burst. Returns early on shutdown. */
static void pace(sf_conn *c, size_t k, double rate) {
  double burst = fmax(PACE_MIN_BURST, rate * PACE_BURST_S);
  double now = sf__now();
  if (c->tat < now) c->tat = now;
  c->tat += (double)k / rate;
  double when = c->tat - burst / rate;
  while (now < when && !atomic_load(&c->shut)) {
    sleep_until(fmin(when, now + PACE_SLEEP_SLICE));
    now = sf__now();
  }
}

/* One sendmsg of up to cnt pieces, waiting for room as needed. Bytes sent (> 0) or error. */
static ssize_t send_some(sf_conn *c, struct iovec *iov, int cnt, sf_err *err) {
  for (;;) {
    if (atomic_load(&c->shut)) return sf__errf(err, SF_EIO, "%s: connection shut down", c->peer);
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
    ssize_t r = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    if (r > 0) return r;
    if (r == 0) return sf__errf(err, SF_EIO, "%s: send made no progress", c->peer);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      if (errno == EPIPE || errno == ECONNRESET)
        return sf__errf(err, SF_EIO, "%s: peer closed the connection", c->peer);
      return sf__errf(err, SF_EIO, "%s: send: %s", c->peer, strerror(errno));
    }
    int tmo = atomic_load(&c->write_timeout_ms);
    int w = poll_fd(c->fd, POLLOUT, tmo, 0);
    if (w == 1) return sf__errf(err, SF_EIO, "%s: write timed out after %d ms", c->peer, tmo);
    if (w < 0) return sf__errf(err, SF_EIO, "%s: poll: %s", c->peer, strerror(-w));
  }
}

/* Copy into dst the pieces of v starting at (*idx, *off) that cover at most limit bytes. */
static int iov_window(const sf_iov *v, int n, int idx, size_t off, size_t limit,
                      struct iovec *dst) {
  int cnt = 0;
  for (; idx < n && limit > 0; idx++, off = 0) {
    size_t len = v[idx].n - off;
    if (len == 0) continue;
    if (len > limit) len = limit;
    dst[cnt].iov_base = (void *)((const uint8_t *)v[idx].p + off);
    dst[cnt].iov_len = len;
    cnt++;
    limit -= len;
  }
  return cnt;
}

/* Write every byte of the n pieces; paced connections send at most one burst per token wait. */
int sf__conn_writev(sf_conn *c, const sf_iov *v, int n, sf_err *err) {
  SF_CHECK(n >= 0 && n <= SF_IOV_MAX);
  size_t left = 0;
  for (int i = 0; i < n; i++) left += v[i].n;
  int idx = 0;
  size_t off = 0;
  while (left > 0) {
    double rate = conn_rate(c);
    size_t limit = left < ((size_t)1 << 30) ? left : ((size_t)1 << 30);
    if (rate > 0) {
      if (c->prepaid == 0) {
        size_t burst = (size_t)fmax(PACE_MIN_BURST, rate * PACE_BURST_S);
        c->prepaid = left < burst ? left : burst;
        pace(c, c->prepaid, rate);
      }
      if (limit > c->prepaid) limit = c->prepaid;
    } else {
      c->prepaid = 0;
    }
    struct iovec iov[SF_IOV_MAX];
    int cnt = iov_window(v, n, idx, off, limit, iov);
    ssize_t r = send_some(c, iov, cnt, err);
    if (r < 0) return (int)r;
    atomic_fetch_add_explicit(&c->bytes_out, (uint64_t)r, memory_order_relaxed);
    left -= (size_t)r;
    c->prepaid = (size_t)r < c->prepaid ? c->prepaid - (size_t)r : 0;
    for (size_t adv = (size_t)r; adv > 0;) { /* advance the cursor past r bytes */
      size_t in = v[idx].n - off;
      if (adv < in) {
        off += adv;
        adv = 0;
      } else {
        adv -= in;
        idx++;
        off = 0;
      }
    }
  }
  return 0;
}

/* Write all n bytes (paced when a rate is set). */
int sf__conn_write(sf_conn *c, const void *p, size_t n, sf_err *err) {
  sf_iov v = {p, n};
  return sf__conn_writev(c, &v, 1, err);
}

/* ---- reading ------------------------------------------------------------------------------- */

int sf__conn_read_until(sf_conn *c, void *p, size_t n, int idle_ms, double deadline, sf_err *err) {
  size_t got = 0;
  while (got < n) {
    if (atomic_load(&c->shut)) return sf__errf(err, SF_EIO, "%s: connection shut down", c->peer);
    ssize_t r = recv(c->fd, (uint8_t *)p + got, n - got, 0);
    if (r > 0) {
      got += (size_t)r;
      atomic_fetch_add_explicit(&c->bytes_in, (uint64_t)r, memory_order_relaxed);
      continue;
    }
    if (r == 0) {
      if (got == 0) return sf__errf(err, SF_EIO, "%s: peer closed the connection", c->peer);
      return sf__errf(err, SF_EIO, "%s: peer closed the connection after %zu of %zu bytes", c->peer,
                      got, n);
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return sf__errf(err, SF_EIO, "%s: recv: %s", c->peer, strerror(errno));
    int w = poll_fd(c->fd, POLLIN, idle_ms, deadline);
    if (w == 1) return sf__errf(err, SF_EIO, "%s: read timed out", c->peer);
    if (w < 0) return sf__errf(err, SF_EIO, "%s: poll: %s", c->peer, strerror(-w));
  }
  return 0;
}

/* Read exactly n bytes; timeout_ms (-1 forever) bounds each wait for more data. */
int sf__conn_read(sf_conn *c, void *p, size_t n, int timeout_ms, sf_err *err) {
  return sf__conn_read_until(c, p, n, timeout_ms, 0, err);
}
