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
