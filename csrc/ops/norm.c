#include "ops/norm.h"

#include <math.h>

void pyllm_rms_norm(const float *x, const float *weight, float *y, int64_t rows, int64_t dim, float eps)
{
#pragma omp parallel for schedule(static) if (rows > 1)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        /* Sum in double: closer to torch's pairwise f32 mean than a naive f32 loop. */
        double sum = 0.0;
        for (int64_t i = 0; i < dim; i++)
            sum += (double)xr[i] * (double)xr[i];
        float mean = (float)(sum / (double)dim);
        float inv = 1.0f / sqrtf(mean + eps);
        for (int64_t i = 0; i < dim; i++)
            yr[i] = weight[i] * (xr[i] * inv);
    }
}
