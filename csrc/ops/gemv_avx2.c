/* The AVX2 kernels (with FMA and F16C): CPUs without AVX-512 VNNI/BF16. bf16 weights are widened
 * to f32 in registers (a shift), the block types go through maddubs (unsigned x signed bytes),
 * with the sign trick for Q8_0's signed weights. Both work in tiles of one weight row against up
 * to TILE_COLS activation rows: the row is unpacked once for all of them, and read as one
 * sequential stream (see the block types below for what several rows' streams cost). */
#pragma GCC target("avx2,fma,f16c")
#include <immintrin.h>
#include <string.h>

#include "ops/gemv_kernels.h"

/* How far ahead of a row's stream the first tile of each row prefetches (m = 1, DRAM, alternating
 * builds: Q8_0 15.8 -> 19.0 GB/s, Q4_0 13.5 -> 14.8, Q4_1 13.4 -> 15.7; 1 and 4 KB did no better;
 * the later tiles of a row read it from cache). */
#define PREFETCH_BYTES 2048

#define TILE_COLS 4 /* activation rows per tile: with Q4's third accumulator, 12 of the 16 registers */

static float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- bf16 ---------------------------------------------------------------------------------- */

static inline __attribute__((always_inline)) __m256 bf16_low(__m256i v)
{
    return _mm256_castsi256_ps(_mm256_unpacklo_epi16(_mm256_setzero_si256(), v));
}

static inline __attribute__((always_inline)) __m256 bf16_high(__m256i v)
{
    return _mm256_castsi256_ps(_mm256_unpackhi_epi16(_mm256_setzero_si256(), v));
}

/* Row r against activation rows i..i+cols-1, 16 values a step: the weights widened once for all
 * the activation rows, two accumulators per pair (the unpacked low and high halves, unpacked the
 * same way for weights and activations so each weight stays beside its activation). Each pair
 * sees the same operations whatever the tile. */
static inline __attribute__((always_inline)) void bf16_tile(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                              int64_t r, int64_t i, const int cols, float *y,
                                                              int64_t ldy)
{
    const int64_t k = w->k;
    const uint16_t *wr = (const uint16_t *)w->quants + r * k;
    __m256 low[TILE_COLS], high[TILE_COLS];
    for (int c = 0; c < cols; c++)
        low[c] = high[c] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= k; j += 16) {
        if (i == 0 && j % 32 == 0)
            _mm_prefetch((const char *)(wr + j) + PREFETCH_BYTES, _MM_HINT_T0);
        const __m256i wv = _mm256_loadu_si256((const __m256i *)(wr + j));
        const __m256 wl = bf16_low(wv), wh = bf16_high(wv);
        for (int c = 0; c < cols; c++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(a->bf16 + (i + c) * k + j));
            low[c] = _mm256_fmadd_ps(wl, bf16_low(xv), low[c]);
            high[c] = _mm256_fmadd_ps(wh, bf16_high(xv), high[c]);
        }
    }
    for (int c = 0; c < cols; c++) {
        const uint16_t *x = a->bf16 + (i + c) * k;
        float sum = hsum(_mm256_add_ps(low[c], high[c]));
        for (int64_t t = j; t < k; t++)
            sum += pyllm_bf16_to_f32(wr[t]) * pyllm_bf16_to_f32(x[t]);
        y[(i + c) * ldy + r] = sum;
    }
}

/* ---- the block types ---------------------------------------------------------------------- */

/* Blocks whose scales are formed together: one conversion of 8 f16 weight scales, one multiply
 * by 8 activation scales per pair, then a broadcast from memory (a load, off the vector pipes)
 * per block. A tile is one weight row against up to TILE_COLS activation rows: each weight load
 * and unpacking serves them all, and the weights stay one sequential stream. Interleaving the
 * streams of several rows (tiles of 2 or 4 rows) read DRAM at 6-9 GB/s against 13-16 for one row
 * at m = 1 (Q8_0, Q4_0, Q4_1, 96000 x 2048, alternating builds; probe 17-22 GB/s). Two
 * accumulators per pair (even and odd blocks) halve its chain of dependent FMAs. */
#define STEP 8

/* 8 f16 values from h (n of them, zeros after), as floats: the same conversion for every n. */
static inline __attribute__((always_inline)) __m256 f16x8(const uint16_t *h, int64_t n)
{
    if (n == STEP)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
    uint16_t part[STEP] = {0};
    memcpy(part, h, sizeof(uint16_t) * (size_t)n);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)part));
}

static inline __attribute__((always_inline)) __m256i first_lanes(int64_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* A block of weights at p as 32 bytes: Q8_0's signed weights, Q4's nibbles (elements 0-15 in the
 * low half, 16-31 in the high half, as the activations lie). */
static inline __attribute__((always_inline)) __m256i block_weights(const uint8_t *p, const pyllm_weight_type type)
{
    if (type == PYLLM_WEIGHT_Q8_0)
        return _mm256_loadu_si256((const __m256i *)p);
    const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_and_si256(_mm256_srlv_epi32(raw, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)), _mm256_set1_epi8(0x0f));
}

/* The scales of blocks b0..b0+7 for each pair of the tile (zero past the row's end), and the Q4
 * types' offset (Q4_0: -8 · Σ q_x per block) or minimum (Q4_1: m_w · d_x · Σ q_x) added into the
 * pair's third accumulator, 8 blocks per FMA. */
static inline __attribute__((always_inline)) void step_scales(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                                int64_t r, int64_t i, const int cols, int64_t b0,
                                                                float scale[][STEP], __m256 extra[],
                                                                const pyllm_weight_type type)
{
    const int64_t nb = w->blocks, n = nb - b0 < STEP ? nb - b0 : STEP, padded = a->groups * a->group_blocks;
    const __m256i lanes = first_lanes(n);
    const __m256 dw = f16x8(w->scales + r * nb + b0, n);
    const __m256 mw = type == PYLLM_WEIGHT_Q4_1 ? f16x8(w->mins + r * nb + b0, n) : dw;
    for (int c = 0; c < cols; c++) {
        const int64_t at = (i + c) * padded + b0;
        const __m256 dx = _mm256_maskload_ps(a->d + at, lanes);
        const __m256 s = _mm256_mul_ps(dw, dx);
        _mm256_store_ps(scale[c], s);
        if (type == PYLLM_WEIGHT_Q8_0)
            continue;
        const __m256 xsum = _mm256_cvtepi32_ps(_mm256_maskload_epi32(a->qsum + at, lanes));
        extra[c] = type == PYLLM_WEIGHT_Q4_0 ? _mm256_fmadd_ps(s, _mm256_mul_ps(xsum, _mm256_set1_ps(-8.0f)), extra[c])
                                             : _mm256_fmadd_ps(mw, _mm256_mul_ps(dx, xsum), extra[c]);
    }
}

/* Block t of the step at wp (weights) and xp (activations) into each pair's accumulator acc. */
static inline __attribute__((always_inline)) void block_step(const uint8_t *wp, const int8_t *const *xp,
                                                               const int cols, int64_t t, float scale[][STEP],
                                                               __m256 acc[], const pyllm_weight_type type)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i wq = block_weights(wp + t * pyllm_qblock_bytes(type), type);
    const __m256i wabs = type == PYLLM_WEIGHT_Q8_0 ? _mm256_sign_epi8(wq, wq) : wq;
    for (int c = 0; c < cols; c++) {
        const __m256i xq = _mm256_loadu_si256((const __m256i *)(xp[c] + t * PYLLM_QBLOCK));
        /* maddubs multiplies unsigned by signed bytes: Q8_0 moves the weights' signs onto the
         * activations (|q| ≤ 127, so a pair's sum stays within int16) */
        const __m256i p16 = _mm256_maddubs_epi16(wabs, type == PYLLM_WEIGHT_Q8_0 ? _mm256_sign_epi8(xq, wq) : xq);
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones)), _mm256_broadcast_ss(&scale[c][t]),
                                 acc[c]);
    }
}

/* Weight row r against activation rows i..i+cols-1. Each pair's accumulators see the same
 * operations in the same order whatever the tile, so its result never depends on m. The scales
 * of the next 8 blocks are formed while this 8's are used (two buffers), so that a broadcast need
 * not wait on the store that wrote its scale; on the Zen 3 host this was within the noise of
 * forming them just before use, and was kept as the pattern that cannot stall. */
static inline __attribute__((always_inline)) void block_tile(const pyllm_qweight *w, const pyllm_gemv_act *a,
                                                               int64_t r, int64_t i, const int cols, float *y,
                                                               int64_t ldy, const pyllm_weight_type type)
{
    const int64_t nb = w->blocks;
    __m256 even[TILE_COLS], odd[TILE_COLS], extra[TILE_COLS];
    _Alignas(32) float scale[2][TILE_COLS][STEP];
    for (int c = 0; c < cols; c++)
        even[c] = odd[c] = extra[c] = _mm256_setzero_ps();
    step_scales(w, a, r, i, cols, 0, scale[0], extra, type);
    for (int64_t b0 = 0; b0 < nb; b0 += STEP) {
        const int64_t n = nb - b0 < STEP ? nb - b0 : STEP;
        float(*now)[STEP] = scale[(b0 / STEP) & 1];
        if (b0 + STEP < nb)
            step_scales(w, a, r, i, cols, b0 + STEP, scale[((b0 / STEP) & 1) ^ 1], extra, type);
        const uint8_t *wp = (const uint8_t *)w->quants + (r * nb + b0) * pyllm_qblock_bytes(type);
        for (int64_t line = 0; i == 0 && line < STEP * pyllm_qblock_bytes(type); line += 64)
            _mm_prefetch((const char *)wp + PREFETCH_BYTES + line, _MM_HINT_T0);
        const int8_t *xp[TILE_COLS];
        for (int c = 0; c < cols; c++)
            xp[c] = a->q + (i + c) * a->row_bytes + b0 * PYLLM_QBLOCK;
        int64_t t = 0;
        for (; t + 2 <= n; t += 2) {
            block_step(wp, xp, cols, t, now, even, type);
            block_step(wp, xp, cols, t + 1, now, odd, type);
        }
        if (t < n)
            block_step(wp, xp, cols, t, now, even, type);
    }
    for (int c = 0; c < cols; c++)
        y[(i + c) * ldy + r] = hsum(_mm256_add_ps(even[c], odd[c])) + hsum(extra[c]);
}

static inline __attribute__((always_inline)) void tile(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t r,
                                                        int64_t i, const int cols, float *y, int64_t ldy,
                                                        const pyllm_weight_type type)
{
    if (type == PYLLM_WEIGHT_BF16)
        bf16_tile(w, a, r, i, cols, y, ldy);
    else
        block_tile(w, a, r, i, cols, y, ldy, type);
}

/* Rows [r, row1) against every activation row: tiles of TILE_COLS, then one of the rest (the row
 * is in cache after the first). One instance per weight type, so that the type's tests fold away
 * in the loops. */
static void rows_of(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t r, int64_t row1, float *y, int64_t ldy,
                    const pyllm_weight_type type)
{
    for (; r < row1; r++) {
        int64_t i = 0;
        for (; i + TILE_COLS <= a->m; i += TILE_COLS)
            tile(w, a, r, i, TILE_COLS, y, ldy, type);
        switch (a->m - i) {
        case 3: tile(w, a, r, i, 3, y, ldy, type); break;
        case 2: tile(w, a, r, i, 2, y, ldy, type); break;
        case 1: tile(w, a, r, i, 1, y, ldy, type); break;
        default: break;
        }
    }
}

void pyllm_gemv_rows_avx2(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t row0, int64_t row1,
                          float *y, int64_t ldy)
{
    switch (w->type) {
    case PYLLM_WEIGHT_BF16:
        rows_of(w, a, row0, row1, y, ldy, PYLLM_WEIGHT_BF16);
        break;
    case PYLLM_WEIGHT_Q8_0:
        rows_of(w, a, row0, row1, y, ldy, PYLLM_WEIGHT_Q8_0);
        break;
    case PYLLM_WEIGHT_Q4_0:
        rows_of(w, a, row0, row1, y, ldy, PYLLM_WEIGHT_Q4_0);
        break;
    default:
        rows_of(w, a, row0, row1, y, ldy, PYLLM_WEIGHT_Q4_1);
        break;
    }
}
