/* The AVX-512 attention kernels (F, BW, VL). Scores: a block of 32 or 64 slots of the transposed
 * keys is loaded once per head_dim index, widened to f32, and meets every query row of the pass
 * (one accumulator per row and 16 slots, held in registers over the whole head_dim). Values:
 * each valid slot's value row (32 elements at a time) is loaded once and added, weighted, into
 * every row's output that sees it. Block ends are masked loads and stores: no scalar tails. The
 * rows may be several tokens' (prefill), so that a model with few query heads per KV head
 * still shares each load among up to 8 rows. */
#pragma GCC target("avx512f,avx512bw,avx512vl,fma,f16c")
#include <immintrin.h>

#include "ops/attention_kernels.h"
#include "ops/exp_avx512.h"

#define INLINE static inline __attribute__((always_inline))


/* 16 elements of a cache buffer from element `at` (those outside `m` read as 0, never touched). */
INLINE __m512 load16(pyllm_kv_type type, const void *base, int64_t at, __mmask16 m)
{
    switch (type) {
    case PYLLM_KV_BF16: {
        const __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)base + at);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case PYLLM_KV_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)base + at));
    case PYLLM_KV_F32:
        break;
    }
    return _mm512_maskz_loadu_ps(m, (const float *)base + at);
}

INLINE __mmask16 mask_for(int64_t left)
{
    return left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : (__mmask16)0;
}

/* Query row r of the pass (token r / heads, head r % heads). */
INLINE const float *row_of(const pyllm_attn_pass *p, const float *base, int r)
{
    return base + (r / p->heads) * p->row_stride + (r % p->heads) * p->head_dim;
}

/* H query rows, NV vectors of 16 slots per block: H * NV accumulators (at most 16). */
INLINE void scores_kernel(const pyllm_attn_pass *p, const pyllm_kv_type type, const int H)
{
    enum { MAXV = 4 };
    const int NV = H <= 2 ? 4 : 2;
    const int64_t n = pyllm_attn_width(p), hd = p->head_dim, cap = p->capacity;
    const int bytes = type == PYLLM_KV_F32 ? 4 : 2;
    const float *q[PYLLM_ATTN_MAX_ROWS];
    #pragma GCC unroll 16
    for (int h = 0; h < H; h++)
        q[h] = row_of(p, p->q, h);
    for (int64_t j = 0; j < n; j += 16 * NV) {
        __m512 acc[MAXV][PYLLM_ATTN_MAX_ROWS];
        __mmask16 m[MAXV];
        #pragma GCC unroll 16
        for (int v = 0; v < NV; v++) {
            m[v] = mask_for(n - j - 16 * v);
            #pragma GCC unroll 16
            for (int h = 0; h < H; h++)
                acc[v][h] = _mm512_setzero_ps();
        }
        for (int64_t i = 0; i < hd; i++) {
            /* Each head_dim index is a stream of its own (keys are transposed): more than the
             * hardware prefetcher follows, so the block two ahead is asked for (measured: 1.4x
             * faster at 2,000 positions; one block ahead is too late, eight too early). */
            const char *ahead = (const char *)p->keys_t + (i * cap + j + 2 * 16 * NV) * (int64_t)bytes;
#pragma GCC unroll 4
            for (int b = 0; b < 16 * NV * bytes; b += 64)
                _mm_prefetch(ahead + b, _MM_HINT_T0);
            __m512 k[MAXV];
            #pragma GCC unroll 16
            for (int v = 0; v < NV; v++)
                k[v] = load16(type, p->keys_t, i * cap + j + 16 * v, m[v]);
            #pragma GCC unroll 16
            for (int h = 0; h < H; h++) {
                const __m512 qh = _mm512_set1_ps(q[h][i]);
                #pragma GCC unroll 16
                for (int v = 0; v < NV; v++)
                    acc[v][h] = _mm512_fmadd_ps(qh, k[v], acc[v][h]);
            }
        }
        #pragma GCC unroll 16
        for (int h = 0; h < H; h++)
            #pragma GCC unroll 16
            for (int v = 0; v < NV; v++)
                _mm512_mask_storeu_ps(p->scores + h * n + j + 16 * v, m[v], acc[v][h]);
    }
}

/* Slot j's value elements d..d+31, weighted, into the accumulators of rows first..H-1. */
INLINE void add_slot(const pyllm_attn_pass *p, const pyllm_kv_type type, const int H, int64_t j, int64_t d,
                     __mmask16 m0, __mmask16 m1, int64_t first, __m512 *acc0, __m512 *acc1)
{
    const int64_t n = pyllm_attn_width(p), hd = p->head_dim;
    const __m512 v0 = load16(type, p->values, j * hd + d, m0);
    const __m512 v1 = load16(type, p->values, j * hd + d + 16, m1);
    #pragma GCC unroll 16
    for (int h = 0; h < H; h++) {
        if (h < first)
            continue;
        const __m512 w = _mm512_set1_ps(p->scores[h * n + j]);
        acc0[h] = _mm512_fmadd_ps(w, v0, acc0[h]);
        acc1[h] = _mm512_fmadd_ps(w, v1, acc1[h]);
    }
}

/* H query rows, 32 output elements per pass over the slots: 2 * H accumulators. The slots every
 * row sees first, then the pass's last tokens - 1 slots, each seen by the rows of later tokens
 * only (a row's chain is the same whatever else the pass holds). */
INLINE void values_kernel(const pyllm_attn_pass *p, const pyllm_kv_type type, const int H)
{
    const int64_t n0 = p->n_slots, n = pyllm_attn_width(p), hd = p->head_dim;
    for (int64_t d = 0; d < hd; d += 32) {
        const __mmask16 m0 = mask_for(hd - d), m1 = mask_for(hd - d - 16);
        __m512 acc0[PYLLM_ATTN_MAX_ROWS], acc1[PYLLM_ATTN_MAX_ROWS];
        #pragma GCC unroll 16
        for (int h = 0; h < H; h++)
            acc0[h] = acc1[h] = _mm512_setzero_ps();
        for (int64_t j = 0; j < n0; j++)
            if (p->valid[j])
                add_slot(p, type, H, j, d, m0, m1, 0, acc0, acc1);
        for (int64_t j = n0; j < n; j++)
            if (p->valid[j])
                add_slot(p, type, H, j, d, m0, m1, (j - n0 + 1) * p->heads, acc0, acc1);
        #pragma GCC unroll 16
        for (int h = 0; h < H; h++) {
            float *out = (float *)row_of(p, p->out, h) + d;
            _mm512_mask_storeu_ps(out, m0, acc0[h]);
            _mm512_mask_storeu_ps(out + 16, m1, acc1[h]);
        }
    }
}

void pyllm_attn_exp_avx512(float *s, int64_t n, float max)
{
    const __m512 shift = _mm512_set1_ps(max);
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 m = mask_for(n - j);
        _mm512_mask_storeu_ps(s + j, m, pyllm_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), shift)));
    }
}

/* Instances for each element type and head count (attention_kernels.h: FOR_TYPES). */
void pyllm_attn_scores_avx512(const pyllm_attn_pass *p)
{
    FOR_TYPES(scores_kernel, p)
}

void pyllm_attn_values_avx512(const pyllm_attn_pass *p)
{
    FOR_TYPES(values_kernel, p)
}
