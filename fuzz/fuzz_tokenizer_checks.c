#include "fuzz_tokenizer_checks.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizers/buffers.h"

/* Texts that reach the normalizers' and models' branches: leading, repeated and trailing
 * spaces, newlines and tabs, digits, characters outside any small vocabulary (byte fallback,
 * <unk>), malformed UTF-8, the usual special-token strings and the token added below. */
static const char *const PROBES[] = {
    "Hello world",
    "  two  spaces,\tA tab\nand a newline  ",
    "12345 678.9",
    "caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\xa6\x99 \xe4\xb8\xad\xe6\x96\x87",
    "\xff\xfe bad \xc3 utf8 \xed\xa0\x80",
    "<s>x</s><unk><|endoftext|><pad>",
    "a<fuzz-added>b <fuzz-added>",
    "",
};

void fuzz_expect_message(void)
{
    if (pyllm_error_message()[0] == '\0') {
        fprintf(stderr, "a failing call recorded no message\n");
        abort();
    }
    pyllm_error_clear();
}

const int FUZZ_ENCODE_FLAGS[3] = {0, PYLLM_ENCODE_SPLIT_SPECIALS,
                                  PYLLM_ENCODE_SPLIT_SPECIALS | PYLLM_ENCODE_NO_PREFIX_AFTER_SPECIAL};

static int32_t n_tokens(const pyllm_tokenizer *tok) { return pyllm_tokenizer_table(tok)->vocab.n_tokens; }

static void decode_checked(const pyllm_tokenizer *tok, const int32_t *ids, size_t n, int skip)
{
    pyllm_bytes out = {0};
    if (pyllm_tokenizer_decode(tok, ids, n, skip, &out) != PYLLM_OK)
        fuzz_expect_message();
    pyllm_bytes_free(&out);
}

void fuzz_encode_decode_with(const pyllm_tokenizer *tok, const char *text, size_t len, int flags)
{
    pyllm_ids ids = {0};
    if (pyllm_tokenizer_encode(tok, text, len, flags, &ids) != PYLLM_OK) {
        fuzz_expect_message();
        pyllm_ids_free(&ids);
        return;
    }
    for (size_t i = 0; i < ids.len; i++)
        if (ids.data[i] < 0 || ids.data[i] >= n_tokens(tok)) {
            fprintf(stderr, "encode gave id %d outside [0, %d)\n", ids.data[i], n_tokens(tok));
            abort();
        }
    decode_checked(tok, ids.data, ids.len, 0);
    decode_checked(tok, ids.data, ids.len, 1);
    /* stream decoding decodes the ids seen so far after each new one */
    for (size_t i = 1; i <= ids.len && i <= 48; i++)
        decode_checked(tok, ids.data, i, 1);
    pyllm_ids_free(&ids);
}

void fuzz_encode_decode(const pyllm_tokenizer *tok, const char *text, size_t len)
{
    for (int f = 0; f < 3; f++)
        fuzz_encode_decode_with(tok, text, len, FUZZ_ENCODE_FLAGS[f]);
}

void fuzz_decode_bytes_as_ids(const pyllm_tokenizer *tok, const unsigned char *data, size_t len)
{
    int32_t n = n_tokens(tok);
    if (n == 0)
        return;
    size_t count = len / 4 < 256 ? len / 4 : 256;
    int32_t ids[256];
    for (size_t i = 0; i < count; i++) {
        uint32_t v = (uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 | (uint32_t)data[4 * i + 2] << 16 |
                     (uint32_t)data[4 * i + 3] << 24;
        ids[i] = (int32_t)(v % (uint32_t)n);
    }
    decode_checked(tok, ids, count, 0);
    decode_checked(tok, ids, count, 1);
    /* an id outside the vocabulary is refused, never read */
    int32_t bad[2] = {0, count ? -1 - (int32_t)(data[0] & 7) : n};
    pyllm_bytes out = {0};
    if (pyllm_tokenizer_decode(tok, bad, 2, 0, &out) == PYLLM_OK)
        abort();
    pyllm_error_clear();
    pyllm_bytes_free(&out);
}

void fuzz_exercise_tokenizer(pyllm_tokenizer *tok, const char *text, size_t len)
{
    for (size_t i = 0; i < sizeof PROBES / sizeof PROBES[0]; i++)
        fuzz_encode_decode(tok, PROBES[i], strlen(PROBES[i]));
    if (text != NULL)
        fuzz_encode_decode(tok, text, len);
    /* every id alone and all of them at once (the first 2048: large vocabularies stay fast) */
    int32_t n = n_tokens(tok) < 2048 ? n_tokens(tok) : 2048;
    int32_t *all = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    if (all == NULL)
        abort();
    for (int32_t id = 0; id < n; id++) {
        all[id] = id;
        decode_checked(tok, &all[id], 1, 0);
    }
    decode_checked(tok, all, (size_t)n, 0);
    decode_checked(tok, all, (size_t)n, 1);
    free(all);
    /* an added token (as tokenizer_config.json adds them) is split out of the text afterwards */
    static const char added[] = "<fuzz-added>";
    if (pyllm_tokenizer_add_token(tok, added, sizeof added - 1, n_tokens(tok), 1) != PYLLM_OK) {
        fuzz_expect_message();
        return;
    }
    fuzz_encode_decode(tok, PROBES[6], strlen(PROBES[6]));
}
