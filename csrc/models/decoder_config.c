/* The structural rules of a decoder configuration, in one place: pyllm_decoder_init applies
 * them, and the Python side (pyllm.architectures.DecoderSpec, through _core.check_spec) applies
 * the same function when a spec is made, so every source of a config meets the same checks. */
#include "models/decoder.h"

pyllm_status pyllm_decoder_config_check(const pyllm_decoder_config *c)
{
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->intermediate_size <= 0 || c->n_layers <= 0 ||
        c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 || c->n_ctx <= 0)
        return pyllm_error(PYLLM_ERR_VALUE,
                           "model sizes must be positive, got vocab_size=%lld hidden_size=%lld "
                           "intermediate_size=%lld num_hidden_layers=%lld num_attention_heads=%lld "
                           "num_key_value_heads=%lld head_dim=%lld n_ctx=%lld",
                           (long long)c->vocab_size, (long long)c->hidden_size, (long long)c->intermediate_size,
                           (long long)c->n_layers, (long long)c->n_heads, (long long)c->n_kv_heads,
                           (long long)c->head_dim, (long long)c->n_ctx);
    if ((unsigned)c->weight_type >= PYLLM_WEIGHT_TYPE_COUNT || (unsigned)c->lm_head_type >= PYLLM_WEIGHT_TYPE_COUNT)
        return pyllm_error(PYLLM_ERR_VALUE, "unknown weight type %d or %d", (int)c->weight_type,
                           (int)c->lm_head_type);
    if ((unsigned)c->kv_type >= PYLLM_KV_TYPE_COUNT)
        return pyllm_error(PYLLM_ERR_VALUE, "unknown KV cache type %d", (int)c->kv_type);
    if (c->n_layers > PYLLM_MAX_LAYERS)
        return pyllm_error(PYLLM_ERR_VALUE, "num_hidden_layers is %lld, above pyllm's limit of %d",
                           (long long)c->n_layers, PYLLM_MAX_LAYERS);
    if (c->vocab_size > INT32_MAX)
        return pyllm_error(PYLLM_ERR_VALUE, "vocab_size %lld does not fit token ids of 32 bits",
                           (long long)c->vocab_size);
    /* The cache keeps each slot's position as int32 (ALiBi's distances, rotary angles). */
    if (c->n_ctx > INT32_MAX)
        return pyllm_error(PYLLM_ERR_VALUE, "n_ctx is %lld, above pyllm's limit of %d (int32 positions)",
                           (long long)c->n_ctx, INT32_MAX);
    if (c->n_heads % c->n_kv_heads != 0)
        return pyllm_error(PYLLM_ERR_VALUE,
                           "num_attention_heads (%lld) must be a multiple of num_key_value_heads (%lld)",
                           (long long)c->n_heads, (long long)c->n_kv_heads);
    if (c->arch.position == PYLLM_POSITION_ROPE) {
        if (c->head_dim % 2 != 0)
            return pyllm_error(PYLLM_ERR_VALUE, "head_dim must be even for rotary embeddings, got %lld",
                               (long long)c->head_dim);
        if (c->rope.type == PYLLM_ROPE_DYNAMIC && c->head_dim <= 2)
            return pyllm_error(PYLLM_ERR_VALUE, "dynamic rope scaling needs head_dim > 2, got %lld",
                               (long long)c->head_dim);
    }
    return PYLLM_OK;
}
