/* A minimal reader of the protobuf wire format: enough to walk a SentencePiece ModelProto
 * without depending on libprotobuf. Every read checks the bounds of the buffer. */
#ifndef PYLLM_TOKENIZERS_PROTOBUF_H
#define PYLLM_TOKENIZERS_PROTOBUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

enum {
    PYLLM_PB_VARINT = 0,
    PYLLM_PB_FIXED64 = 1,
    PYLLM_PB_BYTES = 2,
    PYLLM_PB_FIXED32 = 5,
};

typedef struct {
    const uint8_t *pos;
    const uint8_t *end;
    const char *what; /* named in error messages, e.g. "tokenizer.model" */
} pyllm_pb_reader;

void pyllm_pb_init(pyllm_pb_reader *r, const void *data, size_t len, const char *what);
int pyllm_pb_at_end(const pyllm_pb_reader *r);

/* Read the next field key. */
pyllm_status pyllm_pb_next_field(pyllm_pb_reader *r, uint32_t *field, uint32_t *wire_type);
pyllm_status pyllm_pb_read_varint(pyllm_pb_reader *r, uint64_t *value);
pyllm_status pyllm_pb_read_fixed32(pyllm_pb_reader *r, uint32_t *value);
/* A length-delimited field: points into the buffer, no copy. */
pyllm_status pyllm_pb_read_bytes(pyllm_pb_reader *r, const uint8_t **data, size_t *len);
/* Skip the value of a field of this wire type. */
pyllm_status pyllm_pb_skip(pyllm_pb_reader *r, uint32_t wire_type);

/* Typed helpers that also check the wire type matches the field's declared kind. */
pyllm_status pyllm_pb_read_bool_field(pyllm_pb_reader *r, uint32_t wire_type, int *value);
pyllm_status pyllm_pb_read_int32_field(pyllm_pb_reader *r, uint32_t wire_type, int32_t *value);
pyllm_status pyllm_pb_read_float_field(pyllm_pb_reader *r, uint32_t wire_type, float *value);
pyllm_status pyllm_pb_read_bytes_field(pyllm_pb_reader *r, uint32_t wire_type, const uint8_t **data,
                                       size_t *len);

#endif
