/* The AVX-512 kernel of the f32 product: tiles of weight rows x activation rows, at most 16
 * accumulators (each load of a weight vector serves the tile's rows of x, each load of x its weight
 * rows). Up to 8 activation rows (decode) the weights stream once: up to 4, a tile takes all of
 * them (4 x m); 5 to 8, two tiles walk the same weight rows span by span (2 x 8 tiles measured
 * slower). Larger m: 4 x 4 tiles, remainders one row at a time. A tile only groups pairs: every pair's accumulator
 * sees the same FMAs in the same order as it would in any other tile, and the tail past the last
 * full vector is a masked load (zeros) in every tile, so the shapes agree bit for bit. */
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,fma")
#include <immintrin.h>

#include "ops/gemm_f32_kernels.h"

/* The FMAs of columns [j0, j1) of a tile, its accumulators in acc[rows][4] (kept in memory
 * between spans); j0 and j1 multiples of 16 but for a row's end, whose tail is a masked load.
 * With `ahead` (floats), each weight load first prefetches into L2 the same column that many
 * floats on: the next tile's rows, so that DRAM streams them while this tile computes (32000 x
 * 2048 on two threads, alternating builds: m = 1 8.2-8.4 -> 7.2-7.6 ms, m = 4 9.1-9.5 -> 7.7-7.9,
 * m = 8 10.3 -> 8.3; on one thread m = 1 12.1 -> 10.3, m = 8 18.7 -> 15.4). */
static inline __attribute__((always_inline)) void span(const float *w, int64_t k, const float *x, const int rows,
                                                       const int cols, int64_t j0, int64_t j1, int64_t ahead, __m512 *state)
{
    __m512 acc[4][4];
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            acc[r][c] = state[r * 4 + c];
    int64_t j = j0;
    for (; j + 16 <= j1; j += 16) {
        __m512 xv[4];
        for (int c = 0; c < cols; c++)
            xv[c] = _mm512_loadu_ps(x + c * k + j);
        for (int r = 0; r < rows; r++) {
            if (ahead)
                _mm_prefetch((const char *)(w + r * k + j + ahead), _MM_HINT_T1);
            const __m512 wv = _mm512_loadu_ps(w + r * k + j);
            for (int c = 0; c < cols; c++)
                acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);
        }
    }
    if (j < j1) {
        const __mmask16 mask = (__mmask16)((1u << (j1 - j)) - 1);
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
            state[r * 4 + c] = acc[r][c];
}

static inline __attribute__((always_inline)) void store(const __m512 *state, const int rows, const int cols, float *y,
                                                        int64_t ldy)
{
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            y[c * ldy + r] = _mm512_reduce_add_ps(state[r * 4 + c]);
}

static inline __attribute__((always_inline)) void tile(const float *w, int64_t k, const float *x, const int rows,
                                                       const int cols, float *y, int64_t ldy)
{
    __m512 state[16];
    for (int i = 0; i < 16; i++)
        state[i] = _mm512_setzero_ps();
    span(w, k, x, rows, cols, 0, k, rows * k, state);
    store(state, rows, cols, y, ldy);
}

/* 4 + c2 activation rows (5 to 8: batched decode) against `rows` weight rows, two tiles side by side
 * over spans of 256 columns, so the weight rows come from DRAM once and again from L1 (the first
 * tile prefetches the next rows). */
#define SPAN 256
static inline __attribute__((always_inline)) void tile_pair(const float *w, int64_t k, const float *x, const int rows,
                                                            const int c2, float *y, int64_t ldy)
{
    __m512 state[2][16];
    for (int i = 0; i < 16; i++)
        state[0][i] = state[1][i] = _mm512_setzero_ps();
    for (int64_t j0 = 0; j0 < k; j0 += SPAN) {
        const int64_t j1 = k - j0 < SPAN ? k : j0 + SPAN;
        span(w, k, x, rows, 4, j0, j1, rows * k, state[0]);
        span(w, k, x + 4 * k, rows, c2, j0, j1, 0, state[1]);
    }
    store(state[0], rows, 4, y, ldy);
    store(state[1], rows, c2, y + 4 * ldy, ldy);
}

#define ALL_ROWS_PAIR(C2)                                                                        \
    do {                                                                                         \
        for (; r + 4 <= row1; r += 4)                                                            \
            tile_pair(w + r * k, k, x, 4, (C2), y + r, ldy);                                     \
        for (; r < row1; r++)                                                                    \
            tile_pair(w + r * k, k, x, 1, (C2), y + r, ldy);                                     \
    } while (0)

/* Weight rows [row0, row1) against all m (constant after inlining) activation rows. */
#define ALL_ROWS(R, M)                                                                          \
    do {                                                                                         \
        for (; r + (R) <= row1; r += (R))                                                        \
            tile(w + r * k, k, x, (R), (M), y + r, ldy);                                         \
        for (; r < row1; r++)                                                                    \
            tile(w + r * k, k, x, 1, (M), y + r, ldy);                                           \
    } while (0)

void pyllm_gemm_f32_rows_avx512(const float *w, int64_t k, const float *x, int64_t m, int64_t row0, int64_t row1,
                                float *y, int64_t ldy)
{
    int64_t r = row0;
    switch (m) {
    case 1: ALL_ROWS(4, 1); return;
    case 2: ALL_ROWS(4, 2); return;
    case 3: ALL_ROWS(4, 3); return;
    case 4: ALL_ROWS(4, 4); return;
    case 5: ALL_ROWS_PAIR(1); return;
    case 6: ALL_ROWS_PAIR(2); return;
    case 7: ALL_ROWS_PAIR(3); return;
    case 8: ALL_ROWS_PAIR(4); return;
    default: break;
    }
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
