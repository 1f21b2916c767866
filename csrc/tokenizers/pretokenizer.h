/* The normalizers and pre-tokenizers of tokenizer.json that byte-level and SentencePiece-style
 * BPE files use, as a list of steps run over pieces of text: Prepend, Replace (string),
 * Split (regex or string, five behaviours, invert), ByteLevel, Digits, Metaspace. */
#ifndef PYLLM_TOKENIZERS_PRETOKENIZER_H
#define PYLLM_TOKENIZERS_PRETOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizers/buffers.h"
#include "tokenizers/literal.h"
#include "tokenizers/regex.h"
#include "tokenizers/work.h"

typedef enum {
    PYLLM_STEP_PREPEND,    /* s1: text put before a non-empty piece */
    PYLLM_STEP_REPLACE,    /* lit -> s2 everywhere (an empty lit: before every character and at the end) */
    PYLLM_STEP_SPLIT,      /* re or lit (empty: matches everywhere); a = behaviour, b = invert */
    PYLLM_STEP_BYTE_LEVEL, /* a = add_prefix_space, b = use_regex */
    PYLLM_STEP_DIGITS,     /* a = individual_digits */
    PYLLM_STEP_METASPACE,  /* s1 = lit = replacement (not empty); a = prepend scheme; b = split */
} pyllm_step_kind;

typedef enum {
    PYLLM_SPLIT_REMOVED, PYLLM_SPLIT_ISOLATED, PYLLM_SPLIT_MERGED_WITH_PREVIOUS, PYLLM_SPLIT_MERGED_WITH_NEXT,
    PYLLM_SPLIT_CONTIGUOUS,
} pyllm_split_behavior;

typedef enum { PYLLM_PREPEND_ALWAYS, PYLLM_PREPEND_NEVER, PYLLM_PREPEND_FIRST } pyllm_prepend_scheme;

typedef struct {
    pyllm_step_kind kind;
    char *s1, *s2;
    size_t len1, len2;
    pyllm_regex *re;
    pyllm_literal lit;     /* s1 as a search pattern: REPLACE, literal SPLIT, METASPACE */
    int a, b;
} pyllm_step;

/* Pieces of text: piece i is text[start[i], end[i]). */
typedef struct {
    pyllm_bytes text;
    size_t *start, *end;
    uint8_t *at_text_start; /* the piece begins at offset 0 of the whole input */
    size_t n, cap;
} pyllm_pieces;

void pyllm_pieces_free(pyllm_pieces *p);
pyllm_status pyllm_pieces_push(pyllm_pieces *p, const char *s, size_t len, int at_text_start);

/* The regex ByteLevel(use_regex=true) splits with (GPT-2's). */
extern const char PYLLM_GPT2_PATTERN[];

/* Build a step; strings are copied. For SPLIT, is_regex says whether s1 is a regex. Every
 * configuration either makes progress on any text or is refused here with a ValueError. */
pyllm_status pyllm_step_init(pyllm_step *s, pyllm_step_kind kind, const char *s1, size_t len1, const char *s2,
                             size_t len2, int is_regex, int a, int b);
void pyllm_step_free(pyllm_step *s);

/* Run the steps over in (in is consumed, the result is left in in), adding their work to *work. */
pyllm_status pyllm_steps_run_counted(const pyllm_step *steps, size_t n_steps, pyllm_pieces *in,
                                     pyllm_tok_work *work);
/* The same, work not reported. */
pyllm_status pyllm_steps_run(const pyllm_step *steps, size_t n_steps, pyllm_pieces *in);

#endif
