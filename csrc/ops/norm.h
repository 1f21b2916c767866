/* Normalisation layers. */
#ifndef PYLLM_OPS_NORM_H
#define PYLLM_OPS_NORM_H

#include <stdint.h>

/* LLaMA's RMSNorm, as transformers computes it in f32: y = x * rsqrt(mean(x²) + eps) * weight.
 * x and y are [rows, dim]; y may alias x. */
void pyllm_rms_norm(const float *x, const float *weight, float *y, int64_t rows, int64_t dim, float eps);

#endif
