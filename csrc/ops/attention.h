/* Causal grouped-query attention of new tokens over a KV cache, softmax in f32, with an
 * optional ALiBi bias (scores = scale·q·k + slope·key_position, as BLOOM's baddbmm).
 *
 * Cache layout, per layer: keys [batch][n_kv_heads][head_dim][capacity] (transposed, stored
 * after RoPE), values [batch][n_kv_heads][capacity][head_dim], and a shared
 * valid[batch][capacity] byte per slot: 0 for a left-padding slot, which no query may attend
 * to. All rows of a batch fill the same slots in step. */
#ifndef PYLLM_OPS_ATTENTION_H
#define PYLLM_OPS_ATTENTION_H

#include <stdint.h>

typedef struct {
    int64_t batch, n_new;       /* queries: [batch, n_new, n_heads * head_dim] */
    int64_t n_heads, n_kv_heads, head_dim;
    int64_t capacity;           /* slots per row in the cache */
    int64_t start;              /* slot of the first new token; query t sees slots <= start + t */
    float scale;                /* multiplies q·k */
    const float *alibi_slopes;  /* [n_heads]: score += slope · key position; NULL for none */
    const int32_t *key_position;/* [batch][capacity]: each slot's position (read with ALiBi) */
} pyllm_attention_shape;

/* out[batch, n_new, n_heads * head_dim]. scratch holds capacity floats per OpenMP thread
 * (omp_get_max_threads()). A query with no visible slot (a padding token before any real
 * one) gets zeros. */
void pyllm_attention(const pyllm_attention_shape *s, const float *q, const float *k_cache, const float *v_cache,
                     const uint8_t *valid, float *out, float *scratch);

#endif
