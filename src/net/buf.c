/* Growable byte buffer (sf_buf): capacity doubles, contents move with realloc. */
#include <string.h>

#include "net/net.h"
#include "util/util.h"

/* Make room for len+extra bytes. 0, or SF_ENOMEM (buffer unchanged) on overflow / no memory. */
int sf__buf_reserve(sf_buf *b, size_t extra) {
  if (extra > SIZE_MAX - b->len) return SF_ENOMEM;
  size_t need = b->len + extra;
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  uint8_t *d = sf__realloc(b->data, cap);
  if (!d) return SF_ENOMEM;
  b->data = d;
  b->cap = cap;
  return 0;
}

/* Append n bytes from p. 0 or SF_ENOMEM. */
int sf__buf_put(sf_buf *b, const void *p, size_t n) {
  if (sf__buf_reserve(b, n) < 0) return SF_ENOMEM;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

/* Free the storage; the buffer is empty and reusable afterwards. */
void sf__buf_deinit(sf_buf *b) {
  if (!b) return;
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
