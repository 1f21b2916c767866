/* SentencePiece's BPE encoding of normalized text: start from characters (user-defined
 * symbols kept whole), repeatedly merge the adjacent pair whose concatenation is the
 * best-scored piece (ties: leftmost), using a priority queue over a linked list of symbols
 * (O(n log n)). Unused pieces are split back into their parts, unknown characters become
 * byte pieces (byte fallback) or one <unk> per run. */
#ifndef PYLLM_TOKENIZERS_BPE_SENTENCEPIECE_H
#define PYLLM_TOKENIZERS_BPE_SENTENCEPIECE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/buffers.h"
#include "tokenizers/prefix_matcher.h"
#include "tokenizers/vocab.h"

typedef struct {
    const pyllm_vocab *vocab;   /* piece -> id; ids >= n_pieces are not part of the model */
    int32_t n_pieces;
    const float *scores;
    const uint8_t *types;       /* pyllm_piece_type per id */
    const pyllm_prefix_matcher *user_defined;
    int has_unused;
    int32_t unk_id;
    int byte_fallback;
    const int32_t *byte_ids;    /* [256]: id of <0xXX>, when byte_fallback */
    /* Every mergeable piece is U+2581* followed by no U+2581 (true of models trained with
     * split_by_whitespace): no merge can cross a point where U+2581 follows another character,
     * so the text is encoded word by word there, with small cache-friendly queues. */
    int words_start_at_space;
} pyllm_spm_bpe;

/* Whether a mergeable piece fits the U+2581* [^U+2581]* shape that word-by-word encoding needs. */
int pyllm_spm_piece_allows_word_split(const char *piece, size_t len);

/* Append the ids of normalized text[0..len) to out. *steps grows by the symbols, the queue's pushes
 * and pops and the user-symbol probes (linear in len, whatever the text). */
pyllm_status pyllm_spm_bpe_encode(const pyllm_spm_bpe *m, const char *text, size_t len, pyllm_ids *out,
                                  uint64_t *steps);

#endif
