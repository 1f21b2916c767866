"""Damaged and unsupported GGUF files given to Model.from_pretrained and LLM: each raises a
GGUFError (a ValueError) whose message starts with the file's path and names the problem, in a
child process that then loads a good GGUF model (stories260K.gguf) with its tokenizer and
generates, so no bad file leaves the process broken. (tests/test_gguf_bad_input.py does the
same for the reader and the tokenizer.)"""
import os
import struct

import numpy as np
import pytest

from gguf import GGMLQuantizationType as GGML

from conftest import run_isolated
from gguf_files import write_gguf
from test_gguf_model import llama_gguf_tensors, llama_hf, llama_metadata

SMALL = dict(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
             num_key_value_heads=1, head_dim=32, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0)


def _small_model(tmp_path, metadata=None, tensors=None, drop=(), arch="llama"):
    """The bytes of a small valid LLaMA GGUF, with metadata overrides (key -> value, None drops
    it) and tensor overrides (name -> (array, raw type or None))."""
    meta = dict(llama_metadata(SMALL))
    for key, value in (metadata or {}).items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    listed = {name: (a, None) for name, a in llama_gguf_tensors(llama_hf(np.random.default_rng(0), SMALL), SMALL).items()}
    listed.update(tensors or {})
    for name in drop:
        del listed[name]
    path = write_gguf(tmp_path / "base.gguf", list(meta.items()),
                      [(n, np.ascontiguousarray(a), raw) for n, (a, raw) in listed.items()], arch=arch)
    with open(path, "rb") as f:
        return f.read()


def _patch_info(content, name, type_id=None, offset=None):
    """content with tensor `name`'s info changed in place (its ggml type and/or data offset)."""
    key = struct.pack("<Q", len(name)) + name.encode()
    at = content.index(key) + len(key)
    n_dims = struct.unpack_from("<I", content, at)[0]
    at += 4 + 8 * n_dims
    out = bytearray(content)
    if type_id is not None:
        struct.pack_into("<I", out, at, type_id)
    if offset is not None:
        struct.pack_into("<Q", out, at + 4, offset)
    return bytes(out)


MODEL = "pyllm.Model.from_pretrained(PATH)"
LLM = "pyllm.LLM(PATH)"


def _cases(tmp_path, data_dir):
    """name -> (file bytes, action on PATH, text the message must contain)."""
    stories = open(os.path.join(data_dir, "stories260K", "stories260K.gguf"), "rb").read()
    base = _small_model(tmp_path)
    gpt2_vocab = {"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen9",
                  "tokenizer.ggml.tokens": [chr(97 + i % 26) * (1 + i // 26) for i in range(64)],
                  "tokenizer.ggml.merges": ["a a"]}
    return {
        "truncated": (stories[:-100], MODEL, "past the end of the file"),
        "truncated_llm": (stories[:5000], LLM, "truncated"),
        "unknown_type_id": (_patch_info(base, "blk.0.attn_v.weight", type_id=99), MODEL,
                            "tensor 'blk.0.attn_v.weight' has unknown ggml type 99"),
        # I32 has F32's size, so the reader accepts it; no model runs on it
        "type_without_kernel": (_patch_info(base, "blk.0.attn_q.weight", type_id=int(GGML.I32)), MODEL,
                                "tensor 'blk.0.attn_q.weight' is I32; pyllm runs models whose tensors are"),
        "unknown_architecture": (_small_model(tmp_path, arch="mamba"), MODEL,
                                 "architecture 'mamba' is not supported (supported: llama, bloom)"),
        "offset_past_end": (_patch_info(base, "output.weight", offset=1 << 40), MODEL,
                            "tensor 'output.weight' starts at data offset 1099511627776"),
        "size_disagrees_with_shape": (_patch_info(base, "token_embd.weight", type_id=int(GGML.F16)), MODEL,
                                      "a tensor's size disagrees with its shape and type"),
        "unknown_pre": (_small_model(tmp_path, metadata=gpt2_vocab), LLM, "tokenizer.ggml.pre 'qwen9' is not supported"),
        "count_wrong_type": (_small_model(tmp_path, metadata={"llama.block_count": "1"}), MODEL,
                             "metadata key 'llama.block_count' is string, expected an integer"),
        "eps_wrong_type": (_small_model(tmp_path, metadata={"llama.attention.layer_norm_rms_epsilon": "x"}), MODEL,
                           "'llama.attention.layer_norm_rms_epsilon' is string, expected a number"),
        "required_key_missing": (_small_model(tmp_path, metadata={"llama.embedding_length": None}), MODEL,
                                 "metadata key 'llama.embedding_length' is missing"),
        "bad_count": (_small_model(tmp_path, metadata={"llama.attention.head_count": 0}), MODEL,
                      "metadata key 'llama.attention.head_count' must be a positive integer, got 0"),
        "tensor_missing": (_small_model(tmp_path, drop=("blk.0.ffn_gate.weight",)), MODEL,
                           "lack the tensor 'blk.0.ffn_gate.weight'"),
        "tensor_shape_disagrees_with_metadata": (_small_model(tmp_path, metadata={"llama.feed_forward_length": 96}),
                                                 MODEL, "'blk.0.ffn_up.weight' has shape (128, 64), expected (96, 64)"),
        "partial_rotary": (_small_model(tmp_path, metadata={"llama.rope.dimension_count": 16}), MODEL,
                           "partial rotary embeddings are not supported"),
        "rope_scaling_yarn": (_small_model(tmp_path, metadata={"llama.rope.scaling.type": "yarn"}), MODEL,
                              "rope.scaling.type 'yarn' is not supported"),
    }


_CHILD = """
import pyllm
PATH = {path!r}
caught = None
try:
    {action}
except Exception as e:
    caught = e
# the process still works: a good GGUF model loads with its tokenizer and generates
llm = pyllm.LLM({good!r})
text = llm.generate("Once upon a time", max_new_tokens=12)
if not isinstance(text, str) or not text.strip():
    raise AssertionError(f"the good model generated {{text!r}}")
if caught is None:
    raise AssertionError("the bad file was accepted")
raise caught
"""

CASES = ["truncated", "truncated_llm", "unknown_type_id", "type_without_kernel", "unknown_architecture",
         "offset_past_end", "size_disagrees_with_shape", "unknown_pre", "count_wrong_type", "eps_wrong_type",
         "required_key_missing", "bad_count", "tensor_missing", "tensor_shape_disagrees_with_metadata",
         "partial_rotary", "rope_scaling_yarn"]


@pytest.mark.parametrize("case", CASES)
def test_bad_gguf_model_raises_clearly_and_leaves_the_process_working(tmp_path, data_dir, case):
    content, action, expected = _cases(tmp_path, data_dir)[case]
    path = str(tmp_path / f"{case}.gguf")
    with open(path, "wb") as f:
        f.write(content)
    code = _CHILD.format(path=path, action=action, good=os.path.join(data_dir, "stories260K", "stories260K.gguf"))
    kind, message = run_isolated(code, timeout=120)
    assert kind == "GGUFError", (kind, message)
    assert message.startswith(path + ":"), message
    assert expected in message, message


def test_every_case_is_run(tmp_path, data_dir):
    assert set(CASES) == set(_cases(tmp_path, data_dir))
