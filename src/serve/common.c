/* Shared serving pieces: log lines, the bounded queue, signal handling. */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve.h"

void sf__logf(const char *who, const char *fmt, ...) {
  char line[2048];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ seifer %s: ",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ts.tv_nsec / 1000000, who);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && n < (int)sizeof line) n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  ssize_t w = write(2, line, (size_t)n);
  (void)w;
}

/* ---- queue -------------------------------------------------------------------------------- */
static void deadline(struct timespec *ts, int timeout_ms) {
  clock_gettime(CLOCK_REALTIME, ts);
  ts->tv_sec += timeout_ms / 1000;
  ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (ts->tv_nsec >= 1000000000L) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000L;
  }
}

int sf__queue_init(sf_queue *q, int cap) {
  memset(q, 0, sizeof *q);
  if (cap < 1) cap = 1;
  q->items = sf__calloc((size_t)cap, sizeof(void *));
  if (!q->items) return SF_ENOMEM;
  q->cap = cap;
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->not_empty, NULL);
  pthread_cond_init(&q->not_full, NULL);
  return 0;
}

void sf__queue_deinit(sf_queue *q) {
  if (!q->items) return;
  free(q->items);
  q->items = NULL;
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->not_empty);
  pthread_cond_destroy(&q->not_full);
}

int sf__queue_push(sf_queue *q, void *item, int timeout_ms) {
  struct timespec ts;
  if (timeout_ms >= 0) deadline(&ts, timeout_ms);
  pthread_mutex_lock(&q->mu);
  while (q->n == q->cap && !q->closed) {
    if (timeout_ms < 0) {
      pthread_cond_wait(&q->not_full, &q->mu);
    } else if (pthread_cond_timedwait(&q->not_full, &q->mu, &ts) == ETIMEDOUT) {
      pthread_mutex_unlock(&q->mu);
      return -2;
    }
  }
  if (q->closed) {
    pthread_mutex_unlock(&q->mu);
    return -1;
  }
  q->items[(q->head + q->n) % q->cap] = item;
  q->n++;
  pthread_cond_signal(&q->not_empty);
  pthread_mutex_unlock(&q->mu);
  return 0;
}

void *sf__queue_pop(sf_queue *q, int timeout_ms) {
  struct timespec ts;
  if (timeout_ms >= 0) deadline(&ts, timeout_ms);
  pthread_mutex_lock(&q->mu);
  while (q->n == 0 && !q->closed) {
    if (timeout_ms < 0) {
      pthread_cond_wait(&q->not_empty, &q->mu);
    } else if (pthread_cond_timedwait(&q->not_empty, &q->mu, &ts) == ETIMEDOUT) {
      break;
    }
  }
  void *item = NULL;
  if (q->n > 0) {
    item = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->n--;
    pthread_cond_signal(&q->not_full);
  }
  pthread_mutex_unlock(&q->mu);
  return item;
}

void sf__queue_close(sf_queue *q) {
  pthread_mutex_lock(&q->mu);
  q->closed = 1;
  pthread_cond_broadcast(&q->not_empty);
  pthread_cond_broadcast(&q->not_full);
  pthread_mutex_unlock(&q->mu);
}

int sf__queue_len(sf_queue *q) {
  pthread_mutex_lock(&q->mu);
  int n = q->n;
  pthread_mutex_unlock(&q->mu);
  return n;
}

/* ---- signals ------------------------------------------------------------------------------ */
static volatile sig_atomic_t *sig_flag;
static void on_signal(int sig) {
  (void)sig;
  if (sig_flag) *sig_flag = 1;
}

void sf__serve_signals(volatile sig_atomic_t *flag) {
  sig_flag = flag;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}
