#include "ops/norm.h"

#include <math.h>

#include "core/threads.h"

static void rms_norm_row(const float *xr, const float *weight, float *yr, int64_t dim, float eps)
{
    /* Sum in double: closer to torch's pairwise f32 mean than a naive f32 loop. */
    double sum = 0.0;
    for (int64_t i = 0; i < dim; i++)
        sum += (double)xr[i] * (double)xr[i];
    float mean = (float)(sum / (double)dim);
    float inv = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < dim; i++)
        yr[i] = weight[i] * (xr[i] * inv);
}

void pyllm_rms_norm(const float *x, const float *weight, float *y, int64_t rows, int64_t dim, float eps)
{
    if (pyllm_parallel(rows > 1)) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            rms_norm_row(x + r * dim, weight, y + r * dim, dim, eps);
    } else {
        for (int64_t r = 0; r < rows; r++)
            rms_norm_row(x + r * dim, weight, y + r * dim, dim, eps);
    }
}

static void layer_norm_row(const float *xr, const float *weight, const float *bias, float *yr, int64_t dim,
                           float eps)
{
    /* Mean, then the variance around it, in double: two passes, no cancellation. */
    double sum = 0.0;
    for (int64_t i = 0; i < dim; i++)
        sum += (double)xr[i];
    const double mean = sum / (double)dim;
    double squares = 0.0;
    for (int64_t i = 0; i < dim; i++) {
        const double centred = (double)xr[i] - mean;
        squares += centred * centred;
    }
    const float inv = (float)(1.0 / sqrt(squares / (double)dim + (double)eps));
    const float m = (float)mean;
    for (int64_t i = 0; i < dim; i++)
        yr[i] = (xr[i] - m) * inv * weight[i] + bias[i];
}

void pyllm_layer_norm(const float *x, const float *weight, const float *bias, float *y, int64_t rows, int64_t dim,
                      float eps)
{
    if (pyllm_parallel(rows > 1)) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            layer_norm_row(x + r * dim, weight, bias, y + r * dim, dim, eps);
    } else {
        for (int64_t r = 0; r < rows; r++)
            layer_norm_row(x + r * dim, weight, bias, y + r * dim, dim, eps);
    }
}
