/* Between ops/gemm_f32.c and its per-ISA kernels. Not for other callers. */
#ifndef PYLLM_OPS_GEMM_F32_KERNELS_H
#define PYLLM_OPS_GEMM_F32_KERNELS_H

#include <stdint.h>

/* y[i * ldy + r] for weight rows r in [row0, row1) of w [*, k] and activation rows i < m of
 * x [m, k], each pair reduced in the order ops/gemm_f32.h states. */
typedef void (*pyllm_gemm_f32_rows_fn)(const float *w, int64_t k, const float *x, int64_t m, int64_t row0,
                                       int64_t row1, float *y, int64_t ldy);

void pyllm_gemm_f32_rows_generic(const float *w, int64_t k, const float *x, int64_t m, int64_t row0, int64_t row1,
                                 float *y, int64_t ldy);
void pyllm_gemm_f32_rows_avx2(const float *w, int64_t k, const float *x, int64_t m, int64_t row0, int64_t row1,
                              float *y, int64_t ldy);
void pyllm_gemm_f32_rows_avx512(const float *w, int64_t k, const float *x, int64_t m, int64_t row0, int64_t row1,
                                float *y, int64_t ldy);

#endif
