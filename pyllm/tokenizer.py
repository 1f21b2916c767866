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

import numpy as np

from . import _checks, _core, file_kinds, hub, limits
from .file_kinds import GGUF, JSON, LLAMA2C_TOKENIZER, SENTENCEPIECE, TOKENIZER_JSON
from .tokenizer_json import load_tokenizer_json

__all__ = ["Tokenizer", "StreamDecoder"]

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
            raise TypeError("use Tokenizer.from_file, from_pretrained or from_llama2c to build a Tokenizer")
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
        return self

    # -- encoding and decoding ----------------------------------------------------------

    def _with_specials(self, ids):
        if self._prefix_ids:
            ids[:0] = self._prefix_ids
        ids.extend(self._suffix_ids)
        return ids

    def encode(self, text, add_special_tokens=True):
        """Token ids of ``text``; BOS (and EOS when configured) added when ``add_special_tokens``."""
        ids = self._core.encode(text, True, self.legacy)
        return self._with_specials(ids) if add_special_tokens else ids

    def encode_batch(self, texts, add_special_tokens=True):
        """``encode`` of every text of a list, in one call into C."""
        batch = self._core.encode_batch(texts, True, self.legacy)
        if add_special_tokens:
            for ids in batch:
                self._with_specials(ids)
        return batch

    def decode(self, ids, skip_special_tokens=False):
        """Text of token ids (a sequence of int or a 1-D integer array).

        ``skip_special_tokens=True`` gives exactly sentencepiece's ``decode``; with False, special
        tokens are written as their text (``"<s> Hello"``)."""
        return self._core.decode(ids, bool(skip_special_tokens))

    def batch_decode(self, sequences, skip_special_tokens=False):
        """``decode`` of every row of a 2-D array or list of id lists."""
        if isinstance(sequences, np.ndarray):
            if sequences.ndim != 2:
                raise ValueError(f"batch_decode needs a 2-D array [rows, ids], got shape {sequences.shape}")
        elif not isinstance(sequences, (list, tuple)):
            raise TypeError(f"batch_decode needs a list of id lists or a 2-D array, got {type(sequences).__name__}")
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in sequences]

    def __call__(self, texts, padding=False, add_special_tokens=True, return_tensors=None, padding_side="left"):
        """transformers-style batch encoding: a dict with ``input_ids`` and ``attention_mask``.

        ``texts`` is a string or a list of strings. ``padding=True`` (or "longest") pads every row
        to the longest with pad_token_id (else eos_token_id, else 0) on ``padding_side`` ("left",
        the default, as generation needs; or "right"), mask 0 there. ``return_tensors="np"`` gives
        int64 NumPy arrays [rows, length] (a single string gives one row too); None gives lists
        (a single string gives flat lists)."""
        single = isinstance(texts, str)
        if single:
            texts = [texts]
        elif not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a string or a list of strings")
        if padding not in (True, False, "longest", "do_not_pad"):
            raise ValueError(f"padding must be True, False, 'longest' or 'do_not_pad', got {padding!r}")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if return_tensors not in (None, "np"):
            raise ValueError(f"return_tensors must be 'np' or None (no torch at run time), got {return_tensors!r}")
        batch = self.encode_batch(list(texts), add_special_tokens=add_special_tokens) if texts else []
        masks = [[1] * len(ids) for ids in batch]
        if padding in (True, "longest") and batch:
            pad = next((t for t in (self.pad_token_id, self.eos_token_id) if t is not None), 0)
            width = max(len(ids) for ids in batch)
            for ids, mask in zip(batch, masks):
                fill = width - len(ids)
                if padding_side == "left":
                    ids[:0] = [pad] * fill
                    mask[:0] = [0] * fill
                else:
                    ids.extend([pad] * fill)
                    mask.extend([0] * fill)
        if return_tensors == "np":
            if len({len(ids) for ids in batch}) > 1:
                raise ValueError("texts encode to different lengths: pass padding=True to get arrays")
            width = len(batch[0]) if batch else 0
            return {"input_ids": np.array(batch, dtype=np.int64).reshape(len(batch), width),
                    "attention_mask": np.array(masks, dtype=np.int64).reshape(len(batch), width)}
        if single:
            return {"input_ids": batch[0], "attention_mask": masks[0]}
        return {"input_ids": batch, "attention_mask": masks}

    def special_tokens(self):
        """The special tokens' text a chat template sees: bos_token, eos_token, unk_token, pad_token."""
        out = {}
        for name in ("bos", "eos", "unk", "pad"):
            token_id = getattr(self, f"{name}_token_id")
            if token_id is not None:
                out[f"{name}_token"] = self.id_to_token(token_id)
        return out

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True, chat_template=None,
                            **template_variables):
        """The prompt of a conversation, as transformers renders it: ``messages`` (dicts with
        ``role`` and ``content``) through ``chat_template`` (default: the tokenizer's own, from
        tokenizer_config.json; or a Jinja string, "alpaca" / "vicuna", or a callable), with the
        special tokens and ``template_variables`` visible. ``tokenize=True`` returns the ids
        (encoded without adding special tokens: the template writes them), else the text."""
        from . import templates
        template = self.chat_template if chat_template is None else chat_template
        if template is None:
            raise ValueError("this tokenizer has no chat_template (tokenizer_config.json has none): pass "
                             "chat_template= (a Jinja string, 'alpaca', 'vicuna' or a callable; see pyllm.templates)")
        variables = {**self.special_tokens(), **template_variables}
        text = templates.render(template, messages, add_generation_prompt=add_generation_prompt, **variables)
        return self.encode(text, add_special_tokens=False) if tokenize else text

    def stream_decoder(self, skip_special_tokens=False):
        """A :class:`StreamDecoder` for text generated one token at a time."""
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
        return self._core.id_to_token(token_id)

    def token_to_id(self, token):
        """The id of a piece, or None when it is not in the vocabulary."""
        return self._core.token_to_id(token)

    def __repr__(self):
        return (f"Tokenizer(vocab_size={self.vocab_size}, bos_token_id={self.bos_token_id}, "
                f"eos_token_id={self.eos_token_id}, pad_token_id={self.pad_token_id})")


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
        self._tok = tokenizer
        self._skip = bool(skip_special_tokens)
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
                raise TypeError(f"token id must be an int, got {type(token_id).__name__}") from None
        if not 0 <= token_id < self._tok.vocab_size:
            raise IndexError(f"token id {token_id} is out of range [0, {self._tok.vocab_size})")
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
