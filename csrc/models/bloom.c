#include "models/bloom.h"

const pyllm_decoder_arch pyllm_bloom_arch = {
    .name = "bloom",
    .norm = PYLLM_NORM_LAYER,
    .position = PYLLM_POSITION_ALIBI,
    .mlp = PYLLM_MLP_GELU_TANH,
    .embedding_norm = 1,
};

pyllm_status pyllm_bloom_check_config(const pyllm_decoder_config *c)
{
    if (c->n_kv_heads != c->n_heads)
        return pyllm_error(PYLLM_ERR_VALUE, "BLOOM has as many key/value heads as heads (%lld), got %lld",
                           (long long)c->n_heads, (long long)c->n_kv_heads);
    if (c->n_heads * c->head_dim != c->hidden_size)
        return pyllm_error(PYLLM_ERR_VALUE, "BLOOM's n_head (%lld) times head_dim (%lld) must equal its hidden size %lld",
                           (long long)c->n_heads, (long long)c->head_dim, (long long)c->hidden_size);
    /* Positions are kept as int32 per cache slot (ALiBi's distance term). */
    if (c->n_ctx > INT32_MAX)
        return pyllm_error(PYLLM_ERR_VALUE, "n_ctx %lld is too large for BLOOM's positions (at most %d)",
                           (long long)c->n_ctx, INT32_MAX);
    return PYLLM_OK;
}
