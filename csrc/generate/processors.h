/* Logits processors: what changes one row of scores before a token is chosen, over that row's
 * own history (its real prompt tokens, padding excluded, followed by the tokens it generated).
 *
 * Two stages, in transformers' order (GenerationMixin._get_logits_processor):
 *   processors: logit_bias (pyllm's, first), repetition_penalty, frequency/presence penalty
 *               (pyllm's, OpenAI's formula), no_repeat_ngram_size, bad_words_ids,
 *               min_new_tokens; a user's callables run after these (in the loop);
 *   warpers (sampling only): temperature, top_k, top_p, min_p, typical_p.
 * Removed tokens get -inf, as transformers' filter_value. */
#ifndef PYLLM_GENERATE_PROCESSORS_H
#define PYLLM_GENERATE_PROCESSORS_H

#include <stdint.h>

#include "core/error.h"
#include "generate/sampler.h"

typedef struct {
    /* logit_bias: scores[bias_ids[i]] += bias_values[i] */
    const int32_t *bias_ids;
    const float *bias_values;
    int64_t n_bias;
    float repetition_penalty;   /* 1: off */
    float frequency_penalty;    /* 0: off; counts over generated tokens only */
    float presence_penalty;     /* 0: off; likewise */
    int32_t no_repeat_ngram_size; /* 0: off */
    /* bad_words_ids: sequence i is bad_words[bad_word_start[i] .. bad_word_start[i + 1]) */
    const int32_t *bad_words;
    const int64_t *bad_word_start; /* [n_bad_words + 1] */
    int64_t n_bad_words;
    int64_t min_new_tokens;     /* end tokens banned while fewer were generated */
    const int32_t *eos_ids;
    int64_t n_eos;
} pyllm_processor_params;

/* ValueError naming the first option out of range for a vocabulary of vocab_size. */
pyllm_status pyllm_processor_params_check(const pyllm_processor_params *p, int32_t vocab_size);

/* Nonzero when some processor would change a row (so the loop may skip the call). */
int pyllm_processors_active(const pyllm_processor_params *p);

/* Scratch for one vocabulary size: token counts and marks, sorted candidates. */
typedef struct {
    int32_t vocab_size;
    int32_t *count;              /* [vocab], zero between calls */
    pyllm_scored_token *order;   /* [vocab] */
    double *prob;                /* [vocab] */
} pyllm_processor_scratch;

pyllm_status pyllm_processor_scratch_init(pyllm_processor_scratch *s, int32_t vocab_size);
void pyllm_processor_scratch_release(pyllm_processor_scratch *s);

/* Apply the processors to scores[vocab] for a row whose history is history[0..length), the first
 * n_prompt of them its prompt (length - n_prompt were generated). */
void pyllm_process_row(const pyllm_processor_params *p, pyllm_processor_scratch *s, const int32_t *history,
                       int64_t length, int64_t n_prompt, float *scores);

/* Apply the sampling warpers of p (temperature, top_k, top_p, min_p, typical_p) to scores[vocab]:
 * pyllm's one implementation of each, which pyllm_sample's draw follows. A no-op for greedy
 * parameters (do_sample off or temperature 0); s is only read for typical_p < 1. */
void pyllm_warp_row(const pyllm_sampling_params *p, pyllm_sampler *sampler, pyllm_processor_scratch *s,
                    float *scores);

/* The n best of values[vocab] (n <= vocab), best first, equal values by token id, into ids/vals. */
void pyllm_top_n(pyllm_processor_scratch *s, const float *values, int32_t n, int64_t *ids, float *vals);

#endif
