#include "ops/alibi.h"

#include <math.h>

/* base^power rounded once to f32, as torch.pow of an f32 base and an integer power does. */
static float power(float base, int64_t exponent)
{
    return (float)pow((double)base, (double)exponent);
}

void pyllm_alibi_slopes(int64_t n_heads, float *slopes)
{
    int64_t p = 1;
    while (p * 2 <= n_heads)
        p *= 2;
    /* 2^(-8/p) and 2^(-4/p), rounded to f32 first like the reference's base tensors. */
    const float base = (float)pow(2.0, -8.0 / (double)p);
    const float extra_base = (float)pow(2.0, -4.0 / (double)p);
    for (int64_t h = 0; h < p; h++)
        slopes[h] = power(base, h + 1);
    for (int64_t h = p; h < n_heads; h++)
        slopes[h] = power(extra_base, 2 * (h - p) + 1);
}
