#include "ops/quant_gguf.h"

#include <string.h>

#include "core/alloc.h"

/* Built with -std=c11: GCC contracts no a * b + c into an FMA, so each product and sum rounds
 * as in ggml's reference (and as the gguf package's numpy code, which does one op at a time). */

#define QK 32   /* elements of a Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 block */
#define QK_K 256 /* elements of a K-quant super-block */

int pyllm_ggml_block_info(int type, int64_t *elems, size_t *bytes)
{
    int64_t e = QK;
    size_t b;
    switch (type) {
    case PYLLM_GGML_F32: e = 1; b = 4; break;
    case PYLLM_GGML_F16:
    case PYLLM_GGML_BF16: e = 1; b = 2; break;
    case PYLLM_GGML_Q4_0: b = 2 + 16; break;
    case PYLLM_GGML_Q4_1: b = 2 + 2 + 16; break;
    case PYLLM_GGML_Q5_0: b = 2 + 4 + 16; break;
    case PYLLM_GGML_Q5_1: b = 2 + 2 + 4 + 16; break;
    case PYLLM_GGML_Q8_0: b = 2 + 32; break;
    case PYLLM_GGML_Q4_K: e = QK_K; b = 2 + 2 + 12 + 128; break;
    case PYLLM_GGML_Q5_K: e = QK_K; b = 2 + 2 + 12 + 32 + 128; break;
    case PYLLM_GGML_Q6_K: e = QK_K; b = 128 + 64 + 16 + 2; break;
    default: return 0;
    }
    *elems = e;
    *bytes = b;
    return 1;
}

static float f16_at(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return pyllm_f16_to_f32(h);
}

/* ---- 32-element blocks ------------------------------------------------------------------- */

static void block_q8_0(const uint8_t *b, float *y)
{
    const float d = f16_at(b);
    const int8_t *q = (const int8_t *)(b + 2);
    for (int j = 0; j < QK; j++)
        y[j] = (float)q[j] * d;
}

static void block_q4_0(const uint8_t *b, float *y)
{
    const float d = f16_at(b);
    const uint8_t *q = b + 2;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = d * (float)((q[j] & 0x0f) - 8);
        y[j + QK / 2] = d * (float)((q[j] >> 4) - 8);
    }
}

static void block_q4_1(const uint8_t *b, float *y)
{
    const float d = f16_at(b), m = f16_at(b + 2);
    const uint8_t *q = b + 4;
    for (int j = 0; j < QK / 2; j++) {
        y[j] = d * (float)(q[j] & 0x0f) + m;
        y[j + QK / 2] = d * (float)(q[j] >> 4) + m;
    }
}

/* The fifth bit of element j is bit j of a little-endian uint32 beside the nibbles. */
static uint32_t u32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void block_q5_0(const uint8_t *b, float *y)
{
    const float d = f16_at(b);
    const uint32_t qh = u32_at(b + 2);
    const uint8_t *q = b + 6;
    for (int j = 0; j < QK / 2; j++) {
        const int lo = (int)((q[j] & 0x0f) | ((qh >> j) & 1u) << 4);
        const int hi = (int)((q[j] >> 4) | ((qh >> (j + 16)) & 1u) << 4);
        y[j] = d * (float)(lo - 16);
        y[j + QK / 2] = d * (float)(hi - 16);
    }
}

static void block_q5_1(const uint8_t *b, float *y)
{
    const float d = f16_at(b), m = f16_at(b + 2);
    const uint32_t qh = u32_at(b + 4);
    const uint8_t *q = b + 8;
    for (int j = 0; j < QK / 2; j++) {
        const unsigned lo = (q[j] & 0x0fu) | ((qh >> j) & 1u) << 4;
        const unsigned hi = (q[j] >> 4) | ((qh >> (j + 16)) & 1u) << 4;
        y[j] = d * (float)lo + m;
        y[j + QK / 2] = d * (float)hi + m;
    }
}

/* ---- 256-element super-blocks --------------------------------------------------------------- */

/* Q4_K/Q5_K: eight 6-bit scales and eight 6-bit minimums packed in 12 bytes. */
static void scale_min_k4(int j, const uint8_t *s, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

static void block_q4_k(const uint8_t *b, float *y)
{
    const float d = f16_at(b), dmin = f16_at(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int j = 0; j < 4; j++, q += 32, y += 64) {
        uint8_t sc, m;
        scale_min_k4(2 * j, scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        scale_min_k4(2 * j + 1, scales, &sc, &m);
        const float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            y[l] = d1 * (float)(q[l] & 0x0f) - m1;
            y[l + 32] = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void block_q5_k(const uint8_t *b, float *y)
{
    const float d = f16_at(b), dmin = f16_at(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *q = b + 48;
    for (int j = 0; j < 4; j++, q += 32, y += 64) {
        uint8_t sc, m;
        scale_min_k4(2 * j, scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        scale_min_k4(2 * j + 1, scales, &sc, &m);
        const float d2 = d * (float)sc, m2 = dmin * (float)m;
        for (int l = 0; l < 32; l++) {
            const unsigned lo = (q[l] & 0x0fu) | ((qh[l] >> (2 * j)) & 1u) << 4;
            const unsigned hi = (q[l] >> 4) | ((qh[l] >> (2 * j + 1)) & 1u) << 4;
            y[l] = d1 * (float)lo - m1;
            y[l + 32] = d2 * (float)hi - m2;
        }
    }
}

/* Q6_K: 4 low bits in ql, 2 high bits in qh, one int8 scale per 16 elements, value q - 32. */
static void block_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = f16_at(b + 208);
    for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = (int)((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
            const int q2 = (int)((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
            const int q3 = (int)((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
            const int q4 = (int)((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

typedef void (*block_fn)(const uint8_t *, float *);

static block_fn block_function(int type)
{
    switch (type) {
    case PYLLM_GGML_Q8_0: return block_q8_0;
    case PYLLM_GGML_Q4_0: return block_q4_0;
    case PYLLM_GGML_Q4_1: return block_q4_1;
    case PYLLM_GGML_Q5_0: return block_q5_0;
    case PYLLM_GGML_Q5_1: return block_q5_1;
    case PYLLM_GGML_Q4_K: return block_q4_k;
    case PYLLM_GGML_Q5_K: return block_q5_k;
    case PYLLM_GGML_Q6_K: return block_q6_k;
    default: return NULL;
    }
}

pyllm_status pyllm_ggml_dequantize(int type, const void *src, int64_t n, float *out)
{
    int64_t elems;
    size_t bytes;
    if (!pyllm_ggml_block_info(type, &elems, &bytes))
        return pyllm_error(PYLLM_ERR_VALUE, "ggml type %d is not one pyllm dequantizes", type);
    if (n < 0 || n % elems)
        return pyllm_error(PYLLM_ERR_VALUE, "%lld elements is not a whole number of blocks of %lld",
                           (long long)n, (long long)elems);
    const uint8_t *s = src;
    switch (type) {
    case PYLLM_GGML_F32:
        memcpy(out, src, sizeof(float) * (size_t)n);
        return PYLLM_OK;
    case PYLLM_GGML_F16:
        pyllm_source_to_f32(src, PYLLM_SOURCE_F16, n, out);
        return PYLLM_OK;
    case PYLLM_GGML_BF16:
        pyllm_source_to_f32(src, PYLLM_SOURCE_BF16, n, out);
        return PYLLM_OK;
    default:
        break;
    }
    const block_fn fn = block_function(type);
    const int64_t blocks = n / elems;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < blocks; i++)
        fn(s + (size_t)i * bytes, out + i * elems);
    return PYLLM_OK;
}

pyllm_status pyllm_qweight_from_ggml(pyllm_qweight *w, int type, const void *src, int64_t n, int64_t k)
{
    memset(w, 0, sizeof *w);
    pyllm_weight_type ours;
    size_t quant_bytes, block_bytes, scale_at = 0, min_at = 0, quants_at;
    switch (type) {
    case PYLLM_GGML_Q8_0: ours = PYLLM_WEIGHT_Q8_0; quant_bytes = 32; block_bytes = 34; quants_at = 2; break;
    case PYLLM_GGML_Q4_0: ours = PYLLM_WEIGHT_Q4_0; quant_bytes = 16; block_bytes = 18; quants_at = 2; break;
    case PYLLM_GGML_Q4_1:
        ours = PYLLM_WEIGHT_Q4_1; quant_bytes = 16; block_bytes = 20; min_at = 2; quants_at = 4;
        break;
    default:
        return pyllm_error(PYLLM_ERR_VALUE, "ggml type %d has no pyllm layout (Q8_0, Q4_0 and Q4_1 do)", type);
    }
    if (n < 1 || k < 1 || k % QK)
        return pyllm_error(PYLLM_ERR_VALUE, "a [%lld, %lld] matrix is not whole rows of %d-element blocks",
                           (long long)n, (long long)k, QK);
    const int64_t nb = k / QK;
    const size_t total = pyllm_mul_size((size_t)n, (size_t)nb);
    w->type = ours;
    w->n = n;
    w->k = k;
    w->blocks = nb;
    w->quants = pyllm_alloc_big(pyllm_mul_size(total, quant_bytes));
    w->scales = pyllm_alloc(pyllm_mul_size(total, sizeof(uint16_t)));
    if (ours == PYLLM_WEIGHT_Q4_1)
        w->mins = pyllm_alloc(pyllm_mul_size(total, sizeof(uint16_t)));
    if (w->quants == NULL || w->scales == NULL || (ours == PYLLM_WEIGHT_Q4_1 && w->mins == NULL)) {
        pyllm_qweight_release(w);
        return PYLLM_ERR_MEMORY;
    }
    const uint8_t *s = src;
    /* the same bytes, split: ggml's nibble order (element j low, j + 16 high) is ours too */
#pragma omp parallel for schedule(static) if (total > 4096)
    for (int64_t i = 0; i < (int64_t)total; i++) {
        const uint8_t *b = s + (size_t)i * block_bytes;
        memcpy(&w->scales[i], b + scale_at, 2);
        if (min_at)
            memcpy(&w->mins[i], b + min_at, 2);
        pyllm_qblock_store(w, i / nb, i % nb, b + quants_at);
    }
    return PYLLM_OK;
}

/* ---- block sources (a loader's ggml tensors on their way into a linear layer) ------------- */

static const struct {
    pyllm_source_type source;
    int ggml;
} source_types[] = {
    {PYLLM_SOURCE_F32, PYLLM_GGML_F32},         {PYLLM_SOURCE_F16, PYLLM_GGML_F16},
    {PYLLM_SOURCE_BF16, PYLLM_GGML_BF16},       {PYLLM_SOURCE_GGML_Q8_0, PYLLM_GGML_Q8_0},
    {PYLLM_SOURCE_GGML_Q4_0, PYLLM_GGML_Q4_0}, {PYLLM_SOURCE_GGML_Q4_1, PYLLM_GGML_Q4_1},
    {PYLLM_SOURCE_GGML_Q5_0, PYLLM_GGML_Q5_0}, {PYLLM_SOURCE_GGML_Q5_1, PYLLM_GGML_Q5_1},
    {PYLLM_SOURCE_GGML_Q4_K, PYLLM_GGML_Q4_K}, {PYLLM_SOURCE_GGML_Q5_K, PYLLM_GGML_Q5_K},
    {PYLLM_SOURCE_GGML_Q6_K, PYLLM_GGML_Q6_K},
};
#define SOURCE_TYPES (sizeof source_types / sizeof *source_types)

int pyllm_ggml_type_of_source(pyllm_source_type src)
{
    if (PYLLM_SOURCE_IS_PLAIN(src))
        return -1;
    for (size_t i = 0; i < SOURCE_TYPES; i++)
        if (source_types[i].source == src)
            return source_types[i].ggml;
    return -1;
}

int pyllm_source_of_ggml_type(int type, pyllm_source_type *src)
{
    for (size_t i = 0; i < SOURCE_TYPES; i++)
        if (source_types[i].ggml == type) {
            *src = source_types[i].source;
            return 1;
        }
    return 0;
}

int pyllm_ggml_native_weight_type(int type)
{
    switch (type) {
    case PYLLM_GGML_Q8_0: return PYLLM_WEIGHT_Q8_0;
    case PYLLM_GGML_Q4_0: return PYLLM_WEIGHT_Q4_0;
    case PYLLM_GGML_Q4_1: return PYLLM_WEIGHT_Q4_1;
    default: return -1;
    }
}

pyllm_status pyllm_source_widen(const void *src, pyllm_source_type type, int64_t n, float *out)
{
    if (PYLLM_SOURCE_IS_PLAIN(type)) {
        pyllm_source_to_f32(src, type, n, out);
        return PYLLM_OK;
    }
    const int ggml = pyllm_ggml_type_of_source(type);
    if (ggml < 0)
        return pyllm_error(PYLLM_ERR_VALUE, "unknown weight source type %d", (int)type);
    return pyllm_ggml_dequantize(ggml, src, n, out);
}
