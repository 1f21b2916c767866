/* Element-wise activations. */
#ifndef PYLLM_OPS_ACTIVATIONS_H
#define PYLLM_OPS_ACTIVATIONS_H

#include <stdint.h>

/* The gated MLP's middle: gate[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + e^-x). */
void pyllm_silu_mul(float *gate, const float *up, int64_t n);

#endif
