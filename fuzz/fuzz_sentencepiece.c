/* A tokenizer.model (SentencePiece ModelProto) from the input: parse it, and when it loads,
 * encode texts that reach every path of the normalizer and the BPE (spaces, digits, bytes the
 * vocabulary lacks, special-token strings), decode what came out, decode every id, and stream-
 * decode (each prefix of the ids, as pyllm.StreamDecoder asks for it). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "tokenizers/tokenizer.h"

#include "fuzz_tokenizer_checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pyllm_tokenizer *tok = NULL;
    if (pyllm_tokenizer_from_sentencepiece(data, size, &tok) != PYLLM_OK) {
        fuzz_expect_message();
        return 0;
    }
    fuzz_exercise_tokenizer(tok, NULL, 0);
    pyllm_tokenizer_free(tok);
    return 0;
}
