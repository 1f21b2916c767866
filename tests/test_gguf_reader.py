"""The GGUF reader on good files: metadata of every value type (arrays and nested arrays
included) equal to the gguf package's reader, the vocabulary files here, typed getters, a
250k-token vocabulary, and the RoPE row order of LLaMA's Q/K weights."""
import os

import numpy as np
import pytest

import gguf
from gguf import GGUFValueType as V

from pyllm import llama2c
from pyllm.architectures.llama import rope_rows_to_hf as unpermute_rope_rows
from pyllm.gguf import GGUFError, open_gguf
from gguf_files import write_gguf

_VALUES = [
    ("t.u8", (V.UINT8, 200)), ("t.i8", (V.INT8, -100)), ("t.u16", (V.UINT16, 60000)), ("t.i16", (V.INT16, -30000)),
    ("t.u32", (V.UINT32, 4000000000)), ("t.i32", (V.INT32, -2000000000)), ("t.f32", (V.FLOAT32, 0.1)),
    ("t.bool", (V.BOOL, True)), ("t.str", (V.STRING, "héllo ▁ 🦙")), ("t.u64", (V.UINT64, 1 << 60)),
    ("t.i64", (V.INT64, -(1 << 60))), ("t.f64", (V.FLOAT64, 0.1)),
    ("t.arr_i32", (V.ARRAY, [1, -2, 3], V.INT32)), ("t.arr_f32", (V.ARRAY, [0.5, -1.25], V.FLOAT32)),
    ("t.arr_str", (V.ARRAY, ["a", "", "ü▁"], V.STRING)), ("t.arr_bool", (V.ARRAY, [True, False], V.BOOL)),
    ("t.arr_u8", (V.ARRAY, [0, 255], V.UINT8)), ("t.nested", (V.ARRAY, [[1, 2], [3]], V.ARRAY)),
]


def test_every_value_type_equals_gguf_reader(tmp_path):
    path = write_gguf(tmp_path / "v.gguf", _VALUES)
    f = open_gguf(path)
    ref = gguf.GGUFReader(path)
    for key, spec in _VALUES:
        field = ref.fields[key]
        ours = f.metadata[key]
        if spec[0] == V.ARRAY and spec[2] == V.ARRAY:
            assert [list(map(int, a)) for a in ours] == [[1, 2], [3]]
            assert f.value_types[key] == "array[array]"
        elif spec[0] == V.ARRAY:
            assert f.value_types[key] == f"array[{spec[2].name.lower()}]"
            expected = field.contents()
            assert list(ours) == list(expected), key
        else:
            assert f.value_types[key] == spec[0].name.lower()
            assert ours == field.contents(), key
            assert type(ours) is {V.BOOL: bool, V.STRING: str, V.FLOAT32: float, V.FLOAT64: float}.get(spec[0], int)
    assert f.get_int("t.u64") == 1 << 60 and f.get_float("t.f32") == pytest.approx(0.1)
    assert f.get_bool("t.bool") is True and f.get_str("t.str") == "héllo ▁ 🦙"
    assert f.get_array("t.arr_i32", "int").tolist() == [1, -2, 3]
    assert f.get_str("t.missing", "dflt") == "dflt"
    with pytest.raises(GGUFError, match="'t.missing' is missing"):
        f.get_str("t.missing", gguf_required())
    with pytest.raises(GGUFError, match="'t.arr_f32' is array\\[float32\\], expected an array of int"):
        f.get_array("t.arr_f32", "int")
    with pytest.raises(GGUFError, match="'t.str' is string, expected a bool"):
        f.get_bool("t.str")


def gguf_required():
    from pyllm.gguf import REQUIRED
    return REQUIRED


def test_vocab_files(data_dir):
    f = open_gguf(os.path.join(data_dir, "llamacpp", "ggml-vocab-llama-spm.gguf"))
    assert f.version == 3 and f.alignment == 32 and not f.tensors
    assert f.architecture() == "llama" and f.get_str("tokenizer.ggml.model") == "llama"
    tokens = f.metadata["tokenizer.ggml.tokens"]
    assert len(tokens) == 32000 and tokens[:3] == ["<unk>", "<s>", "</s>"] and tokens[3] == "<0x00>"
    s = open_gguf(os.path.join(data_dir, "stories260K", "stories260K.gguf"))
    assert s.data_offset == 14176 and len(s.tensors) == 48
    assert s.tensors["token_embd.weight"].shape == (512, 64)
    # its F32 weights are llama2.c's stories260K.bin, byte for byte (the embedding first there)
    emb = s.tensor_array("token_embd.weight")
    with open(os.path.join(data_dir, "stories260K", "stories260K.bin"), "rb") as fbin:
        fbin.seek(28)
        assert np.array_equal(np.frombuffer(fbin.read(emb.nbytes), np.float32).reshape(512, 64), emb)


def test_large_vocabulary(tmp_path):
    """A 250k-token vocabulary (strings of every length class) reads back exactly."""
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyzĠ▁çé中🦙")
    tokens = ["".join(rng.choice(alphabet, size=int(n))) + str(i) for i, n in enumerate(rng.integers(0, 12, 250000))]
    path = write_gguf(tmp_path / "big.gguf", [("tokenizer.ggml.tokens", (V.ARRAY, tokens, V.STRING))])
    assert open_gguf(path).metadata["tokenizer.ggml.tokens"] == tokens


def _convert_permute(w, n_head, n_head_kv=None):
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute (HF rotate-half -> GGUF interleaved)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.mark.parametrize("n_head,n_kv,head_dim,cols", [(8, 8, 16, 64), (8, 2, 64, 32), (3, 1, 8, 1)])
def test_unpermute_inverts_convert_permute(n_head, n_kv, head_dim, cols):
    rng = np.random.default_rng(n_head * head_dim)
    q = rng.standard_normal((n_head * head_dim, cols)).astype(np.float32)
    k = rng.standard_normal((n_kv * head_dim, cols)).astype(np.float32)
    q_gguf, k_gguf = _convert_permute(q, n_head), _convert_permute(k, n_head, n_kv)
    assert not np.array_equal(q_gguf, q)  # the permutation does move rows
    assert np.array_equal(unpermute_rope_rows(q_gguf, n_head), q)
    assert np.array_equal(unpermute_rope_rows(k_gguf, n_kv), k)
    bias = rng.standard_normal(n_head * head_dim).astype(np.float32)  # 1-D (a Q bias) too
    assert np.array_equal(unpermute_rope_rows(_convert_permute(bias, n_head), n_head), bias)


def test_unpermute_matches_transformers_gguf_loader():
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS
    processor = TENSOR_PROCESSORS["llama"](config={})
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4 * 2 * 8, 16)).astype(np.float32)
    assert np.array_equal(unpermute_rope_rows(w, 2), processor._reverse_permute_weights(w, 4, 2))
