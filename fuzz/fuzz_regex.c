/* The tokenizer.json regex engine, pattern and subject both fuzzed: the input is the pattern up
 * to its first NUL byte and the subject after it (no NUL: the pattern is its own subject). Every
 * compiled pattern is run the way Split runs it, match after match to the end of the subject,
 * and the matches must lie inside the subject, in order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizers/regex.h"
#include "tokenizers/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, 0, size);
    size_t pattern_len = nul ? (size_t)(nul - text) : size;
    const char *subject = nul ? nul + 1 : text;
    size_t subject_len = nul ? size - pattern_len - 1 : size;

    pyllm_regex *re = NULL;
    if (pyllm_regex_compile(text, pattern_len, &re) != PYLLM_OK) {
        if (pyllm_error_message()[0] == '\0')
            abort(); /* a refused pattern must say why */
        pyllm_error_clear();
        return 0;
    }
    /* one budget for the whole subject, as a Split step has: linear work, or a refusal */
    pyllm_regex_budget budget = {0, pyllm_regex_budget_for(re, subject_len)};
    size_t from = 0;
    while (from <= subject_len) {
        size_t start, end;
        int found = pyllm_regex_find_counted(re, subject, subject_len, from, &start, &end, &budget);
        if (found < 0 && budget.steps <= budget.limit)
            abort(); /* gave up without spending its budget */
        if (found <= 0)
            break;
        if (start < from || end < start || end > subject_len)
            abort();
        if (end > start) {
            from = end;
        } else if (start == subject_len) {
            break;
        } else { /* an empty match: step one character, as Split does */
            uint32_t cp;
            from = start + pyllm_utf8_decode_lossy(subject + start, subject_len - start, &cp);
        }
    }
    pyllm_regex_free(re);
    return 0;
}
