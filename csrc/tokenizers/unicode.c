#include "tokenizers/unicode.h"

#include <string.h>

size_t pyllm_unicode_decode(const char *str, size_t n, uint32_t *cp)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    if (len > n) {
        *cp = 0xFFFD;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        v = v << 6 | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = v;
    return len;
}

size_t pyllm_unicode_encode(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

uint32_t pyllm_unicode_fold(uint32_t cp)
{
    size_t lo = 0, hi = pyllm_unicode_n_folds;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (pyllm_unicode_folds[mid][0] < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < pyllm_unicode_n_folds && pyllm_unicode_folds[lo][0] == cp ? pyllm_unicode_folds[lo][1] : cp;
}

static const char *const CATEGORY_NAMES[PYLLM_UC_COUNT] = {
    "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe",
    "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn",
};

static const struct {
    const char *name;
    char major;
} LONG_NAMES[] = {
    {"Letter", 'L'}, {"Mark", 'M'}, {"Number", 'N'}, {"Punctuation", 'P'},
    {"Symbol", 'S'}, {"Separator", 'Z'}, {"Other", 'C'},
};

uint32_t pyllm_unicode_category_mask(const char *name, size_t len)
{
    char major = 0;
    if (len == 1)
        major = name[0];
    for (size_t i = 0; i < sizeof LONG_NAMES / sizeof LONG_NAMES[0]; i++)
        if (strlen(LONG_NAMES[i].name) == len && memcmp(LONG_NAMES[i].name, name, len) == 0)
            major = LONG_NAMES[i].major;
    uint32_t mask = 0;
    for (int c = 0; c < PYLLM_UC_COUNT; c++) {
        if (major != 0 ? CATEGORY_NAMES[c][0] == major : (len == 2 && memcmp(CATEGORY_NAMES[c], name, 2) == 0))
            mask |= PYLLM_UC_MASK(c);
    }
    return mask;
}
