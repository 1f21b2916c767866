#include "ops/quant.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/alloc.h"

/* Built with -std=c11, so GCC does not contract a * b + c into an FMA: the dequantized values
 * round exactly as ggml's reference (two roundings for Q4_1's d * q + m). */

const char *pyllm_weight_type_name(pyllm_weight_type type)
{
    static const char *names[PYLLM_WEIGHT_TYPE_COUNT] = {"float32", "bfloat16", "q8_0", "q4_0", "q4_1"};
    return (unsigned)type < PYLLM_WEIGHT_TYPE_COUNT ? names[type] : "unknown";
}

/* ---- scalar conversions ----------------------------------------------------------------- */

uint16_t pyllm_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xffu;
    uint32_t mant = x & 0x7fffffu;
    if (exp == 0xffu) /* inf stays inf; nan stays a quiet nan */
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0u));
    const int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) { /* an f16 subnormal, or zero */
        if (e < -10)
            return (uint16_t)sign;
        mant |= 0x800000u;
        const uint32_t shift = (uint32_t)(14 - e), mid = 1u << (shift - 1);
        uint32_t half = mant >> shift;
        const uint32_t rest = mant & ((1u << shift) - 1);
        if (rest > mid || (rest == mid && (half & 1u)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (mant >> 13);
    const uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u)))
        half++; /* a carry into the exponent is the right rounding (up to inf) */
    return (uint16_t)half;
}

float pyllm_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu, x;
    if (exp == 0x1fu)
        x = sign | 0x7f800000u | (mant << 13);
    else if (exp != 0)
        x = sign | ((exp + 112u) << 23) | (mant << 13);
    else if (mant == 0)
        x = sign;
    else { /* subnormal: normalise */
        uint32_t e = 0;
        while (!(mant & 0x400u)) {
            mant <<= 1;
            e++;
        }
        x = sign | ((113u - e) << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

void pyllm_source_to_f32(const void *src, pyllm_source_type type, int64_t n, float *out)
{
    switch (type) {
    case PYLLM_SOURCE_F32:
        memcpy(out, src, sizeof(float) * (size_t)n);
        break;
    case PYLLM_SOURCE_F16:
        for (int64_t i = 0; i < n; i++)
            out[i] = pyllm_f16_to_f32(((const uint16_t *)src)[i]);
        break;
    case PYLLM_SOURCE_BF16:
        for (int64_t i = 0; i < n; i++)
            out[i] = pyllm_bf16_to_f32(((const uint16_t *)src)[i]);
        break;
    default: /* ggml blocks: pyllm_source_widen (ops/quant_gguf.h) */
        break;
    }
}

/* ---- sizes ------------------------------------------------------------------------------ */

static int64_t blocks_of(int64_t k) { return (k + PYLLM_QBLOCK - 1) / PYLLM_QBLOCK; }

static size_t quant_row_bytes(pyllm_weight_type type, int64_t k)
{
    switch (type) {
    case PYLLM_WEIGHT_BF16:
        return 2 * (size_t)k;
    case PYLLM_WEIGHT_Q8_0:
        return (size_t)blocks_of(k) * PYLLM_QBLOCK;
    case PYLLM_WEIGHT_Q4_0:
    case PYLLM_WEIGHT_Q4_1:
        return (size_t)blocks_of(k) * PYLLM_QBLOCK / 2;
    default:
        return 4 * (size_t)k;
    }
}

static int scale_arrays(pyllm_weight_type type)
{
    return type == PYLLM_WEIGHT_Q4_1 ? 2 : type == PYLLM_WEIGHT_BF16 || type == PYLLM_WEIGHT_F32 ? 0 : 1;
}

size_t pyllm_weight_bytes(pyllm_weight_type type, int64_t n, int64_t k)
{
    return (size_t)n * (quant_row_bytes(type, k) + (size_t)scale_arrays(type) * 2 * (size_t)blocks_of(k));
}

/* ---- quantization (ggml's reference rounding) -------------------------------------------- */

static inline float max_abs(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++) {
        const float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    return amax;
}

static inline void quantize_q8_0(const float *x, int8_t *q, uint16_t *scale)
{
    const float amax = max_abs(x, PYLLM_QBLOCK);
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    *scale = pyllm_f32_to_f16(d);
    for (int j = 0; j < PYLLM_QBLOCK; j++)
        q[j] = (int8_t)pyllm_round_half_away(x[j] * id);
}

static inline uint8_t q4_level(float v)
{
    const int8_t level = (int8_t)v; /* truncation toward zero, as ggml */
    return (uint8_t)(level < 15 ? level : 15);
}

static inline void quantize_q4_0(const float *x, uint8_t *q, uint16_t *scale)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < PYLLM_QBLOCK; j++)
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    *scale = pyllm_f32_to_f16(d);
    for (int j = 0; j < PYLLM_QBLOCK / 2; j++)
        q[j] = (uint8_t)(q4_level(x[j] * id + 8.5f) | (q4_level(x[j + 16] * id + 8.5f) << 4));
}

static inline void quantize_q4_1(const float *x, uint8_t *q, uint16_t *scale, uint16_t *minimum)
{
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < PYLLM_QBLOCK; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    const float d = (max - min) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    *scale = pyllm_f32_to_f16(d);
    *minimum = pyllm_f32_to_f16(min);
    for (int j = 0; j < PYLLM_QBLOCK / 2; j++)
        q[j] = (uint8_t)(q4_level((x[j] - min) * id + 0.5f) | (q4_level((x[j + 16] - min) * id + 0.5f) << 4));
}

/* ---- block placement --------------------------------------------------------------------- */

/* Where block b of row r starts in the plain layout, or its lane group starts in the lane order
 * (with the group's block count and b's lane). */
static uint8_t *block_place(const pyllm_qweight *w, int64_t r, int64_t b, int64_t *lanes, int64_t *lane)
{
    const int64_t bytes = pyllm_qblock_bytes(w->type), nb = w->blocks;
    uint8_t *row = (uint8_t *)w->quants + r * nb * bytes;
    if (!w->lanes16)
        return row + b * bytes;
    const int64_t g = b / PYLLM_LANE_GROUP, left = nb - g * PYLLM_LANE_GROUP;
    *lanes = left < PYLLM_LANE_GROUP ? left : PYLLM_LANE_GROUP;
    *lane = b % PYLLM_LANE_GROUP;
    return row + g * PYLLM_LANE_GROUP * bytes;
}

/* The lane order moves 4 bytes at a time; Q8_0's are flipped to unsigned (q + 128) on the way in
 * and back on the way out. */
static uint32_t lane_flip(const pyllm_qweight *w) { return w->type == PYLLM_WEIGHT_Q8_0 ? 0x80808080u : 0u; }

void pyllm_qblock_store(pyllm_qweight *w, int64_t r, int64_t b, const uint8_t *bytes)
{
    const int64_t size = pyllm_qblock_bytes(w->type);
    int64_t lanes = 0, lane = 0;
    uint8_t *at = block_place(w, r, b, &lanes, &lane);
    if (!w->lanes16) {
        memcpy(at, bytes, (size_t)size);
        return;
    }
    const uint32_t flip = lane_flip(w);
    for (int64_t s = 0; s < size / 4; s++) {
        uint32_t v;
        memcpy(&v, bytes + 4 * s, 4);
        v ^= flip;
        memcpy(at + (s * lanes + lane) * 4, &v, 4);
    }
}

void pyllm_qblock_load(const pyllm_qweight *w, int64_t r, int64_t b, uint8_t *bytes)
{
    const int64_t size = pyllm_qblock_bytes(w->type);
    int64_t lanes = 0, lane = 0;
    const uint8_t *at = block_place(w, r, b, &lanes, &lane);
    if (!w->lanes16) {
        memcpy(bytes, at, (size_t)size);
        return;
    }
    const uint32_t flip = lane_flip(w);
    for (int64_t s = 0; s < size / 4; s++) {
        uint32_t v;
        memcpy(&v, at + (s * lanes + lane) * 4, 4);
        v ^= flip;
        memcpy(bytes + 4 * s, &v, 4);
    }
}

pyllm_status pyllm_qweight_to_lanes16(pyllm_qweight *w)
{
    if (w->type == PYLLM_WEIGHT_BF16 || w->lanes16)
        return PYLLM_OK;
    const size_t row_bytes = (size_t)(w->blocks * pyllm_qblock_bytes(w->type));
    const int threads = omp_get_max_threads();
    uint8_t *rows = pyllm_alloc(row_bytes * (size_t)threads);
    if (rows == NULL)
        return PYLLM_ERR_MEMORY;
    w->lanes16 = 1;
#pragma omp parallel for schedule(static) num_threads(threads) if (w->n * w->k > 65536)
    for (int64_t r = 0; r < w->n; r++) {
        uint8_t *plain = rows + row_bytes * (size_t)omp_get_thread_num();
        memcpy(plain, (uint8_t *)w->quants + row_bytes * (size_t)r, row_bytes);
        for (int64_t b = 0; b < w->blocks; b++)
            pyllm_qblock_store(w, r, b, plain + b * pyllm_qblock_bytes(w->type));
    }
    pyllm_free(rows);
    return PYLLM_OK;
}

/* One row: row holds blocks * 32 floats, zero past k. Cloned per ISA: loading a 7B model
 * quantizes 6.5 billion weights. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void quantize_row(pyllm_qweight *w, int64_t r, const float *row)
{
    const int64_t nb = w->blocks;
    for (int64_t b = 0; b < nb; b++) {
        const float *x = row + b * PYLLM_QBLOCK;
        uint8_t q[PYLLM_QBLOCK];
        switch (w->type) {
        case PYLLM_WEIGHT_Q8_0:
            quantize_q8_0(x, (int8_t *)q, &w->scales[r * nb + b]);
            break;
        case PYLLM_WEIGHT_Q4_0:
            quantize_q4_0(x, q, &w->scales[r * nb + b]);
            break;
        case PYLLM_WEIGHT_Q4_1:
            quantize_q4_1(x, q, &w->scales[r * nb + b], &w->mins[r * nb + b]);
            break;
        default:
            break;
        }
        pyllm_qblock_store(w, r, b, q);
    }
}

pyllm_status pyllm_qweight_init(pyllm_qweight *w, pyllm_weight_type type, const void *src,
                                pyllm_source_type src_type, int64_t n, int64_t k)
{
    memset(w, 0, sizeof *w);
    if (type == PYLLM_WEIGHT_F32 || (unsigned)type >= PYLLM_WEIGHT_TYPE_COUNT)
        return pyllm_error(PYLLM_ERR_VALUE, "weight type %d is not a packed low-precision type", (int)type);
    if (!PYLLM_SOURCE_IS_PLAIN(src_type)) /* ggml blocks go through ops/quant_gguf.h */
        return pyllm_error(PYLLM_ERR_VALUE, "source type %d is not plain f32, f16 or bf16", (int)src_type);
    w->type = type;
    w->n = n;
    w->k = k;
    w->blocks = type == PYLLM_WEIGHT_BF16 ? 0 : blocks_of(k);
    const size_t src_elem = src_type == PYLLM_SOURCE_F32 ? 4 : 2;
    w->quants = pyllm_alloc_big(pyllm_mul_size((size_t)n, quant_row_bytes(type, k)));
    if (w->quants == NULL)
        goto fail;
    if (type == PYLLM_WEIGHT_BF16) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < n; r++) {
            uint16_t *dst = (uint16_t *)w->quants + r * k;
            const char *s = (const char *)src + (size_t)r * (size_t)k * src_elem;
            if (src_type == PYLLM_SOURCE_BF16) {
                memcpy(dst, s, sizeof(uint16_t) * (size_t)k);
                continue;
            }
            for (int64_t j = 0; j < k; j++) {
                float v;
                if (src_type == PYLLM_SOURCE_F32)
                    memcpy(&v, s + 4 * j, sizeof v);
                else
                    v = pyllm_f16_to_f32(((const uint16_t *)s)[j]);
                dst[j] = pyllm_f32_to_bf16(v);
            }
        }
        return PYLLM_OK;
    }
    const size_t nscales = pyllm_mul_size((size_t)n, (size_t)w->blocks);
    w->scales = pyllm_alloc(sizeof(uint16_t) * nscales);
    if (w->scales == NULL || (type == PYLLM_WEIGHT_Q4_1 && (w->mins = pyllm_alloc(sizeof(uint16_t) * nscales)) == NULL))
        goto fail;
    const int threads = omp_get_max_threads();
    const int64_t padded = w->blocks * PYLLM_QBLOCK;
    float *rows = pyllm_alloc(sizeof(float) * (size_t)(threads * padded));
    if (rows == NULL)
        goto fail;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t r = 0; r < n; r++) {
        float *row = rows + omp_get_thread_num() * padded;
        pyllm_source_to_f32((const char *)src + (size_t)r * (size_t)k * src_elem, src_type, k, row);
        memset(row + k, 0, sizeof(float) * (size_t)(padded - k));
        quantize_row(w, r, row);
    }
    pyllm_free(rows);
    return PYLLM_OK;
fail:
    pyllm_qweight_release(w);
    return PYLLM_ERR_MEMORY;
}

void pyllm_qweight_release(pyllm_qweight *w)
{
    pyllm_free(w->quants);
    pyllm_free(w->scales);
    pyllm_free(w->mins);
    memset(w, 0, sizeof *w);
}

/* ---- dequantization ----------------------------------------------------------------------- */

/* Elements [j0, j0 + n) of row r as float32 (exactly ggml's values); j0 is a multiple of 32. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void dequantize_span(const pyllm_qweight *w, int64_t r, int64_t j0, int64_t n, float *out)
{
    const int64_t nb = w->blocks;
    if (w->type == PYLLM_WEIGHT_BF16) {
        const uint16_t *q = (const uint16_t *)w->quants + r * w->k + j0;
        for (int64_t j = 0; j < n; j++) {
            const uint32_t bits = (uint32_t)q[j] << 16;
            memcpy(&out[j], &bits, sizeof bits);
        }
        return;
    }
    for (int64_t b = j0 / PYLLM_QBLOCK; b * PYLLM_QBLOCK < j0 + n; b++) {
        const float d = pyllm_f16_to_f32(w->scales[r * nb + b]);
        const int64_t left = j0 + n - b * PYLLM_QBLOCK, count = left < PYLLM_QBLOCK ? left : PYLLM_QBLOCK;
        float block[PYLLM_QBLOCK];
        uint8_t bytes[PYLLM_QBLOCK];
        pyllm_qblock_load(w, r, b, bytes);
        if (w->type == PYLLM_WEIGHT_Q8_0) {
            const int8_t *q = (const int8_t *)bytes;
            for (int j = 0; j < PYLLM_QBLOCK; j++)
                block[j] = (float)q[j] * d;
        } else {
            const uint8_t *q = bytes;
            if (w->type == PYLLM_WEIGHT_Q4_0) { /* no "+ 0": it would turn ggml's -0.0 into +0.0 */
                for (int j = 0; j < 16; j++) {
                    block[j] = d * (float)((q[j] & 0x0f) - 8);
                    block[j + 16] = d * (float)((q[j] >> 4) - 8);
                }
            } else {
                const float m = pyllm_f16_to_f32(w->mins[r * nb + b]);
                for (int j = 0; j < 16; j++) {
                    const float lo = d * (float)(q[j] & 0x0f), hi = d * (float)(q[j] >> 4);
                    block[j] = lo + m;
                    block[j + 16] = hi + m;
                }
            }
        }
        memcpy(out + b * PYLLM_QBLOCK - j0, block, sizeof(float) * (size_t)count);
    }
}

void pyllm_qweight_dequantize_f32(const pyllm_qweight *w, int64_t row0, int64_t rows, float *out)
{
#pragma omp parallel for schedule(static) if (rows * w->k > 65536)
    for (int64_t r = 0; r < rows; r++)
        dequantize_span(w, row0 + r, 0, w->k, out + r * w->k);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void f32_to_bf16_span(const float *x, int64_t n, uint16_t *out)
{
    for (int64_t j = 0; j < n; j++) {
        uint32_t bits;
        memcpy(&bits, &x[j], sizeof bits);
        /* dequantized weights are finite: pyllm_f32_to_bf16's nan case never applies */
        out[j] = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    }
}

#define SPAN 4096 /* floats of one row dequantized at a time: the buffer stays in L1 */

void pyllm_qweight_dequantize_bf16(const pyllm_qweight *w, int64_t row0, int64_t rows, uint16_t *out)
{
    const int64_t k = w->k;
    if (w->type == PYLLM_WEIGHT_BF16) {
        memcpy(out, (const uint16_t *)w->quants + row0 * k, sizeof(uint16_t) * (size_t)(rows * k));
        return;
    }
    if (w->lanes16) {
#pragma omp parallel for schedule(static) if (rows * k > 65536)
        for (int64_t r = 0; r < rows; r++)
            pyllm_lanes16_dequantize_row_bf16(w, row0 + r, out + r * k);
        return;
    }
#pragma omp parallel if (rows * k > 65536)
    {
        float span[SPAN];
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j0 = 0; j0 < k; j0 += SPAN) {
                const int64_t n = k - j0 < SPAN ? k - j0 : SPAN;
                dequantize_span(w, row0 + r, j0, n, span);
                f32_to_bf16_span(span, n, out + r * k + j0);
            }
    }
}
