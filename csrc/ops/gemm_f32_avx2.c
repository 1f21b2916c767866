/* The AVX2 kernel of the batch-invariant f32 product (CPUs without AVX-512): tiles of 4 weight
 * rows x 2 activation rows (8 accumulators of the 16 registers), remainders one row at a time;
 * every pair sees the same FMAs in the same order in any tile (ops/gemm_f32_avx512.c). */
#pragma GCC target("avx2,fma")
#include <immintrin.h>

#include "ops/gemm_f32_kernels.h"

/* The fixed tree: (l0+l4, l1+l5, l2+l6, l3+l7), then (0+2, 1+3), then their sum. */
static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __attribute__((always_inline)) void tile(const float *w, int64_t k, const float *x, const int rows,
                                                       const int cols, float *y, int64_t ldy)
{
    __m256 acc[4][2];
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            acc[r][c] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= k; j += 8) {
        __m256 xv[2];
        for (int c = 0; c < cols; c++)
            xv[c] = _mm256_loadu_ps(x + c * k + j);
        for (int r = 0; r < rows; r++) {
            const __m256 wv = _mm256_loadu_ps(w + r * k + j);
            for (int c = 0; c < cols; c++)
                acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    if (j < k) {
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(k - j)), lane);
        __m256 xv[2];
        for (int c = 0; c < cols; c++)
            xv[c] = _mm256_maskload_ps(x + c * k + j, mask);
        for (int r = 0; r < rows; r++) {
            const __m256 wv = _mm256_maskload_ps(w + r * k + j, mask);
            for (int c = 0; c < cols; c++)
                acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            y[c * ldy + r] = hsum(acc[r][c]);
}

void pyllm_gemm_f32_rows_avx2(const float *w, int64_t k, const float *x, int64_t m, int64_t row0, int64_t row1,
                              float *y, int64_t ldy)
{
    int64_t r = row0;
    for (; r + 4 <= row1; r += 4) {
        int64_t i = 0;
        for (; i + 2 <= m; i += 2)
            tile(w + r * k, k, x + i * k, 4, 2, y + i * ldy + r, ldy);
        for (; i < m; i++)
            tile(w + r * k, k, x + i * k, 4, 1, y + i * ldy + r, ldy);
    }
    for (; r < row1; r++) {
        int64_t i = 0;
        for (; i + 2 <= m; i += 2)
            tile(w + r * k, k, x + i * k, 1, 2, y + i * ldy + r, ldy);
        for (; i < m; i++)
            tile(w + r * k, k, x + i * k, 1, 1, y + i * ldy + r, ldy);
    }
}
