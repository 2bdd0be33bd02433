/* Vectorised element-wise loops: every instruction-set variant against double precision. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <cmocka.h>

#include "runtime/ops/vkern.h"

#define N 200003

static void check(const sf_vkern *vk) {
  float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
  assert_non_null(x);
  assert_non_null(y);
  for (int i = 0; i < N; i++) x[i] = -100.0f + 200.0f * (float)i / (float)(N - 1);
  x[0] = -INFINITY;
  x[1] = INFINITY;
  x[2] = 0.0f;
  x[3] = -0.0f;
  x[4] = 1e-30f;
  double worst_sig = 0, worst_sw = 0;
  vk->sigmoid(x, y, N);
  for (int i = 0; i < N; i++) {
    double r = 1.0 / (1.0 + exp(-(double)x[i]));
    double e = fabs((double)y[i] - r);
    if (r > 1e-37) e /= r; /* relative where the reference is a normal float */
    if (e > worst_sig) worst_sig = e;
    assert_true(y[i] >= 0.0f && y[i] <= 1.0f);
  }
  vk->swish(x + 5, y + 5, N - 5); /* finite inputs */
  for (int i = 5; i < N; i++) {
    double r = (double)x[i] / (1.0 + exp(-(double)x[i]));
    double e = fabs((double)y[i] - r);
    if (fabs(r) > 1e-30) e /= fabs(r);
    if (e > worst_sw) worst_sw = e;
  }
  print_message("%s: sigmoid max rel err %.3g, swish max rel err %.3g\n", vk->isa, worst_sig,
                worst_sw);
  assert_true(worst_sig < 1e-6);
  assert_true(worst_sw < 1e-6);
  /* in place */
  for (int i = 0; i < 64; i++) y[i] = x[i * 3000 + 7];
  float ref[64];
  vk->sigmoid(y, ref, 64);
  vk->sigmoid(y, y, 64);
  for (int i = 0; i < 64; i++) assert_true(y[i] == ref[i]);
  free(x);
  free(y);
}

static void test_base(void **st) {
  (void)st;
  check(&sf__vkern_base);
}

static void test_dispatched(void **st) {
  (void)st;
  check(sf__vkern());
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_base), cmocka_unit_test(test_dispatched)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
