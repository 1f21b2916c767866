/* The merges-BPE tokenizer (tokenizer.json's BPE, and GGUF "gpt2" vocabularies) built from the
 * input through the calls pyllm/tokenizer_json.py makes: a vocabulary (optionally GPT-2's 256
 * byte characters and <0xXX> byte tokens, then fuzzed tokens), merges of fuzzed token pairs (their
 * concatenation added to the vocabulary first, as a real file has it), a pipeline of normalizer,
 * pre-tokenizer and decoder steps with fuzzed strings and options in the ranges tokenizer_json.py
 * gives, and added tokens with their lstrip/rstrip/single_word flags. The rest of the input is
 * the text to encode (with the encode flags the first byte's top bits pick) and the ids to decode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizers/byte_level.h"
#include "tokenizers/tokenizer.h"
#include "tokenizers/utf8.h"
#include "tokenizers/vocab.h"

#include "fuzz_input.h"
#include "fuzz_tokenizer_checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_TOKEN = 12, MAX_EXTRA = 48, MAX_MERGES = 64, MAX_STEPS = 8, MAX_ADDED = 4 };

/* The vocabulary under construction: a set, so that every string gets one id. */
static int add_unique(pyllm_vocab *v, const char *s, size_t len)
{
    int32_t existing;
    return pyllm_vocab_add(v, s, len, &existing) == PYLLM_OK;
}

static int add_step(pyllm_merges_tokenizer *m, fuzz_input *in)
{
    int which = take_u8(in) % 3;
    uint8_t opts = take_u8(in);
    size_t len1, len2;
    const char *s1 = take_str(in, 8, &len1);
    const char *s2 = take_str(in, 8, &len2);
    int kind, a = 0, b = 0, is_regex = 0;
    if (which == PYLLM_HF_DECODER) {
        kind = opts % 6;
        if (kind == PYLLM_DECODE_STRIP) { /* start / stop counts: small, or anything an int holds */
            a = (opts & 0x40) ? (int)(take_u32(in) & 0x7fffffff) : take_u8(in) % 8;
            b = take_u8(in) % 8;
        } else if (kind == PYLLM_DECODE_METASPACE) {
            a = take_u8(in) % 3;
        }
    } else if (which == PYLLM_HF_NORMALIZER) {
        kind = (opts & 1) ? PYLLM_STEP_REPLACE : PYLLM_STEP_PREPEND;
    } else {
        kind = 2 + opts % 4; /* Split, ByteLevel, Digits, Metaspace */
        uint8_t o = take_u8(in);
        if (kind == PYLLM_STEP_SPLIT) {
            is_regex = o & 1;
            a = (o >> 1) % 5;
            b = (o >> 4) & 1;
        } else if (kind == PYLLM_STEP_METASPACE) {
            a = o % 3;
            b = (o >> 2) & 1;
        } else {
            a = o & 1;
            b = (o >> 1) & 1;
        }
    }
    if (pyllm_merges_add_step(m, which, kind, s1, len1, s2, len2, is_regex, a, b) != PYLLM_OK) {
        fuzz_expect_message();
        return 0;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint8_t flags = take_u8(&in);
    pyllm_vocab v;
    if (pyllm_vocab_init(&v, 64) != PYLLM_OK)
        abort();
    if (flags & 1)
        for (int byte = 0; byte < 256; byte++) {
            char buf[4];
            add_unique(&v, buf, pyllm_utf8_encode(pyllm_byte_level_char((uint8_t)byte), buf));
        }
    if (flags & 2)
        for (int byte = 0; byte < 256; byte++) {
            static const char hex[] = "0123456789ABCDEF";
            char piece[6] = {'<', '0', 'x', hex[byte >> 4], hex[byte & 15], '>'};
            add_unique(&v, piece, 6);
        }
    if (flags & 4)
        add_unique(&v, "<unk>", 5);
    size_t n_extra = take_u8(&in) % (MAX_EXTRA + 1);
    for (size_t i = 0; i < n_extra; i++) {
        size_t len;
        const char *s = take_str(&in, MAX_TOKEN, &len);
        add_unique(&v, s, len);
    }
    /* merges as (left id, right id); the merged string joins the vocabulary */
    int32_t merges[MAX_MERGES][2];
    size_t want_merges = v.n_tokens > 0 ? take_u8(&in) % (MAX_MERGES + 1) : 0, n_merges = want_merges;
    for (size_t i = 0; i < want_merges; i++) {
        uint32_t pick = take_u32(&in);
        int32_t l = (int32_t)(pick % (uint32_t)v.n_tokens), r = (int32_t)((pick >> 16) % (uint32_t)v.n_tokens);
        size_t ll, rl;
        const char *ls = pyllm_vocab_token(&v, l, &ll), *rs = pyllm_vocab_token(&v, r, &rl);
        char joined[2 * 64];
        if (ll + rl > sizeof joined) {
            n_merges = i;
            break;
        }
        memcpy(joined, ls, ll);
        memcpy(joined + ll, rs, rl);
        add_unique(&v, joined, ll + rl);
        merges[i][0] = l;
        merges[i][1] = r;
    }

    pyllm_tokenizer *tok = pyllm_tokenizer_new(PYLLM_TOKENIZER_MERGES);
    if (tok == NULL)
        abort();
    pyllm_merges_tokenizer *m = &tok->as.merges;
    int ok = pyllm_merges_tokenizer_init(m, v.n_tokens, n_merges) == PYLLM_OK;
    for (int32_t id = 0; ok && id < v.n_tokens; id++) {
        size_t len;
        const char *s = pyllm_vocab_token(&v, id, &len);
        ok = pyllm_merges_add_vocab(m, s, len) == PYLLM_OK;
    }
    if (!ok)
        fuzz_expect_message(); /* a token may be refused (the empty one), with a reason */
    for (size_t i = 0; ok && i < n_merges; i++) {
        size_t ll, rl;
        const char *ls = pyllm_vocab_token(&v, merges[i][0], &ll), *rs = pyllm_vocab_token(&v, merges[i][1], &rl);
        if (pyllm_merges_add_merge(m, ls, ll, rs, rl) != PYLLM_OK)
            abort(); /* both parts and their concatenation are in the vocabulary: it must load */
    }
    size_t n_steps = take_u8(&in) % (MAX_STEPS + 1);
    for (size_t i = 0; ok && i < n_steps; i++)
        ok = add_step(m, &in);
    int32_t unk_id = (flags & 4) ? pyllm_vocab_find(&v, "<unk>", 5) : -1;
    if (ok && pyllm_merges_finish(m, unk_id, (flags >> 1) & 1, (flags >> 3) & 1, (flags >> 4) & 1) != PYLLM_OK)
        abort();
    size_t n_added = ok ? take_u8(&in) % (MAX_ADDED + 1) : 0;
    for (size_t i = 0; ok && i < n_added; i++) {
        uint8_t o = take_u8(&in);
        size_t len;
        const char *s = take_str(&in, MAX_TOKEN, &len);
        int32_t id = pyllm_vocab_find(&v, s, len);
        if (id < 0)
            id = m->table.vocab.n_tokens;
        if (pyllm_merges_add_token(m, s, len, id, o & 1) != PYLLM_OK ||
            pyllm_merges_set_added_flags(m, id, (o >> 1) & 7) != PYLLM_OK)
            fuzz_expect_message();
    }
    if (ok) {
        size_t len;
        const char *text = take_rest(&in, &len);
        fuzz_encode_decode_with(tok, text, len, FUZZ_ENCODE_FLAGS[(flags >> 5) % 3]);
        fuzz_decode_bytes_as_ids(tok, (const unsigned char *)text, len);
    }
    pyllm_tokenizer_free(tok);
    pyllm_vocab_free(&v);
    return 0;
}
