"""Writing a minimal SentencePiece model file (protobuf ModelProto) from pieces, scores and types:
stories260K ships its vocabulary only inside llama2.c and GGUF files, and a Hugging Face
directory needs a tokenizer.model."""
import struct


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number, wire, payload):
    key = _varint(number << 3 | wire)
    return key + _varint(len(payload)) + payload if wire == 2 else key + payload


def write_sentencepiece(path, pieces, scores, types, add_dummy_prefix=True):
    """A BPE model with byte fallback: the pieces (field 1), trainer_spec (2: model_type BPE,
    byte_fallback) and normalizer_spec (3: add_dummy_prefix, no whitespace folding)."""
    out = bytearray()
    for piece, score, kind in zip(pieces, scores, types):
        entry = _field(1, 2, piece.encode()) + _field(2, 5, struct.pack("<f", float(score))) + \
            _field(3, 0, _varint(int(kind)))
        out += _field(1, 2, entry)
    out += _field(2, 2, _field(3, 0, _varint(2)) + _field(35, 0, _varint(1)))
    out += _field(3, 2, _field(3, 0, _varint(int(add_dummy_prefix))) + _field(4, 0, _varint(0)))
    with open(path, "wb") as f:
        f.write(bytes(out))
