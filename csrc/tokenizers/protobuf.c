#include "tokenizers/protobuf.h"

#include <string.h>

void pyllm_pb_init(pyllm_pb_reader *r, const void *data, size_t len, const char *what)
{
    r->pos = data;
    r->end = r->pos + len;
    r->what = what;
}

int pyllm_pb_at_end(const pyllm_pb_reader *r) { return r->pos >= r->end; }

static pyllm_status truncated(const pyllm_pb_reader *r)
{
    return pyllm_error(PYLLM_ERR_VALUE, "%s is not a valid protobuf message: it ends in the middle of a field",
                       r->what);
}

pyllm_status pyllm_pb_read_varint(pyllm_pb_reader *r, uint64_t *value)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->pos >= r->end)
            return truncated(r);
        uint8_t byte = *r->pos++;
        v |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *value = v;
            return PYLLM_OK;
        }
    }
    return pyllm_error(PYLLM_ERR_VALUE, "%s is not a valid protobuf message: a varint is longer than 10 bytes",
                       r->what);
}

pyllm_status pyllm_pb_next_field(pyllm_pb_reader *r, uint32_t *field, uint32_t *wire_type)
{
    uint64_t key;
    PYLLM_TRY(pyllm_pb_read_varint(r, &key));
    *wire_type = (uint32_t)(key & 7);
    uint64_t number = key >> 3;
    if (number == 0 || number > 0x1FFFFFFF)
        return pyllm_error(PYLLM_ERR_VALUE, "%s is not a valid protobuf message: field number %llu is out of range",
                           r->what, (unsigned long long)number);
    if (*wire_type != PYLLM_PB_VARINT && *wire_type != PYLLM_PB_FIXED64 && *wire_type != PYLLM_PB_BYTES &&
        *wire_type != PYLLM_PB_FIXED32)
        return pyllm_error(PYLLM_ERR_VALUE, "%s is not a valid protobuf message: field %llu has wire type %u",
                           r->what, (unsigned long long)number, *wire_type);
    *field = (uint32_t)number;
    return PYLLM_OK;
}

pyllm_status pyllm_pb_read_fixed32(pyllm_pb_reader *r, uint32_t *value)
{
    if (r->end - r->pos < 4)
        return truncated(r);
    *value = (uint32_t)r->pos[0] | (uint32_t)r->pos[1] << 8 | (uint32_t)r->pos[2] << 16 |
             (uint32_t)r->pos[3] << 24;
    r->pos += 4;
    return PYLLM_OK;
}

pyllm_status pyllm_pb_read_bytes(pyllm_pb_reader *r, const uint8_t **data, size_t *len)
{
    uint64_t n;
    PYLLM_TRY(pyllm_pb_read_varint(r, &n));
    if (n > (uint64_t)(r->end - r->pos))
        return truncated(r);
    *data = r->pos;
    *len = (size_t)n;
    r->pos += n;
    return PYLLM_OK;
}

pyllm_status pyllm_pb_skip(pyllm_pb_reader *r, uint32_t wire_type)
{
    uint64_t ignored;
    const uint8_t *data;
    size_t len;
    switch (wire_type) {
    case PYLLM_PB_VARINT:
        return pyllm_pb_read_varint(r, &ignored);
    case PYLLM_PB_FIXED64:
        if (r->end - r->pos < 8)
            return truncated(r);
        r->pos += 8;
        return PYLLM_OK;
    case PYLLM_PB_BYTES:
        return pyllm_pb_read_bytes(r, &data, &len);
    case PYLLM_PB_FIXED32:
        if (r->end - r->pos < 4)
            return truncated(r);
        r->pos += 4;
        return PYLLM_OK;
    default:
        return pyllm_error(PYLLM_ERR_VALUE, "%s is not a valid protobuf message: unknown wire type %u", r->what,
                           wire_type);
    }
}

static pyllm_status wrong_type(const pyllm_pb_reader *r, uint32_t wire_type, uint32_t expected)
{
    return pyllm_error(PYLLM_ERR_VALUE, "%s is not a valid SentencePiece model: a field has wire type %u, expected %u",
                       r->what, wire_type, expected);
}

pyllm_status pyllm_pb_read_bool_field(pyllm_pb_reader *r, uint32_t wire_type, int *value)
{
    uint64_t v;
    if (wire_type != PYLLM_PB_VARINT)
        return wrong_type(r, wire_type, PYLLM_PB_VARINT);
    PYLLM_TRY(pyllm_pb_read_varint(r, &v));
    *value = v != 0;
    return PYLLM_OK;
}

pyllm_status pyllm_pb_read_int32_field(pyllm_pb_reader *r, uint32_t wire_type, int32_t *value)
{
    uint64_t v;
    if (wire_type != PYLLM_PB_VARINT)
        return wrong_type(r, wire_type, PYLLM_PB_VARINT);
    PYLLM_TRY(pyllm_pb_read_varint(r, &v));
    *value = (int32_t)(uint32_t)v; /* negative int32 values are sign-extended to 64 bits */
    return PYLLM_OK;
}

pyllm_status pyllm_pb_read_float_field(pyllm_pb_reader *r, uint32_t wire_type, float *value)
{
    uint32_t bits;
    if (wire_type != PYLLM_PB_FIXED32)
        return wrong_type(r, wire_type, PYLLM_PB_FIXED32);
    PYLLM_TRY(pyllm_pb_read_fixed32(r, &bits));
    memcpy(value, &bits, sizeof bits);
    return PYLLM_OK;
}

pyllm_status pyllm_pb_read_bytes_field(pyllm_pb_reader *r, uint32_t wire_type, const uint8_t **data, size_t *len)
{
    if (wire_type != PYLLM_PB_BYTES)
        return wrong_type(r, wire_type, PYLLM_PB_BYTES);
    return pyllm_pb_read_bytes(r, data, len);
}
