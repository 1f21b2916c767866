/* The AVX-512 kernels (F, BW, VL, VNNI, BF16), one weight row at a time: a single sequential
 * stream of weight bytes, which the hardware prefetchers follow. Four rows at a time (sharing each
 * load of the activations) made four streams, each a page or so long, that the prefetchers kept
 * losing: one thread read a 16384 x 8192 matrix from DRAM at 7.6 GB/s (Q4_0), 10.6 (Q8_0) and 14.9
 * (bf16) with four rows, 19.5, 20.9 and 20.3 GB/s with one (software prefetch did not help them). Each
 * weight load serves a tile of activation rows instead (batched decode, prefill). bf16 weights
 * meet bf16 activations in vdpbf16ps; the block types meet 8-bit activations in vpdpbusd
 * (unsigned x signed bytes, 16 int32 lanes of 4 products each), with the weights in the lane
 * order of ops/quant.h: each 64-byte load holds 4 bytes of 16 blocks, so lane l of a group's
 * accumulator sums block l whole (Q8_0: 8 loads, stored as unsigned w + 128; Q4: 4 loads, each
 * split into low and high nibbles 0..15), starting from -offset · Σ x of the block (offset 128 for
 * Q8_0, 8 for Q4_0, 0 for Q4_1) so that it ends at Σ w x exactly. One int-to-float and one
 * multiply-add by d_w · d_x per 16 blocks follow; Q4_1's minimum enters as m · d_x · Σ q_x. The
 * layout before it (4 bytes of one block per lane) needed a conversion, a permute of the scales
 * and a multiply-add per 64 weight bytes and activation row. Missing blocks at the end of a row
 * are masked off the weight loads and have zero activations, so they add nothing. */
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma,f16c")
#include <immintrin.h>

#include "ops/gemv_kernels.h"

#define COLS 4  /* activation rows per bf16 tile */
#define BF16_ROWS 3 /* weight rows per bf16 tile, at most */
#define QCOLS 4 /* activation rows per block-type tile */
/* Software prefetch into L2, this many bytes ahead of the weight loads. The hardware prefetchers
 * alone keep one weight stream at the memory wall only while the core has little to do per byte:
 * with 2 to 8 activation rows, the time stalled on DRAM added to the time computing instead of
 * hiding it (one thread, bf16 at m = 4: 14 GB/s against 30 at m = 1). 4 KB ahead into L2
 * (prefetcht1) took batch-8 bf16 from 6.6 to 4.0 ms per 32000 x 2048 matrix and Q8_0 from 3.8
 * to 2.5, Q4_0 at m = 1 too (alternating processes: 0.92-1.46x of the probe against
 * 0.90-1.13x without), while bf16 and Q8_0 at m = 1 read slower with it (prefetches into L1, or
 * 1 or 2 KB ahead, helped less). */
#define PREFETCH_BYTES 4096
/* In decode, weight rows go M1_ROWS at a time, each still read whole in turn (a single stream),
 * their vectors summed together by reduce_lanes16 and stored as one vector. A horizontal sum and
 * a scalar store per row took about a fifth of Q4_0's time at m = 1 (perf annotate, 2048 columns:
 * a row is 4 lane groups); the sums are bit for bit the same (see reduce_lanes16). */
#define M1_ROWS 16

/* Keeps v in a register from here on. GCC otherwise folds a load of activations into every
 * vpdpbusd or vdpbf16ps that uses it, so a tile of 3 weight rows loaded each activation vector 3
 * times: 15 loads per 12 vpdpbusd in Q8_0's prefill tile, where Zen 4 does one 64-byte load a
 * cycle. Held in a register, Q8_0 at m = 512 went from 504 to 572 GOP/s and at m = 8 from 486 to
 * 591 (2048 columns, alternating builds, medians of 4 rounds); the same bits. */
static inline __attribute__((always_inline)) void in_register(__m512i *v)
{
    __asm__("" : "+v"(*v));
}

/* Lane l of the result: the reduction of v[l], as _mm512_reduce_* would give it: the maximum or the
 * sum of floats, or the sum of int32s. Four rounds each halve the vectors, pairing them with
 * shuffles (512 -> 256 -> 128 -> 64 -> 32 bits a value), instead of 16 reductions whose steps each
 * wait on the last; a permute puts the lanes back in order. Each round adds value e to value
 * e + 8, then e + 4, e + 2 and e + 1, which is GCC's _mm512_reduce_add_ps's tree, so float sums
 * come out bit for bit as its. v is overwritten. */
typedef enum { REDUCE_MAX_PS, REDUCE_ADD_PS, REDUCE_ADD_EPI32 } lane_reduction;

static inline __attribute__((always_inline)) __m512 reduce_pair(__m512 a, __m512 b, const lane_reduction op)
{
    return op == REDUCE_MAX_PS   ? _mm512_max_ps(a, b)
           : op == REDUCE_ADD_PS ? _mm512_add_ps(a, b)
                                 : _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

static inline __attribute__((always_inline)) __m512 reduce_lanes16(__m512 v[PYLLM_LANE_GROUP], const lane_reduction op)
{
    for (int p = 0; p < 8; p++) /* 256-bit halves: v[2p]'s into the low half, v[2p + 1]'s the high */
        v[p] = reduce_pair(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0x44),
                           _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0xee), op);
    for (int p = 0; p < 4; p++) /* 128-bit lane j: v[4p + j] */
        v[p] = reduce_pair(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0x88),
                           _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0xdd), op);
    for (int p = 0; p < 2; p++) /* lane j: v[8p + j] in its low pair, v[8p + 4 + j] in its high */
        v[p] = reduce_pair(_mm512_shuffle_ps(v[2 * p], v[2 * p + 1], 0x44),
                           _mm512_shuffle_ps(v[2 * p], v[2 * p + 1], 0xee), op);
    /* value 4j + t: v[j + 4t] */
    const __m512 r = reduce_pair(_mm512_shuffle_ps(v[0], v[1], 0x88), _mm512_shuffle_ps(v[0], v[1], 0xdd), op);
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), r);
}

/* 64 columns from j of a bf16 tile: the even chunk into acc[.][0], the odd one into acc[.][1]. */
static inline __attribute__((always_inline)) void bf16_step(const uint16_t *wr, int64_t k, const uint16_t *x,
                                                              const int rows, const int cols, int64_t j,
                                                              int64_t ahead, __mmask32 mask0, __mmask32 mask1,
                                                              __m512 acc[BF16_ROWS][2][COLS])
{
    for (int h = 0; h < 2; h++) {
        const int64_t jj = j + 32 * h;
        const __mmask32 mask = h == 0 ? mask0 : mask1;
        __m512bh wv[BF16_ROWS];
        for (int q = 0; q < rows; q++) {
            if (cols > 1)
                _mm_prefetch((const char *)(wr + q * k + jj) + ahead, _MM_HINT_T1);
            wv[q] = (__m512bh)_mm512_maskz_loadu_epi16(mask, wr + q * k + jj);
        }
        for (int c = 0; c < cols; c++) {
            __m512i xv = _mm512_maskz_loadu_epi16(mask, x + c * k + jj);
            if (rows > 1)
                in_register(&xv);
            for (int q = 0; q < rows; q++)
                acc[q][h][c] = _mm512_dpbf16_ps(acc[q][h][c], wv[q], (__m512bh)xv);
        }
    }
}

/* Weight rows r..r+rows-1 (rows 1 to BF16_ROWS) against activation rows i..i+cols-1: each load of a
 * weight vector serves `cols` activation rows (prefill, batched decode), each load of activations
 * `rows` weight rows (with one row, a load of x per vdpbf16ps: 2 x 4 tiles took a 32000 x 2048
 * matrix at m = 8 from 8.6 to 6.9 ms, before the prefetch above). Each pair has two
 * accumulators, for the even and the odd 32-element chunks of k
 * (one chain of vdpbf16ps per pair left them latency-bound: 4 chains for up to 4 x 32 x 32
 * products a step), added at the end. Every pair's accumulators see the same dot products in the
 * same order whatever the tile, so a pair's result never depends on m. */
static inline __attribute__((always_inline)) void bf16_tile(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                              int64_t r, const int rows, int64_t i, const int cols,
                                                              float *y, int64_t ldy, __m512 *keep)
{
    const int64_t k = w->k;
    /* one weight row: PREFETCH_BYTES ahead; several: the next rows' same columns, so that DRAM
     * keeps streaming while later tiles of activation rows compute from cache */
    const int64_t ahead = rows > 1 ? (int64_t)sizeof(uint16_t) * rows * k : PREFETCH_BYTES;
    const uint16_t *wr = (const uint16_t *)w->quants + r * k;
    const uint16_t *x = a->bf16 + i * k;
    __m512 acc[BF16_ROWS][2][COLS];
    for (int h = 0; h < 2; h++)
        for (int q = 0; q < rows; q++)
            for (int c = 0; c < cols; c++)
                acc[q][h][c] = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 64 <= k; j += 64)
        bf16_step(wr, k, x, rows, cols, j, ahead, 0xffffffffu, 0xffffffffu, acc);
    if (j < k) { /* the row's end, 1 to 63 values: masked loads (zeros past it) */
        const int64_t left = k - j;
        bf16_step(wr, k, x, rows, cols, j, ahead, left >= 32 ? 0xffffffffu : (1u << left) - 1,
                  left <= 32 ? 0u : (1u << (left - 32)) - 1, acc);
    }
    if (keep != NULL) { /* one row at m = 1: its vector, summed by the caller */
        *keep = _mm512_add_ps(acc[0][0][0], acc[0][1][0]);
        return;
    }
    for (int q = 0; q < rows; q++)
        for (int c = 0; c < cols; c++)
            y[(i + c) * ldy + r + q] = _mm512_reduce_add_ps(_mm512_add_ps(acc[q][0][c], acc[q][1][c]));
}

/* Weight rows r..r+rows-1 against every activation row: tiles of COLS, then one tile of the rest
 * (so the rows are read from cache once per tile, not once per leftover activation row). */
static inline __attribute__((always_inline)) void bf16_rows(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                              int64_t r, const int rows, float *y, int64_t ldy)
{
    int64_t i = 0;
    for (; i + COLS <= a->m; i += COLS)
        bf16_tile(w, a, r, rows, i, COLS, y, ldy, NULL);
    switch (a->m - i) {
    case 3: bf16_tile(w, a, r, rows, i, 3, y, ldy, NULL); break;
    case 2: bf16_tile(w, a, r, rows, i, 2, y, ldy, NULL); break;
    case 1: bf16_tile(w, a, r, rows, i, 1, y, ldy, NULL); break;
    default: break;
    }
}

/* Lane group g of a weight row of nb blocks (ops/quant.h), which may hold fewer than 16 lanes
 * (blocks) at the row's end: the distance between its 64-byte weight loads (4 bytes per lane), the
 * mask of its scales (one per lane) and the mask of each load. */
typedef struct {
    int64_t stride;
    __mmask16 smask;
    __mmask64 wmask;
} lane_group;

static inline __attribute__((always_inline)) lane_group group_of(int64_t nb, int64_t g)
{
    const int64_t lanes = nb - g * PYLLM_LANE_GROUP < PYLLM_LANE_GROUP ? nb - g * PYLLM_LANE_GROUP : PYLLM_LANE_GROUP;
    return (lane_group){.stride = 4 * lanes, .smask = (__mmask16)((1u << lanes) - 1),
                        .wmask = lanes == PYLLM_LANE_GROUP ? ~(__mmask64)0 : ((__mmask64)1 << (4 * lanes)) - 1};
}

/* Weight rows r..r+rows-1 (rows 1 or 2; lane order, ops/quant.h) against activation rows
 * i..i+cols-1 (prepared in the same lane order). Per lane group each lane of a pair's int32
 * accumulator collects one whole block: it starts at the pair's correction (-offset · Σ x of the
 * block), takes 8 vpdpbusd steps (Q8_0: 8 x 4 bytes; Q4: 4 x 4 bytes, low and high nibbles), then
 * becomes a float, scaled by its block's d_w · d_x in one multiply-add. Each weight load serves
 * every activation row of the tile, each load of activations every weight row (with one row, the
 * loads of x, one per vpdpbusd, bounded the product at about 200 GMAC/s in cache), and a pair's
 * operations never depend on the tile, so its result never depends on m. */
static inline __attribute__((always_inline)) void block_tile(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                               int64_t r, const int rows, int64_t i, const int cols,
                                                               float *y, int64_t ldy, const pyllm_weight_type type,
                                                               __m512 *keep, __m512 *keep_min)
{
    const int64_t nb = w->blocks, padded = a->groups * PYLLM_LANE_GROUP;
    const int q8 = type == PYLLM_WEIGHT_Q8_0, q4_1 = type == PYLLM_WEIGHT_Q4_1;
    /* weights prefetched ahead, but for Q8_0 at one activation row (see PREFETCH_BYTES) */
    const int prefetch = cols >= (q8 ? 2 : 1);
    const int64_t block_bytes = q8 ? 32 : 16, row_bytes = nb * block_bytes;
    const uint8_t *wrow = (const uint8_t *)w->quants + r * row_bytes;
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512 acc[2][QCOLS], acc_min[2][QCOLS];
    for (int q = 0; q < rows; q++)
        for (int c = 0; c < cols; c++)
            acc[q][c] = acc_min[q][c] = _mm512_setzero_ps();
    for (int64_t g = 0; g < a->groups; g++) {
        const lane_group lg = group_of(nb, g);
        const uint8_t *wg = wrow + g * PYLLM_LANE_GROUP * block_bytes;
        /* two chains of vpdpbusd per pair (even and odd steps, or low and high nibbles): one
         * chain of 8 left a row's product latency-bound (Q8_0 read 1.3x slower than before) */
        __m512i dot[2][QCOLS], dot2[2][QCOLS];
        const int8_t *xg[QCOLS];
        for (int c = 0; c < cols; c++) {
            const __m512i corr = _mm512_load_si512(a->corr + ((i + c) * a->groups + g) * PYLLM_LANE_GROUP);
            for (int q = 0; q < rows; q++) {
                dot[q][c] = corr;
                dot2[q][c] = _mm512_setzero_si512();
            }
            xg[c] = a->q + (i + c) * a->row_bytes + g * PYLLM_LANE_GROUP * PYLLM_QBLOCK;
        }
        if (q8) {
            for (int s = 0; s < 8; s += 2) {
                __m512i w0[2], w1[2];
                for (int q = 0; q < rows; q++) {
                    const uint8_t *wq = wg + q * row_bytes;
                    if (prefetch) {
                        _mm_prefetch((const char *)(wq + s * lg.stride + PREFETCH_BYTES), _MM_HINT_T1);
                        _mm_prefetch((const char *)(wq + (s + 1) * lg.stride + PREFETCH_BYTES), _MM_HINT_T1);
                    }
                    w0[q] = _mm512_maskz_loadu_epi8(lg.wmask, wq + s * lg.stride);
                    w1[q] = _mm512_maskz_loadu_epi8(lg.wmask, wq + (s + 1) * lg.stride);
                }
                for (int c = 0; c < cols; c++) {
                    __m512i x0 = _mm512_load_si512(xg[c] + s * 64), x1 = _mm512_load_si512(xg[c] + (s + 1) * 64);
                    if (rows > 1) {
                        in_register(&x0);
                        in_register(&x1);
                    }
                    for (int q = 0; q < rows; q++) {
                        dot[q][c] = _mm512_dpbusd_epi32(dot[q][c], w0[q], x0);
                        dot2[q][c] = _mm512_dpbusd_epi32(dot2[q][c], w1[q], x1);
                    }
                }
            }
        } else {
            for (int s = 0; s < 4; s++) {
                __m512i lo[2], hi[2];
                for (int q = 0; q < rows; q++) {
                    const uint8_t *wq = wg + q * row_bytes;
                    if (prefetch)
                        _mm_prefetch((const char *)(wq + s * lg.stride + PREFETCH_BYTES), _MM_HINT_T1);
                    const __m512i raw = _mm512_maskz_loadu_epi8(lg.wmask, wq + s * lg.stride);
                    lo[q] = _mm512_and_si512(raw, low4);
                    hi[q] = _mm512_andnot_si512(low4, raw); /* 16 x the high nibble */
                }
                for (int c = 0; c < cols; c++) {
                    __m512i x0 = _mm512_load_si512(xg[c] + s * 64), x1 = _mm512_load_si512(xg[c] + (s + 4) * 64);
                    if (rows > 1) {
                        in_register(&x0);
                        in_register(&x1);
                    }
                    for (int q = 0; q < rows; q++) {
                        dot[q][c] = _mm512_dpbusd_epi32(dot[q][c], lo[q], x0);
                        dot2[q][c] = _mm512_dpbusd_epi32(dot2[q][c], hi[q], x1);
                    }
                }
            }
        }
        for (int q = 0; q < rows; q++) {
            const int64_t b0 = (r + q) * nb + g * PYLLM_LANE_GROUP;
            const __m512 dw = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lg.smask, w->scales + b0));
            for (int c = 0; c < cols; c++) {
                const __m512 dx = _mm512_loadu_ps(a->d + (i + c) * padded + g * PYLLM_LANE_GROUP);
                /* Q4: dot2 holds 16 x the high nibbles' sum, exactly (no shift per load) */
                const __m512i d = _mm512_add_epi32(dot[q][c], q8 ? dot2[q][c] : _mm512_srai_epi32(dot2[q][c], 4));
                acc[q][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(dw, dx), acc[q][c]);
                if (q4_1) {
                    const __m512 mins = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lg.smask, w->mins + b0));
                    const __m512 sx = _mm512_mul_ps(dx, _mm512_cvtepi32_ps(_mm512_loadu_si512(a->qsum + (i + c) * padded + g * PYLLM_LANE_GROUP)));
                    acc_min[q][c] = _mm512_fmadd_ps(mins, sx, acc_min[q][c]);
                }
            }
        }
    }
    if (keep != NULL) { /* one weight row: its vectors, summed by the caller (block_rows16) */
        for (int c = 0; c < cols; c++) {
            keep[c] = acc[0][c];
            keep_min[c] = acc_min[0][c];
        }
        return;
    }
    for (int q = 0; q < rows; q++)
        for (int c = 0; c < cols; c++)
            y[(i + c) * ldy + r + q] = _mm512_reduce_add_ps(acc[q][c]) + (q4_1 ? _mm512_reduce_add_ps(acc_min[q][c]) : 0.0f);
}

/* The prefill tile of Q8_0 and Q4_0: WIDE_ROWS weight rows against WIDE_COLS activation rows, one
 * int32 chain per pair (integer sums are exact in any order, so each pair's result is block_tile's
 * bit for bit). With the weights in cache (pyllm_gemv_tiled) the 2 x 4 tile spent a load per 1.3
 * vpdpbusd and half an instruction per vpdpbusd on the scales; 3 x 4 does 1.7 and 0.4, and its 12
 * chains hide vpdpbusd's latency: Q8_0 472 -> 513 GOP/s on a 2048 x 2048 matrix at m = 512. Q4_0
 * loads each 64 bytes once and feeds both nibble vectors to the pair's one chain (loading twice,
 * once per nibble, was 4% slower than 2 x 4): 517-520 -> 570-578 GOP/s there. The low nibbles
 * meet all 4 activation rows first, then the high ones, so that one activation vector at a time
 * is held in a register (see in_register): 579 -> 612 GOP/s at m = 512, 582 -> 604 at m = 8.
 * Q4_1 (a second accumulator per pair for its minimum) keeps 2 x 4. Batched decode (5 to 8
 * activation rows) takes a 2 x m tile of it instead (BATCH_ROWS x up to BATCH_COLS: 16 chains,
 * each weight load and nibble split serving every row of the batch), with its weights prefetched as
 * block_tile's (they come from DRAM there). Against 3 x 4 tiles (Q4_0) and 2 x 4 (Q8_0), alternating
 * builds, 96000 x 2048 from DRAM: Q4_0 1.24x at m = 5, 1.25x at 6, 1.10x at 7, 1.04x at 8; Q8_0
 * 1.07x, 1.10x, 0.99x, 1.08x (in cache 1.2-1.3x but Q4_0 at m = 8, 0.97x). The prefetch is a
 * constant of each instance: tested at run time it slowed prefill by 15%. */
#define WIDE_ROWS 3
#define WIDE_COLS 4
#define WIDE_MIN_M 8 /* past these activation rows (prefill) */
#define BATCH_ROWS 2
#define BATCH_COLS 8 /* = WIDE_MIN_M */
static inline __attribute__((always_inline)) void block_tile_wide(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                                 int64_t r, const int rows, int64_t i, const int cols,
                                                                 float *y, int64_t ldy, const pyllm_weight_type type,
                                                                 const int prefetch)
{
    const int q8 = type == PYLLM_WEIGHT_Q8_0;
    const int64_t nb = w->blocks, padded = a->groups * PYLLM_LANE_GROUP, block_bytes = q8 ? 32 : 16;
    const int64_t row_bytes = nb * block_bytes;
    const uint8_t *wrow = (const uint8_t *)w->quants + r * row_bytes;
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512 acc[WIDE_ROWS][BATCH_COLS];
    for (int q = 0; q < rows; q++)
        for (int c = 0; c < cols; c++)
            acc[q][c] = _mm512_setzero_ps();
    for (int64_t g = 0; g < a->groups; g++) {
        const lane_group lg = group_of(nb, g);
        const uint8_t *wg = wrow + g * PYLLM_LANE_GROUP * block_bytes;
        __m512i dot[WIDE_ROWS][BATCH_COLS];
        const int8_t *xg[BATCH_COLS];
        for (int c = 0; c < cols; c++) {
            const __m512i corr = _mm512_load_si512(a->corr + ((i + c) * a->groups + g) * PYLLM_LANE_GROUP);
            for (int q = 0; q < rows; q++)
                dot[q][c] = corr;
            xg[c] = a->q + (i + c) * a->row_bytes + g * PYLLM_LANE_GROUP * PYLLM_QBLOCK;
        }
        if (q8) {
            /* unrolled: as a loop, GCC moved the 12 chains between registers at every step (24
             * copies per 12 vpdpbusd); 2048 x 2048 at m = 512 took 7.4 ms instead of 8.0 (medians
             * of 8 alternating runs) */
            _Pragma("GCC unroll 8")
            for (int s = 0; s < 8; s++) {
                __m512i wv[WIDE_ROWS];
                for (int q = 0; q < rows; q++) {
                    if (prefetch)
                        _mm_prefetch((const char *)(wg + q * row_bytes + s * lg.stride + PREFETCH_BYTES), _MM_HINT_T1);
                    wv[q] = _mm512_maskz_loadu_epi8(lg.wmask, wg + q * row_bytes + s * lg.stride);
                }
                for (int c = 0; c < cols; c++) {
                    __m512i xv = _mm512_load_si512(xg[c] + s * 64);
                    in_register(&xv);
                    for (int q = 0; q < rows; q++)
                        dot[q][c] = _mm512_dpbusd_epi32(dot[q][c], wv[q], xv);
                }
            }
        } else {
            for (int s = 0; s < 4; s++) { /* one load: low nibbles meet step s of x, high ones s + 4 */
                __m512i lo[WIDE_ROWS], hi[WIDE_ROWS];
                for (int q = 0; q < rows; q++) {
                    if (prefetch)
                        _mm_prefetch((const char *)(wg + q * row_bytes + s * lg.stride + PREFETCH_BYTES), _MM_HINT_T1);
                    const __m512i raw = _mm512_maskz_loadu_epi8(lg.wmask, wg + q * row_bytes + s * lg.stride);
                    lo[q] = _mm512_and_si512(raw, low4);
                    hi[q] = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low4);
                }
                for (int c = 0; c < cols; c++) {
                    __m512i x0 = _mm512_load_si512(xg[c] + s * 64);
                    in_register(&x0);
                    for (int q = 0; q < rows; q++)
                        dot[q][c] = _mm512_dpbusd_epi32(dot[q][c], lo[q], x0);
                }
                for (int c = 0; c < cols; c++) {
                    __m512i x1 = _mm512_load_si512(xg[c] + (s + 4) * 64);
                    in_register(&x1);
                    for (int q = 0; q < rows; q++)
                        dot[q][c] = _mm512_dpbusd_epi32(dot[q][c], hi[q], x1);
                }
            }
        }
        for (int q = 0; q < rows; q++) {
            const __m512 dw = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lg.smask, w->scales + (r + q) * nb + g * PYLLM_LANE_GROUP));
            for (int c = 0; c < cols; c++) {
                const __m512 dx = _mm512_loadu_ps(a->d + (i + c) * padded + g * PYLLM_LANE_GROUP);
                acc[q][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[q][c]), _mm512_mul_ps(dw, dx), acc[q][c]);
            }
        }
    }
    for (int q = 0; q < rows; q++)
        for (int c = 0; c < cols; c++)
            y[(i + c) * ldy + r + q] = _mm512_reduce_add_ps(acc[q][c]);
}

/* Weight rows r..r+rows-1 against every activation row, QCOLS at a time, then one tile of the rest. */
static inline __attribute__((always_inline)) void block_rows(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                               int64_t r, const int rows, float *y, int64_t ldy,
                                                               const pyllm_weight_type type)
{
    int64_t i = 0;
    for (; i + QCOLS <= a->m; i += QCOLS)
        block_tile(w, a, r, rows, i, QCOLS, y, ldy, type, NULL, NULL);
    switch (a->m - i) {
    case 3: block_tile(w, a, r, rows, i, 3, y, ldy, type, NULL, NULL); break;
    case 2: block_tile(w, a, r, rows, i, 2, y, ldy, type, NULL, NULL); break;
    case 1: block_tile(w, a, r, rows, i, 1, y, ldy, type, NULL, NULL); break;
    default: break;
    }
}

/* Up to QCOLS activation rows (decode): weight rows M1_ROWS at a time, each a single stream read
 * whole in turn (block_tile of one row), their sums done together, per activation row, by
 * reduce_lanes16 and stored as one vector. Returns the first row left. In cache (6144 x 2048,
 * alternating builds) m = 1 took 14-17% less time for Q4_0, 5-10% for Q8_0 and Q4_1; m = 2 and 4
 * 10% and 3% less for Q4_0 but 2-3% more for Q8_0 and Q4_1, which keep their tiles there. */
static inline __attribute__((always_inline)) int64_t block_rows16(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                                 int64_t r, int64_t row1, float *y, int64_t ldy,
                                                                 const pyllm_weight_type type, const int cols)
{
    for (; r + M1_ROWS <= row1; r += M1_ROWS) {
        __m512 v[QCOLS][M1_ROWS], v_min[QCOLS][M1_ROWS];
        for (int t = 0; t < M1_ROWS; t++) {
            __m512 keep[QCOLS], keep_min[QCOLS];
            block_tile(w, a, r + t, 1, 0, cols, y, ldy, type, keep, keep_min);
            for (int c = 0; c < cols; c++) {
                v[c][t] = keep[c];
                v_min[c][t] = keep_min[c];
            }
        }
        for (int c = 0; c < cols; c++) {
            const __m512 sum = reduce_lanes16(v[c], REDUCE_ADD_PS);
            /* + 0 as block_tile's scalar sums (it turns -0 into +0) */
            const __m512 sum_min = type == PYLLM_WEIGHT_Q4_1 ? reduce_lanes16(v_min[c], REDUCE_ADD_PS) : _mm512_setzero_ps();
            _mm512_storeu_ps(y + c * ldy + r, _mm512_add_ps(sum, sum_min));
        }
    }
    return r;
}

/* One instance per block type, so that its sizes are constants in the loops (a runtime type
 * left an integer division and the type tests in the innermost loop). Q8_0 and Q4_0 past
 * WIDE_MIN_M activation rows (prefill): weight rows in threes against activation rows in fours
 * (block_tile_wide); past QCOLS (batched decode): weight rows in pairs against all activation rows;
 * Q4_1 past QCOLS: in pairs (block_tile); else one at a time: a single stream. */
static void block_rows_of(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t r, int64_t row1, float *y,
                          int64_t ldy, const pyllm_weight_type type)
{
    switch (type == PYLLM_WEIGHT_Q4_0 || a->m == 1 ? a->m : 0) {
    case 1: r = block_rows16(w, a, r, row1, y, ldy, type, 1); break;
    case 2: r = block_rows16(w, a, r, row1, y, ldy, type, 2); break;
    case 3: r = block_rows16(w, a, r, row1, y, ldy, type, 3); break;
    case 4: r = block_rows16(w, a, r, row1, y, ldy, type, 4); break;
    default: break;
    }
    const int prefill = a->m > WIDE_MIN_M;
    if (prefill && type != PYLLM_WEIGHT_Q4_1)
        for (; r + WIDE_ROWS <= row1; r += WIDE_ROWS) {
            int64_t i = 0;
            for (; i + WIDE_COLS <= a->m; i += WIDE_COLS)
                block_tile_wide(w, a, r, WIDE_ROWS, i, WIDE_COLS, y, ldy, type, 0);
            for (; i < a->m; i++) {
                block_tile(w, a, r, 2, i, 1, y, ldy, type, NULL, NULL);
                block_tile(w, a, r + 2, 1, i, 1, y, ldy, type, NULL, NULL);
            }
        }
    if (!prefill && type != PYLLM_WEIGHT_Q4_1 && a->m > QCOLS)
        for (; r + BATCH_ROWS <= row1; r += BATCH_ROWS)
            switch (a->m) {
            case 5: block_tile_wide(w, a, r, BATCH_ROWS, 0, 5, y, ldy, type, 1); break;
            case 6: block_tile_wide(w, a, r, BATCH_ROWS, 0, 6, y, ldy, type, 1); break;
            case 7: block_tile_wide(w, a, r, BATCH_ROWS, 0, 7, y, ldy, type, 1); break;
            default: block_tile_wide(w, a, r, BATCH_ROWS, 0, BATCH_COLS, y, ldy, type, 1); break;
            }
    if (a->m > QCOLS)
        for (; r + 2 <= row1; r += 2)
            block_rows(w, a, r, 2, y, ldy, type);
    for (; r < row1; r++)
        block_rows(w, a, r, 1, y, ldy, type);
}

void pyllm_gemv_rows_avx512(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t row0, int64_t row1,
                            float *y, int64_t ldy)
{
    int64_t r = row0;
    if (w->type == PYLLM_WEIGHT_BF16) {
        /* one activation row: a single stream of weight bytes (see the top); more: weight rows in
         * threes, so that each load of x serves three of them (see bf16_tile; threes over pairs:
         * 384 x 2048 in cache 250 -> 274-301 GFLOP/s), each tile prefetching the next three rows
         * (bf16_tile). A single stream with 4 KB prefetch left the second tile of 4 activation
         * rows computing from cache while DRAM idled: 32000 x 2048 at m = 8 took 5.9 ms on two
         * threads and 12 on one; with the next rows prefetched 3.6-3.9 and 6.6 (m = 2 to 4:
         * 3.9-4.1 -> 3.8-4.0 ms, one thread 6.3-7.6 -> 6.0-6.6; alternating builds). */
        if (a->m > 1) {
            for (; r + BF16_ROWS <= row1; r += BF16_ROWS)
                bf16_rows(w, a, r, BF16_ROWS, y, ldy);
            for (; r + 2 <= row1; r += 2)
                bf16_rows(w, a, r, 2, y, ldy);
        } else {
            for (; r + M1_ROWS <= row1; r += M1_ROWS) {
                __m512 v[M1_ROWS];
                for (int t = 0; t < M1_ROWS; t++)
                    bf16_tile(w, a, r + t, 1, 0, 1, y, ldy, &v[t]);
                _mm512_storeu_ps(y + r, reduce_lanes16(v, REDUCE_ADD_PS));
            }
        }
        for (; r < row1; r++)
            bf16_rows(w, a, r, 1, y, ldy);
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

/* A lane group's quantized blocks, 32 bytes each in block order, into the lane order: 16 rows of
 * 8 dwords transposed into 8 vectors of 16 (vector s: dword s of every block), in three rounds of
 * two-source permutes. Round 1 puts dwords 4h..4h+3 of 4 blocks in a vector (value 4·step +
 * block), round 2 two steps of 8 blocks (8·step + block), round 3 one step of all 16. */
static inline __attribute__((always_inline)) void blocks_to_lanes(const int8_t *blocks, int8_t *q)
{
    const __m512i round1[2] = {
        _mm512_setr_epi32(0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27),
        _mm512_setr_epi32(4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31)};
    const __m512i round2[2] = {
        _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23),
        _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31)};
    __m512i pairs[8], fours[4][2], eights[2][2][2];
    for (int p = 0; p < 8; p++) /* blocks 2p and 2p + 1 */
        pairs[p] = _mm512_load_si512(blocks + p * 64);
    for (int f = 0; f < 4; f++) /* blocks 4f..4f+3 */
        for (int h = 0; h < 2; h++)
            fours[f][h] = _mm512_permutex2var_epi32(pairs[2 * f], round1[h], pairs[2 * f + 1]);
    for (int e = 0; e < 2; e++) /* blocks 8e..8e+7, steps 4h + 2h2 and 4h + 2h2 + 1 */
        for (int h = 0; h < 2; h++)
            for (int h2 = 0; h2 < 2; h2++)
                eights[e][h][h2] = _mm512_permutex2var_epi32(fours[2 * e][h], round2[h2], fours[2 * e + 1][h]);
    for (int h = 0; h < 2; h++)
        for (int h2 = 0; h2 < 2; h2++) {
            const int s = 4 * h + 2 * h2;
            _mm512_store_si512(q + s * 64, _mm512_shuffle_i32x4(eights[0][h][h2], eights[1][h][h2], 0x44));
            _mm512_store_si512(q + (s + 1) * 64, _mm512_shuffle_i32x4(eights[0][h][h2], eights[1][h][h2], 0xee));
        }
}

/* A unit is one lane group (16 blocks) of one activation row, done 16 blocks at a time: the
 * blocks' maxima and sums reduced together (reduce_lanes16), the scales divided as a vector, the
 * bytes transposed into the lane order by permutes (blocks_to_lanes). Each value is what ggml's
 * scalar scheme gives: the same IEEE operations lane by lane, and exact reductions. */
void pyllm_gemv_prepare_avx512(const pyllm_qweight *w, const float *x, pyllm_gemv_act *a, int64_t u0, int64_t u1)
{
    const int64_t k = w->k, padded_blocks = a->groups * PYLLM_LANE_GROUP;
    const int32_t offset = w->type == PYLLM_WEIGHT_Q8_0 ? 128 : w->type == PYLLM_WEIGHT_Q4_0 ? 8 : 0;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t i = u / a->groups, g = u % a->groups;
        __mmask16 m0[PYLLM_LANE_GROUP], m1[PYLLM_LANE_GROUP];
        const float *xb[PYLLM_LANE_GROUP];
        __m512 v[PYLLM_LANE_GROUP];
        for (int l = 0; l < PYLLM_LANE_GROUP; l++) {
            const int64_t b = g * PYLLM_LANE_GROUP + l;
            const int64_t left = k - b * PYLLM_QBLOCK, n = left < 0 ? 0 : left < PYLLM_QBLOCK ? left : PYLLM_QBLOCK;
            m0[l] = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
            m1[l] = n >= 32 ? (__mmask16)0xffff : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
            xb[l] = x + i * k + (n > 0 ? b * PYLLM_QBLOCK : 0);
            v[l] = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(m0[l], xb[l])),
                                 _mm512_abs_ps(_mm512_maskz_loadu_ps(m1[l], xb[l] + 16)));
        }
        const __m512 scale = _mm512_div_ps(reduce_lanes16(v, REDUCE_MAX_PS), _mm512_set1_ps(127.0f));
        const __m512 inv = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(scale, _mm512_setzero_ps(), _CMP_NEQ_UQ),
                                               _mm512_set1_ps(1.0f), scale);
        float inv_of[PYLLM_LANE_GROUP];
        _mm512_storeu_ps(inv_of, inv);
        _Alignas(64) int8_t blocks[PYLLM_LANE_GROUP * PYLLM_QBLOCK];
        for (int l = 0; l < PYLLM_LANE_GROUP; l++) {
            const __m512 il = _mm512_set1_ps(inv_of[l]);
            const __m512i qlo = _mm512_cvttps_epi32(round_half_away16(_mm512_mul_ps(_mm512_maskz_loadu_ps(m0[l], xb[l]), il)));
            const __m512i qhi = _mm512_cvttps_epi32(round_half_away16(_mm512_mul_ps(_mm512_maskz_loadu_ps(m1[l], xb[l] + 16), il)));
            v[l] = _mm512_castsi512_ps(_mm512_add_epi32(qlo, qhi));
            _mm_store_si128((__m128i *)(blocks + l * PYLLM_QBLOCK), _mm512_cvtepi32_epi8(qlo));
            _mm_store_si128((__m128i *)(blocks + l * PYLLM_QBLOCK + 16), _mm512_cvtepi32_epi8(qhi));
        }
        const __m512i sum = _mm512_castps_si512(reduce_lanes16(v, REDUCE_ADD_EPI32));
        const int64_t b0 = i * padded_blocks + g * PYLLM_LANE_GROUP;
        _mm512_storeu_ps(a->d + b0, scale);
        _mm512_storeu_si512(a->qsum + b0, sum);
        _mm512_storeu_si512(a->corr + (i * a->groups + g) * PYLLM_LANE_GROUP, _mm512_mullo_epi32(sum, _mm512_set1_epi32(-offset)));
        blocks_to_lanes(blocks, a->q + i * a->row_bytes + g * PYLLM_LANE_GROUP * PYLLM_QBLOCK);
    }
}
