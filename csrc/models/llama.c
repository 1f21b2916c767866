#include "models/llama.h"

const pyllm_decoder_arch pyllm_llama_arch = {
    .name = "llama",
    .norm = PYLLM_NORM_RMS,
    .position = PYLLM_POSITION_ROPE,
    .mlp = PYLLM_MLP_SILU_GATED,
};

pyllm_status pyllm_llama_check_config(const pyllm_decoder_config *c)
{
    if (c->head_dim % 2 != 0)
        return pyllm_error(PYLLM_ERR_VALUE, "LLaMA's rotary embedding needs an even head_dim, got %lld",
                           (long long)c->head_dim);
    if (c->n_heads % c->n_kv_heads != 0)
        return pyllm_error(PYLLM_ERR_VALUE,
                           "num_attention_heads (%lld) must be a multiple of num_key_value_heads (%lld)",
                           (long long)c->n_heads, (long long)c->n_kv_heads);
    if (c->rope.dim != c->head_dim)
        return pyllm_error(PYLLM_ERR_VALUE, "rotary dimension %d differs from head_dim %lld", (int)c->rope.dim,
                           (long long)c->head_dim);
    if (c->rope.type == PYLLM_ROPE_DYNAMIC && c->head_dim <= 2)
        return pyllm_error(PYLLM_ERR_VALUE, "dynamic rope scaling needs head_dim > 2, got %lld",
                           (long long)c->head_dim);
    return PYLLM_OK;
}
