"""The tokenizer stored in a GGUF file's metadata, built by the C core.

``tokenizer.ggml.model`` names the algorithm:

- ``llama``: SentencePiece BPE from ``tokens``, ``scores`` and ``token_type`` (byte fallback when
  the vocabulary has ``<0xXX>`` byte tokens), the dummy prefix as ``add_space_prefix`` says
  (default on) and ``remove_extra_whitespaces`` (default off);
- ``gpt2``: byte-level BPE from ``tokens`` and ``merges`` (rank = position), pre-tokenized by
  the regexes ``tokenizer.ggml.pre`` names. Each regex splits every piece further, its matches
  and the text between them both becoming pieces (llama.cpp's ``unicode_regex_split``, HF's
  ``Split(behavior="Isolated")``); then bytes map to GPT-2's characters.

Tokens typed CONTROL or USER_DEFINED are the model's added tokens: written in the text, they are
split out and become their ids (as transformers does). Special ids come from
``tokenizer.ggml.{bos,eos,unknown,padding}_token_id`` (an id outside the vocabulary, such as
0xFFFFFFFF, means none); ``add_bos_token`` / ``add_eos_token`` and ``tokenizer.chat_template``
are honoured. Anything not understood raises GGUFError naming the file: an unknown model or
``pre`` value is never guessed.
"""
import numpy as np

from . import _core
from .gguf import REQUIRED, GGUFError, GGUFFile

__all__ = ["load_gguf_tokenizer", "PRE_TOKENIZERS"]

# Pipeline stages and step kinds, as csrc/tokenizers/pretokenizer.h and decoder_chain.h number them.
_PRE_TOKENIZER, _DECODER = 1, 2
_SPLIT, _BYTE_LEVEL = 2, 3
_D_BYTE_LEVEL = 0
_ISOLATED = 1
_CONTROL, _USER_DEFINED = 3, 4

_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
           r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# tokenizer.ggml.pre -> (regexes applied in turn, options). The regexes are those of llama.cpp's
# llama-vocab.cpp for each value (where it adapted a tokenizer.json regex, the original, which our
# engine runs as is); options: ignore_merges (a word that is a token is not split) and the
# add_bos_token default.
PRE_TOKENIZERS = {
    # llama.cpp's own default for BPE vocabularies
    "default": ([r"[\p{P}\$\+<=>\^~\|]+", _GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"], {}),
    "gpt-2": ([_GPT2], {}),
    "llama-bpe": ([_LLAMA3], {"ignore_merges": True, "add_bos": True}),
    "llama3": ([_LLAMA3], {"ignore_merges": True, "add_bos": True}),
    "llama-v3": ([_LLAMA3], {"ignore_merges": True, "add_bos": True}),
    "smollm": ([r"\p{N}", _GPT2], {}),
    "starcoder": ([r"\p{N}", _GPT2], {}),
    "refact": ([r"\p{N}", _GPT2], {}),
    "bloom": ([r" ?[^(\s|.,!?…。，、।۔،)]+"], {}),
    "poro-chat": ([r" ?[^(\s|.,!?…。，、।۔،)]+"], {}),
    "gpt3-finnish": ([r" ?[^(\s|.,!?…。，、।۔،)]+"], {}),
    "mpt": ([_GPT2], {}),
    "olmo": ([_GPT2], {}),
    "phi-2": ([_GPT2], {}),
}


def _special_id(f, key, n_tokens, default):
    value = f.get_int(key, None)
    if value is None:
        value = default
    return value if value is not None and 0 <= value < n_tokens else None


def _token_arrays(f, n_tokens):
    types = f.get_array("tokenizer.ggml.token_type", "int", None)
    if types is None:
        types = np.ones(n_tokens, np.int32)  # every token NORMAL
    if len(types) != n_tokens:
        raise GGUFError(f"{f.path}: tokenizer.ggml.token_type has {len(types)} entries for {n_tokens} tokens")
    return np.ascontiguousarray(types, dtype=np.int32)


def _sentencepiece(f, tokens):
    n = len(tokens)
    scores = f.get_array("tokenizer.ggml.scores", "float", REQUIRED)
    if len(scores) != n:
        raise GGUFError(f"{f.path}: tokenizer.ggml.scores has {len(scores)} entries for {n} tokens")
    types = _token_arrays(f, n)
    core = _core.sentencepiece_from_pieces(
        tokens, np.ascontiguousarray(scores, dtype=np.float32), types,
        bool(f.get_bool("tokenizer.ggml.add_space_prefix", True)),
        bool(f.get_bool("tokenizer.ggml.remove_extra_whitespaces", False)), f"{f.path}: tokenizer.ggml.tokens")
    ids = {"bos": _special_id(f, "tokenizer.ggml.bos_token_id", n, 1),
           "eos": _special_id(f, "tokenizer.ggml.eos_token_id", n, 2),
           "unk": _special_id(f, "tokenizer.ggml.unknown_token_id", n, 0),
           "pad": _special_id(f, "tokenizer.ggml.padding_token_id", n, None)}
    return core, ids, True


def _byte_level(f, tokens):
    n = len(tokens)
    pre = f.get_str("tokenizer.ggml.pre", None)
    if pre is None:
        raise GGUFError(f"{f.path}: tokenizer.ggml.pre is missing: the pre-tokenizer of a gpt2 (byte-level BPE) "
                        "vocabulary cannot be guessed")
    if pre not in PRE_TOKENIZERS:
        raise GGUFError(f"{f.path}: tokenizer.ggml.pre {pre!r} is not supported "
                        f"(supported: {', '.join(sorted(PRE_TOKENIZERS))})")
    regexes, options = PRE_TOKENIZERS[pre]
    merges = f.get_array("tokenizer.ggml.merges", "string", REQUIRED)
    types = _token_arrays(f, n)
    steps = [(_PRE_TOKENIZER, _SPLIT, r, None, True, _ISOLATED, 0) for r in regexes]
    steps.append((_PRE_TOKENIZER, _BYTE_LEVEL, None, None, False, 0, 0))  # no prefix space, no regex of its own
    steps.append((_DECODER, _D_BYTE_LEVEL, None, None, False, 0, 0))
    unk = _special_id(f, "tokenizer.ggml.unknown_token_id", n, None)
    # llama.cpp's byte-level BPE drops a byte whose character has no token (SmolLM2's vocabulary
    # lacks 21 of the 256): so the core gets no unknown id, which makes it drop them too.
    core = _core.hf_bpe_tokenizer(list(tokens), list(merges), steps, -1, False, False,
                                  bool(options.get("ignore_merges", False)))
    for token_id in np.flatnonzero((types == _CONTROL) | (types == _USER_DEFINED)):
        core.add_token(tokens[token_id], int(token_id), bool(types[token_id] == _CONTROL))
    ids = {"bos": _special_id(f, "tokenizer.ggml.bos_token_id", n, None),
           "eos": _special_id(f, "tokenizer.ggml.eos_token_id", n, None),
           "unk": unk,
           "pad": _special_id(f, "tokenizer.ggml.padding_token_id", n, None)}
    return core, ids, bool(options.get("add_bos", False))


def load_gguf_tokenizer(source):
    """(core tokenizer, keyword arguments for pyllm.Tokenizer, chat template or None) from a GGUF
    path or GGUFFile. Every problem is a GGUFError naming the file."""
    f = source if isinstance(source, GGUFFile) else GGUFFile(source)
    try:
        return _load(f)
    except GGUFError:
        raise
    except ValueError as e:  # the C core's message names the token; say which file
        message = str(e)
        raise GGUFError(message if message.startswith(f.path) else f"{f.path}: {message}") from None


def _load(f):
    model = f.get_str("tokenizer.ggml.model", None)
    if model is None:
        raise GGUFError(f"{f.path}: the file holds no tokenizer (tokenizer.ggml.model is missing)")
    tokens = f.get_array("tokenizer.ggml.tokens", "string", REQUIRED)
    if model == "llama":
        pre = f.get_str("tokenizer.ggml.pre", "default")
        if pre != "default":  # SentencePiece has no regex pre-tokenizer: another value is a mistake
            raise GGUFError(f"{f.path}: tokenizer.ggml.pre {pre!r} does not apply to a SentencePiece ('llama') "
                            "vocabulary (only 'default' does)")
        core, ids, add_bos = _sentencepiece(f, tokens)
    elif model == "gpt2":
        core, ids, add_bos = _byte_level(f, tokens)
    else:
        raise GGUFError(f"{f.path}: tokenizer.ggml.model {model!r} is not supported ('llama': SentencePiece BPE, "
                        "'gpt2': byte-level BPE)")
    kwargs = {
        "add_bos_token": bool(f.get_bool("tokenizer.ggml.add_bos_token", add_bos)) and ids["bos"] is not None,
        "add_eos_token": bool(f.get_bool("tokenizer.ggml.add_eos_token", False)) and ids["eos"] is not None,
        "bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "pad_token_id": ids["pad"],
        "unk_token_id": ids["unk"],
    }
    return core, kwargs, f.get_str("tokenizer.chat_template", None)
