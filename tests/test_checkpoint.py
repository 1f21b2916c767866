"""pyllm.checkpoint reads what the safetensors package and transformers' save_pretrained
write, bit for bit, and refuses damaged files with a clear exception (never a crash)."""
import json
import os
import struct

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch

from pyllm import checkpoint


def _random_array(rng, dtype, shape):
    if dtype == np.bool_:
        return np.asarray(rng.random(shape) < 0.5)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.asarray(rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True))
    return np.asarray(rng.standard_normal(shape) * 10, dtype=dtype)


NUMPY_DTYPES = [np.float32, np.float16, np.float64, np.int64, np.int32, np.int16, np.int8,
                np.uint8, np.uint16, np.uint32, np.uint64, np.bool_]
SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4), (0,), (4, 0, 2), (1, 1, 1, 9)]


@pytest.mark.parametrize("seed", range(3))
def test_numpy_safetensors_roundtrip(tmp_path, seed):
    rng = np.random.default_rng(seed)
    arrays = {}
    for i, dtype in enumerate(NUMPY_DTYPES):
        for j, shape in enumerate(SHAPES):
            if rng.random() < 0.6:
                arrays[f"t{i}.{j}"] = _random_array(rng, dtype, shape)
    save_numpy(arrays, str(tmp_path / "model.safetensors"), metadata={"format": "np"})
    loaded = checkpoint.load_weights(tmp_path)
    assert sorted(loaded) == sorted(arrays)
    for name, want in arrays.items():
        got = loaded[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got, want), name
        if got.size:
            # A view into the file's mapping, not a copy, and not writable through.
            assert not got.flags.owndata and not got.flags.writeable, name


def test_bf16_is_widened_exactly(tmp_path):
    torch.manual_seed(0)
    tensors = {
        "a": torch.randn(17, 33).to(torch.bfloat16),
        "b": (torch.randn(5) * 1e30).to(torch.bfloat16),
        "specials": torch.tensor([0.0, -0.0, float("inf"), float("-inf"), 1e-40, -3.0]).to(torch.bfloat16),
        "f32": torch.randn(3, 3),
    }
    save_torch(tensors, str(tmp_path / "model.safetensors"))
    loaded = checkpoint.load_weights(tmp_path)
    for name, t in tensors.items():
        got = loaded[name]
        assert got.dtype == np.float32
        want = t.float().numpy()
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), name


def test_bf16_nan_survives(tmp_path):
    save_torch({"n": torch.tensor([float("nan"), 1.0]).to(torch.bfloat16)}, str(tmp_path / "model.safetensors"))
    got = checkpoint.load_weights(tmp_path)["n"]
    assert np.isnan(got[0]) and got[1] == 1.0


def _tiny_llama(tie, seed):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=56, num_hidden_layers=3,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=97,
                                      max_position_embeddings=64, tie_word_embeddings=tie)
    return transformers.LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shard", [None, "20KB"])
@pytest.mark.parametrize("tie", [False, True])
def test_save_pretrained_roundtrip(tmp_path, dtype, shard, tie):
    seed = [torch.float32, torch.float16, torch.bfloat16].index(dtype) * 4 + (shard is not None) * 2 + tie
    model = _tiny_llama(tie, seed).to(dtype)
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(tmp_path, **kwargs)
    files = os.listdir(tmp_path)
    if shard:
        assert checkpoint.SAFETENSORS_INDEX_NAME in files and checkpoint.SAFETENSORS_NAME not in files
        assert sum(f.endswith(".safetensors") for f in files) > 2
    else:
        assert checkpoint.SAFETENSORS_NAME in files

    weights = checkpoint.load_weights(tmp_path)
    state = model.state_dict()
    expected_names = {n for n in state if not (tie and n == "lm_head.weight")}
    assert set(weights) == expected_names
    numpy_dtype = {torch.float32: np.float32, torch.float16: np.float16, torch.bfloat16: np.float32}[dtype]
    for name in expected_names:
        want = state[name].float().numpy() if dtype == torch.bfloat16 else state[name].numpy()
        got = weights[name]
        assert got.dtype == numpy_dtype and got.shape == want.shape, name
        assert np.array_equal(got, want), name

    config = checkpoint.load_config(tmp_path)
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size", "rms_norm_eps", "tie_word_embeddings"):
        assert config[key] == getattr(model.config, key), key
    generation = checkpoint.load_generation_config(tmp_path)
    assert generation == json.loads((tmp_path / "generation_config.json").read_text())
    config2, weights2, generation2 = checkpoint.load_pretrained(tmp_path)
    assert config2 == config and generation2 == generation and sorted(weights2) == sorted(weights)


def test_generation_config_absent_is_empty(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    assert checkpoint.load_generation_config(tmp_path) == {}
    assert checkpoint.load_config(tmp_path) == {"hidden_size": 8}


def test_save_safetensors_is_read_by_the_package(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"f32": rng.standard_normal((3, 5)).astype(np.float32), "f16": np.float16(2.5),
               "big_endian": rng.standard_normal(4).astype(">f8"), "i8": np.arange(-3, 4, dtype=np.int8),
               "u16": np.arange(7, dtype=np.uint16), "mask": np.array([[True, False]]),
               "strided": rng.standard_normal((4, 6)).astype(np.float32)[::2, 1::2], "empty": np.zeros((0, 3), np.int32)}
    checkpoint.save_safetensors(tmp_path / "t.safetensors", tensors, metadata={"k": "v"})
    for loaded in (load_numpy(str(tmp_path / "t.safetensors")), checkpoint.load_safetensors(tmp_path / "t.safetensors")):
        assert sorted(loaded) == sorted(tensors)
        for name, want in tensors.items():
            assert loaded[name].shape == np.shape(want) and np.array_equal(loaded[name], want), name
    with pytest.raises(TypeError, match="cannot be stored"):
        checkpoint.save_safetensors(tmp_path / "bad.safetensors", {"s": np.array(["text"])})


# ---------------------------------------------------------------------------------------
# Damaged files: each case runs in a fresh interpreter so that a crash fails the test.


def _write_raw(path, header, data=b"", header_len=None):
    """A safetensors file from a header dict (or raw bytes) and data bytes."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(raw) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", length) + raw + data)


def _expect(isolated, call, exc, *fragments):
    kind, message = isolated(f"from pyllm import checkpoint\n{call}\n")
    assert kind == exc, (kind, message)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


F32_2x2 = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}


def _damaged_files(root):
    """{case: (directory, expected exception, message fragments)}."""
    cases = {}

    def case(name, exc, *fragments):
        d = root / name
        d.mkdir()
        cases[name] = (d, exc, fragments)
        return d

    d = case("too_short", "ValueError", "too short", "model.safetensors")
    (d / "model.safetensors").write_bytes(b"\x05\x00")
    d = case("empty_file", "ValueError", "too short")
    (d / "model.safetensors").write_bytes(b"")
    d = case("header_past_end", "ValueError", "header length", "runs past the end")
    _write_raw(d / "model.safetensors", F32_2x2, bytes(16), header_len=10_000)
    d = case("huge_header_len", "ValueError", "header length")
    _write_raw(d / "model.safetensors", F32_2x2, bytes(16), header_len=2**64 - 1)
    d = case("header_not_json", "ValueError", "not valid JSON", "model.safetensors")
    _write_raw(d / "model.safetensors", b'{"w": {"dtype": "F32",', bytes(16))
    d = case("header_not_utf8", "ValueError", "not UTF-8")
    _write_raw(d / "model.safetensors", b'{"\xff\xfe": 1}', bytes(16))
    d = case("header_not_object", "ValueError", "JSON object", "array")
    _write_raw(d / "model.safetensors", [1, 2, 3], bytes(16))
    d = case("truncated_data", "ValueError", "'w'", "truncated")
    _write_raw(d / "model.safetensors", F32_2x2, bytes(12))
    d = case("offsets_beyond_file", "ValueError", "'b'", "truncated")
    _write_raw(d / "model.safetensors", {**F32_2x2, "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}},
               bytes(16))
    d = case("size_mismatch", "ValueError", "'w'", "needs 16")
    _write_raw(d / "model.safetensors", {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}},
               bytes(16))
    d = case("bf16_size_mismatch", "ValueError", "'w'", "BF16", "needs 6")
    _write_raw(d / "model.safetensors", {"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 8]}}, bytes(8))
    d = case("reversed_offsets", "ValueError", "'w'", "end before")
    _write_raw(d / "model.safetensors", {"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}}, bytes(16))
    d = case("overlap", "ValueError", "overlap", "'a'", "'b'")
    _write_raw(d / "model.safetensors", {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16))
    d = case("unknown_dtype", "ValueError", "'w'", "F8_E4M3", "not supported")
    _write_raw(d / "model.safetensors", {"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}, bytes(4))
    d = case("negative_shape", "ValueError", "'w'", "shape")
    _write_raw(d / "model.safetensors", {"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}, bytes(16))
    d = case("float_offsets", "ValueError", "'w'", "data_offsets")
    _write_raw(d / "model.safetensors", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0.0, 16]}}, bytes(16))
    d = case("entry_not_object", "ValueError", "'w'", "must be an object")
    _write_raw(d / "model.safetensors", {"w": "F32"}, bytes(16))
    d = case("metadata_not_object", "ValueError", "__metadata__")
    _write_raw(d / "model.safetensors", {"__metadata__": [1], **F32_2x2}, bytes(16))
    d = case("no_weights", "FileNotFoundError", "model.safetensors", "model.safetensors.index.json")
    (d / "config.json").write_text("{}")
    d = case("only_pytorch_bin", "FileNotFoundError", "convert them to safetensors")
    (d / "pytorch_model.bin").write_bytes(b"PK")

    # Sharded checkpoints.
    d = case("missing_shard", "FileNotFoundError", "model-00002-of-00002.safetensors", "'b'")
    save_numpy({"a": np.ones(3, np.float32)}, str(d / "model-00001-of-00002.safetensors"))
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                        "b": "model-00002-of-00002.safetensors"}}))
    d = case("tensor_not_in_shard", "ValueError", "'ghost'", "model-00001-of-00001.safetensors")
    save_numpy({"a": np.ones(3, np.float32)}, str(d / "model-00001-of-00001.safetensors"))
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00001.safetensors", "ghost": "model-00001-of-00001.safetensors"}}))
    d = case("index_without_weight_map", "ValueError", "weight_map")
    (d / "model.safetensors.index.json").write_text('{"metadata": {}}')
    d = case("index_not_json", "ValueError", "model.safetensors.index.json", "line 1")
    (d / "model.safetensors.index.json").write_text('{"weight_map": ')
    d = case("index_escapes_directory", "ValueError", "inside the model directory")
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "../x.safetensors"}}))
    d = case("damaged_shard", "ValueError", "model-00001-of-00001.safetensors", "truncated")
    _write_raw(d / "model-00001-of-00001.safetensors", F32_2x2, bytes(4))
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "model-00001-of-00001.safetensors"}}))
    return cases


def test_damaged_weights_raise(tmp_path, isolated):
    cases = _damaged_files(tmp_path)
    # One child for all cases keeps this fast; a crash in any of them still fails the test.
    code = "results = {}\n"
    for name, (d, _, _) in cases.items():
        code += (f"try:\n    checkpoint.load_weights({str(d)!r})\n    results[{name!r}] = (None, '')\n"
                 f"except Exception as e:\n    results[{name!r}] = (type(e).__name__, str(e))\n")
    code += "raise RuntimeError(json.dumps(results))\n"
    kind, message = isolated(f"from pyllm import checkpoint\nimport json\n{code}")
    assert kind == "RuntimeError", message
    results = json.loads(message)
    for name, (_, exc, fragments) in cases.items():
        got_kind, got_message = results[name]
        assert got_kind == exc, (name, got_kind, got_message)
        for fragment in fragments:
            assert fragment in got_message, (name, fragment, got_message)


def test_truncated_real_checkpoint_raises(tmp_path, isolated):
    """Cut a real save_pretrained file anywhere: never a view past the end, never a crash."""
    model = _tiny_llama(tie=False, seed=3)
    model.save_pretrained(tmp_path / "full")
    data = (tmp_path / "full" / "model.safetensors").read_bytes()
    cuts = [4, 8, 9, 100, len(data) // 3, len(data) // 2, len(data) - 1]
    code = "out = []\n"
    for cut in cuts:
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / "model.safetensors").write_bytes(data[:cut])
        code += (f"try:\n    checkpoint.load_weights({str(d)!r})\n    out.append('loaded')\n"
                 f"except ValueError as e:\n    out.append(str(e))\n")
    code += "raise RuntimeError(json.dumps(out))\n"
    kind, message = isolated(f"from pyllm import checkpoint\nimport json\n{code}")
    assert kind == "RuntimeError", message
    for cut, msg in zip(cuts, json.loads(message)):
        assert msg != "loaded" and "model.safetensors" in msg, (cut, msg)


def test_config_errors(tmp_path, isolated):
    missing = tmp_path / "nothing_here"
    _expect(isolated, f"checkpoint.load_config({str(missing)!r})", "FileNotFoundError", "model directory not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect(isolated, f"checkpoint.load_config({str(empty)!r})", "FileNotFoundError", "config.json")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text('{\n  "hidden_size": 8,\n  "vocab_size": \n}')
    _expect(isolated, f"checkpoint.load_config({str(bad)!r})", "ValueError", "config.json", "line 4", "column 1")
    listy = tmp_path / "listy"
    listy.mkdir()
    (listy / "config.json").write_text("[1, 2]")
    _expect(isolated, f"checkpoint.load_config({str(listy)!r})", "ValueError", "JSON object", "array")
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / "config.json").write_bytes(b"\xff\x00\x01")
    _expect(isolated, f"checkpoint.load_config({str(binary)!r})", "ValueError", "not UTF-8")
    (bad / "generation_config.json").write_text("nope")
    _expect(isolated, f"checkpoint.load_generation_config({str(bad)!r})", "ValueError",
            "generation_config.json", "line 1")
    a_file = bad / "config.json"
    _expect(isolated, f"checkpoint.load_weights({str(a_file)!r})", "NotADirectoryError", "expected a model directory")
