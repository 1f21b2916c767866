/* The AVX-512 kernels (F, BW, VL, VNNI, BF16), one weight row at a time: a single sequential
 * stream of weight bytes, which the hardware prefetchers follow. Four rows at a time (sharing each
 * load of the activations) made four streams, each a page or so long, that the prefetchers kept
 * losing: one thread read a 16384 x 8192 matrix from DRAM at 7.6 GB/s (Q4_0), 10.6 (Q8_0) and 14.9
 * (bf16) with four rows, 19.5, 20.9 and 20.3 GB/s with one (software prefetch did not help). Each
 * weight load serves a tile of activation rows instead (batched decode, prefill). bf16 weights meet bf16 activations in vdpbf16ps; the block types meet 8-bit
 * activations in vpdpbusd (unsigned x signed bytes, 16 int32 lanes of 4 products each):
 *   Q8_0: 64 weight bytes = 2 blocks; the signed weights enter as w + 128 (a xor) and the lane's
 *         accumulator starts at -128 · Σ x of the lane, so it ends at Σ w x exactly;
 *   Q4:   64 weight bytes = 4 blocks; low and high nibbles (0..15) meet the activations prepared
 *         in that order; Q4_0's -8 offset is folded into the starting accumulator the same way,
 *         Q4_1's minimum enters as m · d_x · Σ q_x per block.
 * Each lane's int32 becomes a float and is scaled by its block's d_w · d_x, picked from a vector
 * of 16 block scales by a permute. Missing blocks at the end of a row load as zeros and have zero
 * scales and zero activations, so they add nothing. */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,f16c")
#include <immintrin.h>

#include "ops/gemv_kernels.h"

#define ROWS 1  /* weight rows per tile: one stream, see above */
#define COLS 4  /* activation rows per bf16 tile */
#define QCOLS 2 /* activation rows per block-type tile (its scales take registers too) */

/* Weight row r against activation rows i..i+cols-1: each load of a weight vector serves `cols`
 * activation rows (prefill, batched decode). Each pair has two accumulators, for the even and the
 * odd 32-element chunks of k (one chain of vdpbf16ps per pair left them latency-bound: 4 chains
 * for up to 4 x 32 x 32 products a step), added at the end. Every pair's accumulators see the same
 * dot products in the same order whatever the tile, so a pair's result never depends on m. */
static inline __attribute__((always_inline)) void bf16_tile(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                              int64_t r, int64_t i, const int cols, float *y,
                                                              int64_t ldy)
{
    const int64_t k = w->k;
    const uint16_t *wr = (const uint16_t *)w->quants + r * k;
    const uint16_t *x = a->bf16 + i * k;
    __m512 acc[2][COLS];
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < cols; c++)
            acc[h][c] = _mm512_setzero_ps();
    for (int64_t j = 0; j < k; j += 64) {
        for (int h = 0; h < 2; h++) {
            const int64_t jj = j + 32 * h, left = k - jj;
            const __mmask32 mask = left >= 32 ? 0xffffffffu : left <= 0 ? 0u : (1u << left) - 1;
            const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(mask, wr + jj);
            for (int c = 0; c < cols; c++)
                acc[h][c] = _mm512_dpbf16_ps(acc[h][c], wv, (__m512bh)_mm512_maskz_loadu_epi16(mask, x + c * k + jj));
        }
    }
    for (int c = 0; c < cols; c++)
        y[(i + c) * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][c], acc[1][c]));
}

/* Weight row r against every activation row: tiles of COLS, then one tile of the rest (so the row
 * is read from cache once per tile, not once per leftover activation row). */
static inline __attribute__((always_inline)) void bf16_rows(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                              int64_t r, float *y, int64_t ldy)
{
    int64_t i = 0;
    for (; i + COLS <= a->m; i += COLS)
        bf16_tile(w, a, r, i, COLS, y, ldy);
    switch (a->m - i) {
    case 3: bf16_tile(w, a, r, i, 3, y, ldy); break;
    case 2: bf16_tile(w, a, r, i, 2, y, ldy); break;
    case 1: bf16_tile(w, a, r, i, 1, y, ldy); break;
    default: break;
    }
}

/* Weight rows r..r+rows-1 against activation rows i..i+cols-1 (as bf16_tile: each weight vector
 * loaded once for `cols` rows, every pair's operations unchanged). */
static inline __attribute__((always_inline)) void block_tile(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                               int64_t r, const int rows, int64_t i, const int cols,
                                                               float *y, int64_t ldy, const pyllm_weight_type type)
{
    const int64_t nb = w->blocks, padded = a->groups * a->group_blocks;
    const int q8 = type == PYLLM_WEIGHT_Q8_0, q4_1 = type == PYLLM_WEIGHT_Q4_1;
    const int64_t per_group = q8 ? 2 : 4;              /* blocks per 64 weight bytes */
    const int64_t block_bytes = q8 ? 32 : 16;
    const uint8_t *wq = (const uint8_t *)w->quants + r * nb * block_bytes;
    const __m512i flip = _mm512_set1_epi8((char)0x80), low4 = _mm512_set1_epi8(0x0f);
    /* lane -> block within the group: Q8_0 8 lanes a block, Q4 4 */
    const __m512i lane_block = q8 ? _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
                                  : _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const int8_t *xq[QCOLS];
    const float *xd[QCOLS];
    const int32_t *xsum[QCOLS], *corr[QCOLS];
    for (int c = 0; c < cols; c++) {
        xq[c] = a->q + (i + c) * a->row_bytes;
        xd[c] = a->d + (i + c) * padded;
        xsum[c] = a->qsum + (i + c) * padded;
        corr[c] = a->corr + (i + c) * a->groups * 16;
    }
    __m512 acc[ROWS][QCOLS], acc_min[ROWS][QCOLS];
    for (int rr = 0; rr < rows; rr++)
        for (int c = 0; c < cols; c++)
            acc[rr][c] = acc_min[rr][c] = _mm512_setzero_ps();
    for (int64_t b0 = 0; b0 < nb; b0 += 16) {
        const int64_t nblk = nb - b0 < 16 ? nb - b0 : 16;
        const __mmask16 smask = (__mmask16)((1u << nblk) - 1);
        __m512 scale[ROWS][QCOLS];
        for (int c = 0; c < cols; c++) {
            const __m512 xs = _mm512_maskz_loadu_ps(smask, xd[c] + b0);
            for (int rr = 0; rr < rows; rr++) {
                scale[rr][c] = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(smask, w->scales + (r + rr) * nb + b0)), xs);
                if (q4_1) {
                    const __m512 sx = _mm512_mul_ps(xs, _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(smask, xsum[c] + b0)));
                    const __m512 mins = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(smask, w->mins + (r + rr) * nb + b0));
                    acc_min[rr][c] = _mm512_fmadd_ps(mins, sx, acc_min[rr][c]);
                }
            }
        }
        for (int64_t g = 0; g * per_group < nblk; g++) {
            const int64_t b = b0 + g * per_group, here = nblk - g * per_group;
            const __mmask64 wmask = here >= per_group ? ~(__mmask64)0 : ((__mmask64)1 << (here * block_bytes)) - 1;
            const int64_t group = b / per_group;
            const __m512i pick = _mm512_add_epi32(lane_block, _mm512_set1_epi32((int)(g * per_group)));
            __m512i start[QCOLS];
            for (int c = 0; c < cols; c++)
                start[c] = _mm512_load_si512(corr[c] + group * 16);
            if (q8) {
                __m512i xv[QCOLS];
                for (int c = 0; c < cols; c++)
                    xv[c] = _mm512_load_si512(xq[c] + b * 32);
                for (int rr = 0; rr < rows; rr++) {
                    const __m512i wv = _mm512_xor_si512(_mm512_maskz_loadu_epi8(wmask, wq + (rr * nb + b) * 32), flip);
                    for (int c = 0; c < cols; c++) {
                        const __m512i dot = _mm512_dpbusd_epi32(start[c], wv, xv[c]);
                        acc[rr][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(pick, scale[rr][c]), acc[rr][c]);
                    }
                }
            } else {
                __m512i xlo[QCOLS], xhi[QCOLS];
                for (int c = 0; c < cols; c++) {
                    xlo[c] = _mm512_load_si512(xq[c] + group * 128);
                    xhi[c] = _mm512_load_si512(xq[c] + group * 128 + 64);
                }
                for (int rr = 0; rr < rows; rr++) {
                    const __m512i raw = _mm512_maskz_loadu_epi8(wmask, wq + (rr * nb + b) * 16);
                    const __m512i lo = _mm512_and_si512(raw, low4);
                    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
                    for (int c = 0; c < cols; c++) {
                        const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start[c], lo, xlo[c]), hi, xhi[c]);
                        acc[rr][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(pick, scale[rr][c]), acc[rr][c]);
                    }
                }
            }
        }
    }
    for (int rr = 0; rr < rows; rr++)
        for (int c = 0; c < cols; c++)
            y[(i + c) * ldy + r + rr] = _mm512_reduce_add_ps(acc[rr][c]) + (q4_1 ? _mm512_reduce_add_ps(acc_min[rr][c]) : 0.0f);
}

static inline __attribute__((always_inline)) void block_rows(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                               int64_t r, const int rows, float *y, int64_t ldy,
                                                               const pyllm_weight_type type)
{
    int64_t i = 0;
    for (; i + QCOLS <= a->m; i += QCOLS)
        block_tile(w, a, r, rows, i, QCOLS, y, ldy, type);
    for (; i < a->m; i++)
        block_tile(w, a, r, rows, i, 1, y, ldy, type);
}

/* One instance per block type, so that its sizes are constants in the loops (a runtime type
 * left an integer division and the type tests in the innermost loop). */
static void block_rows_of(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t r, int64_t row1, float *y,
                          int64_t ldy, const pyllm_weight_type type)
{
    for (; r + ROWS <= row1; r += ROWS)
        block_rows(w, a, r, ROWS, y, ldy, type);
    for (; r < row1; r++)
        block_rows(w, a, r, 1, y, ldy, type);
}

void pyllm_gemv_rows_avx512(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t row0, int64_t row1,
                            float *y, int64_t ldy)
{
    int64_t r = row0;
    if (w->type == PYLLM_WEIGHT_BF16) {
        for (; r < row1; r++)
            bf16_rows(w, a, r, y, ldy);
        return;
    }
    switch (w->type) {
    case PYLLM_WEIGHT_Q8_0:
        block_rows_of(w, a, r, row1, y, ldy, PYLLM_WEIGHT_Q8_0);
        break;
    case PYLLM_WEIGHT_Q4_0:
        block_rows_of(w, a, r, row1, y, ldy, PYLLM_WEIGHT_Q4_0);
        break;
    default:
        block_rows_of(w, a, r, row1, y, ldy, PYLLM_WEIGHT_Q4_1);
        break;
    }
}

/* ---- activations: ggml's Q8 scheme, 16 lanes at a time ------------------------------------ */

/* roundf's half away from zero, as pyllm_round_half_away, lane by lane (the same operations). */
static inline __attribute__((always_inline)) __m512 round_half_away16(__m512 x)
{
    const __m512 t = _mm512_roundscale_ps(x, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(x, t));
    const __m512 away = _mm512_or_ps(_mm512_and_ps(x, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(1.0f));
    return _mm512_mask_add_ps(t, _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ), t, away);
}

void pyllm_gemv_prepare_avx512(const pyllm_qweight *w, const float *x, int interleave_q4, pyllm_gemv_act *a,
                               int64_t u0, int64_t u1)
{
    const int64_t k = w->k, group_blocks = a->group_blocks, padded_blocks = a->groups * group_blocks;
    const int32_t offset = w->type == PYLLM_WEIGHT_Q8_0 ? 128 : w->type == PYLLM_WEIGHT_Q4_0 ? 8 : 0;
    const int64_t vectors = group_blocks == 4 ? 2 : 1;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t i = u / a->groups, g = u % a->groups;
        int8_t *q = a->q + i * a->row_bytes;
        for (int64_t b = g * group_blocks; b < (g + 1) * group_blocks; b++) {
            const int64_t left = k - b * PYLLM_QBLOCK, n = left < 0 ? 0 : left < PYLLM_QBLOCK ? left : PYLLM_QBLOCK;
            const __mmask16 m0 = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
            const __mmask16 m1 = n >= 32 ? (__mmask16)0xffff : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
            const float *xb = x + i * k + b * PYLLM_QBLOCK;
            const __m512 lo = _mm512_maskz_loadu_ps(m0, xb), hi = _mm512_maskz_loadu_ps(m1, xb + 16);
            const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
            const float scale = amax / 127.0f, inv = scale != 0.0f ? 1.0f / scale : 0.0f;
            const __m512i qlo = _mm512_cvttps_epi32(round_half_away16(_mm512_mul_ps(lo, _mm512_set1_ps(inv))));
            const __m512i qhi = _mm512_cvttps_epi32(round_half_away16(_mm512_mul_ps(hi, _mm512_set1_ps(inv))));
            a->d[i * padded_blocks + b] = scale;
            a->qsum[i * padded_blocks + b] = _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
            int8_t *first = q + b * PYLLM_QBLOCK, *second = first + 16;
            if (interleave_q4) { /* as pyllm_gemv_prepare: a group's 64 low-nibble partners, then its 64 high */
                first = q + (b / 4) * 128 + (b % 4) * 16;
                second = first + 64;
            }
            _mm_storeu_si128((__m128i *)first, _mm512_cvtepi32_epi8(qlo));
            _mm_storeu_si128((__m128i *)second, _mm512_cvtepi32_epi8(qhi));
        }
        /* per VNNI lane, -offset times the sum of its 4 activation bytes (over both vectors for Q4) */
        __m512i sums = _mm512_setzero_si512();
        for (int64_t v = 0; v < vectors; v++)
            sums = _mm512_dpbusd_epi32(sums, _mm512_set1_epi8(1), _mm512_loadu_si512(q + (g * vectors + v) * 64));
        _mm512_storeu_si512(a->corr + (i * a->groups + g) * 16, _mm512_mullo_epi32(sums, _mm512_set1_epi32(-offset)));
    }
}
