#include "tokenizers/vocab.h"

#include <string.h>

#include "core/alloc.h"

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static pyllm_status alloc_slots(pyllm_vocab *v, size_t n_slots)
{
    pyllm_vocab_slot *slots = pyllm_alloc(pyllm_mul_size(n_slots, sizeof(pyllm_vocab_slot)));
    if (slots == NULL)
        return PYLLM_ERR_MEMORY;
    memset(slots, 0xFF, n_slots * sizeof(pyllm_vocab_slot)); /* ids all -1 */
    pyllm_free(v->slots);
    v->slots = slots;
    v->slot_mask = n_slots - 1;
    return PYLLM_OK;
}

static void insert_slot(pyllm_vocab *v, int32_t id)
{
    size_t len;
    const char *s = pyllm_vocab_token(v, id, &len);
    uint64_t h = hash_bytes(s, len);
    size_t i = h & v->slot_mask;
    while (v->slots[i].id >= 0)
        i = (i + 1) & v->slot_mask;
    v->slots[i].tag = (uint32_t)(h >> 32);
    v->slots[i].id = id;
}

pyllm_status pyllm_vocab_init(pyllm_vocab *v, int32_t expected_tokens)
{
    memset(v, 0, sizeof *v);
    if (expected_tokens < 16)
        expected_tokens = 16;
    v->cap_tokens = expected_tokens;
    v->starts = pyllm_alloc(pyllm_mul_size((size_t)expected_tokens + 1, sizeof(size_t)));
    if (v->starts == NULL)
        return PYLLM_ERR_MEMORY;
    v->starts[0] = 0;
    size_t n_slots = 64;
    while (n_slots < (size_t)expected_tokens * 2)
        n_slots *= 2;
    return alloc_slots(v, n_slots);
}

void pyllm_vocab_free(pyllm_vocab *v)
{
    pyllm_bytes_free(&v->text);
    pyllm_free(v->starts);
    pyllm_free(v->slots);
    memset(v, 0, sizeof *v);
}

int32_t pyllm_vocab_find(const pyllm_vocab *v, const char *s, size_t len)
{
    uint64_t h = hash_bytes(s, len);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = h & v->slot_mask;
    for (;;) {
        const pyllm_vocab_slot *slot = &v->slots[i];
        if (slot->id < 0)
            return -1;
        if (slot->tag == tag) {
            size_t tlen;
            const char *t = pyllm_vocab_token(v, slot->id, &tlen);
            if (tlen == len && memcmp(t, s, len) == 0)
                return slot->id;
        }
        i = (i + 1) & v->slot_mask;
    }
}

pyllm_status pyllm_vocab_add(pyllm_vocab *v, const char *s, size_t len, int32_t *existing_id)
{
    *existing_id = pyllm_vocab_find(v, s, len);
    if (*existing_id >= 0)
        return PYLLM_OK;
    if (v->n_tokens == INT32_MAX - 1)
        return pyllm_error(PYLLM_ERR_VALUE, "too many tokens");
    if (v->n_tokens == v->cap_tokens) {
        int32_t cap = v->cap_tokens > INT32_MAX / 2 - 1 ? INT32_MAX - 1 : v->cap_tokens * 2;
        size_t *starts = pyllm_alloc(pyllm_mul_size((size_t)cap + 1, sizeof(size_t)));
        if (starts == NULL)
            return PYLLM_ERR_MEMORY;
        memcpy(starts, v->starts, ((size_t)v->n_tokens + 1) * sizeof(size_t));
        pyllm_free(v->starts);
        v->starts = starts;
        v->cap_tokens = cap;
    }
    if ((size_t)(v->n_tokens + 1) * 2 > v->slot_mask + 1) {
        PYLLM_TRY(alloc_slots(v, (v->slot_mask + 1) * 2));
        for (int32_t id = 0; id < v->n_tokens; id++)
            insert_slot(v, id);
    }
    PYLLM_TRY(pyllm_bytes_append(&v->text, s, len));
    PYLLM_TRY(pyllm_bytes_append(&v->text, "", 1));
    int32_t id = v->n_tokens++;
    v->starts[id + 1] = v->text.len;
    insert_slot(v, id);
    return PYLLM_OK;
}
