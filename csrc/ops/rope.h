/* Rotary position embeddings (rotate-half layout of Hugging Face checkpoints), with the
 * frequency scalings transformers implements for LLaMA: linear, dynamic NTK and llama3. */
#ifndef PYLLM_OPS_ROPE_H
#define PYLLM_OPS_ROPE_H

#include <stdint.h>

typedef enum {
    PYLLM_ROPE_DEFAULT = 0,
    PYLLM_ROPE_LINEAR,
    PYLLM_ROPE_DYNAMIC,
    PYLLM_ROPE_LLAMA3,
} pyllm_rope_type;

typedef struct {
    pyllm_rope_type type;
    int32_t dim;                /* rotated dimensions (even), = head_dim */
    double theta;               /* base */
    double factor;              /* linear / dynamic / llama3 */
    double low_freq_factor;     /* llama3 */
    double high_freq_factor;    /* llama3 */
    int64_t original_max_position_embeddings; /* llama3 */
    int64_t max_position_embeddings;          /* dynamic */
    float attention_scaling;    /* multiplies cos and sin; 1 for these types */
} pyllm_rope_params;

/* inv_freq[dim / 2] in f32, operation for operation as transformers computes it. seq_len only
 * matters for dynamic scaling: the frequencies for a sequence of that length (the untouched
 * base frequencies up to max_position_embeddings). */
void pyllm_rope_inv_freq(const pyllm_rope_params *p, int64_t seq_len, float *inv_freq);

/* cos[dim / 2] and sin[dim / 2] of position * inv_freq, times attention_scaling. */
void pyllm_rope_angles(const pyllm_rope_params *p, const float *inv_freq, int64_t position, float *cos_out,
                       float *sin_out);

/* Rotate n_heads consecutive heads of head_dim values in place (first p->dim of each head). */
void pyllm_rope_apply(float *x, int64_t n_heads, int64_t head_dim, int32_t dim, const float *cos_v,
                      const float *sin_v);

#endif
