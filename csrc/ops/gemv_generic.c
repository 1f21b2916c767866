/* The plain-C kernels: any x86-64 (and the reference the SIMD kernels are tested against). The
 * integer dot products are exact; only the float accumulation order differs from the SIMD ones. */
#include "ops/gemv_kernels.h"

static float dot_bf16(const uint16_t *w, const uint16_t *x, int64_t k)
{
    float acc = 0.0f;
    for (int64_t j = 0; j < k; j++)
        acc += pyllm_bf16_to_f32(w[j]) * pyllm_bf16_to_f32(x[j]);
    return acc;
}

/* Σ over blocks of d_w · d_x · Σ q_w q_x, with the weights' offset or minimum folded in. */
static float dot_blocks(const pyllm_qweight *w, int64_t r, const pyllm_gemv_act *a, int64_t i)
{
    const int64_t nb = w->blocks;
    const int8_t *xq = a->q + i * a->row_bytes;
    const float *xd = a->d + i * a->groups * a->group_blocks;
    const int32_t *xsum = a->qsum + i * a->groups * a->group_blocks;
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const float dw = pyllm_f16_to_f32(w->scales[r * nb + b]);
        const int8_t *x = xq + b * PYLLM_QBLOCK;
        int32_t dot = 0;
        if (w->type == PYLLM_WEIGHT_Q8_0) {
            const int8_t *q = (const int8_t *)w->quants + (r * nb + b) * PYLLM_QBLOCK;
            for (int j = 0; j < PYLLM_QBLOCK; j++)
                dot += q[j] * x[j];
            acc += dw * xd[b] * (float)dot;
            continue;
        }
        const uint8_t *q = (const uint8_t *)w->quants + (r * nb + b) * 16;
        for (int j = 0; j < 16; j++)
            dot += (q[j] & 0x0f) * x[j] + (q[j] >> 4) * x[j + 16];
        if (w->type == PYLLM_WEIGHT_Q4_0)
            acc += dw * xd[b] * (float)(dot - 8 * xsum[b]);
        else
            acc += dw * xd[b] * (float)dot + pyllm_f16_to_f32(w->mins[r * nb + b]) * xd[b] * (float)xsum[b];
    }
    return acc;
}

void pyllm_gemv_rows_generic(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t row0, int64_t row1,
                             float *y, int64_t ldy)
{
    for (int64_t r = row0; r < row1; r++) /* a row's weights stay in L1 across the activation rows */
        for (int64_t i = 0; i < a->m; i++)
            y[i * ldy + r] = w->type == PYLLM_WEIGHT_BF16
                                 ? dot_bf16((const uint16_t *)w->quants + r * w->k, a->bf16 + i * w->k, w->k)
                                 : dot_blocks(w, r, a, i);
}
