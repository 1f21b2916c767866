#include "tokenizers/bpe_ranked.h"

#include <string.h>

#include "core/alloc.h"

static const uint64_t EMPTY = UINT64_MAX;

static inline size_t hash_key(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key;
}

pyllm_status pyllm_bpe_merges_init(pyllm_bpe_merges *m, size_t expected)
{
    size_t cap = 16;
    while (cap < expected * 2 + 16)
        cap *= 2;
    m->slots = pyllm_alloc(pyllm_mul_size(cap, sizeof(pyllm_merge_slot)));
    if (m->slots == NULL)
        return PYLLM_ERR_MEMORY;
    for (size_t i = 0; i < cap; i++)
        m->slots[i].key = EMPTY;
    m->mask = cap - 1;
    m->n = 0;
    return PYLLM_OK;
}

void pyllm_bpe_merges_free(pyllm_bpe_merges *m)
{
    pyllm_free(m->slots);
    memset(m, 0, sizeof *m);
}

static pyllm_merge_slot *slot_of(const pyllm_bpe_merges *m, uint64_t key)
{
    for (size_t i = hash_key(key) & m->mask;; i = (i + 1) & m->mask)
        if (m->slots[i].key == key || m->slots[i].key == EMPTY)
            return &m->slots[i];
}

pyllm_status pyllm_bpe_merges_add(pyllm_bpe_merges *m, int32_t left, int32_t right, int32_t rank, int32_t merged)
{
    if ((m->n + 1) * 2 > m->mask + 1) {
        pyllm_bpe_merges bigger;
        PYLLM_TRY(pyllm_bpe_merges_init(&bigger, (m->mask + 1)));
        for (size_t i = 0; i <= m->mask; i++)
            if (m->slots[i].key != EMPTY) {
                *slot_of(&bigger, m->slots[i].key) = m->slots[i];
                bigger.n++;
            }
        pyllm_bpe_merges_free(m);
        *m = bigger;
    }
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    pyllm_merge_slot *s = slot_of(m, key);
    if (s->key == EMPTY)
        m->n++;
    s->key = key;
    s->rank = rank;
    s->merged = merged;
    return PYLLM_OK;
}

static inline const pyllm_merge_slot *find(const pyllm_bpe_merges *m, int32_t left, int32_t right)
{
    const pyllm_merge_slot *s = slot_of(m, (uint64_t)(uint32_t)left << 32 | (uint32_t)right);
    return s->key == EMPTY ? NULL : s;
}

typedef struct {
    int32_t rank;
    int32_t pos;          /* index of the left symbol */
    int32_t left, right;  /* the ids when the entry was made: stale entries are skipped */
} candidate;

static inline int before(const candidate *a, const candidate *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(candidate *h, size_t *n, candidate c)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&c, &h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = c;
}

static candidate heap_pop(candidate *h, size_t *n)
{
    candidate top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t kid = 2 * i + 1;
        if (kid >= *n)
            break;
        if (kid + 1 < *n && before(&h[kid + 1], &h[kid]))
            kid++;
        if (!before(&h[kid], &last))
            break;
        h[i] = h[kid];
        i = kid;
    }
    h[i] = last;
    return top;
}

#define SMALL_WORD 64

pyllm_status pyllm_bpe_ranked_encode(const pyllm_bpe_merges *m, int32_t *ids, size_t n, pyllm_ids *out,
                                     uint64_t *steps)
{
    *steps += n; /* the symbols and their first pair lookups */
    if (n == 0)
        return PYLLM_OK;
    if (n == 1)
        return pyllm_ids_push(out, ids[0]);
    /* Links between live symbols; each merge can add at most 2 candidates. */
    int32_t small_next[SMALL_WORD], small_prev[SMALL_WORD];
    candidate small_heap[3 * SMALL_WORD];
    int32_t *next = small_next, *prev = small_prev;
    candidate *heap = small_heap;
    void *big = NULL;
    if (n > SMALL_WORD) {
        big = pyllm_alloc(pyllm_mul_size(n, 2 * sizeof(int32_t) + 3 * sizeof(candidate)));
        if (big == NULL)
            return PYLLM_ERR_MEMORY;
        heap = big;
        next = (int32_t *)(heap + 3 * n);
        prev = next + n;
    }
    size_t n_heap = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
        if (i + 1 < n) {
            const pyllm_merge_slot *s = find(m, ids[i], ids[i + 1]);
            if (s != NULL)
                heap_push(heap, &n_heap, (candidate){s->rank, (int32_t)i, ids[i], ids[i + 1]});
        }
    }
    uint64_t pushed = n_heap;
    while (n_heap > 0) {
        candidate c = heap_pop(heap, &n_heap);
        pushed++; /* a pop */
        int32_t r = next[c.pos];
        /* a dead symbol has id -1; a changed pair no longer matches the entry */
        if (ids[c.pos] != c.left || r < 0 || ids[r] != c.right)
            continue;
        const pyllm_merge_slot *s = find(m, c.left, c.right);
        ids[c.pos] = s->merged;
        ids[r] = -1;
        next[c.pos] = next[r];
        if (next[r] >= 0)
            prev[next[r]] = c.pos;
        if (prev[c.pos] >= 0) {
            int32_t p = prev[c.pos];
            const pyllm_merge_slot *ps = find(m, ids[p], ids[c.pos]);
            if (ps != NULL) {
                heap_push(heap, &n_heap, (candidate){ps->rank, p, ids[p], ids[c.pos]});
                pushed++;
            }
        }
        if (next[c.pos] >= 0) {
            int32_t q = next[c.pos];
            const pyllm_merge_slot *qs = find(m, ids[c.pos], ids[q]);
            if (qs != NULL) {
                heap_push(heap, &n_heap, (candidate){qs->rank, c.pos, ids[c.pos], ids[q]});
                pushed++;
            }
        }
    }
    *steps += pushed;
    pyllm_status st = pyllm_ids_reserve(out, n);
    if (st == PYLLM_OK)
        for (int32_t i = 0; i >= 0; i = next[i])
            out->data[out->len++] = ids[i];
    pyllm_free(big);
    return st;
}
