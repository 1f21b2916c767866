/* Element-wise activations. */
#ifndef PYLLM_OPS_ACTIVATIONS_H
#define PYLLM_OPS_ACTIVATIONS_H

#include <stdint.h>

/* The gated MLP's middle: gate[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x). */
void pyllm_silu_mul(float *gate, const float *up, int64_t n);

/* The same two on one thread with AVX-512F (activations_avx512.c); only where the CPU has it. */
void pyllm_silu_mul_avx512(float *gate, const float *up, int64_t n);
void pyllm_gelu_tanh_avx512(float *x, int64_t n);

/* BLOOM's GeLU, tanh form, in place, operation for operation as transformers writes it:
 * x * 0.5 * (1 + tanh(0.79788456 * x * (1 + 0.044715 * x * x))). */
void pyllm_gelu_tanh(float *x, int64_t n);

#endif
