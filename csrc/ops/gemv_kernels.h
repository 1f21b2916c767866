/* Between ops/gemv.c and its per-ISA kernels: the prepared activations and the kernel entry
 * points. Not for other callers. */
#ifndef PYLLM_OPS_GEMV_KERNELS_H
#define PYLLM_OPS_GEMV_KERNELS_H

#include <stdint.h>

#include "ops/quant.h"

/* Activations of one call, carved from the caller's scratch. Which fields a kernel reads
 * depends on the weight type:
 *   BF16: bf16 [m][k]                                    (x rounded to bf16)
 *   block types: q [m][row_bytes] int8, d [m][groups * group_blocks] (scale per block, 0 past
 *   the end), qsum [m][...] (Σ q per block), and for the AVX-512 kernels, whose weights are in
 *   ops/quant.h's lane order, q in that order too (per group of 16 blocks, 8 steps of 64 bytes:
 *   step s holds bytes 4s..4s+3 of each block) and corr [m][groups][16] (per block, -offset · Σ q,
 *   where offset is 128 for Q8_0, whose int8 weights are stored as unsigned w + 128, 8 for Q4_0
 *   and 0 for Q4_1). */
typedef struct {
    int64_t m, k, blocks;    /* blocks of 32 along k */
    int64_t group_blocks;    /* blocks per preparation unit: 16 (a lane group) on AVX-512, 1 elsewhere */
    int64_t groups;          /* ceil(blocks / group_blocks) */
    int64_t row_bytes;       /* bytes of q per row: groups * group_blocks * 32 */
    uint16_t *bf16;
    int8_t *q;
    float *d;
    int32_t *qsum;
    int32_t *corr;
} pyllm_gemv_act;

/* Quantize (or round) units [u0, u1) of x [m][k] into a (gemv.c says what a unit is), plainly:
 * bf16, and the block types for the AVX2 and plain-C kernels. */
void pyllm_gemv_prepare(const pyllm_qweight *w, const float *x, pyllm_gemv_act *a, int64_t u0, int64_t u1);

/* The block types for the AVX-512 kernel: q in the lane order, and a->corr filled. */
void pyllm_gemv_prepare_avx512(const pyllm_qweight *w, const float *x, pyllm_gemv_act *a, int64_t u0, int64_t u1);

/* y[i * ldy + j] for rows j in [row0, row1) of w and every activation row i. */
typedef void (*pyllm_gemv_rows_fn)(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t row0, int64_t row1,
                                   float *y, int64_t ldy);

void pyllm_gemv_rows_generic(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t row0, int64_t row1,
                             float *y, int64_t ldy);
void pyllm_gemv_rows_avx2(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t row0, int64_t row1,
                          float *y, int64_t ldy);
void pyllm_gemv_rows_avx512(const pyllm_qweight *w, const pyllm_gemv_act *a, int64_t row0, int64_t row1,
                            float *y, int64_t ldy);

#endif
