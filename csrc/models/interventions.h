/* Interventions: changes to the activations of a forward pass at chosen layers, sites and token
 * positions (steering vectors, activation patching), applied where the decoder computes them.
 *
 * A site is the residual stream after a layer, the attention output (o_proj's, before its
 * residual add) or the MLP output (down_proj's, before its residual add). A position is a token's
 * position in its row (cumsum(mask) - 1, the count of real tokens before it), so it continues
 * across calls on one cache and across generation steps; padding tokens are never changed. */
#ifndef PYLLM_MODELS_INTERVENTIONS_H
#define PYLLM_MODELS_INTERVENTIONS_H

#include <stdint.h>

#include "core/error.h"

typedef enum { PYLLM_SITE_RESIDUAL = 0, PYLLM_SITE_ATTN_OUT = 1, PYLLM_SITE_MLP_OUT = 2 } pyllm_site;

#define PYLLM_SITE_COUNT 3

typedef struct {
    int64_t layer;
    pyllm_site site;
    int replace;               /* 1: the activation becomes the value; 0: the value is added */
    int64_t n_positions;       /* 0: every position */
    const int64_t *positions;  /* [n_positions], strictly increasing */
    const float *values;       /* [n_values][hidden] */
    int64_t n_values;          /* 1: one vector for every position; else n_positions (one each) */
} pyllm_intervention;

typedef struct {
    int64_t n, hidden;         /* hidden: the width of every value vector */
    const pyllm_intervention *items; /* applied in this order where several meet */
    uint8_t at[PYLLM_SITE_COUNT]; /* whether any item has the site: the others cost one test */
} pyllm_intervention_list;

/* ValueError naming the first item that cannot apply to a model of n_layers layers of width
 * hidden (layer out of range, positions not increasing or negative, a value count that is neither
 * 1 nor the number of positions). */
pyllm_status pyllm_interventions_check(const pyllm_intervention_list *list, int64_t n_layers, int64_t hidden);

/* Apply the items of (layer, site) to x[total][hidden], the activations of total = rows x n_new
 * new tokens: token i has position positions[i] and is real when real[i] is nonzero (real
 * is read with a row stride: real[(i / n_new) * real_stride + i % n_new]). */
void pyllm_interventions_apply(const pyllm_intervention_list *list, int64_t layer, pyllm_site site, float *x,
                               int64_t total, int64_t n_new, const int64_t *positions, const uint8_t *real,
                               int64_t real_stride);

#endif
