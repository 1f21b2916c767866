/* Prompt-lookup drafting (transformers' PromptLookupCandidateGenerator): the tokens that followed
 * the earliest earlier occurrence of the sequence's last n-gram, trying n from the longest down.
 * Editing or quoting a given text repeats it, so those continuations are often right. */
#ifndef PYLLM_GENERATE_PROMPT_LOOKUP_H
#define PYLLM_GENERATE_PROMPT_LOOKUP_H

#include <stdint.h>

/* Up to max_tokens draft tokens for history[0..length) into draft; returns how many (0: no
 * n-gram of size max_ngram .. 1 recurs with a continuation). */
int64_t pyllm_prompt_lookup(const int32_t *history, int64_t length, int32_t max_ngram, int64_t max_tokens,
                            int32_t *draft);

#endif
