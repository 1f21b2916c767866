/* The plain-C attention kernels: any x86-64 (and the reference the vector kernels follow). Keys
 * and values are widened a row piece at a time into a small buffer, then the loops run in f32. */
#include <math.h>

#include "ops/attention_kernels.h"
#include "ops/quant.h"

#define CHUNK 64

/* n elements of a cache buffer from element `at`, as f32. */
static void widen(pyllm_kv_type type, const void *src, int64_t at, int64_t n, float *dst)
{
    switch (type) {
    case PYLLM_KV_F32:
        for (int64_t i = 0; i < n; i++)
            dst[i] = ((const float *)src)[at + i];
        break;
    case PYLLM_KV_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = pyllm_bf16_to_f32(((const uint16_t *)src)[at + i]);
        break;
    case PYLLM_KV_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = pyllm_f16_to_f32(((const uint16_t *)src)[at + i]);
        break;
    }
}

void pyllm_attn_scores_generic(const pyllm_attn_pass *p)
{
    const int64_t n = p->n_slots, hd = p->head_dim;
    float k[CHUNK];
    for (int64_t j0 = 0; j0 < n; j0 += CHUNK) {
        const int64_t len = n - j0 < CHUNK ? n - j0 : CHUNK;
        for (int64_t h = 0; h < p->heads; h++)
            for (int64_t j = 0; j < len; j++)
                p->scores[h * n + j0 + j] = 0.0f;
        for (int64_t i = 0; i < hd; i++) {
            widen(p->type, p->keys_t, i * p->capacity + j0, len, k);
            for (int64_t h = 0; h < p->heads; h++) {
                const float qi = p->q[h * hd + i];
                float *s = p->scores + h * n + j0;
                for (int64_t j = 0; j < len; j++)
                    s[j] += qi * k[j];
            }
        }
    }
}

void pyllm_attn_values_generic(const pyllm_attn_pass *p)
{
    const int64_t n = p->n_slots, hd = p->head_dim;
    float v[CHUNK];
    for (int64_t h = 0; h < p->heads; h++)
        for (int64_t i = 0; i < hd; i++)
            p->out[h * hd + i] = 0.0f;
    for (int64_t d0 = 0; d0 < hd; d0 += CHUNK) {
        const int64_t len = hd - d0 < CHUNK ? hd - d0 : CHUNK;
        for (int64_t j = 0; j < n; j++) {
            if (!p->valid[j])
                continue;
            widen(p->type, p->values, j * hd + d0, len, v);
            for (int64_t h = 0; h < p->heads; h++) {
                const float w = p->scores[h * n + j];
                float *o = p->out + h * hd + d0;
                for (int64_t i = 0; i < len; i++)
                    o[i] += w * v[i];
            }
        }
    }
}

void pyllm_attn_exp_generic(float *s, int64_t n, float max)
{
    for (int64_t j = 0; j < n; j++)
        s[j] = expf(s[j] - max);
}
