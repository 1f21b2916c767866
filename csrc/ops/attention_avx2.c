/* The AVX2 attention kernels (with FMA and F16C): the AVX-512 kernels' scheme on 8-lane vectors,
 * with fewer accumulators (16 registers), and scalar tails that use the same fused multiply-add
 * per element, so every result has the bits the AVX-512 kernels give it. */
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "ops/attention_kernels.h"
#include "ops/quant.h"

#define INLINE static inline __attribute__((always_inline))

INLINE __m256 load8(pyllm_kv_type type, const void *base, int64_t at)
{
    switch (type) {
    case PYLLM_KV_BF16: {
        const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)base + at));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    case PYLLM_KV_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + at)));
    case PYLLM_KV_F32:
        break;
    }
    return _mm256_loadu_ps((const float *)base + at);
}

INLINE float load1(pyllm_kv_type type, const void *base, int64_t at)
{
    switch (type) {
    case PYLLM_KV_BF16:
        return pyllm_bf16_to_f32(((const uint16_t *)base)[at]);
    case PYLLM_KV_F16:
        return pyllm_f16_to_f32(((const uint16_t *)base)[at]);
    case PYLLM_KV_F32:
        break;
    }
    return ((const float *)base)[at];
}

/* Slots [j, j + 8 * NV) for H heads: H * NV accumulators (at most 8). */
INLINE void scores_block(const pyllm_attn_pass *p, const pyllm_kv_type type, const int H, const int NV, int64_t j)
{
    const int64_t n = p->n_slots, hd = p->head_dim, cap = p->capacity;
    __m256 acc[2][PYLLM_ATTN_MAX_ROWS];
    #pragma GCC unroll 16
    for (int v = 0; v < NV; v++)
        #pragma GCC unroll 16
        for (int h = 0; h < H; h++)
            acc[v][h] = _mm256_setzero_ps();
    for (int64_t i = 0; i < hd; i++) {
        __m256 k[2];
        #pragma GCC unroll 16
        for (int v = 0; v < NV; v++)
            k[v] = load8(type, p->keys_t, i * cap + j + 8 * v);
        #pragma GCC unroll 16
        for (int h = 0; h < H; h++) {
            const __m256 qh = _mm256_broadcast_ss(p->q + h * hd + i);
            #pragma GCC unroll 16
            for (int v = 0; v < NV; v++)
                acc[v][h] = _mm256_fmadd_ps(qh, k[v], acc[v][h]);
        }
    }
    #pragma GCC unroll 16
    for (int h = 0; h < H; h++)
        #pragma GCC unroll 16
        for (int v = 0; v < NV; v++)
            _mm256_storeu_ps(p->scores + h * n + j + 8 * v, acc[v][h]);
}

INLINE void scores_kernel(const pyllm_attn_pass *p, const pyllm_kv_type type, const int H)
{
    const int NV = H <= 4 ? 2 : 1;
    const int64_t n = p->n_slots, hd = p->head_dim, cap = p->capacity;
    int64_t j = 0;
    for (; j + 8 * NV <= n; j += 8 * NV)
        scores_block(p, type, H, NV, j);
    for (; j + 8 <= n; j += 8)
        scores_block(p, type, H, 1, j);
    for (; j < n; j++)
        #pragma GCC unroll 16
        for (int h = 0; h < H; h++) {
            float acc = 0.0f;
            for (int64_t i = 0; i < hd; i++)
                acc = fmaf(p->q[h * hd + i], load1(type, p->keys_t, i * cap + j), acc);
            p->scores[h * n + j] = acc;
        }
}

/* Output elements [d, d + 8 * DV) of H heads over every valid slot: H * DV accumulators. */
INLINE void values_block(const pyllm_attn_pass *p, const pyllm_kv_type type, const int H, const int DV, int64_t d)
{
    const int64_t n = p->n_slots, hd = p->head_dim;
    __m256 acc[2][PYLLM_ATTN_MAX_ROWS];
    #pragma GCC unroll 16
    for (int v = 0; v < DV; v++)
        #pragma GCC unroll 16
        for (int h = 0; h < H; h++)
            acc[v][h] = _mm256_setzero_ps();
    for (int64_t j = 0; j < n; j++) {
        if (!p->valid[j])
            continue;
        __m256 x[2];
        #pragma GCC unroll 16
        for (int v = 0; v < DV; v++)
            x[v] = load8(type, p->values, j * hd + d + 8 * v);
        #pragma GCC unroll 16
        for (int h = 0; h < H; h++) {
            const __m256 w = _mm256_broadcast_ss(p->scores + h * n + j);
            #pragma GCC unroll 16
            for (int v = 0; v < DV; v++)
                acc[v][h] = _mm256_fmadd_ps(w, x[v], acc[v][h]);
        }
    }
    #pragma GCC unroll 16
    for (int h = 0; h < H; h++)
        #pragma GCC unroll 16
        for (int v = 0; v < DV; v++)
            _mm256_storeu_ps(p->out + h * hd + d + 8 * v, acc[v][h]);
}

INLINE void values_kernel(const pyllm_attn_pass *p, const pyllm_kv_type type, const int H)
{
    const int DV = H <= 4 ? 2 : 1;
    const int64_t n = p->n_slots, hd = p->head_dim;
    int64_t d = 0;
    for (; d + 8 * DV <= hd; d += 8 * DV)
        values_block(p, type, H, DV, d);
    for (; d + 8 <= hd; d += 8)
        values_block(p, type, H, 1, d);
    for (; d < hd; d++)
        #pragma GCC unroll 16
        for (int h = 0; h < H; h++) {
            float acc = 0.0f;
            for (int64_t j = 0; j < n; j++)
                if (p->valid[j])
                    acc = fmaf(p->scores[h * n + j], load1(type, p->values, j * hd + d), acc);
            p->out[h * hd + d] = acc;
        }
}

INLINE __m256 exp8(__m256 x)
{
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(PYLLM_EXP_FLOOR), _CMP_GE_OQ);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(PYLLM_EXP_LOG2E)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-PYLLM_EXP_LN2_HI), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-PYLLM_EXP_LN2_LO), r);
    __m256 poly = _mm256_set1_ps(PYLLM_EXP_C7);
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(PYLLM_EXP_C6));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(PYLLM_EXP_C5));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(PYLLM_EXP_C4));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(PYLLM_EXP_C3));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(PYLLM_EXP_C2));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.0f));
    poly = _mm256_fmadd_ps(poly, r, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(live, _mm256_mul_ps(poly, _mm256_castsi256_ps(bits)));
}

/* exp8's steps on one element (the vector tail). */
INLINE float exp1(float x)
{
    if (!(x >= PYLLM_EXP_FLOOR))
        return 0.0f;
    const float n = nearbyintf(x * PYLLM_EXP_LOG2E);
    float r = fmaf(n, -PYLLM_EXP_LN2_HI, x);
    r = fmaf(n, -PYLLM_EXP_LN2_LO, r);
    float poly = PYLLM_EXP_C7;
    poly = fmaf(poly, r, PYLLM_EXP_C6);
    poly = fmaf(poly, r, PYLLM_EXP_C5);
    poly = fmaf(poly, r, PYLLM_EXP_C4);
    poly = fmaf(poly, r, PYLLM_EXP_C3);
    poly = fmaf(poly, r, PYLLM_EXP_C2);
    poly = fmaf(poly, r, 1.0f);
    poly = fmaf(poly, r, 1.0f);
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return poly * scale;
}

void pyllm_attn_exp_avx2(float *s, int64_t n, float max)
{
    const __m256 shift = _mm256_set1_ps(max);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(s + j, exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), shift)));
    for (; j < n; j++)
        s[j] = exp1(s[j] - max);
}

void pyllm_attn_scores_avx2(const pyllm_attn_pass *p)
{
    FOR_TYPES(scores_kernel, p)
}

void pyllm_attn_values_avx2(const pyllm_attn_pass *p)
{
    FOR_TYPES(values_kernel, p)
}
