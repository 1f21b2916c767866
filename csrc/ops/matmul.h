/* Linear layers on oneDNN: y[M, N] = x[M, K] · Wᵀ (+ b), W given as Hugging Face stores it,
 * [N, K] row-major. The weight is reordered once, at load, into the blocked layout oneDNN's
 * matmul prefers; primitives are created once per (M, K, N, bias) and kept in a small cache
 * shared by every layer of a model, so the token loop creates nothing. */
#ifndef PYLLM_OPS_MATMUL_H
#define PYLLM_OPS_MATMUL_H

#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "core/error.h"

#define PYLLM_MATMUL_CACHE_SIZE 48

typedef struct {
    int64_t m, k, n;
    int has_bias;
    uint64_t last_use;
    dnnl_primitive_t primitive;
    dnnl_memory_t src, dst; /* data handles set at each call */
} pyllm_matmul_entry;

/* One per model: the engine, the stream, and the primitive cache. Not thread-safe: the
 * model serialises its calls. */
typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    uint64_t clock;
    pyllm_matmul_entry cache[PYLLM_MATMUL_CACHE_SIZE];
} pyllm_matmul_ctx;

typedef struct {
    int64_t k, n;
    dnnl_memory_desc_t weights_md; /* the packed layout */
    void *packed;                  /* weights in that layout (pyllm_alloc_big) */
    float *bias;                   /* [n] or NULL */
    dnnl_memory_t weights_mem, bias_mem;
} pyllm_linear;

pyllm_status pyllm_matmul_ctx_init(pyllm_matmul_ctx *ctx);
void pyllm_matmul_ctx_release(pyllm_matmul_ctx *ctx);

/* Pack weight[n, k] (f32, row-major) and copy bias[n] (may be NULL). */
pyllm_status pyllm_linear_init(pyllm_linear *lin, pyllm_matmul_ctx *ctx, const float *weight,
                               const float *bias, int64_t n, int64_t k);
void pyllm_linear_release(pyllm_linear *lin);

/* The bytes of weight[n, k] in the layout pyllm_linear_init packs it into (oneDNN pads the
 * blocks: 16 x 64 on AVX-512, none on AVX2), without packing anything. */
pyllm_status pyllm_linear_packed_bytes(pyllm_matmul_ctx *ctx, int64_t n, int64_t k, size_t *bytes);

/* Create (if not cached yet) the primitive for m rows, so a loop that follows creates nothing. */
pyllm_status pyllm_linear_prepare(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, int64_t m);

/* y[m, n] = x[m, k] · Wᵀ + b. x and y are dense row-major f32 buffers that do not overlap. */
pyllm_status pyllm_linear_forward(pyllm_matmul_ctx *ctx, const pyllm_linear *lin, const float *x,
                                  float *y, int64_t m);

#endif
