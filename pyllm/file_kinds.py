"""What a model or tokenizer file is, told from its first bytes, never from its name: a loader
given a file of another kind says what the file is and which call reads it, instead of failing
deep in its own parser (a GGUF read as a SentencePiece protobuf gave "field 8 has wire type 7").

Kinds: GGUF (the magic), safetensors (an 8-byte little-endian header length, then ``{``), JSON
(a Hugging Face tokenizer.json, a model config.json, a safetensors index, or other JSON),
SentencePiece model (a protobuf whose first field is a piece), llama2.c checkpoint (the v1 magic,
or a v0 header whose sizes add up to the file's), llama2.c tokenizer (a maximum token length then
score/length/bytes records). A file that matches none is UNKNOWN: the loader's own parser then
reports what is wrong with it, so damaged files keep their detailed messages.
"""
import math
import os
import struct

__all__ = ["sniff", "expect", "describe", "GGUF", "SAFETENSORS", "TOKENIZER_JSON", "CONFIG_JSON",
           "SAFETENSORS_INDEX", "JSON", "SENTENCEPIECE", "LLAMA2C_CHECKPOINT", "LLAMA2C_TOKENIZER", "DIRECTORY",
           "EMPTY", "UNKNOWN"]

GGUF = "gguf"
SAFETENSORS = "safetensors"
TOKENIZER_JSON = "tokenizer.json"
CONFIG_JSON = "config.json"
SAFETENSORS_INDEX = "safetensors index"
JSON = "json"
SENTENCEPIECE = "sentencepiece"
LLAMA2C_CHECKPOINT = "llama2.c checkpoint"
LLAMA2C_TOKENIZER = "llama2.c tokenizer"
DIRECTORY = "directory"
EMPTY = "empty"
UNKNOWN = "unknown"

# kind -> (what the file is, the call that reads it)
_KINDS = {
    GGUF: ("a GGUF file", "Tokenizer.from_gguf(path) / Model.from_gguf(path)"),
    SAFETENSORS: ("a safetensors weights file", "Model.from_pretrained(directory) on the directory that holds it "
                                                "with its config.json"),
    TOKENIZER_JSON: ("a Hugging Face tokenizer.json", "Tokenizer.from_file(path)"),
    CONFIG_JSON: ("a model's config.json", "Model.from_pretrained(directory) on the directory that holds it"),
    SAFETENSORS_INDEX: ("a safetensors index (model.safetensors.index.json)",
                        "Model.from_pretrained(directory) on the directory that holds it"),
    JSON: ("a JSON file", "Tokenizer.from_file(path) for a tokenizer.json, else from_pretrained(directory) on the "
                          "model directory that holds it"),
    SENTENCEPIECE: ("a SentencePiece model (tokenizer.model)", "Tokenizer.from_file(path)"),
    LLAMA2C_CHECKPOINT: ("a llama2.c checkpoint", "Model.from_pretrained(path)"),
    LLAMA2C_TOKENIZER: ("a llama2.c tokenizer (tokenizer.bin)", "Tokenizer.from_llama2c(path, vocab_size)"),
    DIRECTORY: ("a directory", "Tokenizer.from_pretrained(path) / Model.from_pretrained(path)"),
}

_HEAD_BYTES = 1 << 16  # enough for every test below: JSON's first keys, a few tokenizer records
_LLAMA2C_V1_MAGIC = b"24ka"  # 0x616B3432 little-endian ("ak42")


def describe(kind):
    """(what a file of that kind is, the call that reads it), or None for EMPTY and UNKNOWN."""
    return _KINDS.get(kind)


def _json_kind(head):
    """Which JSON file a head of text that starts with '{' is, by the keys that come first."""
    text = head[:_HEAD_BYTES].decode("utf-8", errors="replace")
    if any(f'"{key}"' in text for key in ("truncation", "pre_tokenizer", "added_tokens", "normalizer")):
        return TOKENIZER_JSON
    if '"weight_map"' in text:
        return SAFETENSORS_INDEX
    if '"model_type"' in text or '"architectures"' in text:
        return CONFIG_JSON
    return JSON


def _varint(buf, pos):
    value = shift = 0
    while pos < len(buf) and shift < 64:
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
    return None, pos


def _is_sentencepiece(head, size):
    # ModelProto field 1 (pieces, length-delimited: key 0x0A), its length, then the piece's own
    # field 1 (the text, key 0x0A) or 2 (the score, fixed32: key 0x15).
    if len(head) < 4 or head[0] != 0x0A:
        return False
    length, pos = _varint(head, 1)
    return length is not None and 0 < length <= size - pos and pos < len(head) and head[pos] in (0x0A, 0x15)


def _is_llama2c_checkpoint(head, size):
    if head[:4] == _LLAMA2C_V1_MAGIC:
        return True
    if len(head) < 28:
        return False
    from . import llama2c
    p = dict(zip(llama2c._FIELDS, struct.unpack_from("<7i", head, 0)))
    shared = p["vocab_size"] > 0
    p["vocab_size"] = abs(p["vocab_size"])
    if any(v <= 0 or v > 1 << 24 for v in p.values()) or p["dim"] % p["n_heads"] or p["n_heads"] % p["n_kv_heads"]:
        return False
    layout = llama2c._layout(0, p, shared)
    return size == llama2c._V0_HEADER_BYTES + 4 * sum(math.prod(shape) for _, shape in layout)


def _is_llama2c_tokenizer(head, size):
    # int32 max_token_length, then per token: float32 score, int32 length, the bytes. Check the
    # records the head holds (at least three).
    if len(head) < 4:
        return False
    max_len = struct.unpack_from("<i", head, 0)[0]
    if not 0 < max_len <= 4096:
        return False
    pos, records = 4, 0
    while pos + 8 <= len(head) and records < 64:
        score, length = struct.unpack_from("<fi", head, pos)
        if not math.isfinite(score) or not 0 <= length <= max_len:
            return False
        pos += 8 + length
        records += 1
    return records >= 3 and pos <= size


def sniff(path):
    """The kind of the file (or directory) at path: one of this module's kind names."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return DIRECTORY
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_HEAD_BYTES)
    except OSError:
        return UNKNOWN
    if not head:
        return EMPTY
    if head[:4] == b"GGUF":
        return GGUF
    if len(head) >= 10:
        header_len = int.from_bytes(head[:8], "little")
        if 2 <= header_len <= size - 8 and head[8:9] == b"{":
            return SAFETENSORS
    stripped = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if stripped[:1] == b"{":
        return _json_kind(stripped)
    if _is_sentencepiece(head, size):
        return SENTENCEPIECE
    if _is_llama2c_checkpoint(head, size):
        return LLAMA2C_CHECKPOINT
    if _is_llama2c_tokenizer(head, size):
        return LLAMA2C_TOKENIZER
    return UNKNOWN


def expect(path, accepted, expected):
    """The kind of path when it is one of accepted (or one this module cannot tell: the loader's
    parser then says what is wrong); ValueError otherwise (as every loader's bad content), naming
    what the file is and the call that reads it. expected says what the loader reads, e.g. "a SentencePiece model"."""
    kind = sniff(path)
    if kind in accepted or kind in (UNKNOWN, EMPTY):
        return kind
    what, call = _KINDS[kind]
    raise ValueError(f"{os.fspath(path)} is {what}, not {expected}; load it with {call}")
