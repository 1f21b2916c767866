#include "tokenizers/token_table.h"

#include <string.h>

#include "core/alloc.h"

pyllm_status pyllm_token_table_init(pyllm_token_table *t, int32_t n_tokens)
{
    memset(t, 0, sizeof *t);
    t->unk_id = t->bos_id = t->eos_id = t->pad_id = -1;
    if (n_tokens < 0 || n_tokens > INT32_MAX / 2)
        return pyllm_error(PYLLM_ERR_VALUE, "a vocabulary of %d tokens is not possible", n_tokens);
    t->cap_types = n_tokens + 16;
    t->types = pyllm_calloc((size_t)t->cap_types, 1);
    if (t->types == NULL)
        return PYLLM_ERR_MEMORY;
    PYLLM_TRY(pyllm_vocab_init(&t->vocab, n_tokens + 16));
    return pyllm_special_tokens_init(&t->specials);
}

void pyllm_token_table_free(pyllm_token_table *t)
{
    pyllm_vocab_free(&t->vocab);
    pyllm_free(t->types);
    pyllm_special_tokens_free(&t->specials);
    memset(t, 0, sizeof *t);
}

static pyllm_status grow_types(pyllm_token_table *t, int32_t id)
{
    if (id < t->cap_types)
        return PYLLM_OK;
    int32_t cap = t->cap_types * 2 > id ? t->cap_types * 2 : id + 16;
    uint8_t *types = pyllm_calloc((size_t)cap, 1);
    if (types == NULL)
        return PYLLM_ERR_MEMORY;
    memcpy(types, t->types, (size_t)t->cap_types);
    pyllm_free(t->types);
    t->types = types;
    t->cap_types = cap;
    return PYLLM_OK;
}

pyllm_status pyllm_token_table_append(pyllm_token_table *t, const char *s, size_t len, int type)
{
    PYLLM_TRY(grow_types(t, t->vocab.n_tokens));
    int32_t existing;
    PYLLM_TRY(pyllm_vocab_add(&t->vocab, s, len, &existing));
    if (existing >= 0)
        return pyllm_error(PYLLM_ERR_VALUE, "token '%.*s' appears twice in the vocabulary (ids %d and %d)", (int)len,
                           s, existing, t->vocab.n_tokens);
    t->types[t->vocab.n_tokens - 1] = (uint8_t)type;
    t->n_pieces = t->vocab.n_tokens;
    return PYLLM_OK;
}

pyllm_status pyllm_token_table_add_token(pyllm_token_table *t, const char *text, size_t len, int32_t id,
                                         int special, int *existed)
{
    if (len == 0)
        return pyllm_error(PYLLM_ERR_VALUE, "an added token must not be empty");
    int32_t existing = pyllm_vocab_find(&t->vocab, text, len);
    *existed = existing >= 0;
    if (existing >= 0) {
        if (existing != id)
            return pyllm_error(PYLLM_ERR_VALUE, "added token '%.*s' has id %d in the vocabulary, not %d", (int)len,
                               text, existing, id);
        return pyllm_special_tokens_add(&t->specials, text, len, id);
    }
    if (id != t->vocab.n_tokens)
        return pyllm_error(PYLLM_ERR_VALUE,
                           "added token '%.*s' must take the next free id %d, got %d (ids must follow each other)",
                           (int)len, text, t->vocab.n_tokens, id);
    PYLLM_TRY(grow_types(t, id));
    int32_t dup;
    PYLLM_TRY(pyllm_vocab_add(&t->vocab, text, len, &dup));
    t->types[id] = special ? PYLLM_PIECE_CONTROL : PYLLM_PIECE_USER_DEFINED;
    return pyllm_special_tokens_add(&t->specials, text, len, id);
}
