#include "ops/attention.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/threads.h"

/* One query over the first n_slots slots of its KV head: o = softmax(scale·q·Kᵀ + slope·pos) V
 * over the valid slots. Keys are stored transposed ([head_dim][capacity]) so the scores vectorise
 * across slots with no horizontal sums. Compiled for AVX-512, AVX2 and baseline x86-64, the
 * best chosen at load time from the CPU (the wheel must run on any x86-64). */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void attend_query(const float *qv, const float *keys_t, const float *values, const uint8_t *valid,
                         const int32_t *key_position, float slope, int64_t n_slots, int64_t hd, int64_t capacity,
                         float scale, float *scores, float *o)
{
    memset(scores, 0, sizeof(float) * (size_t)n_slots);
    for (int64_t i = 0; i < hd; i++) {
        const float qi = qv[i];
        const float *krow = keys_t + i * capacity;
#pragma omp simd
        for (int64_t j = 0; j < n_slots; j++)
            scores[j] += qi * krow[j];
    }
    float max = -INFINITY;
    for (int64_t j = 0; j < n_slots; j++) {
        /* slope 0 (no ALiBi) adds exactly nothing. */
        scores[j] = valid[j] ? scores[j] * scale + slope * (float)key_position[j] : -INFINITY;
        if (scores[j] > max)
            max = scores[j];
    }
    memset(o, 0, sizeof(float) * (size_t)hd);
    if (max == -INFINITY)
        return; /* nothing visible: a padding query */
    float sum = 0.0f;
    for (int64_t j = 0; j < n_slots; j++) {
        scores[j] = valid[j] ? expf(scores[j] - max) : 0.0f;
        sum += scores[j];
    }
    const float inv_sum = 1.0f / sum;
    for (int64_t j = 0; j < n_slots; j++) {
        if (!valid[j])
            continue;
        const float p = scores[j] * inv_sum;
        const float *vv = values + j * hd;
#pragma omp simd
        for (int64_t i = 0; i < hd; i++)
            o[i] += p * vv[i];
    }
}

/* One (row, head, new token) of the call; scores: the running thread's scratch. */
static void attend_task(const pyllm_attention_shape *s, const float *q, const float *k_cache, const float *v_cache,
                        const uint8_t *valid, float *out, float *scores, int64_t task)
{
    const int64_t hd = s->head_dim, group = s->n_heads / s->n_kv_heads, q_stride = s->n_heads * hd;
    const int64_t t = task % s->n_new;
    const int64_t h = (task / s->n_new) % s->n_heads;
    const int64_t b = task / (s->n_new * s->n_heads);
    const int64_t kvh = h / group;
    const int64_t head_base = (b * s->n_kv_heads + kvh) * s->capacity * hd;
    const float slope = s->alibi_slopes != NULL ? s->alibi_slopes[h] : 0.0f;
    attend_query(q + (b * s->n_new + t) * q_stride + h * hd, k_cache + head_base, v_cache + head_base,
                 valid + b * s->capacity, s->key_position + b * s->capacity, slope, s->start + t + 1, hd,
                 s->capacity, s->scale, scores, out + (b * s->n_new + t) * q_stride + h * hd);
}

void pyllm_attention(const pyllm_attention_shape *s, const float *q, const float *k_cache, const float *v_cache,
                     const uint8_t *valid, float *out, float *scratch)
{
    const int64_t tasks = s->batch * s->n_heads * s->n_new;
    if (pyllm_parallel(tasks > 1)) {
#pragma omp parallel for schedule(dynamic, 4)
        for (int64_t task = 0; task < tasks; task++)
            attend_task(s, q, k_cache, v_cache, valid, out, scratch + (int64_t)omp_get_thread_num() * s->capacity,
                        task);
    } else {
        for (int64_t task = 0; task < tasks; task++)
            attend_task(s, q, k_cache, v_cache, valid, out, scratch, task);
    }
}
