#include "tokenizers/pretokenizer.h"

#include <string.h>

#include "core/alloc.h"
#include "tokenizers/unicode.h"
#include "tokenizers/utf8.h"

const char PYLLM_GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

void pyllm_pieces_free(pyllm_pieces *p)
{
    pyllm_bytes_free(&p->text);
    pyllm_free(p->start);
    memset(p, 0, sizeof *p);
}

static pyllm_status pieces_reserve(pyllm_pieces *p)
{
    if (p->n < p->cap)
        return PYLLM_OK;
    size_t cap = p->cap ? p->cap * 2 : 16;
    size_t *mem = pyllm_alloc(pyllm_mul_size(cap, 2 * sizeof(size_t) + 1));
    if (mem == NULL)
        return PYLLM_ERR_MEMORY;
    if (p->n) {
        memcpy(mem, p->start, p->n * sizeof(size_t));
        memcpy(mem + cap, p->end, p->n * sizeof(size_t));
        memcpy(mem + 2 * cap, p->at_text_start, p->n);
    }
    pyllm_free(p->start);
    p->start = mem;
    p->end = mem + cap;
    p->at_text_start = (uint8_t *)(mem + 2 * cap);
    p->cap = cap;
    return PYLLM_OK;
}

static pyllm_status push_span(pyllm_pieces *out, size_t a, size_t b, int at_text_start)
{
    PYLLM_TRY(pieces_reserve(out));
    out->start[out->n] = a;
    out->end[out->n] = b;
    out->at_text_start[out->n] = (uint8_t)at_text_start;
    out->n++;
    return PYLLM_OK;
}

/* A new piece made of the bytes appended to text since `from`. */
static pyllm_status close_piece(pyllm_pieces *p, size_t from, int at_text_start)
{
    return push_span(p, from, p->text.len, at_text_start);
}

pyllm_status pyllm_pieces_push(pyllm_pieces *p, const char *s, size_t len, int at_text_start)
{
    size_t from = p->text.len;
    PYLLM_TRY(pyllm_bytes_append(&p->text, s, len));
    return close_piece(p, from, at_text_start);
}

pyllm_status pyllm_step_init(pyllm_step *s, pyllm_step_kind kind, const char *s1, size_t len1, const char *s2,
                             size_t len2, int is_regex, int a, int b)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->a = a;
    s->b = b;
    if (kind == PYLLM_STEP_BYTE_LEVEL && b)
        return pyllm_regex_compile(PYLLM_GPT2_PATTERN, strlen(PYLLM_GPT2_PATTERN), &s->re);
    if (kind == PYLLM_STEP_SPLIT && is_regex)
        return pyllm_regex_compile(s1, len1, &s->re);
    /* an empty replacement would split at nothing and never advance (tokenizers wants one char) */
    if (kind == PYLLM_STEP_METASPACE && len1 == 0)
        return pyllm_error(PYLLM_ERR_VALUE, "Metaspace: replacement must not be empty");
    if (kind == PYLLM_STEP_SPLIT || kind == PYLLM_STEP_REPLACE || kind == PYLLM_STEP_METASPACE)
        PYLLM_TRY(pyllm_literal_init(&s->lit, s1, len1));
    s->s1 = pyllm_alloc(len1 + 1);
    s->s2 = pyllm_alloc(len2 + 1);
    if (s->s1 == NULL || s->s2 == NULL)
        return PYLLM_ERR_MEMORY;
    if (len1)
        memcpy(s->s1, s1, len1);
    if (len2)
        memcpy(s->s2, s2, len2);
    s->len1 = len1;
    s->len2 = len2;
    return PYLLM_OK;
}

void pyllm_step_free(pyllm_step *s)
{
    pyllm_free(s->s1);
    pyllm_free(s->s2);
    pyllm_regex_free(s->re);
    pyllm_literal_free(&s->lit);
    memset(s, 0, sizeof *s);
}

/* Next match of a Split/Digits/Metaspace pattern in piece[from..len): regex, numeric character or
 * literal (an empty literal matches, empty, right at `from`). 1 with [*ms, *me), 0 when there is
 * none, -1 when the regex ran out of budget. */
static int next_match(const pyllm_step *s, const char *piece, size_t len, size_t from, size_t *ms, size_t *me,
                      pyllm_regex_budget *budget, pyllm_tok_work *work)
{
    if (s->re != NULL)
        return pyllm_regex_find_counted(s->re, piece, len, from, ms, me, budget);
    if (s->kind == PYLLM_STEP_DIGITS) {
        for (size_t pos = from; pos < len;) {
            uint32_t cp;
            size_t k = pyllm_utf8_decode_lossy(piece + pos, len - pos, &cp);
            work->pre_tokenizer_steps++;
            if (pyllm_unicode_rust_numeric(cp)) {
                *ms = pos;
                *me = pos + k;
                return 1;
            }
            pos += k;
        }
        return 0;
    }
    if (s->lit.len == 0) {
        *ms = *me = from;
        return from <= len;
    }
    size_t at = pyllm_literal_find(&s->lit, piece, len, from, &work->pre_tokenizer_steps);
    if (at == SIZE_MAX)
        return 0;
    *ms = at;
    *me = at + s->lit.len;
    return 1;
}

/* Where the parts of a piece being split go, and what the previous part was. */
typedef struct {
    pyllm_pieces *out;
    size_t first_piece;  /* pieces of out before this index belong to earlier input pieces */
    int behavior;
    int previous_match;
} splitter;

/* One part [a, b) of the text in out, a match or the gap before one, handled as tokenizers'
 * SplitDelimiterBehavior says. */
static pyllm_status emit_part(splitter *sp, size_t a, size_t b, int is_match, int at_text_start)
{
    pyllm_pieces *out = sp->out;
    int has_last = out->n > sp->first_piece;
    int extend = 0;
    switch (sp->behavior) {
    case PYLLM_SPLIT_REMOVED:
        if (is_match) {
            sp->previous_match = 1;
            return PYLLM_OK;
        }
        break;
    case PYLLM_SPLIT_ISOLATED:
        break;
    case PYLLM_SPLIT_MERGED_WITH_PREVIOUS: /* a match joins the piece before it */
        extend = is_match && !sp->previous_match && has_last;
        break;
    case PYLLM_SPLIT_MERGED_WITH_NEXT:     /* a match opens the piece that the next gap joins */
        extend = !is_match && sp->previous_match && has_last;
        break;
    case PYLLM_SPLIT_CONTIGUOUS:           /* adjacent parts of one kind form one piece */
        extend = is_match == sp->previous_match && has_last;
        break;
    }
    sp->previous_match = is_match;
    if (extend) {
        out->end[out->n - 1] = b;
        return PYLLM_OK;
    }
    return push_span(out, a, b, at_text_start);
}

static pyllm_status budget_exhausted(const pyllm_step *s, size_t len, const pyllm_regex_budget *budget)
{
    return pyllm_error(PYLLM_ERR_VALUE,
                       "Split: regex '%.200s' needed more than %llu steps for a piece of %zu bytes: it backtracks "
                       "too much to run on this text (a pattern with nested optional alternatives or repeated "
                       "overlapping classes)",
                       pyllm_regex_pattern(s->re), (unsigned long long)budget->limit, len);
}

/* Split one piece (copied into out) by the step's matches, found as tokenizers finds them (its
 * onig find_iter): an empty match is kept, except right where the previous match ended, where
 * the search moves one character on instead. Every turn advances, so the loop ends. */
static pyllm_status split_piece(const pyllm_step *s, int behavior, int invert, const char *piece, size_t len,
                                int at_start, pyllm_pieces *out, pyllm_tok_work *work)
{
    size_t base = out->text.len;
    PYLLM_TRY(pyllm_bytes_append(&out->text, piece, len));
    piece = out->text.data + base;
    splitter sp = {.out = out, .first_piece = out->n, .behavior = behavior};
    pyllm_regex_budget budget = {0, s->re != NULL ? pyllm_regex_budget_for(s->re, len) : 0};
    size_t from = 0, prev = 0, last_end = 0, ms, me;
    int found, any = 0;
    pyllm_status st = PYLLM_OK;
    while (st == PYLLM_OK && from <= len && (found = next_match(s, piece, len, from, &ms, &me, &budget, work)) != 0) {
        if (found < 0) {
            st = budget_exhausted(s, len, &budget);
            break;
        }
        if (me == ms && any && ms == last_end) {
            if (ms >= len)
                break;
            from = ms + pyllm_utf8_char_len(piece + ms, len - ms);
            continue;
        }
        if (ms > prev)
            st = emit_part(&sp, base + prev, base + ms, invert, at_start && prev == 0);
        if (st == PYLLM_OK)
            st = emit_part(&sp, base + ms, base + me, !invert, at_start && ms == 0);
        prev = from = last_end = me;
        any = 1;
    }
    work->regex_steps += budget.steps;
    if (st == PYLLM_OK && prev < len)
        st = emit_part(&sp, base + prev, base + len, invert, at_start && prev == 0);
    /* empty parts only steer the merging behaviours; tokenizers drops them afterwards */
    size_t kept = sp.first_piece;
    for (size_t i = sp.first_piece; i < out->n; i++) {
        if (out->end[i] == out->start[i])
            continue;
        out->start[kept] = out->start[i];
        out->end[kept] = out->end[i];
        out->at_text_start[kept] = out->at_text_start[i];
        kept++;
    }
    out->n = kept;
    return st;
}

static pyllm_status run_step(const pyllm_step *s, const pyllm_pieces *in, pyllm_pieces *out, pyllm_tok_work *work)
{
    for (size_t i = 0; i < in->n; i++) {
        const char *piece = in->text.data + in->start[i];
        size_t len = in->end[i] - in->start[i];
        int at_start = in->at_text_start[i];
        size_t from = out->text.len;
        work->pre_tokenizer_steps += len + 1;
        switch (s->kind) {
        case PYLLM_STEP_PREPEND:
            if (len > 0)
                PYLLM_TRY(pyllm_bytes_append(&out->text, s->s1, s->len1));
            PYLLM_TRY(pyllm_bytes_append(&out->text, piece, len));
            PYLLM_TRY(close_piece(out, from, at_start));
            break;
        case PYLLM_STEP_REPLACE:
            PYLLM_TRY(pyllm_literal_replace(&s->lit, piece, len, s->s2, s->len2, &out->text,
                                            &work->pre_tokenizer_steps));
            PYLLM_TRY(close_piece(out, from, at_start));
            break;
        case PYLLM_STEP_SPLIT:
            PYLLM_TRY(split_piece(s, s->a, s->b, piece, len, at_start, out, work));
            break;
        case PYLLM_STEP_DIGITS:
            PYLLM_TRY(split_piece(s, s->a ? PYLLM_SPLIT_ISOLATED : PYLLM_SPLIT_CONTIGUOUS, 0, piece, len, at_start,
                                  out, work));
            break;
        case PYLLM_STEP_BYTE_LEVEL:
            if (s->a && (len == 0 || piece[0] != ' ')) {
                /* the prefix space becomes part of the piece, then the piece is split as usual */
                pyllm_bytes spaced = {0};
                pyllm_status st = pyllm_bytes_append(&spaced, " ", 1);
                if (st == PYLLM_OK)
                    st = pyllm_bytes_append(&spaced, piece, len);
                if (st == PYLLM_OK)
                    st = s->b ? split_piece(s, PYLLM_SPLIT_ISOLATED, 0, spaced.data, spaced.len, at_start, out, work)
                              : pyllm_pieces_push(out, spaced.data, spaced.len, at_start);
                pyllm_bytes_free(&spaced);
                PYLLM_TRY(st);
            } else if (s->b) {
                PYLLM_TRY(split_piece(s, PYLLM_SPLIT_ISOLATED, 0, piece, len, at_start, out, work));
            } else {
                PYLLM_TRY(pyllm_pieces_push(out, piece, len, at_start));
            }
            break;
        case PYLLM_STEP_METASPACE: {
            int prepend = (s->a == PYLLM_PREPEND_ALWAYS || (s->a == PYLLM_PREPEND_FIRST && at_start)) &&
                          !(len >= s->len1 && memcmp(piece, s->s1, s->len1) == 0) &&
                          !(len > 0 && piece[0] == ' ');
            pyllm_bytes replaced = {0};
            pyllm_status st = prepend ? pyllm_bytes_append(&replaced, s->s1, s->len1) : PYLLM_OK;
            if (st == PYLLM_OK)
                st = pyllm_bytes_append_replaced(&replaced, piece, len, " ", 1, s->s1, s->len1);
            if (st == PYLLM_OK) {
                if (s->b) { /* split at each replacement (the step's literal), merged with what follows */
                    st = split_piece(s, PYLLM_SPLIT_MERGED_WITH_NEXT, 0, replaced.data, replaced.len, at_start, out,
                                     work);
                } else {
                    st = pyllm_pieces_push(out, replaced.data, replaced.len, at_start);
                }
            }
            pyllm_bytes_free(&replaced);
            PYLLM_TRY(st);
            break;
        }
        }
    }
    return PYLLM_OK;
}

pyllm_status pyllm_steps_run(const pyllm_step *steps, size_t n_steps, pyllm_pieces *in)
{
    pyllm_tok_work work = {0};
    return pyllm_steps_run_counted(steps, n_steps, in, &work);
}

pyllm_status pyllm_steps_run_counted(const pyllm_step *steps, size_t n_steps, pyllm_pieces *in,
                                     pyllm_tok_work *work)
{
    for (size_t k = 0; k < n_steps; k++) {
        pyllm_pieces out = {0};
        pyllm_status st = run_step(&steps[k], in, &out, work);
        pyllm_pieces_free(in);
        *in = out;
        PYLLM_TRY(st);
    }
    return PYLLM_OK;
}
