/* Element-wise loops for the build's baseline instruction set (see vkern.h). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#pragma GCC optimize("O3", "no-trapping-math")
#endif
#define SF_VK_SUFFIX _base
#define SF_VK_ISA "baseline"
#include "runtime/ops/vkern.inc"
