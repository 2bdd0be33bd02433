/* Runtime internals shared with the partitioner: what kernels hold once prepared.
 *
 *   sf_graph *g = clone of the model;  sf__graph_compile(g, &co, &cr, err);
 *   int64_t *bytes = calloc(g->n_nodes, sizeof *bytes), *peak = calloc(g->n_nodes, sizeof *peak);
 *   sf__kernel_bytes(g, cr.arena_bytes, 1, bytes, peak, err);  // per node; node->packed_inputs
 */
#ifndef SF_RUNTIME_SESSION_H
#define SF_RUNTIME_SESSION_H

#include "graph/graph.h"

/* Prepare every live node of the compiled graph g (sf__graph_compile done, arena not bound) on
 * a scratch arena of arena_bytes, the way a session with `threads` threads does, and release it
 * again at once. For node i (g->n_nodes entries, 0 for nodes without state): bytes[i] = what
 * its state holds (packed weights, indirection buffers, scratch), peak[i] = the most the heap
 * held above its level before, while preparing (bytes[i] + transient copies: seen at every
 * XNNPACK allocation). Measured from the allocator's statistics (no other thread should
 * allocate meanwhile); where the allocator cannot tell, bytes[i] = the bytes of the constant
 * inputs the node packs and peak[i] = twice that. node->packed_inputs is left set. Memory: the
 * arena plus one node's state at a time. Binds g to the scratch arena (freed on return): g is
 * for analysis only afterwards. */
int sf__kernel_bytes(sf_graph *g, int64_t arena_bytes, int threads, int64_t *bytes, int64_t *peak,
                     sf_err *err);

int sf__xnn_init(sf_err *err);

#endif
