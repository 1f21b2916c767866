/* The parts of a SentencePiece ModelProto (sentencepiece_model.proto) that encoding and
 * decoding need: the pieces, the trainer spec and the (de)normalizer specs. */
#ifndef PYLLM_TOKENIZERS_SENTENCEPIECE_MODEL_H
#define PYLLM_TOKENIZERS_SENTENCEPIECE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* ModelProto.SentencePiece.Type */
typedef enum {
    PYLLM_PIECE_NORMAL = 1,
    PYLLM_PIECE_UNKNOWN = 2,
    PYLLM_PIECE_CONTROL = 3,
    PYLLM_PIECE_USER_DEFINED = 4,
    PYLLM_PIECE_UNUSED = 5,
    PYLLM_PIECE_BYTE = 6,
} pyllm_piece_type;

/* TrainerSpec.ModelType */
enum { PYLLM_SPM_UNIGRAM = 1, PYLLM_SPM_BPE = 2, PYLLM_SPM_WORD = 3, PYLLM_SPM_CHAR = 4 };

typedef struct {
    const char *text; /* points into the parsed buffer */
    size_t len;
    float score;
    int type;
} pyllm_spm_piece;

typedef struct {
    int present;
    const uint8_t *charsmap; /* precompiled_charsmap, into the buffer; NULL when empty */
    size_t charsmap_len;
    int add_dummy_prefix;
    int remove_extra_whitespaces;
    int escape_whitespaces;
} pyllm_spm_normalizer_spec;

typedef struct {
    pyllm_spm_piece *pieces; /* owned */
    int32_t n_pieces;
    int model_type;
    int byte_fallback;
    int treat_whitespace_as_suffix;
    int split_digits;  /* a training option: its effect is already in the pieces (no multi-digit
                        * pieces exist), so encoding applies nothing for it; kept for reporting */
    const char *unk_piece, *bos_piece, *eos_piece, *pad_piece; /* NUL-terminated, owned */
    const char *unk_surface;
    pyllm_spm_normalizer_spec normalizer;
    pyllm_spm_normalizer_spec denormalizer;
} pyllm_spm_model;

/* Parse a serialized ModelProto. Strings point into data, which must outlive the model. */
pyllm_status pyllm_spm_model_parse(const void *data, size_t len, pyllm_spm_model *model);
void pyllm_spm_model_free(pyllm_spm_model *model);

#endif
