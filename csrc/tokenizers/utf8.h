/* UTF-8 decoding: the two rules SentencePiece applies, reproduced exactly so ids match it, and
 * code points for the tokenizer.json pipelines. */
#ifndef PYLLM_TOKENIZERS_UTF8_H
#define PYLLM_TOKENIZERS_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Length of the character starting at s judged from its lead byte alone (1..4), at most n. */
size_t pyllm_utf8_char_len(const char *s, size_t n);

/* Length of a well-formed character at s, or 0 when malformed. Surrogates, code points above
 * U+10FFFF and overlong forms count as malformed. */
size_t pyllm_utf8_valid_char_len(const char *s, size_t n);

/* The code point of a well-formed character at s into *cp; its length, or 0 when malformed. */
size_t pyllm_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Like pyllm_utf8_decode, but a malformed byte reads as U+FFFD of length 1 (n >= 1). */
static inline size_t pyllm_utf8_decode_lossy(const char *s, size_t n, uint32_t *cp)
{
    size_t len = pyllm_utf8_decode(s, n, cp);
    if (len == 0) {
        *cp = 0xFFFD;
        return 1;
    }
    return len;
}

/* Write cp (at most U+10FFFF) as UTF-8 into out (room for 4 bytes); returns the length. */
size_t pyllm_utf8_encode(uint32_t cp, char *out);

#endif
