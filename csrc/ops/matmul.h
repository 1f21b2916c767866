/* Linear layers: y[M, N] = x[M, K] · Wᵀ (+ b), W given as Hugging Face stores it, [N, K]
 * row-major, kept in one of the weight types of ops/quant.h.
 *
 * float32 weights are reordered once, at load, into the blocked layout oneDNN's matmul prefers.
 * Low-precision weights keep our own layout (ops/quant.h) and take two paths by M:
 *   - M <= PYLLM_GEMV_MAX_M (decode): our kernels (ops/gemv.h), a stream of the weight bytes;
 *   - larger M (prefill, big batches): oneDNN's bf16 GEMM, the activations rounded to bf16 and
 *     the weights dequantized to bf16 a tile of rows at a time (bf16 weights are used in place),
 *     f32 accumulation and output — or, on CPUs without AVX-512 BF16, the same in f32.
 * Primitives are created once per shape and kept in a small cache shared by every layer of a
 * model, and the scratch buffers are sized by pyllm_linear_prepare, so the token loop creates
 * and allocates nothing.
 *
 * Batch-invariant mode (a context's batch_invariant set before its layers are made): oneDNN picks
 * kernels and blockings, so summation orders, by M, and the low-precision paths switch kernels at
 * PYLLM_GEMV_MAX_M; so in this mode every M takes one path whose result for an activation row
 * depends on that row alone: float32 weights stay plain [n, k] for our own kernel (ops/gemm_f32.h),
 * the other types run our GEMV kernels (ops/gemv.h) for every M, PYLLM_INVARIANT_PASS_M rows per
 * call (each activation row prepared on its own, each (row, output) pair reduced in one order). */
#ifndef PYLLM_OPS_MATMUL_H
#define PYLLM_OPS_MATMUL_H

#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "core/error.h"
#include "ops/quant.h"

/* Distinct (rows, shape) pairs kept: a model has 4-6 matmul shapes, and generation wants them for
 * the prompt and for every row count from its batch down to 1 (rows end at different steps). */
#define PYLLM_MATMUL_CACHE_SIZE 96
#define PYLLM_GEMV_MAX_M 8
/* Activation rows per GEMV call in batch-invariant mode: the weights stream once per call. */
#define PYLLM_INVARIANT_PASS_M 64

typedef enum { PYLLM_MATMUL_F32_PACKED = 0, PYLLM_MATMUL_ROWS } pyllm_matmul_kind;

typedef struct {
    pyllm_matmul_kind kind;
    int64_t m, k, n, ldd; /* ldd: the output's row stride */
    int has_bias;
    uint64_t last_use;
    dnnl_primitive_t primitive;
    dnnl_memory_t src, dst, weights; /* data handles set at each call (weights: ROWS only) */
} pyllm_matmul_entry;

/* One per model: the engine, the stream, and the primitive cache. Not thread-safe: the
 * model serialises its calls. */
typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    uint64_t clock;
    pyllm_matmul_entry cache[PYLLM_MATMUL_CACHE_SIZE];
    void *scratch;          /* activations and weight tiles of the low-precision paths */
    size_t scratch_bytes;
    int prefill_dt;         /* dnnl_bf16 or dnnl_f32 once decided (matmul.c prefill_in_bf16), else 0 */
    int batch_invariant;    /* layers made from now on compute each row alone (see above) */
} pyllm_matmul_ctx;

typedef struct {
    int64_t k, n;
    pyllm_weight_type type;
    pyllm_qweight q;               /* every type but F32 */
    int invariant;                 /* made in batch-invariant mode */
    dnnl_memory_desc_t weights_md; /* the packed layout (NULL for invariant f32) */
    void *packed;                  /* weights in that layout, or plain [n, k] f32 (pyllm_alloc_big) */
    float *bias;                   /* [n] or NULL */
    dnnl_memory_t weights_mem, bias_mem;
} pyllm_linear;

pyllm_status pyllm_matmul_ctx_init(pyllm_matmul_ctx *ctx);
void pyllm_matmul_ctx_release(pyllm_matmul_ctx *ctx);

/* Pack weight[n, k] (row-major, elements of src_type) as `type` and copy bias[n] (may be NULL),
 * for the ctx's mode (batch_invariant). */
pyllm_status pyllm_linear_init(pyllm_linear *lin, pyllm_matmul_ctx *ctx, pyllm_weight_type type, const void *weight,
                               pyllm_source_type src_type, const float *bias, int64_t n, int64_t k);

/* Bytes of the packed weight (and bias). */
size_t pyllm_linear_bytes(const pyllm_linear *lin);
void pyllm_linear_release(pyllm_linear *lin);

/* The bytes of weight[n, k] in the layout pyllm_linear_init packs float32 into (oneDNN pads the
 * blocks: 16 x 64 on AVX-512, none on AVX2), without packing anything. */
pyllm_status pyllm_linear_packed_bytes(pyllm_matmul_ctx *ctx, int64_t n, int64_t k, size_t *bytes);

/* Create (if not cached yet) the primitive and the scratch for m rows, so a loop that follows
 * creates and allocates nothing. */
pyllm_status pyllm_linear_prepare(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, int64_t m);

/* Whether low-precision prefill computes in bf16 on this CPU (else in f32). */
int pyllm_matmul_prefill_in_bf16(pyllm_matmul_ctx *ctx);

/* y[m, n] = x[m, k] · Wᵀ + b. x and y are dense row-major f32 buffers that do not overlap. */
pyllm_status pyllm_linear_forward(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, const float *x,
                                  float *y, int64_t m);

#endif
