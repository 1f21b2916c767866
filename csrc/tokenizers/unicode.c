#include "tokenizers/unicode.h"

#include <string.h>

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
