#include "ops/attention.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>

#include "core/threads.h"
#include "ops/attention_kernels.h"
#include "ops/gemv.h"
#include "ops/quant.h"

#define F16_MAX 65504.0f

size_t pyllm_kv_type_bytes(pyllm_kv_type type)
{
    return type == PYLLM_KV_F32 ? sizeof(float) : sizeof(uint16_t);
}

const char *pyllm_kv_type_name(pyllm_kv_type type)
{
    switch (type) {
    case PYLLM_KV_F32:
        return "float32";
    case PYLLM_KV_BF16:
        return "bfloat16";
    case PYLLM_KV_F16:
        return "float16";
    }
    return "?";
}

/* F16C converts eight at a time, rounding to nearest even as pyllm_f32_to_f16 does. */
__attribute__((target("avx2,f16c")))
static void store_f16_f16c(uint16_t *out, int64_t index, int64_t stride, const float *x, int64_t n)
{
    const __m256 top = _mm256_set1_ps(F16_MAX), bottom = _mm256_set1_ps(-F16_MAX);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        /* min/max return their second operand when one is NaN: a NaN passes through, as below */
        const __m256 v = _mm256_max_ps(bottom, _mm256_min_ps(top, _mm256_loadu_ps(x + i)));
        uint16_t h[8];
        _mm_storeu_si128((__m128i *)h, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
        for (int j = 0; j < 8; j++)
            out[index + (i + j) * stride] = h[j];
    }
    for (; i < n; i++)
        pyllm_kv_store(PYLLM_KV_F16, out, index + i * stride, x[i]);
}

void pyllm_kv_store_span(pyllm_kv_type type, void *buffer, int64_t index, int64_t stride, const float *x, int64_t n)
{
    if (type == PYLLM_KV_F16 && pyllm_gemv_isa() >= PYLLM_ISA_AVX2) {
        store_f16_f16c(buffer, index, stride, x, n);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        pyllm_kv_store(type, buffer, index + i * stride, x[i]);
}

void pyllm_kv_store(pyllm_kv_type type, void *buffer, int64_t index, float x)
{
    switch (type) {
    case PYLLM_KV_F32:
        ((float *)buffer)[index] = x;
        break;
    case PYLLM_KV_BF16:
        ((uint16_t *)buffer)[index] = pyllm_f32_to_bf16(x);
        break;
    case PYLLM_KV_F16: /* saturated: a key or value past f16's range is clipped, never inf (NaN scores) */
        ((uint16_t *)buffer)[index] = pyllm_f32_to_f16(x > F16_MAX ? F16_MAX : x < -F16_MAX ? -F16_MAX : x);
        break;
    }
}

int64_t pyllm_attention_heads_per_pass(int64_t n_heads, int64_t n_kv_heads)
{
    const int64_t group = n_heads / n_kv_heads;
    return group < PYLLM_ATTN_MAX_HEADS ? group : PYLLM_ATTN_MAX_HEADS;
}

typedef struct {
    pyllm_attn_scores_fn scores;
    pyllm_attn_exp_fn exp;
    pyllm_attn_values_fn values;
} kernels;

static kernels kernels_for(pyllm_isa isa)
{
    switch (isa) {
    case PYLLM_ISA_AVX512:
        return (kernels){pyllm_attn_scores_avx512, pyllm_attn_exp_avx512, pyllm_attn_values_avx512};
    case PYLLM_ISA_AVX2:
        return (kernels){pyllm_attn_scores_avx2, pyllm_attn_exp_avx2, pyllm_attn_values_avx2};
    case PYLLM_ISA_GENERIC:
        break;
    }
    return (kernels){pyllm_attn_scores_generic, pyllm_attn_exp_generic, pyllm_attn_values_generic};
}

/* The pass's raw scores become softmax weights over the valid slots (0 elsewhere); slopes: ALiBi's
 * per head of the pass, or NULL. Each head's sum runs over the slots in order, one at a time (the
 * heads side by side), so left padding (zeros before the first real slot) leaves its bits
 * unchanged. A query that sees no valid slot (padding) is left as is: the values pass reads
 * valid slots only, and there are none. */
static int softmax_pass(const pyllm_attn_pass *p, kernels k, const int32_t *key_position, const float *slopes,
                        float scale)
{
    const int64_t n = p->n_slots;
    float max = -INFINITY;
    for (int64_t h = 0; h < p->heads; h++) {
        float *s = p->scores + h * n;
        const float slope = slopes != NULL ? slopes[h] : 0.0f;
        max = -INFINITY;
#pragma omp simd reduction(max : max)
        for (int64_t j = 0; j < n; j++) {
            /* slope 0 (no ALiBi) adds exactly nothing. */
            s[j] = p->valid[j] ? s[j] * scale + slope * (float)key_position[j] : -INFINITY;
            if (s[j] > max)
                max = s[j];
        }
        if (max == -INFINITY)
            return 0; /* the same for every head of the pass */
        k.exp(s, n, max);
    }
    float sum[PYLLM_ATTN_MAX_HEADS] = {0.0f};
    for (int64_t j = 0; j < n; j++)
        for (int64_t h = 0; h < p->heads; h++)
            sum[h] += p->scores[h * n + j];
    for (int64_t h = 0; h < p->heads; h++) {
        float *s = p->scores + h * n;
        const float inv_sum = 1.0f / sum[h];
        for (int64_t j = 0; j < n; j++)
            s[j] *= inv_sum;
    }
    return 1;
}

/* The pass's weights into the caller's probabilities of query t of row b (zeros past the slots
 * the query sees). A query that sees no slot (left padding) gets 1/probs_len everywhere, what
 * transformers' eager softmax makes of a row masked whole. */
static void copy_probs(const pyllm_attention_shape *s, const pyllm_attn_pass *p, int normalized, int64_t b,
                       int64_t h0, int64_t t)
{
    for (int64_t h = 0; h < p->heads; h++) {
        float *dst = s->probs + ((b * s->n_heads + h0 + h) * s->n_new + t) * s->probs_len;
        int64_t j = 0;
        if (normalized)
            for (; j < p->n_slots; j++)
                dst[j] = p->scores[h * p->n_slots + j];
        const float rest = normalized ? 0.0f : 1.0f / (float)s->probs_len;
        for (; j < s->probs_len; j++)
            dst[j] = rest;
    }
}

/* How the query heads of a group are split into passes over their KV head. */
typedef struct {
    int64_t passes, per_pass;   /* passes of up to per_pass heads each */
    int64_t tasks;              /* batch * n_kv_heads * passes * n_new */
} work_split;

/* Whole groups (each KV head's keys and values read once for all its query heads) unless that
 * leaves threads idle: one row's decode over 4 KV heads is 4 tasks, fine for 2-4 threads, but a
 * single KV head (multi-query attention) would run on one thread. */
static work_split split_work(const pyllm_attention_shape *s, int64_t threads)
{
    const int64_t group = s->n_heads / s->n_kv_heads, base = s->batch * s->n_kv_heads * s->n_new;
    const int64_t widest = pyllm_attention_heads_per_pass(s->n_heads, s->n_kv_heads);
    int64_t passes = (group + widest - 1) / widest;
    while (base * passes < threads && passes < group)
        passes++;
    work_split w;
    w.per_pass = (group + passes - 1) / passes;
    w.passes = (group + w.per_pass - 1) / w.per_pass;
    w.tasks = base * w.passes;
    return w;
}

/* One (row, KV head, pass of query heads, new token) of the call; scores: the thread's scratch. */
static void attend_task(const pyllm_attention_shape *s, const work_split *w, kernels k, const float *q,
                        const void *k_cache, const void *v_cache, const uint8_t *valid, float *out, float *scores,
                        int64_t task)
{
    const int64_t hd = s->head_dim, group = s->n_heads / s->n_kv_heads, q_stride = s->n_heads * hd;
    const int64_t t = task % s->n_new;
    const int64_t pass = (task / s->n_new) % w->passes;
    const int64_t kvh = (task / (s->n_new * w->passes)) % s->n_kv_heads;
    const int64_t b = task / (s->n_new * w->passes * s->n_kv_heads);
    const int64_t first = pass * w->per_pass, rest = group - first;
    const int64_t h0 = kvh * group + first; /* query heads h0.. of this pass are consecutive */
    const size_t head_base = (size_t)((b * s->n_kv_heads + kvh) * s->capacity * hd) * pyllm_kv_type_bytes(s->kv_type);
    const int64_t row = b * s->n_new + t;
    pyllm_attn_pass p = {
        .heads = rest < w->per_pass ? rest : w->per_pass,
        .n_slots = s->start + t + 1,
        .head_dim = hd,
        .capacity = s->capacity,
        .type = s->kv_type,
        .q = q + row * q_stride + h0 * hd,
        .keys_t = (const char *)k_cache + head_base,
        .values = (const char *)v_cache + head_base,
        .valid = valid + b * s->capacity,
        .scores = scores,
        .out = out + row * q_stride + h0 * hd,
    };
    k.scores(&p);
    const int normalized = softmax_pass(&p, k, s->key_position + b * s->capacity,
                                        s->alibi_slopes != NULL ? s->alibi_slopes + h0 : NULL, s->scale);
    if (s->probs != NULL)
        copy_probs(s, &p, normalized, b, h0, t);
    k.values(&p);
}

void pyllm_attention(const pyllm_attention_shape *s, const float *q, const void *k_cache, const void *v_cache,
                     const uint8_t *valid, float *out, float *scratch)
{
    const kernels k = kernels_for(pyllm_gemv_isa());
    const work_split w = split_work(s, omp_get_max_threads());
    const int64_t per_thread = pyllm_attention_heads_per_pass(s->n_heads, s->n_kv_heads) * s->capacity;
    if (pyllm_parallel(w.tasks > 1)) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t task = 0; task < w.tasks; task++)
            attend_task(s, &w, k, q, k_cache, v_cache, valid, out,
                        scratch + (int64_t)omp_get_thread_num() * per_thread, task);
    } else {
        for (int64_t task = 0; task < w.tasks; task++)
            attend_task(s, &w, k, q, k_cache, v_cache, valid, out, scratch, task);
    }
}
