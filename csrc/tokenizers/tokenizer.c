#include "tokenizers/tokenizer.h"

#include <string.h>

#include "core/alloc.h"

pyllm_tokenizer *pyllm_tokenizer_new(pyllm_tokenizer_kind kind)
{
    pyllm_tokenizer *t = pyllm_calloc(1, sizeof *t);
    if (t != NULL)
        t->kind = kind;
    return t;
}

void pyllm_tokenizer_free(pyllm_tokenizer *t)
{
    if (t == NULL)
        return;
    switch (t->kind) {
    case PYLLM_TOKENIZER_SENTENCEPIECE:
        pyllm_spm_tokenizer_free(&t->as.spm);
        break;
    case PYLLM_TOKENIZER_MERGES:
        pyllm_merges_tokenizer_free(&t->as.merges);
        break;
    }
    pyllm_free(t);
}

/* Keep a built tokenizer, or free a failed one. */
static pyllm_status finish(pyllm_tokenizer *t, pyllm_status st, pyllm_tokenizer **out)
{
    if (st != PYLLM_OK) {
        pyllm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return PYLLM_OK;
}

pyllm_status pyllm_tokenizer_from_sentencepiece(const void *data, size_t len, pyllm_tokenizer **out)
{
    *out = NULL;
    pyllm_tokenizer *t = pyllm_tokenizer_new(PYLLM_TOKENIZER_SENTENCEPIECE);
    if (t == NULL)
        return PYLLM_ERR_MEMORY;
    return finish(t, pyllm_spm_tokenizer_from_proto(&t->as.spm, data, len), out);
}

pyllm_status pyllm_tokenizer_from_llama2c(const void *data, size_t len, int32_t vocab_size, pyllm_tokenizer **out)
{
    *out = NULL;
    pyllm_tokenizer *t = pyllm_tokenizer_new(PYLLM_TOKENIZER_SENTENCEPIECE);
    if (t == NULL)
        return PYLLM_ERR_MEMORY;
    return finish(t, pyllm_spm_tokenizer_from_llama2c(&t->as.spm, data, len, vocab_size), out);
}

const pyllm_token_table *pyllm_tokenizer_table(const pyllm_tokenizer *t)
{
    return t->kind == PYLLM_TOKENIZER_SENTENCEPIECE ? &t->as.spm.table : &t->as.merges.table;
}

pyllm_status pyllm_tokenizer_add_token(pyllm_tokenizer *t, const char *text, size_t len, int32_t id, int special)
{
    if (t->kind == PYLLM_TOKENIZER_SENTENCEPIECE)
        return pyllm_spm_tokenizer_add_token(&t->as.spm, text, len, id, special);
    return pyllm_merges_add_token(&t->as.merges, text, len, id, special);
}

pyllm_status pyllm_tokenizer_append_token(pyllm_tokenizer *t, const char *text, size_t len, int special, int flags,
                                          int32_t *id, int *fresh)
{
    const pyllm_token_table *table = pyllm_tokenizer_table(t);
    *fresh = 0;
    *id = pyllm_vocab_find(&table->specials.strings.strings, text, len);
    if (*id >= 0) {
        *id = table->specials.ids[*id];
        return PYLLM_OK;
    }
    if (flags != 0 && t->kind != PYLLM_TOKENIZER_MERGES)
        return pyllm_error(PYLLM_ERR_VALUE, "AddedToken lstrip, rstrip and single_word apply to merges tokenizers "
                                            "(tokenizer.json, GGUF gpt2), not to a SentencePiece model");
    *id = pyllm_vocab_find(&table->vocab, text, len);
    if (*id < 0)
        *id = table->vocab.n_tokens;
    PYLLM_TRY(pyllm_tokenizer_add_token(t, text, len, *id, special));
    if (t->kind == PYLLM_TOKENIZER_MERGES)
        PYLLM_TRY(pyllm_merges_set_added_flags(&t->as.merges, *id, flags));
    *fresh = 1;
    return PYLLM_OK;
}

pyllm_status pyllm_tokenizer_encode(const pyllm_tokenizer *t, const char *text, size_t len, int flags,
                                    pyllm_ids *out)
{
    pyllm_tok_work work = {0};
    return pyllm_tokenizer_encode_counted(t, text, len, flags, out, &work);
}

pyllm_status pyllm_tokenizer_encode_counted(const pyllm_tokenizer *t, const char *text, size_t len, int flags,
                                            pyllm_ids *out, pyllm_tok_work *work)
{
    if (t->kind == PYLLM_TOKENIZER_SENTENCEPIECE)
        return pyllm_spm_tokenizer_encode_counted(&t->as.spm, text, len, flags, out, work);
    return pyllm_merges_encode_counted(&t->as.merges, text, len, flags, out, work);
}

pyllm_status pyllm_tokenizer_decode(const pyllm_tokenizer *t, const int32_t *ids, size_t n, int skip_specials,
                                    pyllm_bytes *out)
{
    if (t->kind == PYLLM_TOKENIZER_SENTENCEPIECE)
        return pyllm_spm_tokenizer_decode(&t->as.spm, ids, n, skip_specials, out);
    return pyllm_merges_decode(&t->as.merges, ids, n, skip_specials, out);
}
