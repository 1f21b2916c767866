/* The plain-C kernel of the batch-invariant f32 product (any x86-64): 8 lanes as in AVX2, each
 * a product then a sum (no FMA here: C11 mode leaves floating-point contraction off), lanes past
 * k skipped (adding a zero product changes no sum but the sign of a zero), and a fixed tree. */
#include "ops/gemm_f32_kernels.h"

#define LANES 8

static float dot(const float *w, const float *x, int64_t k)
{
    float acc[LANES] = {0};
    int64_t j = 0;
    for (; j + LANES <= k; j += LANES)
        for (int l = 0; l < LANES; l++) /* lane by lane: a compiler may vectorise it, never reorder it */
            acc[l] += w[j + l] * x[j + l];
    for (int l = 0; j + l < k; l++)
        acc[l] += w[j + l] * x[j + l];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

void pyllm_gemm_f32_rows_generic(const float *w, int64_t k, const float *x, int64_t m, int64_t row0, int64_t row1,
                                 float *y, int64_t ldy)
{
    for (int64_t r = row0; r < row1; r++) /* a weight row stays in cache across the activation rows */
        for (int64_t i = 0; i < m; i++)
            y[i * ldy + r] = dot(w + r * k, x + i * k, k);
}
