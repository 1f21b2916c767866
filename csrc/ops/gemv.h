/* Decode's products with low-precision weights: y[m, n] = x[m, k] · Wᵀ for a few rows m
 * (one token per sequence of a batch), W a pyllm_qweight. Decode reads every weight once per
 * token, so these kernels are a stream of weight bytes: each thread takes an even share of W's
 * rows, and the activations (small) are prepared once per call in the form the kernel wants —
 * bf16 for bf16 weights, and for the block types 8-bit blocks of 32 with a float scale each
 * (ggml's Q8 scheme for activations: d = amax / 127, q = round(x / d)), so that int8 dot products
 * (AVX-512 VNNI) do the work.
 *
 * Every kernel gives an (activation row, weight row) pair the same operations in the same order
 * whatever m, the tiles around it or the thread split, and prepares each activation row on its
 * own: the batch-invariant mode (ops/matmul.h) runs them for every row count and relies on it.
 *
 * Kernels exist for AVX-512 (F, BW, VL, VNNI, BF16), AVX2 (with FMA and F16C) and plain C; the
 * best one the CPU has is chosen once, from CPUID, and PYLLM_ISA=avx2|generic in the environment
 * can ask for a lower one (tests run every path). */
#ifndef PYLLM_OPS_GEMV_H
#define PYLLM_OPS_GEMV_H

#include <stddef.h>
#include <stdint.h>

#include "ops/quant.h"

typedef enum { PYLLM_ISA_GENERIC = 0, PYLLM_ISA_AVX2 = 1, PYLLM_ISA_AVX512 = 2 } pyllm_isa;

/* The kernels' instruction set: the best the CPU has, lowered by PYLLM_ISA. */
pyllm_isa pyllm_gemv_isa(void);
const char *pyllm_isa_name(pyllm_isa isa);

/* Scratch bytes pyllm_gemv needs for m rows of activations against w. */
size_t pyllm_gemv_scratch_bytes(const pyllm_qweight *w, int64_t m);

/* y[i * ldy + j] = x[i * k ..] · W[j] (+ bias[j]) for i < m, j < n. scratch: at least
 * pyllm_gemv_scratch_bytes(w, m) bytes, 64-byte aligned. Runs on the OpenMP threads. */
void pyllm_gemv(const pyllm_qweight *w, const float *x, int64_t m, const float *bias, float *y, int64_t ldy,
                void *scratch);

/* pyllm_gemv for any number of rows m (prefill): the same kernels and the same result for each
 * (activation row, weight row) pair, blocked for the caches, so that the int8 dot products of
 * the block types serve prefill too. scratch: pyllm_gemv_scratch_bytes(w, m). */
void pyllm_gemv_tiled(const pyllm_qweight *w, const float *x, int64_t m, const float *bias, float *y, int64_t ldy,
                      void *scratch);

/* One output of a shared-input call: y[i * ldy + j] = x[i] · W[j] (+ bias[j]). */
typedef struct {
    const pyllm_qweight *w;
    const float *bias; /* [w->n] or NULL */
    float *y;
    int64_t ldy;
} pyllm_gemv_out;

/* pyllm_gemv for several weights that read the same x (q, k and v; gate and up), every w of one
 * type and one k: the activations are prepared once, by all threads, and one parallel region
 * computes every output (fewer fork-joins per token). scratch as pyllm_gemv's for outs[0].w.
 * Each output is what pyllm_gemv alone gives, bit for bit. */
void pyllm_gemv_many(const pyllm_gemv_out *outs, int count, const float *x, int64_t m, void *scratch);

/* pyllm_gemv_tiled for several weights that read the same x, as pyllm_gemv_many: the activations
 * of a prefill are prepared once for q, k and v (gate and up), not once per weight. */
void pyllm_gemv_tiled_many(const pyllm_gemv_out *outs, int count, const float *x, int64_t m, void *scratch);

/* y[i * ldy + j] += bias[j] for i < m, j < n: the bias of every linear-layer path. */
static inline void pyllm_add_bias(float *y, int64_t ldy, const float *bias, int64_t m, int64_t n)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            y[i * ldy + j] += bias[j];
}

#endif
