#include "tokenizers/bpe_sentencepiece.h"

#include <string.h>

#include "core/alloc.h"
#include "tokenizers/sentencepiece_model.h"
#include "tokenizers/utf8.h"

typedef struct {
    int32_t start, len;  /* bytes of the text; len 0 once merged into its left neighbour */
    int32_t prev, next;  /* linked list of live symbols, -1 at the ends */
    int32_t frozen;      /* a user-defined symbol: never merged */
} symbol;

typedef struct {
    float score;
    int32_t left, right;
    int32_t size;        /* bytes of the merged piece: detects a pair made stale by other merges */
} candidate;

typedef struct {
    const pyllm_spm_bpe *m;
    const char *text;
    symbol *symbols;
    candidate *heap;
    size_t heap_len, heap_cap;
    int32_t *left_len_of_unused; /* unused piece id -> length of its left part (lazily allocated) */
    pyllm_ids *out;
    int prev_unknown;
    uint64_t steps;
} encoder;

/* Higher score first; on a tie the leftmost pair. */
static inline int before(const candidate *a, const candidate *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static pyllm_status heap_push(encoder *e, candidate c)
{
    if (e->heap_len == e->heap_cap) {
        size_t cap = e->heap_cap ? e->heap_cap * 2 : 64;
        candidate *heap = pyllm_alloc(pyllm_mul_size(cap, sizeof(candidate)));
        if (heap == NULL)
            return PYLLM_ERR_MEMORY;
        if (e->heap_len)
            memcpy(heap, e->heap, e->heap_len * sizeof(candidate));
        pyllm_free(e->heap);
        e->heap = heap;
        e->heap_cap = cap;
    }
    size_t i = e->heap_len++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&c, &e->heap[parent]))
            break;
        e->heap[i] = e->heap[parent];
        i = parent;
    }
    e->heap[i] = c;
    return PYLLM_OK;
}

static candidate heap_pop(encoder *e)
{
    candidate top = e->heap[0];
    candidate last = e->heap[--e->heap_len];
    size_t n = e->heap_len, i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && before(&e->heap[child + 1], &e->heap[child]))
            child++;
        if (!before(&e->heap[child], &last))
            break;
        e->heap[i] = e->heap[child];
        i = child;
    }
    if (n)
        e->heap[i] = last;
    return top;
}

/* The id of a piece as SentencePiece's PieceToId sees it: any piece of the model, else unk. */
static int32_t piece_id(const pyllm_spm_bpe *m, const char *s, size_t len)
{
    int32_t id = pyllm_vocab_find(m->vocab, s, len);
    return id >= 0 && id < m->n_pieces ? id : m->unk_id;
}

static pyllm_status consider_pair(encoder *e, int32_t left, int32_t right)
{
    if (left < 0 || right < 0 || e->symbols[left].frozen || e->symbols[right].frozen)
        return PYLLM_OK;
    const pyllm_spm_bpe *m = e->m;
    const symbol *l = &e->symbols[left];
    int32_t size = l->len + e->symbols[right].len;
    int32_t id = pyllm_vocab_find(m->vocab, e->text + l->start, (size_t)size);
    if (id < 0 || id >= m->n_pieces)
        return PYLLM_OK;
    int type = m->types[id];
    if (type != PYLLM_PIECE_NORMAL && type != PYLLM_PIECE_USER_DEFINED && type != PYLLM_PIECE_UNUSED)
        return PYLLM_OK;
    candidate c = {m->scores[id], left, right, size};
    e->steps++;
    PYLLM_TRY(heap_push(e, c));
    if (type == PYLLM_PIECE_UNUSED) {
        /* remember how to split it again at the end (the last registration wins, as upstream) */
        if (e->left_len_of_unused == NULL) {
            e->left_len_of_unused = pyllm_calloc((size_t)m->n_pieces, sizeof(int32_t));
            if (e->left_len_of_unused == NULL)
                return PYLLM_ERR_MEMORY;
        }
        e->left_len_of_unused[id] = l->len;
    }
    return PYLLM_OK;
}

static pyllm_status emit(encoder *e, int32_t start, int32_t len, int32_t id)
{
    const pyllm_spm_bpe *m = e->m;
    int unknown = id == m->unk_id;
    if (m->types[id] == PYLLM_PIECE_CONTROL) {
        PYLLM_TRY(pyllm_ids_push(e->out, id));
    } else if (unknown && m->byte_fallback) {
        for (int32_t i = 0; i < len; i++)
            PYLLM_TRY(pyllm_ids_push(e->out, m->byte_ids[(unsigned char)e->text[start + i]]));
    } else if (!(unknown && e->prev_unknown)) {
        /* a run of unknown pieces becomes a single <unk> */
        PYLLM_TRY(pyllm_ids_push(e->out, id));
    }
    e->prev_unknown = unknown;
    return PYLLM_OK;
}

/* Emit a final symbol, splitting unused pieces back into the pieces they were merged from. */
static pyllm_status resegment(encoder *e, int32_t start, int32_t len)
{
    int32_t id = piece_id(e->m, e->text + start, (size_t)len);
    if (id >= 0 && e->m->types[id] == PYLLM_PIECE_UNUSED && e->left_len_of_unused != NULL) {
        int32_t left_len = e->left_len_of_unused[id];
        if (left_len > 0 && left_len < len) {
            PYLLM_TRY(resegment(e, start, left_len));
            return resegment(e, start + left_len, len - left_len);
        }
    }
    return emit(e, start, len, id);
}

static const char SPACE_SYMBOL[] = "\xE2\x96\x81";

static int is_space_symbol(const encoder *e, const symbol *s)
{
    return !s->frozen && s->len == 3 && memcmp(e->text + s->start, SPACE_SYMBOL, 3) == 0;
}

int pyllm_spm_piece_allows_word_split(const char *piece, size_t len)
{
    size_t i = 0;
    while (i + 3 <= len && memcmp(piece + i, SPACE_SYMBOL, 3) == 0)
        i += 3;
    for (; i + 3 <= len; i++)
        if (memcmp(piece + i, SPACE_SYMBOL, 3) == 0)
            return 0;
    return 1;
}

/* Merge the symbols first..last (a linked run) to the end, then emit them. */
static pyllm_status merge_and_emit(encoder *e, int32_t first, int32_t last)
{
    e->symbols[first].prev = -1;
    e->symbols[last].next = -1;
    for (int32_t i = first + 1; i <= last; i++)
        PYLLM_TRY(consider_pair(e, i - 1, i));

    while (e->heap_len > 0) {
        candidate top = heap_pop(e);
        e->steps++;
        symbol *l = &e->symbols[top.left], *r = &e->symbols[top.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != top.size)
            continue; /* stale: one side changed since the pair was queued */
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0)
            e->symbols[r->next].prev = top.left;
        r->len = 0;
        PYLLM_TRY(consider_pair(e, l->prev, top.left));
        PYLLM_TRY(consider_pair(e, top.left, l->next));
    }

    for (int32_t i = first; i >= 0; i = e->symbols[i].next)
        PYLLM_TRY(resegment(e, e->symbols[i].start, e->symbols[i].len));
    return PYLLM_OK;
}

static pyllm_status run(encoder *e, size_t len)
{
    const pyllm_spm_bpe *m = e->m;
    const char *text = e->text;
    int matcher = m->user_defined != NULL && !pyllm_prefix_matcher_empty(m->user_defined);

    /* Split into characters, user-defined symbols whole. */
    int32_t n = 0;
    for (size_t pos = 0; pos < len;) {
        size_t l = matcher ? pyllm_prefix_matcher_match(m->user_defined, text + pos, len - pos, &e->steps) : 0;
        e->steps++;
        symbol *s = &e->symbols[n];
        s->frozen = l > 0;
        if (l == 0)
            l = pyllm_utf8_char_len(text + pos, len - pos);
        s->start = (int32_t)pos;
        s->len = (int32_t)l;
        s->prev = n - 1;
        s->next = n + 1;
        pos += l;
        n++;
    }
    if (!m->words_start_at_space)
        return merge_and_emit(e, 0, n - 1);
    int32_t first = 0;
    for (int32_t i = 1; i < n; i++) {
        if (is_space_symbol(e, &e->symbols[i]) && !is_space_symbol(e, &e->symbols[i - 1])) {
            PYLLM_TRY(merge_and_emit(e, first, i - 1));
            first = i;
        }
    }
    return merge_and_emit(e, first, n - 1);
}

pyllm_status pyllm_spm_bpe_encode(const pyllm_spm_bpe *m, const char *text, size_t len, pyllm_ids *out,
                                  uint64_t *steps)
{
    if (len == 0)
        return PYLLM_OK;
    if (len > (size_t)INT32_MAX / 2)
        return pyllm_error(PYLLM_ERR_VALUE, "text of %zu bytes is too long to encode at once", len);
    encoder e;
    memset(&e, 0, sizeof e);
    e.m = m;
    e.text = text;
    e.out = out;
    e.symbols = pyllm_alloc(pyllm_mul_size(len, sizeof(symbol)));
    if (e.symbols == NULL)
        return PYLLM_ERR_MEMORY;
    pyllm_status st = run(&e, len);
    *steps += e.steps;
    pyllm_free(e.symbols);
    pyllm_free(e.heap);
    pyllm_free(e.left_len_of_unused);
    return st;
}
