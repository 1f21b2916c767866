/* A tokenizer of one of two kinds, each its own algorithm:
 *   PYLLM_TOKENIZER_SENTENCEPIECE  SentencePiece BPE: scored pieces, SentencePiece's normalizer
 *                                  (tokenizer.model, llama2.c tokenizer.bin, GGUF "llama");
 *   PYLLM_TOKENIZER_MERGES         BPE by merge rank behind a pre-tokenizer pipeline: byte-level
 *                                  BPE (tokenizer.json, GGUF "gpt2") or HF's SentencePiece-style BPE.
 * Both share a token table (tokens, types, special strings, special ids). This file only
 * dispatches; it depends on the two kinds, which know nothing of each other or of it.
 * Encoding and decoding only read the object, so they may run on several threads at once. */
#ifndef PYLLM_TOKENIZERS_TOKENIZER_H
#define PYLLM_TOKENIZERS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/buffers.h"
#include "tokenizers/token_table.h"
#include "tokenizers/tokenizer_merges.h"
#include "tokenizers/tokenizer_spm.h"

typedef enum { PYLLM_TOKENIZER_SENTENCEPIECE, PYLLM_TOKENIZER_MERGES } pyllm_tokenizer_kind;

typedef struct pyllm_tokenizer {
    pyllm_tokenizer_kind kind;
    union {
        pyllm_spm_tokenizer spm;        /* kind SENTENCEPIECE */
        pyllm_merges_tokenizer merges;  /* kind MERGES */
    } as;
} pyllm_tokenizer;

/* An empty tokenizer of a kind, for the builders (its as.spm / as.merges is zeroed); NULL when
 * out of memory. */
pyllm_tokenizer *pyllm_tokenizer_new(pyllm_tokenizer_kind kind);
void pyllm_tokenizer_free(pyllm_tokenizer *t);

/* SentencePiece kind from a serialized ModelProto (tokenizer.model; BPE models only), or from a
 * llama2.c tokenizer file, whose number of tokens is not stored. */
pyllm_status pyllm_tokenizer_from_sentencepiece(const void *data, size_t len, pyllm_tokenizer **out);
pyllm_status pyllm_tokenizer_from_llama2c(const void *data, size_t len, int32_t vocab_size,
                                          pyllm_tokenizer **out);

/* The tokens, types and special ids every kind has. */
const pyllm_token_table *pyllm_tokenizer_table(const pyllm_tokenizer *t);

/* Make text an added token with this id: either the id of the same existing token, or the
 * next free id. Added tokens written in the text are split out before encoding. A new special
 * token is dropped by decode(skip_specials=1); a new non-special one is always written. */
pyllm_status pyllm_tokenizer_add_token(pyllm_tokenizer *t, const char *text, size_t len, int32_t id, int special);

/* transformers' add_tokens for one token: unless text is already an added token (then *fresh = 0
 * and nothing changes), make it one, at its vocabulary id or the next free id, with the merges
 * kind's added-token flags (lstrip 1 / rstrip 2 / single_word 4; the SentencePiece kind takes
 * none). The id is chosen and the token added in one step, so callers that hold the tokenizer
 * exclusively never race for an id. *id gets the token's id either way. */
pyllm_status pyllm_tokenizer_append_token(pyllm_tokenizer *t, const char *text, size_t len, int special, int flags,
                                          int32_t *id, int *fresh);

/* Append the ids of UTF-8 text to out; flags are PYLLM_ENCODE_* bits (token_table.h). */
pyllm_status pyllm_tokenizer_encode(const pyllm_tokenizer *t, const char *text, size_t len, int flags,
                                    pyllm_ids *out);
/* The same, adding the work done to *work (tokenizers/work.h): every count grows linearly with len. */
pyllm_status pyllm_tokenizer_encode_counted(const pyllm_tokenizer *t, const char *text, size_t len, int flags,
                                            pyllm_ids *out, pyllm_tok_work *work);

/* Text of ids into out (cleared first). skip_specials=1 reproduces the reference decode
 * (SentencePiece: control tokens vanish, <unk> becomes its surface; tokenizers: special tokens
 * vanish); 0 writes special tokens as their text. */
pyllm_status pyllm_tokenizer_decode(const pyllm_tokenizer *t, const int32_t *ids, size_t n, int skip_specials,
                                    pyllm_bytes *out);

#endif
