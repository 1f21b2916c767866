#include "ops/rope.h"

#include <math.h>

/* transformers builds inv_freq from float32 tensors, with Python scalars cast to float32
 * operand by operand; every step below mirrors one tensor operation of
 * transformers/modeling_rope_utils.py so the frequencies agree to the last bit where libm
 * agrees with torch. */
static void base_inv_freq(float base, int32_t dim, float *inv_freq)
{
    for (int32_t i = 0; i < dim / 2; i++) {
        float exponent = (float)(2 * i) / (float)dim;
        inv_freq[i] = 1.0f / powf(base, exponent);
    }
}

void pyllm_rope_inv_freq(const pyllm_rope_params *p, int64_t seq_len, float *inv_freq)
{
    const int32_t half = p->dim / 2;
    switch (p->type) {
    case PYLLM_ROPE_DEFAULT:
        base_inv_freq((float)p->theta, p->dim, inv_freq);
        break;
    case PYLLM_ROPE_LINEAR:
        base_inv_freq((float)p->theta, p->dim, inv_freq);
        for (int32_t i = 0; i < half; i++)
            inv_freq[i] /= (float)p->factor;
        break;
    case PYLLM_ROPE_DYNAMIC: {
        const double mpe = (double)p->max_position_embeddings;
        if (seq_len <= p->max_position_embeddings) {
            /* The frequencies made at load time, from Python floats (a no-op scaling). */
            double base = p->theta * pow((p->factor * mpe / mpe) - (p->factor - 1.0),
                                         (double)p->dim / (double)(p->dim - 2));
            base_inv_freq((float)base, p->dim, inv_freq);
        } else {
            /* Grown past the training length: seq_len is an int64 tensor, so float32 math. */
            float t = (float)p->factor * (float)seq_len;
            t = t / (float)mpe;
            t = t - (float)(p->factor - 1.0);
            t = powf(t, (float)((double)p->dim / (double)(p->dim - 2)));
            base_inv_freq((float)p->theta * t, p->dim, inv_freq);
        }
        break;
    }
    case PYLLM_ROPE_LLAMA3: {
        base_inv_freq((float)p->theta, p->dim, inv_freq);
        const double old_ctx = (double)p->original_max_position_embeddings;
        const float low_wavelen = (float)(old_ctx / p->low_freq_factor);
        const float high_wavelen = (float)(old_ctx / p->high_freq_factor);
        const float two_pi = (float)(2.0 * M_PI);
        const float factor = (float)p->factor;
        for (int32_t i = 0; i < half; i++) {
            float f = inv_freq[i];
            float wavelen = two_pi / f;
            float scaled = wavelen > low_wavelen ? f / factor : f;
            float smooth = ((float)old_ctx / wavelen - (float)p->low_freq_factor) /
                           (float)(p->high_freq_factor - p->low_freq_factor);
            float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
            int medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
            inv_freq[i] = medium ? smoothed : scaled;
        }
        break;
    }
    }
}

void pyllm_rope_angles(const pyllm_rope_params *p, const float *inv_freq, int64_t position, float *cos_out,
                       float *sin_out)
{
    const float pos = (float)position;
    for (int32_t i = 0; i < p->dim / 2; i++) {
        float angle = inv_freq[i] * pos;
        cos_out[i] = cosf(angle) * p->attention_scaling;
        sin_out[i] = sinf(angle) * p->attention_scaling;
    }
}

void pyllm_rope_apply(float *x, int64_t n_heads, int64_t head_dim, int32_t dim, const float *cos_v,
                      const float *sin_v)
{
    const int32_t half = dim / 2;
    for (int64_t h = 0; h < n_heads; h++) {
        float *v = x + h * head_dim;
        for (int32_t i = 0; i < half; i++) {
            float x1 = v[i], x2 = v[i + half];
            v[i] = x1 * cos_v[i] + (-x2) * sin_v[i];
            v[i + half] = x2 * cos_v[i] + x1 * sin_v[i];
        }
    }
}
