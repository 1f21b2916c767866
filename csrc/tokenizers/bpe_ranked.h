/* Rank-ordered BPE as Hugging Face tokenizers runs it: a word starts as symbol ids, and the
 * adjacent pair with the lowest merge rank (leftmost on ties) is merged until none is left.
 * Merges live in a hash of (left id, right id) -> (rank, merged id); a heap with lazy
 * invalidation keeps each word O(n log n). */
#ifndef PYLLM_TOKENIZERS_BPE_RANKED_H
#define PYLLM_TOKENIZERS_BPE_RANKED_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/buffers.h"

typedef struct {
    uint64_t key;       /* left << 32 | right; UINT64_MAX when empty */
    int32_t rank;
    int32_t merged;
} pyllm_merge_slot;

typedef struct {
    pyllm_merge_slot *slots;
    size_t mask;
    size_t n;
} pyllm_bpe_merges;

pyllm_status pyllm_bpe_merges_init(pyllm_bpe_merges *m, size_t expected);
void pyllm_bpe_merges_free(pyllm_bpe_merges *m);
/* A later merge of the same pair replaces the earlier one (as tokenizers' HashMap does). */
pyllm_status pyllm_bpe_merges_add(pyllm_bpe_merges *m, int32_t left, int32_t right, int32_t rank, int32_t merged);

/* Merge the symbols of one word (ids; modified in place) and append the result to out. *steps grows
 * by the queue's pushes and pops (at most 3 per symbol: O(n log n) work for a word of n). */
pyllm_status pyllm_bpe_ranked_encode(const pyllm_bpe_merges *m, int32_t *symbols, size_t n, pyllm_ids *out,
                                     uint64_t *steps);

#endif
