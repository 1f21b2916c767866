#include "ops/attention.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/pool.h"
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

int64_t pyllm_attention_rows_per_pass(void) { return PYLLM_ATTN_MAX_ROWS; }

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

#define SUM_LANES 16

/* s[0] + ... + s[n-1] of a row whose first valid slot is `first` (those before it are 0): 16
 * partial sums, lane l taking the slots first + l, first + l + 16, ... in order, then one fixed
 * tree. Anchored at the first valid slot, so left padding leaves the bits unchanged; plain C, so
 * every ISA gets the same bits (a single chain of adds, one slot at a time, made the softmax a
 * third of the attention in a 512-token prefill). */
static float sum_from(const float *s, int64_t first, int64_t n)
{
    float part[SUM_LANES] = {0.0f};
    int64_t j = first;
    for (; j + SUM_LANES <= n; j += SUM_LANES)
#pragma omp simd
        for (int l = 0; l < SUM_LANES; l++)
            part[l] += s[j + l];
    for (int l = 0; j + l < n; l++)
        part[l] += s[j + l];
    for (int width = SUM_LANES / 2; width > 0; width /= 2)
        for (int l = 0; l < width; l++)
            part[l] += part[l + width];
    return part[0];
}

/* The largest of s[0..n-1] (exact in any order: 16 lanes the compiler vectorizes). */
static float max_of(const float *s, int64_t n)
{
    float part[SUM_LANES];
    for (int l = 0; l < SUM_LANES; l++)
        part[l] = -INFINITY;
    int64_t j = 0;
    for (; j + SUM_LANES <= n; j += SUM_LANES)
        for (int l = 0; l < SUM_LANES; l++)
            part[l] = s[j + l] > part[l] ? s[j + l] : part[l];
    float max = -INFINITY;
    for (; j < n; j++)
        max = s[j] > max ? s[j] : max;
    for (int l = 0; l < SUM_LANES; l++)
        max = part[l] > max ? part[l] : max;
    return max;
}

/* Which of a pass's slots are valid: none before `first`; past it all, unless `holes`. */
typedef struct {
    const uint8_t *valid;
    int64_t first;
    int holes;
} slot_mask;

static slot_mask mask_of(const uint8_t *valid, int64_t width)
{
    slot_mask m = {.valid = valid, .first = 0};
    while (m.first < width && !valid[m.first])
        m.first++;
    m.holes = m.first < width && memchr(valid + m.first, 0, (size_t)(width - m.first)) != NULL;
    return m;
}

/* One query row's raw scores (n slots) become softmax weights over the valid slots (0 elsewhere);
 * slope: ALiBi's for the row's head, else 0. The sum (sum_from) leaves left padding's bits
 * unchanged. A query that sees no valid slot (padding) is left as is and gets 0: the values pass
 * reads valid slots only, and there are none. */
static int softmax_row(float *s, int64_t n, const slot_mask *mask, kernels k, const int32_t *key_position,
                       float slope, float scale)
{
    /* slope 0 (no ALiBi) adds exactly nothing; masking in a loop of its own lets this one vectorize */
    for (int64_t j = 0; j < n; j++)
        s[j] = s[j] * scale + slope * (float)key_position[j];
    const int64_t first = mask->first < n ? mask->first : n;
    for (int64_t j = 0; j < first; j++)
        s[j] = -INFINITY;
    if (mask->holes)
        for (int64_t j = first; j < n; j++)
            if (!mask->valid[j])
                s[j] = -INFINITY;
    const float max = max_of(s, n);
    if (max == -INFINITY)
        return 0;
    k.exp(s, n, max);
    const float inv_sum = 1.0f / sum_from(s, first, n);
    for (int64_t j = 0; j < n; j++)
        s[j] *= inv_sum;
    return 1;
}

/* Row r = token u · heads + head h of the pass, over the slots token u sees; normalized[u]:
 * whether token u sees a valid slot (the same for all its heads). slopes: ALiBi's per head of the
 * pass, or NULL. */
static void softmax_pass(const pyllm_attn_pass *p, kernels k, const int32_t *key_position, const float *slopes,
                         float scale, int normalized[PYLLM_ATTN_MAX_ROWS])
{
    const int64_t width = pyllm_attn_width(p);
    const slot_mask mask = mask_of(p->valid, width);
    for (int64_t u = 0; u < p->tokens; u++)
        for (int64_t h = 0; h < p->heads; h++)
            normalized[u] = softmax_row(p->scores + (u * p->heads + h) * width, p->n_slots + u, &mask, k,
                                        key_position, slopes != NULL ? slopes[h] : 0.0f, scale);
}

/* The pass's weights into the caller's probabilities of its queries t0.. of row b (zeros past the
 * slots a query sees). A query that sees no slot (left padding) gets 1/probs_len everywhere, what
 * transformers' eager softmax makes of a row masked whole. */
static void copy_probs(const pyllm_attention_shape *s, const pyllm_attn_pass *p, const int *normalized, int64_t b,
                       int64_t h0, int64_t t0)
{
    const int64_t width = pyllm_attn_width(p);
    for (int64_t u = 0; u < p->tokens; u++)
        for (int64_t h = 0; h < p->heads; h++) {
            float *dst = s->probs + ((b * s->n_heads + h0 + h) * s->n_new + t0 + u) * s->probs_len;
            const float *src = p->scores + (u * p->heads + h) * width;
            int64_t j = 0;
            if (normalized[u])
                for (; j < p->n_slots + u; j++)
                    dst[j] = src[j];
            const float rest = normalized[u] ? 0.0f : 1.0f / (float)s->probs_len;
            for (; j < s->probs_len; j++)
                dst[j] = rest;
        }
}

/* How the query heads of a group are split into passes over their KV head, and the new tokens
 * into tiles of consecutive ones that a pass takes together. */
typedef struct {
    int64_t passes, per_pass;   /* passes of up to per_pass heads each */
    int64_t tokens, tiles;      /* tiles of up to `tokens` new tokens */
    int64_t tasks;              /* batch * n_kv_heads * passes * tiles */
} work_split;

/* Whole groups (each KV head's keys and values read once for all its query heads) unless that
 * leaves threads idle: one row's decode over 4 KV heads is 4 tasks, fine for 2-4 threads, but a
 * single KV head (multi-query attention) would run on one thread. With AVX-512, several new
 * tokens fill a pass up to PYLLM_ATTN_MAX_ROWS rows (prefill), so that each load of a key or
 * value serves that many rows even where a group is one head (BLOOM, LLaMA-7B) or four, as long
 * as that leaves 4 tasks per thread for the dynamic schedule to balance. */
static work_split split_work(const pyllm_attention_shape *s, int64_t threads, pyllm_isa isa)
{
    const int64_t group = s->n_heads / s->n_kv_heads, base = s->batch * s->n_kv_heads * s->n_new;
    const int64_t widest = group < PYLLM_ATTN_MAX_ROWS ? group : PYLLM_ATTN_MAX_ROWS;
    int64_t passes = (group + widest - 1) / widest;
    while (base * passes < threads && passes < group)
        passes++;
    work_split w;
    w.per_pass = (group + passes - 1) / passes;
    w.passes = (group + w.per_pass - 1) / w.per_pass;
    w.tokens = isa == PYLLM_ISA_AVX512 ? PYLLM_ATTN_MAX_ROWS / w.per_pass : 1;
    for (;; w.tokens--) {
        w.tiles = (s->n_new + w.tokens - 1) / w.tokens;
        w.tasks = s->batch * s->n_kv_heads * w.passes * w.tiles;
        if (w.tokens == 1 || w.tasks >= 4 * threads)
            break;
    }
    return w;
}

/* One (row, KV head, pass of query heads, tile of new tokens) of the call; scores: the thread's
 * scratch. */
static void attend_task(const pyllm_attention_shape *s, const work_split *w, kernels k, const float *q,
                        const void *k_cache, const void *v_cache, const uint8_t *valid, float *out, float *scores,
                        int64_t task)
{
    const int64_t hd = s->head_dim, group = s->n_heads / s->n_kv_heads, q_stride = s->n_heads * hd;
    const int64_t tile = task % w->tiles;
    const int64_t pass = (task / w->tiles) % w->passes;
    const int64_t kvh = (task / (w->tiles * w->passes)) % s->n_kv_heads;
    const int64_t b = task / (w->tiles * w->passes * s->n_kv_heads);
    const int64_t first = pass * w->per_pass, rest = group - first;
    const int64_t h0 = kvh * group + first; /* query heads h0.. of this pass are consecutive */
    const int64_t t0 = tile * w->tokens, tokens = s->n_new - t0 < w->tokens ? s->n_new - t0 : w->tokens;
    const size_t head_base = (size_t)((b * s->n_kv_heads + kvh) * s->capacity * hd) * pyllm_kv_type_bytes(s->kv_type);
    const int64_t row = b * s->n_new + t0;
    pyllm_attn_pass p = {
        .heads = rest < w->per_pass ? rest : w->per_pass,
        .tokens = tokens,
        .n_slots = s->start + t0 + 1,
        .head_dim = hd,
        .capacity = s->capacity,
        .type = s->kv_type,
        .q = q + row * q_stride + h0 * hd,
        .row_stride = q_stride,
        .keys_t = (const char *)k_cache + head_base,
        .values = (const char *)v_cache + head_base,
        .valid = valid + b * s->capacity,
        .scores = scores,
        .out = out + row * q_stride + h0 * hd,
    };
    k.scores(&p);
    int normalized[PYLLM_ATTN_MAX_ROWS];
    softmax_pass(&p, k, s->key_position + b * s->capacity, s->alibi_slopes != NULL ? s->alibi_slopes + h0 : NULL,
                 s->scale, normalized);
    if (s->probs != NULL)
        copy_probs(s, &p, normalized, b, h0, t0);
    k.values(&p);
}

typedef struct {
    const pyllm_attention_shape *s;
    const work_split *w;
    kernels k;
    const float *q;
    const void *k_cache, *v_cache;
    const uint8_t *valid;
    float *out, *scratch;
    int64_t per_thread;
    pyllm_chunks tasks;
} attention_job;

static void attention_job_run(void *p, int self)
{
    attention_job *j = p;
    int64_t lo, hi;
    while (pyllm_chunks_next(&j->tasks, &lo, &hi))
        for (int64_t task = lo; task < hi; task++)
            attend_task(j->s, j->w, j->k, j->q, j->k_cache, j->v_cache, j->valid, j->out,
                        j->scratch + (int64_t)self * j->per_thread, task);
}

void pyllm_attention(const pyllm_attention_shape *s, const float *q, const void *k_cache, const void *v_cache,
                     const uint8_t *valid, float *out, float *scratch)
{
    const pyllm_isa isa = pyllm_gemv_isa();
    const int threads = pyllm_pool_threads();
    const work_split w = split_work(s, threads, isa);
    attention_job j = {.s = s, .w = &w, .k = kernels_for(isa), .q = q, .k_cache = k_cache, .v_cache = v_cache,
                       .valid = valid, .out = out, .scratch = scratch,
                       .per_thread = pyllm_attention_rows_per_pass() * s->capacity};
    pyllm_chunks_init(&j.tasks, w.tasks, 1);
    pyllm_pool_run(attention_job_run, &j, pyllm_parallel(w.tasks > 1) ? threads : 1);
}
