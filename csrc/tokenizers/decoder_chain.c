#include "tokenizers/decoder_chain.h"

#include <string.h>

#include "tokenizers/byte_level.h"
#include "tokenizers/unicode.h"
#include "tokenizers/utf8.h"

pyllm_status pyllm_decode_step_init(pyllm_decode_step *s, pyllm_decode_kind kind, const char *s1, size_t len1,
                                    const char *s2, size_t len2, int a, int b)
{
    memset(s, 0, sizeof *s);
    if ((kind == PYLLM_DECODE_STRIP || kind == PYLLM_DECODE_METASPACE) && len1 == 0)
        return pyllm_error(PYLLM_ERR_VALUE, "decoder %s: %s must not be empty",
                           kind == PYLLM_DECODE_STRIP ? "Strip" : "Metaspace",
                           kind == PYLLM_DECODE_STRIP ? "content" : "replacement");
    if (kind == PYLLM_DECODE_STRIP && (a < 0 || b < 0))
        return pyllm_error(PYLLM_ERR_VALUE, "decoder Strip: start and stop must not be negative, got %d and %d", a,
                           b);
    /* keep the strings as a Prepend step does, then take the decoding kind */
    PYLLM_TRY(pyllm_step_init(s, PYLLM_STEP_PREPEND, s1, len1, s2, len2, 0, a, b));
    if (kind == PYLLM_DECODE_REPLACE)
        PYLLM_TRY(pyllm_literal_init(&s->lit, s1, len1));
    s->kind = (pyllm_step_kind)kind;
    return PYLLM_OK;
}

/* "<0xAB>" -> 0xAB as tokenizers' ByteFallback reads it; -1 otherwise. */
static int byte_token(const char *s, size_t len)
{
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static int valid_utf8(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = pyllm_utf8_decode(s + i, len - i, &cp);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

static pyllm_status flush_fallback(pyllm_bytes *pending, size_t n_pending, pyllm_pieces *out)
{
    if (n_pending == 0)
        return PYLLM_OK;
    if (valid_utf8(pending->data, pending->len)) {
        PYLLM_TRY(pyllm_pieces_push(out, pending->data, pending->len, 0));
    } else {
        for (size_t i = 0; i < n_pending; i++)
            PYLLM_TRY(pyllm_pieces_push(out, "\xEF\xBF\xBD", 3, 0));
    }
    pending->len = 0;
    return PYLLM_OK;
}

static pyllm_status run_decoder(const pyllm_decode_step *s, const pyllm_pieces *in, pyllm_pieces *out)
{
    switch ((pyllm_decode_kind)s->kind) {
    case PYLLM_DECODE_BYTE_LEVEL:
    case PYLLM_DECODE_FUSE: {
        /* both join everything into one token; ByteLevel maps characters back to bytes */
        pyllm_bytes joined = {0};
        pyllm_status st = pyllm_bytes_append(&joined, "", 0);
        for (size_t i = 0; i < in->n && st == PYLLM_OK; i++) {
            const char *t = in->text.data + in->start[i];
            size_t len = in->end[i] - in->start[i];
            if ((int)s->kind == PYLLM_DECODE_FUSE) {
                st = pyllm_bytes_append(&joined, t, len);
                continue;
            }
            for (size_t k = 0; k < len && st == PYLLM_OK;) {
                uint32_t cp;
                size_t n = pyllm_utf8_decode_lossy(t + k, len - k, &cp);
                int b = pyllm_byte_level_byte(cp);
                if (b >= 0) {
                    char c = (char)b;
                    st = pyllm_bytes_append(&joined, &c, 1);
                } else {
                    st = pyllm_bytes_append(&joined, t + k, n);
                }
                k += n;
            }
        }
        if (st == PYLLM_OK)
            st = pyllm_pieces_push(out, joined.data, joined.len, 0);
        pyllm_bytes_free(&joined);
        return st;
    }
    case PYLLM_DECODE_BYTE_FALLBACK: {
        pyllm_bytes pending = {0};
        size_t n_pending = 0;
        pyllm_status st = PYLLM_OK;
        for (size_t i = 0; i < in->n && st == PYLLM_OK; i++) {
            const char *t = in->text.data + in->start[i];
            size_t len = in->end[i] - in->start[i];
            int b = byte_token(t, len);
            if (b >= 0) {
                char c = (char)b;
                st = pyllm_bytes_append(&pending, &c, 1);
                n_pending++;
                continue;
            }
            st = flush_fallback(&pending, n_pending, out);
            n_pending = 0;
            if (st == PYLLM_OK)
                st = pyllm_pieces_push(out, t, len, 0);
        }
        if (st == PYLLM_OK)
            st = flush_fallback(&pending, n_pending, out);
        pyllm_bytes_free(&pending);
        return st;
    }
    default:
        break;
    }
    for (size_t i = 0; i < in->n; i++) {
        const char *t = in->text.data + in->start[i];
        size_t len = in->end[i] - in->start[i];
        size_t from = out->text.len;
        PYLLM_TRY(pyllm_bytes_append(&out->text, "", 0));
        if ((int)s->kind == PYLLM_DECODE_REPLACE) {
            uint64_t steps = 0;
            PYLLM_TRY(pyllm_literal_replace(&s->lit, t, len, s->s2, s->len2, &out->text, &steps));
        } else if ((int)s->kind == PYLLM_DECODE_STRIP) { /* content is not empty: each turn consumes */
            size_t a = 0, b = len;
            for (int k = 0; k < s->a && b - a >= s->len1 && memcmp(t + a, s->s1, s->len1) == 0; k++)
                a += s->len1;
            for (int k = 0; k < s->b && b - a >= s->len1 && memcmp(t + b - s->len1, s->s1, s->len1) == 0; k++)
                b -= s->len1;
            PYLLM_TRY(pyllm_bytes_append(&out->text, t + a, b - a));
        } else { /* METASPACE: the first token loses every replacement character, others get spaces */
            int drop = i == 0 && s->a != PYLLM_PREPEND_NEVER;
            PYLLM_TRY(pyllm_bytes_append_replaced(&out->text, t, len, s->s1, s->len1, " ", drop ? 0 : 1));
        }
        PYLLM_TRY(pyllm_pieces_push(out, "", 0, 0));
        out->start[out->n - 1] = from;
    }
    return PYLLM_OK;
}

pyllm_status pyllm_decoders_run(const pyllm_decode_step *steps, size_t n_steps, pyllm_pieces *tokens,
                                pyllm_bytes *out)
{
    for (size_t k = 0; k < n_steps; k++) {
        pyllm_pieces next = {0};
        pyllm_status st = run_decoder(&steps[k], tokens, &next);
        pyllm_pieces_free(tokens);
        *tokens = next;
        PYLLM_TRY(st);
    }
    out->len = 0;
    PYLLM_TRY(pyllm_bytes_append(out, "", 0));
    for (size_t i = 0; i < tokens->n; i++)
        PYLLM_TRY(pyllm_bytes_append(out, tokens->text.data + tokens->start[i], tokens->end[i] - tokens->start[i]));
    return PYLLM_OK;
}
