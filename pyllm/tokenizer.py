"""Text <-> token ids for LLaMA-family models, computed by the C core.

``Tokenizer`` wraps a SentencePiece BPE model (``tokenizer.model``, or the same vocabulary
in llama2.c's ``tokenizer.bin`` form) and follows the Hugging Face conventions a user expects:
``encode`` adds BOS (and EOS when the tokenizer config asks for it), special-token strings
written in the text (``<s>``, ``</s>``, ``<unk>``, added tokens) become their ids, and
``decode(ids, skip_special_tokens=True)`` equals ``sentencepiece``'s own ``decode``.
"""
import json
import os

from . import _core

__all__ = ["Tokenizer"]


def _token_content(value):
    """A special token as written in tokenizer_config.json: a str, {"content": ...} or null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(f"a special token must be a string or an object with 'content', got {value!r}")


def _read_json(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


class Tokenizer:
    """A SentencePiece BPE tokenizer (LLaMA-1/2 and compatible vocabularies).

    Build it with :meth:`from_file`, :meth:`from_pretrained` or :meth:`from_llama2c`.
    """

    def __init__(self, core, *, add_bos_token=None, add_eos_token=False, legacy=True,
                 bos_token_id=None, eos_token_id=None, pad_token_id=None, unk_token_id=None):
        if not isinstance(core, _core.SentencePieceTokenizer):
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

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_file(cls, path):
        """Load a SentencePiece ``tokenizer.model`` (BPE). Unigram models raise ValueError."""
        path = os.fspath(path)
        if path.endswith(".json"):
            raise ValueError(f"{path}: tokenizer.json (Hugging Face tokenizers) is not supported yet; "
                             "give the SentencePiece tokenizer.model")
        with open(path, "rb") as f:
            data = f.read()
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
        path = os.fspath(path)
        with open(path, "rb") as f:
            data = f.read()
        try:
            return cls(_core.sentencepiece_from_llama2c(data, vocab_size))
        except ValueError as e:
            raise ValueError(f"{path}: not a usable llama2.c tokenizer: {e}") from None

    @classmethod
    def from_pretrained(cls, directory):
        """Load ``tokenizer.model`` from a model directory, with the BOS/EOS flags, special
        tokens and added tokens of ``tokenizer_config.json`` / ``special_tokens_map.json``."""
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"model directory not found: {directory}")
        model_path = os.path.join(directory, "tokenizer.model")
        if not os.path.exists(model_path):
            if os.path.exists(os.path.join(directory, "tokenizer.json")):
                raise ValueError(f"{directory} has only tokenizer.json, which is not supported yet; "
                                 "a SentencePiece tokenizer.model is needed")
            raise FileNotFoundError(f"no tokenizer.model in {directory}")
        with open(model_path, "rb") as f:
            core = _core.sentencepiece_from_bytes(f.read())

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

        # Added tokens first: their ids are fixed by the file.
        added = config.get("added_tokens_decoder") or {}
        for key in sorted(added, key=int):
            entry = added[key]
            special = entry.get("special", True) if isinstance(entry, dict) else True
            core.add_token(_token_content(entry), int(key), bool(special))

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
                   bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, unk_token_id=unk)

    # -- encoding and decoding ----------------------------------------------------------

    def _with_specials(self, ids):
        if self.add_bos_token and self.bos_token_id is not None:
            ids.insert(0, self.bos_token_id)
        if self.add_eos_token and self.eos_token_id is not None:
            ids.append(self.eos_token_id)
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
