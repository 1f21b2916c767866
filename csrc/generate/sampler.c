#include "generate/sampler.h"

#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"

pyllm_status pyllm_sampling_params_check(const pyllm_sampling_params *p)
{
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return pyllm_error(PYLLM_ERR_VALUE, "temperature must be a finite number >= 0, got %g",
                           (double)p->temperature);
    if (p->top_k < 0)
        return pyllm_error(PYLLM_ERR_VALUE, "top_k must be >= 0, got %d", (int)p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return pyllm_error(PYLLM_ERR_VALUE, "top_p must be in (0, 1], got %g", (double)p->top_p);
    return PYLLM_OK;
}

pyllm_status pyllm_sampler_init(pyllm_sampler *s, int32_t vocab_size)
{
    s->index = NULL;
    s->value = NULL;
    s->scratch = NULL;
    if (vocab_size < 1)
        return pyllm_error(PYLLM_ERR_VALUE, "vocabulary size must be >= 1, got %d", (int)vocab_size);
    s->vocab_size = vocab_size;
    s->index = pyllm_alloc(sizeof(int32_t) * (size_t)vocab_size);
    s->value = pyllm_alloc(sizeof(float) * (size_t)vocab_size);
    s->scratch = pyllm_alloc(sizeof(float) * (size_t)vocab_size);
    if (s->index == NULL || s->value == NULL || s->scratch == NULL) {
        pyllm_sampler_release(s);
        return PYLLM_ERR_MEMORY;
    }
    return PYLLM_OK;
}

void pyllm_sampler_release(pyllm_sampler *s)
{
    pyllm_free(s->index);
    pyllm_free(s->value);
    pyllm_free(s->scratch);
    s->index = NULL;
    s->value = NULL;
    s->scratch = NULL;
}

int32_t pyllm_argmax(const float *logits, int32_t n)
{
    int32_t best = -1;
    for (int32_t i = 0; i < n; i++)
        if (!isnan(logits[i]) && (best < 0 || logits[i] > logits[best]))
            best = i;
    return best;
}

/* The k-th largest of v[0..n) (1-based k <= n), by quickselect; v is reordered. */
static float kth_largest(float *v, int32_t n, int32_t k)
{
    int32_t lo = 0, hi = n - 1, target = k - 1;
    while (lo < hi) {
        float pivot = v[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot)
                i++;
            while (v[j] < pivot)
                j--;
            if (i <= j) {
                float t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        }
        if (target <= j)
            hi = j;
        else if (target >= i)
            lo = i;
        else
            break;
    }
    return v[target];
}


static int by_value_desc(const void *a, const void *b, void *ctx)
{
    const float *v = ctx;
    float x = v[*(const int32_t *)a], y = v[*(const int32_t *)b];
    if (x != y)
        return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

pyllm_status pyllm_sample(pyllm_sampler *s, const float *logits, const pyllm_sampling_params *p,
                          pyllm_rng *rng, int32_t *token)
{
    const int32_t n = s->vocab_size;
    if (!p->do_sample || p->temperature == 0.0f) {
        *token = pyllm_argmax(logits, n);
        if (*token < 0)
            return pyllm_error(PYLLM_ERR_VALUE, "every logit is NaN: cannot choose a token");
        return PYLLM_OK;
    }

    /* Temperature, in float32 as transformers divides. NaN and -inf drop out; +inf (given,
     * or a finite logit overflowing at a tiny temperature) has no probability to give. */
    float *scaled = s->value;
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        float x = logits[i] / p->temperature;
        if (x == INFINITY)
            return pyllm_error(PYLLM_ERR_VALUE,
                               "logit %d (%g) divided by temperature %g is +inf in float32: cannot sample",
                               (int)i, (double)logits[i], (double)p->temperature);
        scaled[i] = isnan(x) ? -INFINITY : x;
        if (scaled[i] > max)
            max = scaled[i];
    }
    if (!isfinite(max))
        return pyllm_error(PYLLM_ERR_VALUE, "no finite logit to sample from: every logit is NaN or -inf");

    /* Top-k keeps every token scoring at least the k-th largest score (ties included). */
    float threshold = -INFINITY;
    if (p->top_k > 0 && p->top_k < n) {
        float *tmp = s->scratch;
        for (int32_t i = 0; i < n; i++)
            tmp[i] = scaled[i];
        threshold = kth_largest(tmp, n, p->top_k);
    }
    int32_t *cand = s->index;
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++)
        if (scaled[i] >= threshold && scaled[i] > -INFINITY)
            cand[m++] = i;

    /* Top-p keeps, in descending order, each token whose higher-ranked mass is < top_p. */
    double total = 0.0;
    for (int32_t j = 0; j < m; j++)
        total += exp((double)scaled[cand[j]] - max);
    if (p->top_p < 1.0f) {
        qsort_r(cand, (size_t)m, sizeof *cand, by_value_desc, scaled);
        double above = 0.0;
        int32_t kept = 0;
        while (kept < m && (kept == 0 || above / total < (double)p->top_p)) {
            above += exp((double)scaled[cand[kept]] - max);
            kept++;
        }
        m = kept;
        total = above;
    }

    double r = pyllm_rng_uniform(rng) * total, acc = 0.0;
    for (int32_t j = 0; j < m; j++) {
        acc += exp((double)scaled[cand[j]] - max);
        if (r < acc) {
            *token = cand[j];
            return PYLLM_OK;
        }
    }
    *token = cand[m - 1]; /* r fell on the rounding slack at the very end */
    return PYLLM_OK;
}
