/* Normalisation layers. */
#ifndef PYLLM_OPS_NORM_H
#define PYLLM_OPS_NORM_H

#include <stdint.h>

/* LLaMA's RMSNorm, as transformers computes it in f32: y = x * rsqrt(mean(x²) + eps) * weight.
 * x and y are [rows, dim]; y may alias x. */
void pyllm_rms_norm(const float *x, const float *weight, float *y, int64_t rows, int64_t dim, float eps);

/* BLOOM's LayerNorm, as torch.nn.LayerNorm: y = (x - mean) / sqrt(var + eps) * weight + bias with
 * the biased variance, statistics per row of x [rows, dim]; y may alias x. Ours rather than
 * oneDNN's: oneDNN 3.2's layer normalization mallocs two objects on every call. */
void pyllm_layer_norm(const float *x, const float *weight, const float *bias, float *y, int64_t rows, int64_t dim,
                      float eps);

#endif
