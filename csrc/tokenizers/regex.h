/* The regular expressions of tokenizer.json pre-tokenizers (Split patterns, GPT-2's ByteLevel
 * split), matched like Oniguruma: leftmost match, alternatives tried in order, greedy / lazy /
 * possessive quantifiers. Supported: literals and escapes, '.', classes (negated, nested,
 * ranges, \s \S \d \D \p{..} \P{..} inside), groups (?: ) ( ) (?i: ), lookahead (?= ) (?! ),
 * quantifiers * + ? {n} {n,} {n,m} on single characters and ? on groups. Anything else is
 * rejected at compile time with an error naming it (\w too: Oniguruma's word class is not the one
 * Unicode defines, and no pattern here needs it). Matching backtracks, but with no quantified
 * groups only single-character repetitions (one position at a time) and alternatives do: the
 * BLOOM, GPT-2 and LLaMA-3 patterns take time linear in what each attempt scans. A pattern that
 * chains many optional groups of alternatives could still take exponential time. */
#ifndef PYLLM_TOKENIZERS_REGEX_H
#define PYLLM_TOKENIZERS_REGEX_H

#include <stddef.h>

#include "core/error.h"

typedef struct pyllm_regex pyllm_regex;

pyllm_status pyllm_regex_compile(const char *pattern, size_t len, pyllm_regex **out);
void pyllm_regex_free(pyllm_regex *re);

/* Leftmost match in text[0..len) starting at or after `from`: 1 with [*start, *end), else 0. */
int pyllm_regex_find(const pyllm_regex *re, const char *text, size_t len, size_t from, size_t *start, size_t *end);

#endif
