#include "models/interventions.h"

#include <string.h>

pyllm_status pyllm_interventions_check(const pyllm_intervention_list *list, int64_t n_layers, int64_t hidden)
{
    if (list->hidden != hidden)
        return pyllm_error(PYLLM_ERR_VALUE,
                           "interventions: vectors have %lld values but the model's hidden_size is %lld",
                           (long long)list->hidden, (long long)hidden);
    for (int64_t k = 0; k < list->n; k++) {
        const pyllm_intervention *it = &list->items[k];
        if (it->layer < 0 || it->layer >= n_layers)
            return pyllm_error(PYLLM_ERR_VALUE, "interventions[%lld]: layer=%lld is out of range [0, %lld)",
                               (long long)k, (long long)it->layer, (long long)n_layers);
        if ((unsigned)it->site >= PYLLM_SITE_COUNT)
            return pyllm_error(PYLLM_ERR_VALUE, "interventions[%lld]: unknown site %d", (long long)k, (int)it->site);
        for (int64_t j = 0; j < it->n_positions; j++)
            if (it->positions[j] < 0 || (j > 0 && it->positions[j] <= it->positions[j - 1]))
                return pyllm_error(PYLLM_ERR_VALUE,
                                   "interventions[%lld]: positions must be >= 0 and strictly increasing",
                                   (long long)k);
        if (it->n_values != 1 && (it->n_positions == 0 || it->n_values != it->n_positions))
            return pyllm_error(PYLLM_ERR_VALUE,
                               "interventions[%lld]: %lld value vectors for %lld positions (need 1 or one each)",
                               (long long)k, (long long)it->n_values, (long long)it->n_positions);
    }
    return PYLLM_OK;
}

/* Index of pos in the item's positions (binary search), or -1; every position: its value 0. */
static int64_t value_index(const pyllm_intervention *it, int64_t pos)
{
    if (it->n_positions == 0)
        return 0;
    int64_t lo = 0, hi = it->n_positions;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (it->positions[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == it->n_positions || it->positions[lo] != pos)
        return -1;
    return it->n_values == 1 ? 0 : lo;
}

void pyllm_interventions_apply(const pyllm_intervention_list *list, int64_t layer, pyllm_site site, float *x,
                               int64_t total, int64_t n_new, const int64_t *positions, const uint8_t *real,
                               int64_t real_stride)
{
    if (list == NULL || !list->at[site])
        return;
    const int64_t d = list->hidden;
    for (int64_t k = 0; k < list->n; k++) {
        const pyllm_intervention *it = &list->items[k];
        if (it->layer != layer || it->site != site)
            continue;
        for (int64_t i = 0; i < total; i++) {
            if (!real[(i / n_new) * real_stride + i % n_new])
                continue;
            const int64_t v = value_index(it, positions[i]);
            if (v < 0)
                continue;
            const float *value = it->values + v * d;
            float *row = x + i * d;
            if (it->replace)
                memcpy(row, value, sizeof(float) * (size_t)d);
            else
                for (int64_t j = 0; j < d; j++)
                    row[j] += value[j];
        }
    }
}
