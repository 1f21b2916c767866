/* Finds special-token strings (<s>, </s>, added tokens, ...) written in the text, so they
 * are split out before normalization and BPE and become their own ids, as transformers does.
 * Matches are leftmost, and longest among those starting at the same byte. */
#ifndef PYLLM_TOKENIZERS_SPECIAL_TOKENS_H
#define PYLLM_TOKENIZERS_SPECIAL_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/prefix_matcher.h"

typedef struct {
    pyllm_prefix_matcher strings; /* string i of the set has id ids[i] */
    int32_t *ids;
    int32_t cap_ids;
    uint8_t first_byte[256];      /* 1 when some special token starts with this byte */
} pyllm_special_tokens;

pyllm_status pyllm_special_tokens_init(pyllm_special_tokens *s);
void pyllm_special_tokens_free(pyllm_special_tokens *s);
/* Add (or re-map) a special token. */
pyllm_status pyllm_special_tokens_add(pyllm_special_tokens *s, const char *text, size_t len, int32_t id);

/* Find the first special token in text[0..len): 1 with its offset, length and id, or 0. *steps
 * grows by the positions scanned and the matcher's probes. */
int pyllm_special_tokens_find(const pyllm_special_tokens *s, const char *text, size_t len, size_t *start,
                              size_t *match_len, int32_t *id, uint64_t *steps);

static inline int pyllm_special_tokens_empty(const pyllm_special_tokens *s)
{
    return pyllm_prefix_matcher_empty(&s->strings);
}

#endif
