#include "ops/attention.h"

#include <math.h>
#include <omp.h>
#include <string.h>

void pyllm_attention(const pyllm_attention_shape *s, const float *q, const float *k_cache, const float *v_cache,
                     const uint8_t *valid, float *out, float *scratch)
{
    const int64_t hd = s->head_dim, group = s->n_heads / s->n_kv_heads;
    const int64_t tasks = s->batch * s->n_heads * s->n_new;
    const int64_t q_stride = s->n_heads * hd;

#pragma omp parallel for schedule(dynamic, 4) if (tasks > 1)
    for (int64_t task = 0; task < tasks; task++) {
        const int64_t t = task % s->n_new;
        const int64_t h = (task / s->n_new) % s->n_heads;
        const int64_t b = task / (s->n_new * s->n_heads);
        const int64_t kvh = h / group;
        const float *qv = q + (b * s->n_new + t) * q_stride + h * hd;
        const float *keys = k_cache + (b * s->n_kv_heads + kvh) * s->capacity * hd;
        const float *values = v_cache + (b * s->n_kv_heads + kvh) * s->capacity * hd;
        const uint8_t *row_valid = valid + b * s->capacity;
        float *scores = scratch + (int64_t)omp_get_thread_num() * s->capacity;
        float *o = out + (b * s->n_new + t) * q_stride + h * hd;
        const int64_t n_slots = s->start + t + 1;

        float max = -INFINITY;
        for (int64_t j = 0; j < n_slots; j++) {
            if (!row_valid[j])
                continue;
            const float *kv = keys + j * hd;
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int64_t i = 0; i < hd; i++)
                dot += qv[i] * kv[i];
            scores[j] = dot * s->scale;
            if (scores[j] > max)
                max = scores[j];
        }
        memset(o, 0, sizeof(float) * (size_t)hd);
        if (max == -INFINITY)
            continue; /* nothing visible: a padding query */
        float sum = 0.0f;
        for (int64_t j = 0; j < n_slots; j++) {
            if (!row_valid[j])
                continue;
            scores[j] = expf(scores[j] - max);
            sum += scores[j];
        }
        const float inv_sum = 1.0f / sum;
        for (int64_t j = 0; j < n_slots; j++) {
            if (!row_valid[j])
                continue;
            const float p = scores[j] * inv_sum;
            const float *vv = values + j * hd;
#pragma omp simd
            for (int64_t i = 0; i < hd; i++)
                o[i] += p * vv[i];
        }
    }
}
