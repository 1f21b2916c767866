#include "tokenizers/tokenizer_spm.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "tokenizers/sentencepiece_model.h"
#include "tokenizers/utf8.h"

static const char SPACE_SYMBOL[] = "\xE2\x96\x81";

/* "<0xAB>" -> 0xAB, exactly as SentencePiece writes byte pieces; -1 otherwise. */
static int byte_of_piece(const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    const char *hi = memchr(hex, s[3], 16), *lo = memchr(hex, s[4], 16);
    if (s[3] == '\0' || s[4] == '\0' || hi == NULL || lo == NULL)
        return -1;
    return (int)((hi - hex) * 16 + (lo - hex));
}

void pyllm_spm_tokenizer_free(pyllm_spm_tokenizer *t)
{
    pyllm_token_table_free(&t->table);
    pyllm_free(t->scores);
    pyllm_prefix_matcher_free(&t->user_defined);
    pyllm_spm_normalizer_free(&t->normalizer);
    pyllm_spm_normalizer_free(&t->denormalizer);
    pyllm_free(t->unk_surface);
    memset(t, 0, sizeof *t);
}

/* The id of a named piece when it has the wanted type, else -1 (SentencePiece's bos_id() etc). */
static int32_t named_piece(const pyllm_token_table *t, const char *name, int type)
{
    int32_t id = pyllm_vocab_find(&t->vocab, name, strlen(name));
    return id >= 0 && t->types[id] == type ? id : -1;
}

/* Everything that follows from the parsed model, with SentencePiece's own validity checks. */
static pyllm_status build(pyllm_spm_tokenizer *t, const pyllm_spm_model *m, const char *what)
{
    if (m->model_type != PYLLM_SPM_BPE) {
        const char *kind = m->model_type == PYLLM_SPM_UNIGRAM ? "unigram"
                           : m->model_type == PYLLM_SPM_WORD  ? "word"
                           : m->model_type == PYLLM_SPM_CHAR  ? "char"
                                                              : "unknown";
        return pyllm_error(PYLLM_ERR_VALUE,
                           "%s is a SentencePiece %s model (model_type=%d); only BPE models (model_type=2) are "
                           "supported",
                           what, kind, m->model_type);
    }
    pyllm_token_table *tab = &t->table;
    PYLLM_TRY(pyllm_token_table_init(tab, m->n_pieces));
    t->scores = pyllm_alloc(pyllm_mul_size((size_t)m->n_pieces, sizeof(float)));
    if (t->scores == NULL)
        return PYLLM_ERR_MEMORY;
    PYLLM_TRY(pyllm_prefix_matcher_init(&t->user_defined));

    int bytes_found[256] = {0};
    int has_unused = 0;
    int words_start_at_space = !m->treat_whitespace_as_suffix;
    for (int32_t i = 0; i < m->n_pieces; i++) {
        const pyllm_spm_piece *p = &m->pieces[i];
        if (pyllm_vocab_find(&tab->vocab, p->text, p->len) >= 0)
            return pyllm_error(PYLLM_ERR_VALUE, "%s is not a valid SentencePiece model: piece %d '%.*s' repeats piece %d",
                               what, i, (int)p->len, p->text, pyllm_vocab_find(&tab->vocab, p->text, p->len));
        if (p->type < PYLLM_PIECE_NORMAL || p->type > PYLLM_PIECE_BYTE)
            return pyllm_error(PYLLM_ERR_VALUE, "%s: piece %d '%.*s' has unknown type %d (1 to 6 are known)", what, i,
                               (int)p->len, p->text, p->type);
        PYLLM_TRY(pyllm_token_table_append(tab, p->text, p->len, p->type));
        t->scores[i] = p->score;
        if ((p->type == PYLLM_PIECE_NORMAL || p->type == PYLLM_PIECE_USER_DEFINED || p->type == PYLLM_PIECE_UNUSED) &&
            !pyllm_spm_piece_allows_word_split(p->text, p->len))
            words_start_at_space = 0;
        switch (p->type) {
        case PYLLM_PIECE_USER_DEFINED:
            PYLLM_TRY(pyllm_prefix_matcher_add(&t->user_defined, p->text, p->len));
            break;
        case PYLLM_PIECE_UNKNOWN:
            if (tab->unk_id >= 0)
                return pyllm_error(PYLLM_ERR_VALUE, "%s is not a valid SentencePiece model: two unknown pieces (%d, %d)",
                                   what, tab->unk_id, i);
            tab->unk_id = i;
            break;
        case PYLLM_PIECE_UNUSED:
            has_unused = 1;
            break;
        case PYLLM_PIECE_BYTE: {
            if (!m->byte_fallback)
                return pyllm_error(PYLLM_ERR_VALUE,
                                   "%s is not a valid SentencePiece model: byte piece '%.*s' without byte_fallback", what,
                                   (int)p->len, p->text);
            int b = byte_of_piece(p->text, p->len);
            if (b < 0)
                return pyllm_error(PYLLM_ERR_VALUE, "%s is not a valid SentencePiece model: invalid byte piece '%.*s'",
                                   what, (int)p->len, p->text);
            bytes_found[b] = 1;
            t->byte_ids[b] = i;
            break;
        }
        default:
            break;
        }
    }
    if (tab->unk_id < 0)
        return pyllm_error(PYLLM_ERR_VALUE, "%s is not a valid SentencePiece model: it has no unknown piece", what);
    if (m->byte_fallback)
        for (int b = 0; b < 256; b++)
            if (!bytes_found[b])
                return pyllm_error(PYLLM_ERR_VALUE,
                                   "%s is not a valid SentencePiece model: byte_fallback is on but <0x%02X> is missing",
                                   what, b);

    tab->byte_fallback = m->byte_fallback;
    t->split_digits = m->split_digits;
    tab->bos_id = m->bos_piece ? named_piece(tab, m->bos_piece, PYLLM_PIECE_CONTROL) : -1;
    tab->eos_id = m->eos_piece ? named_piece(tab, m->eos_piece, PYLLM_PIECE_CONTROL) : -1;
    tab->pad_id = m->pad_piece ? named_piece(tab, m->pad_piece, PYLLM_PIECE_CONTROL) : -1;
    size_t surface_len = strlen(m->unk_surface);
    t->unk_surface = pyllm_alloc(surface_len + 1);
    if (t->unk_surface == NULL)
        return PYLLM_ERR_MEMORY;
    memcpy(t->unk_surface, m->unk_surface, surface_len + 1);

    t->add_dummy_prefix = m->normalizer.add_dummy_prefix;
    t->remove_extra_whitespaces = m->normalizer.remove_extra_whitespaces;
    PYLLM_TRY(pyllm_spm_normalizer_init(&t->normalizer, &m->normalizer, m->treat_whitespace_as_suffix,
                                        &t->user_defined));
    if (m->denormalizer.present && m->denormalizer.charsmap != NULL) {
        PYLLM_TRY(pyllm_spm_normalizer_init(&t->denormalizer, &m->denormalizer, 0, NULL));
        t->has_denormalizer = 1;
    }

    /* Control pieces and <unk> written in the text are split out, as transformers does. */
    for (int32_t i = 0; i < m->n_pieces; i++)
        if (tab->types[i] == PYLLM_PIECE_CONTROL || tab->types[i] == PYLLM_PIECE_UNKNOWN)
            PYLLM_TRY(pyllm_special_tokens_add(&tab->specials, m->pieces[i].text, m->pieces[i].len, i));

    t->bpe.vocab = &tab->vocab;
    t->bpe.n_pieces = tab->n_pieces;
    t->bpe.scores = t->scores;
    t->bpe.types = tab->types;
    t->bpe.user_defined = &t->user_defined;
    t->bpe.has_unused = has_unused;
    /* Unused pieces are split back using the last split of their text seen anywhere in the
     * input, so those models must see the whole text at once. */
    t->bpe.words_start_at_space = words_start_at_space && !has_unused;
    t->bpe.unk_id = tab->unk_id;
    t->bpe.byte_fallback = tab->byte_fallback;
    t->bpe.byte_ids = t->byte_ids;
    return PYLLM_OK;
}

pyllm_status pyllm_spm_tokenizer_from_proto(pyllm_spm_tokenizer *t, const void *data, size_t len)
{
    pyllm_spm_model model;
    PYLLM_TRY(pyllm_spm_model_parse(data, len, &model));
    pyllm_status st = build(t, &model, "tokenizer.model");
    pyllm_spm_model_free(&model);
    return st;
}

static int32_t read_i32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}

/* Convert llama2.c's pieces back to SentencePiece form and describe the model it came from. */
static pyllm_status llama2c_model(const uint8_t *data, size_t len, int32_t vocab_size, pyllm_spm_model *m,
                                  pyllm_bytes *texts)
{
    const char *what = "the llama2.c tokenizer file";
    if (vocab_size <= 0)
        return pyllm_error(PYLLM_ERR_VALUE, "vocab_size must be positive, got %d", vocab_size);
    if (len < 4)
        return pyllm_error(PYLLM_ERR_VALUE, "%s has %zu bytes: too short for its header", what, len);
    /* each token takes at least 9 bytes: this also bounds the allocations below */
    if ((size_t)vocab_size > (len - 4) / 9)
        return pyllm_error(PYLLM_ERR_VALUE, "%s has %zu bytes, too few for %d tokens: is vocab_size right?", what,
                           len, vocab_size);
    int32_t max_token_length = read_i32(data);
    if (max_token_length <= 0)
        return pyllm_error(PYLLM_ERR_VALUE, "%s is malformed: max_token_length is %d", what, max_token_length);
    m->pieces = pyllm_calloc((size_t)vocab_size, sizeof(pyllm_spm_piece));
    if (m->pieces == NULL)
        return PYLLM_ERR_MEMORY;
    size_t *offsets = pyllm_alloc(pyllm_mul_size((size_t)vocab_size, sizeof(size_t)));
    if (offsets == NULL)
        return PYLLM_ERR_MEMORY;
    pyllm_status st = PYLLM_OK;
    size_t pos = 4;
    for (int32_t i = 0; i < vocab_size && st == PYLLM_OK; i++) {
        if (len - pos < 8) {
            st = pyllm_error(PYLLM_ERR_VALUE, "%s ends after %d of %d tokens: is vocab_size right?", what, i,
                             vocab_size);
            break;
        }
        float score;
        memcpy(&score, data + pos, 4);
        int32_t n = read_i32(data + pos + 4);
        pos += 8;
        if (n <= 0 || (size_t)n > len - pos) {
            st = pyllm_error(PYLLM_ERR_VALUE, "%s is malformed at token %d (length %d): is vocab_size right?", what,
                             i, n);
            break;
        }
        const char *s = (const char *)data + pos;
        pos += (size_t)n;
        offsets[i] = texts->len;
        m->pieces[i].score = score;
        if (n == 5 && memcmp(s, "\n<s>\n", 5) == 0) {
            st = pyllm_bytes_append(texts, "<s>", 3);
        } else if (n == 6 && memcmp(s, "\n</s>\n", 6) == 0) {
            st = pyllm_bytes_append(texts, "</s>", 4);
        } else {
            for (int32_t k = 0; k < n && st == PYLLM_OK; k++)
                st = s[k] == ' ' ? pyllm_bytes_append(texts, SPACE_SYMBOL, 3) : pyllm_bytes_append(texts, s + k, 1);
        }
        m->pieces[i].len = texts->len - offsets[i];
    }
    if (st == PYLLM_OK && pos != len)
        st = pyllm_error(PYLLM_ERR_VALUE, "%s has %zu bytes left after %d tokens: is vocab_size right?", what,
                         len - pos, vocab_size);
    if (st == PYLLM_OK) {
        for (int32_t i = 0; i < vocab_size; i++) {
            pyllm_spm_piece *p = &m->pieces[i];
            p->text = texts->data + offsets[i];
            if (p->len == 5 && memcmp(p->text, "<unk>", 5) == 0)
                p->type = PYLLM_PIECE_UNKNOWN;
            else if ((p->len == 3 && memcmp(p->text, "<s>", 3) == 0) || (p->len == 4 && memcmp(p->text, "</s>", 4) == 0))
                p->type = PYLLM_PIECE_CONTROL;
            else if (byte_of_piece(p->text, p->len) >= 0)
                p->type = PYLLM_PIECE_BYTE;
            else
                p->type = PYLLM_PIECE_NORMAL;
        }
        m->n_pieces = vocab_size;
    }
    pyllm_free(offsets);
    return st;
}

pyllm_status pyllm_spm_tokenizer_from_llama2c(pyllm_spm_tokenizer *t, const void *data, size_t len,
                                              int32_t vocab_size)
{
    pyllm_spm_model model;
    memset(&model, 0, sizeof model);
    pyllm_bytes texts = {0};
    pyllm_status st = llama2c_model(data, len, vocab_size, &model, &texts);
    if (st == PYLLM_OK) {
        /* The LLaMA recipe: BPE, byte fallback, identity normalizer with a dummy prefix. */
        model.model_type = PYLLM_SPM_BPE;
        model.byte_fallback = 1;
        model.normalizer.present = 1;
        model.normalizer.add_dummy_prefix = 1;
        model.normalizer.remove_extra_whitespaces = 0;
        model.normalizer.escape_whitespaces = 1;
        model.unk_piece = "<unk>";
        model.bos_piece = "<s>";
        model.eos_piece = "</s>";
        model.pad_piece = "<pad>";
        model.unk_surface = " \xE2\x81\x87 ";
        st = build(t, &model, "the llama2.c tokenizer file");
    }
    pyllm_free(model.pieces);
    pyllm_bytes_free(&texts);
    return st;
}

pyllm_status pyllm_spm_tokenizer_from_pieces(pyllm_spm_tokenizer *t, const char *const *texts,
                                             const size_t *lengths, const float *scores, const int32_t *types,
                                             int32_t n, const pyllm_spm_options *options, const char *what)
{
    if (n <= 0)
        return pyllm_error(PYLLM_ERR_VALUE, "%s has no tokens", what);
    pyllm_spm_model model;
    memset(&model, 0, sizeof model);
    model.pieces = pyllm_calloc((size_t)n, sizeof(pyllm_spm_piece));
    if (model.pieces == NULL)
        return PYLLM_ERR_MEMORY;
    for (int32_t i = 0; i < n; i++) {
        model.pieces[i] = (pyllm_spm_piece){.text = texts[i], .len = lengths[i], .score = scores[i], .type = types[i]};
        model.byte_fallback |= types[i] == PYLLM_PIECE_BYTE;
    }
    model.n_pieces = n;
    model.model_type = PYLLM_SPM_BPE;
    model.normalizer.present = 1;
    model.normalizer.add_dummy_prefix = options->add_dummy_prefix;
    model.normalizer.remove_extra_whitespaces = options->remove_extra_whitespaces;
    model.normalizer.escape_whitespaces = 1;
    model.unk_surface = " \xE2\x81\x87 "; /* SentencePiece's default: " ⁇ " */
    pyllm_status st = build(t, &model, what);
    pyllm_free(model.pieces);
    return st;
}

pyllm_status pyllm_spm_tokenizer_add_token(pyllm_spm_tokenizer *t, const char *text, size_t len, int32_t id,
                                           int special)
{
    int existed;
    PYLLM_TRY(pyllm_token_table_add_token(&t->table, text, len, id, special, &existed));
    t->bpe.types = t->table.types; /* the table may have grown */
    return PYLLM_OK;
}

/* Normalize and BPE-encode a stretch of text without special tokens. */
static pyllm_status encode_plain(const pyllm_spm_tokenizer *t, const char *text, size_t len, int allow_dummy,
                                 pyllm_bytes *scratch, pyllm_ids *out, pyllm_tok_work *work)
{
    if (len == 0)
        return PYLLM_OK;
    PYLLM_TRY(pyllm_spm_normalize(&t->normalizer, text, len, allow_dummy, scratch, &work->normalizer_steps));
    return pyllm_spm_bpe_encode(&t->bpe, scratch->data, scratch->len, out, &work->bpe_steps);
}

pyllm_status pyllm_spm_tokenizer_encode(const pyllm_spm_tokenizer *t, const char *text, size_t len, int flags,
                                        pyllm_ids *out)
{
    pyllm_tok_work work = {0};
    return pyllm_spm_tokenizer_encode_counted(t, text, len, flags, out, &work);
}

pyllm_status pyllm_spm_tokenizer_encode_counted(const pyllm_spm_tokenizer *t, const char *text, size_t len,
                                                int flags, pyllm_ids *out, pyllm_tok_work *work)
{
    pyllm_bytes scratch = {0};
    pyllm_status st = PYLLM_OK;
    int allow_dummy = 1;
    if (flags & PYLLM_ENCODE_SPLIT_SPECIALS) {
        size_t start, match_len;
        int32_t id;
        while (st == PYLLM_OK && pyllm_special_tokens_find(&t->table.specials, text, len, &start, &match_len, &id,
                                                           &work->special_steps)) {
            st = encode_plain(t, text, start, allow_dummy, &scratch, out, work);
            if (flags & PYLLM_ENCODE_NO_PREFIX_AFTER_SPECIAL)
                allow_dummy = 0;
            if (st == PYLLM_OK)
                st = pyllm_ids_push(out, id);
            text += start + match_len;
            len -= start + match_len;
        }
    }
    if (st == PYLLM_OK)
        st = encode_plain(t, text, len, allow_dummy, &scratch, out, work);
    pyllm_bytes_free(&scratch);
    return st;
}

/* Write a run of byte pieces: each well-formed UTF-8 character as is, each other byte as U+FFFD. */
static pyllm_status flush_bytes(pyllm_bytes *pending, pyllm_bytes *out)
{
    size_t pos = 0;
    while (pos < pending->len) {
        size_t c = pyllm_utf8_valid_char_len(pending->data + pos, pending->len - pos);
        if (c == 0) {
            PYLLM_TRY(pyllm_bytes_append(out, "\xEF\xBF\xBD", 3));
            pos++;
        } else {
            PYLLM_TRY(pyllm_bytes_append(out, pending->data + pos, c));
            pos += c;
        }
    }
    pending->len = 0;
    return PYLLM_OK;
}

static pyllm_status decode_into(const pyllm_spm_tokenizer *t, const int32_t *ids, size_t n, int skip_specials,
                                pyllm_bytes *pending, pyllm_bytes *out)
{
    int expect_bos_space = 1; /* the dummy prefix of the first piece is not part of the text */
    int bos_space_seen = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->table.vocab.n_tokens)
            return pyllm_error(PYLLM_ERR_INDEX, "token id %d at position %zu is out of range [0, %d)", id, i,
                               t->table.vocab.n_tokens);
        size_t len;
        const char *piece = pyllm_vocab_token(&t->table.vocab, id, &len);
        int type = t->table.types[id];
        if (type == PYLLM_PIECE_BYTE) {
            char b = (char)byte_of_piece(piece, len);
            PYLLM_TRY(pyllm_bytes_append(pending, &b, 1));
            continue;
        }
        PYLLM_TRY(flush_bytes(pending, out));
        if (bos_space_seen || out->len > 0)
            expect_bos_space = 0;
        bos_space_seen = 0;
        if (type == PYLLM_PIECE_CONTROL) {
            if (!skip_specials)
                PYLLM_TRY(pyllm_bytes_append(out, piece, len));
        } else if (type == PYLLM_PIECE_UNKNOWN) {
            if (skip_specials)
                PYLLM_TRY(pyllm_bytes_append(out, t->unk_surface, strlen(t->unk_surface)));
            else
                PYLLM_TRY(pyllm_bytes_append(out, piece, len));
        } else {
            if (expect_bos_space && (t->add_dummy_prefix || t->remove_extra_whitespaces) && len >= 3 &&
                memcmp(piece, SPACE_SYMBOL, 3) == 0) {
                piece += 3;
                len -= 3;
                /* removing extra whitespace drops every leading space, so keep expecting one */
                bos_space_seen = !t->remove_extra_whitespaces;
            }
            PYLLM_TRY(pyllm_bytes_append_replaced(out, piece, len, SPACE_SYMBOL, 3, " ", 1));
        }
    }
    return flush_bytes(pending, out);
}

pyllm_status pyllm_spm_tokenizer_decode(const pyllm_spm_tokenizer *t, const int32_t *ids, size_t n,
                                        int skip_specials, pyllm_bytes *out)
{
    pyllm_bytes pending = {0};
    out->len = 0;
    PYLLM_TRY(pyllm_bytes_append(out, "", 0));
    pyllm_status st = decode_into(t, ids, n, skip_specials, &pending, out);
    pyllm_bytes_free(&pending);
    if (st != PYLLM_OK || !t->has_denormalizer)
        return st;
    pyllm_bytes denormalized = {0};
    uint64_t steps = 0;
    st = pyllm_spm_normalize(&t->denormalizer, out->data, out->len, 1, &denormalized, &steps);
    if (st == PYLLM_OK) {
        out->len = 0;
        st = pyllm_bytes_append(out, denormalized.data, denormalized.len);
    }
    pyllm_bytes_free(&denormalized);
    return st;
}
