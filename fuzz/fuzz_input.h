/* Reading a libFuzzer input as a sequence of small structured values (the harnesses' own
 * FuzzedDataProvider): every take_* is bounded by what is left, and returns zeros once the
 * input is used up, so any byte string is a valid input. */
#ifndef PYLLM_FUZZ_INPUT_H
#define PYLLM_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t n;
} fuzz_input;

static inline uint8_t take_u8(fuzz_input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static inline uint32_t take_u32(fuzz_input *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)take_u8(in) << (8 * i);
    return v;
}

/* Up to max bytes, the count taken from the input's next byte (so the fuzzer controls lengths). */
static inline const char *take_str(fuzz_input *in, size_t max, size_t *len)
{
    size_t want = take_u8(in) % (max + 1);
    if (want > in->n)
        want = in->n;
    const char *s = (const char *)in->p;
    in->p += want;
    in->n -= want;
    *len = want;
    return s;
}

/* Everything that is left. */
static inline const char *take_rest(fuzz_input *in, size_t *len)
{
    const char *s = (const char *)in->p;
    *len = in->n;
    in->p += in->n;
    in->n = 0;
    return s;
}

#endif
