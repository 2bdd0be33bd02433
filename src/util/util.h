/* Small internal helpers shared by every module: errors with context, checked allocation,
 * an always-on invariant check, growable arrays and a string->int map. */
#ifndef SF_UTIL_H
#define SF_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "seifer/seifer.h"

/* Set err (may be NULL) to code + formatted message; returns code. */
int sf__errf(sf_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefix the existing message of err with "ctx: ". Returns err->code (or code if err NULL). */
int sf__errctx(sf_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Broken invariants (never input problems): print file:line and abort, in every build. */
#define SF_CHECK(cond)                                                                         \
  do {                                                                                         \
    if (!(cond)) sf__check_failed(__FILE__, __LINE__, #cond);                                  \
  } while (0)
_Noreturn void sf__check_failed(const char *file, int line, const char *what);

void *sf__malloc(size_t n);  /* NULL on failure (n==0 -> valid pointer) */
void *sf__calloc(size_t n, size_t sz);
void *sf__realloc(void *p, size_t n);
char *sf__strdup(const char *s);
/* Allocation aligned to 64 bytes, freed with free(). */
void *sf__aligned_alloc(size_t n);

/* Grow *arr (elements of size esz) so that it holds at least need elements. 0 or SF_ENOMEM. */
int sf__grow(void **arr, int *cap, int need, size_t esz);

/* Checked multiplications for sizes: 0 on success, -1 on overflow or if the result > limit. */
int sf__mul_ok(int64_t a, int64_t b, int64_t limit, int64_t *out);

/* Open-addressing string -> int map (keys are copied). */
typedef struct sf_strmap {
  char **keys;
  int *vals;
  size_t cap, n;
} sf_strmap;
void sf__strmap_init(sf_strmap *m);
void sf__strmap_deinit(sf_strmap *m);
int sf__strmap_put(sf_strmap *m, const char *key, int val); /* 0 or SF_ENOMEM; replaces */
int sf__strmap_get(const sf_strmap *m, const char *key);    /* value or -1 */

/* Read a whole file; bounded by max bytes. */
int sf__read_file(const char *path, int64_t max, void **data, size_t *len, sf_err *err);
int sf__write_file(const char *path, const void *data, size_t len, sf_err *err);

/* Monotonic time in seconds. */
double sf__now(void);
/* Peak resident set size of this process in bytes (VmHWM), 0 if unknown. */
int64_t sf__peak_rss(void);
/* Number of online CPUs. */
int sf__ncpu(void);

#endif
