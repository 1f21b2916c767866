"""Read a Hugging Face ``tokenizer.json`` whose model is BPE and describe it to the C core.

The JSON is parsed here; the C core receives the vocabulary (strings by id), the merges (pairs
of strings by rank) and the pipeline as a flat list of steps. Every component this module does
not know raises ValueError naming it: nothing is approximated. The file's ``truncation`` and
``padding`` settings are not applied, as transformers does not apply them either (its call
arguments decide), so nothing is sized from them; ByteLevel's ``trim_offsets`` only concerns
offsets, which we do not return.

Every step either advances on any text or is refused here: a field tokenizers reads as one
character (Metaspace's replacement, Strip's content) must be one character, and Strip's counts
non-negative integers (clamped to 2**31 - 1, more than any token holds). An empty Replace or Split
pattern does what tokenizers does with it (it matches at every character boundary).
"""
import json
import os

from . import _core

__all__ = ["load_tokenizer_json"]

# Pipeline stages and step kinds, as csrc/tokenizers/pretokenizer.h and decoder_chain.h number them.
_NORMALIZER, _PRE_TOKENIZER, _DECODER = 0, 1, 2
_PREPEND, _REPLACE, _SPLIT, _BYTE_LEVEL, _DIGITS, _METASPACE = range(6)
_D_BYTE_LEVEL, _D_REPLACE, _D_BYTE_FALLBACK, _D_FUSE, _D_STRIP, _D_METASPACE = range(6)
_BEHAVIORS = {"removed": 0, "isolated": 1, "mergedwithprevious": 2, "mergedwithnext": 3, "contiguous": 4}
_PREPEND_SCHEMES = {"always": 0, "never": 1, "first": 2}
_ADDED_LSTRIP, _ADDED_RSTRIP, _ADDED_SINGLE_WORD = 1, 2, 4
_INT32_MAX = 2**31 - 1


class _Unsupported(ValueError):
    pass


def _fail(path, message):
    raise ValueError(f"{path}: {message}")


def _pattern(path, where, spec):
    """A Split/Replace pattern: ({"String": s} | {"Regex": r}) -> (text, is_regex)."""
    if isinstance(spec, dict) and len(spec) == 1:
        (key, value), = spec.items()
        if key in ("String", "Regex") and isinstance(value, str):
            return value, key == "Regex"
    if isinstance(spec, str):
        return spec, False
    _fail(path, f"{where}: pattern must be {{'String': ...}} or {{'Regex': ...}}, got {spec!r}")


def _one_char(path, where, field, value, default):
    """A field tokenizers deserialises as a Rust char: exactly one character."""
    value = default if value is None else value
    if not isinstance(value, str) or len(value) != 1:
        _fail(path, f"{where}: {field} must be one character, got {value!r}")
    return value


def _count(path, where, field, value):
    """A usize field of tokenizers: a non-negative integer, clamped to what the C core holds."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        _fail(path, f"{where}: {field} must be a non-negative integer, got {value!r}")
    return min(value, _INT32_MAX)


def _flatten(component, key):
    """Sequence components flattened into a list of their parts."""
    if component is None:
        return []
    if not isinstance(component, dict):
        raise _Unsupported(f"expected an object, got {component!r}")
    if component.get("type") == "Sequence":
        out = []
        for part in component.get(key) or []:
            out.extend(_flatten(part, key))
        return out
    return [component]


def _normalizer_steps(path, normalizer):
    steps = []
    for n in _flatten(normalizer, "normalizers"):
        kind = n.get("type")
        if kind == "Prepend":
            steps.append((_NORMALIZER, _PREPEND, n["prepend"], None, False, 0, 0))
        elif kind == "Replace":
            text, is_regex = _pattern(path, "Replace normalizer", n.get("pattern"))
            if is_regex:
                _fail(path, "normalizer Replace with a Regex pattern is not supported")
            steps.append((_NORMALIZER, _REPLACE, text, n.get("content", ""), False, 0, 0))
        else:
            _fail(path, f"normalizer {kind!r} is not supported (supported: Prepend, Replace, Sequence)")
    return steps


def _metaspace_scheme(path, spec):
    scheme = spec.get("prepend_scheme")
    if scheme is None:  # files older than tokenizers 0.14
        scheme = "always" if spec.get("add_prefix_space", True) else "never"
    if scheme not in _PREPEND_SCHEMES:
        _fail(path, f"Metaspace prepend_scheme {scheme!r} is not supported")
    return _PREPEND_SCHEMES[scheme]


def _pre_tokenizer_steps(path, pre_tokenizer):
    steps = []
    byte_level_seen = False
    for p in _flatten(pre_tokenizer, "pretokenizers"):
        kind = p.get("type")
        if byte_level_seen and kind != "ByteLevel":
            _fail(path, f"pre-tokenizer {kind!r} after ByteLevel is not supported")
        if kind == "Split":
            text, is_regex = _pattern(path, "Split pre-tokenizer", p.get("pattern"))
            behavior = str(p.get("behavior", "")).lower()
            if behavior not in _BEHAVIORS:
                _fail(path, f"Split behavior {p.get('behavior')!r} is not supported")
            steps.append((_PRE_TOKENIZER, _SPLIT, text, None, is_regex, _BEHAVIORS[behavior],
                          int(bool(p.get("invert", False)))))
        elif kind == "ByteLevel":
            byte_level_seen = True
            steps.append((_PRE_TOKENIZER, _BYTE_LEVEL, None, None, False, int(bool(p.get("add_prefix_space", True))),
                          int(bool(p.get("use_regex", True)))))
        elif kind == "Digits":
            steps.append((_PRE_TOKENIZER, _DIGITS, None, None, False, int(bool(p.get("individual_digits", False))), 0))
        elif kind == "Metaspace":
            replacement = _one_char(path, "pre-tokenizer Metaspace", "replacement", p.get("replacement"), "\u2581")
            steps.append((_PRE_TOKENIZER, _METASPACE, replacement, None, False,
                          _metaspace_scheme(path, p), int(bool(p.get("split", True)))))
        else:
            _fail(path, f"pre-tokenizer {kind!r} is not supported "
                        "(supported: Split, ByteLevel, Digits, Metaspace, Sequence)")
    return steps


def _decoder_steps(path, decoder):
    steps = []
    for d in _flatten(decoder, "decoders"):
        kind = d.get("type")
        if kind == "ByteLevel":
            steps.append((_DECODER, _D_BYTE_LEVEL, None, None, False, 0, 0))
        elif kind == "Replace":
            text, is_regex = _pattern(path, "Replace decoder", d.get("pattern"))
            if is_regex:
                _fail(path, "decoder Replace with a Regex pattern is not supported")
            steps.append((_DECODER, _D_REPLACE, text, d.get("content", ""), False, 0, 0))
        elif kind == "ByteFallback":
            steps.append((_DECODER, _D_BYTE_FALLBACK, None, None, False, 0, 0))
        elif kind == "Fuse":
            steps.append((_DECODER, _D_FUSE, None, None, False, 0, 0))
        elif kind == "Strip":
            steps.append((_DECODER, _D_STRIP, _one_char(path, "decoder Strip", "content", d.get("content"), " "),
                          None, False, _count(path, "decoder Strip", "start", d.get("start")),
                          _count(path, "decoder Strip", "stop", d.get("stop"))))
        elif kind == "Metaspace":
            replacement = _one_char(path, "decoder Metaspace", "replacement", d.get("replacement"), "\u2581")
            steps.append((_DECODER, _D_METASPACE, replacement, None, False, _metaspace_scheme(path, d), 0))
        else:
            _fail(path, f"decoder {kind!r} is not supported "
                        "(supported: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence)")
    return steps


def _template_ids(path, processor):
    """Ids a post-processor puts before and after a single sequence."""
    prefix, suffix = [], []
    for p in _flatten(processor, "processors"):
        kind = p.get("type")
        if kind == "ByteLevel":
            continue
        if kind == "TemplateProcessing":
            specials = p.get("special_tokens") or {}
            seen_sequence = False
            for piece in p.get("single") or []:
                if "Sequence" in piece:
                    seen_sequence = True
                    continue
                if "SpecialToken" not in piece:
                    _fail(path, f"TemplateProcessing piece {piece!r} is not supported")
                name = piece["SpecialToken"]["id"]
                if name not in specials:
                    _fail(path, f"TemplateProcessing names special token {name!r} but does not define it")
                (suffix if seen_sequence else prefix).extend(int(i) for i in specials[name]["ids"])
        elif kind in ("RobertaProcessing", "BertProcessing"):
            prefix.append(int(p["cls"][1]))
            suffix.append(int(p["sep"][1]))
        else:
            _fail(path, f"post-processor {kind!r} is not supported "
                        "(supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)")
    return prefix, suffix


def load_tokenizer_json(path):
    """(core tokenizer, ids the post-processor puts before the text, ids it puts after)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        _fail(path, "a tokenizer.json must be an object with a 'model' object")
    try:
        return _build(path, data)
    except _Unsupported as e:
        _fail(path, str(e))
    except (KeyError, TypeError, AttributeError) as e:
        _fail(path, f"malformed tokenizer.json ({type(e).__name__}: {e})")
    except ValueError as e:  # the C core's messages name the token or pattern; add the file
        if str(e).startswith(path):
            raise
        _fail(path, str(e))


def _build(path, data):
    model = data["model"]
    kind = model.get("type", "BPE" if "merges" in model else None)
    if kind != "BPE":
        _fail(path, f"model type {kind!r} is not supported (only BPE)")
    if model.get("dropout") not in (None, 0, 0.0):
        _fail(path, f"BPE dropout {model['dropout']!r} is not supported")
    for option in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(option):
            _fail(path, f"BPE {option} {model[option]!r} is not supported")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict):
        _fail(path, "model.vocab must be an object of token -> id")
    # ids must be 0..n-1, each once; checked at C speed (250k-token vocabularies are common)
    n = len(vocab)
    ids = list(vocab.values())
    if not all(type(i) is int for i in ids) or sorted(ids) != list(range(n)):
        bad = next(((t, i) for t, i in vocab.items() if type(i) is not int or not 0 <= i < n), None)
        _fail(path, f"vocabulary ids must be 0..{n - 1}, each once: " +
              (f"token {bad[0]!r} has id {bad[1]!r}" if bad else "an id appears twice"))
    by_id = sorted(vocab, key=vocab.__getitem__)
    merges = model.get("merges") or []  # "a b" strings or [a, b] pairs: the C core reads both
    if not isinstance(merges, list):
        _fail(path, "model.merges must be a list")

    steps = _normalizer_steps(path, data.get("normalizer"))
    has_normalizer = bool(steps)
    steps += _pre_tokenizer_steps(path, data.get("pre_tokenizer"))
    steps += _decoder_steps(path, data.get("decoder"))
    prefix, suffix = _template_ids(path, data.get("post_processor"))

    unk = model.get("unk_token")
    unk_id = vocab.get(unk, -1) if unk is not None else -1
    core = _core.hf_bpe_tokenizer(by_id, merges, steps, unk_id, bool(model.get("byte_fallback", False)),
                                  bool(model.get("fuse_unk", False)), bool(model.get("ignore_merges", False)))

    for entry in sorted(data.get("added_tokens") or [], key=lambda e: e["id"]):
        content, token_id, special = entry["content"], entry["id"], bool(entry.get("special", False))
        if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id <= _INT32_MAX:
            _fail(path, f"added token {content!r}: id must be an integer in [0, {_INT32_MAX}], got {token_id!r}")
        if entry.get("normalized", not special) and has_normalizer:
            _fail(path, f"added token {content!r} is normalized=true and the file has a normalizer: "
                        "matching added tokens on normalized text is not supported")
        core.add_token(content, token_id, special)
        flags = ((_ADDED_LSTRIP if entry.get("lstrip") else 0) | (_ADDED_RSTRIP if entry.get("rstrip") else 0) |
                 (_ADDED_SINGLE_WORD if entry.get("single_word") else 0))
        core.set_added_flags(token_id, flags)
    for i in prefix + suffix:
        if not 0 <= i < core.vocab_size:
            _fail(path, f"post-processor token id {i} is outside the vocabulary of {core.vocab_size}")
    return core, prefix, suffix
