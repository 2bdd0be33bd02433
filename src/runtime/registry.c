/* Operator registry: maps ONNX op types to their definitions in runtime/ops/. */
#include <string.h>

#include "runtime/op.h"

/* Weak references: an op whose kernel file is absent from the build is simply unsupported. */
#define SF__OP_WEAK(name) extern const sf_op_def sf__op_##name __attribute__((weak));
SF_OP_LIST(SF__OP_WEAK)
#undef SF__OP_WEAK

static const sf_op_def *const all_ops[] = {
#define SF__OP_PTR(name) &sf__op_##name,
    SF_OP_LIST(SF__OP_PTR)
#undef SF__OP_PTR
};

static const sf_op_def *const internal_ops[] = {
#define SF__OP_PTR(name) &sf__op_##name,
    SF_INTERNAL_OP_LIST(SF__OP_PTR)
#undef SF__OP_PTR
};

const sf_op_def *sf__op_find(const char *domain, const char *op_type) {
  if (domain && !strcmp(domain, "seifer")) {
    for (size_t i = 0; i < sizeof internal_ops / sizeof internal_ops[0]; i++)
      if (!strcmp(internal_ops[i]->op_type, op_type)) return internal_ops[i];
    return NULL;
  }
  if (domain && domain[0] && strcmp(domain, "ai.onnx") != 0) return NULL;
  for (size_t i = 0; i < sizeof all_ops / sizeof all_ops[0]; i++) {
    const sf_op_def *d = all_ops[i];
    if (d && d->op_type && !strcmp(d->op_type, op_type)) return d;
  }
  return NULL;
}

const char *const *sf__op_names(void) {
  static const char *names[sizeof all_ops / sizeof all_ops[0] + 1];
  int n = 0;
  for (size_t i = 0; i < sizeof all_ops / sizeof all_ops[0]; i++)
    if (all_ops[i] && all_ops[i]->op_type) names[n++] = all_ops[i]->op_type;
  names[n] = NULL;
  return names;
}
