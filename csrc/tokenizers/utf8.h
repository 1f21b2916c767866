/* The two UTF-8 rules SentencePiece applies, reproduced exactly so ids match it. */
#ifndef PYLLM_TOKENIZERS_UTF8_H
#define PYLLM_TOKENIZERS_UTF8_H

#include <stddef.h>

/* Length of the character starting at s judged from its lead byte alone (1..4), at most n. */
size_t pyllm_utf8_char_len(const char *s, size_t n);

/* Length of a well-formed character at s, or 0 when malformed. Surrogates, code points above
 * U+10FFFF and overlong forms count as malformed. */
size_t pyllm_utf8_valid_char_len(const char *s, size_t n);

#endif
