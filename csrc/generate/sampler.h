/* Choosing the next token from a row of scores: greedy argmax, or a draw from their softmax.
 * Temperature, top-k, top-p, min-p and typical-p are the warpers (processors.h,
 * pyllm_warp_row), applied to the scores before the draw: one implementation of each. */
#ifndef PYLLM_GENERATE_SAMPLER_H
#define PYLLM_GENERATE_SAMPLER_H

#include <stdint.h>

#include "core/error.h"
#include "generate/rng.h"

typedef struct {
    int do_sample;     /* 0: greedy */
    float temperature; /* > 0 when sampling; 0 means greedy */
    int32_t top_k;     /* 0: off */
    float top_p;       /* in (0, 1]; 1: off */
    float min_p;       /* in [0, 1]; 0: off */
    float typical_p;   /* in (0, 1]; 1: off */
} pyllm_sampling_params;

/* ValueError naming the first option out of range. */
pyllm_status pyllm_sampling_params_check(const pyllm_sampling_params *p);

/* A candidate token and its score, sorted by score for top-p. */
typedef struct {
    float score;
    int32_t id;
} pyllm_scored_token;

/* Scratch for one vocabulary size, allocated once, reused every step. */
typedef struct {
    int32_t vocab_size;
    int32_t *index;              /* top-p's candidates, in token order */
    float *value;                /* top-p's scores, by token */
    float *scratch;              /* top-k's quickselect workspace */
    double *weight;              /* exp(score - max), by token */
    pyllm_scored_token *ranked;  /* the best candidates, sorted, for top-p */
} pyllm_sampler;

pyllm_status pyllm_sampler_init(pyllm_sampler *s, int32_t vocab_size);
void pyllm_sampler_release(pyllm_sampler *s);

/* Index of the largest logit (the first one on ties, NaN never wins); -1 if none is a number. */
int32_t pyllm_argmax(const float *logits, int32_t n);

/* The k-th largest of v[0..n) (1 <= k <= n); v is reordered. */
float pyllm_kth_largest(float *v, int32_t n, int32_t k);

/* Top-p as a mask: scores[vocab_size] of the tokens outside the smallest best-first prefix
 * holding top_p of the probability mass (transformers' TopPLogitsWarper) become -inf. */
void pyllm_top_p_mask(pyllm_sampler *s, float *scores, float top_p);

/* Pick a token from scores[vocab_size] (already warped by pyllm_warp_row with p) into *token: the
 * first argmax when p is greedy (do_sample off or temperature 0), else a draw from softmax(scores)
 * in token order. ValueError when a score is +inf or none is finite. */
pyllm_status pyllm_sample(pyllm_sampler *s, const float *logits, const pyllm_sampling_params *p,
                          pyllm_rng *rng, int32_t *token);

#endif
