"""`pyllm convert` (pyllm.convert): a Hugging Face LLaMA directory to a GGUF file as llama.cpp
writes it. Read back with pyllm.gguf: stories260K converted from its llama2.c weights equals
llama.cpp CI's own stories260K.gguf byte for byte; each type's tensors equal the gguf package's
quantization of the HF weights (Q/K rows interleaved); the vocabulary encodes as the directory's."""
import json
import os

import gguf
import numpy as np
import pytest

import pyllm
from conftest import run_cli
from llm_models import write_llama
from pyllm.architectures.llama import rope_rows_to_hf
from pyllm.checkpoint import load_config, load_weights
from pyllm.convert import TYPES, _gguf_name, rope_rows_from_hf
from pyllm.gguf import open_gguf
from spm_files import write_sentencepiece

TEXTS = ["Once upon a time, there was a little girl.", "Lily   liked 123 cats!\n\nThe end", "héllo ☃ 日本"]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory, data_dir):
    return write_llama(tmp_path_factory.mktemp("convert_llama"), data_dir)


@pytest.fixture(scope="module")
def stories_dir(tmp_path_factory, data_dir):
    """stories260K as a Hugging Face directory: llama2.c weights, the GGUF's vocabulary as tokenizer.model."""
    from pyllm.llama2c import convert_llama2c
    d = convert_llama2c(f"{data_dir}/stories260K/stories260K.bin", tmp_path_factory.mktemp("convert") / "stories")
    meta = open_gguf(f"{data_dir}/stories260K/stories260K.gguf").metadata
    write_sentencepiece(f"{d}/tokenizer.model", meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"],
                        meta["tokenizer.ggml.token_type"])
    return d


def convert(src, out, kind):
    code, stdout, err = run_cli(["convert", src, str(out), "--type", kind])
    assert code == 0, err
    assert stdout.startswith(f"wrote {out}: ")
    return open_gguf(str(out))


def test_stories260K_equals_llama_cpp_file(stories_dir, data_dir, tmp_path):
    ours = convert(stories_dir, tmp_path / "s.gguf", "f32")
    ref = open_gguf(f"{data_dir}/stories260K/stories260K.gguf")
    # llama.cpp's file repeats the tied classifier as output.weight; ours leaves it to token_embd.
    assert set(ours.tensors) == set(ref.tensors) - {"output.weight"}
    for name, t in ours.tensors.items():
        assert t.shape == ref.tensors[name].shape and t.type_name == "F32"
        assert np.array_equal(ours.tensor_bytes(name), ref.tensor_bytes(name)), name
    assert np.array_equal(ref.tensor_bytes("output.weight"), ref.tensor_bytes("token_embd.weight"))
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        assert np.array_equal(np.asarray(ours.metadata[key]), np.asarray(ref.metadata[key])), key
    for key, value in ref.metadata.items():
        if key.startswith("llama.") and key != "llama.context_length":  # llama2.c's header says 512
            assert ours.metadata[key] == value, key
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.unknown_token_id", "general.architecture"):
        assert ours.metadata[key] == ref.metadata[key], key
    tok = pyllm.Tokenizer.from_pretrained(str(tmp_path / "s.gguf"))
    ref_tok = pyllm.Tokenizer.from_pretrained(f"{data_dir}/stories260K/stories260K.gguf")
    assert [tok.encode(t) for t in TEXTS] == [ref_tok.encode(t) for t in TEXTS]


def test_rows_not_whole_blocks_fall_back_to_f16(stories_dir, tmp_path):
    f = convert(stories_dir, tmp_path / "s8.gguf", "Q8_0")
    types = {name: t.type_name for name, t in f.tensors.items()}
    assert {types[f"blk.{i}.ffn_down.weight"] for i in range(5)} == {"F16"}  # 172 inputs: no 32-blocks
    assert types["blk.0.ffn_up.weight"] == "Q8_0" and types["token_embd.weight"] == "Q8_0"
    assert types["output_norm.weight"] == "F32"
    assert f.metadata["general.file_type"] == TYPES["Q8_0"]


def reference_tensor(name, array, kind, spec):
    """What the file should hold for one HF tensor: Q/K rows interleaved, then quantized by gguf."""
    heads = {"q_proj": spec["num_attention_heads"], "k_proj": spec["num_key_value_heads"]}
    proj = name.split(".")[-2]
    array = np.asarray(array, np.float32)
    if proj in heads:
        array = rope_rows_from_hf(array, heads[proj])
    qtype = gguf.GGMLQuantizationType[kind if array.ndim == 2 else "F32"]
    return gguf.quants.dequantize(gguf.quants.quantize(array, qtype), qtype).astype(np.float32)


@pytest.mark.parametrize("kind", list(TYPES))
def test_each_type_reads_back(kind, llama_dir, tmp_path):
    from pyllm import architectures
    f = convert(llama_dir, tmp_path / f"m-{kind}.gguf", kind.lower())
    config = load_config(llama_dir)
    spec = architectures.spec_from_hf(config)
    weights = load_weights(llama_dir)
    m = f.metadata
    assert m["general.architecture"] == "llama" and m["general.file_type"] == TYPES[kind]
    assert (m["llama.block_count"], m["llama.embedding_length"], m["llama.feed_forward_length"]) == \
        (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"])
    assert (m["llama.attention.head_count"], m["llama.attention.head_count_kv"], m["llama.rope.dimension_count"]) == \
        (config["num_attention_heads"], config["num_key_value_heads"], config["hidden_size"] // config["num_attention_heads"])
    assert m["llama.context_length"] == config["max_position_embeddings"] and m["llama.vocab_size"] == 32000
    assert np.float32(m["llama.attention.layer_norm_rms_epsilon"]) == np.float32(config["rms_norm_eps"])
    assert m["tokenizer.chat_template"] == pyllm.Tokenizer.from_pretrained(llama_dir).chat_template
    assert set(f.tensors) == {_gguf_name(n) for n in weights}
    for name, array in weights.items():
        t = f.tensors[_gguf_name(name)]
        assert t.shape == array.shape
        assert t.type_name == (kind if array.ndim == 2 else "F32")
        got = f.dequantize(t.name)
        assert np.array_equal(got, reference_tensor(name, array, kind, spec)), name
        if kind == "F32" and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = spec["num_attention_heads"] if "q_proj" in name else spec["num_key_value_heads"]
            assert np.array_equal(rope_rows_to_hf(got, heads), array)
            assert not np.array_equal(got, array)  # the rows did move
    tok, ref = pyllm.Tokenizer.from_pretrained(str(tmp_path / f"m-{kind}.gguf")), pyllm.Tokenizer.from_pretrained(llama_dir)
    assert [tok.encode(t) for t in TEXTS] == [ref.encode(t) for t in TEXTS]
    assert (tok.bos_token_id, tok.eos_token_id, tok.vocab_size) == (ref.bos_token_id, ref.eos_token_id, 32000)


def test_rope_rows_from_hf_inverts_rope_rows_to_hf():
    rng = np.random.default_rng(0)
    for rows, heads in ((64, 4), (32, 2), (48, 3)):
        w = rng.standard_normal((rows, 8)).astype(np.float32)
        assert np.array_equal(rope_rows_to_hf(rope_rows_from_hf(w, heads), heads), w)
        assert not np.array_equal(rope_rows_from_hf(w, heads), w)
        b = rng.standard_normal(rows).astype(np.float32)
        assert np.array_equal(rope_rows_from_hf(rope_rows_to_hf(b, heads), heads), b)
    with pytest.raises(ValueError, match="heads"):
        rope_rows_from_hf(np.zeros((6, 2)), 4)


def test_convert_errors(llama_dir, tmp_path):
    out = tmp_path / "x.gguf"
    code, _, err = run_cli(["convert", llama_dir, str(out), "--type", "q5_k"])
    assert code == 2 and "--type" in err
    code, _, err = run_cli(["convert", str(tmp_path / "none"), str(out)])
    assert code == 3 and "model directory not found" in err and len(err.splitlines()) == 1
    bloom = tmp_path / "bloom"
    bloom.mkdir()
    (bloom / "config.json").write_text(json.dumps({"model_type": "bloom", "architectures": ["BloomForCausalLM"]}))
    code, _, err = run_cli(["convert", str(bloom), str(out)])
    assert code == 4 and "LLaMA-family models only" in err and len(err.splitlines()) == 1
    no_vocab = tmp_path / "no_vocab"
    no_vocab.mkdir()
    for name in ("config.json", "model.safetensors"):
        os.symlink(os.path.join(llama_dir, name), no_vocab / name)
    code, _, err = run_cli(["convert", str(no_vocab), str(out)])
    assert code == 4 and "no tokenizer.model or tokenizer.json" in err
    assert not any(p.endswith(".part") for p in os.listdir(tmp_path))
    out.write_bytes(b"keep")
    code, _, err = run_cli(["convert", llama_dir, str(out)])
    assert code == 4 and "--force" in err and out.read_bytes() == b"keep"


def test_convert_without_the_gguf_package_exit_5(llama_dir, tmp_path):
    blocker = tmp_path / "blocker" / "gguf"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named gguf')\n")
    path = os.pathsep.join([str(tmp_path / "blocker"), os.environ.get("PYTHONPATH", "")])
    code, _, err = run_cli(["convert", llama_dir, str(tmp_path / "y.gguf")], env={"PYTHONPATH": path})
    assert code == 5 and 'pip install "pyllm[convert]"' in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("kind, pre", [("gpt2", "gpt-2"), ("llama3", "llama-bpe")])
def test_byte_level_vocabulary(kind, pre, tmp_path):
    """A LLaMA with a byte-level tokenizer.json becomes a 'gpt2' vocabulary whose
    tokenizer.ggml.pre names the same split: the file encodes as the directory does."""
    from llama_reference import make_config, reference_model
    from tokenizer_json_builders import train_byte_level
    d = tmp_path / kind
    reference_model(make_config(vocab_size=3000, num_hidden_layers=1), seed=1).save_pretrained(d, safe_serialization=True)
    train_byte_level(kind, d / "tokenizer.json", vocab_size=3000)
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"}))
    f = convert(str(d), tmp_path / f"{kind}.gguf", "q8_0")
    assert f.metadata["tokenizer.ggml.model"] == "gpt2" and f.metadata["tokenizer.ggml.pre"] == pre
    ours, ref = pyllm.Tokenizer.from_pretrained(str(tmp_path / f"{kind}.gguf")), pyllm.Tokenizer.from_pretrained(str(d))
    texts = TEXTS + ["Hello world's 12345 tokens\n\n  spaced", "<|endoftext|> and <|begin_of_text|>"]
    assert [ours.encode(t) for t in texts] == [ref.encode(t) for t in texts]
    assert [ours.decode(ref.encode(t)) for t in texts] == [ref.decode(ref.encode(t)) for t in texts]
