#include "tokenizers/utf8.h"

#include <stdint.h>

size_t pyllm_utf8_char_len(const char *s, size_t n)
{
    static const unsigned char by_high_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    size_t len = by_high_nibble[(unsigned char)s[0] >> 4];
    return len < n ? len : n;
}

static int is_trail(unsigned char c) { return (c & 0xC0) == 0x80; }

static int is_valid_code_point(uint32_t c)
{
    return c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF);
}

size_t pyllm_utf8_valid_char_len(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    uint32_t cp;
    size_t len;
    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    if (n >= 2 && (s[0] & 0xE0) == 0xC0) {
        if (!is_trail(s[1]))
            return 0;
        cp = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
        if (cp < 0x80)
            return 0;
        len = 2;
    } else if (n >= 3 && (s[0] & 0xF0) == 0xE0) {
        if (!is_trail(s[1]) || !is_trail(s[2]))
            return 0;
        cp = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        if (cp < 0x800)
            return 0;
        len = 3;
    } else if (n >= 4 && (s[0] & 0xF8) == 0xF0) {
        if (!is_trail(s[1]) || !is_trail(s[2]) || !is_trail(s[3]))
            return 0;
        cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
             ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        if (cp < 0x10000)
            return 0;
        len = 4;
    } else {
        return 0;
    }
    if (!is_valid_code_point(cp))
        return 0;
    return len;
}
