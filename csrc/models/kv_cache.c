/* The KV cache: keys, values, validity and positions of every slot of every row, for every
 * layer. Made, copied, repeated (one prompt continued by many rows) and narrowed to the rows
 * still running (so a batch whose rows finish at different steps computes only over the rest).
 * Keys and values are in the model's cache type (config.kv_type: f32, bf16 or f16), so every
 * size here is in elements of that type's bytes. */
#include <string.h>

#include "core/alloc.h"
#include "models/decoder.h"

/* The byte sizes of a cache's buffers, every product checked: a size from a config or a call
 * must fail here, not wrap into a small allocation that is then indexed past its end. */
typedef struct {
    size_t slots;    /* batch * capacity */
    size_t kv;       /* bytes of the keys (and of the values) */
} cache_sizes;

static pyllm_status sizes_of(int64_t n_layers, int64_t kv_width, pyllm_kv_type type, int64_t batch, int64_t capacity,
                             cache_sizes *s)
{
    *s = (cache_sizes){0, 0};
    if (batch <= 0 || capacity <= 0)
        return pyllm_error(PYLLM_ERR_VALUE, "a KV cache needs batch > 0 and capacity > 0, got %lld and %lld",
                           (long long)batch, (long long)capacity);
    if (n_layers <= 0 || kv_width <= 0)
        return pyllm_error(PYLLM_ERR_VALUE, "a KV cache needs layers > 0 and a key width > 0, got %lld and %lld",
                           (long long)n_layers, (long long)kv_width);
    const size_t limit = (size_t)INT64_MAX; /* the C core indexes the cache with int64 */
    const size_t element = pyllm_kv_type_bytes(type);
    size_t elements = 0;
    s->slots = (size_t)batch * (size_t)capacity;
    int ok = (size_t)capacity <= limit / (size_t)batch && (size_t)kv_width <= limit / s->slots &&
             (size_t)n_layers <= limit / (s->slots * (size_t)kv_width);
    if (ok) {
        elements = s->slots * (size_t)kv_width * (size_t)n_layers;
        ok = elements <= limit / element / 2;
    }
    if (!ok)
        return pyllm_error(PYLLM_ERR_MEMORY,
                           "a KV cache of %lld rows x %lld positions x %lld layers x %lld values does not fit "
                           "the address space", (long long)batch, (long long)capacity, (long long)n_layers,
                           (long long)kv_width);
    s->kv = elements * element;
    return PYLLM_OK;
}

pyllm_status pyllm_kv_cache_bytes(const pyllm_decoder_config *c, int64_t batch, int64_t capacity, size_t *bytes)
{
    cache_sizes s;
    PYLLM_TRY(sizes_of(c->n_layers, c->n_kv_heads * c->head_dim, c->kv_type, batch, capacity, &s));
    /* As allocated: keys and values by pyllm_alloc_big, the bookkeeping by calloc. */
    *bytes = 2 * pyllm_alloc_big_size(s.kv) + s.slots * (1 + sizeof(int32_t)) + (size_t)batch * sizeof(int64_t);
    return PYLLM_OK;
}

pyllm_status pyllm_kv_cache_init(pyllm_kv_cache *c, const pyllm_decoder *m, int64_t batch, int64_t capacity)
{
    memset(c, 0, sizeof *c);
    cache_sizes s;
    PYLLM_TRY(sizes_of(m->config.n_layers, m->config.n_kv_heads * m->config.head_dim, m->config.kv_type, batch,
                       capacity, &s));
    c->n_layers = m->config.n_layers;
    c->type = m->config.kv_type;
    c->batch = batch;
    c->capacity = capacity;
    c->kv_width = m->config.n_kv_heads * m->config.head_dim;
    c->head_dim = m->config.head_dim;
    c->max_batch = batch;
    /* Nothing is written here: keys and values stay uninitialised (only filled slots are read)
     * and the zeroed tables come zero from the kernel. Pages are taken as tokens are written
     * (keys are stored transposed, so the first tokens touch a page of every key row). */
    c->keys = pyllm_alloc_big(s.kv);
    c->values = pyllm_alloc_big(s.kv);
    c->valid = pyllm_calloc_lazy(s.slots, 1);
    c->position = pyllm_calloc_lazy(s.slots, sizeof(int32_t));
    c->length = pyllm_calloc_lazy((size_t)batch, sizeof(int64_t));
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
    cache_sizes s;
    PYLLM_TRY(sizes_of(src->n_layers, src->kv_width, src->type, batch, src->capacity, &s));
    *dst = *src;
    dst->batch = dst->max_batch = batch;
    /* Every pointer is replaced before any check, so a failure never frees src's buffers. */
    dst->keys = pyllm_alloc_big(s.kv);
    dst->values = pyllm_alloc_big(s.kv);
    dst->valid = pyllm_alloc(s.slots);
    dst->position = pyllm_alloc(sizeof(int32_t) * s.slots);
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
    /* src was sized by sizes_of, so these products do not overflow. */
    const size_t slots = (size_t)src->batch * (size_t)src->capacity;
    const size_t bytes = pyllm_kv_type_bytes(src->type) * slots * (size_t)src->kv_width * (size_t)src->n_layers;
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
    /* Both layouts hold one contiguous block of capacity * kv_width values per (layer, row). */
    const size_t row = (size_t)(src->capacity * src->kv_width) * pyllm_kv_type_bytes(src->type);
    char *keys = dst->keys, *values = dst->values;
    for (int64_t l = 0; l < src->n_layers; l++)
        for (int64_t b = 0; b < batch; b++) {
            memcpy(keys + (size_t)(l * batch + b) * row, (const char *)src->keys + (size_t)l * row, row);
            memcpy(values + (size_t)(l * batch + b) * row, (const char *)src->values + (size_t)l * row, row);
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
    const size_t per_row = (size_t)(c->capacity * c->kv_width) * pyllm_kv_type_bytes(c->type);
    char *keys = c->keys, *values = c->values;
    for (int64_t l = 0; l < c->n_layers; l++)
        for (int64_t j = 0; j < n; j++) {
            const size_t from = (size_t)(l * c->batch + rows[j]) * per_row, to = (size_t)(l * n + j) * per_row;
            if (from != to) {
                memmove(keys + to, keys + from, per_row);
                memmove(values + to, values + from, per_row);
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

size_t pyllm_kv_cache_gather_scratch_bytes(const pyllm_kv_cache *c, int64_t rows)
{
    /* One layer's filled keys or values of every gathered row, then their slot tables. */
    const size_t r = (size_t)rows, slots = r * (size_t)c->capacity;
    return slots * (size_t)c->kv_width * pyllm_kv_type_bytes(c->type) + slots * (1 + sizeof(int32_t)) +
           r * sizeof(int64_t);
}

/* The filled part of one row of one layer's keys ([kv_width][capacity]: a run of `used` per
 * value) or values ([n_kv_heads][capacity][head_dim]: a run of used * head_dim per head),
 * packed into / unpacked from `packed`. */
static void copy_filled(const pyllm_kv_cache *c, char *row, char *packed, int keys, int to_packed)
{
    const size_t e = pyllm_kv_type_bytes(c->type);
    const int64_t runs = keys ? c->kv_width : c->kv_width / c->head_dim;
    const size_t run = (size_t)(keys ? c->used : c->used * c->head_dim) * e;
    const size_t stride = (size_t)(keys ? c->capacity : c->capacity * c->head_dim) * e;
    for (int64_t i = 0; i < runs; i++) {
        char *a = row + (size_t)i * stride, *b = packed + (size_t)i * run;
        if (to_packed)
            memcpy(b, a, run);
        else
            memcpy(a, b, run);
    }
}

static void gather_layer(pyllm_kv_cache *c, char *base, int64_t l, const int64_t *rows, int64_t n, int keys,
                         char *scratch)
{
    const size_t e = pyllm_kv_type_bytes(c->type);
    const size_t per_row = (size_t)(c->capacity * c->kv_width) * e;
    const size_t packed = (size_t)(c->used * c->kv_width) * e;
    /* Every source read before any destination is written: old and new rows of a layer overlap.
     * With the row count unchanged, a row that keeps its own keys stays where it is. */
    const int same_layout = n == c->batch;
    for (int64_t j = 0; j < n; j++)
        if (!same_layout || rows[j] != j)
            copy_filled(c, base + (size_t)(l * c->batch + rows[j]) * per_row, scratch + (size_t)j * packed, keys, 1);
    for (int64_t j = 0; j < n; j++)
        if (!same_layout || rows[j] != j)
            copy_filled(c, base + (size_t)(l * n + j) * per_row, scratch + (size_t)j * packed, keys, 0);
}

pyllm_status pyllm_kv_cache_gather_rows(pyllm_kv_cache *c, const int64_t *rows, int64_t n, void *scratch)
{
    if (n < 1 || n > c->max_batch)
        return pyllm_error(PYLLM_ERR_VALUE, "a KV cache gathers between 1 and %lld rows, got %lld",
                           (long long)c->max_batch, (long long)n);
    for (int64_t j = 0; j < n; j++)
        if (rows[j] < 0 || rows[j] >= c->batch)
            return pyllm_error(PYLLM_ERR_VALUE, "rows to gather must be indices below %lld, got %lld",
                               (long long)c->batch, (long long)rows[j]);
    int identity = n == c->batch;
    for (int64_t j = 0; identity && j < n; j++)
        identity = rows[j] == j;
    if (identity)
        return PYLLM_OK;
    /* New layer l lies in [l * n, (l + 1) * n) rows. Growing, it reaches into old layers above l:
     * go down from the last layer (those are read already). Shrinking, it reaches only into old
     * layers at or below l: go up. */
    char *s = scratch;
    for (int64_t i = 0; i < c->n_layers; i++) {
        const int64_t l = n > c->batch ? c->n_layers - 1 - i : i;
        gather_layer(c, c->keys, l, rows, n, 1, s);
        gather_layer(c, c->values, l, rows, n, 0, s);
    }
    /* The slot tables, whole rows, through the same scratch: lengths (8-byte aligned, as the
     * scratch is), then positions, then validity flags. */
    const size_t cap = (size_t)c->capacity;
    int64_t *length = (int64_t *)scratch;
    int32_t *position = (int32_t *)(s + (size_t)n * sizeof(int64_t));
    uint8_t *valid = (uint8_t *)(s + (size_t)n * (sizeof(int64_t) + cap * sizeof(int32_t)));
    for (int64_t j = 0; j < n; j++) {
        length[j] = c->length[rows[j]];
        memcpy(position + (size_t)j * cap, c->position + rows[j] * c->capacity, sizeof(int32_t) * cap);
        memcpy(valid + (size_t)j * cap, c->valid + rows[j] * c->capacity, cap);
    }
    memcpy(c->length, length, sizeof(int64_t) * (size_t)n);
    memcpy(c->position, position, sizeof(int32_t) * cap * (size_t)n);
    memcpy(c->valid, valid, cap * (size_t)n);
    c->batch = n;
    return PYLLM_OK;
}

/* Speculative decoding: drafted tokens the target rejected leave the cache again, as if never
 * fed. Only the bookkeeping moves back: the slots' keys and values are overwritten by the next
 * call, and nothing reads past `used`. */
pyllm_status pyllm_kv_cache_truncate(pyllm_kv_cache *c, int64_t n)
{
    if (n < 0 || n > c->used)
        return pyllm_error(PYLLM_ERR_VALUE, "cannot drop %lld of the %lld filled KV-cache positions", (long long)n,
                           (long long)c->used);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t slot = c->used - n; slot < c->used; slot++) {
            uint8_t *valid = &c->valid[b * c->capacity + slot];
            c->length[b] -= *valid;
            *valid = 0;
            c->position[b * c->capacity + slot] = 0;
        }
    c->used -= n;
    return PYLLM_OK;
}

/* Copy slots [from, from + n) of one row of src to slots [to, to + n) of dst's row 0, every layer:
 * keys are runs over slots per value, values runs of head_dim per slot per head. */
static void copy_slots(pyllm_kv_cache *dst, const pyllm_kv_cache *src, int64_t row, int64_t from, int64_t to,
                       int64_t n)
{
    const size_t e = pyllm_kv_type_bytes(src->type);
    const size_t src_row = (size_t)(src->capacity * src->kv_width) * e, dst_row = (size_t)(dst->capacity * dst->kv_width) * e;
    const int64_t heads = src->kv_width / src->head_dim;
    const size_t hd = (size_t)src->head_dim * e;
    for (int64_t l = 0; l < src->n_layers; l++) {
        const char *sk = (const char *)src->keys + (size_t)(l * src->batch + row) * src_row;
        const char *sv = (const char *)src->values + (size_t)(l * src->batch + row) * src_row;
        char *dk = (char *)dst->keys + (size_t)l * dst_row, *dv = (char *)dst->values + (size_t)l * dst_row;
        for (int64_t i = 0; i < src->kv_width; i++)
            memcpy(dk + ((size_t)i * (size_t)dst->capacity + (size_t)to) * e,
                   sk + ((size_t)i * (size_t)src->capacity + (size_t)from) * e, (size_t)n * e);
        for (int64_t h = 0; h < heads; h++)
            memcpy(dv + ((size_t)h * (size_t)dst->capacity + (size_t)to) * hd,
                   sv + ((size_t)h * (size_t)src->capacity + (size_t)from) * hd, (size_t)n * hd);
    }
}

pyllm_status pyllm_kv_cache_take(pyllm_kv_cache *dst, const pyllm_kv_cache *src, int64_t row, int64_t tokens,
                                 int64_t capacity)
{
    memset(dst, 0, sizeof *dst);
    if (row < 0 || row >= src->batch)
        return pyllm_error(PYLLM_ERR_VALUE, "row must be an index below %lld, got %lld", (long long)src->batch,
                           (long long)row);
    if (tokens < 1 || tokens > src->length[row])
        return pyllm_error(PYLLM_ERR_VALUE, "tokens must be between 1 and the row's %lld cached tokens, got %lld",
                           (long long)src->length[row], (long long)tokens);
    if (capacity < tokens)
        return pyllm_error(PYLLM_ERR_VALUE, "capacity must be at least tokens (%lld), got %lld", (long long)tokens,
                           (long long)capacity);
    cache_sizes s;
    PYLLM_TRY(sizes_of(src->n_layers, src->kv_width, src->type, 1, capacity, &s));
    *dst = *src;
    dst->interventions = NULL; /* set by each call that uses the copy, as for any cache */
    dst->batch = dst->max_batch = 1;
    dst->capacity = capacity;
    dst->keys = pyllm_alloc_big(s.kv);
    dst->values = pyllm_alloc_big(s.kv);
    dst->valid = pyllm_calloc_lazy(s.slots, 1);
    dst->position = pyllm_calloc_lazy(s.slots, sizeof(int32_t));
    dst->length = pyllm_calloc_lazy(1, sizeof(int64_t));
    if (dst->keys == NULL || dst->values == NULL || dst->valid == NULL || dst->position == NULL ||
        dst->length == NULL) {
        pyllm_kv_cache_release(dst);
        return PYLLM_ERR_MEMORY;
    }
    /* The row's real tokens in slot order (padding skipped), packed from slot 0, a run of
     * consecutive real slots at a time (a left-padded row is one run). */
    const uint8_t *valid = src->valid + row * src->capacity;
    const int32_t *position = src->position + row * src->capacity;
    int64_t taken = 0;
    for (int64_t slot = 0; slot < src->used && taken < tokens; slot++) {
        if (!valid[slot])
            continue;
        int64_t end = slot;
        while (end < src->used && valid[end] && taken + (end - slot) < tokens)
            end++;
        copy_slots(dst, src, row, slot, taken, end - slot);
        memcpy(dst->position + taken, position + slot, sizeof(int32_t) * (size_t)(end - slot));
        memset(dst->valid + taken, 1, (size_t)(end - slot));
        taken += end - slot;
        slot = end - 1;
    }
    dst->used = taken;
    dst->length[0] = taken;
    return PYLLM_OK;
}
