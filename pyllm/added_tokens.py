"""Growing a loaded tokenizer's vocabulary as transformers' ``add_tokens`` and
``add_special_tokens`` do.

A new token is split out of any text before encoding, at its vocabulary id when the vocabulary
has it, else at the next free id. ``add_tokens`` returns how many of the tokens were not added
tokens already (tokenizers' count: a vocabulary token made an added token counts, an empty or
already added one does not). Each token is added by one exclusive call into the C core, which
chooses its id and adds it together, so threads adding at once never take the same id
(docs/threads.md).
"""
import dataclasses

from ._args import check_bool

__all__ = ["AddedToken", "add_tokens", "add_special_tokens", "SPECIAL_TOKEN_NAMES"]

_LSTRIP, _RSTRIP, _SINGLE_WORD = 1, 2, 4  # the C core's added-token flags (tokenizer_merges.h)

# The keys transformers' add_special_tokens takes, in the order it lists special tokens.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_EXTRA_KEYS = ("extra_special_tokens", "additional_special_tokens")  # transformers 5's name, then 4's


@dataclasses.dataclass(frozen=True)
class AddedToken:
    """A token to add with its matching options, as ``tokenizers.AddedToken`` (which is accepted
    too, as is any object with these attributes): ``single_word`` (match only a whole word),
    ``lstrip`` / ``rstrip`` (swallow the spaces before / after it; these three apply to
    tokenizer.json tokenizers), ``special`` (dropped by ``decode(skip_special_tokens=True)``).
    ``normalized`` is accepted for compatibility: pyllm matches added tokens on the text as given,
    which is what tokenizers does for tokenizers without a normalizer (LLaMA, BLOOM, SmolLM2)."""
    content: str
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = True
    special: bool = False

    def __post_init__(self):
        if not isinstance(self.content, str):
            raise TypeError(f"content must be a str, got {type(self.content).__name__}")
        for name in ("single_word", "lstrip", "rstrip", "normalized", "special"):
            check_bool(name, getattr(self, name))

    def __str__(self):
        return self.content


def _parts(token, special_tokens, what):
    """(content, special, flags) of a str or an AddedToken-like object."""
    if isinstance(token, str):
        return token, bool(special_tokens), 0
    content = getattr(token, "content", None)
    if not isinstance(content, str):
        raise TypeError(f"{what} must hold str or AddedToken objects (with a str .content), got "
                        f"{type(token).__name__}")
    flags = ((_LSTRIP if getattr(token, "lstrip", False) else 0) | (_RSTRIP if getattr(token, "rstrip", False) else 0)
             | (_SINGLE_WORD if getattr(token, "single_word", False) else 0))
    return content, bool(special_tokens or getattr(token, "special", False)), flags


def _as_list(tokens, what):
    if isinstance(tokens, str) or hasattr(tokens, "content"):
        return [tokens]
    if not isinstance(tokens, (list, tuple)):
        raise TypeError(f"{what} must be a str, an AddedToken or a list of them, got {type(tokens).__name__}")
    return list(tokens)


def add_tokens(tok, new_tokens, special_tokens=False, what="new_tokens"):
    """transformers' ``add_tokens``: the number of tokens that were not added tokens before."""
    parts = [_parts(t, special_tokens, what) for t in _as_list(new_tokens, what)]  # all checked first
    added = 0
    for content, special, flags in parts:
        if content:  # tokenizers ignores an empty token
            added += tok._core.append_token(content, special, flags)[1]
    return added


def add_special_tokens(tok, special_tokens_dict, replace_extra_special_tokens=True):
    """transformers' ``add_special_tokens``: named special tokens (``pad_token``, ...) and the
    list under ``extra_special_tokens`` / ``additional_special_tokens``; returns the number
    added, as :func:`add_tokens`."""
    if not isinstance(special_tokens_dict, dict):
        raise TypeError(f"special_tokens_dict must be a dict such as {{'pad_token': '<pad>'}}, got "
                        f"{type(special_tokens_dict).__name__}")
    unknown = [k for k in special_tokens_dict if k not in SPECIAL_TOKEN_NAMES + _EXTRA_KEYS]
    if unknown:
        raise ValueError(f"special_tokens_dict: {unknown[0]!r} is not a special token name; pyllm accepts "
                         f"{', '.join(SPECIAL_TOKEN_NAMES + _EXTRA_KEYS)}")
    # transformers 5 reads additional_special_tokens (its 4.x name) when extra_special_tokens is absent or empty
    extra_key = ("extra_special_tokens" if special_tokens_dict.get("extra_special_tokens")
                 else "additional_special_tokens")
    # Tokens are added in the dict's order, as transformers adds them, except that it moves the 4.x
    # key additional_special_tokens to the end (renaming it).
    items = [(k, v) for k, v in special_tokens_dict.items() if k != "additional_special_tokens"]
    if "additional_special_tokens" in special_tokens_dict:
        items.append(("additional_special_tokens", special_tokens_dict["additional_special_tokens"]))
    named, extra, order = {}, None, []
    for key, value in items:
        if key in SPECIAL_TOKEN_NAMES:
            if isinstance(value, (list, tuple)):
                raise ValueError(f"{key} must be one str or AddedToken, got {value!r}")
            named[key] = _parts(value, True, f"special_tokens_dict[{key!r}]")
            order.append(named[key])
        elif key == extra_key and value is not None:
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"{key} must be a list of str or AddedToken, got {value!r}")
            extra = [_parts(t, True, f"special_tokens_dict[{key!r}]") for t in value]
            order += extra
    added = 0
    ids = {}
    for content, special, flags in order:
        if content:
            token_id, fresh = tok._core.append_token(content, special, flags)
            ids[content] = token_id
            added += fresh
    for key, (content, _, _) in named.items():
        setattr(tok, f"{key}_id", ids.get(content))
    if extra is not None:
        contents = [content for content, _, _ in extra if content]
        if replace_extra_special_tokens and contents:
            tok._extra_special_tokens = contents
        else:
            tok._extra_special_tokens += [c for c in contents if c not in tok._extra_special_tokens]
    return added
