"""Constrained decoding: ``regex=``, ``json_schema=`` and ``grammar=`` on ``generate``, on llguidance.

llguidance (``pip install "pyllm[constrained]"``) turns a constraint into a matcher that says, at
every step, which token ids may come next (a bitmask over the vocabulary). This module gives it
pyllm's vocabulary as the bytes each token stands for, keeps one matcher per generated row, masks
each step's scores in the generation loop's ``logits_processor`` hook (after the built-in
processors, before the sampling warpers) and advances the matchers in its ``stopping_criteria``
hook, which also ends a row once its grammar is complete. docs/constrained.md tells the options
and the measured overhead.
"""
import json
import os
import threading
import weakref

import numpy as np

__all__ = ["OPTIONS", "check_regex", "check_json_schema", "check_grammar", "token_bytes", "Constraint"]

OPTIONS = ("regex", "json_schema", "grammar")
INSTALL = 'pip install "pyllm[constrained]"'

# JSON output without free whitespace: llguidance's default lets any run of spaces and newlines
# stand between tokens, which a weak or random model can fill until max_new_tokens runs out.
# Separators as json.dumps writes them; a schema's "x-guidance" object overrides these.
JSON_DEFAULTS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

_PIECE_UNKNOWN, _PIECE_CONTROL, _PIECE_UNUSED, _PIECE_BYTE = 2, 3, 5, 6  # pyllm._core token_type values
_SPECIAL = b"\xff"  # llguidance's mark of a special token: its text is never matched as bytes


def _llguidance():
    try:
        import llguidance
        import llguidance.numpy  # noqa: F401  (the bitmask helpers)
    except ImportError:
        raise ImportError(f"regex=, json_schema= and grammar= need the llguidance package: {INSTALL}") from None
    return llguidance


# ---- the options -------------------------------------------------------------------------------

def _validated(name, grammar):
    """grammar (llguidance's serialized form) after llguidance checked it; ValueError naming the
    option with llguidance's message otherwise."""
    llg = _llguidance()
    error = llg.LLMatcher.validate_grammar(grammar)
    if error:
        raise ValueError(f"generation option {name} is not accepted by llguidance: {error.strip()}")
    return grammar


def _grammar_of(name, value):
    llg = _llguidance()
    if name == "regex":
        return _validated(name, llg.LLMatcher.grammar_from_regex(value))
    if name == "json_schema":
        schema = json.loads(value) if isinstance(value, str) else value
        try:
            grammar = llg.LLMatcher.grammar_from_json_schema(schema, defaults=JSON_DEFAULTS)
        except (TypeError, ValueError) as e:  # a value JSON cannot hold
            raise ValueError(f"generation option {name} is not accepted by llguidance: {e}") from None
        return _validated(name, grammar)
    try:  # Lark as it is; GBNF (rules written "name ::= ...") through llguidance's converter
        return _validated(name, llg.grammar_from("grammar", value))
    except ValueError as e:
        if str(e).startswith(f"generation option {name}"):
            raise
        raise ValueError(f"generation option grammar must be a Lark or GBNF grammar; llguidance says: {e}") from None


def check_regex(value):
    """A regular expression (llguidance's syntax: Rust's regex crate) the new text must match whole."""
    if not isinstance(value, str):
        raise TypeError(f"generation option regex must be a str (a regular expression), got {type(value).__name__}")
    _grammar_of("regex", value)
    return value


def check_json_schema(value):
    """A JSON schema (a dict, or its JSON text) the new text must be an instance of."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError as e:
            raise ValueError(f"generation option json_schema must be a JSON schema (a dict or JSON text); "
                             f"the text is not JSON: {e}") from None
    else:
        parsed = value
    if not isinstance(parsed, dict):
        raise TypeError(f"generation option json_schema must be a JSON schema object: a dict or its JSON text, got "
                        f"{type(parsed).__name__}")
    _grammar_of("json_schema", value)
    return value


def check_grammar(value):
    """A context-free grammar in Lark syntax (``start: ...``) or GBNF (``root ::= ...``)."""
    if not isinstance(value, str):
        raise TypeError(f"generation option grammar must be a str (a Lark or GBNF grammar), got "
                        f"{type(value).__name__}")
    _grammar_of("grammar", value)
    return value


def requested(cfg, assistant_model=None):
    """(option name, value) of the constraint a resolved config sets, or None; ValueError when it
    sets more than one or combines one with beam search or speculative decoding."""
    given = [name for name in OPTIONS if cfg.get(name) is not None]
    if not given:
        return None
    if len(given) > 1:
        raise ValueError(f"generation options {', '.join(given)} were all given: use one of regex, json_schema "
                         "or grammar at a time (a grammar can express the others)")
    name = given[0]
    if cfg.num_beams > 1:
        raise ValueError(f"generation option {name} does not work with num_beams={cfg.num_beams}: beam search "
                         "is not constrained; use num_beams=1 (greedy or sampling)")
    lookup = cfg.get("prompt_lookup_num_tokens")
    if lookup is not None or assistant_model is not None:  # drafts are verified without the masks
        what = "assistant_model" if assistant_model is not None else f"prompt_lookup_num_tokens={lookup}"
        raise ValueError(f"generation option {name} does not work with speculative decoding ({what}): pass "
                         "one or the other")
    return name, cfg.get(name)


# ---- the vocabulary as bytes ---------------------------------------------------------------------

def _gpt2_byte_decoder():
    """GPT-2's byte-level table reversed: the character a byte-level BPE piece writes -> that byte.
    Printable Latin-1 bytes stand for themselves; the others take U+0100 upwards in byte order."""
    kept = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    table, shifted = {}, 0
    for byte in range(256):
        if byte in kept:
            table[chr(byte)] = byte
        else:
            table[chr(256 + shifted)] = byte
            shifted += 1
    return table


_BYTE_DECODER = _gpt2_byte_decoder()


def _spm_piece(piece):
    """A SentencePiece-style piece's bytes: '▁' is a space, the rest UTF-8."""
    return piece.replace("\u2581", " ").encode("utf-8")


def _byte_level_piece(piece):
    """A byte-level piece's bytes; None when a character is outside the byte table (an added
    token written as plain text)."""
    try:
        return bytes(_BYTE_DECODER[c] for c in piece)
    except KeyError:
        return None


def _is_byte_level(tokenizer, pieces, types):
    """Whether the tokenizer's decoder reads pieces through the GPT-2 byte table: decided by
    decoding pieces on which the two readings differ (a tokenizer.json may be either kind)."""
    if tokenizer._core.kind == "sentencepiece":
        return False
    votes = 0
    for token_id, (piece, kind) in enumerate(zip(pieces, types)):
        if kind in (_PIECE_UNKNOWN, _PIECE_CONTROL, _PIECE_UNUSED, _PIECE_BYTE):
            continue
        as_bytes, as_spm = _byte_level_piece(piece), _spm_piece(piece)
        if as_bytes is None or as_bytes == as_spm:
            continue
        decoded = tokenizer._core.decode([token_id], False).lstrip(" ")  # a decoder may strip one space
        votes += (decoded == as_bytes.decode("utf-8", "replace").lstrip(" ")) - \
                 (decoded == as_spm.decode("utf-8", "replace").lstrip(" "))
        if abs(votes) >= 8:
            break
    return votes > 0


def token_bytes(tokenizer):
    """(the bytes of every token id, the ids of special tokens) of a pyllm Tokenizer, as llguidance
    takes them: byte pieces ``<0xNN>`` are that byte, ``▁`` a space, byte-level pieces go through
    the GPT-2 byte table, and special tokens (control, unknown, unused, added special) are their
    text behind llguidance's 0xFF mark, so no text constraint can produce them."""
    core = tokenizer._core
    n = core.vocab_size
    pieces = [core.id_to_token(i) for i in range(n)]
    types = [core.token_type(i) for i in range(n)]
    specials = set(i for i in tokenizer.all_special_ids if i is not None and 0 <= i < n)
    byte_level = _is_byte_level(tokenizer, pieces, types)
    out = []
    for token_id, (piece, kind) in enumerate(zip(pieces, types)):
        if kind in (_PIECE_UNKNOWN, _PIECE_CONTROL, _PIECE_UNUSED) or token_id in specials:
            specials.add(token_id)
            out.append(_SPECIAL + piece.encode("utf-8"))
        elif kind == _PIECE_BYTE and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out.append(bytes([int(piece[3:5], 16)]))
        elif byte_level:
            as_bytes = _byte_level_piece(piece)
            out.append(as_bytes if as_bytes is not None else piece.encode("utf-8"))
        else:
            out.append(_spm_piece(piece))
    return out, sorted(specials)


class _Vocabulary:
    """What llguidance's TokenizerWrapper reads: the tokens' bytes, BOS/EOS, the special ids, and
    an encoder. llguidance takes the encoder's ids as the canonical spelling of text a grammar
    forces, so they must spell exactly that text: SentencePiece's dummy prefix (a space the text
    did not have) is taken off, and any other mismatch falls back to longest-match tokens."""

    def __init__(self, tokenizer, tokens, specials, eos):
        self._tokenizer = tokenizer
        self.tokens = tokens
        self.special_token_ids = specials
        self.eos_token_id = eos
        self.bos_token_id = tokenizer.bos_token_id
        self._by_bytes = None
        self._longest = 1

    def _ids_of_bytes(self, data):
        """Longest-match ids spelling data, or None when some byte has no token."""
        if self._by_bytes is None:
            special = set(self.special_token_ids)
            by_bytes = {}
            # Multi-byte pieces first, so a one-byte piece (▁) wins over the byte token <0x20>.
            for token_id in sorted(range(len(self.tokens)), key=lambda i: len(self.tokens[i]) == 1):
                piece = self.tokens[token_id]
                if piece and token_id not in special:
                    by_bytes.setdefault(piece, token_id)
            self._by_bytes, self._longest = by_bytes, max(map(len, by_bytes), default=1)
        ids, at = [], 0
        while at < len(data):
            for size in range(min(self._longest, len(data) - at), 0, -1):
                token_id = self._by_bytes.get(data[at:at + size])
                if token_id is not None:
                    ids.append(token_id)
                    at += size
                    break
            else:
                return None
        return ids

    def __call__(self, text):
        if isinstance(text, bytes):  # llguidance tries bytes first; pyllm encodes str
            raise TypeError("pyllm tokenizers encode str")
        ids = self._tokenizer.encode(text, add_special_tokens=False)
        want = text.encode("utf-8")
        got = b"".join(self.tokens[i] if i < len(self.tokens) else b"?" for i in ids)
        if got == want:
            return ids
        if ids and got == b" " + want:  # the dummy prefix: respell the first token without it
            first = self._ids_of_bytes(self.tokens[ids[0]][1:])
            if first is not None:
                return first + ids[1:]
        fallback = self._ids_of_bytes(want)
        return fallback if fallback is not None else ids


# LLTokenizers built for a tokenizer (about 0.1 s for 32,000 tokens), kept while it lives.
_LL_TOKENIZERS = weakref.WeakKeyDictionary()
_LL_TOKENIZERS_LOCK = threading.Lock()  # generate() may run on several threads at once


def ll_tokenizer(tokenizer, n_vocab, eos_ids):
    """llguidance's LLTokenizer of a pyllm Tokenizer for a model of n_vocab ids whose rows end on
    eos_ids (ids past the tokenizer's vocabulary are empty, never allowed)."""
    llg = _llguidance()
    eos_ids = tuple(int(e) for e in eos_ids)
    key = (tokenizer.vocab_size, int(n_vocab), eos_ids)
    with _LL_TOKENIZERS_LOCK:
        built = _LL_TOKENIZERS.setdefault(tokenizer, {})
        if key not in built:
            built[key] = _build_ll_tokenizer(llg, tokenizer, n_vocab, eos_ids)
        return built[key]


def _build_ll_tokenizer(llg, tokenizer, n_vocab, eos_ids):
    tokens, specials = token_bytes(tokenizer)
    tokens = (tokens + [b""] * n_vocab)[:n_vocab]
    specials = [i for i in specials if i < n_vocab]
    # llguidance needs an end token; with none given the tokenizer's is banned at every step.
    first_eos = eos_ids[0] if eos_ids else (tokenizer.eos_token_id or 0)
    first_eos = first_eos if first_eos < n_vocab else 0
    wrapper = llg.TokenizerWrapper(_Vocabulary(tokenizer, tokens, specials, first_eos))
    return llg.LLTokenizer(wrapper, n_vocab=n_vocab, eos_token=list(eos_ids) or first_eos)


_EXECUTOR = []
_PARALLEL_MIN_ROWS = 4


def _executor():
    """One llguidance executor for the process: it fills the masks of a batch in parallel."""
    if not _EXECUTOR:
        _EXECUTOR.append(_llguidance().LLExecutor())
    return _EXECUTOR[0]


# ---- one generate() call -------------------------------------------------------------------------

class Constraint:
    """The matchers of one generate() call, one per row, and its two hooks: ``process`` (the
    logits processor: every live row's scores outside its allowed tokens become -inf) and
    ``stop`` (a stopping criterion: each live row's matcher takes the token just chosen, and a
    row whose grammar can take nothing more ends). ``ended`` hears which rows the loop ended
    after each step (an end token, any stopping criterion) so their matchers rest.
    """

    def __init__(self, name, value, tokenizer, n_vocab, rows, eos_ids):
        llg = _llguidance()
        self.name = name
        self.n_vocab = int(n_vocab)
        self.eos_ids = set(int(e) for e in eos_ids)
        self._ll_tokenizer = ll_tokenizer(tokenizer, n_vocab, eos_ids)
        grammar = _grammar_of(name, value)
        first = llg.LLMatcher(self._ll_tokenizer, grammar, log_level=0)
        if first.is_error():
            raise ValueError(f"generation option {name} is not accepted by llguidance: {first.get_error()}")
        self.matchers = [first] + [first.deep_copy() for _ in range(rows - 1)]
        self.alive = np.ones(rows, dtype=bool)
        self.bitmask = llg.numpy.allocate_token_bitmask(rows, self.n_vocab)
        # With no end token the grammar's own EOS must never be chosen: the row ends when complete.
        self._banned_eos = None if self.eos_ids else self._ll_tokenizer.eos_token

    def process(self, input_ids, scores):
        live = np.flatnonzero(self.alive)
        if live.size == 0:
            return scores
        self._fill_masks(live)
        # The banned tokens' bits (the mask inverted), one bool per token: in place, no row copies.
        banned = np.unpackbits((~self.bitmask).view(np.uint8), axis=1, count=self.n_vocab,
                               bitorder="little").view(bool)
        if self._banned_eos is not None:
            banned[:, self._banned_eos] = True
        if live.size == len(self.matchers):
            np.copyto(scores, np.float32(-np.inf), where=banned)
        else:
            for r in live:
                np.copyto(scores[r], np.float32(-np.inf), where=banned[r])
        best = (scores if live.size == len(self.matchers) else scores[live]).max(axis=1)
        if not np.isfinite(best).all():
            r = int(live[np.flatnonzero(~np.isfinite(best))[0]])
            raise ValueError(f"generation option {self.name}: row {r} has no allowed token left: every token its "
                             "constraint allows next was banned by another option (bad_words_ids, logit_bias, "
                             "no_repeat_ngram_size, min_new_tokens, eos_token_id=[]) or by a logits_processor")
        return scores

    def _fill_masks(self, live):
        """Each live row's allowed tokens into self.bitmask: in llguidance's thread pool for batches
        that can use it, else here (on 2 cores, where the model's own threads hold both, the pool's
        hand-off cost more than it saved: 1.7 against 0.7 ms a step for 4 rows)."""
        numpy_helpers = _llguidance().numpy
        if live.size >= _PARALLEL_MIN_ROWS and (os.cpu_count() or 1) > 2:
            numpy_helpers.fill_next_token_bitmask_par(_executor(), [(self.matchers[r], int(r)) for r in live],
                                                      self.bitmask)
        else:
            for r in live:
                numpy_helpers.fill_next_token_bitmask(self.matchers[r], self.bitmask, int(r))

    def stop(self, input_ids, scores):
        done = np.zeros(len(self.matchers), dtype=bool)
        last = input_ids[:, -1]
        for r in np.flatnonzero(self.alive):
            token = int(last[r])
            if token in self.eos_ids:
                continue  # the loop ends the row on it
            matcher = self.matchers[r]
            if not matcher.consume_token(token):
                raise RuntimeError(f"generation option {self.name}: row {int(r)} chose token {token}, which its "
                                   f"constraint does not allow ({matcher.get_error()})")
            done[r] = matcher.is_stopped()
        return done

    def ended(self, input_ids, done):
        last = input_ids[:, -1]
        for r in np.flatnonzero(self.alive):
            if done[r] or int(last[r]) in self.eos_ids:
                self.alive[r] = False

    def is_complete(self, row):
        """Whether row's text so far satisfies the constraint (its grammar accepts it)."""
        return self.matchers[row].is_accepting()
