/* The AVX-512 kernel of the batch-invariant f32 product: tiles of 4 weight rows x 4 activation
 * rows (16 accumulators; each load of a weight vector serves 4 rows of x and each load of x 4
 * weight rows), remainders one row at a time. A tile only groups pairs: every pair's accumulator
 * sees the same FMAs in the same order as it would in any other tile, and the tail past the last
 * full vector is a masked load (zeros) in every tile, so the shapes agree bit for bit. */
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,fma")
#include <immintrin.h>

#include "ops/gemm_f32_kernels.h"

static inline __attribute__((always_inline)) void tile(const float *w, int64_t k, const float *x, const int rows,
                                                       const int cols, float *y, int64_t ldy)
{
    __m512 acc[4][4];
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            acc[r][c] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= k; j += 16) {
        __m512 xv[4];
        for (int c = 0; c < cols; c++)
            xv[c] = _mm512_loadu_ps(x + c * k + j);
        for (int r = 0; r < rows; r++) {
            const __m512 wv = _mm512_loadu_ps(w + r * k + j);
            for (int c = 0; c < cols; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    if (j < k) {
        const __mmask16 mask = (__mmask16)((1u << (k - j)) - 1);
        __m512 xv[4];
        for (int c = 0; c < cols; c++)
            xv[c] = _mm512_maskz_loadu_ps(mask, x + c * k + j);
        for (int r = 0; r < rows; r++) {
            const __m512 wv = _mm512_maskz_loadu_ps(mask, w + r * k + j);
            for (int c = 0; c < cols; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            y[c * ldy + r] = _mm512_reduce_add_ps(acc[r][c]);
}

void pyllm_gemm_f32_rows_avx512(const float *w, int64_t k, const float *x, int64_t m, int64_t row0, int64_t row1,
                                float *y, int64_t ldy)
{
    int64_t r = row0;
    for (; r + 4 <= row1; r += 4) {
        int64_t i = 0;
        for (; i + 4 <= m; i += 4)
            tile(w + r * k, k, x + i * k, 4, 4, y + i * ldy + r, ldy);
        for (; i < m; i++)
            tile(w + r * k, k, x + i * k, 4, 1, y + i * ldy + r, ldy);
    }
    for (; r < row1; r++) {
        int64_t i = 0;
        for (; i + 4 <= m; i += 4)
            tile(w + r * k, k, x + i * k, 1, 4, y + i * ldy + r, ldy);
        for (; i < m; i++)
            tile(w + r * k, k, x + i * k, 1, 1, y + i * ldy + r, ldy);
    }
}
