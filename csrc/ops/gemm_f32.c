#include "ops/gemm_f32.h"

#include <omp.h>

#include "core/threads.h"
#include "ops/gemm_f32_kernels.h"
#include "ops/gemv.h"

/* Activation rows per pass over a thread's weight rows: about 256 KB of x, so a pass's rows stay
 * in L2 while every weight row meets them (and the weights stream once per pass). */
static int64_t pass_rows(int64_t k)
{
    const int64_t rows = (INT64_C(256) << 10) / (4 * k) / 4 * 4;
    return rows < 4 ? 4 : rows;
}

static void rows_by_pass(pyllm_gemm_f32_rows_fn rows, const float *w, int64_t n, int64_t k, const float *x,
                         int64_t m, int64_t r0, int64_t r1, float *y)
{
    const int64_t step = pass_rows(k);
    for (int64_t i = 0; i < m; i += step)
        rows(w, k, x + i * k, m - i < step ? m - i : step, r0, r1, y + i * n, n);
}

void pyllm_gemm_f32(const float *w, int64_t n, int64_t k, const float *x, int64_t m, const float *bias, float *y)
{
    const pyllm_isa isa = pyllm_gemv_isa();
    const pyllm_gemm_f32_rows_fn rows = isa == PYLLM_ISA_AVX512 ? pyllm_gemm_f32_rows_avx512
                                        : isa == PYLLM_ISA_AVX2 ? pyllm_gemm_f32_rows_avx2
                                                                : pyllm_gemm_f32_rows_generic;
    if (pyllm_parallel(n * k >= (1 << 16))) {
        /* Every thread an even, contiguous share of the weight rows, in fours (the tiles' unit);
         * which thread computes a pair changes nothing in it. */
#pragma omp parallel
        {
            int64_t r0, r1;
            pyllm_thread_share(n, 4, &r0, &r1);
            if (r0 < r1)
                rows_by_pass(rows, w, n, k, x, m, r0, r1, y);
        }
    } else {
        rows_by_pass(rows, w, n, k, x, m, 0, n, y);
    }
    if (bias != NULL)
        pyllm_add_bias(y, n, bias, m, n);
}
