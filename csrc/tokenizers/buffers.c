#include "tokenizers/buffers.h"

#include <string.h>

#include "core/alloc.h"

/* Grow a buffer of elements of `elem` bytes to hold at least `need` elements. */
static pyllm_status grow(void **data, size_t *cap, size_t used, size_t need, size_t elem)
{
    if (need <= *cap)
        return PYLLM_OK;
    size_t new_cap = *cap ? *cap : 64;
    while (new_cap < need) {
        if (new_cap > SIZE_MAX / 2)
            return pyllm_error(PYLLM_ERR_MEMORY, "buffer of %zu elements is too large", need);
        new_cap *= 2;
    }
    size_t bytes = pyllm_mul_size(new_cap, elem);
    if (bytes == 0)
        return PYLLM_ERR_MEMORY;
    void *fresh = pyllm_alloc(bytes);
    if (fresh == NULL)
        return PYLLM_ERR_MEMORY;
    if (used)
        memcpy(fresh, *data, used * elem);
    pyllm_free(*data);
    *data = fresh;
    *cap = new_cap;
    return PYLLM_OK;
}

pyllm_status pyllm_bytes_reserve(pyllm_bytes *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return pyllm_error(PYLLM_ERR_MEMORY, "text too large");
    /* one spare byte so the contents can always be NUL-terminated */
    void *data = b->data;
    pyllm_status st = grow(&data, &b->cap, b->len, b->len + extra + 1, 1);
    b->data = data;
    return st;
}

pyllm_status pyllm_bytes_append(pyllm_bytes *b, const void *data, size_t len)
{
    PYLLM_TRY(pyllm_bytes_reserve(b, len));
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return PYLLM_OK;
}

pyllm_status pyllm_bytes_append_replaced(pyllm_bytes *b, const char *s, size_t len, const char *from, size_t from_len,
                                         const char *to, size_t to_len)
{
    size_t start = 0;
    PYLLM_TRY(pyllm_bytes_reserve(b, len));
    if (from_len == 0) /* nothing to find: an empty pattern would never advance */
        return pyllm_bytes_append(b, s, len);
    for (size_t i = 0; i + from_len <= len;) {
        if (memcmp(s + i, from, from_len) == 0) {
            PYLLM_TRY(pyllm_bytes_append(b, s + start, i - start));
            PYLLM_TRY(pyllm_bytes_append(b, to, to_len));
            i += from_len;
            start = i;
        } else {
            i++;
        }
    }
    return pyllm_bytes_append(b, s + start, len - start);
}

void pyllm_bytes_free(pyllm_bytes *b)
{
    pyllm_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

pyllm_status pyllm_ids_reserve(pyllm_ids *v, size_t extra)
{
    if (extra > SIZE_MAX / sizeof(int32_t) - v->len)
        return pyllm_error(PYLLM_ERR_MEMORY, "id list too large");
    void *data = v->data;
    pyllm_status st = grow(&data, &v->cap, v->len, v->len + extra, sizeof(int32_t));
    v->data = data;
    return st;
}

pyllm_status pyllm_ids_push(pyllm_ids *v, int32_t id)
{
    if (v->len == v->cap)
        PYLLM_TRY(pyllm_ids_reserve(v, 1));
    v->data[v->len++] = id;
    return PYLLM_OK;
}

void pyllm_ids_free(pyllm_ids *v)
{
    pyllm_free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}
