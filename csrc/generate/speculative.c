#include "generate/speculative.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/alloc.h"
#include "generate/prompt_lookup.h"
#include "ops/log_softmax.h"

/* Buffers of the loop, allocated once for every row. */
typedef struct {
    int64_t vocab, k;
    int32_t *history;     /* [prompt_len + max_new]: the row's real prompt, then its new tokens */
    float *logits;        /* [k + 1, vocab]: the target's raw logits of one verify call */
    float *scores;        /* [vocab]: one position's processed (and warped) scores */
    float *draft_scores;  /* [k, vocab]: the draft model's warped scores of its k drafts */
    float *draft_logits;  /* [vocab] */
    float *logprob_row;   /* [vocab] */
    double *p, *q;        /* [vocab]: target and draft probabilities */
    pyllm_sampler sampler;
    pyllm_processor_scratch scratch;
} spec_buffers;

static void buffers_release(spec_buffers *b)
{
    pyllm_free(b->history);
    pyllm_free(b->logits);
    pyllm_free(b->scores);
    pyllm_free(b->draft_scores);
    pyllm_free(b->draft_logits);
    pyllm_free(b->logprob_row);
    pyllm_free(b->p);
    pyllm_free(b->q);
    pyllm_sampler_release(&b->sampler);
    pyllm_processor_scratch_release(&b->scratch);
}

static pyllm_status buffers_init(spec_buffers *b, int64_t vocab, int64_t k, int64_t width)
{
    b->vocab = vocab;
    b->k = k;
    const size_t v = (size_t)vocab;
    b->history = pyllm_alloc(sizeof(int32_t) * (size_t)width);
    b->logits = pyllm_alloc(pyllm_mul_size(sizeof(float) * v, (size_t)k + 1));
    b->scores = pyllm_alloc(sizeof(float) * v);
    b->draft_scores = pyllm_alloc(pyllm_mul_size(sizeof(float) * v, (size_t)(k > 0 ? k : 1)));
    b->draft_logits = pyllm_alloc(sizeof(float) * v);
    b->logprob_row = pyllm_alloc(sizeof(float) * v);
    b->p = pyllm_alloc(sizeof(double) * v);
    b->q = pyllm_alloc(sizeof(double) * v);
    if (b->history == NULL || b->logits == NULL || b->scores == NULL || b->draft_scores == NULL ||
        b->draft_logits == NULL || b->logprob_row == NULL || b->p == NULL || b->q == NULL)
        return PYLLM_ERR_MEMORY;
    PYLLM_TRY(pyllm_sampler_init(&b->sampler, (int32_t)vocab));
    return pyllm_processor_scratch_init(&b->scratch, (int32_t)vocab);
}

/* One row's generation state. */
typedef struct {
    const pyllm_generate_options *opt;
    spec_buffers *b;
    pyllm_rng rng;
    int64_t row, batch, n_prompt, length, generated; /* history[0..length), generated of them new */
    int64_t *out;         /* the row's new-token columns of `sequences` */
    int finished;
} row_state;

static int is_greedy(const pyllm_sampling_params *p)
{
    return !p->do_sample || p->temperature == 0.0f;
}

static int is_eos(const pyllm_processor_params *p, int32_t token)
{
    for (int64_t i = 0; i < p->n_eos; i++)
        if (p->eos_ids[i] == token)
            return 1;
    return 0;
}

/* raw logits -> scores as plain generation chooses from: processors over the history so far,
 * then the warpers. */
static void process(row_state *r, const float *raw, float *scores)
{
    const pyllm_generate_options *opt = r->opt;
    memcpy(scores, raw, sizeof(float) * (size_t)r->b->vocab);
    if (pyllm_processors_active(&opt->processors))
        pyllm_process_row(&opt->processors, &r->b->scratch, r->b->history, r->length, r->n_prompt, scores);
    pyllm_warp_row(&opt->sampling, &r->b->sampler, &r->b->scratch, scores);
}

/* softmax(scores) in doubles (-inf: 0). */
static void probabilities(const float *scores, int64_t vocab, double *p)
{
    float max = -INFINITY;
    for (int64_t i = 0; i < vocab; i++)
        if (scores[i] > max)
            max = scores[i];
    double total = 0.0;
    for (int64_t i = 0; i < vocab; i++) {
        p[i] = scores[i] > -INFINITY ? exp((double)scores[i] - (double)max) : 0.0;
        total += p[i];
    }
    for (int64_t i = 0; i < vocab; i++)
        p[i] /= total;
}

/* The token chosen at the current position: appended to the history and the output, with its
 * log-probabilities and scores when asked for. */
static void emit(row_state *r, int32_t token, const float *scores, const float *raw)
{
    const pyllm_generate_options *opt = r->opt;
    const int64_t vocab = r->b->vocab, step = r->generated;
    if (opt->scores != NULL)
        memcpy(opt->scores + (step * r->batch + r->row) * vocab, scores, sizeof(float) * (size_t)vocab);
    if (opt->raw_logits != NULL)
        memcpy(opt->raw_logits + (step * r->batch + r->row) * vocab, raw, sizeof(float) * (size_t)vocab);
    if (opt->logprobs != NULL) {
        pyllm_log_softmax(opt->processed ? scores : raw, vocab, r->b->logprob_row);
        const int64_t at = r->row * opt->max_new_tokens + step;
        opt->logprobs[at] = r->b->logprob_row[token];
        if (opt->top_n > 0)
            pyllm_top_n(&r->b->scratch, r->b->logprob_row, opt->top_n, opt->top_ids + at * opt->top_n,
                        opt->top_logprobs + at * opt->top_n);
    }
    r->b->history[r->length++] = token;
    r->out[r->generated++] = token;
    if (is_eos(&opt->processors, token))
        r->finished = 1;
}

/* A draw from max(0, p - q) renormalised (q NULL: one-hot at `drafted`), the target's
 * distribution given that the draft was rejected. */
static int32_t residual_draw(row_state *r, const double *p, const double *q, int32_t drafted)
{
    const int64_t vocab = r->b->vocab;
    double total = 0.0;
    for (int64_t i = 0; i < vocab; i++) {
        const double qi = q != NULL ? q[i] : (i == drafted ? 1.0 : 0.0);
        r->b->q[i] = p[i] > qi ? p[i] - qi : 0.0; /* q may alias b->q: read before written */
        total += r->b->q[i];
    }
    const double *w = r->b->q;
    double u = pyllm_rng_uniform(&r->rng) * total, acc = 0.0;
    int32_t last = -1;
    for (int64_t i = 0; i < vocab; i++) {
        if (w[i] <= 0.0)
            continue;
        acc += w[i];
        last = (int32_t)i;
        if (u < acc)
            return (int32_t)i;
    }
    return last;
}

/* Checks drafted token `d` against the processed target scores of its position: 1 when kept;
 * else 0 with *token the target's own choice there. draft_scores: the draft model's warped
 * scores the draft was drawn from, or NULL for a deterministic (prompt-lookup) draft. */
static pyllm_status judge(row_state *r, const float *scores, const float *draft_scores, int32_t d, int *keep,
                          int32_t *token)
{
    spec_buffers *b = r->b;
    if (is_greedy(&r->opt->sampling)) {
        *token = pyllm_argmax(scores, (int32_t)b->vocab);
        if (*token < 0)
            return pyllm_error(PYLLM_ERR_VALUE, "every logit is NaN: cannot choose a token");
        *keep = *token == d;
        return PYLLM_OK;
    }
    probabilities(scores, b->vocab, b->p);
    double q_d = 1.0;
    if (draft_scores != NULL) {
        probabilities(draft_scores, b->vocab, b->q);
        q_d = b->q[d];
    }
    /* min(1, p/q) as u < p/q: u * q < p needs no division. */
    *keep = pyllm_rng_uniform(&r->rng) * q_d < b->p[d];
    *token = *keep ? d : residual_draw(r, b->p, draft_scores != NULL ? b->q : NULL, d);
    return PYLLM_OK;
}

/* The draft model's cache holds history[0..*fed); drafts `k` tokens into history[length..). */
static pyllm_status draft_with_model(row_state *r, pyllm_decoder *assistant, pyllm_kv_cache *cache, int64_t *fed,
                                     int64_t k)
{
    spec_buffers *b = r->b;
    const int64_t vocab = b->vocab, length = r->length;
    PYLLM_TRY(pyllm_decoder_forward(assistant, cache, b->history + *fed, NULL, length - *fed, b->draft_logits, 0));
    *fed = length;
    for (int64_t i = 0; i < k; i++) {
        float *ds = b->draft_scores + i * vocab;
        r->length = length + i; /* the processors see the drafts before this one */
        process(r, b->draft_logits, ds);
        int32_t d;
        PYLLM_TRY(pyllm_sample(&b->sampler, ds, &r->opt->sampling, &r->rng, &d));
        b->history[length + i] = d;
        if (i + 1 < k) {
            PYLLM_TRY(pyllm_decoder_forward(assistant, cache, b->history + length + i, NULL, 1, b->draft_logits, 0));
            *fed = length + i + 1;
        }
    }
    r->length = length;
    return PYLLM_OK;
}

/* Whether a round of k drafts, each kept with probability alpha, costs less per token than a
 * plain step: the round yields 1 + alpha + ... + alpha^k tokens. */
static int pays(const pyllm_speculation *s, int64_t k, double alpha)
{
    double tokens = 0.0, power = 1.0;
    for (int64_t i = 0; i <= k; i++) {
        tokens += power;
        power *= alpha;
    }
    const double round = s->verify_fixed + (double)(k + 1) * s->verify_per_token +
                         (s->assistant != NULL ? (double)k * s->draft_step : 0.0);
    return round < tokens * (s->verify_fixed + s->verify_per_token);
}

typedef struct {
    int64_t drafted, accepted, rejections, stopped_at;
    int speculating;
} row_counts;

static pyllm_status run_row(pyllm_decoder *m, const pyllm_speculation *spec, row_state *r, pyllm_kv_cache *cache,
                            pyllm_kv_cache *draft_cache, row_counts *c)
{
    spec_buffers *b = r->b;
    const pyllm_generate_options *opt = r->opt;
    const int64_t vocab = b->vocab, max_new = opt->max_new_tokens;
    int64_t draft_fed = 0;
    c->speculating = !spec->automatic || pays(spec, spec->num_tokens, 1.0);
    c->stopped_at = c->speculating ? -1 : 0;
    if (max_new <= 0)
        return PYLLM_OK;
    PYLLM_TRY(pyllm_decoder_forward(m, cache, b->history, NULL, r->length, b->logits, 0));
    process(r, b->logits, b->scores);
    int32_t token;
    PYLLM_TRY(pyllm_sample(&b->sampler, b->scores, &opt->sampling, &r->rng, &token));
    emit(r, token, b->scores, b->logits);
    while (!r->finished && r->generated < max_new) {
        if (opt->hooks.interrupted != NULL && opt->hooks.interrupted(opt->hooks.ctx))
            return pyllm_error(PYLLM_ERR_INTERRUPTED, "generation interrupted after %lld tokens of row %lld",
                               (long long)r->generated, (long long)r->row);
        /* Drafts leave room for the token the target adds after them. */
        int64_t room = max_new - r->generated - 1, k = 0;
        if (room > spec->num_tokens)
            room = spec->num_tokens;
        if (c->speculating && room > 0) {
            if (spec->assistant != NULL) {
                PYLLM_TRY(draft_with_model(r, spec->assistant, draft_cache, &draft_fed, room));
                k = room;
            } else {
                k = pyllm_prompt_lookup(b->history, r->length, spec->max_ngram, room, b->history + r->length);
            }
        }
        const int64_t start = r->length; /* history[start - 1] is the last token, not yet in the cache */
        PYLLM_TRY(pyllm_decoder_forward(m, cache, b->history + start - 1, NULL, k + 1, b->logits, 1));
        int64_t kept = 0;
        for (int64_t j = 0; j <= k && !r->finished; j++) {
            const float *raw = b->logits + j * vocab;
            process(r, raw, b->scores);
            if (j == k) { /* every draft kept: the target's own next token comes free */
                PYLLM_TRY(pyllm_sample(&b->sampler, b->scores, &opt->sampling, &r->rng, &token));
                emit(r, token, b->scores, raw);
                break;
            }
            const int32_t d = b->history[start + j];
            int keep = 0;
            PYLLM_TRY(judge(r, b->scores, spec->assistant != NULL ? b->draft_scores + j * vocab : NULL, d, &keep,
                            &token));
            emit(r, token, b->scores, raw);
            if (!keep) {
                c->rejections++;
                break;
            }
            kept++;
        }
        c->drafted += k;
        c->accepted += kept;
        /* The cache keeps every emitted token but the last; rejected drafts leave it. */
        PYLLM_TRY(pyllm_kv_cache_truncate(cache, cache->used - (r->length - 1)));
        if (spec->assistant != NULL && draft_fed > start + kept) {
            PYLLM_TRY(pyllm_kv_cache_truncate(draft_cache, draft_fed - (start + kept)));
            draft_fed = start + kept;
        }
        if (spec->automatic && c->speculating && c->drafted >= 2 * spec->num_tokens) {
            const double alpha = (double)c->accepted / (double)(c->accepted + c->rejections);
            if (!pays(spec, spec->num_tokens, alpha)) {
                c->speculating = 0;
                c->stopped_at = r->generated;
            }
        }
    }
    return PYLLM_OK;
}

pyllm_status pyllm_speculative_generate(pyllm_decoder *m, const pyllm_speculation *spec, const int32_t *prompt,
                                        const uint8_t *mask, int64_t batch, int64_t prompt_len,
                                        const pyllm_generate_options *opt, int64_t *sequences, int64_t *n_steps,
                                        int64_t *new_count, const pyllm_speculation_counts *counts)
{
    omp_set_num_threads(m->n_threads);
    const int64_t vocab = m->config.vocab_size, max_new = opt->max_new_tokens, width = prompt_len + max_new;
    PYLLM_TRY(pyllm_sampling_params_check(&opt->sampling));
    PYLLM_TRY(pyllm_processor_params_check(&opt->processors, (int32_t)vocab));
    if (opt->hooks.process != NULL || opt->hooks.stop != NULL || opt->hooks.stream != NULL)
        return pyllm_error(PYLLM_ERR_VALUE, "speculative decoding takes no logits_processor, stopping_criteria or "
                                            "streamer");
    if (spec->num_tokens < 1 || spec->num_tokens > 256)
        return pyllm_error(PYLLM_ERR_VALUE, "draft tokens per round must be in [1, 256], got %lld",
                           (long long)spec->num_tokens);
    if (spec->assistant == NULL && spec->max_ngram < 1)
        return pyllm_error(PYLLM_ERR_VALUE, "max_matching_ngram_size must be >= 1, got %d", (int)spec->max_ngram);
    if (spec->assistant != NULL && spec->assistant->config.vocab_size != vocab)
        return pyllm_error(PYLLM_ERR_VALUE, "assistant_model has a vocabulary of %lld tokens, the model %lld: a draft "
                                            "model must share the tokenizer",
                           (long long)spec->assistant->config.vocab_size, (long long)vocab);
    if (opt->pad_token_id < 0 || opt->pad_token_id >= vocab)
        return pyllm_error(PYLLM_ERR_VALUE, "pad_token_id %d is out of range [0, %lld)", (int)opt->pad_token_id,
                           (long long)vocab);
    if (width > m->config.n_ctx || (spec->assistant != NULL && width > spec->assistant->config.n_ctx))
        return pyllm_error(PYLLM_ERR_VALUE, "prompt of %lld tokens plus max_new_tokens=%lld exceeds the context "
                                            "(n_ctx) of the model or its assistant_model",
                           (long long)prompt_len, (long long)max_new);
    spec_buffers b = {0};
    pyllm_status st = buffers_init(&b, vocab, spec->num_tokens, width);
    *n_steps = 0;
    for (int64_t row = 0; row < batch && st == PYLLM_OK; row++) {
        row_state r = {.opt = opt, .b = &b, .row = row, .batch = batch, .out = sequences + row * width + prompt_len};
        pyllm_rng_seed(&r.rng, opt->seed ^ ((uint64_t)row * 0x9E3779B97F4A7C15ull)); /* as pyllm_generate */
        for (int64_t t = 0; t < prompt_len; t++) {
            sequences[row * width + t] = prompt[row * prompt_len + t];
            if (mask == NULL || mask[row * prompt_len + t])
                b.history[r.length++] = prompt[row * prompt_len + t];
        }
        r.n_prompt = r.length;
        if (r.length == 0) {
            st = pyllm_error(PYLLM_ERR_VALUE, "row %lld of input_ids has no real token (attention_mask is all 0)",
                             (long long)row);
            break;
        }
        pyllm_kv_cache cache = {0}, draft_cache = {0};
        row_counts c = {0};
        const int64_t capacity = r.length + (max_new > 0 ? max_new : 1);
        st = pyllm_kv_cache_init(&cache, m, 1, capacity);
        if (st == PYLLM_OK && spec->assistant != NULL) {
            omp_set_num_threads(spec->assistant->n_threads);
            st = pyllm_kv_cache_init(&draft_cache, spec->assistant, 1, capacity);
            if (st != PYLLM_OK)
                pyllm_kv_cache_release(&cache);
        }
        if (st != PYLLM_OK)
            break;
        st = run_row(m, spec, &r, &cache, &draft_cache, &c);
        pyllm_kv_cache_release(&cache);
        if (spec->assistant != NULL)
            pyllm_kv_cache_release(&draft_cache);
        /* Past the row's end: padding, and nothing in its log-probabilities. */
        for (int64_t step = r.generated; step < max_new; step++) {
            r.out[step] = opt->pad_token_id;
            if (opt->logprobs != NULL) {
                opt->logprobs[row * max_new + step] = 0.0f;
                for (int32_t i = 0; i < opt->top_n; i++) {
                    opt->top_ids[(row * max_new + step) * opt->top_n + i] = -1;
                    opt->top_logprobs[(row * max_new + step) * opt->top_n + i] = 0.0f;
                }
            }
        }
        if (new_count != NULL)
            new_count[row] = r.generated;
        if (r.generated > *n_steps)
            *n_steps = r.generated;
        counts->drafted[row] = c.drafted;
        counts->accepted[row] = c.accepted;
        counts->stopped_at[row] = c.stopped_at;
    }
    buffers_release(&b);
    return st;
}
