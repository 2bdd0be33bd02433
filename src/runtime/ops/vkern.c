/* Run-time choice of the element-wise loop variant (vkern.h). */
#include "runtime/ops/vkern.h"

#if defined(__x86_64__) && defined(__GNUC__)
/* 0 unknown, 1 no, 2 yes */
static int avx512_state;

int sf__cpu_avx512(void) {
  int s = __atomic_load_n(&avx512_state, __ATOMIC_ACQUIRE);
  if (s) return s == 2;
  __builtin_cpu_init();
  /* libgcc / compiler-rt also check that the OS saves the zmm state (XGETBV) */
  s = (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
       __builtin_cpu_supports("fma"))
          ? 2
          : 1;
  __atomic_store_n(&avx512_state, s, __ATOMIC_RELEASE);
  return s == 2;
}

const sf_vkern *sf__vkern(void) {
  static const sf_vkern *chosen;
  const sf_vkern *c = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
  if (c) return c;
  __builtin_cpu_init();
  if (sf__cpu_avx512())
    c = &sf__vkern_avx512;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    c = &sf__vkern_avx2;
  else
    c = &sf__vkern_base;
  __atomic_store_n(&chosen, c, __ATOMIC_RELEASE);
  return c;
}
#else
int sf__cpu_avx512(void) { return 0; }

const sf_vkern *sf__vkern(void) { return &sf__vkern_base; }
#endif
