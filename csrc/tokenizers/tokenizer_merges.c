#include "tokenizers/tokenizer_merges.h"

#include <string.h>

#include "core/alloc.h"
#include "tokenizers/byte_level.h"
#include "tokenizers/sentencepiece_model.h"
#include "tokenizers/unicode.h"
#include "tokenizers/utf8.h"

void pyllm_merges_tokenizer_free(pyllm_merges_tokenizer *t)
{
    for (int w = 0; w < 3; w++) {
        for (size_t i = 0; i < t->n_steps[w]; i++)
            pyllm_step_free(&t->steps[w][i]);
        pyllm_free(t->steps[w]);
    }
    pyllm_bpe_merges_free(&t->merges);
    pyllm_free(t->added_flags);
    pyllm_token_table_free(&t->table);
    memset(t, 0, sizeof *t);
}

pyllm_status pyllm_merges_tokenizer_init(pyllm_merges_tokenizer *t, int32_t n_tokens, size_t n_merges)
{
    if (n_tokens < 0)
        return pyllm_error(PYLLM_ERR_VALUE, "vocabulary size must not be negative, got %d", n_tokens);
    PYLLM_TRY(pyllm_token_table_init(&t->table, n_tokens));
    return pyllm_bpe_merges_init(&t->merges, n_merges);
}

pyllm_status pyllm_merges_add_vocab(pyllm_merges_tokenizer *t, const char *s, size_t len)
{
    return pyllm_token_table_append(&t->table, s, len, PYLLM_PIECE_NORMAL);
}

pyllm_status pyllm_merges_add_merge(pyllm_merges_tokenizer *t, const char *a, size_t alen, const char *b,
                                    size_t blen)
{
    int32_t left = pyllm_vocab_find(&t->table.vocab, a, alen), right = pyllm_vocab_find(&t->table.vocab, b, blen);
    if (left < 0 || right < 0)
        return pyllm_error(PYLLM_ERR_VALUE, "merge %zu ('%.*s' '%.*s') names token '%.*s', which is not in the vocabulary",
                           t->n_merges_read, (int)alen, a, (int)blen, b, left < 0 ? (int)alen : (int)blen,
                           left < 0 ? a : b);
    char small[256];
    char *joined = alen + blen <= sizeof small ? small : pyllm_alloc(alen + blen);
    if (joined == NULL)
        return PYLLM_ERR_MEMORY;
    memcpy(joined, a, alen);
    memcpy(joined + alen, b, blen);
    int32_t merged = pyllm_vocab_find(&t->table.vocab, joined, alen + blen);
    pyllm_status st = PYLLM_OK;
    if (merged < 0)
        st = pyllm_error(PYLLM_ERR_VALUE, "merge %zu ('%.*s' '%.*s') makes '%.*s', which is not in the vocabulary",
                         t->n_merges_read, (int)alen, a, (int)blen, b, (int)(alen + blen), joined);
    if (joined != small)
        pyllm_free(joined);
    PYLLM_TRY(st);
    /* the rank is the position in the merges list; a repeated pair takes its later rank */
    if (t->n_merges_read >= INT32_MAX)
        return pyllm_error(PYLLM_ERR_VALUE, "too many merges");
    return pyllm_bpe_merges_add(&t->merges, left, right, (int32_t)t->n_merges_read++, merged);
}

pyllm_status pyllm_merges_add_step(pyllm_merges_tokenizer *t, int which, int kind, const char *s1, size_t len1,
                                   const char *s2, size_t len2, int is_regex, int a, int b)
{
    if (which < 0 || which > 2)
        return pyllm_error(PYLLM_ERR_VALUE, "unknown pipeline stage %d", which);
    if (t->n_steps[which] == t->cap_steps[which]) {
        size_t cap = t->cap_steps[which] ? t->cap_steps[which] * 2 : 4;
        pyllm_step *grown = pyllm_calloc(cap, sizeof(pyllm_step));
        if (grown == NULL)
            return PYLLM_ERR_MEMORY;
        if (t->n_steps[which])
            memcpy(grown, t->steps[which], t->n_steps[which] * sizeof(pyllm_step));
        pyllm_free(t->steps[which]);
        t->steps[which] = grown;
        t->cap_steps[which] = cap;
    }
    pyllm_step *s = &t->steps[which][t->n_steps[which]];
    int regex_step = which != PYLLM_HF_DECODER && (kind == PYLLM_STEP_SPLIT || kind == PYLLM_STEP_BYTE_LEVEL);
    if (which == PYLLM_HF_DECODER ? kind < 0 || kind > PYLLM_DECODE_METASPACE : kind < 0 || kind > PYLLM_STEP_METASPACE)
        return pyllm_error(PYLLM_ERR_VALUE, "unknown pipeline step kind %d", kind);
    pyllm_status st = which == PYLLM_HF_DECODER
                          ? pyllm_decode_step_init(s, (pyllm_decode_kind)kind, s1 ? s1 : "", len1, s2 ? s2 : "", len2,
                                                   a, b)
                          : pyllm_step_init(s, (pyllm_step_kind)kind, s1 ? s1 : "", len1, s2 ? s2 : "", len2,
                                            regex_step && is_regex, a, b);
    if (st != PYLLM_OK) {
        pyllm_step_free(s);
        return st;
    }
    if (which == PYLLM_HF_PRE_TOKENIZER && kind == PYLLM_STEP_BYTE_LEVEL)
        t->byte_level = 1;
    t->n_steps[which]++;
    return PYLLM_OK;
}

pyllm_status pyllm_merges_finish(pyllm_merges_tokenizer *t, int32_t unk_id, int byte_fallback, int fuse_unk,
                                 int ignore_merges)
{
    pyllm_token_table *tab = &t->table;
    if (unk_id >= tab->vocab.n_tokens)
        return pyllm_error(PYLLM_ERR_VALUE, "unk id %d is outside the vocabulary of %d", unk_id, tab->vocab.n_tokens);
    tab->unk_id = unk_id;
    tab->byte_fallback = byte_fallback;
    t->fuse_unk = fuse_unk;
    t->ignore_merges = ignore_merges;
    for (int b = 0; b < 256; b++) {
        char buf[8];
        size_t n = pyllm_utf8_encode(pyllm_byte_level_char((uint8_t)b), buf);
        t->byte_char_ids[b] = pyllm_vocab_find(&tab->vocab, buf, n);
        static const char hex[] = "0123456789ABCDEF";
        char piece[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        t->byte_token_ids[b] = byte_fallback ? pyllm_vocab_find(&tab->vocab, piece, 6) : -1;
        if (t->byte_token_ids[b] >= 0)
            tab->types[t->byte_token_ids[b]] = PYLLM_PIECE_BYTE;
    }
    return PYLLM_OK;
}

pyllm_status pyllm_merges_add_token(pyllm_merges_tokenizer *t, const char *text, size_t len, int32_t id,
                                    int special)
{
    int existed;
    PYLLM_TRY(pyllm_token_table_add_token(&t->table, text, len, id, special, &existed));
    if (existed && special) /* a special added token is skipped by decode */
        t->table.types[id] = PYLLM_PIECE_CONTROL;
    return PYLLM_OK;
}

pyllm_status pyllm_merges_set_added_flags(pyllm_merges_tokenizer *t, int32_t id, int flags)
{
    if (id < 0 || id >= t->table.vocab.n_tokens)
        return pyllm_error(PYLLM_ERR_INDEX, "added token id %d is out of range", id);
    if (id >= t->cap_flags) {
        int32_t cap = t->table.vocab.n_tokens + 64;
        uint8_t *grown = pyllm_calloc((size_t)cap, 1);
        if (grown == NULL)
            return PYLLM_ERR_MEMORY;
        if (t->cap_flags)
            memcpy(grown, t->added_flags, (size_t)t->cap_flags);
        pyllm_free(t->added_flags);
        t->added_flags = grown;
        t->cap_flags = cap;
    }
    t->added_flags[id] = (uint8_t)flags;
    return PYLLM_OK;
}

/* The model on one pre-token: initial symbols (bytes or characters), then rank-ordered merges. */
static pyllm_status encode_word(const pyllm_merges_tokenizer *t, const char *w, size_t len, pyllm_ids *symbols,
                                pyllm_bytes *scratch, pyllm_ids *out, pyllm_tok_work *work)
{
    const int32_t unk_id = t->table.unk_id;
    const int byte_fallback = t->table.byte_fallback;
    if (len == 0)
        return PYLLM_OK;
    if (t->ignore_merges) {
        const char *key = w;
        size_t key_len = len;
        if (t->byte_level) {
            scratch->len = 0;
            for (size_t i = 0; i < len; i++) {
                char buf[4];
                size_t n = pyllm_utf8_encode(pyllm_byte_level_char((uint8_t)w[i]), buf);
                PYLLM_TRY(pyllm_bytes_append(scratch, buf, n));
            }
            key = scratch->data;
            key_len = scratch->len;
        }
        int32_t whole = pyllm_vocab_find(&t->table.vocab, key, key_len);
        if (whole >= 0)
            return pyllm_ids_push(out, whole);
    }
    symbols->len = 0;
    int unk_open = 0;
    for (size_t i = 0; i < len;) {
        size_t k;
        int32_t id;
        if (t->byte_level) {
            k = 1;
            id = t->byte_char_ids[(uint8_t)w[i]];
        } else {
            uint32_t cp;
            k = pyllm_utf8_decode_lossy(w + i, len - i, &cp);
            id = pyllm_vocab_find(&t->table.vocab, w + i, k);
        }
        if (id >= 0) {
            PYLLM_TRY(pyllm_ids_push(symbols, id));
            unk_open = 0;
        } else if (byte_fallback && !t->byte_level) {
            int all = 1;
            for (size_t j = 0; j < k; j++)
                all &= t->byte_token_ids[(uint8_t)w[i + j]] >= 0;
            if (all) {
                for (size_t j = 0; j < k; j++)
                    PYLLM_TRY(pyllm_ids_push(symbols, t->byte_token_ids[(uint8_t)w[i + j]]));
                unk_open = 0;
            } else if (unk_id >= 0 && !(t->fuse_unk && unk_open)) {
                PYLLM_TRY(pyllm_ids_push(symbols, unk_id));
                unk_open = 1;
            }
        } else if (unk_id >= 0) {
            if (!(t->fuse_unk && unk_open))
                PYLLM_TRY(pyllm_ids_push(symbols, unk_id));
            unk_open = 1;
        }
        i += k;
    }
    return pyllm_bpe_ranked_encode(&t->merges, symbols->data, symbols->len, out, &work->bpe_steps);
}

pyllm_status pyllm_merges_pre_tokenize(const pyllm_merges_tokenizer *t, const char *text, size_t len,
                                       pyllm_pieces *out)
{
    PYLLM_TRY(pyllm_pieces_push(out, text, len, 1));
    PYLLM_TRY(pyllm_steps_run(t->steps[PYLLM_HF_NORMALIZER], t->n_steps[PYLLM_HF_NORMALIZER], out));
    return pyllm_steps_run(t->steps[PYLLM_HF_PRE_TOKENIZER], t->n_steps[PYLLM_HF_PRE_TOKENIZER], out);
}

/* Normalize, pre-tokenize and encode a stretch of text without added tokens. */
static pyllm_status encode_segment(const pyllm_merges_tokenizer *t, const char *text, size_t len,
                                   int at_text_start, pyllm_ids *symbols, pyllm_bytes *scratch, pyllm_ids *out,
                                   pyllm_tok_work *work)
{
    if (len == 0)
        return PYLLM_OK;
    pyllm_pieces pieces = {0};
    pyllm_status st = pyllm_pieces_push(&pieces, text, len, at_text_start);
    if (st == PYLLM_OK)
        st = pyllm_steps_run_counted(t->steps[PYLLM_HF_NORMALIZER], t->n_steps[PYLLM_HF_NORMALIZER], &pieces, work);
    if (st == PYLLM_OK)
        st = pyllm_steps_run_counted(t->steps[PYLLM_HF_PRE_TOKENIZER], t->n_steps[PYLLM_HF_PRE_TOKENIZER], &pieces,
                                     work);
    if (st == PYLLM_OK)
        work->pieces += pieces.n;
    for (size_t i = 0; i < pieces.n && st == PYLLM_OK; i++)
        st = encode_word(t, pieces.text.data + pieces.start[i], pieces.end[i] - pieces.start[i], symbols, scratch,
                         out, work);
    pyllm_pieces_free(&pieces);
    return st;
}

/* single_word: tokenizers tests \b with Rust's regex crate, so "word" means its \w. */
static int word_char_before(const char *text, size_t pos)
{
    if (pos == 0)
        return 0;
    size_t p = pos - 1;
    while (p > 0 && ((unsigned char)text[p] & 0xC0) == 0x80)
        p--;
    uint32_t cp;
    pyllm_utf8_decode_lossy(text + p, pos - p, &cp);
    return pyllm_unicode_is_word(cp);
}

static int word_char_at(const char *text, size_t len, size_t pos)
{
    if (pos >= len)
        return 0;
    uint32_t cp;
    pyllm_utf8_decode_lossy(text + pos, len - pos, &cp);
    return pyllm_unicode_is_word(cp);
}

pyllm_status pyllm_merges_encode(const pyllm_merges_tokenizer *t, const char *text, size_t len, int flags,
                                 pyllm_ids *out)
{
    pyllm_tok_work work = {0};
    return pyllm_merges_encode_counted(t, text, len, flags, out, &work);
}

pyllm_status pyllm_merges_encode_counted(const pyllm_merges_tokenizer *t, const char *text, size_t len, int flags,
                                         pyllm_ids *out, pyllm_tok_work *work)
{
    pyllm_ids symbols = {0};
    pyllm_bytes scratch = {0};
    pyllm_status st = PYLLM_OK;
    size_t cursor = 0, search = 0;
    size_t start, match_len;
    int32_t id;
    while (st == PYLLM_OK && (flags & PYLLM_ENCODE_SPLIT_SPECIALS) && search < len &&
           pyllm_special_tokens_find(&t->table.specials, text + search, len - search, &start, &match_len, &id,
                                     &work->special_steps)) {
        size_t ms = search + start, me = ms + match_len;
        int f = id < t->cap_flags ? t->added_flags[id] : 0;
        if ((f & PYLLM_ADDED_SINGLE_WORD) && (word_char_before(text, ms) || word_char_at(text, len, me))) {
            search = me; /* not a whole word: this occurrence stays text */
            continue;
        }
        if (f & PYLLM_ADDED_LSTRIP) {
            while (ms > cursor) {
                size_t p = ms - 1;
                while (p > cursor && ((unsigned char)text[p] & 0xC0) == 0x80)
                    p--;
                uint32_t cp;
                pyllm_utf8_decode_lossy(text + p, ms - p, &cp);
                if (!pyllm_unicode_rust_white_space(cp))
                    break;
                ms = p;
            }
        }
        if (f & PYLLM_ADDED_RSTRIP) {
            while (me < len) {
                uint32_t cp;
                size_t k = pyllm_utf8_decode_lossy(text + me, len - me, &cp);
                if (!pyllm_unicode_rust_white_space(cp))
                    break;
                me += k;
            }
        }
        st = encode_segment(t, text + cursor, ms - cursor, cursor == 0, &symbols, &scratch, out, work);
        if (st == PYLLM_OK)
            st = pyllm_ids_push(out, id);
        cursor = search = me;
    }
    if (st == PYLLM_OK)
        st = encode_segment(t, text + cursor, len - cursor, cursor == 0, &symbols, &scratch, out, work);
    pyllm_ids_free(&symbols);
    pyllm_bytes_free(&scratch);
    return st;
}

pyllm_status pyllm_merges_decode(const pyllm_merges_tokenizer *t, const int32_t *ids, size_t n, int skip_specials,
                                 pyllm_bytes *out)
{
    pyllm_pieces tokens = {0};
    pyllm_status st = PYLLM_OK;
    for (size_t i = 0; i < n && st == PYLLM_OK; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->table.vocab.n_tokens) {
            st = pyllm_error(PYLLM_ERR_INDEX, "token id %d at position %zu is out of range [0, %d)", id, i,
                             t->table.vocab.n_tokens);
            break;
        }
        if (skip_specials && t->table.types[id] == PYLLM_PIECE_CONTROL)
            continue;
        size_t len;
        const char *s = pyllm_vocab_token(&t->table.vocab, id, &len);
        if (t->n_steps[PYLLM_HF_DECODER] == 0 && tokens.n > 0) /* no decoder: tokens joined by spaces */
            st = pyllm_bytes_append(&tokens.text, " ", 1);
        if (st == PYLLM_OK)
            st = pyllm_pieces_push(&tokens, s, len, 0);
    }
    if (st == PYLLM_OK)
        st = pyllm_decoders_run(t->steps[PYLLM_HF_DECODER], t->n_steps[PYLLM_HF_DECODER], &tokens, out);
    pyllm_pieces_free(&tokens);
    return st;
}
