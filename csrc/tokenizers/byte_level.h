/* GPT-2's byte <-> printable character map used by byte-level BPE: printable Latin-1 bytes
 * stand for themselves, the other 68 bytes for U+0100 onwards, in byte order. */
#ifndef PYLLM_TOKENIZERS_BYTE_LEVEL_H
#define PYLLM_TOKENIZERS_BYTE_LEVEL_H

#include <stdint.h>

/* The code point that stands for byte b. */
uint32_t pyllm_byte_level_char(uint8_t b);

/* The byte a code point stands for, or -1 when it stands for none. */
int pyllm_byte_level_byte(uint32_t cp);

#endif
