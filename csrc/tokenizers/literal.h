/* Search for a literal string (a Split or Replace pattern from a file) in linear time: Knuth-Morris-
 * Pratt, so a long pattern over text that almost matches it everywhere costs no more than a short
 * one. Matches are leftmost and do not overlap, as tokenizers finds them. */
#ifndef PYLLM_TOKENIZERS_LITERAL_H
#define PYLLM_TOKENIZERS_LITERAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/buffers.h"

typedef struct {
    char *text;       /* NUL-terminated copy */
    size_t len;
    size_t *fail;     /* fail[i]: length of the longest proper border of text[0..i] */
} pyllm_literal;

/* Copy s[0..len) and build its table; an empty literal is allowed (it matches everywhere). */
pyllm_status pyllm_literal_init(pyllm_literal *lit, const char *s, size_t len);
void pyllm_literal_free(pyllm_literal *lit);

/* Offset of the first occurrence in hay[from..len), or SIZE_MAX. *steps grows by the bytes
 * examined (at most 2 per byte of hay scanned). The literal must not be empty. */
size_t pyllm_literal_find(const pyllm_literal *lit, const char *hay, size_t len, size_t from, uint64_t *steps);

/* Append s[0..len) to out with every occurrence of the literal replaced by to[0..to_len). An empty
 * literal matches at every character boundary of a non-empty s (tokenizers' Replace("") puts `to`
 * before each character and after the last). */
pyllm_status pyllm_literal_replace(const pyllm_literal *lit, const char *s, size_t len, const char *to,
                                   size_t to_len, pyllm_bytes *out, uint64_t *steps);

#endif
