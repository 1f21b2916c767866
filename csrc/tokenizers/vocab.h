/* Token strings by id and the reverse map string -> id (open addressing, FNV-1a hash).
 * Shared by every tokenizer model: SentencePiece BPE now, byte-level BPE later. */
#ifndef PYLLM_TOKENIZERS_VOCAB_H
#define PYLLM_TOKENIZERS_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/buffers.h"

typedef struct {
    uint32_t tag;        /* high bits of the hash: most failed probes end here, without a memcmp */
    int32_t id;          /* -1 when empty */
} pyllm_vocab_slot;

typedef struct {
    pyllm_bytes text;    /* every token's bytes back to back, each followed by a NUL */
    size_t *starts;      /* token id -> offset of its bytes in text; starts[n] = end */
    int32_t n_tokens;
    int32_t cap_tokens;
    pyllm_vocab_slot *slots;
    size_t slot_mask;    /* number of slots - 1 (a power of two) */
} pyllm_vocab;

pyllm_status pyllm_vocab_init(pyllm_vocab *v, int32_t expected_tokens);
void pyllm_vocab_free(pyllm_vocab *v);

/* Give the string the next id. When it is already present nothing is added and
 * *existing_id is its id; otherwise *existing_id is -1. */
pyllm_status pyllm_vocab_add(pyllm_vocab *v, const char *s, size_t len, int32_t *existing_id);

/* The id of the string, or -1. */
int32_t pyllm_vocab_find(const pyllm_vocab *v, const char *s, size_t len);

/* The bytes of token id (0 <= id < n_tokens), NUL-terminated; *len gets their length. */
static inline const char *pyllm_vocab_token(const pyllm_vocab *v, int32_t id, size_t *len)
{
    *len = v->starts[id + 1] - v->starts[id] - 1;
    return v->text.data + v->starts[id];
}

#endif
