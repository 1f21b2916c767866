#include "ops/activations.h"

#include <math.h>

void pyllm_silu_mul(float *gate, const float *up, int64_t n)
{
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = (g / (1.0f + expf(-g))) * up[i];
    }
}

void pyllm_gelu_tanh(float *x, int64_t n)
{
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        const float inner = 0.79788456f * v * (1.0f + 0.044715f * v * v);
        x[i] = v * 0.5f * (1.0f + tanhf(inner));
    }
}
