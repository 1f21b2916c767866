/* Causal grouped-query attention of new tokens over a KV cache, softmax in f32, with an
 * optional ALiBi bias (scores = scale·q·k + slope·key_position, as BLOOM's baddbmm).
 *
 * Cache layout, per layer: keys [batch][n_kv_heads][head_dim][capacity] (transposed, stored
 * after RoPE), values [batch][n_kv_heads][capacity][head_dim], both in the cache's element type
 * (f32, bf16 or f16: read widened to f32, every product and sum in f32), and a shared
 * valid[batch][capacity] byte per slot: 0 for a left-padding slot, which no query may attend
 * to. All rows of a batch fill the same slots in step. */
#ifndef PYLLM_OPS_ATTENTION_H
#define PYLLM_OPS_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

/* Element types of the KV cache. */
typedef enum { PYLLM_KV_F32 = 0, PYLLM_KV_BF16 = 1, PYLLM_KV_F16 = 2 } pyllm_kv_type;

#define PYLLM_KV_TYPE_COUNT 3

size_t pyllm_kv_type_bytes(pyllm_kv_type type);
const char *pyllm_kv_type_name(pyllm_kv_type type);

/* Element `index` of a cache buffer of the given type, set to x (rounded to nearest even; f16
 * saturates at ±65504). */
void pyllm_kv_store(pyllm_kv_type type, void *buffer, int64_t index, float x);
/* n values: buffer[index + i * stride] = x[i] (keys are stored transposed, values in rows). */
void pyllm_kv_store_span(pyllm_kv_type type, void *buffer, int64_t index, int64_t stride, const float *x, int64_t n);

typedef struct {
    int64_t batch, n_new;       /* queries: [batch, n_new, n_heads * head_dim] */
    int64_t n_heads, n_kv_heads, head_dim;
    int64_t capacity;           /* slots per row in the cache */
    int64_t start;              /* slot of the first new token; query t sees slots <= start + t */
    float scale;                /* multiplies q·k */
    const float *alibi_slopes;  /* [n_heads]: score += slope · key position; NULL for none */
    const int32_t *key_position;/* [batch][capacity]: each slot's position (read with ALiBi) */
    pyllm_kv_type kv_type;      /* of k_cache and v_cache */
    float *probs;               /* NULL, or [batch][n_heads][n_new][probs_len]: the softmax weights
                                   of every query over slots 0..probs_len-1 (probs_len = start +
                                   n_new; 0 for a slot it cannot see) */
    int64_t probs_len;
} pyllm_attention_shape;

/* The query rows (new token, head) attention handles in one pass over a KV head's keys and
 * values: scratch must hold this many times capacity floats per thread. */
int64_t pyllm_attention_rows_per_pass(void);

/* out[batch, n_new, n_heads * head_dim]. scratch holds pyllm_attention_rows_per_pass() x
 * capacity floats per thread (pyllm_pool_threads(), core/pool.h). A query with no visible slot (a
 * padding token before any real one) gets zeros. */
void pyllm_attention(const pyllm_attention_shape *s, const float *q, const void *k_cache, const void *v_cache,
                     const uint8_t *valid, float *out, float *scratch);

#endif
