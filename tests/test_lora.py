"""PEFT LoRA adapters merged at load (pyllm.lora): the merged weights and the logits against peft's
own merge_and_unload() on the same adapter files, made here by peft (get_peft_model, random lora_B
so every delta counts, save_pretrained) on small random LLaMA and BLOOM bases; and every refusal,
by name."""
import json
import os
import shutil
import warnings

import numpy as np
import peft
import pytest
import torch

import pyllm
from pyllm import architectures, checkpoint, lora
from bloom_reference import make_config as bloom_config, reference_model as bloom_model
from llama_reference import make_config as llama_config, reference_model as llama_model
from test_dtypes import RANDOM_MODEL_LIMIT, _relative_error
from tokenizer_json_builders import train_byte_level

VOCAB = 300
ATOL = 1e-4  # the bound on logits (float32)
IDS = np.random.default_rng(3).integers(0, VOCAB, size=(2, 11))


def _save_base(directory, family, tied=None):
    if family == "llama":
        config = llama_config(vocab_size=VOCAB, num_key_value_heads=2)
        if tied is not None:
            config["tie_word_embeddings"] = tied
        hf = llama_model(config, seed=4)
    else:
        hf = bloom_model(bloom_config(vocab_size=VOCAB), seed=4)
    hf.save_pretrained(directory, safe_serialization=True)
    return str(directory)


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora_bases")
    return {"llama": _save_base(root / "llama", "llama"), "bloom": _save_base(root / "bloom", "bloom"),
            "llama_tied": _save_base(root / "llama_tied", "llama", tied=True)}


def _hf(base, resize=None):
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    if resize:
        hf.resize_token_embeddings(resize, mean_resizing=False)
    return hf


def make_adapter(base, directory, seed, resize=None, **lora):
    """A peft adapter of base saved in directory: lora_B (zero at init) and the copies of
    modules_to_save drawn at random so that every part changes the logits."""
    hf = _hf(base, resize)
    model = peft.get_peft_model(hf, peft.LoraConfig(**lora))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name or "lora_A" in name or "lora_embedding_A" in name:
                # Factors of 0.1 give deltas about the size of the base weights (std 0.02), which move
                # the logits by 1-15. At 0.3 the adapted matrices were 18x the base's, the f32 forward
                # of both libraries lost digits to them, and logits of the same merged weights differed
                # by up to 1.3e-4 (the merges themselves being equal, checked below).
                param.copy_(0.1 * torch.randn(param.shape, generator=gen))
            elif "modules_to_save" in name:
                param.add_(0.5 * param.std() * torch.randn(param.shape, generator=gen))
    model.save_pretrained(directory)
    return str(directory)


def peft_model(base, adapters, resize=None):
    """peft's model: each adapter loaded and merged in order with merge_and_unload()."""
    hf = _hf(base, resize)
    for adapter in adapters:
        hf = peft.PeftModel.from_pretrained(hf, adapter).merge_and_unload()
    return hf


def logits_of(hf, ids=IDS):
    with torch.no_grad():
        return hf(torch.as_tensor(ids)).logits.numpy()


def reference_logits(base, adapters, ids=IDS, resize=None):
    return logits_of(peft_model(base, adapters, resize), ids)


def assert_merge_matches_peft(base, adapters, hf):
    """Every tensor pyllm's merge (as Model.from_pretrained makes it) changed equals the one of
    peft's merged model hf within 4 units in the last place of its largest entry: numpy's and
    torch's B @ A add their r products in different orders."""
    tied = architectures.spec_from_hf(checkpoint.load_config(base), None, source=base)["tie_word_embeddings"]
    base_weights = checkpoint.load_weights(base, bf16="bits")
    merged = lora.merge(dict(base_weights), [lora.read(path) for path in adapters], tied)  # replaces entries only
    ref = hf.state_dict()
    changed = 0
    for name, got in merged.items():
        if name in base_weights and got is base_weights[name]:
            continue
        changed += 1
        want = ref[name].numpy()
        ulp = float(np.spacing(np.float32(np.abs(want).max())))
        np.testing.assert_allclose(np.asarray(got, dtype=np.float32), want, rtol=0, atol=4 * ulp, err_msg=name)
    assert changed > 0


def ours(base, adapters, ids=IDS, **kwargs):
    model = pyllm.Model.from_pretrained(base, adapters=adapters, n_threads=1, **kwargs)
    try:
        return model(ids)
    finally:
        model.close()


def assert_matches_peft(base, adapters, resize=None, ids=IDS):
    hf = peft_model(base, adapters, resize)
    assert_merge_matches_peft(base, adapters, hf)
    ref = logits_of(hf, ids)
    got = ours(base, adapters, ids)
    assert got.shape == ref.shape
    err = float(np.abs(got - ref).max())
    assert err <= ATOL, f"max |pyllm - peft| = {err:.2e}"
    # The adapters change the logits far beyond the tolerance: a merge left out would fail.
    if resize is None:
        plain = ours(base, None, ids)
        assert float(np.abs(plain - ref).max()) > 100 * ATOL
    return got


# ---- equal to peft ---------------------------------------------------------------------------

def test_llama_attention_and_mlp(bases, tmp_path):
    ad = make_adapter(bases["llama"], tmp_path / "a", 1, r=4, lora_alpha=8,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert_matches_peft(bases["llama"], [ad])


def test_bloom_fused_query_key_value(bases, tmp_path):
    ad = make_adapter(bases["bloom"], tmp_path / "a", 2, r=4, lora_alpha=16,
                      target_modules=["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"])
    assert_matches_peft(bases["bloom"], [ad])


def test_two_adapters_in_order(bases, tmp_path):
    base = bases["llama"]
    first = make_adapter(base, tmp_path / "a", 3, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "lm_head"])
    # The second replaces the lm_head that the first adapted: the order decides the result.
    second = make_adapter(base, tmp_path / "b", 4, r=2, lora_alpha=4, target_modules=["q_proj", "down_proj"],
                          modules_to_save=["lm_head"])
    first_then_second = assert_matches_peft(base, [first, second])
    assert_matches_peft(base, [second, first])
    assert float(np.abs(first_then_second - ours(base, [second, first])).max()) > 100 * ATOL


def test_rslora_regex_targets(bases, tmp_path):
    ad = make_adapter(bases["bloom"], tmp_path / "a", 5, r=8, lora_alpha=4, use_rslora=True,
                      target_modules=r".*\.h\.1\.(self_attention\.query_key_value|mlp\.dense_4h_to_h)")
    assert_matches_peft(bases["bloom"], [ad])
    # rslora's alpha / sqrt(r) is not alpha / r: without it the logits differ.
    config_path = os.path.join(ad, "adapter_config.json")
    config = json.load(open(config_path))
    config["use_rslora"] = False
    json.dump(config, open(config_path, "w"))
    assert float(np.abs(ours(bases["bloom"], [ad]) - reference_logits(bases["bloom"], [ad])).max()) <= ATOL


def test_rank_and_alpha_patterns(bases, tmp_path):
    ad = make_adapter(bases["llama"], tmp_path / "a", 6, r=4, lora_alpha=8,
                      target_modules=["q_proj", "v_proj", "up_proj"],
                      rank_pattern={"layers.1.self_attn.q_proj": 2, "up_proj": 6},
                      alpha_pattern={"v_proj": 32, r"layers\.0\.mlp\.up_proj": 3})
    config = json.load(open(os.path.join(ad, "adapter_config.json")))
    assert config["rank_pattern"] and config["alpha_pattern"]
    assert_matches_peft(bases["llama"], [ad])


def test_layers_to_transform_and_exclude(bases, tmp_path):
    ad = make_adapter(bases["llama"], tmp_path / "a", 7, r=4, lora_alpha=8, target_modules=["q_proj", "o_proj"],
                      layers_to_transform=[1], exclude_modules=["model.layers.1.self_attn.o_proj"])
    assert_matches_peft(bases["llama"], [ad])


@pytest.mark.parametrize("targets", [["embed_tokens", "q_proj"], ["lm_head"]])
def test_lora_on_a_tied_embedding(bases, tmp_path, targets):
    # LoRA on the tied embedding or lm_head changes both (one tensor), as peft's merge does.
    ad = make_adapter(bases["llama_tied"], tmp_path / "a", 8, r=4, lora_alpha=8, target_modules=targets)
    assert_matches_peft(bases["llama_tied"], [ad])


@pytest.mark.parametrize("saved, targets", [(["lm_head"], ["word_embeddings", "query_key_value"]),
                                            (["word_embeddings"], ["lm_head", "query_key_value"])])
def test_modules_to_save_unties_a_tied_pair(bases, tmp_path, saved, targets):
    # peft's copy of one of BLOOM's tied pair is trained alone; the other keeps the base's tensor
    # (and its own LoRA delta).
    ad = make_adapter(bases["bloom"], tmp_path / "a", 18, r=4, lora_alpha=8, target_modules=targets,
                      modules_to_save=saved)
    assert_matches_peft(bases["bloom"], [ad])
    model = pyllm.Model.from_pretrained(bases["bloom"], adapters=[ad], n_threads=1)
    assert model.config["tie_word_embeddings"] is False
    model.close()


def test_fan_in_fan_out_is_ignored_on_linear_layers_as_peft_does(bases, tmp_path):
    """peft sets fan_in_fan_out to False on torch.nn.Linear (it is GPT-2's Conv1D layout), so an
    adapter_config.json that says True merges B @ A untransposed; pyllm warns and does the same."""
    ad = make_adapter(bases["llama"], tmp_path / "a", 9, r=4, lora_alpha=8, target_modules=["q_proj", "o_proj"])
    config_path = os.path.join(ad, "adapter_config.json")
    config = json.load(open(config_path))
    config["fan_in_fan_out"] = True
    json.dump(config, open(config_path, "w"))
    with pytest.warns(UserWarning, match="fan_in_fan_out"):
        got = ours(bases["llama"], [ad])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = reference_logits(bases["llama"], [ad])
    assert float(np.abs(got - ref).max()) <= ATOL


@pytest.mark.parametrize("family", ["llama", "bloom"])
def test_vocabulary_resized_by_modules_to_save(bases, tmp_path, family):
    base, new_vocab = bases[family], VOCAB + 13
    ad = make_adapter(base, tmp_path / "a", 10, resize=new_vocab, r=4, lora_alpha=8,
                      target_modules=["q_proj"] if family == "llama" else ["query_key_value"],
                      modules_to_save=[{"llama": "embed_tokens", "bloom": "word_embeddings"}[family], "lm_head"])
    ids = np.random.default_rng(4).integers(0, new_vocab, size=(2, 11))
    ids[:, 3] = new_vocab - 1  # a new token
    got = assert_matches_peft(base, [ad], resize=new_vocab, ids=ids)
    assert got.shape[-1] == new_vocab
    model = pyllm.Model.from_pretrained(base, adapters=ad, n_threads=1)
    assert model.config["vocab_size"] == new_vocab and model.vocab_size == new_vocab
    assert model.adapters == (ad,)
    model.close()


def test_llm_takes_the_resizing_adapters_tokenizer(tmp_path):
    base = _save_base(tmp_path / "base", "bloom")
    train_byte_level("bloom", os.path.join(base, "tokenizer.json"), vocab_size=VOCAB)
    new_vocab = VOCAB + 40
    ad = make_adapter(base, tmp_path / "a", 11, resize=new_vocab, r=2, lora_alpha=4, target_modules=["dense"],
                      modules_to_save=["word_embeddings", "lm_head"])
    with pytest.raises(ValueError, match="resize the vocabulary but no adapter directory holds a tokenizer"):
        pyllm.LLM(base, adapters=[ad], n_threads=1)
    train_byte_level("bloom", os.path.join(ad, "tokenizer.json"), vocab_size=new_vocab)
    from transformers import PreTrainedTokenizerFast
    theirs = PreTrainedTokenizerFast(tokenizer_file=os.path.join(ad, "tokenizer.json"))
    text = "Once upon a time there was a little girl who loved the sea."
    with pyllm.LLM(base, adapters=[ad], n_threads=1) as llm:
        assert llm.tokenizer.encode(text) == theirs.encode(text)
        assert max(theirs.get_vocab().values()) >= VOCAB  # the adapter's tokenizer uses the new rows
        ids = np.asarray([llm.tokenizer.encode(text)])
        ref = reference_logits(base, [ad], ids, resize=new_vocab)
        assert float(np.abs(llm.model(ids) - ref).max()) <= ATOL
    with pyllm.LLM(base, n_threads=1) as plain:  # the base keeps its own tokenizer
        assert plain.tokenizer.encode(text) != theirs.encode(text)


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_merged_before_quantization(bases, tmp_path, dtype):
    """Quantized after the merge: close to the float32 merged logits within test_dtypes' bound,
    while quantizing the base and adding the delta after would be far off (a merge after packing
    could not touch the int8 blocks at all)."""
    base = bases["llama"]
    ad = make_adapter(base, tmp_path / "a", 12, r=8, lora_alpha=16,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    merged = ours(base, [ad])
    quantized = ours(base, [ad], dtype=dtype, lm_head_dtype="same")
    err = _relative_error(quantized, merged)
    assert err <= RANDOM_MODEL_LIMIT[dtype], f"{dtype}: {err:.4f} x std"
    assert err >= RANDOM_MODEL_LIMIT[dtype] / 50  # the weights really are in the low-precision type
    unmerged = ours(base, None, dtype=dtype, lm_head_dtype="same")
    assert _relative_error(unmerged, merged) > 3 * RANDOM_MODEL_LIMIT[dtype]


# ---- refusals ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_adapter(bases, tmp_path_factory):
    return make_adapter(bases["llama"], tmp_path_factory.mktemp("lora_ad") / "a", 13, r=4, lora_alpha=8,
                        target_modules=["q_proj", "v_proj"])


def _edited(adapter, tmp_path, **changes):
    copy = str(tmp_path / "edited")
    shutil.copytree(adapter, copy)
    path = os.path.join(copy, "adapter_config.json")
    config = json.load(open(path))
    config.update(changes)
    json.dump(config, open(path, "w"))
    return copy


@pytest.mark.parametrize("changes, message", [
    ({"use_dora": True}, "use_dora=True is not supported"),
    ({"bias": "all"}, "bias='all' is not supported"),
    ({"bias": "lora_only"}, "bias='lora_only' is not supported"),
    ({"peft_type": "IA3"}, "peft_type is 'IA3'; pyllm merges LoRA adapters only"),
    ({"lora_bias": True}, "lora_bias=True is not supported"),
    ({"trainable_token_indices": [5]}, "trainable_token_indices=[5] is not supported"),
    ({"init_lora_weights": "pissa"}, "init_lora_weights='pissa' is not supported"),
    ({"r": 0}, "r must be a positive integer, got 0"),
    ({"modules_to_save": "lm_head"}, "modules_to_save must be a list of module names, got 'lm_head'"),
    ({"target_modules": ["q_proj", "qkv_proj"]}, "target_modules entry 'qkv_proj' names no module of the base"),
    ({"target_modules": "nothing"}, "target_modules 'nothing' matches no module of the base"),
    ({"target_modules": ["k_proj", "v_proj"]},
     "LoRA factors for 'model.layers.0.self_attn.q_proj', which adapter_config.json's module selection "
     "{'target_modules': ['k_proj', 'v_proj']} does not select"),
    ({"layers_to_transform": [0]},
     "LoRA factors for 'model.layers.1.self_attn.q_proj', which adapter_config.json's module selection "
     "{'target_modules': "),
    ({"exclude_modules": ["model.layers.1.self_attn.v_proj"]},
     "LoRA factors for 'model.layers.1.self_attn.v_proj', which adapter_config.json's module selection"),
    ({"r": 8}, "'model.layers.0.self_attn.q_proj' has lora_A (4, 64) and lora_B (64, 4), but its base weight "
               "(64, 64) with r=8 needs lora_A (8, 64) and lora_B (64, 8)"),
])
def test_refused_settings(bases, llama_adapter, tmp_path, changes, message):
    adapter = _edited(llama_adapter, tmp_path, **changes)
    with pytest.raises(ValueError) as e:
        pyllm.Model.from_pretrained(bases["llama"], adapters=[adapter])
    assert message in str(e.value)
    assert "adapter_config.json" in str(e.value) or "adapter_model.safetensors" in str(e.value)


def test_pickled_adapter_refused_with_the_conversion(bases, llama_adapter, tmp_path):
    adapter = str(tmp_path / "bin")
    shutil.copytree(llama_adapter, adapter)
    from safetensors.torch import load_file
    tensors = load_file(os.path.join(adapter, "adapter_model.safetensors"))
    os.remove(os.path.join(adapter, "adapter_model.safetensors"))
    torch.save(tensors, os.path.join(adapter, "adapter_model.bin"))
    with pytest.raises(ValueError) as e:
        pyllm.Model.from_pretrained(bases["llama"], adapters=[adapter])
    message = str(e.value)
    assert "adapter_model.bin is a pickle" in message
    # The one-line conversion given works, and the converted adapter then loads.
    command = message.split("\n", 1)[1].strip()
    assert command.startswith("python -c ")
    code = command[len("python -c "):].strip('"')
    exec(code, {})
    assert float(np.abs(ours(bases["llama"], [adapter]) - ours(bases["llama"], [llama_adapter])).max()) == 0


def test_adapter_of_another_base_refused(bases, tmp_path):
    # A BLOOM adapter on LLaMA: its target names no LLaMA module.
    ad = make_adapter(bases["bloom"], tmp_path / "a", 14, r=2, lora_alpha=4, target_modules=["query_key_value"])
    with pytest.raises(ValueError, match="target_modules entry 'query_key_value' names no module of the base model"):
        pyllm.Model.from_pretrained(bases["llama"], adapters=[ad])
    # Same names, other sizes: the shapes are named.
    other = _save_base(tmp_path / "wide", "llama")
    config = json.load(open(os.path.join(other, "config.json")))
    wide = llama_model(llama_config(**{k: config[k] for k in ("vocab_size", "num_key_value_heads")}, hidden_size=96,
                                    intermediate_size=128), seed=1)
    wide.save_pretrained(other, safe_serialization=True)
    ad = make_adapter(other, tmp_path / "b", 15, r=2, lora_alpha=4, target_modules=["q_proj"])
    with pytest.raises(ValueError, match=r"adapter_model.safetensors: 'model.layers.0.self_attn.q_proj' has lora_A "
                                         r"\(2, 96\) and lora_B \(96, 2\), but its base weight \(64, 64\)"):
        pyllm.Model.from_pretrained(bases["llama"], adapters=[ad])
    # A replaced tensor the base lacks (the adapter's lm_head renamed by hand).
    from safetensors.torch import load_file, save_file
    ad = make_adapter(bases["llama"], tmp_path / "c", 16, r=2, lora_alpha=4, target_modules=["q_proj"],
                      modules_to_save=["lm_head"])
    path = os.path.join(ad, "adapter_model.safetensors")
    tensors = load_file(path)
    tensors["base_model.model.model.extra_head.weight"] = tensors.pop("base_model.model.lm_head.weight")
    save_file(tensors, path)
    with pytest.raises(ValueError, match=r"adapter_model.safetensors: the adapter replaces 'model.extra_head.weight' "
                                         r"\(shape \(300, 64\)\), which the base model lacks"):
        pyllm.Model.from_pretrained(bases["llama"], adapters=[ad])


def test_resize_of_one_side_refused(bases, tmp_path):
    from safetensors.torch import load_file, save_file
    ad = make_adapter(bases["llama"], tmp_path / "a", 17, resize=VOCAB + 5, r=2, lora_alpha=4,
                      target_modules=["q_proj"], modules_to_save=["embed_tokens"])
    # peft also saves the resized lm_head (save_embedding_layers): without it the adapter is unusable.
    path = os.path.join(ad, "adapter_model.safetensors")
    save_file({k: v for k, v in load_file(path).items() if "lm_head" not in k}, path)
    with pytest.raises(ValueError, match="the embedding has 305 rows but lm_head has 300: an adapter that resizes"):
        pyllm.Model.from_pretrained(bases["llama"], adapters=[ad])


def test_gguf_and_llama2c_refuse_adapters(data_dir, llama_adapter):
    for path in (f"{data_dir}/stories260K/stories260K.gguf", f"{data_dir}/stories260K/stories260K.bin"):
        with pytest.raises(ValueError, match="adapters= needs a Hugging Face model directory"):
            pyllm.Model.from_pretrained(path, adapters=[llama_adapter])


@pytest.mark.parametrize("adapters, error, message", [
    (5, TypeError, "adapters must be a path or a list of paths to PEFT adapter directories, got int"),
    ([5], TypeError, "adapters[0] must be a path (str or os.PathLike)"),
    (["/nonexistent/adapter"], ValueError, "adapters[0] must be a PEFT adapter directory"),
])
def test_bad_adapters_argument(bases, adapters, error, message):
    for load in (pyllm.Model.from_pretrained, pyllm.LLM):
        with pytest.raises(error) as e:
            load(bases["llama"], adapters=adapters)
        assert message in str(e.value)


def test_missing_weights_file(bases, llama_adapter, tmp_path):
    adapter = str(tmp_path / "empty")
    shutil.copytree(llama_adapter, adapter)
    os.remove(os.path.join(adapter, "adapter_model.safetensors"))
    with pytest.raises(ValueError, match="lacks adapter_model.safetensors"):
        pyllm.Model.from_pretrained(bases["llama"], adapters=adapter)


def test_bfloat16_base_merged_in_float32(tmp_path):
    """A base stored in bf16 (pyllm keeps its bits until packing) is widened for the merge: equal to
    peft merging into the same weights loaded as float32."""
    hf = llama_model(llama_config(vocab_size=VOCAB, num_key_value_heads=2), seed=5)
    base = str(tmp_path / "bf16")
    hf.to(torch.bfloat16).save_pretrained(base, safe_serialization=True)
    ad = make_adapter(base, tmp_path / "a", 19, r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"])
    assert_matches_peft(base, [ad])


def test_memory_check_counts_the_merged_copies(bases, llama_adapter, monkeypatch):
    # The merge holds a float32 copy of each adapted matrix until packing: q_proj (64 x 64) and
    # v_proj (32 x 64) in 2 layers.
    seen = []
    real = pyllm.memory.check_weights

    def spy(spec, dtype, lm_head_dtype=None, transient_bytes=0):
        seen.append(transient_bytes)
        return real(spec, dtype, lm_head_dtype, transient_bytes)

    monkeypatch.setattr(pyllm.memory, "check_weights", spy)
    pyllm.Model.from_pretrained(bases["llama"], adapters=[llama_adapter], n_threads=1).close()
    assert seen[0] == 2 * (64 * 64 + 32 * 64) * 4


def test_lora_on_a_layer_the_base_lacks(bases, llama_adapter, tmp_path):
    # An adapter of a deeper model: its layer 7 matches target_modules but is not in the base.
    from safetensors.torch import load_file, save_file
    adapter = str(tmp_path / "deep")
    shutil.copytree(llama_adapter, adapter)
    path = os.path.join(adapter, "adapter_model.safetensors")
    save_file({k.replace("layers.1.", "layers.7."): v for k, v in load_file(path).items()}, path)
    with pytest.raises(ValueError, match=r"adapter_model.safetensors: the adapter has LoRA factors for "
                                         r"'model.layers.7.self_attn.q_proj', which the base model lacks"):
        pyllm.Model.from_pretrained(bases["llama"], adapters=[adapter])
