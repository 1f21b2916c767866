/* The SentencePiece-BPE tokenizer kind: pieces with scores, merged best score first, behind
 * SentencePiece's normalizer (dummy prefix, whitespace as U+2581), with byte fallback. Built from
 * a tokenizer.model (protobuf), a llama2.c tokenizer.bin, or pieces given one by one (a GGUF
 * vocabulary with tokenizer.ggml.model = "llama"). */
#ifndef PYLLM_TOKENIZERS_TOKENIZER_SPM_H
#define PYLLM_TOKENIZERS_TOKENIZER_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/bpe_sentencepiece.h"
#include "tokenizers/buffers.h"
#include "tokenizers/normalizer.h"
#include "tokenizers/prefix_matcher.h"
#include "tokenizers/token_table.h"
#include "tokenizers/work.h"

typedef struct {
    pyllm_token_table table;
    float *scores;              /* [n_pieces] */
    pyllm_prefix_matcher user_defined;
    pyllm_spm_normalizer normalizer;
    pyllm_spm_normalizer denormalizer;
    int has_denormalizer;
    pyllm_spm_bpe bpe;          /* borrows table, scores and user_defined */
    int32_t byte_ids[256];
    char *unk_surface;          /* what decoding writes for <unk> */
    int split_digits;
    int add_dummy_prefix;
    int remove_extra_whitespaces;
} pyllm_spm_tokenizer;

/* Each constructor fills a zeroed struct; on failure it is left for pyllm_spm_tokenizer_free. */
pyllm_status pyllm_spm_tokenizer_from_proto(pyllm_spm_tokenizer *t, const void *data, size_t len);
pyllm_status pyllm_spm_tokenizer_from_llama2c(pyllm_spm_tokenizer *t, const void *data, size_t len,
                                              int32_t vocab_size);

/* The pieces of a SentencePiece BPE model given as arrays (a GGUF vocabulary): texts[i] of
 * lengths[i] bytes, its score and its pyllm_piece_type. byte_fallback follows from the presence of
 * byte pieces; the normalizer is the identity one with the two whitespace options given. */
typedef struct {
    int add_dummy_prefix;
    int remove_extra_whitespaces;
} pyllm_spm_options;
pyllm_status pyllm_spm_tokenizer_from_pieces(pyllm_spm_tokenizer *t, const char *const *texts,
                                             const size_t *lengths, const float *scores, const int32_t *types,
                                             int32_t n, const pyllm_spm_options *options, const char *what);

void pyllm_spm_tokenizer_free(pyllm_spm_tokenizer *t);

pyllm_status pyllm_spm_tokenizer_add_token(pyllm_spm_tokenizer *t, const char *text, size_t len, int32_t id,
                                           int special);
/* flags: PYLLM_ENCODE_* of tokenizer.h. */
pyllm_status pyllm_spm_tokenizer_encode(const pyllm_spm_tokenizer *t, const char *text, size_t len, int flags,
                                        pyllm_ids *out);
/* The same, adding the work done to *work. */
pyllm_status pyllm_spm_tokenizer_encode_counted(const pyllm_spm_tokenizer *t, const char *text, size_t len,
                                                int flags, pyllm_ids *out, pyllm_tok_work *work);
pyllm_status pyllm_spm_tokenizer_decode(const pyllm_spm_tokenizer *t, const int32_t *ids, size_t n,
                                        int skip_specials, pyllm_bytes *out);

#endif
