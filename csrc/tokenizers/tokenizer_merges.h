/* The merges-BPE tokenizer kind: a BPE model with rank-ordered merges behind Hugging Face's
 * normalizers, pre-tokenizers and decoders — byte-level BPE as BLOOM, GPT-2 and LLaMA-3 use it,
 * or SentencePiece-style BPE as HF ships LLaMA in tokenizer.json. pyllm/tokenizer_json.py (a
 * tokenizer.json) and pyllm/tokenizer_gguf.py (a GGUF vocabulary with tokenizer.ggml.model =
 * "gpt2") describe the vocabulary, merges and pipeline through these calls, in this order: init,
 * add_vocab for every token in id order, add_merge by rank, add_step, finish. */
#ifndef PYLLM_TOKENIZERS_TOKENIZER_MERGES_H
#define PYLLM_TOKENIZERS_TOKENIZER_MERGES_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/bpe_ranked.h"
#include "tokenizers/buffers.h"
#include "tokenizers/decoder_chain.h"
#include "tokenizers/pretokenizer.h"
#include "tokenizers/token_table.h"
#include "tokenizers/work.h"

enum { PYLLM_ADDED_LSTRIP = 1, PYLLM_ADDED_RSTRIP = 2, PYLLM_ADDED_SINGLE_WORD = 4 };
enum { PYLLM_HF_NORMALIZER, PYLLM_HF_PRE_TOKENIZER, PYLLM_HF_DECODER };

typedef struct {
    pyllm_token_table table;
    pyllm_step *steps[3];       /* normalizers, pre-tokenizers, decoders */
    size_t n_steps[3], cap_steps[3];
    pyllm_bpe_merges merges;
    size_t n_merges_read;       /* merges given so far: the next one's rank */
    int byte_level;             /* a ByteLevel pre-tokenizer: pieces are bytes for the model */
    int32_t byte_char_ids[256]; /* id of the character standing for each byte, or -1 */
    int32_t byte_token_ids[256];/* id of <0xXX>, or -1 (byte_fallback) */
    int fuse_unk, ignore_merges;
    uint8_t *added_flags;       /* PYLLM_ADDED_* per id */
    int32_t cap_flags;
} pyllm_merges_tokenizer;

/* A zeroed struct made empty, with room for about n_tokens tokens and n_merges merges. On failure
 * (here or in any later step) release it with pyllm_merges_tokenizer_free. */
pyllm_status pyllm_merges_tokenizer_init(pyllm_merges_tokenizer *t, int32_t n_tokens, size_t n_merges);
void pyllm_merges_tokenizer_free(pyllm_merges_tokenizer *t);

pyllm_status pyllm_merges_add_vocab(pyllm_merges_tokenizer *t, const char *s, size_t len);
pyllm_status pyllm_merges_add_merge(pyllm_merges_tokenizer *t, const char *a, size_t alen, const char *b,
                                    size_t blen);
/* which: PYLLM_HF_NORMALIZER / _PRE_TOKENIZER (kind: pyllm_step_kind) or _DECODER (pyllm_decode_kind). */
pyllm_status pyllm_merges_add_step(pyllm_merges_tokenizer *t, int which, int kind, const char *s1, size_t len1,
                                   const char *s2, size_t len2, int is_regex, int a, int b);
pyllm_status pyllm_merges_finish(pyllm_merges_tokenizer *t, int32_t unk_id, int byte_fallback, int fuse_unk,
                                 int ignore_merges);

/* An added token (see pyllm_token_table_add_token); an existing token made special becomes CONTROL,
 * so decode(skip_specials=1) drops it as tokenizers does. */
pyllm_status pyllm_merges_add_token(pyllm_merges_tokenizer *t, const char *text, size_t len, int32_t id,
                                    int special);
/* lstrip / rstrip / single_word (PYLLM_ADDED_*) of an added token. */
pyllm_status pyllm_merges_set_added_flags(pyllm_merges_tokenizer *t, int32_t id, int flags);

pyllm_status pyllm_merges_encode(const pyllm_merges_tokenizer *t, const char *text, size_t len, int flags,
                                 pyllm_ids *out);
/* The same, adding the work done to *work. */
pyllm_status pyllm_merges_encode_counted(const pyllm_merges_tokenizer *t, const char *text, size_t len, int flags,
                                         pyllm_ids *out, pyllm_tok_work *work);
pyllm_status pyllm_merges_decode(const pyllm_merges_tokenizer *t, const int32_t *ids, size_t n, int skip_specials,
                                 pyllm_bytes *out);
/* The pieces the normalizers and pre-tokenizers make of text (no added-token matching); byte-level
 * pieces are raw bytes, not yet mapped to their characters. out must be empty. */
pyllm_status pyllm_merges_pre_tokenize(const pyllm_merges_tokenizer *t, const char *text, size_t len,
                                       pyllm_pieces *out);

#endif
