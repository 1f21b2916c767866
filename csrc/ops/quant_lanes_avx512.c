/* Dequantizing block-type weights stored in the AVX-512 kernels' lane order (ops/quant.h) to
 * bf16 rows, for the prefill's oneDNN GEMM. A block's 4-byte pieces lie 4 · lanes bytes apart, so
 * one gather collects the block in ggml's order and the rest is the plain dequantization, 16
 * values a vector: d · q (Q8_0), d · (q - 8) (Q4_0), d · q + m with two roundings (Q4_1), exactly
 * ggml's floats, then rounded to nearest even bf16. Going through pyllm_qblock_load and the
 * scalar code made int4 prefill 1.2x slower than the plain layout; this is as fast. */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,f16c")
#include <immintrin.h>

#include "ops/quant.h"

/* 32 floats of one block (two vectors) as bf16 into out, the first `count` of them. */
static inline void store_bf16(__m512 lo, __m512 hi, int64_t count, uint16_t *out)
{
    const __mmask32 mask = count >= 32 ? 0xffffffffu : (__mmask32)((1u << count) - 1);
    _mm512_mask_storeu_epi16(out, mask, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

void pyllm_lanes16_dequantize_row_bf16(const pyllm_qweight *w, int64_t r, uint16_t *out)
{
    const int64_t nb = w->blocks, k = w->k, block_bytes = pyllm_qblock_bytes(w->type);
    const uint8_t *row = (const uint8_t *)w->quants + r * nb * block_bytes;
    const __m512i low4 = _mm512_set1_epi32(0x0f);
    for (int64_t g = 0; g * PYLLM_LANE_GROUP < nb; g++) {
        const int64_t first = g * PYLLM_LANE_GROUP;
        const int lanes = (int)(nb - first < PYLLM_LANE_GROUP ? nb - first : PYLLM_LANE_GROUP);
        const int *base = (const int *)(row + first * block_bytes);
        for (int l = 0; l < lanes; l++) {
            const int64_t b = first + l, count = k - b * PYLLM_QBLOCK;
            const __m512 d = _mm512_set1_ps(_cvtsh_ss(w->scales[r * nb + b]));
            __m512 lo, hi;
            if (w->type == PYLLM_WEIGHT_Q8_0) {
                const __m256i at = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                                                       _mm256_set1_epi32(lanes)),
                                                    _mm256_set1_epi32(l));
                const __m256i q = _mm256_xor_si256(_mm256_i32gather_epi32(base, at, 4), _mm256_set1_epi8((char)0x80));
                lo = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q))), d);
                hi = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1))), d);
            } else {
                const __m128i at = _mm_add_epi32(_mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(lanes)),
                                                 _mm_set1_epi32(l));
                const __m512i q = _mm512_cvtepu8_epi32(_mm_i32gather_epi32(base, at, 4));
                __m512i qlo = _mm512_and_si512(q, low4), qhi = _mm512_srli_epi32(q, 4);
                if (w->type == PYLLM_WEIGHT_Q4_0) {
                    qlo = _mm512_sub_epi32(qlo, _mm512_set1_epi32(8));
                    qhi = _mm512_sub_epi32(qhi, _mm512_set1_epi32(8));
                }
                lo = _mm512_mul_ps(d, _mm512_cvtepi32_ps(qlo));
                hi = _mm512_mul_ps(d, _mm512_cvtepi32_ps(qhi));
                if (w->type == PYLLM_WEIGHT_Q4_1) {
                    const __m512 m = _mm512_set1_ps(_cvtsh_ss(w->mins[r * nb + b]));
                    lo = _mm512_add_ps(lo, m);
                    hi = _mm512_add_ps(hi, m);
                }
            }
            store_bf16(lo, hi, count, out + b * PYLLM_QBLOCK);
        }
    }
}
