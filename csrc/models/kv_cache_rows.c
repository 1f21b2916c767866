/* Dropping rows from a KV cache, so a batch whose rows finish at different steps computes only
 * over the rows still running. */
#include <string.h>

#include "models/decoder.h"

pyllm_status pyllm_kv_cache_keep_rows(pyllm_kv_cache *c, const int64_t *rows, int64_t n)
{
    for (int64_t j = 0; j < n; j++)
        if (rows[j] < 0 || rows[j] >= c->batch || (j > 0 && rows[j] <= rows[j - 1]))
            return pyllm_error(PYLLM_ERR_VALUE, "rows to keep must be increasing indices below %lld",
                               (long long)c->batch);
    if (n < 1)
        return pyllm_error(PYLLM_ERR_VALUE, "a KV cache keeps at least one row");
    /* Row j of layer l moves to (l * n + j) from (l * batch + rows[j]): never later, and never
     * over a row still to be read, so one ascending pass of memmove is safe in place. */
    const size_t per_row = (size_t)(c->capacity * c->kv_width);
    for (int64_t l = 0; l < c->n_layers; l++)
        for (int64_t j = 0; j < n; j++) {
            const size_t from = (size_t)(l * c->batch + rows[j]) * per_row, to = (size_t)(l * n + j) * per_row;
            if (from != to) {
                memmove(c->keys + to, c->keys + from, per_row * sizeof(float));
                memmove(c->values + to, c->values + from, per_row * sizeof(float));
            }
        }
    for (int64_t j = 0; j < n; j++) {
        memmove(c->valid + j * c->capacity, c->valid + rows[j] * c->capacity, (size_t)c->capacity);
        c->length[j] = c->length[rows[j]];
    }
    c->batch = n;
    return PYLLM_OK;
}
