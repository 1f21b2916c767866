/* The regular expressions of tokenizer.json pre-tokenizers (Split patterns, GPT-2's ByteLevel
 * split), matched like Oniguruma: leftmost match, alternatives tried in order, greedy / lazy /
 * possessive quantifiers. Supported: literals and escapes, '.', classes (negated, nested,
 * ranges, \s \S \d \D \p{..} \P{..} inside), groups (?: ) ( ) (?i: ), lookahead (?= ) (?! ),
 * quantifiers * + ? {n} {n,} {n,m} on single characters and ? on groups. Anything else is
 * rejected at compile time with an error naming it (\w too: Oniguruma's word class is not the one
 * Unicode defines, and no pattern here needs it), and so is a pattern over 4096 nodes, 64 levels of
 * nesting or 16384 class items. Matching backtracks, but with no quantified groups only
 * single-character repetitions (one position at a time) and alternatives do: the BLOOM, GPT-2 and
 * LLaMA-3 patterns take time linear in the text (tests count it). A pattern that chains optional
 * groups of alternatives or repetitions of overlapping classes could take exponential or high
 * polynomial time, which no compile-time check sees exactly: such a pattern is stopped by a step
 * budget instead, proportional to the text and the pattern's size, like Oniguruma's retry limit.
 */
#ifndef PYLLM_TOKENIZERS_REGEX_H
#define PYLLM_TOKENIZERS_REGEX_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct pyllm_regex pyllm_regex;

pyllm_status pyllm_regex_compile(const char *pattern, size_t len, pyllm_regex **out);
void pyllm_regex_free(pyllm_regex *re);

/* Steps a search may take, per byte of text and per node of the pattern, plus a fixed allowance per
 * text: the shipped patterns take under 18 per byte on any text (2 per byte and node); a pattern
 * that is quadratic in a word's length (\p{L}+(?=\s) scans a word from each of its characters) still
 * runs on words up to about a thousand characters, as it does in tokenizers; only a pattern that
 * backtracks without measure over a long text reaches the budget. The worst text for a hostile
 * pattern costs (16 * nodes + 2^20 / about 1000) steps per byte: linear, and a 10 MB call stays
 * within about 10^10 steps. */
#define PYLLM_REGEX_STEPS_PER_BYTE 16
#define PYLLM_REGEX_STEPS_PER_TEXT (1u << 20)

/* The steps searches have taken and the most they may take (the caller's, one per search run). */
typedef struct {
    uint64_t steps;
    uint64_t limit;
} pyllm_regex_budget;

/* PYLLM_REGEX_STEPS_PER_BYTE * nodes * (len + 1) + PYLLM_REGEX_STEPS_PER_TEXT: the budget of the
 * searches over one text of len bytes. */
uint64_t pyllm_regex_budget_for(const pyllm_regex *re, size_t len);

/* Leftmost match in text[0..len) starting at or after `from`: 1 with [*start, *end), 0 when there is
 * none, -1 when the budget ran out first (budget->steps is past budget->limit). */
int pyllm_regex_find_counted(const pyllm_regex *re, const char *text, size_t len, size_t from, size_t *start,
                             size_t *end, pyllm_regex_budget *budget);

/* The same with a budget of its own for text[from..len): 1 with the match, else 0 (none found, or
 * the budget ran out). */
int pyllm_regex_find(const pyllm_regex *re, const char *text, size_t len, size_t from, size_t *start, size_t *end);

/* The pattern as compiled (NUL-terminated), for messages. */
const char *pyllm_regex_pattern(const pyllm_regex *re);

#endif
