/* LayerNorm on oneDNN's layer normalization primitive: y = (x - mean) / sqrt(var + eps) * scale
 * + shift over the last axis, statistics in f32 (BLOOM's norms, as torch.nn.LayerNorm computes
 * them). One primitive per row count, created once and cached like the matmuls, so the token
 * loop creates nothing; the scale and shift of each layer are bound at each call. */
#ifndef PYLLM_OPS_LAYER_NORM_H
#define PYLLM_OPS_LAYER_NORM_H

#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "core/error.h"

#define PYLLM_LAYER_NORM_CACHE_SIZE 8

typedef struct {
    int64_t rows;
    uint64_t last_use;
    dnnl_primitive_t primitive;
    dnnl_memory_t src, dst, scale, shift; /* data handles set at each call */
} pyllm_layer_norm_entry;

/* Every LayerNorm of one model (they share dim and eps). Borrows the model's engine and stream. */
typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    int64_t dim;
    float eps;
    uint64_t clock;
    pyllm_layer_norm_entry cache[PYLLM_LAYER_NORM_CACHE_SIZE];
} pyllm_layer_norm;

void pyllm_layer_norm_init(pyllm_layer_norm *ln, dnnl_engine_t engine, dnnl_stream_t stream, int64_t dim,
                           float eps);
void pyllm_layer_norm_release(pyllm_layer_norm *ln);

/* Create (if not cached yet) the primitive for `rows` rows. */
pyllm_status pyllm_layer_norm_prepare(pyllm_layer_norm *ln, int64_t rows);

/* y[rows, dim] = LayerNorm(x[rows, dim]) * scale[dim] + shift[dim]; y may be x. */
pyllm_status pyllm_layer_norm_forward(pyllm_layer_norm *ln, const float *x, const float *scale,
                                      const float *shift, float *y, int64_t rows);

#endif
