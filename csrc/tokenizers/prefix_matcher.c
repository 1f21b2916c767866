#include "tokenizers/prefix_matcher.h"

#include <string.h>

#include "core/alloc.h"

pyllm_status pyllm_prefix_matcher_init(pyllm_prefix_matcher *m)
{
    memset(m, 0, sizeof *m);
    return pyllm_vocab_init(&m->strings, 16);
}

void pyllm_prefix_matcher_free(pyllm_prefix_matcher *m)
{
    pyllm_vocab_free(&m->strings);
    pyllm_free(m->edge_keys);
    pyllm_free(m->edge_child);
    pyllm_free(m->terminal);
    memset(m, 0, sizeof *m);
}

static inline size_t edge_hash(uint64_t key)
{
    key ^= key >> 29;
    key *= 0xbf58476d1ce4e5b9ULL;
    key ^= key >> 32;
    return (size_t)key;
}

/* The slot of an edge: where its key is, or the empty slot where it would go. */
static size_t edge_slot(const pyllm_prefix_matcher *m, uint64_t key)
{
    size_t i = edge_hash(key) & m->edge_mask;
    while (m->edge_keys[i] != 0 && m->edge_keys[i] != key)
        i = (i + 1) & m->edge_mask;
    return i;
}

static inline uint64_t edge_key(size_t node, unsigned char byte)
{
    return ((uint64_t)node << 8 | byte) + 1;
}

/* Room for one more node and its edge (the hash stays at most half full). */
static pyllm_status reserve_node(pyllm_prefix_matcher *m)
{
    if (m->n_nodes == m->cap_nodes) {
        size_t cap = m->cap_nodes ? m->cap_nodes * 2 : 64;
        uint8_t *terminal = pyllm_calloc(cap, 1);
        if (terminal == NULL)
            return PYLLM_ERR_MEMORY;
        if (m->n_nodes)
            memcpy(terminal, m->terminal, m->n_nodes);
        pyllm_free(m->terminal);
        m->terminal = terminal;
        m->cap_nodes = cap;
    }
    if (m->edge_keys != NULL && 2 * (m->n_nodes + 1) <= m->edge_mask + 1)
        return PYLLM_OK;
    size_t slots = m->edge_keys ? 2 * (m->edge_mask + 1) : 128;
    uint64_t *keys = pyllm_calloc(slots, sizeof(uint64_t));
    uint32_t *child = pyllm_alloc(pyllm_mul_size(slots, sizeof(uint32_t)));
    if (keys == NULL || child == NULL) {
        pyllm_free(keys);
        pyllm_free(child);
        return PYLLM_ERR_MEMORY;
    }
    pyllm_prefix_matcher grown = *m;
    grown.edge_keys = keys;
    grown.edge_child = child;
    grown.edge_mask = slots - 1;
    for (size_t i = 0; m->edge_keys != NULL && i <= m->edge_mask; i++) {
        if (m->edge_keys[i] == 0)
            continue;
        size_t j = edge_slot(&grown, m->edge_keys[i]);
        keys[j] = m->edge_keys[i];
        child[j] = m->edge_child[i];
    }
    pyllm_free(m->edge_keys);
    pyllm_free(m->edge_child);
    *m = grown;
    return PYLLM_OK;
}

pyllm_status pyllm_prefix_matcher_add(pyllm_prefix_matcher *m, const char *s, size_t len)
{
    int32_t existing;
    if (len == 0)
        return PYLLM_OK;
    PYLLM_TRY(pyllm_vocab_add(&m->strings, s, len, &existing));
    if (m->n_nodes == 0) { /* the root */
        PYLLM_TRY(reserve_node(m));
        m->terminal[0] = 0;
        m->n_nodes = 1;
    }
    size_t node = 0;
    for (size_t i = 0; i < len; i++) {
        if (m->n_nodes >= UINT32_MAX)
            return pyllm_error(PYLLM_ERR_VALUE, "too many bytes of special tokens");
        PYLLM_TRY(reserve_node(m));
        uint64_t key = edge_key(node, (unsigned char)s[i]);
        size_t slot = edge_slot(m, key);
        if (m->edge_keys[slot] == 0) {
            m->edge_keys[slot] = key;
            m->edge_child[slot] = (uint32_t)m->n_nodes;
            m->terminal[m->n_nodes++] = 0;
        }
        node = m->edge_child[slot];
    }
    m->terminal[node] = 1;
    return PYLLM_OK;
}

size_t pyllm_prefix_matcher_match(const pyllm_prefix_matcher *m, const char *s, size_t len, uint64_t *steps)
{
    if (m->n_nodes == 0)
        return 0;
    size_t node = 0, best = 0, i = 0;
    for (; i < len; i++) {
        size_t slot = edge_slot(m, edge_key(node, (unsigned char)s[i]));
        if (m->edge_keys[slot] == 0)
            break;
        node = m->edge_child[slot];
        if (m->terminal[node])
            best = i + 1;
    }
    *steps += i + 1;
    return best;
}
