/* The tokenizer.json side of pyllm_tokenizer: a BPE model with rank-ordered merges behind
 * Hugging Face's normalizers, pre-tokenizers and decoders (byte-level BPE as BLOOM, GPT-2 and
 * LLaMA-3 use it; SentencePiece-style BPE as HF ships LLaMA). pyllm/tokenizer_json.py reads
 * the JSON and describes the pipeline through these calls. */
#ifndef PYLLM_TOKENIZERS_TOKENIZER_JSON_H
#define PYLLM_TOKENIZERS_TOKENIZER_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/bpe_ranked.h"
#include "tokenizers/decoder_chain.h"
#include "tokenizers/pretokenizer.h"

enum { PYLLM_ADDED_LSTRIP = 1, PYLLM_ADDED_RSTRIP = 2, PYLLM_ADDED_SINGLE_WORD = 4 };
enum { PYLLM_HF_NORMALIZER, PYLLM_HF_PRE_TOKENIZER, PYLLM_HF_DECODER };

typedef struct {
    pyllm_step *steps[3];       /* normalizers, pre-tokenizers, decoders */
    size_t n_steps[3], cap_steps[3];
    pyllm_bpe_merges merges;
    size_t n_merges_read;       /* merges given so far: the next one's rank */
    int byte_level;             /* a ByteLevel pre-tokenizer: pieces are bytes for the model */
    int32_t byte_char_ids[256]; /* id of the character standing for each byte, or -1 */
    int32_t byte_token_ids[256];/* id of <0xXX>, or -1 (byte_fallback) */
    int32_t unk_id;
    int byte_fallback, fuse_unk, ignore_merges;
    uint8_t *added_flags;       /* PYLLM_ADDED_* per id */
    int32_t cap_flags;
} pyllm_hf_bpe;

#endif
