/* Longest-prefix matching against a small set of strings (SentencePiece's user-defined
 * symbols): a hash set probed once per distinct string length, longest first. */
#ifndef PYLLM_TOKENIZERS_PREFIX_MATCHER_H
#define PYLLM_TOKENIZERS_PREFIX_MATCHER_H

#include <stddef.h>

#include "core/error.h"
#include "tokenizers/vocab.h"

typedef struct {
    pyllm_vocab strings;
    size_t *lengths; /* distinct lengths, descending */
    size_t n_lengths;
} pyllm_prefix_matcher;

pyllm_status pyllm_prefix_matcher_init(pyllm_prefix_matcher *m);
pyllm_status pyllm_prefix_matcher_add(pyllm_prefix_matcher *m, const char *s, size_t len);
void pyllm_prefix_matcher_free(pyllm_prefix_matcher *m);

/* Length of the longest string of the set that s[0..len) starts with; 0 when none. */
size_t pyllm_prefix_matcher_match(const pyllm_prefix_matcher *m, const char *s, size_t len);

static inline int pyllm_prefix_matcher_empty(const pyllm_prefix_matcher *m) { return m->n_lengths == 0; }

#endif
