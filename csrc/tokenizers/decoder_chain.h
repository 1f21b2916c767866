/* tokenizer.json decoders over the list of token strings, in order: ByteLevel, Replace (string),
 * ByteFallback, Fuse, Strip, Metaspace. The output is bytes that may hold malformed UTF-8,
 * which the caller decodes lossily as tokenizers does. */
#ifndef PYLLM_TOKENIZERS_DECODER_CHAIN_H
#define PYLLM_TOKENIZERS_DECODER_CHAIN_H

#include <stddef.h>

#include "core/error.h"
#include "tokenizers/buffers.h"
#include "tokenizers/pretokenizer.h"

typedef enum {
    PYLLM_DECODE_BYTE_LEVEL,
    PYLLM_DECODE_REPLACE,       /* lit (s1) -> s2; an empty s1 puts s2 around every character */
    PYLLM_DECODE_BYTE_FALLBACK,
    PYLLM_DECODE_FUSE,
    PYLLM_DECODE_STRIP,         /* s1 = content (not empty); a = start, b = stop (>= 0) */
    PYLLM_DECODE_METASPACE,     /* s1 = replacement (not empty); a = prepend scheme */
} pyllm_decode_kind;

/* Decoding steps reuse the pre-tokenizer step record (kind from pyllm_decode_kind). */
typedef pyllm_step pyllm_decode_step;

/* Build a decoding step (strings copied); a configuration that could not make progress (an
 * empty Strip content or Metaspace replacement, negative Strip counts) is refused. */
pyllm_status pyllm_decode_step_init(pyllm_decode_step *s, pyllm_decode_kind kind, const char *s1, size_t len1,
                                    const char *s2, size_t len2, int a, int b);

/* Run the steps over the tokens (pieces; consumed) and write their concatenation to out. */
pyllm_status pyllm_decoders_run(const pyllm_decode_step *steps, size_t n_steps, pyllm_pieces *tokens,
                                pyllm_bytes *out);

#endif
