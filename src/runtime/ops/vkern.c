/* Run-time choice of the element-wise loop variant (vkern.h). */
#include "runtime/ops/vkern.h"

const sf_vkern *sf__vkern(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const sf_vkern *chosen;
  const sf_vkern *c = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
  if (c) return c;
  __builtin_cpu_init();
  c = (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? &sf__vkern_avx2
                                                                        : &sf__vkern_base;
  __atomic_store_n(&chosen, c, __ATOMIC_RELEASE);
  return c;
#else
  return &sf__vkern_base;
#endif
}
