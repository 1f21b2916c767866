/* Linear layers: y[M, N] = x[M, K] · Wᵀ (+ b), W given as Hugging Face stores it, [N, K]
 * row-major, kept in one of the weight types of ops/quant.h.
 *
 * float32 weights stay as given, [n, k] row-major: decode (M <= PYLLM_GEMV_MAX_M) streams them
 * through our own kernel (ops/gemm_f32.h: one pass, at the memory wall, where oneDNN 3.2's M = 1
 * matmul on its packed layout read 25 GB/s against our 34), prefill hands them to oneDNN's GEMM in
 * place (its [k, n] operand with strides (1, k)).
 * Low-precision weights keep our own layout (ops/quant.h) and take two paths by M:
 *   - M <= PYLLM_GEMV_MAX_M (decode): our kernels (ops/gemv.h), a stream of the weight bytes;
 *   - larger M (prefill, big batches): on AVX-512, the block types run the same kernels blocked
 *     for the caches (pyllm_gemv_tiled: int8 dot products, faster than dequantizing for a bf16
 *     GEMM) and bf16 weights oneDNN's bf16 GEMM in place, the activations rounded to bf16; on
 *     CPUs without AVX-512 BF16, oneDNN's f32 GEMM with the weights dequantized to f32 a tile of
 *     rows at a time. f32 accumulation and output everywhere.
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

/* One oneDNN matmul: src [m, k] dense, weights [n, k] row-major (its [k, n] operand with strides
 * (1, k)), both of element type dt (f32 or bf16), dst f32 [m, n] in rows of ldd floats. */
typedef struct {
    int dt;               /* dnnl_data_type_t */
    int64_t m, k, n, ldd;
    uint64_t last_use;
    dnnl_primitive_t primitive;
    dnnl_memory_t src, dst, weights; /* data handles set at each call */
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
    int prefill_dt;         /* dnnl_bf16 or dnnl_f32, decided at init (matmul.c decide_prefill_type) */
    int prefill_amx;        /* oneDNN runs that bf16 GEMM on AMX tiles (decided there too) */
    int batch_invariant;    /* layers made from now on compute each row alone (see above) */
} pyllm_matmul_ctx;

typedef struct {
    int64_t k, n;
    pyllm_weight_type type;
    pyllm_qweight q;               /* every type but F32 */
    int invariant;                 /* made in batch-invariant mode */
    float *plain;                  /* F32: the weights [n, k] row-major (pyllm_alloc_big) */
    float *bias;                   /* [n] or NULL */
} pyllm_linear;

pyllm_status pyllm_matmul_ctx_init(pyllm_matmul_ctx *ctx);
void pyllm_matmul_ctx_release(pyllm_matmul_ctx *ctx);

/* Pack weight[n, k] (row-major, elements of src_type) as `type` and copy bias[n] (may be NULL),
 * for the ctx's mode (batch_invariant). src_type may be ggml blocks (a GGUF tensor): Q8_0, Q4_0
 * and Q4_1 blocks packed as int8, int4 and q4_1 keep their values (no re-quantizing); any other
 * pair is dequantized to float32 first. */
pyllm_status pyllm_linear_init(pyllm_linear *lin, pyllm_matmul_ctx *ctx, pyllm_weight_type type, const void *weight,
                               pyllm_source_type src_type, const float *bias, int64_t n, int64_t k);

/* Bytes of the weight in its layout (and bias). */
size_t pyllm_linear_bytes(const pyllm_linear *lin);
void pyllm_linear_release(pyllm_linear *lin);

/* Create (if not cached yet) the primitive and the scratch for m rows, so a loop that follows
 * creates and allocates nothing. */
pyllm_status pyllm_linear_prepare(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, int64_t m);

/* What prefill (m > PYLLM_GEMV_MAX_M, outside batch-invariant mode) multiplies in on this CPU for
 * weights of this type: "float32", "bfloat16" (rounded activations against bf16 weights) or "int8"
 * (the decode kernels' 8-bit activations against the blocks). */
const char *pyllm_matmul_prefill_compute(pyllm_matmul_ctx *ctx, pyllm_weight_type type);

/* y[m, n] = x[m, k] · Wᵀ + b. x and y are dense row-major f32 buffers that do not overlap. */
pyllm_status pyllm_linear_forward(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, const float *x,
                                  float *y, int64_t m);

/* The same for several layers that read the same x (q, k, v; gate, up), ys[i] [m, lins[i]->n]:
 * in decode their low-precision products share one preparation of x and one parallel region
 * (ops/gemv.h); results equal pyllm_linear_forward's on each, bit for bit. */
#define PYLLM_LINEAR_MANY_MAX 4
pyllm_status pyllm_linear_forward_many(pyllm_matmul_ctx *ctx, const pyllm_linear *const *lins, int count,
                                       const float *x, float *const *ys, int64_t m);

#endif
