#include "tokenizers/regex.h"

#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "tokenizers/unicode.h"
#include "tokenizers/utf8.h"

/* One test of a class: a code point range, or a property (category mask and/or White_Space). */
typedef struct {
    enum { ITEM_RANGE, ITEM_PROPERTY, ITEM_CLASS } kind;
    int negated;
    uint32_t lo, hi;          /* ITEM_RANGE */
    uint32_t categories;      /* ITEM_PROPERTY */
    int white_space;
    struct char_class *sub;   /* ITEM_CLASS: a nested [...] */
} class_item;

typedef struct char_class {
    int negated;
    class_item *items;
    size_t n_items, cap_items;
    uint8_t ascii[128];       /* precomputed answer for ASCII */
} char_class;

enum node_kind { NODE_CHAR, NODE_REPEAT, NODE_ALT, NODE_LOOK, NODE_MATCH };
enum { GREEDY, LAZY, POSSESSIVE };

typedef struct node {
    enum node_kind kind;
    struct node *next;
    char_class *cls;          /* CHAR, REPEAT */
    int min, max, mode;       /* REPEAT; max < 0: unbounded */
    struct node **alts;       /* ALT */
    size_t n_alts;
    struct node *sub;         /* LOOK: ends in a MATCH node */
    int negated;              /* LOOK */
} node;

/* Parsed expression before it is linked into nodes. */
typedef struct ast {
    enum { AST_SEQ, AST_ALT, AST_CHAR, AST_REPEAT, AST_LOOK } kind;
    struct ast **kids;
    size_t n_kids, cap_kids;
    char_class *cls;
    int min, max, mode, negated;
} ast;

/* Limits on a pattern (which comes from a file): matching recurses once per choice node on a
 * path and parsing once per nesting level, so both stay far from the stack's size; a class test
 * looks at each of its items. The patterns tokenizers ship use under 100 nodes. */
enum { MAX_NODES = 4096, MAX_NESTING = 64, MAX_CLASS_ITEMS = 16384 };

struct pyllm_regex {
    node *start;
    size_t n_nodes, n_class_items;
    char *pattern;            /* a copy, NUL-terminated, for messages */
    size_t pattern_len;
    /* every allocation, freed together */
    void **owned;
    size_t n_owned, cap_owned;
};

typedef struct {
    const char *p, *end;
    const char *pattern;
    size_t pattern_len;
    pyllm_regex *re;
    int icase;
    int depth;                /* groups and classes open around the current position */
} parser;

static void *own(pyllm_regex *re, size_t size)
{
    if (re->n_owned == re->cap_owned) {
        size_t cap = re->cap_owned ? re->cap_owned * 2 : 32;
        void **grown = pyllm_alloc(pyllm_mul_size(cap, sizeof(void *)));
        if (grown == NULL)
            return NULL;
        if (re->n_owned)
            memcpy(grown, re->owned, re->n_owned * sizeof(void *));
        pyllm_free(re->owned);
        re->owned = grown;
        re->cap_owned = cap;
    }
    void *mem = pyllm_calloc(1, size);
    if (mem != NULL)
        re->owned[re->n_owned++] = mem;
    return mem;
}

void pyllm_regex_free(pyllm_regex *re)
{
    if (re == NULL)
        return;
    for (size_t i = 0; i < re->n_owned; i++)
        pyllm_free(re->owned[i]);
    pyllm_free(re->owned);
    pyllm_free(re);
}

static pyllm_status syntax_error(const parser *ps, const char *what)
{
    return pyllm_error(PYLLM_ERR_VALUE, "regex '%.*s': %s at offset %zu is not supported", (int)ps->pattern_len,
                       ps->pattern, what, (size_t)(ps->p - ps->pattern));
}

static pyllm_status grow(pyllm_regex *re, void **items, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return PYLLM_OK;
    size_t new_cap = *cap ? *cap * 2 : 4;
    void *grown = own(re, pyllm_mul_size(new_cap, size));
    if (grown == NULL)
        return PYLLM_ERR_MEMORY;
    if (n)
        memcpy(grown, *items, n * size);
    *items = grown;
    *cap = new_cap;
    return PYLLM_OK;
}

static pyllm_status class_add(pyllm_regex *re, char_class *c, class_item item)
{
    if (++re->n_class_items > MAX_CLASS_ITEMS)
        return pyllm_error(PYLLM_ERR_VALUE, "regex '%.*s': more than %d class items are not supported",
                           (int)(re->pattern_len > 200 ? 200 : re->pattern_len), re->pattern, MAX_CLASS_ITEMS);
    PYLLM_TRY(grow(re, (void **)&c->items, &c->cap_items, c->n_items, sizeof(class_item)));
    c->items[c->n_items++] = item;
    return PYLLM_OK;
}

static int class_matches(const char_class *c, uint32_t cp);

static int item_matches(const class_item *it, uint32_t cp, unsigned props)
{
    int m;
    if (it->kind == ITEM_RANGE)
        m = cp >= it->lo && cp <= it->hi;
    else if (it->kind == ITEM_PROPERTY)
        m = ((it->categories >> (props & 0x1F)) & 1) || (it->white_space && (props & PYLLM_UC_WHITE_SPACE));
    else
        m = class_matches(it->sub, cp);
    return m != it->negated;
}

/* The class's answer from its items (any item matches, then the class's own negation). */
static int class_evaluate(const char_class *c, uint32_t cp)
{
    unsigned props = pyllm_unicode_props(cp);
    int hit = 0;
    for (size_t i = 0; i < c->n_items && !hit; i++)
        hit = item_matches(&c->items[i], cp, props);
    return hit != c->negated;
}

static int class_matches(const char_class *c, uint32_t cp)
{
    return cp < 128 ? c->ascii[cp] : class_evaluate(c, cp);
}

/* Precompute the ASCII answers (nested classes are finished first, so they are ready). */
static void class_finish(char_class *c)
{
    for (uint32_t cp = 0; cp < 128; cp++)
        c->ascii[cp] = (uint8_t)class_evaluate(c, cp);
}

/* The character class of a literal: the character, plus its case variants under (?i). */
static pyllm_status literal_class(parser *ps, uint32_t cp, char_class **out)
{
    char_class *c = own(ps->re, sizeof *c);
    if (c == NULL)
        return PYLLM_ERR_MEMORY;
    PYLLM_TRY(class_add(ps->re, c, (class_item){.kind = ITEM_RANGE, .lo = cp, .hi = cp}));
    if (ps->icase) {
        uint32_t folded = pyllm_unicode_fold(cp);
        if (folded != cp)
            PYLLM_TRY(class_add(ps->re, c, (class_item){.kind = ITEM_RANGE, .lo = folded, .hi = folded}));
        for (size_t i = 0; i < pyllm_unicode_n_folds; i++)
            if (pyllm_unicode_folds[i][1] == folded && pyllm_unicode_folds[i][0] != cp)
                PYLLM_TRY(class_add(ps->re, c, (class_item){.kind = ITEM_RANGE, .lo = pyllm_unicode_folds[i][0],
                                                            .hi = pyllm_unicode_folds[i][0]}));
    }
    class_finish(c);
    *out = c;
    return PYLLM_OK;
}

static uint32_t next_char(parser *ps)
{
    uint32_t cp;
    ps->p += pyllm_utf8_decode_lossy(ps->p, (size_t)(ps->end - ps->p), &cp);
    return cp;
}

/* An escape after '\': either a single code point (*is_char) or a class item. */
static pyllm_status parse_escape(parser *ps, int *is_char, uint32_t *cp, class_item *item)
{
    if (ps->p >= ps->end)
        return syntax_error(ps, "a trailing backslash");
    char e = *ps->p++;
    *is_char = 0;
    memset(item, 0, sizeof *item);
    item->kind = ITEM_PROPERTY;
    switch (e) {
    case 's': item->white_space = 1; return PYLLM_OK;
    case 'S': item->white_space = 1; item->negated = 1; return PYLLM_OK;
    case 'd': item->categories = PYLLM_UC_MASK(PYLLM_UC_ND); return PYLLM_OK;
    case 'D': item->categories = PYLLM_UC_MASK(PYLLM_UC_ND); item->negated = 1; return PYLLM_OK;
    case 'p':
    case 'P': {
        if (ps->p >= ps->end || *ps->p != '{')
            return syntax_error(ps, "\\p without {name}");
        const char *name = ++ps->p;
        while (ps->p < ps->end && *ps->p != '}')
            ps->p++;
        if (ps->p >= ps->end)
            return syntax_error(ps, "an unterminated \\p{");
        size_t len = (size_t)(ps->p - name);
        ps->p++;
        int neg = e == 'P';
        if (len > 0 && name[0] == '^') {
            neg = !neg;
            name++;
            len--;
        }
        item->categories = pyllm_unicode_category_mask(name, len);
        if (item->categories == 0)
            return pyllm_error(PYLLM_ERR_VALUE, "regex '%.*s': Unicode property \\p{%.*s} is not supported",
                               (int)ps->pattern_len, ps->pattern, (int)len, name);
        item->negated = neg;
        return PYLLM_OK;
    }
    case 'n': *cp = '\n'; break;
    case 'r': *cp = '\r'; break;
    case 't': *cp = '\t'; break;
    case 'f': *cp = '\f'; break;
    case 'v': *cp = '\v'; break;
    case 'a': *cp = '\a'; break;
    case 'e': *cp = 0x1B; break;
    default:
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
            return pyllm_error(PYLLM_ERR_VALUE, "regex '%.*s': the escape \\%c at offset %zu is not supported",
                               (int)ps->pattern_len, ps->pattern, e, (size_t)(ps->p - 2 - ps->pattern));
        ps->p--;
        *cp = next_char(ps);
        break;
    }
    *is_char = 1;
    return PYLLM_OK;
}

/* A bracket class; ps->p is just after '['. Nested brackets are unions (Oniguruma). */
static pyllm_status parse_class(parser *ps, char_class **out)
{
    if (ps->icase)
        return syntax_error(ps, "a character class inside (?i)");
    if (ps->depth >= MAX_NESTING)
        return syntax_error(ps, "nesting deeper than 64 levels");
    char_class *c = own(ps->re, sizeof *c);
    if (c == NULL)
        return PYLLM_ERR_MEMORY;
    if (ps->p < ps->end && *ps->p == '^') {
        c->negated = 1;
        ps->p++;
    }
    int first = 1;
    for (;;) {
        if (ps->p >= ps->end)
            return syntax_error(ps, "an unterminated character class");
        if (*ps->p == ']' && !first) {
            ps->p++;
            break;
        }
        first = 0;
        if (*ps->p == '[') {
            if (ps->p + 1 < ps->end && ps->p[1] == ':')
                return syntax_error(ps, "a POSIX bracket [:name:]");
            ps->p++;
            char_class *sub;
            ps->depth++;
            pyllm_status st = parse_class(ps, &sub);
            ps->depth--;
            PYLLM_TRY(st);
            PYLLM_TRY(class_add(ps->re, c, (class_item){.kind = ITEM_CLASS, .sub = sub}));
            continue;
        }
        if (*ps->p == '&' && ps->p + 1 < ps->end && ps->p[1] == '&')
            return syntax_error(ps, "class intersection &&");
        uint32_t lo;
        if (*ps->p == '\\') {
            ps->p++;
            int is_char;
            class_item item;
            PYLLM_TRY(parse_escape(ps, &is_char, &lo, &item));
            if (!is_char) {
                PYLLM_TRY(class_add(ps->re, c, item));
                continue;
            }
        } else {
            lo = next_char(ps);
        }
        uint32_t hi = lo;
        if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
            ps->p++;
            if (*ps->p == '\\') {
                ps->p++;
                int is_char;
                class_item item;
                PYLLM_TRY(parse_escape(ps, &is_char, &hi, &item));
                if (!is_char)
                    return syntax_error(ps, "a range ending in a class escape");
            } else {
                hi = next_char(ps);
            }
            if (hi < lo)
                return syntax_error(ps, "a reversed range");
        }
        PYLLM_TRY(class_add(ps->re, c, (class_item){.kind = ITEM_RANGE, .lo = lo, .hi = hi}));
    }
    class_finish(c);
    *out = c;
    return PYLLM_OK;
}

static pyllm_status ast_new(parser *ps, int kind, ast **out)
{
    *out = own(ps->re, sizeof(ast));
    if (*out == NULL)
        return PYLLM_ERR_MEMORY;
    (*out)->kind = kind;
    return PYLLM_OK;
}

static pyllm_status ast_push(parser *ps, ast *parent, ast *kid)
{
    PYLLM_TRY(grow(ps->re, (void **)&parent->kids, &parent->cap_kids, parent->n_kids, sizeof(ast *)));
    parent->kids[parent->n_kids++] = kid;
    return PYLLM_OK;
}

static pyllm_status parse_alt(parser *ps, ast **out);

static int parse_number(parser *ps, int *value)
{
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
        return 0;
    long v = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9' && v < 100000)
        v = v * 10 + (*ps->p++ - '0');
    *value = (int)v;
    return 1;
}

/* A quantifier after an atom, if any: sets min/max/mode and returns 1. */
static pyllm_status parse_quantifier(parser *ps, int *found, int *min, int *max, int *mode)
{
    *found = 0;
    if (ps->p >= ps->end)
        return PYLLM_OK;
    char q = *ps->p;
    if (q == '*' || q == '+' || q == '?') {
        ps->p++;
        *min = q == '+' ? 1 : 0;
        *max = q == '?' ? 1 : -1;
    } else if (q == '{') {
        const char *save = ps->p++;
        int lo, hi;
        if (!parse_number(ps, &lo)) {
            ps->p = save; /* a literal '{' */
            return PYLLM_OK;
        }
        hi = lo;
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            if (!parse_number(ps, &hi))
                hi = -1;
        }
        if (ps->p >= ps->end || *ps->p != '}')
            return syntax_error(ps, "a malformed {n,m} quantifier");
        ps->p++;
        if (hi >= 0 && hi < lo)
            return syntax_error(ps, "a {n,m} quantifier with m < n");
        *min = lo;
        *max = hi;
    } else {
        return PYLLM_OK;
    }
    *found = 1;
    *mode = GREEDY;
    if (ps->p < ps->end && *ps->p == '?') {
        *mode = LAZY;
        ps->p++;
    } else if (ps->p < ps->end && *ps->p == '+' && q != '{') {
        *mode = POSSESSIVE;
        ps->p++;
    }
    return PYLLM_OK;
}

static pyllm_status parse_atom(parser *ps, ast **out)
{
    char c = *ps->p;
    if (c == '(') {
        ps->p++;
        int saved_icase = ps->icase;
        ast *look = NULL;
        if (ps->p < ps->end && *ps->p == '?') {
            ps->p++;
            if (ps->p < ps->end && (*ps->p == '=' || *ps->p == '!')) {
                PYLLM_TRY(ast_new(ps, AST_LOOK, &look));
                look->negated = *ps->p == '!';
                ps->p++;
            } else if (ps->p < ps->end && *ps->p == ':') {
                ps->p++;
            } else if (ps->end - ps->p >= 2 && ps->p[0] == 'i' && ps->p[1] == ':') {
                ps->icase = 1;
                ps->p += 2;
            } else {
                return syntax_error(ps, "this group kind (?...)");
            }
        }
        ast *inner;
        if (ps->depth >= MAX_NESTING)
            return syntax_error(ps, "nesting deeper than 64 levels");
        ps->depth++;
        pyllm_status st = parse_alt(ps, &inner);
        ps->depth--;
        PYLLM_TRY(st);
        ps->icase = saved_icase;
        if (ps->p >= ps->end || *ps->p != ')')
            return syntax_error(ps, "an unclosed group");
        ps->p++;
        if (look != NULL) {
            PYLLM_TRY(ast_push(ps, look, inner));
            *out = look;
        } else {
            *out = inner;
        }
        return PYLLM_OK;
    }
    ast *a;
    PYLLM_TRY(ast_new(ps, AST_CHAR, &a));
    if (c == '[') {
        ps->p++;
        PYLLM_TRY(parse_class(ps, &a->cls));
    } else if (c == '.') {
        ps->p++;
        char_class *dot = own(ps->re, sizeof *dot);
        if (dot == NULL)
            return PYLLM_ERR_MEMORY;
        dot->negated = 1; /* Oniguruma's '.': anything but a newline */
        PYLLM_TRY(class_add(ps->re, dot, (class_item){.kind = ITEM_RANGE, .lo = '\n', .hi = '\n'}));
        class_finish(dot);
        a->cls = dot;
    } else if (c == '\\') {
        ps->p++;
        int is_char;
        uint32_t cp;
        class_item item;
        PYLLM_TRY(parse_escape(ps, &is_char, &cp, &item));
        if (is_char) {
            PYLLM_TRY(literal_class(ps, cp, &a->cls));
        } else {
            a->cls = own(ps->re, sizeof(char_class));
            if (a->cls == NULL)
                return PYLLM_ERR_MEMORY;
            PYLLM_TRY(class_add(ps->re, a->cls, item));
            class_finish(a->cls);
        }
    } else if (c == '^' || c == '$') {
        return syntax_error(ps, c == '^' ? "the anchor '^'" : "the anchor '$'");
    } else if (c == '*' || c == '+' || c == '?' || c == '{') {
        return syntax_error(ps, "a quantifier with nothing to repeat");
    } else {
        PYLLM_TRY(literal_class(ps, next_char(ps), &a->cls));
    }
    *out = a;
    return PYLLM_OK;
}

static pyllm_status parse_seq(parser *ps, ast **out)
{
    ast *seq;
    PYLLM_TRY(ast_new(ps, AST_SEQ, &seq));
    while (ps->p < ps->end && *ps->p != '|' && *ps->p != ')') {
        ast *atom = NULL;
        PYLLM_TRY(parse_atom(ps, &atom));
        int found, min, max, mode;
        PYLLM_TRY(parse_quantifier(ps, &found, &min, &max, &mode));
        if (found) {
            if (atom->kind != AST_CHAR && !(min == 0 && max == 1 && mode != POSSESSIVE))
                return syntax_error(ps, "a quantifier other than ? on a group");
            ast *rep;
            PYLLM_TRY(ast_new(ps, AST_REPEAT, &rep));
            rep->min = min, rep->max = max, rep->mode = mode;
            PYLLM_TRY(ast_push(ps, rep, atom));
            atom = rep;
            int again;
            PYLLM_TRY(parse_quantifier(ps, &again, &min, &max, &mode));
            if (again)
                return syntax_error(ps, "a repeated quantifier");
        }
        PYLLM_TRY(ast_push(ps, seq, atom));
    }
    *out = seq;
    return PYLLM_OK;
}

static pyllm_status parse_alt(parser *ps, ast **out)
{
    ast *first;
    PYLLM_TRY(parse_seq(ps, &first));
    if (ps->p >= ps->end || *ps->p != '|') {
        *out = first;
        return PYLLM_OK;
    }
    ast *alt;
    PYLLM_TRY(ast_new(ps, AST_ALT, &alt));
    PYLLM_TRY(ast_push(ps, alt, first));
    while (ps->p < ps->end && *ps->p == '|') {
        ps->p++;
        ast *next;
        PYLLM_TRY(parse_seq(ps, &next));
        PYLLM_TRY(ast_push(ps, alt, next));
    }
    *out = alt;
    return PYLLM_OK;
}

static pyllm_status node_new(pyllm_regex *re, enum node_kind kind, node *next, node **out)
{
    *out = NULL;
    if (++re->n_nodes > MAX_NODES)
        return pyllm_error(PYLLM_ERR_VALUE, "regex '%.*s': more than %d nodes are not supported",
                           (int)(re->pattern_len > 200 ? 200 : re->pattern_len), re->pattern, MAX_NODES);
    *out = own(re, sizeof(node));
    if (*out == NULL)
        return PYLLM_ERR_MEMORY;
    (*out)->kind = kind;
    (*out)->next = next;
    return PYLLM_OK;
}

/* Link an expression in front of its continuation `next`. */
static pyllm_status link(pyllm_regex *re, const ast *a, node *next, node **out)
{
    switch (a->kind) {
    case AST_SEQ:
        for (size_t i = a->n_kids; i-- > 0;)
            PYLLM_TRY(link(re, a->kids[i], next, &next));
        *out = next;
        return PYLLM_OK;
    case AST_ALT: {
        node *n = NULL;
        PYLLM_TRY(node_new(re, NODE_ALT, next, &n));
        n->alts = own(re, pyllm_mul_size(a->n_kids, sizeof(node *)));
        if (n->alts == NULL)
            return PYLLM_ERR_MEMORY;
        n->n_alts = a->n_kids;
        for (size_t i = 0; i < a->n_kids; i++)
            PYLLM_TRY(link(re, a->kids[i], next, &n->alts[i]));
        *out = n;
        return PYLLM_OK;
    }
    case AST_CHAR:
        PYLLM_TRY(node_new(re, NODE_CHAR, next, out));
        (*out)->cls = a->cls;
        return PYLLM_OK;
    case AST_REPEAT: {
        const ast *kid = a->kids[0];
        if (kid->kind == AST_CHAR) {
            PYLLM_TRY(node_new(re, NODE_REPEAT, next, out));
            (*out)->cls = kid->cls;
            (*out)->min = a->min, (*out)->max = a->max, (*out)->mode = a->mode;
            return PYLLM_OK;
        }
        /* an optional group: try it first (greedy) or last (lazy) */
        node *n = NULL, *body = NULL;
        PYLLM_TRY(node_new(re, NODE_ALT, next, &n));
        PYLLM_TRY(link(re, kid, next, &body));
        n->alts = own(re, 2 * sizeof(node *));
        if (n->alts == NULL)
            return PYLLM_ERR_MEMORY;
        n->n_alts = 2;
        n->alts[0] = a->mode == LAZY ? next : body;
        n->alts[1] = a->mode == LAZY ? body : next;
        *out = n;
        return PYLLM_OK;
    }
    case AST_LOOK: {
        node *n = NULL, *accept = NULL;
        PYLLM_TRY(node_new(re, NODE_LOOK, next, &n));
        PYLLM_TRY(node_new(re, NODE_MATCH, NULL, &accept));
        PYLLM_TRY(link(re, a->kids[0], accept, &n->sub));
        n->negated = a->negated;
        *out = n;
        return PYLLM_OK;
    }
    }
    return PYLLM_ERR_RUNTIME;
}

pyllm_status pyllm_regex_compile(const char *pattern, size_t len, pyllm_regex **out)
{
    *out = NULL;
    pyllm_regex *re = pyllm_calloc(1, sizeof *re);
    if (re == NULL)
        return PYLLM_ERR_MEMORY;
    re->pattern = own(re, len + 1);
    if (re->pattern == NULL) {
        pyllm_regex_free(re);
        return PYLLM_ERR_MEMORY;
    }
    if (len)
        memcpy(re->pattern, pattern, len);
    re->pattern_len = len;
    parser ps = {.p = pattern, .end = pattern + len, .pattern = pattern, .pattern_len = len, .re = re};
    ast *root;
    node *accept = NULL;
    pyllm_status st = parse_alt(&ps, &root);
    if (st == PYLLM_OK && ps.p < ps.end)
        st = syntax_error(&ps, "an unmatched ')'");
    if (st == PYLLM_OK)
        st = node_new(re, NODE_MATCH, NULL, &accept);
    if (st == PYLLM_OK)
        st = link(re, root, accept, &re->start);
    if (st != PYLLM_OK) {
        pyllm_regex_free(re);
        return st;
    }
    *out = re;
    return PYLLM_OK;
}

/* One search: the text, and the steps taken against the caller's budget. */
typedef struct {
    const char *text;
    size_t len;
    uint64_t steps, limit;
    int exhausted;            /* the budget ran out: every level unwinds with "no match" */
} subject;

static inline size_t match_char(const char_class *c, const subject *s, size_t pos)
{
    if (pos >= s->len)
        return 0;
    unsigned char b = (unsigned char)s->text[pos];
    if (b < 0x80)
        return c->ascii[b] ? 1 : 0;
    uint32_t cp;
    size_t n = pyllm_utf8_decode_lossy(s->text + pos, s->len - pos, &cp);
    return class_matches(c, cp) ? n : 0;
}

/* The start of the character that ends at pos, as forward matching stepped over it: a
 * well-formed character of 2-4 bytes ending there (one starts with a lead byte, so forward
 * decoding cannot have stepped past its start), else the one byte a malformed sequence reads
 * as. Counting continuation bytes instead would step over bytes read one at a time, back past
 * where a repetition began. pos > 0. */
static size_t prev_char(const subject *s, size_t pos)
{
    for (size_t k = 2; k <= 4 && k <= pos; k++)
        if (pyllm_utf8_valid_char_len(s->text + pos - k, k) == k)
            return pos - k;
    return pos - 1;
}

/* Backtracking matcher. Every node entered and every character a repetition tests is a step;
 * past the limit the search is abandoned (s->exhausted), so no pattern runs without bound. */
static int match_here(const node *n, subject *s, size_t pos, size_t *end)
{
    for (;;) {
        if (++s->steps > s->limit || s->exhausted) {
            s->exhausted = 1;
            return 0;
        }
        switch (n->kind) {
        case NODE_MATCH:
            *end = pos;
            return 1;
        case NODE_CHAR: {
            size_t k = match_char(n->cls, s, pos);
            if (k == 0)
                return 0;
            pos += k;
            n = n->next;
            continue;
        }
        case NODE_ALT:
            for (size_t i = 0; i + 1 < n->n_alts; i++)
                if (match_here(n->alts[i], s, pos, end))
                    return 1;
            n = n->alts[n->n_alts - 1];
            continue;
        case NODE_LOOK: {
            size_t ignored;
            int found = match_here(n->sub, s, pos, &ignored);
            if (s->exhausted || found == n->negated)
                return 0;
            n = n->next;
            continue;
        }
        case NODE_REPEAT: {
            int count = 0;
            size_t p = pos;
            if (n->mode == LAZY) {
                for (;;) {
                    if (count >= n->min && match_here(n->next, s, p, end))
                        return 1;
                    if (s->exhausted || (n->max >= 0 && count >= n->max))
                        return 0;
                    size_t k = match_char(n->cls, s, p);
                    if (k == 0)
                        return 0;
                    p += k;
                    count++;
                    s->steps++;
                }
            }
            while (n->max < 0 || count < n->max) {
                size_t k = match_char(n->cls, s, p);
                if (k == 0)
                    break;
                p += k;
                count++;
            }
            s->steps += (uint64_t)count;
            if (count < n->min)
                return 0;
            if (n->mode == POSSESSIVE) {
                pos = p;
                n = n->next;
                continue;
            }
            for (;;) {
                if (match_here(n->next, s, p, end))
                    return 1;
                if (count == n->min || s->exhausted)
                    return 0;
                p = prev_char(s, p);
                count--;
            }
        }
        }
        return 0;
    }
}

int pyllm_regex_find_counted(const pyllm_regex *re, const char *text, size_t len, size_t from, size_t *start,
                             size_t *end, pyllm_regex_budget *budget)
{
    subject s = {.text = text, .len = len, .steps = budget->steps, .limit = budget->limit};
    int found = 0;
    for (size_t pos = from; pos <= len;) {
        if (match_here(re->start, &s, pos, end)) {
            *start = pos;
            found = 1;
            break;
        }
        if (s.exhausted || pos == len)
            break;
        uint32_t cp;
        pos += pyllm_utf8_decode_lossy(text + pos, len - pos, &cp);
    }
    budget->steps = s.steps;
    return s.exhausted ? -1 : found;
}

int pyllm_regex_find(const pyllm_regex *re, const char *text, size_t len, size_t from, size_t *start, size_t *end)
{
    pyllm_regex_budget budget = {0, pyllm_regex_budget_for(re, len - (from < len ? from : len))};
    return pyllm_regex_find_counted(re, text, len, from, start, end, &budget) == 1;
}

uint64_t pyllm_regex_budget_for(const pyllm_regex *re, size_t len)
{
    return ((uint64_t)len + 1) * PYLLM_REGEX_STEPS_PER_BYTE * (uint64_t)re->n_nodes + PYLLM_REGEX_STEPS_PER_TEXT;
}

const char *pyllm_regex_pattern(const pyllm_regex *re)
{
    return re->pattern;
}
