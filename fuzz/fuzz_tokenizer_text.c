/* Arbitrary bytes through real tokenizers: encode them as text, decode the ids that came out
 * (whole and as a stream), and decode the bytes read as ids. The input's first byte picks the
 * tokenizer (modulo 6; the quotient picks the encode flags): LLaMA's tokenizer.model,
 * stories260K's llama2.c tok512.bin (both from $PYLLM_TEST_DATA), or one of three tokenizer.json
 * pipelines built here over GPT-2's byte alphabet: GPT-2's ByteLevel split, LLaMA-3's Split regex
 * then ByteLevel without regex, BLOOM's Split regex; and a SentencePiece-style one (Replace,
 * Prepend, byte fallback, Fuse, Strip). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizers/byte_level.h"
#include "tokenizers/tokenizer.h"
#include "tokenizers/utf8.h"

#include "fuzz_tokenizer_checks.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { N_TOKENIZERS = 6 };
static pyllm_tokenizer *tokenizers[N_TOKENIZERS];

static const char LLAMA3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
                             "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char BLOOM[] = " ?[^(\\s|.,!?\xe2\x80\xa6\xe3\x80\x82\xef\xbc\x8c\xe3\x80\x81\xe0\xa5\xa4\xdb\x94\xd8\x8c)]+";
/* pairs merged in this order by the byte-level tokenizers (U+0120 "Ġ" is the space) */
static const char *const MERGES[][2] = {
    {"\xc4\xa0", "t"}, {"h", "e"}, {"i", "n"}, {"\xc4\xa0t", "he"}, {"e", "r"}, {"o", "n"}, {"\xc4\xa0", "a"},
    {"r", "e"}, {"a", "t"}, {"s", "t"}, {"e", "n"}, {"o", "r"}, {"\xc4\xa0", "s"}, {"\xc4\xa0", "w"},
    {"1", "2"}, {"12", "3"}, {"\xc4\x8a", "\xc4\x8a"}, {"\xc4\xa0", "\xc4\xa0"}, {"\xc4\xa0\xc4\xa0", "\xc4\xa0\xc4\xa0"},
};

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_tokenizer_text: %s: %s\n", what, pyllm_error_message());
    exit(1);
}

static pyllm_tokenizer *load_file(const char *dir, const char *name, int32_t llama2c_vocab)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz_tokenizer_text: cannot open %s (set PYLLM_TEST_DATA)\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)size);
    if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size)
        fail(path);
    fclose(f);
    pyllm_tokenizer *t = NULL;
    pyllm_status st = llama2c_vocab ? pyllm_tokenizer_from_llama2c(data, (size_t)size, llama2c_vocab, &t)
                                    : pyllm_tokenizer_from_sentencepiece(data, (size_t)size, &t);
    free(data);
    if (st != PYLLM_OK)
        fail(path);
    return t;
}

/* kind 0: GPT-2, 1: LLaMA-3, 2: BLOOM, 3: SentencePiece-style tokenizer.json */
static pyllm_tokenizer *build_merges(int kind)
{
    pyllm_tokenizer *t = pyllm_tokenizer_new(PYLLM_TOKENIZER_MERGES);
    pyllm_merges_tokenizer *m = &t->as.merges;
    size_t n_merges = sizeof MERGES / sizeof MERGES[0];
    if (pyllm_merges_tokenizer_init(m, 600, n_merges) != PYLLM_OK)
        fail("init");
    if (kind == 3) {
        static const char hex[] = "0123456789ABCDEF";
        const char *words[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81", "a", "b", "e", "\342\226\201a", "ab"};
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
            if (pyllm_merges_add_vocab(m, words[i], strlen(words[i])) != PYLLM_OK)
                fail("vocab");
        for (int b = 0; b < 256; b++) {
            char piece[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            if (pyllm_merges_add_vocab(m, piece, 6) != PYLLM_OK)
                fail("vocab");
        }
        if (pyllm_merges_add_merge(m, "\xe2\x96\x81", 3, "a", 1) != PYLLM_OK ||
            pyllm_merges_add_merge(m, "a", 1, "b", 1) != PYLLM_OK)
            fail("merge");
        if (pyllm_merges_add_step(m, PYLLM_HF_NORMALIZER, PYLLM_STEP_PREPEND, "\xe2\x96\x81", 3, NULL, 0, 0, 0, 0) ||
            pyllm_merges_add_step(m, PYLLM_HF_NORMALIZER, PYLLM_STEP_REPLACE, " ", 1, "\xe2\x96\x81", 3, 0, 0, 0) ||
            pyllm_merges_add_step(m, PYLLM_HF_DECODER, PYLLM_DECODE_REPLACE, "\xe2\x96\x81", 3, " ", 1, 0, 0, 0) ||
            pyllm_merges_add_step(m, PYLLM_HF_DECODER, PYLLM_DECODE_BYTE_FALLBACK, NULL, 0, NULL, 0, 0, 0, 0) ||
            pyllm_merges_add_step(m, PYLLM_HF_DECODER, PYLLM_DECODE_FUSE, NULL, 0, NULL, 0, 0, 0, 0) ||
            pyllm_merges_add_step(m, PYLLM_HF_DECODER, PYLLM_DECODE_STRIP, " ", 1, NULL, 0, 0, 1, 0) ||
            pyllm_merges_finish(m, 0, 1, 1, 0))
            fail("pipeline");
        return t;
    }
    for (int b = 0; b < 256; b++) {
        char buf[4];
        if (pyllm_merges_add_vocab(m, buf, pyllm_utf8_encode(pyllm_byte_level_char((uint8_t)b), buf)) != PYLLM_OK)
            fail("vocab");
    }
    for (size_t i = 0; i < n_merges; i++) {
        char joined[16];
        size_t a = strlen(MERGES[i][0]), b = strlen(MERGES[i][1]);
        memcpy(joined, MERGES[i][0], a);
        memcpy(joined + a, MERGES[i][1], b);
        if (pyllm_merges_add_vocab(m, joined, a + b) != PYLLM_OK)
            fail("vocab");
    }
    for (size_t i = 0; i < n_merges; i++)
        if (pyllm_merges_add_merge(m, MERGES[i][0], strlen(MERGES[i][0]), MERGES[i][1], strlen(MERGES[i][1])))
            fail("merge");
    pyllm_status st = PYLLM_OK;
    if (kind == 1)
        st = pyllm_merges_add_step(m, PYLLM_HF_PRE_TOKENIZER, PYLLM_STEP_SPLIT, LLAMA3, strlen(LLAMA3), NULL, 0, 1,
                                   PYLLM_SPLIT_ISOLATED, 0);
    if (kind == 2)
        st = pyllm_merges_add_step(m, PYLLM_HF_PRE_TOKENIZER, PYLLM_STEP_SPLIT, BLOOM, strlen(BLOOM), NULL, 0, 1,
                                   PYLLM_SPLIT_ISOLATED, 0);
    if (st || pyllm_merges_add_step(m, PYLLM_HF_PRE_TOKENIZER, PYLLM_STEP_BYTE_LEVEL, NULL, 0, NULL, 0, 0, 0, kind == 0) ||
        pyllm_merges_add_step(m, PYLLM_HF_DECODER, PYLLM_DECODE_BYTE_LEVEL, NULL, 0, NULL, 0, 0, 0, 0) ||
        pyllm_merges_finish(m, -1, 0, 0, kind == 1))
        fail("pipeline");
    if (pyllm_merges_add_token(m, "<|endoftext|>", 13, m->table.vocab.n_tokens, 1) != PYLLM_OK)
        fail("added token");
    return t;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("PYLLM_TEST_DATA");
    if (dir == NULL)
        dir = "../shared/data";
    tokenizers[0] = load_file(dir, "llama/tokenizer.model", 0);
    tokenizers[1] = load_file(dir, "stories260K/tok512.bin", 512);
    for (int k = 0; k < 4; k++)
        tokenizers[2 + k] = build_merges(k);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const pyllm_tokenizer *t = tokenizers[data[0] % N_TOKENIZERS];
    fuzz_encode_decode_with(t, (const char *)data + 1, size - 1, FUZZ_ENCODE_FLAGS[(data[0] / N_TOKENIZERS) % 3]);
    fuzz_decode_bytes_as_ids(t, data + 1, size - 1);
    return 0;
}
