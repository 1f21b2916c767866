#include "tokenizers/sentencepiece_model.h"

#include <string.h>

#include "core/alloc.h"
#include "tokenizers/protobuf.h"

#define WHAT "tokenizer.model"

static char *copy_string(const uint8_t *s, size_t len)
{
    char *out = pyllm_alloc(len + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

static pyllm_status replace_string(const char **slot, const uint8_t *s, size_t len)
{
    char *copy = copy_string(s, len);
    if (copy == NULL)
        return PYLLM_ERR_MEMORY;
    pyllm_free((void *)*slot);
    *slot = copy;
    return PYLLM_OK;
}

static pyllm_status parse_piece(const uint8_t *data, size_t len, pyllm_spm_piece *piece)
{
    pyllm_pb_reader r;
    pyllm_pb_init(&r, data, len, WHAT);
    piece->text = NULL;
    piece->len = 0;
    piece->score = 0.0f;
    piece->type = PYLLM_PIECE_NORMAL;
    int has_text = 0;
    while (!pyllm_pb_at_end(&r)) {
        uint32_t field, wt;
        PYLLM_TRY(pyllm_pb_next_field(&r, &field, &wt));
        if (field == 1) {
            const uint8_t *s;
            PYLLM_TRY(pyllm_pb_read_bytes_field(&r, wt, &s, &piece->len));
            piece->text = (const char *)s;
            has_text = 1;
        } else if (field == 2) {
            PYLLM_TRY(pyllm_pb_read_float_field(&r, wt, &piece->score));
        } else if (field == 3) {
            int32_t type;
            PYLLM_TRY(pyllm_pb_read_int32_field(&r, wt, &type));
            if (type < PYLLM_PIECE_NORMAL || type > PYLLM_PIECE_BYTE)
                return pyllm_error(PYLLM_ERR_VALUE, WHAT " is not a valid SentencePiece model: piece type %d", type);
            piece->type = type;
        } else {
            PYLLM_TRY(pyllm_pb_skip(&r, wt));
        }
    }
    if (!has_text || piece->len == 0)
        return pyllm_error(PYLLM_ERR_VALUE, WHAT " is not a valid SentencePiece model: a piece has no text");
    return PYLLM_OK;
}

static pyllm_status parse_trainer_spec(const uint8_t *data, size_t len, pyllm_spm_model *m)
{
    pyllm_pb_reader r;
    pyllm_pb_init(&r, data, len, WHAT);
    while (!pyllm_pb_at_end(&r)) {
        uint32_t field, wt;
        int32_t value;
        const uint8_t *s;
        size_t slen;
        PYLLM_TRY(pyllm_pb_next_field(&r, &field, &wt));
        switch (field) {
        case 3:
            PYLLM_TRY(pyllm_pb_read_int32_field(&r, wt, &value));
            m->model_type = value;
            break;
        case 24:
            PYLLM_TRY(pyllm_pb_read_bool_field(&r, wt, &m->treat_whitespace_as_suffix));
            break;
        case 25:
            PYLLM_TRY(pyllm_pb_read_bool_field(&r, wt, &m->split_digits));
            break;
        case 35:
            PYLLM_TRY(pyllm_pb_read_bool_field(&r, wt, &m->byte_fallback));
            break;
        case 44:
        case 45:
        case 46:
        case 47:
        case 48:
            PYLLM_TRY(pyllm_pb_read_bytes_field(&r, wt, &s, &slen));
            PYLLM_TRY(replace_string(field == 44   ? &m->unk_surface
                                     : field == 45 ? &m->unk_piece
                                     : field == 46 ? &m->bos_piece
                                     : field == 47 ? &m->eos_piece
                                                   : &m->pad_piece,
                                     s, slen));
            break;
        default:
            PYLLM_TRY(pyllm_pb_skip(&r, wt));
        }
    }
    return PYLLM_OK;
}

static pyllm_status parse_normalizer_spec(const uint8_t *data, size_t len, pyllm_spm_normalizer_spec *n)
{
    pyllm_pb_reader r;
    pyllm_pb_init(&r, data, len, WHAT);
    n->present = 1;
    while (!pyllm_pb_at_end(&r)) {
        uint32_t field, wt;
        PYLLM_TRY(pyllm_pb_next_field(&r, &field, &wt));
        switch (field) {
        case 2:
            PYLLM_TRY(pyllm_pb_read_bytes_field(&r, wt, &n->charsmap, &n->charsmap_len));
            if (n->charsmap_len == 0)
                n->charsmap = NULL;
            break;
        case 3:
            PYLLM_TRY(pyllm_pb_read_bool_field(&r, wt, &n->add_dummy_prefix));
            break;
        case 4:
            PYLLM_TRY(pyllm_pb_read_bool_field(&r, wt, &n->remove_extra_whitespaces));
            break;
        case 5:
            PYLLM_TRY(pyllm_pb_read_bool_field(&r, wt, &n->escape_whitespaces));
            break;
        default:
            PYLLM_TRY(pyllm_pb_skip(&r, wt));
        }
    }
    return PYLLM_OK;
}

static void normalizer_defaults(pyllm_spm_normalizer_spec *n)
{
    memset(n, 0, sizeof *n);
    n->add_dummy_prefix = 1;
    n->remove_extra_whitespaces = 1;
    n->escape_whitespaces = 1;
}

static pyllm_status set_defaults(pyllm_spm_model *m)
{
    memset(m, 0, sizeof *m);
    m->model_type = PYLLM_SPM_UNIGRAM; /* the proto's default */
    normalizer_defaults(&m->normalizer);
    normalizer_defaults(&m->denormalizer);
    static const char *defaults[5] = {"<unk>", "<s>", "</s>", "<pad>", " \xE2\x81\x87 "};
    const char **slots[5] = {&m->unk_piece, &m->bos_piece, &m->eos_piece, &m->pad_piece, &m->unk_surface};
    for (int i = 0; i < 5; i++)
        PYLLM_TRY(replace_string(slots[i], (const uint8_t *)defaults[i], strlen(defaults[i])));
    return PYLLM_OK;
}

static pyllm_status parse(const void *data, size_t len, pyllm_spm_model *m)
{
    PYLLM_TRY(set_defaults(m));
    pyllm_pb_reader r;
    pyllm_pb_init(&r, data, len, WHAT);

    /* First pass: count the pieces so they are stored in one array. */
    size_t n_pieces = 0;
    while (!pyllm_pb_at_end(&r)) {
        uint32_t field, wt;
        PYLLM_TRY(pyllm_pb_next_field(&r, &field, &wt));
        if (field == 1 && wt == PYLLM_PB_BYTES)
            n_pieces++;
        PYLLM_TRY(pyllm_pb_skip(&r, wt));
    }
    if (n_pieces == 0)
        return pyllm_error(PYLLM_ERR_VALUE, WHAT " is not a valid SentencePiece model: it has no pieces");
    if (n_pieces > INT32_MAX / 2)
        return pyllm_error(PYLLM_ERR_VALUE, WHAT " has too many pieces (%zu)", n_pieces);
    m->pieces = pyllm_alloc(pyllm_mul_size(n_pieces, sizeof(pyllm_spm_piece)));
    if (m->pieces == NULL)
        return PYLLM_ERR_MEMORY;

    pyllm_pb_init(&r, data, len, WHAT);
    while (!pyllm_pb_at_end(&r)) {
        uint32_t field, wt;
        const uint8_t *sub;
        size_t sub_len;
        PYLLM_TRY(pyllm_pb_next_field(&r, &field, &wt));
        switch (field) {
        case 1:
            PYLLM_TRY(pyllm_pb_read_bytes_field(&r, wt, &sub, &sub_len));
            PYLLM_TRY(parse_piece(sub, sub_len, &m->pieces[m->n_pieces]));
            m->n_pieces++;
            break;
        case 2:
            PYLLM_TRY(pyllm_pb_read_bytes_field(&r, wt, &sub, &sub_len));
            PYLLM_TRY(parse_trainer_spec(sub, sub_len, m));
            break;
        case 3:
            PYLLM_TRY(pyllm_pb_read_bytes_field(&r, wt, &sub, &sub_len));
            PYLLM_TRY(parse_normalizer_spec(sub, sub_len, &m->normalizer));
            break;
        case 5:
            PYLLM_TRY(pyllm_pb_read_bytes_field(&r, wt, &sub, &sub_len));
            PYLLM_TRY(parse_normalizer_spec(sub, sub_len, &m->denormalizer));
            break;
        default:
            PYLLM_TRY(pyllm_pb_skip(&r, wt));
        }
    }
    return PYLLM_OK;
}

pyllm_status pyllm_spm_model_parse(const void *data, size_t len, pyllm_spm_model *model)
{
    pyllm_status st = parse(data, len, model);
    if (st != PYLLM_OK)
        pyllm_spm_model_free(model);
    return st;
}

void pyllm_spm_model_free(pyllm_spm_model *m)
{
    pyllm_free(m->pieces);
    pyllm_free((void *)m->unk_piece);
    pyllm_free((void *)m->bos_piece);
    pyllm_free((void *)m->eos_piece);
    pyllm_free((void *)m->pad_piece);
    pyllm_free((void *)m->unk_surface);
    memset(m, 0, sizeof *m);
}
