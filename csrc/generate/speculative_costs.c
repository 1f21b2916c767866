/* The per-call costs automatic speculation weighs, measured once when a model is loaded (not
 * during generation, whose tokens must not depend on the clock). */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <omp.h>
#include <time.h>

#include "core/alloc.h"
#include "generate/speculative.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

pyllm_status pyllm_speculative_measure(pyllm_decoder *m, int64_t n_tokens, double *seconds)
{
    enum { RUNS = 4 };
    if (n_tokens < 1 || n_tokens > 256 || n_tokens >= m->config.n_ctx)
        return pyllm_error(PYLLM_ERR_VALUE, "n_tokens must be in [1, 256] and below n_ctx=%lld, got %lld",
                           (long long)m->config.n_ctx, (long long)n_tokens);
    omp_set_num_threads(m->n_threads);
    /* A short context before the measured call, as generation has (shorter if n_ctx is). */
    const int64_t context = m->config.n_ctx - n_tokens < 32 ? m->config.n_ctx - n_tokens : 32;
    const int64_t vocab = m->config.vocab_size, total = context + n_tokens;
    int32_t *tokens = pyllm_alloc(sizeof(int32_t) * (size_t)total);
    float *logits = pyllm_alloc(pyllm_mul_size(sizeof(float) * (size_t)n_tokens, (size_t)vocab));
    pyllm_kv_cache cache = {0};
    pyllm_status st = tokens != NULL && logits != NULL ? PYLLM_OK : PYLLM_ERR_MEMORY;
    if (st == PYLLM_OK)
        st = pyllm_kv_cache_init(&cache, m, 1, total);
    for (int64_t i = 0; i < total && st == PYLLM_OK; i++)
        tokens[i] = (int32_t)((i * 7 + 1) % vocab);
    if (st == PYLLM_OK)
        st = pyllm_decoder_forward(m, &cache, tokens, NULL, context, NULL, 0);
    double best = INFINITY;
    /* The first run also makes the primitives for this call size: the fastest run is kept. */
    for (int run = 0; run <= RUNS && st == PYLLM_OK; run++) {
        const double start = now();
        st = pyllm_decoder_forward(m, &cache, tokens + context, NULL, n_tokens, logits, 1);
        const double took = now() - start;
        if (st == PYLLM_OK)
            st = pyllm_kv_cache_truncate(&cache, n_tokens);
        if (run > 0 && took < best)
            best = took;
    }
    *seconds = best;
    if (cache.keys != NULL)
        pyllm_kv_cache_release(&cache);
    pyllm_free(tokens);
    pyllm_free(logits);
    return st;
}
