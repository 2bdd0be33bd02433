/* A small thread-safe Prometheus registry: counters, gauges and histograms with fixed buckets,
 * rendered in the text exposition format (version 0.0.4) for GET /metrics.
 *
 *     sf_metrics *m = sf__metrics_new();
 *     sf_counter *req = sf__metrics_counter(m, "seifer_requests_total", "Requests.", NULL);
 *     sf_counter *bad = sf__metrics_counter(m, "seifer_http_responses_total", "By status.",
 *                                           "code=\"400\"");
 *     sf_histogram *lat = sf__metrics_histogram(m, "seifer_request_duration_seconds", "Latency.",
 * NULL); sf__counter_add(req, 1);                 // hot path: one atomic add, no lock
 *     sf__histogram_observe(lat, 0.012);       // seconds
 *     sf_buf b = {0};
 *     sf__metrics_render(m, &b);               // "# HELP ...\n# TYPE ...\nname value\n..."
 *     sf__metrics_free(m);                     // handles die with the registry
 *
 * Registration (lock, name lookup) happens once; the returned handle is updated with relaxed
 * atomics. Registering the same name and labels again returns the same handle; the same name
 * with other labels adds a series to that metric (HELP/TYPE written once). Registration returns
 * NULL for an invalid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), invalid labels (name="value" pairs
 * separated by commas, values escaped as by sf__metrics_label_value), a name already registered
 * with another type or other buckets, or out of memory; every update function accepts NULL and
 * does nothing, so a metric that could not be registered never breaks the code that counts. */
#ifndef SF_METRICS_H
#define SF_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "net/net.h"

typedef struct sf_metrics sf_metrics;
typedef struct sf_counter sf_counter;
typedef struct sf_gauge sf_gauge;
typedef struct sf_histogram sf_histogram;

sf_metrics *sf__metrics_new(void);
void sf__metrics_free(sf_metrics *m); /* NULL is a no-op */

/* labels: NULL or "" for none, else e.g. "stage=\"1\",codec=\"lz4\"". */
sf_counter *sf__metrics_counter(sf_metrics *m, const char *name, const char *help,
                                const char *labels);
sf_gauge *sf__metrics_gauge(sf_metrics *m, const char *name, const char *help, const char *labels);
/* Latency buckets in seconds: 1ms, 2.5ms, 5ms, ... 10s, 30s, 60s. */
sf_histogram *sf__metrics_histogram(sf_metrics *m, const char *name, const char *help,
                                    const char *labels);
/* Own buckets: n (1..32) strictly increasing finite upper bounds (the +Inf bucket is implicit). */
sf_histogram *sf__metrics_histogram_buckets(sf_metrics *m, const char *name, const char *help,
                                            const char *labels, const double *bounds, int n);

void sf__counter_add(sf_counter *c, uint64_t n);
uint64_t sf__counter_get(const sf_counter *c);
void sf__gauge_set(sf_gauge *g, double v);
void sf__gauge_add(sf_gauge *g, double d);
double sf__gauge_get(const sf_gauge *g);
/* Count v in the first bucket whose bound is >= v (NaN is ignored). */
void sf__histogram_observe(sf_histogram *h, double v);
uint64_t sf__histogram_count(const sf_histogram *h);
double sf__histogram_sum(const sf_histogram *h);

/* Append the exposition text of every metric, in registration order. 0 or SF_ENOMEM. */
int sf__metrics_render(sf_metrics *m, sf_buf *out);

/* Escape a label value (backslash, double quote, newline) into out (cap bytes, always
 * terminated); returns 0, or -1 if it did not fit. */
int sf__metrics_label_value(const char *v, char *out, size_t cap);

#endif
