/* Growable byte strings and id lists used while encoding and decoding text. */
#ifndef PYLLM_TOKENIZERS_BUFFERS_H
#define PYLLM_TOKENIZERS_BUFFERS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} pyllm_bytes;

typedef struct {
    int32_t *data;
    size_t len;
    size_t cap;
} pyllm_ids;

/* Make room for `extra` more bytes (capacity doubles, so appends are amortised O(1)). */
pyllm_status pyllm_bytes_reserve(pyllm_bytes *b, size_t extra);
pyllm_status pyllm_bytes_append(pyllm_bytes *b, const void *data, size_t len);
/* Append s[0..len) with every occurrence of `from` replaced by `to` (an empty `from` replaces
 * nothing). Compares at every byte: for short fixed patterns; literal.h searches long ones. */
pyllm_status pyllm_bytes_append_replaced(pyllm_bytes *b, const char *s, size_t len, const char *from, size_t from_len,
                                         const char *to, size_t to_len);
void pyllm_bytes_free(pyllm_bytes *b);

pyllm_status pyllm_ids_reserve(pyllm_ids *v, size_t extra);
pyllm_status pyllm_ids_push(pyllm_ids *v, int32_t id);
void pyllm_ids_free(pyllm_ids *v);

#endif
