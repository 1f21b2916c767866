#include "generate/prompt_lookup.h"

#include <string.h>

int64_t pyllm_prompt_lookup(const int32_t *history, int64_t length, int32_t max_ngram, int64_t max_tokens,
                            int32_t *draft)
{
    if (max_tokens <= 0)
        return 0;
    for (int64_t n = max_ngram < length ? max_ngram : length - 1; n >= 1; n--) {
        const int32_t *tail = history + length - n;
        /* Windows start before the tail itself, so a match always has a continuation. */
        for (int64_t start = 0; start + n < length; start++) {
            if (memcmp(history + start, tail, sizeof(int32_t) * (size_t)n) != 0)
                continue;
            int64_t from = start + n, count = length - from;
            if (count > max_tokens)
                count = max_tokens;
            memcpy(draft, history + from, sizeof(int32_t) * (size_t)count);
            return count;
        }
    }
    return 0;
}
