#include "tokenizers/special_tokens.h"

#include <string.h>

#include "core/alloc.h"

pyllm_status pyllm_special_tokens_init(pyllm_special_tokens *s)
{
    memset(s, 0, sizeof *s);
    return pyllm_prefix_matcher_init(&s->strings);
}

void pyllm_special_tokens_free(pyllm_special_tokens *s)
{
    pyllm_prefix_matcher_free(&s->strings);
    pyllm_free(s->ids);
    memset(s, 0, sizeof *s);
}

pyllm_status pyllm_special_tokens_add(pyllm_special_tokens *s, const char *text, size_t len, int32_t id)
{
    if (len == 0)
        return pyllm_error(PYLLM_ERR_VALUE, "a special token must not be empty");
    int32_t index = pyllm_vocab_find(&s->strings.strings, text, len);
    if (index >= 0) {
        s->ids[index] = id;
        return PYLLM_OK;
    }
    PYLLM_TRY(pyllm_prefix_matcher_add(&s->strings, text, len));
    index = s->strings.strings.n_tokens - 1;
    if (index >= s->cap_ids) {
        int32_t cap = s->cap_ids ? s->cap_ids * 2 : 16;
        int32_t *ids = pyllm_alloc((size_t)cap * sizeof(int32_t));
        if (ids == NULL)
            return PYLLM_ERR_MEMORY;
        if (s->cap_ids)
            memcpy(ids, s->ids, (size_t)s->cap_ids * sizeof(int32_t));
        pyllm_free(s->ids);
        s->ids = ids;
        s->cap_ids = cap;
    }
    s->ids[index] = id;
    s->first_byte[(unsigned char)text[0]] = 1;
    return PYLLM_OK;
}

int pyllm_special_tokens_find(const pyllm_special_tokens *s, const char *text, size_t len, size_t *start,
                              size_t *match_len, int32_t *id, uint64_t *steps)
{
    if (pyllm_special_tokens_empty(s))
        return 0;
    for (size_t pos = 0; pos < len; pos++) {
        ++*steps;
        if (!s->first_byte[(unsigned char)text[pos]])
            continue;
        size_t l = pyllm_prefix_matcher_match(&s->strings, text + pos, len - pos, steps);
        if (l) {
            *start = pos;
            *match_len = l;
            *id = s->ids[pyllm_vocab_find(&s->strings.strings, text + pos, l)];
            return 1;
        }
    }
    return 0;
}
