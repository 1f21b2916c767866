"""Text <-> token ids for LLaMA- and BLOOM-family models, computed by the C core.

``Tokenizer`` wraps a SentencePiece BPE model (``tokenizer.model``, or the same vocabulary
in llama2.c's ``tokenizer.bin`` form) or a Hugging Face ``tokenizer.json`` BPE (byte-level as
BLOOM, GPT-2 and LLaMA-3 use it, or SentencePiece-style as HF ships LLaMA), and follows the
Hugging Face conventions a user expects:
``encode`` adds BOS (and EOS when the tokenizer config asks for it), special-token strings
written in the text (``<s>``, ``</s>``, ``<unk>``, added tokens) become their ids, and
``decode(ids, skip_special_tokens=True)`` equals ``sentencepiece``'s (or ``tokenizers``') own ``decode``;
``stream_decoder()`` decodes generated ids one at a time.
"""
import json
import os
import warnings

import numpy as np

from . import _checks, _core, added_tokens, file_kinds, hub, limits, tokenizer_call
from .added_tokens import AddedToken
from .file_kinds import GGUF, JSON, LLAMA2C_TOKENIZER, SENTENCEPIECE, TOKENIZER_JSON
from ._args import check_bool
from .tokenizer_json import load_tokenizer_json

__all__ = ["Tokenizer", "StreamDecoder", "AddedToken"]

# Names the usual special tokens take in tokenizer.json files, for from_file (no config to say).
_BOS_NAMES = ("<s>", "<|begin_of_text|>", "<|startoftext|>")
_EOS_NAMES = ("</s>", "<|end_of_text|>", "<|endoftext|>")
_PAD_NAMES = ("<pad>", "<|pad|>", "[PAD]")
_PIECE_CONTROL, _PIECE_BYTE = 3, 6  # token_type of a special token and of a byte piece (<0x41>)


def _token_content(value):
    """A special token as written in tokenizer_config.json: a str, {"content": ...} or null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(f"a special token must be a string or an object with 'content', got {value!r}")


def _is_gguf(path):
    """A file named .gguf, or one that starts with the GGUF magic."""
    if path.endswith(".gguf"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def _read_json(path):
    limits.check_file_size(path, limits.MAX_JSON_BYTES, os.path.basename(path))
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def _read_tokenizer_file(path):
    """The bytes of a tokenizer.model / llama2.c tokenizer, its size checked before it is read."""
    limits.check_file_size(path, limits.MAX_TOKENIZER_BYTES, "tokenizer file")
    with open(path, "rb") as f:
        return f.read()


def _added_tokens(config, path):
    """tokenizer_config.json's added_tokens_decoder as {id: entry}; ValueError naming the file and
    the key for an id that is not a token id (below pyllm.limits.MAX_VOCAB)."""
    added = config.get("added_tokens_decoder") or {}
    if not isinstance(added, dict):
        raise ValueError(f"{path}: added_tokens_decoder must be an object of token id -> token, got {added!r}")
    out = {}
    for key, entry in added.items():
        token_id = int(key) if isinstance(key, str) and key.isascii() and key.isdigit() and len(key) < 12 else None
        if token_id is None or token_id >= limits.MAX_VOCAB:
            raise ValueError(f"{path}: added_tokens_decoder key {key!r} must be a token id below pyllm's limit "
                             f"of {limits.MAX_VOCAB}")
        out[token_id] = entry
    return out


class Tokenizer:
    """A BPE tokenizer: SentencePiece (``tokenizer.model``, LLaMA-1/2 and compatible
    vocabularies) or Hugging Face ``tokenizer.json`` (byte-level BPE as BLOOM, GPT-2 and LLaMA-3
    use it; SentencePiece-style BPE as HF ships LLaMA), with ids identical to sentencepiece /
    tokenizers.

    Build it with :meth:`from_file`, :meth:`from_pretrained` or :meth:`from_llama2c`.
    """

    def __init__(self, core, *, add_bos_token=None, add_eos_token=False, legacy=True,
                 bos_token_id=None, eos_token_id=None, pad_token_id=None, unk_token_id=None,
                 prefix_ids=None, suffix_ids=None):
        if not isinstance(core, _core.Tokenizer):  # the C type of both tokenizer kinds
            raise TypeError(f"core must be pyllm's C tokenizer, got {type(core).__name__}: build a Tokenizer with "
                            "Tokenizer.from_file, from_pretrained, from_gguf or from_llama2c")
        self._core = core
        self.bos_token_id = core.bos_id if bos_token_id is None else bos_token_id
        self.eos_token_id = core.eos_id if eos_token_id is None else eos_token_id
        self.pad_token_id = core.pad_id if pad_token_id is None else pad_token_id
        self.unk_token_id = core.unk_id if unk_token_id is None else unk_token_id
        self.add_bos_token = (self.bos_token_id is not None) if add_bos_token is None else bool(add_bos_token)
        self.add_eos_token = bool(add_eos_token)
        # transformers' LLaMA ``legacy`` flag: True (its default) encodes every stretch between
        # special tokens as a text of its own, dummy prefix included; False gives a dummy prefix
        # only to the start of the text. Text without special tokens is unaffected.
        self.legacy = bool(legacy)
        # Ids encode(add_special_tokens=True) puts around the text: BOS/EOS by the flags above, or
        # a tokenizer.json post-processor's template.
        if prefix_ids is None:
            prefix_ids = [self.bos_token_id] if self.add_bos_token and self.bos_token_id is not None else []
        if suffix_ids is None:
            suffix_ids = [self.eos_token_id] if self.add_eos_token and self.eos_token_id is not None else []
        self._prefix_ids = list(prefix_ids)
        self._suffix_ids = list(suffix_ids)
        self.chat_template = None  # a Jinja string from tokenizer_config.json (from_pretrained)
        # transformers' other named special tokens, set by add_special_tokens or tokenizer_config.json
        self.sep_token_id = self.cls_token_id = self.mask_token_id = None
        self._extra_special_tokens = []  # extra_special_tokens (additional_special_tokens): their text
        # The tokenizer call's defaults, from tokenizer_config.json when it gives them. pyllm pads on
        # the left unless told otherwise: generation needs left padding.
        self.padding_side = "left"
        self.truncation_side = "right"
        self.model_max_length = None  # None: no limit known
        self.clean_up_tokenization_spaces = False

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_file(cls, path):
        """Load a SentencePiece ``tokenizer.model`` (BPE) or a Hugging Face ``tokenizer.json`` (BPE).

        Unigram and WordPiece models raise ValueError. For tokenizer.json, BOS/EOS are added as its
        post-processor says, and bos/eos/pad ids are those of the usual token names when present.
        A GGUF file gives the tokenizer in its metadata. The kind is told from the file's content;
        another kind of file raises ValueError naming what it is and the call that reads it."""
        path = _checks.path_argument("path", path)
        kind = file_kinds.expect(path, {GGUF, TOKENIZER_JSON, JSON, SENTENCEPIECE},
                                 "a tokenizer.model, tokenizer.json or GGUF file")
        # A file whose content tells nothing goes by its name to the parser that reports on it.
        if kind in (TOKENIZER_JSON, JSON) or (kind != SENTENCEPIECE and path.endswith(".json")):
            return cls._from_json(path, {}, {})
        if kind == GGUF or (kind != SENTENCEPIECE and _is_gguf(path)):
            return cls.from_gguf(path)
        data = _read_tokenizer_file(path)
        try:
            return cls(_core.sentencepiece_from_bytes(data))
        except ValueError as e:  # the core names no file: say which one
            raise ValueError(f"{path}: not a usable SentencePiece model: {e}") from None

    @classmethod
    def from_llama2c(cls, path, vocab_size):
        """Load a llama2.c tokenizer file (``tokenizer.bin``, ``tok512.bin``).

        The file does not store its number of tokens: give the model's ``vocab_size``."""
        path = _checks.path_argument("path", path)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        vocab_size = limits.check_count("vocab_size", vocab_size, limits.MAX_VOCAB)
        path = _checks.path_argument("path", path)
        file_kinds.expect(path, {LLAMA2C_TOKENIZER}, "a llama2.c tokenizer")
        data = _read_tokenizer_file(path)
        try:
            return cls(_core.sentencepiece_from_llama2c(data, vocab_size))
        except ValueError as e:
            raise ValueError(f"{path}: not a usable llama2.c tokenizer: {e}") from None

    @classmethod
    def _from_json(cls, path, config, special_map):
        limits.check_file_size(path, limits.MAX_TOKENIZER_BYTES, "tokenizer file")
        core, prefix, suffix = load_tokenizer_json(path)

        def named(key, names):
            content = _token_content(config.get(key)) if key in config else None
            if content is None:
                content = _token_content(special_map.get(key))
            if content is not None:
                token_id = core.token_to_id(content)
                if token_id is None:  # transformers appends an unknown special token to the vocabulary
                    token_id = core.vocab_size
                    core.add_token(content, token_id)
                return token_id
            if config or special_map:
                return None
            for name in names:
                if core.token_to_id(name) is not None:
                    return core.token_to_id(name)
            return None

        bos, eos, pad = named("bos_token", _BOS_NAMES), named("eos_token", _EOS_NAMES), named("pad_token", _PAD_NAMES)
        unk = named("unk_token", ("<unk>",))
        # A config that says add_bos_token / add_eos_token rewrites the template, as transformers does.
        if "add_bos_token" in config or "add_eos_token" in config:
            prefix = [bos] if config.get("add_bos_token") and bos is not None else []
            suffix = [eos] if config.get("add_eos_token") and eos is not None else []
        return cls(core, add_bos_token=bool(prefix), add_eos_token=bool(suffix), bos_token_id=bos,
                   eos_token_id=eos, pad_token_id=pad, unk_token_id=unk, prefix_ids=prefix, suffix_ids=suffix)

    @classmethod
    def from_gguf(cls, source, revision=None, filename=None, local_files_only=False):
        """The tokenizer in a GGUF file's metadata (a path or an open :class:`pyllm.gguf.GGUFFile`):
        SentencePiece BPE for ``tokenizer.ggml.model = "llama"``, byte-level BPE for ``"gpt2"``
        with the pre-tokenizer ``tokenizer.ggml.pre`` names; special ids, add_bos_token /
        add_eos_token and the chat template from the metadata.

        source may be a Hub id: ``filename`` names the .gguf file in the repo (needed when it holds
        several); revision and local_files_only as in :meth:`from_pretrained`."""
        from .gguf import GGUFFile
        from .tokenizer_gguf import load_gguf_tokenizer
        if not isinstance(source, GGUFFile):
            source = _checks.path_argument("source", source)
            _checks.optional_str("filename", filename, "a GGUF file name inside the repo or directory")
            source = hub.resolve(source, "gguf", revision, filename, local_files_only)
            file_kinds.expect(source, {GGUF}, "a GGUF file")
        core, kwargs, template = load_gguf_tokenizer(source)
        tok = cls(core, **kwargs)
        tok.chat_template = template
        return tok

    @classmethod
    def from_pretrained(cls, directory, revision=None, filename=None, local_files_only=False):
        """Load the tokenizer of a model directory: ``tokenizer.json`` when present (as
        transformers prefers it), else ``tokenizer.model``, with the BOS/EOS flags, special
        tokens and added tokens of ``tokenizer_config.json`` / ``special_tokens_map.json``.
        A ``.gguf`` file gives the tokenizer in its metadata (:meth:`from_gguf`).

        directory may be a Hugging Face Hub id ("org/name") when it is not an existing path:
        huggingface_hub (``pip install "pyllm[hub]"``) fetches the tokenizer files into its cache,
        at ``revision`` (None: the default branch), from the cache alone with
        ``local_files_only=True`` or HF_HUB_OFFLINE=1. ``filename`` picks a GGUF file in a repo or
        directory (a repo with only GGUF files and one of them needs none)."""
        directory = _checks.path_argument("directory", directory)
        _checks.optional_str("filename", filename, "a file name inside the repo or directory")
        directory = hub.resolve(directory, "tokenizer", revision, filename, local_files_only)
        if os.path.isfile(directory):
            kind = file_kinds.expect(directory, {GGUF}, "a model directory or GGUF file")
            if kind == GGUF or _is_gguf(directory):
                return cls.from_gguf(directory)
            raise NotADirectoryError(f"expected a model directory or a GGUF file, got a file pyllm does not recognise: "
                                     f"{directory}")
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"model directory not found: {directory}")
        config = {}
        config_path = os.path.join(directory, "tokenizer_config.json")
        if os.path.exists(config_path):
            config = _read_json(config_path)
        special_map = {}
        map_path = os.path.join(directory, "special_tokens_map.json")
        if os.path.exists(map_path):
            special_map = _read_json(map_path)
        if not isinstance(config, dict) or not isinstance(special_map, dict):
            raise ValueError(f"{directory}: tokenizer_config.json and special_tokens_map.json must hold objects")
        json_path = os.path.join(directory, "tokenizer.json")
        if os.path.exists(json_path):
            file_kinds.expect(json_path, {TOKENIZER_JSON, JSON}, "a Hugging Face tokenizer.json")
            return cls._from_json(json_path, config, special_map)._with_chat_template(config, directory)
        model_path = os.path.join(directory, "tokenizer.model")
        if not os.path.exists(model_path):
            raise FileNotFoundError(f"no tokenizer.json or tokenizer.model in {directory}")
        file_kinds.expect(model_path, {SENTENCEPIECE}, "a SentencePiece model")
        core = _core.sentencepiece_from_bytes(_read_tokenizer_file(model_path))

        # Added tokens first: their ids are fixed by the file.
        added = _added_tokens(config, os.path.join(directory, "tokenizer_config.json"))
        for token_id, entry in sorted(added.items()):
            special = entry.get("special", True) if isinstance(entry, dict) else True
            core.add_token(_token_content(entry), token_id, bool(special))

        def special_id(name):
            content = _token_content(config.get(name)) if name in config else None
            if content is None:
                content = _token_content(special_map.get(name))
            if content is None:
                return None
            token_id = core.token_to_id(content)
            if token_id is None:  # transformers appends an unknown special token to the vocabulary
                token_id = core.vocab_size
            core.add_token(content, token_id)
            return token_id

        for extra in config.get("additional_special_tokens") or special_map.get("additional_special_tokens") or []:
            content = _token_content(extra)
            token_id = core.token_to_id(content)
            core.add_token(content, core.vocab_size if token_id is None else token_id)

        bos, eos, pad, unk = (special_id(n) for n in ("bos_token", "eos_token", "pad_token", "unk_token"))
        return cls(core,
                   add_bos_token=config.get("add_bos_token", True),
                   add_eos_token=config.get("add_eos_token", False),
                   legacy=config.get("legacy", True) is not False,
                   bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
                   unk_token_id=unk)._with_chat_template(config, directory)

    def _with_chat_template(self, config, directory):
        """Take tokenizer_config.json's chat_template (a string, or a list of named templates
        of which 'default' is used), else a chat_template.jinja file beside it."""
        template = config.get("chat_template")
        if isinstance(template, list):
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        jinja_path = os.path.join(directory, "chat_template.jinja")
        if template is None and os.path.exists(jinja_path):
            with open(jinja_path, encoding="utf-8") as f:
                template = f.read()
        if template is not None and not isinstance(template, str):
            raise ValueError(f"{directory}: chat_template must be a string, got {type(template).__name__}")
        self.chat_template = template
        self._apply_call_settings(config, directory)
        return self

    def _apply_call_settings(self, config, directory):
        """tokenizer_config.json's settings of the tokenizer call and its extra special tokens."""
        def setting(key, accepted):
            value = config.get(key)
            if value is not None and value not in accepted:
                raise ValueError(f"{directory}: tokenizer_config.json's {key} must be one of {accepted}, got {value!r}")
            return value
        self.padding_side = setting("padding_side", ("left", "right")) or self.padding_side
        self.truncation_side = setting("truncation_side", ("left", "right")) or self.truncation_side
        self.clean_up_tokenization_spaces = bool(setting("clean_up_tokenization_spaces", (True, False)))
        limit = config.get("model_max_length")
        if isinstance(limit, float) and limit.is_integer():  # older files write 1e+30 for "no limit"
            limit = int(limit)
        if limit is not None and (not limits.is_int(limit) or limit < 1):
            raise ValueError(f"{directory}: tokenizer_config.json's model_max_length must be a positive integer, "
                             f"got {limit!r}")
        self.model_max_length = limit if limit is not None and limit < tokenizer_call.NO_LIMIT else None
        extra = config.get("extra_special_tokens") or config.get("additional_special_tokens") or []
        if isinstance(extra, dict):  # transformers 5 may name them: {"image_token": "<image>"}
            extra = list(extra.values())
        if not isinstance(extra, list):
            raise ValueError(f"{directory}: tokenizer_config.json's extra_special_tokens must be a list, got {extra!r}")
        self._extra_special_tokens = [_token_content(t) for t in extra]
        for name in ("sep_token", "cls_token", "mask_token"):
            content = _token_content(config.get(name))
            if content is not None:
                setattr(self, f"{name}_id", self._core.token_to_id(content))

    # -- encoding and decoding ----------------------------------------------------------

    def _with_specials(self, ids):
        if self._prefix_ids:
            ids[:0] = self._prefix_ids
        ids.extend(self._suffix_ids)
        return ids

    def encode(self, text, add_special_tokens=True, **options):
        """Token ids of ``text``; BOS (and EOS when configured) added when ``add_special_tokens``.

        transformers' ``encode`` options (``truncation``, ``max_length``, ``padding``,
        ``return_tensors="np"``, ...) give the ``input_ids`` the tokenizer call gives for them."""
        add_special_tokens = check_bool("add_special_tokens", add_special_tokens)
        if options:
            if not isinstance(text, str):
                raise TypeError(f"encode takes one text (a str), got {type(text).__name__}: use tokenizer(texts) "
                                "for a batch")
            return self(text, add_special_tokens=add_special_tokens, **options)["input_ids"]
        ids = self._core.encode(text, True, self.legacy)
        return self._with_specials(ids) if add_special_tokens else ids

    def encode_batch(self, texts, add_special_tokens=True):
        """``encode`` of every text of a list, in one call into C."""
        if isinstance(texts, (str, bytes)) or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a list of str, got {type(texts).__name__}")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] must be a str, got {type(text).__name__}")
        add_special_tokens = check_bool("add_special_tokens", add_special_tokens)
        batch = self._core.encode_batch(texts, True, self.legacy)
        if add_special_tokens:
            for ids in batch:
                self._with_specials(ids)
        return batch

    def num_special_tokens_to_add(self, pair=False):
        """How many ids ``encode(add_special_tokens=True)`` puts around a text."""
        if check_bool("pair", pair):
            raise ValueError("pair=True: pyllm's tokenizers encode single texts, not pairs")
        return len(self._prefix_ids) + len(self._suffix_ids)

    def _clean_up(self, clean_up_tokenization_spaces):
        """transformers 5 does not clean up the decoded text of BPE tokenizers (all of pyllm's)
        even when asked, and warns: so do we, leaving the text unchanged."""
        if clean_up_tokenization_spaces not in (None, True, False):
            raise ValueError(f"clean_up_tokenization_spaces must be True, False or None, got "
                             f"{clean_up_tokenization_spaces!r}")
        if clean_up_tokenization_spaces:
            warnings.warn("clean_up_tokenization_spaces=True is ignored, as transformers ignores it for BPE "
                          "tokenizers (it would strip spaces before punctuation); pass False", stacklevel=3)

    def decode(self, token_ids, skip_special_tokens=False, clean_up_tokenization_spaces=None, **kwargs):
        """Text of token ids: an int, a sequence of int or a 1-D integer array. Rows of ids (which
        transformers 5's decode also takes) go to :meth:`batch_decode`.

        ``skip_special_tokens=True`` gives exactly sentencepiece's ``decode``; with False, special
        tokens are written as their text (``"<s> Hello"``)."""
        if kwargs:
            raise TypeError(f"decode got an unexpected keyword argument {next(iter(kwargs))!r}; pyllm accepts "
                            "token_ids, skip_special_tokens, clean_up_tokenization_spaces")
        self._clean_up(clean_up_tokenization_spaces)
        rows = (isinstance(token_ids, (list, tuple)) and len(token_ids) > 0
                and isinstance(token_ids[0], (list, tuple, np.ndarray)))
        if rows or (isinstance(token_ids, np.ndarray) and token_ids.ndim > 1):
            raise ValueError("decode takes one sequence of ids: use batch_decode for rows of them (a list of id lists "
                             "or a 2-D array)")
        if limits.is_int(token_ids):
            token_ids = [token_ids]
        skip_special_tokens = check_bool("skip_special_tokens", skip_special_tokens)
        try:
            return self._core.decode(token_ids, skip_special_tokens)
        except IndexError as e:  # an id outside the vocabulary: IndexError, named
            raise IndexError(f"token_ids holds a {e}") from None
        except TypeError as e:
            raise TypeError(f"token_ids: {e} (an int, a list of int or a 1-D integer array)") from None

    def batch_decode(self, sequences, skip_special_tokens=False, clean_up_tokenization_spaces=None, **kwargs):
        """``decode`` of every row of a 2-D array or list of id lists."""
        if kwargs:
            raise TypeError(f"batch_decode got an unexpected keyword argument {next(iter(kwargs))!r}; pyllm accepts "
                            "sequences, skip_special_tokens, clean_up_tokenization_spaces")
        if isinstance(sequences, np.ndarray):
            if sequences.ndim != 2:
                raise ValueError(f"batch_decode needs a 2-D array [rows, ids], got shape {sequences.shape}")
        elif not isinstance(sequences, (list, tuple)):
            raise TypeError(f"sequences must be a list of id lists or a 2-D array, got {type(sequences).__name__}")
        self._clean_up(clean_up_tokenization_spaces)
        skip_special_tokens = check_bool("skip_special_tokens", skip_special_tokens)
        out = []
        for index, row in enumerate(sequences):
            try:
                out.append(self._core.decode(row, skip_special_tokens))
            except (IndexError, TypeError) as e:
                raise type(e)(f"sequences[{index}]: {e}") from None
        return out

    def __call__(self, text=None, add_special_tokens=True, padding=False, truncation=None, max_length=None,
                 pad_to_multiple_of=None, padding_side=None, return_tensors=None, return_attention_mask=None,
                 return_length=False, verbose=True, **unsupported):
        """transformers' tokenizer call: a :class:`~pyllm.tokenizer_call.BatchEncoding` (a dict whose
        keys read as attributes) with ``input_ids`` and ``attention_mask``.

        ``text`` is a string or a list of strings. ``truncation`` (True / "longest_first" /
        "only_first") cuts each text to ``max_length`` ids, special tokens included, keeping its
        start (or its end when ``truncation_side`` is "left"); ``max_length`` alone turns it on.
        ``padding`` True / "longest" pads to the longest row, "max_length" to ``max_length``,
        then up to a multiple of ``pad_to_multiple_of``, with pad_token_id (else eos_token_id,
        else 0) on ``padding_side`` (default: the tokenizer's ``padding_side``, "left" unless
        tokenizer_config.json says otherwise), mask 0 there. ``return_tensors="np"`` gives int64
        NumPy arrays [rows, length] (a single string gives one row too); None gives lists (a
        single string gives flat lists); "pt" is refused: pyllm returns NumPy.
        ``return_attention_mask=False`` leaves the mask out; ``return_length=True`` adds
        ``length``. Sentence pairs, offsets, overflow windows and token type ids raise."""
        check_bool("return_length", return_length)
        return tokenizer_call.encode_call(
            self, text, add_special_tokens=check_bool("add_special_tokens", add_special_tokens), padding=padding, truncation=truncation,
            max_length=max_length, pad_to_multiple_of=pad_to_multiple_of, padding_side=padding_side,
            return_tensors=return_tensors, return_attention_mask=return_attention_mask, return_length=return_length,
            verbose=verbose, **unsupported)

    def special_tokens(self):
        """The special tokens' text a chat template sees (transformers' ``special_tokens_map``):
        bos_token, eos_token, unk_token, pad_token and the other named ones that are set."""
        out = {}
        for name in added_tokens.SPECIAL_TOKEN_NAMES:
            token_id = getattr(self, f"{name}_id")
            if token_id is not None:
                out[name] = self.id_to_token(token_id)
        return out

    @property
    def special_tokens_map(self):
        return self.special_tokens()

    @property
    def all_special_tokens(self):
        """The named special tokens then the extra ones, each once, as transformers lists them."""
        out = list(dict.fromkeys(list(self.special_tokens().values()) + self._extra_special_tokens))
        return [t for t in out if self._core.token_to_id(t) is not None]

    @property
    def all_special_ids(self):
        return [self._core.token_to_id(t) for t in self.all_special_tokens]

    def apply_chat_template(self, conversation, tools=None, documents=None, chat_template=None,
                            add_generation_prompt=False, continue_final_message=False, tokenize=True, padding=False,
                            truncation=False, max_length=None, return_tensors=None, return_dict=False,
                            tokenizer_kwargs=None, return_assistant_tokens_mask=False, sanitize_control_tokens=False,
                            **template_variables):
        """The prompt of a conversation, as transformers renders it: ``conversation`` (dicts with
        ``role`` and ``content``; or a list of conversations, giving a list of results) through
        ``chat_template`` (default: the tokenizer's own, from tokenizer_config.json; or a Jinja
        string, "alpaca" / "vicuna", or a callable), with the special tokens, ``tools``,
        ``documents`` and ``template_variables`` visible. ``continue_final_message=True`` ends the
        text inside the last message (no end-of-turn), to have the model continue it.

        ``tokenize=False`` returns the text. ``tokenize=True`` encodes it without adding special
        tokens (the template writes them) through the tokenizer call, with ``padding``,
        ``truncation``, ``max_length``, ``return_tensors``: the ids, or with ``return_dict=True``
        the call's BatchEncoding. pyllm's default is ``return_dict=False`` (the ids, as
        transformers 4 returned them); transformers 5 defaults to True: pass it to get the dict."""
        from . import templates
        batched = isinstance(conversation, (list, tuple)) and conversation and isinstance(conversation[0], (list, tuple))
        for row in (conversation if batched else [conversation]):  # a batch of conversations: each checked
            templates.check_messages(row, "conversation")
        for name, value in (("add_generation_prompt", add_generation_prompt), ("tokenize", tokenize),
                            ("continue_final_message", continue_final_message), ("return_dict", return_dict)):
            check_bool(name, value)
        if tokenizer_kwargs:
            raise ValueError("tokenizer_kwargs is not supported: pass padding, truncation, max_length and "
                             "return_tensors as arguments of apply_chat_template")
        if return_assistant_tokens_mask:
            raise ValueError("return_assistant_tokens_mask=True is not supported: pyllm does not track which ids "
                             "the assistant wrote")
        if sanitize_control_tokens:
            raise ValueError("sanitize_control_tokens=True is not supported: special-token strings in messages "
                             "become their ids")
        if continue_final_message and add_generation_prompt:
            raise ValueError("continue_final_message and add_generation_prompt exclude each other: continue the last "
                             "message, or open a new assistant turn")
        return_tensors = tokenizer_call.check_return_tensors(return_tensors)
        template = self.chat_template if chat_template is None else chat_template
        if template is None:
            raise ValueError("this tokenizer has no chat_template (tokenizer_config.json has none): pass "
                             "chat_template= (a Jinja string, 'alpaca', 'vicuna' or a callable; see pyllm.templates)")
        batched = (isinstance(conversation, (list, tuple)) and len(conversation) > 0
                   and isinstance(conversation[0], (list, tuple)))
        conversations = list(conversation) if batched else [conversation]
        variables = {**self.special_tokens(), **template_variables}
        texts = [templates.render(template, messages, add_generation_prompt=add_generation_prompt, tools=tools,
                                  documents=documents, continue_final_message=continue_final_message, **variables)
                 for messages in conversations]
        if not tokenize:
            return texts if batched else texts[0]
        out = self(texts if batched else texts[0], add_special_tokens=False, padding=padding, truncation=truncation,
                   max_length=max_length, return_tensors=return_tensors)
        return out if return_dict else out["input_ids"]

    def stream_decoder(self, skip_special_tokens=False):
        """A :class:`StreamDecoder` for text generated one token at a time."""
        check_bool("skip_special_tokens", skip_special_tokens)
        return StreamDecoder(self, skip_special_tokens)

    # -- vocabulary ---------------------------------------------------------------------

    @property
    def vocab_size(self):
        """Number of token ids, added tokens included."""
        return self._core.vocab_size

    def __len__(self):
        return self._core.vocab_size

    def id_to_token(self, token_id):
        """The piece of an id (``"▁the"``, ``"<0x0A>"``, ``"<s>"``)."""
        if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)):
            raise TypeError(f"token_id must be an int, got {type(token_id).__name__}")
        try:
            return self._core.id_to_token(token_id)
        except IndexError as e:
            raise IndexError(f"token_id: {e}") from None

    def token_to_id(self, token):
        """The id of a piece, or None when it is not in the vocabulary."""
        return self._core.token_to_id(token)

    def convert_ids_to_tokens(self, ids, skip_special_tokens=False):
        """transformers' ``convert_ids_to_tokens``: the piece of an id (an int gives a str, a
        list or 1-D array a list); an id past the vocabulary gives None, as tokenizers does;
        ``skip_special_tokens`` drops :attr:`all_special_ids`."""
        check_bool("skip_special_tokens", skip_special_tokens)
        n = self._core.vocab_size

        def piece(token_id):
            if not limits.is_int(token_id) or token_id < 0:
                raise ValueError(f"ids must hold non-negative ints, got {token_id!r}")
            return self._core.id_to_token(int(token_id)) if token_id < n else None

        if limits.is_int(ids):
            return piece(ids)
        if isinstance(ids, np.ndarray):
            if ids.ndim != 1:
                raise ValueError(f"ids must be an int or a 1-D sequence of ints, got an array of shape {ids.shape}")
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)) or not isinstance(ids, (list, tuple)):
            raise TypeError(f"ids must be an int or a list of ints, got {type(ids).__name__}")
        skip = set(self.all_special_ids) if skip_special_tokens else ()
        return [piece(i) for i in ids if not (limits.is_int(i) and i in skip)]

    def tokenize(self, text, add_special_tokens=False):
        """transformers' ``tokenize``: the pieces of ``text`` (``["▁Hello", "▁world"]``), without
        BOS/EOS unless ``add_special_tokens``."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self.convert_ids_to_tokens(self.encode(text, add_special_tokens=add_special_tokens))

    def get_vocab(self):
        """transformers' ``get_vocab``: {piece: id} of every id, added tokens included."""
        return {self._core.id_to_token(i): i for i in range(self._core.vocab_size)}

    def convert_tokens_to_ids(self, tokens):
        """transformers' ``convert_tokens_to_ids``: the id of a piece (a str gives an int, a list a
        list); a piece not in the vocabulary gives ``unk_token_id`` (None when there is none)."""
        def one(token):
            if not isinstance(token, str):
                raise TypeError(f"tokens must be a str or a list of str, got an item of type {type(token).__name__}")
            token_id = self._core.token_to_id(token)
            return self.unk_token_id if token_id is None else token_id

        if tokens is None:
            return None
        if isinstance(tokens, str):
            return one(tokens)
        if not isinstance(tokens, (list, tuple)):
            raise TypeError(f"tokens must be a str or a list of str, got {type(tokens).__name__}")
        return [one(t) for t in tokens]

    def add_tokens(self, new_tokens, special_tokens=False):
        """transformers' ``add_tokens``: make each token (a str or an AddedToken) split out of
        any text as one id, its vocabulary id or the next free one; returns how many were not
        added tokens already. Safe while other threads encode (docs/threads.md). A model's
        embedding table does not grow with it: ids past the model's vocabulary raise there."""
        return added_tokens.add_tokens(self, new_tokens, check_bool("special_tokens", special_tokens))

    def add_special_tokens(self, special_tokens_dict, replace_extra_special_tokens=True,
                           replace_additional_special_tokens=None):
        """transformers' ``add_special_tokens``: ``{"pad_token": "<pad>", "additional_special_tokens":
        ["<a>", "<b>"]}`` (keys bos/eos/unk/sep/pad/cls/mask_token, extra_special_tokens or
        additional_special_tokens); the tokens are added as special (decode can skip them) and the
        named ones set (``pad_token_id``, ...). Returns how many were not added tokens already."""
        if replace_additional_special_tokens is not None:  # transformers 4's name of the flag
            replace_extra_special_tokens = check_bool("replace_additional_special_tokens",
                                                      replace_additional_special_tokens)
        return added_tokens.add_special_tokens(self, special_tokens_dict,
                                               check_bool("replace_extra_special_tokens", replace_extra_special_tokens))

    def __repr__(self):
        specials = ", ".join(f"{name}={token!r}" for name, token in self.special_tokens().items())
        return (f"Tokenizer(kind={self._core.kind!r}, vocab_size={self.vocab_size}"
                f"{', ' + specials if specials else ''}, padding_side={self.padding_side!r})")


def _special_token_property(name):
    """bos_token, eos_token, ... as transformers has them: the text of ``<name>_id``; setting a
    token that is in the vocabulary sets the id (``tok.pad_token = tok.eos_token``)."""
    def get(self):
        token_id = getattr(self, f"{name}_id")
        return None if token_id is None else self._core.id_to_token(token_id)

    def set_(self, value):
        if value is None:
            setattr(self, f"{name}_id", None)
            return
        content = getattr(value, "content", value)
        if not isinstance(content, str):
            raise TypeError(f"{name} must be a str (a token of the vocabulary) or None, got {type(value).__name__}")
        token_id = self._core.token_to_id(content)
        if token_id is None:
            raise ValueError(f"{name}={content!r} is not in the vocabulary: add it with "
                             f"add_special_tokens({{{name!r}: {content!r}}})")
        setattr(self, f"{name}_id", token_id)
    return property(get, set_)


for _name in added_tokens.SPECIAL_TOKEN_NAMES:
    setattr(Tokenizer, _name, _special_token_property(_name))


class StreamDecoder:
    """Incremental decoding: ``push(id)`` returns the new text that id completes, ``flush()`` the
    rest. The pieces never hold a broken UTF-8 sequence, and their concatenation equals
    ``tokenizer.decode(all_ids)``.

    Each step decodes a short window of ids that starts at an *anchor*: a token (not a byte
    piece, not skipped) whose own text is non-empty and begins with a whole character. From an
    anchor on, every decoder these tokenizers use (ByteLevel, ByteFallback, Metaspace, the
    SentencePiece dummy prefix, Strip of the first character) treats the following ids as the
    full decode does, so the window's new text is the full decode's new text. Text is held back
    while it ends in U+FFFD (bytes of an unfinished character) or in a byte piece, whose
    rendering depends on the bytes that follow."""

    def __init__(self, tokenizer, skip_special_tokens=False):
        if not (hasattr(tokenizer, "_core") and hasattr(tokenizer, "vocab_size")):  # a Tokenizer or a wrapper
            raise TypeError(f"tokenizer must be a pyllm.Tokenizer, got {type(tokenizer).__name__}")
        self._tok = tokenizer
        self._skip = check_bool("skip_special_tokens", skip_special_tokens)
        self._ids = []
        self._window = 0       # first id of the decoding window
        self._emitted = 0      # ids before this index are fully emitted
        self._emitted_chars = 0
        self._anchors = {}
        self._scanned = 0      # ids before this index were searched for an anchor
        self._last_is_byte = False  # the last id that decodes to something is a byte piece

    def _is_anchor(self, token_id):
        known = self._anchors.get(token_id)
        if known is None:
            core = self._tok._core
            text = core.decode([token_id], self._skip)
            known = (core.token_type(token_id) != _PIECE_BYTE and text != "" and not text.startswith("\ufffd"))
            self._anchors[token_id] = known
        return known

    def _step(self, final):
        # A byte piece at the end holds the text back whatever it decodes to: known before any
        # decode, so a long run of byte pieces costs one check per id, not a growing decode.
        if not final and self._last_is_byte:
            return ""
        ids = self._ids
        decode = self._tok._core.decode
        before = decode(ids[self._window:self._emitted], self._skip)
        text = decode(ids[self._window:], self._skip)
        if not final and text.endswith("\ufffd"):
            return ""
        if text.startswith(before):
            new = text[len(before):]
        else:  # not expected from an anchor; the full decode is the safe answer
            new = decode(ids, self._skip)[self._emitted_chars:]
        self._emitted = len(ids)
        self._emitted_chars += len(new)
        # Only the ids pushed since the last search can hold a newer anchor than the window's.
        for i in range(len(ids) - 1, max(self._scanned, self._window) - 1, -1):
            if self._is_anchor(ids[i]):
                self._window = i
                break
        self._scanned = len(ids)
        return new

    def push(self, token_id):
        """Add one id; return the text it completes ("" while a character is unfinished)."""
        if isinstance(token_id, bool) or not isinstance(token_id, int):
            try:
                token_id = int(token_id.__index__())
            except AttributeError:
                raise TypeError(f"token_id must be an int, got {type(token_id).__name__}") from None
        if not 0 <= token_id < self._tok.vocab_size:
            raise IndexError(f"token_id {token_id} is out of range [0, {self._tok.vocab_size})")
        self._ids.append(token_id)
        # Skipped special tokens are transparent (tokenizers' ByteFallback joins byte runs across them).
        kind = self._tok._core.token_type(token_id)
        if not (self._skip and kind == _PIECE_CONTROL):
            self._last_is_byte = kind == _PIECE_BYTE
        return self._step(final=False)

    def flush(self):
        """The text still held back (an unfinished character renders as U+FFFD, as decode does)."""
        if self._emitted == len(self._ids):
            return ""
        return self._step(final=True)
