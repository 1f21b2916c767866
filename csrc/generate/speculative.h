/* Speculative decoding: tokens drafted cheaply (prompt lookup, or a small draft model with the
 * same vocabulary) are checked by one forward pass of the target over all of them, which keeps
 * the longest acceptable run and rolls the KV cache back past the rest.
 *
 * Greedy: a draft is kept when it is the target's argmax, so the output is the target's greedy
 * text (bit for bit when multi-token calls give single-token logits: batch_invariant).
 * Sampling: rejection sampling (a draft x from q kept with probability min(1, p(x)/q(x)), else a
 * token drawn from max(0, p - q) renormalised; q one-hot for prompt lookup), so every token
 * follows the target's processed and warped distribution p exactly.
 *
 * Rows run one after another, each with its own one-row caches and its generate() random stream
 * (seeded by (seed, row)). */
#ifndef PYLLM_GENERATE_SPECULATIVE_H
#define PYLLM_GENERATE_SPECULATIVE_H

#include <stdint.h>

#include "generate/generate.h"

typedef struct {
    int64_t num_tokens;      /* drafted per round, at most */
    int32_t max_ngram;       /* prompt lookup: longest n-gram matched */
    pyllm_decoder *assistant; /* the draft model, or NULL for prompt lookup */
    /* Automatic mode: a row stops speculating once the acceptance rate so far says a round costs
     * more per token than a plain step, from costs measured at load (seconds): an n-token call
     * of the target costs verify_fixed + n * verify_per_token, a draft model's step draft_step.
     * No clock is read during generation, so a seed gives the same tokens every time. */
    int automatic;
    double verify_fixed, verify_per_token, draft_step;
} pyllm_speculation;

typedef struct {
    int64_t *drafted, *accepted; /* [batch]: draft tokens proposed, and kept */
    int64_t *stopped_at;         /* [batch]: new tokens when automatic mode stopped speculating, -1 never */
} pyllm_speculation_counts;

/* As pyllm_generate (sequences, n_steps, new_count alike) for prompt[batch, prompt_len] with
 * mask (NULL = all real); opt's hooks other than `interrupted` must be NULL. */
pyllm_status pyllm_speculative_generate(pyllm_decoder *m, const pyllm_speculation *spec, const int32_t *prompt,
                                        const uint8_t *mask, int64_t batch, int64_t prompt_len,
                                        const pyllm_generate_options *opt, int64_t *sequences, int64_t *n_steps,
                                        int64_t *new_count, const pyllm_speculation_counts *counts);

/* Seconds of one call of n_tokens new tokens on one row behind a short cached context: the
 * fastest of a few runs (the costs automatic mode weighs, measured when a model is loaded). */
pyllm_status pyllm_speculative_measure(pyllm_decoder *m, int64_t n_tokens, double *seconds);

#endif
