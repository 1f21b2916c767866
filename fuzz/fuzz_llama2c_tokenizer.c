/* A llama2.c tokenizer file (tokenizer.bin, tok512.bin): the input's first two bytes give the
 * vocabulary size the model header would (the file does not store it), the rest is the file.
 * When it loads, the tokenizer is exercised like a tokenizer.model's. */
#include <stdint.h>
#include <stdlib.h>

#include "core/error.h"
#include "tokenizers/tokenizer.h"

#include "fuzz_tokenizer_checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int32_t vocab_size = (int32_t)(data[0] | data[1] << 8);
    pyllm_tokenizer *tok = NULL;
    if (pyllm_tokenizer_from_llama2c(data + 2, size - 2, vocab_size, &tok) != PYLLM_OK) {
        fuzz_expect_message();
        return 0;
    }
    fuzz_exercise_tokenizer(tok, NULL, 0);
    pyllm_tokenizer_free(tok);
    return 0;
}
