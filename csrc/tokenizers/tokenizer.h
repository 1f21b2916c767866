/* A SentencePiece-BPE tokenizer: vocabulary, normalizer, BPE model and special-token
 * splitter, built from a tokenizer.model (protobuf) or a llama2.c tokenizer.bin.
 * Encoding and decoding only read the object, so they may run on several threads at once. */
#ifndef PYLLM_TOKENIZERS_TOKENIZER_H
#define PYLLM_TOKENIZERS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/bpe_sentencepiece.h"
#include "tokenizers/buffers.h"
#include "tokenizers/normalizer.h"
#include "tokenizers/prefix_matcher.h"
#include "tokenizers/special_tokens.h"
#include "tokenizers/tokenizer_json.h"
#include "tokenizers/vocab.h"

typedef struct pyllm_tokenizer {
    pyllm_vocab vocab;          /* the model's pieces, then tokens added later */
    int32_t n_pieces;           /* pieces of the model proper */
    float *scores;              /* [n_pieces] */
    uint8_t *types;             /* [capacity]: pyllm_piece_type; added tokens are CONTROL when
                                 * special, USER_DEFINED otherwise */
    int32_t cap_types;
    pyllm_prefix_matcher user_defined;
    pyllm_spm_normalizer normalizer;
    pyllm_spm_normalizer denormalizer;
    int has_denormalizer;
    pyllm_special_tokens specials;
    pyllm_spm_bpe bpe;
    int32_t byte_ids[256];
    int32_t unk_id, bos_id, eos_id, pad_id; /* -1 when the model has none */
    char *unk_surface;          /* what decoding writes for <unk> */
    int byte_fallback;
    int split_digits;
    int add_dummy_prefix;
    int remove_extra_whitespaces;
    pyllm_hf_bpe *hf;           /* set for tokenizer.json BPE; NULL for SentencePiece */
} pyllm_tokenizer;

/* From a serialized SentencePiece ModelProto (tokenizer.model); BPE models only. */
pyllm_status pyllm_tokenizer_from_sentencepiece(const void *data, size_t len, pyllm_tokenizer **out);

/* From a llama2.c tokenizer file, whose number of tokens is not stored. */
pyllm_status pyllm_tokenizer_from_llama2c(const void *data, size_t len, int32_t vocab_size,
                                          pyllm_tokenizer **out);

/* An empty tokenizer (no ids yet); for the builders. */
pyllm_tokenizer *pyllm_tokenizer_alloc(void);
void pyllm_tokenizer_free(pyllm_tokenizer *t);

/* tokenizer.json BPE, built in steps: an empty tokenizer, its vocabulary in id order, merges
 * by rank, pipeline steps, then the model options. */
pyllm_status pyllm_tokenizer_hf_new(int32_t n_tokens, size_t n_merges, pyllm_tokenizer **out);
pyllm_status pyllm_tokenizer_hf_add_vocab(pyllm_tokenizer *t, const char *s, size_t len);
pyllm_status pyllm_tokenizer_hf_add_merge(pyllm_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen);
/* which: PYLLM_HF_NORMALIZER / _PRE_TOKENIZER (kind: pyllm_step_kind) or _DECODER (pyllm_decode_kind). */
pyllm_status pyllm_tokenizer_hf_add_step(pyllm_tokenizer *t, int which, int kind, const char *s1, size_t len1,
                                         const char *s2, size_t len2, int is_regex, int a, int b);
pyllm_status pyllm_tokenizer_hf_finish(pyllm_tokenizer *t, int32_t unk_id, int byte_fallback, int fuse_unk,
                                       int ignore_merges);
/* lstrip / rstrip / single_word (PYLLM_ADDED_*) of an added token. */
pyllm_status pyllm_tokenizer_hf_set_added_flags(pyllm_tokenizer *t, int32_t id, int flags);
pyllm_status pyllm_tokenizer_hf_encode(const pyllm_tokenizer *t, const char *text, size_t len, int flags,
                                       pyllm_ids *out);
pyllm_status pyllm_tokenizer_hf_decode(const pyllm_tokenizer *t, const int32_t *ids, size_t n, int skip_specials,
                                       pyllm_bytes *out);
/* The pieces the normalizers and pre-tokenizers make of text (no added-token matching); byte-level
 * pieces are raw bytes, not yet mapped to their characters. out must be empty. */
pyllm_status pyllm_tokenizer_hf_pre_tokenize(const pyllm_tokenizer *t, const char *text, size_t len,
                                             pyllm_pieces *out);
void pyllm_hf_bpe_free(pyllm_hf_bpe *hf);

/* Make text an added token with this id: either the id of the same existing token, or the
 * next free id. Added tokens written in the text are split out before encoding. A new special
 * token is dropped by decode(skip_specials=1); a new non-special one is always written. */
pyllm_status pyllm_tokenizer_add_token(pyllm_tokenizer *t, const char *text, size_t len, int32_t id, int special);

enum {
    /* Match special tokens in the text first and encode the stretches between them separately. */
    PYLLM_ENCODE_SPLIT_SPECIALS = 1,
    /* transformers' non-legacy LLaMA mode: a stretch that follows a special token gets no dummy
     * prefix (only the start of the text does). */
    PYLLM_ENCODE_NO_PREFIX_AFTER_SPECIAL = 2,
};

/* Append the ids of UTF-8 text to out; flags are PYLLM_ENCODE_* bits. */
pyllm_status pyllm_tokenizer_encode(const pyllm_tokenizer *t, const char *text, size_t len, int flags,
                                    pyllm_ids *out);

/* Text of ids into out (cleared first). skip_specials=1 reproduces SentencePiece's decode
 * (control tokens vanish, <unk> becomes its surface); 0 writes special tokens as their text. */
pyllm_status pyllm_tokenizer_decode(const pyllm_tokenizer *t, const int32_t *ids, size_t n, int skip_specials,
                                    pyllm_bytes *out);

#endif
