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
    PYLLM_DECODE_REPLACE,       /* s1 -> s2 */
    PYLLM_DECODE_BYTE_FALLBACK,
    PYLLM_DECODE_FUSE,
    PYLLM_DECODE_STRIP,         /* s1 = one character; a = start, b = stop */
    PYLLM_DECODE_METASPACE,     /* s1 = replacement; a = prepend scheme */
} pyllm_decode_kind;

/* Decoding steps reuse the pre-tokenizer step record (kind from pyllm_decode_kind). */
typedef pyllm_step pyllm_decode_step;

/* Run the steps over the tokens (pieces; consumed) and write their concatenation to out. */
pyllm_status pyllm_decoders_run(const pyllm_decode_step *steps, size_t n_steps, pyllm_pieces *tokens,
                                pyllm_bytes *out);

#endif
