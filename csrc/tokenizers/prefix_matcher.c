#include "tokenizers/prefix_matcher.h"

#include <string.h>

#include "core/alloc.h"

pyllm_status pyllm_prefix_matcher_init(pyllm_prefix_matcher *m)
{
    memset(m, 0, sizeof *m);
    return pyllm_vocab_init(&m->strings, 16);
}

pyllm_status pyllm_prefix_matcher_add(pyllm_prefix_matcher *m, const char *s, size_t len)
{
    int32_t existing;
    if (len == 0)
        return PYLLM_OK;
    PYLLM_TRY(pyllm_vocab_add(&m->strings, s, len, &existing));
    for (size_t i = 0; i < m->n_lengths; i++)
        if (m->lengths[i] == len)
            return PYLLM_OK;
    size_t *lengths = pyllm_alloc((m->n_lengths + 1) * sizeof(size_t));
    if (lengths == NULL)
        return PYLLM_ERR_MEMORY;
    size_t k = 0, i = 0;
    while (i < m->n_lengths && m->lengths[i] > len)
        lengths[k++] = m->lengths[i++];
    lengths[k++] = len;
    while (i < m->n_lengths)
        lengths[k++] = m->lengths[i++];
    pyllm_free(m->lengths);
    m->lengths = lengths;
    m->n_lengths++;
    return PYLLM_OK;
}

void pyllm_prefix_matcher_free(pyllm_prefix_matcher *m)
{
    pyllm_vocab_free(&m->strings);
    pyllm_free(m->lengths);
    memset(m, 0, sizeof *m);
}

size_t pyllm_prefix_matcher_match(const pyllm_prefix_matcher *m, const char *s, size_t len)
{
    for (size_t i = 0; i < m->n_lengths; i++) {
        size_t l = m->lengths[i];
        if (l <= len && pyllm_vocab_find(&m->strings, s, l) >= 0)
            return l;
    }
    return 0;
}
