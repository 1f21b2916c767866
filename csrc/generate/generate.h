/* The generation loop: prefill the prompt into the KV cache, then pick and feed one token
 * per row per step, in C, until every row has met an end token or the budget is spent. */
#ifndef PYLLM_GENERATE_GENERATE_H
#define PYLLM_GENERATE_GENERATE_H

#include <stdint.h>

#include "core/error.h"
#include "generate/sampler.h"
#include "models/decoder.h"

typedef struct {
    int64_t max_new_tokens;
    pyllm_sampling_params sampling;
    uint64_t seed;            /* row b samples from a stream seeded by (seed, b) */
    const int32_t *eos_ids;   /* a row finishes when it emits one of these */
    int64_t n_eos;
    int32_t pad_token_id;     /* fills a finished row */
    /* Asked between steps (may be NULL): nonzero stops the loop with PYLLM_ERR_INTERRUPTED,
     * so a user's Ctrl-C ends a long generation. */
    int (*interrupted)(void *ctx);
    void *interrupt_ctx;
} pyllm_generate_options;

/* prompt[batch, prompt_len] (mask as in pyllm_decoder_forward, NULL = all real) runs
 * through an empty cache of that batch; new tokens go to out[batch, max_new_tokens]. *n_steps
 * receives the number of steps taken: the columns of out that hold tokens. */
pyllm_status pyllm_generate(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *prompt, const uint8_t *mask,
                            int64_t prompt_len, const pyllm_generate_options *opt, int64_t *out,
                            int64_t *n_steps);

#endif
