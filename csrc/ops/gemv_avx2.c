/* The AVX2 kernels (with FMA and F16C): CPUs without AVX-512 VNNI/BF16. bf16 weights are widened
 * to f32 in registers (a shift), the block types go through maddubs (unsigned x signed bytes),
 * with the sign trick for Q8_0's signed weights. */
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>

#include "ops/gemv_kernels.h"

static float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static float dot_bf16(const uint16_t *w, const uint16_t *x, int64_t k)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t j = 0;
    for (; j + 32 <= k; j += 32)
        for (int h = 0; h < 2; h++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + j + 16 * h));
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + j + 16 * h));
            /* unpacking both the same way keeps each weight beside its activation */
            acc[2 * h] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, wv)),
                                         _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, xv)), acc[2 * h]);
            acc[2 * h + 1] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, wv)),
                                             _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, xv)), acc[2 * h + 1]);
        }
    float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; j < k; j++)
        sum += pyllm_bf16_to_f32(w[j]) * pyllm_bf16_to_f32(x[j]);
    return sum;
}

static float dot_blocks(const pyllm_qweight *w, int64_t r, const pyllm_gemv_act *a, int64_t i)
{
    const int64_t nb = w->blocks;
    const int8_t *xq = a->q + i * a->row_bytes;
    const float *xd = a->d + i * a->groups * a->group_blocks;
    const int32_t *xsum = a->qsum + i * a->groups * a->group_blocks;
    const uint16_t *scales = w->scales + r * nb;
    const __m256i ones = _mm256_set1_epi16(1);
    const __m128i low4 = _mm_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    float extra = 0.0f; /* Q4's offset or minimum, per block */
    for (int64_t b = 0; b < nb; b++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + b * PYLLM_QBLOCK));
        const float scale = _cvtsh_ss(scales[b]) * xd[b];
        __m256i products;
        if (w->type == PYLLM_WEIGHT_Q8_0) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)((const int8_t *)w->quants + (r * nb + b) * 32));
            products = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(xv, q));
        } else {
            const __m128i raw = _mm_loadu_si128((const __m128i *)((const uint8_t *)w->quants + (r * nb + b) * 16));
            const __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), low4), _mm_and_si128(raw, low4));
            products = _mm256_maddubs_epi16(q, xv);
            if (w->type == PYLLM_WEIGHT_Q4_0)
                extra += scale * (float)(-8 * xsum[b]);
            else
                extra += _cvtsh_ss(w->mins[r * nb + b]) * xd[b] * (float)xsum[b];
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(products, ones)), _mm256_set1_ps(scale), acc);
    }
    return hsum(acc) + extra;
}

void pyllm_gemv_rows_avx2(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t row0, int64_t row1,
                          float *y, int64_t ldy)
{
    for (int64_t r = row0; r < row1; r++) /* a row's weights stay in L1 across the activation rows */
        for (int64_t i = 0; i < a->m; i++)
            y[i * ldy + r] = w->type == PYLLM_WEIGHT_BF16
                                 ? dot_bf16((const uint16_t *)w->quants + r * w->k, a->bf16 + i * w->k, w->k)
                                 : dot_blocks(w, r, a, i);
}
