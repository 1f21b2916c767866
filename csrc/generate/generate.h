/* The generation loop: prefill the prompt into the KV cache, then process the logits, pick and
 * feed one token per row per step, in C, until every row has ended or the budget is spent.
 *
 * Rows end on their own (an end token, a stopping hook, the length budget); once a row ends the
 * cache drops it, so the forward pass runs over the unfinished rows only. Row b always samples
 * from its own stream seeded by (seed, b), whichever other rows are still running. */
#ifndef PYLLM_GENERATE_GENERATE_H
#define PYLLM_GENERATE_GENERATE_H

#include <stdint.h>

#include "core/error.h"
#include "generate/processors.h"
#include "generate/sampler.h"
#include "models/decoder.h"

/* Calls back into the caller between steps; every member may be NULL. A hook that fails returns
 * a status other than PYLLM_OK, which ends the loop with that status. sequences is the caller's
 * out array [batch, width] of which the first `columns` columns are filled; scores are
 * [batch, vocab] (rows that have ended hold zeros). */
typedef struct {
    void *ctx;
    /* The user's logits processors: rewrite scores in place. */
    pyllm_status (*process)(void *ctx, const int64_t *sequences, int64_t width, int64_t columns, float *scores);
    /* Stopping criteria: set done[b] = 1 for rows that should end now. */
    pyllm_status (*stop)(void *ctx, const int64_t *sequences, int64_t width, int64_t columns, const float *scores,
                         uint8_t *done);
    /* A streamer: this step's token of every row (padding for ended rows). */
    pyllm_status (*stream)(void *ctx, const int64_t *tokens);
    /* Nonzero stops the loop with PYLLM_ERR_INTERRUPTED (a user's Ctrl-C). */
    int (*interrupted)(void *ctx);
} pyllm_generate_hooks;

typedef struct {
    int64_t max_new_tokens;
    pyllm_sampling_params sampling;
    pyllm_processor_params processors; /* eos_ids / n_eos there are also the end tokens */
    uint64_t seed;            /* row b samples from a stream seeded by (seed, b) */
    int32_t pad_token_id;     /* fills a finished row */
    pyllm_generate_hooks hooks;
    /* Log-probabilities, written when logprobs is not NULL: logprobs[batch, max_new_tokens] of the
     * chosen tokens, and when top_n > 0 the top_n best tokens per step, top_ids / top_logprobs
     * [batch, max_new_tokens, top_n]. From the raw logits, or from the processed (and warped)
     * scores the token was chosen from when `processed`. Steps after a row ended hold 0 / -1. */
    float *logprobs;
    int32_t top_n;
    int64_t *top_ids;
    float *top_logprobs;
    int processed;
    /* When not NULL, [max_new_tokens, rows, vocab]: per step the scores each token was chosen from
     * (after every processor and warper) and the raw logits; rows that have ended hold zeros. */
    float *scores;
    float *raw_logits;
} pyllm_generate_options;

/* prompt[batch, prompt_len] (mask as in pyllm_decoder_forward, NULL = all real) runs through an
 * empty cache of that batch, or (batch 1) a cache already holding the prompt's first cache->used
 * tokens, which are then not computed again (pyllm/prefix_cache.py). sequences[batch, prompt_len + max_new_tokens] receives the prompt
 * then the new tokens; *n_steps the number of steps taken (new columns filled); new_count[batch]
 * (may be NULL) each row's new tokens before it ended, its end token included. */
pyllm_status pyllm_generate(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *prompt, const uint8_t *mask,
                            int64_t prompt_len, const pyllm_generate_options *opt, int64_t *sequences,
                            int64_t *n_steps, int64_t *new_count);

#endif
