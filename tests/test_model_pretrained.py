"""Model.from_pretrained on directories written by transformers' save_pretrained: f32, f16 and
bf16 weights, single-file and sharded, with generation_config.json supplying generate()'s
defaults. The reference is transformers reading the same directory in float32."""
import json
import os

import numpy as np
import pytest
import torch
from transformers import GenerationConfig, LlamaForCausalLM

import pyllm
from llama_reference import make_config, reference_model

TOL = 1e-4


@pytest.fixture(scope="module")
def hf_model():
    return reference_model(make_config(num_key_value_heads=2, rope_theta=5e5), seed=7)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("shard", [None, "40KB"])
def test_from_pretrained_matches_transformers(tmp_path, hf_model, dtype, shard):
    folder = str(tmp_path / "model")
    saved = hf_model.to(getattr(torch, dtype))
    kwargs = {"max_shard_size": shard} if shard else {}
    saved.save_pretrained(folder, safe_serialization=True, **kwargs)
    hf_model.to(torch.float32)
    if shard:
        assert os.path.exists(os.path.join(folder, "model.safetensors.index.json"))

    reference = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    model = pyllm.Model.from_pretrained(folder)
    ids = np.random.default_rng(3).integers(0, 160, size=(2, 37))
    with torch.no_grad():
        expected = reference(torch.as_tensor(ids)).logits.numpy()
    got = model(ids)
    assert got.shape == expected.shape
    assert float(np.abs(got - expected).max()) <= TOL
    if dtype != "float32":  # the stored precision really was reduced, and we read it as stored
        with torch.no_grad():
            full = hf_model(torch.as_tensor(ids)).logits.numpy()
        assert float(np.abs(full - expected).max()) > 10 * TOL


def test_generation_config_supplies_defaults(tmp_path, hf_model):
    folder = str(tmp_path / "model")
    hf_model.save_pretrained(folder, safe_serialization=True)
    GenerationConfig(max_new_tokens=7, eos_token_id=[], do_sample=False).save_pretrained(folder)
    with open(os.path.join(folder, "generation_config.json")) as f:
        assert json.load(f)["max_new_tokens"] == 7
    model = pyllm.Model.from_pretrained(folder, n_ctx=64)
    assert model.n_ctx == 64
    out = model.generate([5, 6, 7])
    assert out.shape == (3 + 7,)
    # an explicit argument wins over the file
    assert model.generate([5, 6, 7], max_new_tokens=2).shape == (5,)
    with torch.no_grad():
        ref = hf_model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=7, do_sample=False,
                                eos_token_id=None, pad_token_id=0)[0].numpy()
    np.testing.assert_array_equal(out, ref)


def test_tokenizer_and_model_from_one_directory(tmp_path, data_dir, hf_model):
    folder = str(tmp_path / "model")
    hf_model.save_pretrained(folder, safe_serialization=True)
    with open(os.path.join(data_dir, "llama", "tokenizer.model"), "rb") as src:
        with open(os.path.join(folder, "tokenizer.model"), "wb") as dst:
            dst.write(src.read())
    tok = pyllm.Tokenizer.from_pretrained(folder)
    model = pyllm.Model.from_pretrained(folder)
    ids = [i % model.vocab_size for i in tok.encode("Hello world")]
    assert ids[0] == tok.bos_token_id == 1
    assert model.generate(ids, max_new_tokens=4).shape == (len(ids) + 4,)
