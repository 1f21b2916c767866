/* The KV cache: keys, values, validity and positions of every slot of every row, for every
 * layer. Made, copied, repeated (one prompt continued by many rows) and narrowed to the rows
 * still running (so a batch whose rows finish at different steps computes only over the rest). */
#include <string.h>

#include "core/alloc.h"
#include "models/decoder.h"

pyllm_status pyllm_kv_cache_init(pyllm_kv_cache *c, const pyllm_decoder *m, int64_t batch, int64_t capacity)
{
    memset(c, 0, sizeof *c);
    if (batch <= 0 || capacity <= 0)
        return pyllm_error(PYLLM_ERR_VALUE, "a KV cache needs batch > 0 and capacity > 0, got %lld and %lld",
                           (long long)batch, (long long)capacity);
    c->n_layers = m->config.n_layers;
    c->batch = batch;
    c->capacity = capacity;
    c->kv_width = m->config.n_kv_heads * m->config.head_dim;
    size_t per_layer = pyllm_mul_size(pyllm_mul_size((size_t)batch, (size_t)capacity), (size_t)c->kv_width);
    size_t bytes = pyllm_mul_size(pyllm_mul_size(per_layer, (size_t)c->n_layers), sizeof(float));
    if (bytes == 0)
        return PYLLM_ERR_MEMORY;
    c->keys = pyllm_alloc_big(bytes);
    c->values = pyllm_alloc_big(bytes);
    c->valid = pyllm_calloc((size_t)(batch * capacity), 1);
    c->position = pyllm_calloc((size_t)(batch * capacity), sizeof(int32_t));
    c->length = pyllm_calloc((size_t)batch, sizeof(int64_t));
    if (c->keys == NULL || c->values == NULL || c->valid == NULL || c->position == NULL || c->length == NULL) {
        pyllm_kv_cache_release(c);
        return PYLLM_ERR_MEMORY;
    }
    return PYLLM_OK;
}

void pyllm_kv_cache_release(pyllm_kv_cache *c)
{
    pyllm_free(c->keys);
    pyllm_free(c->values);
    pyllm_free(c->valid);
    pyllm_free(c->position);
    pyllm_free(c->length);
    memset(c, 0, sizeof *c);
}

/* dst gets uninitialised buffers for `batch` rows shaped like src's rows. */
static pyllm_status alloc_like(pyllm_kv_cache *dst, const pyllm_kv_cache *src, int64_t batch)
{
    memset(dst, 0, sizeof *dst);
    const size_t slots = pyllm_mul_size((size_t)batch, (size_t)src->capacity);
    const size_t bytes = pyllm_mul_size(pyllm_mul_size(slots, (size_t)(src->kv_width * src->n_layers)), sizeof(float));
    if (slots == 0 || bytes == 0)
        return PYLLM_ERR_MEMORY;
    *dst = *src;
    dst->batch = batch;
    /* Every pointer is replaced before any check, so a failure never frees src's buffers. */
    dst->keys = pyllm_alloc_big(bytes);
    dst->values = pyllm_alloc_big(bytes);
    dst->valid = pyllm_alloc(slots);
    dst->position = pyllm_alloc(sizeof(int32_t) * slots);
    dst->length = pyllm_alloc(sizeof(int64_t) * (size_t)batch);
    if (dst->keys == NULL || dst->values == NULL || dst->valid == NULL || dst->position == NULL ||
        dst->length == NULL) {
        pyllm_kv_cache_release(dst);
        return PYLLM_ERR_MEMORY;
    }
    return PYLLM_OK;
}

pyllm_status pyllm_kv_cache_copy(pyllm_kv_cache *dst, const pyllm_kv_cache *src)
{
    PYLLM_TRY(alloc_like(dst, src, src->batch));
    const size_t slots = (size_t)(src->batch * src->capacity);
    const size_t bytes = sizeof(float) * slots * (size_t)(src->kv_width * src->n_layers);
    memcpy(dst->keys, src->keys, bytes);
    memcpy(dst->values, src->values, bytes);
    memcpy(dst->valid, src->valid, slots);
    memcpy(dst->position, src->position, sizeof(int32_t) * slots);
    memcpy(dst->length, src->length, sizeof(int64_t) * (size_t)src->batch);
    return PYLLM_OK;
}

pyllm_status pyllm_kv_cache_repeat(pyllm_kv_cache *dst, const pyllm_kv_cache *src, int64_t batch)
{
    memset(dst, 0, sizeof *dst);
    if (src->batch != 1 || batch <= 0)
        return pyllm_error(PYLLM_ERR_VALUE, "repeat needs a one-row cache and batch > 0, got %lld rows and batch %lld",
                           (long long)src->batch, (long long)batch);
    PYLLM_TRY(alloc_like(dst, src, batch));
    /* Both layouts hold one contiguous block of capacity * kv_width floats per (layer, row). */
    const size_t row = (size_t)(src->capacity * src->kv_width);
    for (int64_t l = 0; l < src->n_layers; l++)
        for (int64_t b = 0; b < batch; b++) {
            memcpy(dst->keys + (l * batch + b) * row, src->keys + l * row, sizeof(float) * row);
            memcpy(dst->values + (l * batch + b) * row, src->values + l * row, sizeof(float) * row);
        }
    for (int64_t b = 0; b < batch; b++) {
        memcpy(dst->valid + b * src->capacity, src->valid, (size_t)src->capacity);
        memcpy(dst->position + b * src->capacity, src->position, sizeof(int32_t) * (size_t)src->capacity);
        dst->length[b] = src->length[0];
    }
    return PYLLM_OK;
}

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
        memmove(c->position + j * c->capacity, c->position + rows[j] * c->capacity,
                sizeof(int32_t) * (size_t)c->capacity);
        c->length[j] = c->length[rows[j]];
    }
    c->batch = n;
    return PYLLM_OK;
}
