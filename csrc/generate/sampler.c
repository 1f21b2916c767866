#include "generate/sampler.h"

#include <math.h>

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
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return pyllm_error(PYLLM_ERR_VALUE, "min_p must be in [0, 1], got %g", (double)p->min_p);
    if (!(p->typical_p > 0.0f && p->typical_p <= 1.0f))
        return pyllm_error(PYLLM_ERR_VALUE, "typical_p must be in (0, 1], got %g", (double)p->typical_p);
    return PYLLM_OK;
}

pyllm_status pyllm_sampler_init(pyllm_sampler *s, int32_t vocab_size)
{
    *s = (pyllm_sampler){0};
    if (vocab_size < 1)
        return pyllm_error(PYLLM_ERR_VALUE, "vocabulary size must be >= 1, got %d", (int)vocab_size);
    s->vocab_size = vocab_size;
    size_t n = (size_t)vocab_size;
    s->index = pyllm_alloc(sizeof(int32_t) * n);
    s->value = pyllm_alloc(sizeof(float) * n);
    s->scratch = pyllm_alloc(sizeof(float) * n);
    s->weight = pyllm_alloc(sizeof(double) * n);
    s->ranked = pyllm_alloc(sizeof(pyllm_scored_token) * n);
    if (s->index == NULL || s->value == NULL || s->scratch == NULL || s->weight == NULL || s->ranked == NULL) {
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
    pyllm_free(s->weight);
    pyllm_free(s->ranked);
    s->index = NULL;
    s->value = NULL;
    s->scratch = NULL;
    s->weight = NULL;
    s->ranked = NULL;
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
float pyllm_kth_largest(float *v, int32_t n, int32_t k)
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

/* The ranking top-p walks: higher score first, equal scores by token id (a strict order, so
 * the cut never depends on how the selection below happens to move ties). */
static int ranks_before(pyllm_scored_token a, pyllm_scored_token b)
{
    return a.score > b.score || (a.score == b.score && a.id < b.id);
}

static void swap_tokens(pyllm_scored_token *a, pyllm_scored_token *b)
{
    pyllm_scored_token t = *a;
    *a = *b;
    *b = t;
}

/* Top-p: transformers removes a token when the ascending cumulative mass up to it is
 * <= 1 - top_p, i.e. keeps, in the ranking, each token whose better-ranked mass is < top_p
 * of the total (the best token always). No sort is needed to find that set: a quickselect
 * on mass partitions the candidates around a pivot and keeps going into the side where the
 * cut lies, expected O(m). On return s->ranked[0..kept) holds the kept tokens (unordered)
 * and *kept_mass their weight. */
static int32_t top_p_keep(pyllm_sampler *s, int32_t m, double total, float top_p, double *kept_mass)
{
    pyllm_scored_token *t = s->ranked;
    const double *w = s->weight;
    for (int32_t j = 0; j < m; j++)
        t[j] = (pyllm_scored_token){s->value[s->index[j]], s->index[j]};
    const double target = (double)top_p * total;
    double before = 0.0; /* mass of the tokens already known to be kept */
    int32_t lo = 0, hi = m; /* t[0..lo) kept, t[hi..m) removed, t[lo..hi) undecided */
    while (lo < hi) {
        /* Median of three as pivot, parked at the end. */
        int32_t mid = lo + (hi - lo) / 2, last = hi - 1;
        if (ranks_before(t[mid], t[lo]))
            swap_tokens(&t[mid], &t[lo]);
        if (ranks_before(t[last], t[lo]))
            swap_tokens(&t[last], &t[lo]);
        if (ranks_before(t[mid], t[last]))
            swap_tokens(&t[mid], &t[last]);
        const pyllm_scored_token pivot = t[last];
        int32_t store = lo;
        double better_mass = 0.0;
        for (int32_t j = lo; j < last; j++) {
            if (ranks_before(t[j], pivot)) {
                better_mass += w[t[j].id];
                swap_tokens(&t[j], &t[store]);
                store++;
            }
        }
        swap_tokens(&t[store], &t[last]);
        if (before + better_mass < target) { /* the pivot is kept, and all better than it */
            before += better_mass + w[pivot.id];
            lo = store + 1;
        } else { /* the pivot is removed, and all worse than it */
            hi = store;
        }
    }
    *kept_mass = before;
    return lo;
}

void pyllm_top_p_mask(pyllm_sampler *s, float *scores, float top_p)
{
    const int32_t n = s->vocab_size;
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (scores[i] > max)
            max = scores[i];
    if (!(max > -INFINITY) || top_p >= 1.0f)
        return;
    int32_t m = 0;
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) {
        s->value[i] = scores[i];
        if (scores[i] > -INFINITY) {
            s->index[m++] = i;
            s->weight[i] = exp((double)scores[i] - (double)max);
            total += s->weight[i];
        }
    }
    double kept_mass;
    int32_t kept = top_p_keep(s, m, total, top_p, &kept_mass);
    /* Mark the kept tokens by index, then clear every other one. */
    for (int32_t i = 0; i < n; i++)
        s->value[i] = -INFINITY;
    for (int32_t j = 0; j < kept; j++)
        s->value[s->ranked[j].id] = scores[s->ranked[j].id];
    for (int32_t i = 0; i < n; i++)
        scores[i] = s->value[i];
}

pyllm_status pyllm_sample(pyllm_sampler *s, const float *scores, const pyllm_sampling_params *p,
                          pyllm_rng *rng, int32_t *token)
{
    const int32_t n = s->vocab_size;
    if (!p->do_sample || p->temperature == 0.0f) {
        *token = pyllm_argmax(scores, n);
        if (*token < 0)
            return pyllm_error(PYLLM_ERR_VALUE, "every logit is NaN: cannot choose a token");
        return PYLLM_OK;
    }
    /* NaN and -inf drop out; +inf (a logit overflowing at a tiny temperature, or a processor's)
     * leaves no distribution to draw from. */
    float max = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        if (scores[i] == INFINITY)
            return pyllm_error(PYLLM_ERR_VALUE,
                               "the score of token %d is +inf after the processors and temperature %g "
                               "(float32 overflow): cannot sample", (int)i, (double)p->temperature);
        if (scores[i] > max)
            max = scores[i];
    }
    if (!isfinite(max))
        return pyllm_error(PYLLM_ERR_VALUE, "no finite logit to sample from: every logit is NaN or -inf");
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) {
        s->weight[i] = scores[i] > -INFINITY ? exp((double)scores[i] - (double)max) : 0.0;
        total += s->weight[i];
    }
    double r = pyllm_rng_uniform(rng) * total, acc = 0.0;
    int32_t last = -1;
    for (int32_t i = 0; i < n; i++) {
        if (s->weight[i] == 0.0)
            continue;
        acc += s->weight[i];
        last = i;
        if (r < acc) {
            *token = i;
            return PYLLM_OK;
        }
    }
    *token = last; /* r fell on the rounding slack at the very end */
    return PYLLM_OK;
}
