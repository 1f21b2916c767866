#include "ops/activations.h"

#include <math.h>

#include "core/threads.h"

static inline float silu_times(float g, float u)
{
    return (g / (1.0f + expf(-g))) * u;
}

void pyllm_silu_mul(float *gate, const float *up, int64_t n)
{
    if (pyllm_parallel(n > 16384)) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++)
            gate[i] = silu_times(gate[i], up[i]);
    } else {
        for (int64_t i = 0; i < n; i++)
            gate[i] = silu_times(gate[i], up[i]);
    }
}

static inline float gelu_tanh(float v)
{
    const float inner = 0.79788456f * v * (1.0f + 0.044715f * v * v);
    return v * 0.5f * (1.0f + tanhf(inner));
}

void pyllm_gelu_tanh(float *x, int64_t n)
{
    if (pyllm_parallel(n > 16384)) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++)
            x[i] = gelu_tanh(x[i]);
    } else {
        for (int64_t i = 0; i < n; i++)
            x[i] = gelu_tanh(x[i]);
    }
}
