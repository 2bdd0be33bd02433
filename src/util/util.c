#include "util/util.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *sf_strerror(int code) {
  switch (code) {
    case SF_OK: return "success";
#define SF__ERR_CASE(name, val, msg) \
  case SF_##name: return msg;
    SF_ERRNO_MAP(SF__ERR_CASE)
#undef SF__ERR_CASE
  }
  return "unknown error";
}

int sf__errf(sf_err *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

int sf__errctx(sf_err *err, int code, const char *fmt, ...) {
  if (!err) return code;
  char pre[512], old[sizeof err->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  memcpy(old, err->msg, sizeof old);
  old[sizeof old - 1] = 0;
  snprintf(err->msg, sizeof err->msg, "%.500s: %.500s", pre, old);
  if (!err->code) err->code = code;
  return err->code;
}

void sf__check_failed(const char *file, int line, const char *what) {
  fprintf(stderr, "seifer: internal check failed at %s:%d: %s\n", file, line, what);
  abort();
}

void *sf__malloc(size_t n) { return malloc(n ? n : 1); }
void *sf__calloc(size_t n, size_t sz) { return calloc(n ? n : 1, sz ? sz : 1); }
void *sf__realloc(void *p, size_t n) { return realloc(p, n ? n : 1); }
char *sf__strdup(const char *s) {
  if (!s) s = "";
  size_t n = strlen(s) + 1;
  char *r = malloc(n);
  if (r) memcpy(r, s, n);
  return r;
}
void *sf__aligned_alloc(size_t n) {
  void *p = NULL;
  if (posix_memalign(&p, 64, n ? n : 64)) return NULL;
  return p;
}

int sf__grow(void **arr, int *cap, int need, size_t esz) {
  if (need <= *cap) return 0;
  int nc = *cap ? *cap : 8;
  while (nc < need) nc *= 2;
  void *p = realloc(*arr, (size_t)nc * esz);
  if (!p) return SF_ENOMEM;
  memset((char *)p + (size_t)*cap * esz, 0, (size_t)(nc - *cap) * esz);
  *arr = p;
  *cap = nc;
  return 0;
}

int sf__mul_ok(int64_t a, int64_t b, int64_t limit, int64_t *out) {
  if (a < 0 || b < 0) return -1;
  if (a != 0 && b > limit / a) return -1;
  int64_t r = a * b;
  if (r > limit) return -1;
  *out = r;
  return 0;
}

/* ---- string map ---- */
static uint64_t hash_str(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}
void sf__strmap_init(sf_strmap *m) { memset(m, 0, sizeof *m); }
void sf__strmap_deinit(sf_strmap *m) {
  for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}
static int strmap_rehash(sf_strmap *m, size_t ncap) {
  char **nk = calloc(ncap, sizeof *nk);
  int *nv = calloc(ncap, sizeof *nv);
  if (!nk || !nv) {
    free(nk);
    free(nv);
    return SF_ENOMEM;
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->keys[i]) continue;
    size_t j = hash_str(m->keys[i]) & (ncap - 1);
    while (nk[j]) j = (j + 1) & (ncap - 1);
    nk[j] = m->keys[i];
    nv[j] = m->vals[i];
  }
  free(m->keys);
  free(m->vals);
  m->keys = nk;
  m->vals = nv;
  m->cap = ncap;
  return 0;
}
int sf__strmap_put(sf_strmap *m, const char *key, int val) {
  if ((m->n + 1) * 2 > m->cap) {
    if (strmap_rehash(m, m->cap ? m->cap * 2 : 64)) return SF_ENOMEM;
  }
  size_t j = hash_str(key) & (m->cap - 1);
  while (m->keys[j]) {
    if (!strcmp(m->keys[j], key)) {
      m->vals[j] = val;
      return 0;
    }
    j = (j + 1) & (m->cap - 1);
  }
  m->keys[j] = sf__strdup(key);
  if (!m->keys[j]) return SF_ENOMEM;
  m->vals[j] = val;
  m->n++;
  return 0;
}
int sf__strmap_get(const sf_strmap *m, const char *key) {
  if (!m->cap) return -1;
  size_t j = hash_str(key) & (m->cap - 1);
  while (m->keys[j]) {
    if (!strcmp(m->keys[j], key)) return m->vals[j];
    j = (j + 1) & (m->cap - 1);
  }
  return -1;
}

int sf__read_file(const char *path, int64_t max, void **data, size_t *len, sf_err *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return sf__errf(err, SF_EIO, "%s: cannot open: %s", path, strerror(errno));
  int rc = 0;
  char *buf = NULL;
  if (fseeko(f, 0, SEEK_END) != 0) {
    rc = sf__errf(err, SF_EIO, "%s: cannot seek: %s", path, strerror(errno));
    goto out;
  }
  off_t sz = ftello(f);
  if (sz < 0) {
    rc = sf__errf(err, SF_EIO, "%s: cannot size: %s", path, strerror(errno));
    goto out;
  }
  if ((int64_t)sz > max) {
    rc = sf__errf(err, SF_ELIMIT, "%s: file is %lld bytes, limit is %lld", path, (long long)sz,
                  (long long)max);
    goto out;
  }
  rewind(f);
  buf = sf__malloc((size_t)sz + 1);
  if (!buf) {
    rc = sf__errf(err, SF_ENOMEM, "%s: cannot allocate %lld bytes", path, (long long)sz);
    goto out;
  }
  if (sz && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
    rc = sf__errf(err, SF_EIO, "%s: short read", path);
    goto out;
  }
  buf[sz] = 0;
  *data = buf;
  *len = (size_t)sz;
  buf = NULL;
out:
  free(buf);
  fclose(f);
  return rc;
}

int sf__write_file(const char *path, const void *data, size_t len, sf_err *err) {
  FILE *f = fopen(path, "wb");
  if (!f) return sf__errf(err, SF_EIO, "%s: cannot create: %s", path, strerror(errno));
  size_t w = len ? fwrite(data, 1, len, f) : 0;
  int bad = (w != len);
  if (fclose(f) != 0) bad = 1;
  if (bad) return sf__errf(err, SF_EIO, "%s: write failed: %s", path, strerror(errno));
  return 0;
}

double sf__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int64_t sf__peak_rss(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  int64_t kb = 0;
  while (fgets(line, sizeof line, f)) {
    if (!strncmp(line, "VmHWM:", 6)) {
      kb = strtoll(line + 6, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kb * 1024;
}

int sf__ncpu(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
