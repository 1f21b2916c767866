#include "ops/log_softmax.h"

#include <math.h>

double pyllm_log_sum_exp(const float *x, int64_t n)
{
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > max)
            max = x[i];
    if (!(max > -INFINITY))
        return -INFINITY;
    double total = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(x[i]))
            total += exp((double)x[i] - (double)max);
    return (double)max + log(total);
}

void pyllm_log_softmax(const float *x, int64_t n, float *out)
{
    const double shift = pyllm_log_sum_exp(x, n);
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)((double)x[i] - shift);
}
