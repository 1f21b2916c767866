#include "tokenizers/literal.h"

#include <string.h>

#include "core/alloc.h"
#include "tokenizers/utf8.h"

pyllm_status pyllm_literal_init(pyllm_literal *lit, const char *s, size_t len)
{
    memset(lit, 0, sizeof *lit);
    lit->text = pyllm_alloc(len + 1);
    lit->fail = pyllm_alloc(pyllm_mul_size(len ? len : 1, sizeof(size_t)));
    if (lit->text == NULL || lit->fail == NULL) {
        pyllm_literal_free(lit);
        return PYLLM_ERR_MEMORY;
    }
    if (len)
        memcpy(lit->text, s, len);
    lit->text[len] = '\0';
    lit->len = len;
    if (len)
        lit->fail[0] = 0;
    for (size_t i = 1, k = 0; i < len; i++) {
        while (k > 0 && s[i] != s[k])
            k = lit->fail[k - 1];
        if (s[i] == s[k])
            k++;
        lit->fail[i] = k;
    }
    return PYLLM_OK;
}

void pyllm_literal_free(pyllm_literal *lit)
{
    pyllm_free(lit->text);
    pyllm_free(lit->fail);
    memset(lit, 0, sizeof *lit);
}

size_t pyllm_literal_find(const pyllm_literal *lit, const char *hay, size_t len, size_t from, uint64_t *steps)
{
    const char *p = lit->text;
    size_t m = lit->len, k = 0;
    if (m == 0 || from > len || len - from < m)
        return SIZE_MAX;
    if (m == 1) { /* the common case: one byte */
        const char *hit = memchr(hay + from, p[0], len - from);
        *steps += hit ? (size_t)(hit - hay) - from + 1 : len - from;
        return hit ? (size_t)(hit - hay) : SIZE_MAX;
    }
    /* each byte is matched once and every fall back shortens k, so at most 2 steps per byte */
    uint64_t n = 0;
    for (size_t i = from; i < len; i++) {
        while (k > 0 && hay[i] != p[k]) {
            k = lit->fail[k - 1];
            n++;
        }
        n++;
        if (hay[i] == p[k] && ++k == m) {
            *steps += n;
            return i + 1 - m;
        }
    }
    *steps += n;
    return SIZE_MAX;
}

pyllm_status pyllm_literal_replace(const pyllm_literal *lit, const char *s, size_t len, const char *to,
                                   size_t to_len, pyllm_bytes *out, uint64_t *steps)
{
    PYLLM_TRY(pyllm_bytes_reserve(out, len));
    if (lit->len == 0) {
        if (len == 0)
            return PYLLM_OK;
        for (size_t i = 0; i < len;) {
            size_t k = pyllm_utf8_char_len(s + i, len - i);
            PYLLM_TRY(pyllm_bytes_append(out, to, to_len));
            PYLLM_TRY(pyllm_bytes_append(out, s + i, k));
            i += k;
        }
        *steps += len;
        return pyllm_bytes_append(out, to, to_len);
    }
    size_t start = 0;
    for (size_t at; (at = pyllm_literal_find(lit, s, len, start, steps)) != SIZE_MAX; start = at + lit->len) {
        PYLLM_TRY(pyllm_bytes_append(out, s + start, at - start));
        PYLLM_TRY(pyllm_bytes_append(out, to, to_len));
    }
    return pyllm_bytes_append(out, s + start, len - start);
}
