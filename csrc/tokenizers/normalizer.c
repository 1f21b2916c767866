#include "tokenizers/normalizer.h"

#include <string.h>

#include "core/alloc.h"
#include "tokenizers/utf8.h"

static const char SPACE_SYMBOL[] = "\xE2\x96\x81"; /* U+2581, how SentencePiece writes ' ' */
static const char REPLACEMENT_CHAR[] = "\xEF\xBF\xBD"; /* U+FFFD for a malformed byte */

pyllm_status pyllm_spm_normalizer_init(pyllm_spm_normalizer *n, const pyllm_spm_normalizer_spec *spec,
                                       int treat_whitespace_as_suffix, const pyllm_prefix_matcher *user_defined)
{
    memset(n, 0, sizeof *n);
    n->add_dummy_prefix = spec->add_dummy_prefix;
    n->remove_extra_whitespaces = spec->remove_extra_whitespaces;
    n->escape_whitespaces = spec->escape_whitespaces;
    n->treat_whitespace_as_suffix = treat_whitespace_as_suffix;
    n->user_defined = user_defined;
    if (spec->charsmap == NULL)
        return PYLLM_OK;

    /* <uint32 trie size in bytes><trie units><replacement strings> */
    const uint8_t *blob = spec->charsmap;
    size_t len = spec->charsmap_len;
    if (len <= 4)
        return pyllm_error(PYLLM_ERR_VALUE, "the precompiled charsmap of tokenizer.model is broken: %zu bytes", len);
    uint32_t trie_size = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 |
                         (uint32_t)blob[3] << 24;
    if ((size_t)trie_size > len - 4 || trie_size % 4 != 0 || trie_size == 0)
        return pyllm_error(PYLLM_ERR_VALUE,
                           "the precompiled charsmap of tokenizer.model is broken: trie of %u bytes in a blob of %zu",
                           trie_size, len);
    n->n_units = trie_size / 4;
    n->trie = pyllm_alloc(trie_size);
    n->replacements_len = len - 4 - trie_size;
    n->replacements = pyllm_alloc(n->replacements_len + 1);
    if (n->trie == NULL || n->replacements == NULL) {
        pyllm_spm_normalizer_free(n);
        return PYLLM_ERR_MEMORY;
    }
    for (size_t i = 0; i < n->n_units; i++) {
        const uint8_t *u = blob + 4 + 4 * i;
        n->trie[i] = (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
    }
    memcpy(n->replacements, blob + 4 + trie_size, n->replacements_len);
    n->replacements[n->replacements_len] = '\0'; /* a bad offset can never run off the end */
    return PYLLM_OK;
}

void pyllm_spm_normalizer_free(pyllm_spm_normalizer *n)
{
    pyllm_free(n->trie);
    pyllm_free(n->replacements);
    n->trie = NULL;
    n->replacements = NULL;
}

/* darts-clone unit fields */
static inline int unit_has_leaf(uint32_t u) { return (u >> 8) & 1; }
static inline uint32_t unit_value(uint32_t u) { return u & 0x7FFFFFFFu; }
static inline uint32_t unit_label(uint32_t u) { return u & (0x80000000u | 0xFFu); }
static inline uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

/* Rules match a few characters (NFKC's longest are well under this); a broken or hostile trie can
 * loop back on itself, and without a bound would walk to the end of the text at every position. */
enum { MAX_RULE_BYTES = 256 };

/* Length of the longest rule that text starts with (0 when none) and its replacement offset. */
static size_t longest_rule(const pyllm_spm_normalizer *n, const char *text, size_t len, uint32_t *value,
                           uint64_t *steps)
{
    size_t best = 0;
    size_t pos = unit_offset(n->trie[0]);
    if (len > MAX_RULE_BYTES)
        len = MAX_RULE_BYTES;
    for (size_t i = 0; i < len; i++) {
        ++*steps;
        unsigned char c = (unsigned char)text[i];
        pos ^= c;
        if (pos >= n->n_units)
            break;
        uint32_t unit = n->trie[pos];
        if (unit_label(unit) != c)
            break;
        pos ^= unit_offset(unit);
        if (unit_has_leaf(unit)) {
            if (pos >= n->n_units)
                break;
            best = i + 1;
            *value = unit_value(n->trie[pos]);
        }
    }
    return best;
}

/* The normalized form of the longest rule, user symbol or character at text:
 * out and out_len receive what to write, the return value how many input bytes it consumes. */
static size_t normalize_prefix(const pyllm_spm_normalizer *n, const char *text, size_t len, const char **out,
                               size_t *out_len, uint64_t *steps)
{
    ++*steps;
    if (n->user_defined != NULL && !pyllm_prefix_matcher_empty(n->user_defined)) {
        size_t m = pyllm_prefix_matcher_match(n->user_defined, text, len, steps);
        if (m) {
            *out = text;
            *out_len = m;
            return m;
        }
    }
    if (n->trie != NULL) {
        uint32_t value = 0;
        size_t rule = longest_rule(n, text, len, &value, steps);
        if (rule) {
            if (value > n->replacements_len)
                value = (uint32_t)n->replacements_len;
            *out = n->replacements + value;
            *out_len = strlen(*out);
            return rule;
        }
    }
    size_t c = pyllm_utf8_valid_char_len(text, len);
    if (c == 0) {
        *out = REPLACEMENT_CHAR;
        *out_len = 3;
        return 1;
    }
    *out = text;
    *out_len = c;
    return c;
}

static pyllm_status add_space(const pyllm_spm_normalizer *n, pyllm_bytes *out)
{
    return n->escape_whitespaces ? pyllm_bytes_append(out, SPACE_SYMBOL, 3) : pyllm_bytes_append(out, " ", 1);
}

pyllm_status pyllm_spm_normalize(const pyllm_spm_normalizer *n, const char *text, size_t len, int allow_dummy,
                                 pyllm_bytes *out, uint64_t *steps)
{
    int dummy = n->add_dummy_prefix && allow_dummy;
    const char *piece;
    size_t piece_len, used;
    out->len = 0;
    if (len == 0)
        return PYLLM_OK;

    /* Leading whitespace goes first (judged after normalization: a rule may yield " "). */
    if (n->remove_extra_whitespaces) {
        while (len > 0) {
            used = normalize_prefix(n, text, len, &piece, &piece_len, steps);
            if (piece_len != 1 || piece[0] != ' ')
                break;
            text += used;
            len -= used;
        }
    }
    if (len == 0)
        return PYLLM_OK;

    /* Normalized text is rarely longer than 3x the input (a space becomes 3 bytes). */
    PYLLM_TRY(pyllm_bytes_reserve(out, len * 3 + 8));
    if (!n->treat_whitespace_as_suffix && dummy)
        PYLLM_TRY(add_space(n, out));

    int is_prev_space = n->remove_extra_whitespaces;
    while (len > 0) {
        used = normalize_prefix(n, text, len, &piece, &piece_len, steps);
        /* Collapse runs of spaces: drop the spaces that follow a piece ending in one. */
        while (is_prev_space && piece_len > 0 && piece[0] == ' ') {
            piece++;
            piece_len--;
        }
        if (piece_len > 0) {
            size_t start = 0;
            for (size_t i = 0; i < piece_len; i++) {
                if (n->escape_whitespaces && piece[i] == ' ') {
                    PYLLM_TRY(pyllm_bytes_append(out, piece + start, i - start));
                    PYLLM_TRY(pyllm_bytes_append(out, SPACE_SYMBOL, 3));
                    start = i + 1;
                }
            }
            PYLLM_TRY(pyllm_bytes_append(out, piece + start, piece_len - start));
            is_prev_space = piece[piece_len - 1] == ' ';
        }
        text += used;
        len -= used;
        if (!n->remove_extra_whitespaces)
            is_prev_space = 0;
    }

    if (n->remove_extra_whitespaces) {
        const char *space = n->escape_whitespaces ? SPACE_SYMBOL : " ";
        size_t space_len = n->escape_whitespaces ? 3 : 1;
        while (out->len >= space_len && memcmp(out->data + out->len - space_len, space, space_len) == 0)
            out->len -= space_len;
    }
    if (n->treat_whitespace_as_suffix && dummy)
        PYLLM_TRY(add_space(n, out));
    if (out->data != NULL)
        out->data[out->len] = '\0';
    return PYLLM_OK;
}
