"""Damaged and hostile GGUF files: each raises a GGUFError (a ValueError) naming the file and the
problem, in a child process that then loads good GGUF files (a vocabulary it encodes with, a
model file whose tensors it dequantizes), so no bad file leaves the process broken.

The files are written byte by byte here (not by the gguf package, which refuses most of them)."""
import os
import struct

import numpy as np
import pytest

from conftest import run_isolated

# value type ids
U32, I32, F32, BOOL, STR, ARR, U64 = 4, 5, 6, 7, 8, 9, 10


def _s(text):
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def _value(vtype, value):
    if vtype == STR:
        return _s(value)
    if vtype == ARR:
        elem, items = value
        body = b"".join(_value(elem, v) for v in items)
        return struct.pack("<IQ", elem, len(items)) + body
    fmt = {U32: "<I", I32: "<i", F32: "<f", BOOL: "<B", U64: "<Q", 0: "<B"}[vtype]
    return struct.pack(fmt, value)


def raw_gguf(kvs=(), tensors=(), data=b"", magic=b"GGUF", version=3, n_kv=None, n_tensors=None, alignment=32):
    """kvs: (key, type, value); tensors: (name, ne, ggml type, offset); data: the data section."""
    out = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                              len(kvs) if n_kv is None else n_kv)
    for key, vtype, value in kvs:
        out += _s(key) + struct.pack("<I", vtype) + _value(vtype, value)
    for name, ne, gtype, offset in tensors:
        out += _s(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne) + struct.pack("<IQ", gtype, offset)
    out += b"\0" * (-len(out) % alignment)
    return out + data


ARCH = ("general.architecture", STR, "llama")
F32_4x8 = np.arange(32, dtype=np.float32).tobytes()


def _cases(data_dir):
    """name -> (file bytes, python action on PATH, the message must contain)."""
    stories = open(os.path.join(data_dir, "stories260K", "stories260K.gguf"), "rb").read()
    open_ = "open_gguf(PATH)"
    good_tensor = [("w", (8, 4), 0, 0)]
    return {
        "empty": (b"", open_, "truncated file: the magic needs 4 bytes"),
        "truncated_header": (stories[:10], open_, "truncated file: the tensor count needs 8 bytes at offset 8"),
        "truncated_metadata": (stories[:1000], open_, "the file is truncated or its header damaged"),
        "truncated_tensor_infos": (stories[:13000], open_, "truncated file"),
        "truncated_data": (stories[:-100], open_, "past the end of the file"),
        "bad_magic": (b"GGML" + stories[4:], open_, "not a GGUF file"),
        "version_1": (raw_gguf([ARCH], version=1), open_, "GGUF version 1 is not supported"),
        "version_9": (raw_gguf([ARCH], version=9), open_, "GGUF version 9 is not supported"),
        "big_endian": (b"GGUF" + struct.pack(">I", 3) + stories[8:], open_, "big-endian GGUF"),
        "absurd_kv_count": (raw_gguf([ARCH], n_kv=1 << 60), open_, "claims 1152921504606846976 metadata pairs"),
        "absurd_tensor_count": (raw_gguf([ARCH], n_tensors=1 << 40), open_, "claims 1099511627776 tensors"),
        "absurd_array_length": (raw_gguf([ARCH, ("tokenizer.ggml.tokens", ARR, (STR, ["a"]))]).replace(
            struct.pack("<IQ", STR, 1), struct.pack("<IQ", STR, 1 << 50)), open_, "claims 1125899906842624 elements"),
        "absurd_string_length": (raw_gguf([("general.name", STR, "x" * 8)]).replace(
            struct.pack("<Q", 8) + b"x" * 8, struct.pack("<Q", 1 << 62) + b"x" * 8), open_,
            "metadata value 'general.name' is a string of 4611686018427387904 bytes, above pyllm's limit"),
        "unknown_value_type": (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _s("general.name") + struct.pack("<I", 13)
                               + b"\0" * 16, open_, "metadata value 'general.name' has unknown value type 13"),
        "bool_not_0_or_1": (raw_gguf([("tokenizer.ggml.add_bos_token", BOOL, 7)]), open_, "must be 0 or 1"),
        "duplicate_key": (raw_gguf([ARCH, ARCH]), open_, "appears twice"),
        "unknown_tensor_type": (raw_gguf([ARCH], [("w", (8, 4), 99, 0)], F32_4x8), open_,
                                "tensor 'w' has unknown ggml type 99"),
        "too_many_dims": (raw_gguf([ARCH], [("w", (1, 1, 1, 1, 32), 0, 0)], F32_4x8), open_, "5 dimensions"),
        "offset_past_end": (raw_gguf([ARCH], [("w", (8, 4), 0, 1 << 40)], F32_4x8), open_,
                            "tensor 'w' starts at data offset 1099511627776"),
        "huge_offset": (raw_gguf([ARCH], [("w", (8, 4), 0, 1 << 63)], F32_4x8), open_, "past the end of the file"),
        "data_shorter_than_shape": (raw_gguf([ARCH], [("w", (8, 64), 0, 0)], F32_4x8), open_,
                                    "tensor 'w' (F32, shape [64, 8]) needs bytes"),
        "size_disagrees_with_next_offset": (
            raw_gguf([ARCH], [("a", (8, 4), 0, 0), ("b", (8, 4), 0, 64)], F32_4x8 * 2), open_,
            "tensor 'b' starts at data offset 64, but the tensors before it end at 128"),
        "row_not_whole_blocks": (raw_gguf([ARCH], [("q", (48, 1), 8, 0)], b"\0" * 64), open_,
                                 "rows of 48 elements, not a multiple of its block size 32"),
        "misaligned_offset": (raw_gguf([ARCH, ("general.alignment", U32, 64)], [("w", (8, 4), 0, 0), ("v", (8, 4), 0, 128 + 8)],
                                       F32_4x8 * 4, alignment=64), open_, "not a multiple of the alignment 64"),
        "alignment_not_power_of_two": (raw_gguf([ARCH, ("general.alignment", U32, 48)]), open_, "not a power of two"),
        "alignment_wrong_type": (raw_gguf([ARCH, ("general.alignment", STR, "32")]), open_,
                                 "general.alignment must be a uint32, got string"),
        "unknown_architecture": (raw_gguf([("general.architecture", STR, "mamba")], good_tensor, F32_4x8),
                                 "open_gguf(PATH).architecture(supported=('llama', 'bloom'))",
                                 "architecture 'mamba' is not supported (supported: llama, bloom)"),
        "architecture_wrong_type": (raw_gguf([("general.architecture", U32, 7)]), "open_gguf(PATH).architecture()",
                                    "metadata key 'general.architecture' is uint32, expected a string"),
        "count_wrong_type": (raw_gguf([ARCH, ("llama.block_count", STR, "5")]),
                             "open_gguf(PATH).get_int('llama.block_count')",
                             "metadata key 'llama.block_count' is string, expected an integer"),
        "tokens_wrong_type": (raw_gguf([ARCH, ("tokenizer.ggml.model", STR, "llama"),
                                        ("tokenizer.ggml.tokens", STR, "abc")]),
                              "pyllm.Tokenizer.from_pretrained(PATH)",
                              "metadata key 'tokenizer.ggml.tokens' is string, expected an array of string"),
        "scores_wrong_type": (raw_gguf([ARCH, ("tokenizer.ggml.model", STR, "llama"),
                                        ("tokenizer.ggml.tokens", ARR, (STR, ["<unk>", "a"])),
                                        ("tokenizer.ggml.scores", ARR, (STR, ["0", "1"]))]),
                              "pyllm.Tokenizer.from_pretrained(PATH)",
                              "'tokenizer.ggml.scores' is array[string], expected an array of float"),
        "unknown_pre": (raw_gguf([ARCH, ("tokenizer.ggml.model", STR, "gpt2"), ("tokenizer.ggml.pre", STR, "qwen9"),
                                  ("tokenizer.ggml.tokens", ARR, (STR, ["a", "b", "ab"])),
                                  ("tokenizer.ggml.merges", ARR, (STR, ["a b"]))]),
                        "pyllm.Tokenizer.from_pretrained(PATH)", "tokenizer.ggml.pre 'qwen9' is not supported"),
        "token_type_out_of_range": (raw_gguf([ARCH, ("tokenizer.ggml.model", STR, "llama"),
                                              ("tokenizer.ggml.tokens", ARR, (STR, ["<unk>", "a"])),
                                              ("tokenizer.ggml.scores", ARR, (F32, [0.0, 0.0])),
                                              ("tokenizer.ggml.token_type", ARR, (I32, [2, 9]))]),
                                    "pyllm.Tokenizer.from_pretrained(PATH)", "has unknown type 9"),
        "invalid_utf8_key": (raw_gguf([(b"general.\xff", STR, "x")]), open_, "metadata key 0 is not valid UTF-8"),
    }


def _case_names():
    return ["empty", "truncated_header", "truncated_metadata", "truncated_tensor_infos", "truncated_data",
            "bad_magic", "version_1", "version_9", "big_endian", "absurd_kv_count", "absurd_tensor_count",
            "absurd_array_length", "absurd_string_length", "unknown_value_type", "bool_not_0_or_1",
            "duplicate_key", "unknown_tensor_type", "too_many_dims", "offset_past_end", "huge_offset",
            "data_shorter_than_shape", "size_disagrees_with_next_offset", "row_not_whole_blocks",
            "misaligned_offset", "alignment_not_power_of_two", "alignment_wrong_type", "unknown_architecture",
            "architecture_wrong_type", "count_wrong_type", "tokens_wrong_type", "scores_wrong_type", "unknown_pre",
            "token_type_out_of_range", "invalid_utf8_key"]


_CHILD = """
import numpy as np
import pyllm
from pyllm.gguf import open_gguf
PATH = {path!r}
caught = None
try:
    {action}
except Exception as e:
    caught = e
# the process still works: a good vocabulary encodes, a good model file's tensors read
tok = pyllm.Tokenizer.from_pretrained({vocab!r})
ids = tok.encode("Hello world", add_special_tokens=False)
if ids != [15496, 995]:
    raise AssertionError(f"the good vocabulary encodes 'Hello world' as {{ids}}")
emb = open_gguf({model!r}).dequantize("token_embd.weight")
if emb.shape != (512, 64) or not np.isfinite(emb).all():
    raise AssertionError("the good model file reads wrong")
if caught is None:
    raise AssertionError("the hostile file was accepted")
raise caught
"""


@pytest.mark.parametrize("case", _case_names())
def test_hostile_gguf_raises_clearly_and_leaves_the_process_working(tmp_path, data_dir, case):
    content, action, expected = _cases(data_dir)[case]
    path = str(tmp_path / f"{case}.gguf")
    with open(path, "wb") as f:
        f.write(content)
    code = _CHILD.format(path=path, action=action,
                         vocab=os.path.join(data_dir, "llamacpp", "ggml-vocab-gpt-2.gguf"),
                         model=os.path.join(data_dir, "stories260K", "stories260K.gguf"))
    kind, message = run_isolated(code, timeout=120)
    assert kind == "GGUFError", (kind, message)
    assert message.startswith(path + ":"), message
    assert expected in message, message


def test_every_case_is_run(data_dir):
    assert set(_case_names()) == set(_cases(data_dir))


def test_architecture_helper_reports_any_name(tmp_path):
    from pyllm.gguf import open_gguf
    path = tmp_path / "m.gguf"
    path.write_bytes(raw_gguf([("general.architecture", STR, "mamba")]))
    assert open_gguf(path).architecture() == "mamba"
    assert open_gguf(path).architecture(supported=("mamba",)) == "mamba"
