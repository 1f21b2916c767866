/* Longest-prefix matching against a set of strings (special tokens, SentencePiece's user-defined
 * symbols): a byte trie walked from the text's first byte, so a lookup costs the bytes it walks
 * (how far the text agrees with some string), not the number or lengths of the strings. */
#ifndef PYLLM_TOKENIZERS_PREFIX_MATCHER_H
#define PYLLM_TOKENIZERS_PREFIX_MATCHER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/vocab.h"

typedef struct {
    pyllm_vocab strings;   /* the set; string i was added i-th */
    /* trie: node 0 is the root; the edge (node, byte) -> child lives in an open-addressing hash */
    uint64_t *edge_keys;   /* (node << 8 | byte) + 1; 0 marks an empty slot */
    uint32_t *edge_child;
    size_t edge_mask;      /* slots - 1, a power of two */
    uint8_t *terminal;     /* per node: a string of the set ends here */
    size_t n_nodes, cap_nodes;
} pyllm_prefix_matcher;

pyllm_status pyllm_prefix_matcher_init(pyllm_prefix_matcher *m);
pyllm_status pyllm_prefix_matcher_add(pyllm_prefix_matcher *m, const char *s, size_t len);
void pyllm_prefix_matcher_free(pyllm_prefix_matcher *m);

/* Length of the longest string of the set that s[0..len) starts with; 0 when none. *steps grows by
 * the trie edges followed (at most the longest string's length). */
size_t pyllm_prefix_matcher_match(const pyllm_prefix_matcher *m, const char *s, size_t len, uint64_t *steps);

static inline int pyllm_prefix_matcher_empty(const pyllm_prefix_matcher *m) { return m->strings.n_tokens == 0; }

#endif
