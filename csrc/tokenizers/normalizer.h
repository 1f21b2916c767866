/* SentencePiece's normalizer: the precompiled charsmap (a darts-clone double-array trie whose
 * longest matching rule replaces a prefix of the text), then the whitespace rules
 * (remove_extra_whitespaces, add_dummy_prefix, escape_whitespaces as U+2581, and the
 * dummy suffix of treat_whitespace_as_suffix). User-defined symbols pass through untouched. */
#ifndef PYLLM_TOKENIZERS_NORMALIZER_H
#define PYLLM_TOKENIZERS_NORMALIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/buffers.h"
#include "tokenizers/prefix_matcher.h"
#include "tokenizers/sentencepiece_model.h"
#include "tokenizers/work.h"

typedef struct {
    uint32_t *trie;       /* double-array units; NULL for the identity normalizer */
    size_t n_units;
    char *replacements;   /* NUL-separated replacement strings, NUL-terminated copy */
    size_t replacements_len;
    int add_dummy_prefix;
    int remove_extra_whitespaces;
    int escape_whitespaces;
    int treat_whitespace_as_suffix;
    const pyllm_prefix_matcher *user_defined; /* borrowed; may be NULL */
} pyllm_spm_normalizer;

pyllm_status pyllm_spm_normalizer_init(pyllm_spm_normalizer *n, const pyllm_spm_normalizer_spec *spec,
                                       int treat_whitespace_as_suffix, const pyllm_prefix_matcher *user_defined);
void pyllm_spm_normalizer_free(pyllm_spm_normalizer *n);

/* Normalize text[0..len) into out (cleared first). With allow_dummy=0 the dummy prefix (or
 * suffix) is left out even when the spec asks for it. *steps grows by the trie units walked, the
 * user-symbol probes and the bytes consumed: each rule or character consumes at least one byte. */
pyllm_status pyllm_spm_normalize(const pyllm_spm_normalizer *n, const char *text, size_t len, int allow_dummy,
                                 pyllm_bytes *out, uint64_t *steps);

#endif
