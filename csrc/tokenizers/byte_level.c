#include "tokenizers/byte_level.h"

static int printable(unsigned b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t pyllm_byte_level_char(uint8_t b)
{
    if (printable(b))
        return b;
    /* the n-th non-printable byte maps to U+0100 + n */
    uint32_t n = 0;
    for (unsigned x = 0; x < b; x++)
        n += !printable(x);
    return 0x100 + n;
}

int pyllm_byte_level_byte(uint32_t cp)
{
    if (cp < 0x100)
        return printable(cp) ? (int)cp : -1;
    uint32_t n = cp - 0x100;
    for (unsigned x = 0; x < 256; x++)
        if (!printable(x) && n-- == 0)
            return (int)x;
    return -1;
}
