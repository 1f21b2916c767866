"""The vocabulary of a SentencePiece ``tokenizer.model`` as plain Python values, for writers of
other formats (``pyllm.convert`` puts it into GGUF metadata).

The file is a protobuf ``ModelProto``; only the fields a vocabulary needs are read: the pieces
(field 1: piece text, score, type), and from the normalizer spec (field 3) whether a dummy
prefix (``▁``) is added and extra whitespace removed. The C tokenizer has its own reader for
encoding; this one stays small because it only lists pieces.
"""
import struct

__all__ = ["read_vocabulary", "NORMAL", "UNKNOWN", "CONTROL", "USER_DEFINED", "UNUSED", "BYTE"]

# SentencePiece's piece types; llama.cpp's token types use the same numbers.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def _varint(buf, pos, path):
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError(f"{path}: truncated or overlong varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf, path):
    """(field number, wire type, value) of each field of one message: ints for varints and
    fixed widths (raw bytes for fixed32, read by the caller), bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos, path)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos, path)
        elif wire == _LEN:
            size, pos = _varint(buf, pos, path)
            if pos + size > len(buf):
                raise ValueError(f"{path}: field {number} runs past the end of its message")
            value, pos = buf[pos:pos + size], pos + size
        elif wire in (_FIXED32, _FIXED64):
            width = 4 if wire == _FIXED32 else 8
            if pos + width > len(buf):
                raise ValueError(f"{path}: field {number} runs past the end of its message")
            value, pos = buf[pos:pos + width], pos + width
        else:
            raise ValueError(f"{path}: field {number} has wire type {wire}: not a SentencePiece model file")
        yield number, wire, value


def read_vocabulary(path):
    """{"pieces": [str], "scores": [float], "types": [int], "add_dummy_prefix": bool,
    "remove_extra_whitespaces": bool} of a SentencePiece model file."""
    from . import file_kinds
    file_kinds.expect(path, {file_kinds.SENTENCEPIECE}, "a SentencePiece model")
    with open(path, "rb") as f:
        buf = f.read()
    pieces, scores, types = [], [], []
    add_dummy_prefix, remove_extra_whitespaces = True, True  # the protobuf defaults
    for number, wire, value in _fields(buf, path):
        if number == 1 and wire == _LEN:
            piece, score, kind = "", 0.0, NORMAL
            for n, w, v in _fields(value, path):
                if n == 1 and w == _LEN:
                    piece = bytes(v).decode("utf-8", errors="replace")
                elif n == 2 and w == _FIXED32:
                    score = struct.unpack("<f", v)[0]
                elif n == 3 and w == _VARINT:
                    kind = v
            pieces.append(piece)
            scores.append(score)
            types.append(kind)
        elif number == 3 and wire == _LEN:
            for n, w, v in _fields(value, path):
                if n == 3 and w == _VARINT:
                    add_dummy_prefix = bool(v)
                elif n == 4 and w == _VARINT:
                    remove_extra_whitespaces = bool(v)
    if not pieces:
        raise ValueError(f"{path}: no pieces: not a SentencePiece model file")
    return {"pieces": pieces, "scores": scores, "types": types, "add_dummy_prefix": add_dummy_prefix,
            "remove_extra_whitespaces": remove_extra_whitespaces}
