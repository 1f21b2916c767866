#include "generate/processors.h"

#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"

pyllm_status pyllm_processor_params_check(const pyllm_processor_params *p, int32_t vocab_size)
{
    for (int64_t i = 0; i < p->n_bias; i++) {
        if (p->bias_ids[i] < 0 || p->bias_ids[i] >= vocab_size)
            return pyllm_error(PYLLM_ERR_VALUE, "logit_bias token id %d is out of range [0, %d)",
                               (int)p->bias_ids[i], (int)vocab_size);
        if (isnan(p->bias_values[i]) || p->bias_values[i] == INFINITY)
            return pyllm_error(PYLLM_ERR_VALUE, "logit_bias for token %d must be a number < +inf, got %g",
                               (int)p->bias_ids[i], (double)p->bias_values[i]);
    }
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        return pyllm_error(PYLLM_ERR_VALUE, "repetition_penalty must be a finite number > 0, got %g",
                           (double)p->repetition_penalty);
    if (!isfinite(p->frequency_penalty))
        return pyllm_error(PYLLM_ERR_VALUE, "frequency_penalty must be a finite number, got %g",
                           (double)p->frequency_penalty);
    if (!isfinite(p->presence_penalty))
        return pyllm_error(PYLLM_ERR_VALUE, "presence_penalty must be a finite number, got %g",
                           (double)p->presence_penalty);
    if (p->no_repeat_ngram_size < 0)
        return pyllm_error(PYLLM_ERR_VALUE, "no_repeat_ngram_size must be >= 0, got %d", (int)p->no_repeat_ngram_size);
    if (p->min_new_tokens < 0)
        return pyllm_error(PYLLM_ERR_VALUE, "min_new_tokens must be >= 0, got %lld", (long long)p->min_new_tokens);
    for (int64_t i = 0; i < p->n_bad_words; i++) {
        if (p->bad_word_start[i + 1] <= p->bad_word_start[i])
            return pyllm_error(PYLLM_ERR_VALUE, "bad_words_ids entry %lld is empty", (long long)i);
        for (int64_t j = p->bad_word_start[i]; j < p->bad_word_start[i + 1]; j++)
            if (p->bad_words[j] < 0 || p->bad_words[j] >= vocab_size)
                return pyllm_error(PYLLM_ERR_VALUE, "bad_words_ids entry %lld holds token id %d, outside [0, %d)",
                                   (long long)i, (int)p->bad_words[j], (int)vocab_size);
    }
    for (int64_t i = 0; i < p->n_eos; i++)
        if (p->eos_ids[i] < 0 || p->eos_ids[i] >= vocab_size)
            return pyllm_error(PYLLM_ERR_VALUE, "eos_token_id %d is out of range [0, %d)", (int)p->eos_ids[i],
                               (int)vocab_size);
    return PYLLM_OK;
}

int pyllm_processors_active(const pyllm_processor_params *p)
{
    return p->n_bias > 0 || p->repetition_penalty != 1.0f || p->frequency_penalty != 0.0f ||
           p->presence_penalty != 0.0f || p->no_repeat_ngram_size > 0 || p->n_bad_words > 0 ||
           (p->min_new_tokens > 0 && p->n_eos > 0);
}

pyllm_status pyllm_processor_scratch_init(pyllm_processor_scratch *s, int32_t vocab_size)
{
    *s = (pyllm_processor_scratch){0};
    if (vocab_size < 1)
        return pyllm_error(PYLLM_ERR_VALUE, "vocabulary size must be >= 1, got %d", (int)vocab_size);
    s->vocab_size = vocab_size;
    s->count = pyllm_calloc((size_t)vocab_size, sizeof(int32_t));
    s->order = pyllm_alloc(sizeof(pyllm_scored_token) * (size_t)vocab_size);
    s->prob = pyllm_alloc(sizeof(double) * (size_t)vocab_size);
    if (s->count == NULL || s->order == NULL || s->prob == NULL) {
        pyllm_processor_scratch_release(s);
        return PYLLM_ERR_MEMORY;
    }
    return PYLLM_OK;
}

void pyllm_processor_scratch_release(pyllm_processor_scratch *s)
{
    pyllm_free(s->count);
    pyllm_free(s->order);
    pyllm_free(s->prob);
    s->count = NULL;
    s->order = NULL;
    s->prob = NULL;
}

/* ---- processors --------------------------------------------------------------------------- */

/* transformers' RepetitionPenaltyLogitsProcessor, once per distinct token of the history:
 * a negative score is multiplied by the penalty, a positive one divided (both in float32). */
static void repetition_penalty(float penalty, int32_t *mark, const int32_t *history, int64_t length, float *scores)
{
    for (int64_t i = 0; i < length; i++) {
        int32_t t = history[i];
        if (mark[t])
            continue;
        mark[t] = 1;
        scores[t] = scores[t] < 0.0f ? scores[t] * penalty : scores[t] / penalty;
    }
    for (int64_t i = 0; i < length; i++)
        mark[history[i]] = 0;
}

/* OpenAI's penalties over the generated tokens: score -= count * frequency + (count > 0) * presence. */
static void frequency_presence(float frequency, float presence, int32_t *count, const int32_t *generated,
                               int64_t n, float *scores)
{
    for (int64_t i = 0; i < n; i++)
        count[generated[i]]++;
    for (int64_t i = 0; i < n; i++) {
        int32_t t = generated[i];
        if (count[t] == 0)
            continue; /* already applied */
        scores[t] -= (float)count[t] * frequency + presence;
        count[t] = 0;
    }
}

/* transformers' NoRepeatNGramLogitsProcessor: every token that would complete an n-gram already
 * in the history is banned. */
static void no_repeat_ngram(int32_t n, const int32_t *history, int64_t length, float *scores)
{
    if (length < n)
        return;
    const int32_t *tail = history + length - (n - 1); /* the n - 1 tokens a new n-gram starts with */
    for (int64_t start = 0; start + n <= length; start++) {
        int64_t j = 0;
        while (j < n - 1 && history[start + j] == tail[j])
            j++;
        if (j == n - 1)
            scores[history[start + n - 1]] = -INFINITY;
    }
}

/* transformers' NoBadWordsLogitsProcessor: a one-token entry is always banned, a longer one
 * when the history ends with all but its last token. */
static void bad_words(const pyllm_processor_params *p, const int32_t *history, int64_t length, float *scores)
{
    for (int64_t i = 0; i < p->n_bad_words; i++) {
        const int32_t *word = p->bad_words + p->bad_word_start[i];
        const int64_t prefix = p->bad_word_start[i + 1] - p->bad_word_start[i] - 1;
        if (prefix > length)
            continue;
        int64_t j = 0;
        while (j < prefix && history[length - prefix + j] == word[j])
            j++;
        if (j == prefix)
            scores[word[prefix]] = -INFINITY;
    }
}

void pyllm_process_row(const pyllm_processor_params *p, pyllm_processor_scratch *s, const int32_t *history,
                       int64_t length, int64_t n_prompt, float *scores)
{
    for (int64_t i = 0; i < p->n_bias; i++)
        scores[p->bias_ids[i]] += p->bias_values[i];
    if (p->repetition_penalty != 1.0f)
        repetition_penalty(p->repetition_penalty, s->count, history, length, scores);
    if (p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f)
        frequency_presence(p->frequency_penalty, p->presence_penalty, s->count, history + n_prompt,
                           length - n_prompt, scores);
    if (p->no_repeat_ngram_size > 0)
        no_repeat_ngram(p->no_repeat_ngram_size, history, length, scores);
    if (p->n_bad_words > 0)
        bad_words(p, history, length, scores);
    if (length - n_prompt < p->min_new_tokens)
        for (int64_t i = 0; i < p->n_eos; i++)
            scores[p->eos_ids[i]] = -INFINITY;
}

/* ---- warpers ------------------------------------------------------------------------------ */

static float row_max(const float *scores, int32_t n)
{
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (scores[i] > max)
            max = scores[i];
    return max;
}

/* transformers' MinPLogitsWarper: tokens less likely than min_p times the best one go. */
static void min_p_mask(float min_p, float *scores, int32_t n)
{
    const float max = row_max(scores, n);
    if (!(max > -INFINITY))
        return;
    for (int32_t i = 0; i < n; i++)
        if (exp((double)scores[i] - (double)max) < (double)min_p)
            scores[i] = -INFINITY;
}

static int by_score_then_id(const void *a, const void *b)
{
    const pyllm_scored_token *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* transformers' TypicalLogitsWarper: rank tokens by how far their surprise is from the
 * entropy, keep the closest ones until their mass reaches typical_p (the crossing one too). */
static void typical_mask(float mass, pyllm_processor_scratch *s, float *scores, int32_t n)
{
    const float max = row_max(scores, n);
    if (!(max > -INFINITY))
        return;
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) {
        s->prob[i] = exp((double)scores[i] - (double)max);
        total += s->prob[i];
    }
    const double log_total = log(total);
    double entropy = 0.0;
    for (int32_t i = 0; i < n; i++) {
        s->prob[i] /= total;
        if (s->prob[i] > 0.0)
            entropy -= s->prob[i] * ((double)scores[i] - (double)max - log_total);
    }
    for (int32_t i = 0; i < n; i++) {
        double surprise = -((double)scores[i] - (double)max - log_total);
        s->order[i] = (pyllm_scored_token){(float)fabs(surprise - entropy), i};
    }
    qsort(s->order, (size_t)n, sizeof *s->order, by_score_then_id);
    int32_t last = 0; /* tokens whose cumulative mass stays below typical_p */
    double cumulative = 0.0;
    for (int32_t j = 0; j < n; j++) {
        cumulative += s->prob[s->order[j].id];
        if (cumulative < (double)mass)
            last++;
    }
    if (last > n - 1)
        last = n - 1;
    const float limit = s->order[last].score;
    for (int32_t j = 1; j < n; j++) /* the most typical token always stays */
        if (s->order[j].score > limit)
            scores[s->order[j].id] = -INFINITY;
}

void pyllm_warp_row(const pyllm_sampling_params *p, pyllm_sampler *sampler, pyllm_processor_scratch *s,
                    float *scores)
{
    const int32_t n = sampler->vocab_size;
    if (!p->do_sample || p->temperature == 0.0f)
        return;
    if (p->temperature != 1.0f)
        for (int32_t i = 0; i < n; i++)
            scores[i] = scores[i] / p->temperature;
    if (p->top_k > 0 && p->top_k < n) {
        float *copy = sampler->scratch;
        for (int32_t i = 0; i < n; i++)
            copy[i] = isnan(scores[i]) ? -INFINITY : scores[i];
        const float threshold = pyllm_kth_largest(copy, n, p->top_k);
        for (int32_t i = 0; i < n; i++)
            if (scores[i] < threshold)
                scores[i] = -INFINITY;
    }
    if (p->top_p < 1.0f)
        pyllm_top_p_mask(sampler, scores, p->top_p);
    if (p->min_p > 0.0f)
        min_p_mask(p->min_p, scores, n);
    if (p->typical_p < 1.0f)
        typical_mask(p->typical_p, s, scores, n);
}

/* ---- outputs ------------------------------------------------------------------------------ */

void pyllm_top_n(pyllm_processor_scratch *s, const float *values, int32_t n, int64_t *ids, float *vals)
{
    int32_t held = 0;
    for (int32_t i = 0; i < s->vocab_size; i++) {
        const float v = isnan(values[i]) ? -INFINITY : values[i];
        if (held == n && !(v > vals[n - 1]))
            continue; /* not better than the worst held (an equal one has a larger id) */
        int32_t j = held < n ? held++ : n - 1;
        while (j > 0 && v > vals[j - 1]) {
            vals[j] = vals[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        vals[j] = v;
        ids[j] = i;
    }
}
