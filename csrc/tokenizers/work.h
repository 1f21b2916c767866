/* Work an encode call does, counted per call (the caller owns the struct, so threads never share
 * one and the hot loops need no atomics). Tests read it to prove that the work grows linearly with
 * the text, whatever the text; the regex engine also stops at a budget derived from it. */
#ifndef PYLLM_TOKENIZERS_WORK_H
#define PYLLM_TOKENIZERS_WORK_H

#include <stdint.h>

typedef struct {
    uint64_t regex_steps;      /* regex nodes entered and characters tested */
    uint64_t bpe_steps;        /* merge-queue pushes and pops, ranked and SentencePiece BPE */
    uint64_t special_steps;    /* positions scanned and bytes probed looking for special tokens */
    uint64_t normalizer_steps; /* SentencePiece normalizer: trie units and user-symbol probes */
    uint64_t pre_tokenizer_steps; /* bytes the normalizer and pre-tokenizer steps scan and write */
    uint64_t pieces;           /* pieces the pre-tokenizers hand to the model */
} pyllm_tok_work;

#endif
