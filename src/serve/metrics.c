/* Prometheus registry; see metrics.h. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "serve/metrics.h"
#include "util/util.h"

#define MAX_BUCKETS 32

enum { K_COUNTER, K_GAUGE, K_HISTOGRAM };

struct sf_counter {
  atomic_uint_fast64_t v;
};
struct sf_gauge {
  atomic_uint_fast64_t bits; /* the double's bits */
};
struct sf_histogram {
  int nb;
  const double *bounds; /* the family's */
  atomic_uint_fast64_t sum_bits;
  atomic_uint_fast64_t counts[MAX_BUCKETS + 1]; /* per bucket (not cumulative); last = +Inf */
};

typedef struct series {
  char *labels; /* "" or the label pairs */
  void *h;      /* sf_counter / sf_gauge / sf_histogram */
  struct series *next;
} series;

typedef struct family {
  char *name, *help;
  int kind, nb;
  double bounds[MAX_BUCKETS];
  series *head, *tail;
  struct family *next;
} family;

struct sf_metrics {
  pthread_mutex_t mu;
  family *head, *tail;
};

static const double latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,      2.5,   5,    10,    30,   60};

static uint64_t dbits(double d) {
  uint64_t u;
  memcpy(&u, &d, 8);
  return u;
}
static double bitsd(uint64_t u) {
  double d;
  memcpy(&d, &u, 8);
  return d;
}

sf_metrics *sf__metrics_new(void) {
  sf_metrics *m = sf__calloc(1, sizeof *m);
  if (m) pthread_mutex_init(&m->mu, NULL);
  return m;
}

void sf__metrics_free(sf_metrics *m) {
  if (!m) return;
  for (family *f = m->head, *fn; f; f = fn) {
    fn = f->next;
    for (series *s = f->head, *sn; s; s = sn) {
      sn = s->next;
      free(s->labels);
      free(s->h);
      free(s);
    }
    free(f->name);
    free(f->help);
    free(f);
  }
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static int name_ok(const char *s, int colon) {
  if (!s || !*s) return 0;
  for (const char *p = s; *p; p++) {
    char c = *p;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':') ||
             (p != s && c >= '0' && c <= '9');
    if (!ok) return 0;
  }
  return 1;
}

/* name="value"(,name="value")* with escapes \\ \" \n in values; "le" refused for histograms. */
static int labels_ok(const char *l, int histogram) {
  const char *p = l;
  while (*p) {
    const char *n0 = p;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
           (p != n0 && *p >= '0' && *p <= '9'))
      p++;
    if (p == n0 || p[0] != '=' || p[1] != '"') return 0;
    if (histogram && p - n0 == 2 && !memcmp(n0, "le", 2)) return 0;
    if (p - n0 >= 2 && n0[0] == '_' && n0[1] == '_') return 0; /* reserved */
    p += 2;
    for (; *p != '"'; p++) {
      if (!*p || *p == '\n') return 0;
      if (*p == '\\') {
        p++;
        if (*p != '\\' && *p != '"' && *p != 'n') return 0;
      }
    }
    p++;
    if (*p == ',') {
      p++;
      if (!*p) return 0;
    } else if (*p) {
      return 0;
    }
  }
  return 1;
}

int sf__metrics_label_value(const char *v, char *out, size_t cap) {
  size_t o = 0;
  for (; *v; v++) {
    const char *rep = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
    size_t n = rep ? 2 : 1;
    if (o + n >= cap) {
      if (cap) out[o < cap ? o : cap - 1] = 0;
      return -1;
    }
    if (rep)
      memcpy(out + o, rep, 2);
    else
      out[o] = *v;
    o += n;
  }
  if (!cap) return -1;
  out[o] = 0;
  return 0;
}

/* Find or create the series; NULL on any mismatch or out of memory. */
static void *reg(sf_metrics *m, const char *name, const char *help, const char *labels, int kind,
                 const double *bounds, int nb) {
  if (!m || !name_ok(name, 1)) return NULL;
  if (!labels) labels = "";
  if (!labels_ok(labels, kind == K_HISTOGRAM)) return NULL;
  if (kind == K_HISTOGRAM) {
    if (nb < 1 || nb > MAX_BUCKETS) return NULL;
    for (int i = 0; i < nb; i++)
      if (!isfinite(bounds[i]) || (i && bounds[i] <= bounds[i - 1])) return NULL;
  }
  void *h = NULL;
  pthread_mutex_lock(&m->mu);
  family *f = m->head;
  while (f && strcmp(f->name, name)) f = f->next;
  if (f) {
    if (f->kind != kind) goto out;
    if (kind == K_HISTOGRAM &&
        (f->nb != nb || memcmp(f->bounds, bounds, (size_t)nb * sizeof *bounds)))
      goto out;
    for (series *s = f->head; s; s = s->next)
      if (!strcmp(s->labels, labels)) {
        h = s->h;
        goto out;
      }
  } else {
    f = sf__calloc(1, sizeof *f);
    if (!f) goto out;
    f->name = sf__strdup(name);
    f->help = sf__strdup(help ? help : "");
    f->kind = kind;
    f->nb = nb;
    if (kind == K_HISTOGRAM) memcpy(f->bounds, bounds, (size_t)nb * sizeof *bounds);
    if (!f->name || !f->help) {
      free(f->name);
      free(f->help);
      free(f);
      goto out;
    }
    if (m->tail)
      m->tail->next = f;
    else
      m->head = f;
    m->tail = f;
  }
  series *s = sf__calloc(1, sizeof *s);
  size_t hsz = kind == K_COUNTER ? sizeof(sf_counter)
               : kind == K_GAUGE ? sizeof(sf_gauge)
                                 : sizeof(sf_histogram);
  void *nh = sf__calloc(1, hsz);
  char *lc = sf__strdup(labels);
  if (!s || !nh || !lc) {
    free(s);
    free(nh);
    free(lc);
    goto out;
  }
  if (kind == K_HISTOGRAM) {
    sf_histogram *hg = nh;
    hg->nb = nb;
    hg->bounds = f->bounds;
    atomic_init(&hg->sum_bits, dbits(0.0));
  } else if (kind == K_GAUGE) {
    atomic_init(&((sf_gauge *)nh)->bits, dbits(0.0));
  }
  s->labels = lc;
  s->h = h = nh;
  if (f->tail)
    f->tail->next = s;
  else
    f->head = s;
  f->tail = s;
out:
  pthread_mutex_unlock(&m->mu);
  return h;
}

sf_counter *sf__metrics_counter(sf_metrics *m, const char *name, const char *help,
                                const char *labels) {
  return reg(m, name, help, labels, K_COUNTER, NULL, 0);
}
sf_gauge *sf__metrics_gauge(sf_metrics *m, const char *name, const char *help, const char *labels) {
  return reg(m, name, help, labels, K_GAUGE, NULL, 0);
}
sf_histogram *sf__metrics_histogram(sf_metrics *m, const char *name, const char *help,
                                    const char *labels) {
  return reg(m, name, help, labels, K_HISTOGRAM, latency_buckets,
             (int)(sizeof latency_buckets / sizeof latency_buckets[0]));
}
sf_histogram *sf__metrics_histogram_buckets(sf_metrics *m, const char *name, const char *help,
                                            const char *labels, const double *bounds, int n) {
  return reg(m, name, help, labels, K_HISTOGRAM, bounds, n);
}

void sf__counter_add(sf_counter *c, uint64_t n) {
  if (c) atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}
uint64_t sf__counter_get(const sf_counter *c) {
  return c ? atomic_load_explicit(&((sf_counter *)c)->v, memory_order_relaxed) : 0;
}

static void add_double(atomic_uint_fast64_t *a, double d) {
  uint_fast64_t old = atomic_load_explicit(a, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(a, &old, dbits(bitsd(old) + d),
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

void sf__gauge_set(sf_gauge *g, double v) {
  if (g) atomic_store_explicit(&g->bits, dbits(v), memory_order_relaxed);
}
void sf__gauge_add(sf_gauge *g, double d) {
  if (g) add_double(&g->bits, d);
}
double sf__gauge_get(const sf_gauge *g) {
  return g ? bitsd(atomic_load_explicit(&((sf_gauge *)g)->bits, memory_order_relaxed)) : 0;
}

void sf__histogram_observe(sf_histogram *h, double v) {
  if (!h || isnan(v)) return;
  int lo = 0, hi = h->nb; /* first bound >= v, or nb (+Inf) */
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (h->bounds[mid] >= v)
      hi = mid;
    else
      lo = mid + 1;
  }
  atomic_fetch_add_explicit(&h->counts[lo], 1, memory_order_relaxed);
  add_double(&h->sum_bits, v);
}

uint64_t sf__histogram_count(const sf_histogram *h) {
  uint64_t n = 0;
  for (int i = 0; h && i <= h->nb; i++)
    n += atomic_load_explicit(&((sf_histogram *)h)->counts[i], memory_order_relaxed);
  return n;
}
double sf__histogram_sum(const sf_histogram *h) {
  return h ? bitsd(atomic_load_explicit(&((sf_histogram *)h)->sum_bits, memory_order_relaxed)) : 0;
}

/* Shortest "%.Ng" that reads back to v; Prometheus spellings for the non-finite values. */
static void fmt_double(char *buf, size_t cap, double v) {
  if (isnan(v)) {
    snprintf(buf, cap, "NaN");
    return;
  }
  if (isinf(v)) {
    snprintf(buf, cap, v > 0 ? "+Inf" : "-Inf");
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, cap, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) return;
  }
}

typedef struct tw {
  sf_buf *b;
  int bad;
} tw;

static void tw_s(tw *w, const char *s) {
  if (!w->bad && sf__buf_put(w->b, s, strlen(s)) < 0) w->bad = 1;
}

/* HELP text escaping: backslash and newline. */
static void tw_help(tw *w, const char *s) {
  for (const char *p = s; *p && !w->bad; p++) {
    if (*p == '\\')
      tw_s(w, "\\\\");
    else if (*p == '\n')
      tw_s(w, "\\n");
    else if (sf__buf_put(w->b, p, 1) < 0)
      w->bad = 1;
  }
}

/* name{labels[,extra]} value\n */
static void tw_sample(tw *w, const char *name, const char *suffix, const char *labels,
                      const char *extra, const char *value) {
  tw_s(w, name);
  tw_s(w, suffix);
  if (labels[0] || extra) {
    tw_s(w, "{");
    tw_s(w, labels);
    if (extra) {
      if (labels[0]) tw_s(w, ",");
      tw_s(w, extra);
    }
    tw_s(w, "}");
  }
  tw_s(w, " ");
  tw_s(w, value);
  tw_s(w, "\n");
}

int sf__metrics_render(sf_metrics *m, sf_buf *out) {
  tw w = {out, 0};
  char v[64], le[80];
  size_t start = out->len;
  if (!m) return 0;
  pthread_mutex_lock(&m->mu);
  for (family *f = m->head; f; f = f->next) {
    static const char *const types[] = {"counter", "gauge", "histogram"};
    tw_s(&w, "# HELP ");
    tw_s(&w, f->name);
    tw_s(&w, " ");
    tw_help(&w, f->help);
    tw_s(&w, "\n# TYPE ");
    tw_s(&w, f->name);
    tw_s(&w, " ");
    tw_s(&w, types[f->kind]);
    tw_s(&w, "\n");
    for (series *s = f->head; s; s = s->next) {
      if (f->kind == K_COUNTER) {
        snprintf(v, sizeof v, "%llu", (unsigned long long)sf__counter_get(s->h));
        tw_sample(&w, f->name, "", s->labels, NULL, v);
      } else if (f->kind == K_GAUGE) {
        fmt_double(v, sizeof v, sf__gauge_get(s->h));
        tw_sample(&w, f->name, "", s->labels, NULL, v);
      } else {
        sf_histogram *h = s->h;
        uint64_t cum = 0;
        for (int i = 0; i <= h->nb; i++) {
          cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
          if (i < h->nb) {
            char bnd[40];
            fmt_double(bnd, sizeof bnd, h->bounds[i]);
            snprintf(le, sizeof le, "le=\"%s\"", bnd);
          } else {
            snprintf(le, sizeof le, "le=\"+Inf\"");
          }
          snprintf(v, sizeof v, "%llu", (unsigned long long)cum);
          tw_sample(&w, f->name, "_bucket", s->labels, le, v);
        }
        fmt_double(v, sizeof v, sf__histogram_sum(h));
        tw_sample(&w, f->name, "_sum", s->labels, NULL, v);
        snprintf(v, sizeof v, "%llu", (unsigned long long)cum); /* == the +Inf bucket */
        tw_sample(&w, f->name, "_count", s->labels, NULL, v);
      }
    }
  }
  pthread_mutex_unlock(&m->mu);
  if (w.bad) {
    out->len = start;
    return SF_ENOMEM;
  }
  return 0;
}
