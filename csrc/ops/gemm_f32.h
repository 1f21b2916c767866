/* The batch-invariant product with float32 weights: y[m, n] = x[m, k] · Wᵀ (+ b), W kept as
 * Hugging Face stores it, [n, k] row-major, f32.
 *
 * Every (activation row i, weight row r) pair is reduced in one fixed order, whatever m, the
 * tiling, the rows around it or the thread count: lane l of a vector accumulator (16 lanes on
 * AVX-512, 8 on AVX2 and in plain C) sums x[i, j] · W[r, j] for the j ≡ l (mod lanes) in
 * increasing j (one FMA each on AVX-512 and AVX2, a product then a sum in C; the lanes past k
 * add zeros), then the lanes are added in one fixed tree. So y[i, r] depends on row i of x and
 * row r of W alone: a sequence gets the same bits alone, in a batch, in a prefill or a decode.
 * The instruction set (ops/gemv.h: pyllm_gemv_isa) is chosen once per process, so results agree
 * within a process and across processes on one kind of CPU, not across instruction sets. */
#ifndef PYLLM_OPS_GEMM_F32_H
#define PYLLM_OPS_GEMM_F32_H

#include <stdint.h>

/* y[i * n + r] = x[i * k ..] · w[r * k ..] (+ bias[r]) for i < m, r < n. Runs on the OpenMP
 * threads (each takes an even share of W's rows, in fours). */
void pyllm_gemm_f32(const float *w, int64_t n, int64_t k, const float *x, int64_t m, const float *bias, float *y);

#endif
