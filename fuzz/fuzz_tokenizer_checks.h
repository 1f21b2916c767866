/* What every tokenizer harness does with a tokenizer that loaded: encode, decode, stream-decode,
 * add a token, and check that the ids stay in range and that every refusal says why. */
#ifndef PYLLM_FUZZ_TOKENIZER_CHECKS_H
#define PYLLM_FUZZ_TOKENIZER_CHECKS_H

#include <stddef.h>

#include "tokenizers/tokenizer.h"

/* A call failed: it must have recorded a message (abort otherwise); the message is cleared. */
void fuzz_expect_message(void);

/* Encode fixed probe texts and text[0..len) (may be NULL), decode the results and every id. */
void fuzz_exercise_tokenizer(pyllm_tokenizer *tok, const char *text, size_t len);

/* The PYLLM_ENCODE_* combinations the harnesses encode with. */
extern const int FUZZ_ENCODE_FLAGS[3];

/* Encode text[0..len) with these flags; decode and stream-decode the ids. */
void fuzz_encode_decode_with(const pyllm_tokenizer *tok, const char *text, size_t len, int flags);

/* The same with every combination of FUZZ_ENCODE_FLAGS. */
void fuzz_encode_decode(const pyllm_tokenizer *tok, const char *text, size_t len);

/* Decode ids read from raw bytes (4 bytes each, folded into the vocabulary), in both modes. */
void fuzz_decode_bytes_as_ids(const pyllm_tokenizer *tok, const unsigned char *data, size_t len);

#endif
