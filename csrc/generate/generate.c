#include "generate/generate.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/alloc.h"
#include "ops/log_softmax.h"

static int is_eos(const pyllm_processor_params *p, int32_t token)
{
    for (int64_t i = 0; i < p->n_eos; i++)
        if (p->eos_ids[i] == token)
            return 1;
    return 0;
}

/* Everything the loop needs, allocated before its first step. Rows are the caller's; slots are
 * the rows still running, in the cache's (compacted) order. */
typedef struct {
    int64_t batch, width;  /* rows, and columns of `sequences` (prompt + budget) */
    float *logits;         /* [slots, vocab] */
    float *logprob_row;    /* [vocab]: log-softmax of one slot's scores */
    float *raw;            /* [slots, vocab]: raw logits kept for their log-probabilities, or NULL */
    float *full_scores;    /* [batch, vocab] for the hooks, or NULL */
    int32_t *history;      /* [batch, width]: real prompt tokens, then generated ones */
    int64_t *length, *n_prompt; /* [batch] */
    int64_t *slot_row;     /* [slots]: the row each slot holds */
    int64_t *keep;         /* [slots]: scratch for compaction */
    int32_t *next;         /* [slots]: the tokens the next forward pass feeds */
    int64_t *step_tokens;  /* [batch]: this step's token of every row */
    uint8_t *finished, *done, *stop_now; /* [batch]: ended, ended before this step, told to stop */
    pyllm_rng *rngs;       /* [batch] */
    pyllm_sampler sampler;
    pyllm_processor_scratch scratch;
} loop_state;

static void loop_release(loop_state *s)
{
    pyllm_free(s->logits);
    pyllm_free(s->logprob_row);
    pyllm_free(s->raw);
    pyllm_free(s->full_scores);
    pyllm_free(s->history);
    pyllm_free(s->length);
    pyllm_free(s->n_prompt);
    pyllm_free(s->slot_row);
    pyllm_free(s->keep);
    pyllm_free(s->next);
    pyllm_free(s->step_tokens);
    pyllm_free(s->finished);
    pyllm_free(s->done);
    pyllm_free(s->stop_now);
    pyllm_free(s->rngs);
    pyllm_sampler_release(&s->sampler);
    pyllm_processor_scratch_release(&s->scratch);
}

static pyllm_status loop_init(loop_state *s, const pyllm_generate_options *opt, int64_t batch, int64_t vocab,
                              int64_t prompt_len)
{
    const size_t b = (size_t)batch, bv = pyllm_mul_size(b, (size_t)vocab);
    s->batch = batch;
    s->width = prompt_len + opt->max_new_tokens;
    const int hooks = opt->hooks.process != NULL || opt->hooks.stop != NULL;
    s->logits = pyllm_alloc(pyllm_mul_size(bv, sizeof(float)));
    s->logprob_row = pyllm_alloc(sizeof(float) * (size_t)vocab);
    const int want_raw = (opt->logprobs != NULL && !opt->processed) || opt->raw_logits != NULL;
    s->raw = want_raw ? pyllm_alloc(pyllm_mul_size(bv, sizeof(float))) : NULL;
    s->full_scores = hooks ? pyllm_calloc(bv, sizeof(float)) : NULL;
    s->history = pyllm_alloc(pyllm_mul_size(pyllm_mul_size(b, (size_t)s->width), sizeof(int32_t)));
    s->length = pyllm_alloc(sizeof(int64_t) * b);
    s->n_prompt = pyllm_alloc(sizeof(int64_t) * b);
    s->slot_row = pyllm_alloc(sizeof(int64_t) * b);
    s->keep = pyllm_alloc(sizeof(int64_t) * b);
    s->next = pyllm_alloc(sizeof(int32_t) * b);
    s->step_tokens = pyllm_alloc(sizeof(int64_t) * b);
    s->finished = pyllm_calloc(b, 1);
    s->done = pyllm_calloc(b, 1);
    s->stop_now = pyllm_calloc(b, 1);
    s->rngs = pyllm_alloc(sizeof(pyllm_rng) * b);
    if (s->logits == NULL || s->logprob_row == NULL || (want_raw && s->raw == NULL) ||
        (hooks && s->full_scores == NULL) || s->history == NULL || s->length == NULL || s->n_prompt == NULL ||
        s->slot_row == NULL || s->keep == NULL || s->next == NULL || s->step_tokens == NULL ||
        s->finished == NULL || s->done == NULL || s->stop_now == NULL || s->rngs == NULL)
        return PYLLM_ERR_MEMORY;
    PYLLM_TRY(pyllm_sampler_init(&s->sampler, (int32_t)vocab));
    PYLLM_TRY(pyllm_processor_scratch_init(&s->scratch, (int32_t)vocab));
    /* Distinct, reproducible streams per row: the row index mixed into the seed. */
    for (int64_t r = 0; r < batch; r++) {
        pyllm_rng_seed(&s->rngs[r], opt->seed ^ ((uint64_t)r * 0x9E3779B97F4A7C15ull));
        s->slot_row[r] = r;
    }
    return PYLLM_OK;
}

/* Each row's history starts with its real prompt tokens (padding left out); `sequences` gets the
 * prompt as given. */
static void load_prompt(loop_state *s, const int32_t *prompt, const uint8_t *mask, int64_t prompt_len,
                        int64_t *sequences)
{
    for (int64_t r = 0; r < s->batch; r++) {
        int64_t n = 0;
        for (int64_t t = 0; t < prompt_len; t++) {
            const int32_t token = prompt[r * prompt_len + t];
            sequences[r * s->width + t] = token;
            if (mask == NULL || mask[r * prompt_len + t])
                s->history[r * s->width + n++] = token;
        }
        s->length[r] = s->n_prompt[r] = n;
    }
}

/* Scores of the running slots into the [batch, vocab] buffer the hooks see, and back. */
static void scatter_scores(loop_state *s, int64_t slots, int64_t vocab)
{
    memset(s->full_scores, 0, sizeof(float) * (size_t)(s->batch * vocab));
    for (int64_t j = 0; j < slots; j++)
        memcpy(s->full_scores + s->slot_row[j] * vocab, s->logits + j * vocab, sizeof(float) * (size_t)vocab);
}

static void gather_scores(loop_state *s, int64_t slots, int64_t vocab)
{
    for (int64_t j = 0; j < slots; j++)
        memcpy(s->logits + j * vocab, s->full_scores + s->slot_row[j] * vocab, sizeof(float) * (size_t)vocab);
}

static void record_logprobs(const pyllm_generate_options *opt, loop_state *s, const float *scores, int64_t vocab,
                            int64_t row, int64_t step, int32_t token)
{
    pyllm_log_softmax(scores, vocab, s->logprob_row);
    opt->logprobs[row * opt->max_new_tokens + step] = s->logprob_row[token];
    if (opt->top_n > 0) {
        const int64_t at = (row * opt->max_new_tokens + step) * opt->top_n;
        pyllm_top_n(&s->scratch, s->logprob_row, opt->top_n, opt->top_ids + at, opt->top_logprobs + at);
    }
}

/* Drop the slots whose rows have ended from the cache and from the loop's slot arrays. */
static pyllm_status compact(pyllm_decoder *m, pyllm_kv_cache *cache, loop_state *s, int64_t *slots)
{
    int64_t n = 0;
    for (int64_t j = 0; j < *slots; j++)
        if (!s->finished[s->slot_row[j]])
            s->keep[n++] = j;
    if (n == *slots)
        return PYLLM_OK;
    PYLLM_TRY(pyllm_kv_cache_keep_rows(cache, s->keep, n));
    for (int64_t j = 0; j < n; j++) {
        s->slot_row[j] = s->slot_row[s->keep[j]];
        s->next[j] = s->next[s->keep[j]];
    }
    *slots = n;
    /* Made before the loop (pyllm_decoder_reserve_fewer_rows): a lookup here, unless evicted. */
    return pyllm_decoder_reserve(m, cache, 1);
}

static pyllm_status run(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *prompt, const uint8_t *mask,
                        int64_t prompt_len, const pyllm_generate_options *opt, int64_t *sequences, int64_t *n_steps,
                        int64_t *new_count, loop_state *s)
{
    const int64_t batch = cache->batch, vocab = m->config.vocab_size;
    const pyllm_processor_params *proc = &opt->processors;
    const pyllm_generate_hooks *hooks = &opt->hooks;
    const int processing = pyllm_processors_active(proc);
    *n_steps = 0;
    PYLLM_TRY(loop_init(s, opt, batch, vocab, prompt_len));
    load_prompt(s, prompt, mask, prompt_len, sequences);
    for (int64_t r = 0; r < batch; r++)
        if (new_count != NULL)
            new_count[r] = 0;
    if (opt->max_new_tokens <= 0)
        return PYLLM_OK;
    /* Buffers for the prompt (the largest call), primitives for the one-token steps, and for the
     * fewer rows left once some end early (an end token, a stopping hook). */
    PYLLM_TRY(pyllm_decoder_reserve(m, cache, prompt_len));
    PYLLM_TRY(pyllm_decoder_reserve(m, cache, 1));
    if (proc->n_eos > 0 || hooks->stop != NULL)
        PYLLM_TRY(pyllm_decoder_reserve_fewer_rows(m, batch));
    /* A cache given with the prompt's first tokens (one row, pyllm_generate checks): feed the rest. */
    const int64_t cached = cache->used;
    PYLLM_TRY(pyllm_decoder_forward(m, cache, prompt + cached, mask ? mask + cached : NULL, prompt_len - cached,
                                    s->logits, 0));
    int64_t slots = batch;
    for (int64_t step = 0;; step++) {
        const int64_t column = prompt_len + step;
        if (s->raw != NULL)
            memcpy(s->raw, s->logits, sizeof(float) * (size_t)(slots * vocab));
        if (processing)
            for (int64_t j = 0; j < slots; j++) {
                const int64_t r = s->slot_row[j];
                pyllm_process_row(proc, &s->scratch, s->history + r * s->width, s->length[r], s->n_prompt[r],
                                  s->logits + j * vocab);
            }
        if (hooks->process != NULL) {
            scatter_scores(s, slots, vocab);
            PYLLM_TRY(hooks->process(hooks->ctx, sequences, s->width, column, s->full_scores));
            gather_scores(s, slots, vocab);
        }
        for (int64_t r = 0; r < batch; r++)
            s->step_tokens[r] = opt->pad_token_id;
        for (int64_t j = 0; j < slots; j++) {
            const int64_t r = s->slot_row[j];
            float *scores = s->logits + j * vocab;
            int32_t token;
            pyllm_warp_row(&opt->sampling, &s->sampler, &s->scratch, scores);
            if (opt->scores != NULL)
                memcpy(opt->scores + (step * batch + r) * vocab, scores, sizeof(float) * (size_t)vocab);
            if (opt->raw_logits != NULL)
                memcpy(opt->raw_logits + (step * batch + r) * vocab, s->raw + j * vocab, sizeof(float) * (size_t)vocab);
            PYLLM_TRY(pyllm_sample(&s->sampler, scores, &opt->sampling, &s->rngs[r], &token));
            if (opt->logprobs != NULL)
                record_logprobs(opt, s, opt->processed ? scores : s->raw + j * vocab, vocab, r, step, token);
            s->next[j] = token;
            s->step_tokens[r] = token;
            s->history[r * s->width + s->length[r]++] = token;
            if (new_count != NULL)
                new_count[r] = step + 1;
            if (is_eos(proc, token))
                s->finished[r] = 1;
        }
        for (int64_t r = 0; r < batch; r++) {
            sequences[r * s->width + column] = s->step_tokens[r];
            if (opt->logprobs != NULL && s->done[r]) { /* ended before this step */
                opt->logprobs[r * opt->max_new_tokens + step] = 0.0f;
                for (int32_t i = 0; i < opt->top_n; i++) {
                    opt->top_ids[(r * opt->max_new_tokens + step) * opt->top_n + i] = -1;
                    opt->top_logprobs[(r * opt->max_new_tokens + step) * opt->top_n + i] = 0.0f;
                }
            }
        }
        *n_steps = step + 1;
        if (hooks->stream != NULL)
            PYLLM_TRY(hooks->stream(hooks->ctx, s->step_tokens));
        if (hooks->stop != NULL) {
            scatter_scores(s, slots, vocab);
            memset(s->stop_now, 0, (size_t)batch);
            PYLLM_TRY(hooks->stop(hooks->ctx, sequences, s->width, column + 1, s->full_scores, s->stop_now));
            for (int64_t r = 0; r < batch; r++)
                if (s->stop_now[r])
                    s->finished[r] = 1;
        }
        int all_finished = 1;
        for (int64_t r = 0; r < batch; r++) {
            s->done[r] = s->finished[r];
            all_finished &= s->finished[r];
        }
        if (all_finished || step + 1 == opt->max_new_tokens)
            return PYLLM_OK;
        if (hooks->interrupted != NULL && hooks->interrupted(hooks->ctx))
            return pyllm_error(PYLLM_ERR_INTERRUPTED, "generation interrupted after %lld steps",
                               (long long)(step + 1));
        PYLLM_TRY(compact(m, cache, s, &slots));
        PYLLM_TRY(pyllm_decoder_forward(m, cache, s->next, NULL, 1, s->logits, 0));
    }
}

pyllm_status pyllm_generate(pyllm_decoder *m, pyllm_kv_cache *cache, const int32_t *prompt, const uint8_t *mask,
                            int64_t prompt_len, const pyllm_generate_options *opt, int64_t *sequences,
                            int64_t *n_steps, int64_t *new_count)
{
    omp_set_num_threads(m->n_threads);
    PYLLM_TRY(pyllm_sampling_params_check(&opt->sampling));
    PYLLM_TRY(pyllm_processor_params_check(&opt->processors, (int32_t)m->config.vocab_size));
    if (opt->pad_token_id < 0 || opt->pad_token_id >= m->config.vocab_size)
        return pyllm_error(PYLLM_ERR_VALUE, "pad_token_id %d is out of range [0, %lld)", (int)opt->pad_token_id,
                           (long long)m->config.vocab_size);
    if (opt->logprobs != NULL && (opt->top_n < 0 || opt->top_n > m->config.vocab_size))
        return pyllm_error(PYLLM_ERR_VALUE, "top_logprobs must be in [0, %lld], got %d",
                           (long long)m->config.vocab_size, (int)opt->top_n);
    if (cache->used != 0 && (cache->batch != 1 || cache->used >= prompt_len || cache->length[0] != cache->used))
        return pyllm_error(PYLLM_ERR_VALUE, "generation needs an empty KV cache, or one row holding fewer tokens than "
                           "the prompt (its first ones, no padding), got %lld rows of %lld slots for a prompt of %lld",
                           (long long)cache->batch, (long long)cache->used, (long long)prompt_len);
    if (prompt_len + opt->max_new_tokens - 1 > cache->capacity)
        return pyllm_error(PYLLM_ERR_VALUE,
                           "prompt of %lld tokens plus max_new_tokens=%lld exceeds the context of %lld tokens "
                           "(n_ctx)", (long long)prompt_len, (long long)opt->max_new_tokens,
                           (long long)cache->capacity);
    loop_state s = {0};
    pyllm_status st = run(m, cache, prompt, mask, prompt_len, opt, sequences, n_steps, new_count, &s);
    loop_release(&s);
    return st;
}
