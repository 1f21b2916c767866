/* What every tokenizer kind has: the tokens by id and their types, the special strings split
 * out of the text before encoding, and the ids of the usual special tokens. */
#ifndef PYLLM_TOKENIZERS_TOKEN_TABLE_H
#define PYLLM_TOKENIZERS_TOKEN_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/sentencepiece_model.h"
#include "tokenizers/special_tokens.h"
#include "tokenizers/vocab.h"

typedef struct {
    pyllm_vocab vocab;          /* the model's tokens, then tokens added later */
    int32_t n_pieces;           /* tokens of the model proper */
    uint8_t *types;             /* [cap_types]: pyllm_piece_type per id; added tokens are CONTROL
                                 * when special, USER_DEFINED otherwise */
    int32_t cap_types;
    pyllm_special_tokens specials;
    int32_t unk_id, bos_id, eos_id, pad_id; /* -1 when the model has none */
    int byte_fallback;          /* unknown characters become <0xXX> byte tokens */
} pyllm_token_table;

enum {
    /* Match special tokens in the text first and encode the stretches between them separately. */
    PYLLM_ENCODE_SPLIT_SPECIALS = 1,
    /* transformers' non-legacy LLaMA mode: a stretch that follows a special token gets no dummy
     * prefix (only the start of the text does). SentencePiece kind only. */
    PYLLM_ENCODE_NO_PREFIX_AFTER_SPECIAL = 2,
};

/* An empty table with room for about n_tokens tokens. */
pyllm_status pyllm_token_table_init(pyllm_token_table *t, int32_t n_tokens);
void pyllm_token_table_free(pyllm_token_table *t);

/* Append a token of the model proper with its type; a repeated string is an error naming both ids. */
pyllm_status pyllm_token_table_append(pyllm_token_table *t, const char *s, size_t len, int type);

/* Make text an added token with this id: either the id of the same existing token, or the next
 * free id (typed CONTROL when special, else USER_DEFINED). Either way the text is split out of
 * inputs as that id. *existed says which case it was. */
pyllm_status pyllm_token_table_add_token(pyllm_token_table *t, const char *text, size_t len, int32_t id,
                                         int special, int *existed);

#endif
