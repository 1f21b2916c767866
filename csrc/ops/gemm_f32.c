#include "ops/gemm_f32.h"

#include "core/row_claims.h"
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

typedef struct {
    pyllm_gemm_f32_rows_fn rows;
    const float *w, *x;
    int64_t n, k, m;
    float *y;
    pyllm_row_claims claims;
} gemm_job;

static void gemm_job_run(void *p, int self)
{
    gemm_job *j = p;
    int64_t lo, hi;
    while (pyllm_claim_next(&j->claims, self, &lo, &hi))
        rows_by_pass(j->rows, j->w, j->n, j->k, j->x, j->m, lo, hi, j->y);
}

void pyllm_gemm_f32(const float *w, int64_t n, int64_t k, const float *x, int64_t m, const float *bias, float *y)
{
    const pyllm_isa isa = pyllm_gemv_isa();
    const pyllm_gemm_f32_rows_fn rows = isa == PYLLM_ISA_AVX512 ? pyllm_gemm_f32_rows_avx512
                                        : isa == PYLLM_ISA_AVX2 ? pyllm_gemm_f32_rows_avx2
                                                                : pyllm_gemm_f32_rows_generic;
    if (pyllm_parallel(n * k >= (1 << 16))) {
        /* The weight rows shared out as the threads go (core/row_claims.h), in fours (the tiles'
         * unit), 128 KB of weights a claim while the activations take one pass (decode); past it
         * (batch-invariant prefill) a thread's whole share at once, since each claim would read
         * every pass again. Which thread computes a pair changes nothing in it. */
        const int threads = pyllm_pool_threads();
        if (m <= pass_rows(k))
            pyllm_pool_wake(); /* decode */
        gemm_job j = {.rows = rows, .w = w, .x = x, .n = n, .k = k, .m = m, .y = y};
        pyllm_claims_init(&j.claims, n, 4, m <= pass_rows(k) ? (INT64_C(128) << 10) / (4 * k) : n, threads);
        pyllm_pool_run(gemm_job_run, &j, threads);
    } else {
        rows_by_pass(rows, w, n, k, x, m, 0, n, y);
    }
    if (bias != NULL)
        pyllm_add_bias(y, n, bias, m, n);
}
