#include "generate/generate.h"

#include <omp.h>

#include "core/alloc.h"

static int is_eos(const pyllm_generate_options *opt, int32_t token)
{
    for (int64_t i = 0; i < opt->n_eos; i++)
        if (opt->eos_ids[i] == token)
            return 1;
    return 0;
}

/* Everything the loop needs, allocated before its first step. */
typedef struct {
    float *logits;       /* [batch, vocab] */
    int32_t *next;       /* [batch] */
    uint8_t *finished;   /* [batch] */
    pyllm_rng *rngs;     /* [batch] */
    pyllm_sampler sampler;
} loop_state;

static void loop_release(loop_state *s)
{
    pyllm_free(s->logits);
    pyllm_free(s->next);
    pyllm_free(s->finished);
    pyllm_free(s->rngs);
    pyllm_sampler_release(&s->sampler);
}

static pyllm_status loop_init(loop_state *s, int64_t batch, int64_t vocab, uint64_t seed)
{
    s->logits = pyllm_alloc(pyllm_mul_size((size_t)(batch * vocab), sizeof(float)));
    s->next = pyllm_alloc(sizeof(int32_t) * (size_t)batch);
    s->finished = pyllm_calloc((size_t)batch, 1);
    s->rngs = pyllm_alloc(sizeof(pyllm_rng) * (size_t)batch);
    if (s->logits == NULL || s->next == NULL || s->finished == NULL || s->rngs == NULL)
        return PYLLM_ERR_MEMORY;
    PYLLM_TRY(pyllm_sampler_init(&s->sampler, (int32_t)vocab));
    /* Distinct, reproducible streams per row: the row index mixed into the seed. */
    for (int64_t b = 0; b < batch; b++)
        pyllm_rng_seed(&s->rngs[b], seed ^ ((uint64_t)b * 0x9E3779B97F4A7C15ull));
    return PYLLM_OK;
}

static pyllm_status run(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *prompt, const uint8_t *mask,
                        int64_t prompt_len, const pyllm_generate_options *opt, int64_t *out, int64_t *n_steps,
                        loop_state *s)
{
    const int64_t batch = cache->batch, vocab = m->config.vocab_size;
    *n_steps = 0;
    if (opt->max_new_tokens <= 0)
        return PYLLM_OK;
    PYLLM_TRY(loop_init(s, batch, vocab, opt->seed));
    /* Buffers for the prompt (the largest call), primitives for the one-token steps. */
    PYLLM_TRY(pyllm_decoder_reserve(m, cache, prompt_len));
    PYLLM_TRY(pyllm_decoder_reserve(m, cache, 1));
    PYLLM_TRY(pyllm_decoder_forward(m, cache, prompt, mask, prompt_len, s->logits, 0));
    for (int64_t step = 0;; step++) {
        int all_finished = 1;
        for (int64_t b = 0; b < batch; b++) {
            int32_t token = opt->pad_token_id;
            if (!s->finished[b]) {
                PYLLM_TRY(pyllm_sample(&s->sampler, s->logits + b * vocab, &opt->sampling, &s->rngs[b], &token));
                if (is_eos(opt, token))
                    s->finished[b] = 1;
            }
            all_finished &= s->finished[b];
            s->next[b] = token;
            out[b * opt->max_new_tokens + step] = token;
        }
        *n_steps = step + 1;
        if (all_finished || step + 1 == opt->max_new_tokens)
            return PYLLM_OK;
        if (opt->interrupted != NULL && opt->interrupted(opt->interrupt_ctx))
            return pyllm_error(PYLLM_ERR_INTERRUPTED, "generation interrupted after %lld steps",
                               (long long)(step + 1));
        /* Finished rows keep running on their padding, as transformers does; it is cheap at
         * batch sizes where the slowest row dominates anyway. */
        PYLLM_TRY(pyllm_decoder_forward(m, cache, s->next, NULL, 1, s->logits, 0));
    }
}

pyllm_status pyllm_generate(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *prompt, const uint8_t *mask,
                            int64_t prompt_len, const pyllm_generate_options *opt, int64_t *out,
                            int64_t *n_steps)
{
    omp_set_num_threads(m->n_threads);
    PYLLM_TRY(pyllm_sampling_params_check(&opt->sampling));
    if (opt->pad_token_id < 0 || opt->pad_token_id >= m->config.vocab_size)
        return pyllm_error(PYLLM_ERR_VALUE, "pad_token_id %d is out of range [0, %lld)", (int)opt->pad_token_id,
                           (long long)m->config.vocab_size);
    if (cache->used + prompt_len + opt->max_new_tokens - 1 > cache->capacity)
        return pyllm_error(PYLLM_ERR_VALUE,
                           "prompt of %lld tokens plus max_new_tokens=%lld exceeds the context of %lld tokens "
                           "(n_ctx)", (long long)prompt_len, (long long)opt->max_new_tokens,
                           (long long)cache->capacity);
    loop_state s = {0};
    pyllm_status st = run(m, cache, prompt, mask, prompt_len, opt, out, n_steps, &s);
    loop_release(&s);
    return st;
}
