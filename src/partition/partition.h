/* Partitioning: candidate cuts of a model along one operator order, the cost of every stage
 * between two cuts (sf_pcosts, consumed by the planner in plan/), and splitting a model into
 * standalone stage models.
 *
 *   sf_partition p;
 *   sf_partition_opts o = sf_partition_opts_default();
 *   sf__partition_analyze(model, &o, &p, err);        // p.costs: the planner's input
 *   ... sf__plan_solve(&solver, &p.costs, cluster, ...) ...
 *   sf__partition_split(model, &p.costs, k, cuts, nodes, "out/", err);  // stage-1.onnx ...
 *   sf__partition_deinit(&p);
 *
 * The model is analysed as loaded, after shape inference and constant folding (Shape/Gather/
 * Concat chains are constants, not operators) and before fusion and layout, so every stage is a
 * plain ONNX graph. Operator position q (0..L-1) is the q-th operator of the order; cut position
 * p (0..L) separates operators [0, p) from [p, L). The tensors crossing p are the non-constant
 * tensors produced before p (or graph inputs) and consumed at or after p (or graph outputs);
 * constants never cross, they are copied into every stage that reads them. See
 * docs/partition.md for the order, the cut rules and the memory model.
 */
#ifndef SF_PARTITION_H
#define SF_PARTITION_H

#include "graph/graph.h"
#include "net/net.h"
#include "onnx/onnx.h"
#include "plan/plan.h"

/* Resident memory of a worker process before its stage: the binary and shared libraries,
 * XNNPACK's initialisation, the threads' stacks and allocator arenas, the connections. Measured
 * on x86-64 Linux (Debian 12, glibc 2.36) as VmHWM of `seifer worker` serving the smallest
 * stages (tiny-cnn split in two, 20 requests) minus the modelled stage memory below: 10.5-11.5
 * MB, plus headroom for the code pages that larger stages' kernels touch. See docs/partition.md
 * "Memory model" and tests/serve_memory.sh, which fails when it drifts. */
#define SF_PROCESS_BASE_BYTES ((int64_t)25 << 19)
/* Jobs a worker keeps (serve/worker.c: 2 x queue + 4 with the default queue of 2). Each keeps
 * the buffer of the frame it received and of the outputs it encoded; jobs are reused in turn,
 * so after a few requests every one holds a stage input and a stage output. */
#define SF_STAGE_IO_SLOTS 8

enum {
  SF_ORDER_AUTO = 0, /* the candidate below with the least total crossing bytes */
  SF_ORDER_DFS = 1,  /* depth-first from the outputs, inputs visited in order */
  SF_ORDER_DFS_REV = 2, /* depth-first from the outputs, inputs visited last to first */
  SF_ORDER_FILE = 3, /* the model's own (topologically sorted) node order */
};

typedef struct sf_partition_opts {
  int n_shapes;                 /* input shapes, as sf_session_opts (unresolved dims: 1) */
  const sf_input_shape *shapes;
  int order;                    /* SF_ORDER_* */
  /* Candidate cuts: every position 0..L when thin = 0. With thin = 1: positions 0 and L, every
   * singleton cut (exactly one tensor crosses), every local minimum of the crossing bytes and
   * every position whose crossing bytes are <= thin_bytes. */
  int thin;
  double thin_bytes;
  int threads; /* runtime threads of the workers (0 = 1): the kernel choice, hence the memory of
                  the prepared kernels, can depend on it */
  /* 0 (default): no cut between an operator and the one before it when the runtime fuses them
   * (a BatchNormalization or an activation into the Conv that feeds it): such a cut carries the
   * same bytes as the cut after the fused group, and running the two halves apart costs both
   * stages time the operator costs do not show. 1: every position is a candidate. */
  int split_fusions;
} sf_partition_opts;

sf_partition_opts sf_partition_opts_default(void);

typedef struct sf_partition {
  sf_graph *g;       /* analysed copy of the model (inferred, folded, plain ONNX); owned */
  int n_ops;         /* L: operators in the order */
  int *ops;          /* node index of each position, L entries */
  int order;         /* SF_ORDER_* actually used */
  int *prod_pos;     /* per tensor: producer position, -1 graph inputs, constants, unused */
  int *last_pos;     /* per tensor: last consumer position (L for graph outputs), -1 none */
  int *cross_off;    /* L + 2: crossing tensors of position p are cross[cross_off[p] ..
                        cross_off[p + 1]) (tensor ids, in id order) */
  int *cross;
  double *pos_bytes;     /* L + 1: bytes crossing each position */
  double *pos_f32_bytes; /* L + 1: of which float32 tensors */
  double *flops_at;      /* L + 1: flops of operators [0, p) */
  int n_singleton;       /* positions with exactly one crossing tensor */
  unsigned char *fused_prev; /* L + 1: the operator at position q is fused by the runtime into
                                the one at q - 1 (a cut at q would separate them) */
  int n_fused;           /* positions so marked */
  char *nhwc;            /* per tensor: stored channels-last by the runtime (memory model) */
  /* Memory model, per operator position (L entries) and per tensor, from one compile of the
   * model with every kernel prepared once (sf__kernel_bytes): */
  int64_t *kern_bytes;   /* bytes operator q's kernel holds once prepared (packed weights,
                            indirection buffers, scratch) + constants the compiler made for it
                            that no kernel packs */
  int64_t *kern_peak;    /* the most operator q's preparation adds to the heap meanwhile (its
                            kern_bytes + transient copies, e.g. a repacked kernel) */
  int64_t *packed_bytes; /* raw bytes of the constants operator q packs (freed once packed) */
  char *kept;            /* per tensor: a constant some operator reads without packing it (held
                            for the stage's lifetime) */
  int kern_measured;     /* kern_bytes measured (else the raw bytes of the packed constants) */
  sf_pcosts costs;       /* the candidate cuts and their costs (owned) */
  double analyze_s;      /* wall time of sf__partition_analyze */
  double *codec_bytes;   /* NULL, or per tensor id x SF_CODEC_COUNT: bytes on the wire measured
                            by sf__partition_measure_codecs (descriptor included) */
} sf_partition;

/* Analyse m: order, crossings, candidate cuts, flops and the memory table costs.mem (see
 * sf__partition_stage_mem). Cost O(L^2) for the table plus one shape-inference pass. */
int sf__partition_analyze(const sf_model *m, const sf_partition_opts *o, sf_partition *p,
                          sf_err *err);
void sf__partition_deinit(sf_partition *p);
/* Free the arrays of an sf_pcosts filled by sf__partition_analyze (or a copy made the same
 * way: every pointer malloc'ed) and zero it. */
void sf__pcosts_deinit(sf_pcosts *c);

/* Crossing tensors of position pos (0..L): count, *ids set to p's storage. */
int sf__partition_crossing(const sf_partition *p, int pos, const int **ids);

/* Transfer size of the tensors crossing position pos under a codec (sf_codec_id, net/net.h).
 * Measured (sf__partition_measure_codecs): the sum of the crossing tensors' encoded sizes.
 * Otherwise: RAW = the bytes as stored, FP16 = float32 tensors at half size (others raw), and
 * LZ4 / ZFP as raw (their ratio depends on the data). */
double sf__partition_codec_bytes(const sf_partition *p, int pos, int codec);

/* Run the model once on inputs (n_inputs may be 0: a smooth synthetic image-like pattern in
 * [-1, 1] for every float input, zeros otherwise) with every crossing tensor kept, encode each
 * tensor with every codec (zfp at tolerance tol, 0 = default) and record the sizes in
 * p->codec_bytes. Costs one unfused inference with all crossing tensors alive. */
int sf__partition_measure_codecs(sf_partition *p, const sf_tensor *inputs, int n_inputs, double tol,
                                 sf_err *err);
/* Set p->costs.cut_bytes to the transfer sizes under codec (what the planner then optimises). */
void sf__partition_apply_codec(sf_partition *p, int codec);

/* Parts of a stage's memory estimate (bytes; see docs/partition.md "Memory model"). */
typedef struct sf_stage_mem {
  int64_t base;    /* SF_PROCESS_BASE_BYTES */
  int64_t arena;   /* activation arena (the runtime's plan simulated on the stage) */
  int64_t kernels; /* prepared kernels: packed weights, indirection buffers, scratch */
  int64_t consts;  /* constants held unpacked */
  int64_t io;      /* SF_STAGE_IO_SLOTS x (stage input + stage output bytes) */
  int64_t load;    /* while loading, on top of arena + consts: packed kernels so far + raw
                      weights not yet packed + the packing operator's transient copy (peak) */
  int64_t raw;     /* raw weights of the stage (the model as loaded, before compilation) */
  int64_t total;   /* base + max(arena + consts + max(kernels + io, load), raw) */
} sf_stage_mem;

/* Estimated peak resident memory of a worker serving the stage of operators [a, b)
 * (0 <= a < b <= L), as in costs.mem: the total above, parts in *m (may be NULL). -1 if a, b
 * are out of range. O(T + L) (the arena model is rebuilt); costs.mem caches every pair. */
int64_t sf__partition_stage_mem_parts(const sf_partition *p, int a, int b, sf_stage_mem *m);
/* The same total; *weights (kernels + consts) and *arena may be NULL. */
int64_t sf__partition_stage_mem(const sf_partition *p, int a, int b, int64_t *weights,
                                int64_t *arena);

/* Standalone graph of the operators [a, b): inputs = tensors crossing a, outputs = tensors
 * crossing b (a tensor crossing both is an input and an output of the stage), the constants
 * the operators read as initializers, shapes of every tensor. *out is a new uncompiled graph. */
int sf__partition_stage_graph(const sf_partition *p, int a, int b, sf_graph **out, sf_err *err);

/* Write dir/stage-1.onnx .. dir/stage-k.onnx and dir/manifest.json for the stages between
 * operator positions pos[0] = 0 < pos[1] < ... < pos[n_stages] = L of p. node_names (may be
 * NULL, entries may be NULL) name the cluster node of each stage in the manifest; model_name
 * names the model. dir must exist. */
int sf__partition_write(const sf_partition *p, const char *model_name, int n_stages,
                        const int *pos, const char **node_names, const char *dir, sf_err *err);

/* The same from cut indices into c (n_stages + 1 entries, cuts[0] = 0, last = c->n - 1), with
 * c made by sf__partition_analyze of m with default options (the order is recomputed and must
 * give the same number of operators). */
int sf__partition_split(const sf_model *m, const sf_pcosts *c, int n_stages, const int *cuts,
                        const char **node_names, const char *dir, sf_err *err);

#endif
