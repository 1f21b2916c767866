"""Models from GGUF files: Model.from_pretrained / LLM on .gguf against the same weights loaded
another way.

- stories260K.gguf equals the llama2.c checkpoint of the same weights, bit for bit.
- Random LLaMA and BLOOM models written as llama.cpp's converter writes them (Q/K rows
  interleaved, BLOOM's fused qkv regrouped as [q; k; v]) equal the Hugging Face-named arrays of
  the same weights through Model.from_arrays, bit for bit (float32).
- The same models with their matrices in each ggml type: at dtype="float32" they equal their
  dequantized-float32 twin bit for bit (the dequantization, the layouts and the names are
  exact); at the file's default dtype they stay close to it (tolerances below).
"""
import os

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as GGML

import pyllm
from gguf_files import F16_FIELDS, random_tensor_bytes, write_gguf
from pyllm.llama2c import load_llama2c

LLAMA = dict(vocab_size=320, hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=64, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0)
BLOOM = dict(vocab_size=300, hidden_size=256, n_layer=2, n_head=4, layer_norm_epsilon=1e-5, seq_length=128)
IDS = [5, 17, 200, 3, 99, 140, 7, 250, 61, 12, 33, 180]
# Each type of the matrices and what the default dtype makes of it.
DEFAULT_DTYPE = {GGML.F32: "float32", GGML.F16: "bfloat16", GGML.BF16: "bfloat16", GGML.Q8_0: "int8",
                 GGML.Q4_0: "int4", GGML.Q4_1: "q4_1", GGML.Q5_0: "int8", GGML.Q5_1: "int8", GGML.Q4_K: "int8",
                 GGML.Q5_K: "int8", GGML.Q6_K: "int8"}
# Relative RMS error, RMS(logits - twin's) / std(twin's logits), at the default dtype. The
# default dtypes compute below float32: at decode the activations are quantized to 8 bits per block
# of 32 (ggml's Q8 scheme: ~1/254 relative per product), at prefill rounded to bf16 (2^-9), the KV
# cache is f16, and the types without a kernel of their own are re-quantized to Q8_0 (up to half a
# step of amax/127 per element). On these random models (weights scaled up so that errors grow
# through the layers) that measured 0.002-0.049 (the worst: Q5_0 and Q5_1, re-quantized, at decode);
# a wrong row order, name or dequantization moves the logits by about their whole spread (> 0.5,
# asserted for the Q/K rows below).
TOLERANCE = 0.08


def _normal(rng, shape, gain):
    return (rng.standard_normal(shape) * gain / np.sqrt(shape[-1])).astype(np.float32)


def llama_hf(rng, c=LLAMA, gain=2.0):
    d, ff, hd = c["hidden_size"], c["intermediate_size"], c["head_dim"]
    qw, kvw = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    w = {"model.embed_tokens.weight": rng.standard_normal((c["vocab_size"], d)).astype(np.float32),
         "model.norm.weight": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32),
         "lm_head.weight": _normal(rng, (c["vocab_size"], d), gain)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for name, shape in (("self_attn.q_proj", (qw, d)), ("self_attn.k_proj", (kvw, d)), ("self_attn.v_proj", (kvw, d)),
                            ("self_attn.o_proj", (d, qw)), ("mlp.gate_proj", (ff, d)), ("mlp.up_proj", (ff, d)),
                            ("mlp.down_proj", (d, ff))):
            w[p + name + ".weight"] = _normal(rng, shape, gain)
        for name in ("input_layernorm", "post_attention_layernorm"):
            w[p + name + ".weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
    return w


def llama_config(c=LLAMA, tied=False):
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "tie_word_embeddings": tied, **c}


def _interleave(w, heads):
    """convert_hf_to_gguf's permute of Q/K rows (HF rotate-half order -> GGUF's interleaved)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_LLAMA_NAMES = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
                "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                "mlp.down_proj": "ffn_down"}


def llama_gguf_tensors(hf, c=LLAMA):
    """{GGUF name: float32 array} as llama.cpp's converter writes an HF LLaMA."""
    out = {"token_embd.weight": hf["model.embed_tokens.weight"], "output_norm.weight": hf["model.norm.weight"]}
    if "lm_head.weight" in hf:
        out["output.weight"] = hf["lm_head.weight"]
    for name, array in hf.items():
        if name.startswith("model.layers."):
            layer, rest = name[len("model.layers."):].split(".", 1)
            module, part = rest.rsplit(".", 1)
            if module == "self_attn.q_proj":
                array = _interleave(array, c["num_attention_heads"])
            elif module == "self_attn.k_proj":
                array = _interleave(array, c["num_key_value_heads"])
            out[f"blk.{layer}.{_LLAMA_NAMES[module]}.{part}"] = array
    return out


def llama_metadata(c=LLAMA):
    a = "llama."
    return [(a + "context_length", c["max_position_embeddings"]), (a + "embedding_length", c["hidden_size"]),
            (a + "feed_forward_length", c["intermediate_size"]), (a + "block_count", c["num_hidden_layers"]),
            (a + "attention.head_count", c["num_attention_heads"]),
            (a + "attention.head_count_kv", c["num_key_value_heads"]), (a + "rope.dimension_count", c["head_dim"]),
            (a + "rope.freq_base", c["rope_theta"]), (a + "attention.layer_norm_rms_epsilon", c["rms_norm_eps"]),
            (a + "vocab_size", c["vocab_size"])]


def bloom_hf(rng, c=BLOOM, gain=2.0):
    d = c["hidden_size"]
    w = {"word_embeddings.weight": rng.standard_normal((c["vocab_size"], d)).astype(np.float32)}
    for name in ("word_embeddings_layernorm", "ln_f"):
        w[name + ".weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        w[name + ".bias"] = (0.1 * rng.standard_normal(d)).astype(np.float32)
    for i in range(c["n_layer"]):
        p = f"h.{i}."
        for name, shape in (("self_attention.query_key_value", (3 * d, d)), ("self_attention.dense", (d, d)),
                            ("mlp.dense_h_to_4h", (4 * d, d)), ("mlp.dense_4h_to_h", (d, 4 * d))):
            w[p + name + ".weight"] = _normal(rng, shape, gain)
            w[p + name + ".bias"] = (0.1 * rng.standard_normal(shape[0])).astype(np.float32)
        for name in ("input_layernorm", "post_attention_layernorm"):
            w[p + name + ".weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
            w[p + name + ".bias"] = (0.1 * rng.standard_normal(d)).astype(np.float32)
    return w


def bloom_config(c=BLOOM):
    return {"model_type": "bloom", "architectures": ["BloomForCausalLM"], **c}


_BLOOM_NAMES = {"input_layernorm": "attn_norm", "self_attention.query_key_value": "attn_qkv",
                "self_attention.dense": "attn_output", "post_attention_layernorm": "ffn_norm",
                "mlp.dense_h_to_4h": "ffn_up", "mlp.dense_4h_to_h": "ffn_down"}


def bloom_gguf_tensors(hf, c=BLOOM):
    """{GGUF name: float32 array} as llama.cpp's converter writes an HF BLOOM (qkv regrouped)."""
    d, heads = c["hidden_size"], c["n_head"]
    out = {"token_embd.weight": hf["word_embeddings.weight"]}
    for part in ("weight", "bias"):
        out["token_embd_norm." + part] = hf["word_embeddings_layernorm." + part]
        out["output_norm." + part] = hf["ln_f." + part]
    for name, array in hf.items():
        if name.startswith("h."):
            layer, rest = name[2:].split(".", 1)
            module, part = rest.rsplit(".", 1)
            if module == "self_attention.query_key_value":
                fused = array.reshape(heads, 3, d // heads, *array.shape[1:])
                array = np.concatenate([fused[:, j].reshape(d, *array.shape[1:]) for j in range(3)])
            out[f"blk.{layer}.{_BLOOM_NAMES[module]}.{part}"] = np.ascontiguousarray(array)
    return out


def bloom_metadata(c=BLOOM):
    a = "bloom."
    return [(a + "context_length", c["seq_length"]), (a + "embedding_length", c["hidden_size"]),
            (a + "feed_forward_length", 4 * c["hidden_size"]), (a + "block_count", c["n_layer"]),
            (a + "attention.head_count", c["n_head"]), (a + "attention.head_count_kv", c["n_head"]),
            (a + "attention.layer_norm_epsilon", c["layer_norm_epsilon"])]


def write(path, arch, metadata, tensors):
    """tensors: {name: float32 array, or (ggml type, raw uint8 rows)}."""
    listed = []
    for name, value in tensors.items():
        if isinstance(value, tuple):
            listed.append((name, value[1], value[0]))
        else:
            listed.append((name, np.ascontiguousarray(value, dtype=np.float32), None))
    return write_gguf(path, metadata, listed, arch=arch)


def blocks_like(rng, qtype, array):
    """array's matrix in ggml type qtype: quantized by the gguf package where it can, else (the
    K-quants) random valid blocks scaled to the array's spread. Returns (type, uint8 rows)."""
    if qtype in (GGML.Q4_K, GGML.Q5_K, GGML.Q6_K):
        rows, k = array.shape
        raw = random_tensor_bytes(rng, qtype, rows, k)
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        blocks = raw.reshape(-1, size)
        for at in F16_FIELDS[qtype]:  # small positive scales (Q6_K's int8 sub-scales are signed)
            blocks[:, at:at + 2] = np.full(len(blocks), 0.01, np.float16).view(np.uint8).reshape(-1, 2)
        scale = float(np.std(gguf.quants.dequantize(raw, qtype)))
        for at in F16_FIELDS[qtype]:
            old = blocks[:, at:at + 2].copy().view(np.float16).astype(np.float32).reshape(-1)
            blocks[:, at:at + 2] = (old * np.std(array) / scale).astype(np.float16).view(np.uint8).reshape(-1, 2)
        return qtype, raw
    return qtype, np.ascontiguousarray(gguf.quants.quantize(array, qtype)).view(np.uint8)


def _off_grid(qtype, raw):
    """Q4_0/Q4_1 blocks whose quants avoid 0 and 15 (nibble n -> 1 + 13n/15), so no block's extreme
    lies on the grid's end and quantizing their values again gives other blocks."""
    size = {GGML.Q4_0: 18, GGML.Q4_1: 20}[qtype]
    blocks = raw.reshape(-1, size).copy()
    q = blocks[:, size - 16:]
    lo, hi = q & 0x0F, q >> 4
    blocks[:, size - 16:] = (1 + lo * 13 // 15) | ((1 + hi * 13 // 15) << 4)
    return blocks.reshape(raw.shape)


def typed_files(tmp_path, rng, arch, qtype, off_grid=False):
    """(file with every matrix in qtype, its dequantized float32 twin)."""
    if arch == "llama":
        tensors, metadata = llama_gguf_tensors(llama_hf(rng)), llama_metadata()
    else:
        tensors, metadata = bloom_gguf_tensors(bloom_hf(rng)), bloom_metadata()
    typed, twin = {}, {}
    for name, array in tensors.items():
        if array.ndim == 2:
            typed[name] = blocks_like(rng, qtype, array)
            if off_grid:
                typed[name] = (qtype, _off_grid(qtype, typed[name][1]))
            twin[name] = gguf.quants.dequantize(typed[name][1], qtype).reshape(array.shape)
        else:
            typed[name] = twin[name] = array
    return (write(tmp_path / f"{arch}-{qtype.name}.gguf", arch, metadata, typed),
            write(tmp_path / f"{arch}-{qtype.name}-twin.gguf", arch, metadata, twin))


def _spread(a, b):
    """RMS(a - b) / std(b)."""
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.std(b))


# ---- stories260K ------------------------------------------------------------------------------

def test_stories260k_gguf_equals_the_llama2c_checkpoint(data_dir):
    folder = os.path.join(data_dir, "stories260K")
    model = pyllm.Model.from_pretrained(os.path.join(folder, "stories260K.gguf"))
    config, weights = load_llama2c(os.path.join(folder, "stories260K.bin"))
    reference = pyllm.Model.from_arrays(config, weights)
    assert model.dtype == "float32"  # an all-F32 file runs at float32
    ids = [1, 400, 30, 200, 7, 100, 311, 9, 54, 21]
    np.testing.assert_array_equal(model(ids), reference(ids))
    np.testing.assert_array_equal(model.generate(ids, max_new_tokens=40), reference.generate(ids, max_new_tokens=40))
    assert model.config["eos_token_id"] == 2 and model.config["bos_token_id"] == 1


def test_stories260k_llm_from_gguf_uses_the_file_tokenizer(data_dir):
    llm = pyllm.LLM(os.path.join(data_dir, "stories260K", "stories260K.gguf"))
    text = llm.generate("Once upon a time", max_new_tokens=30)
    assert isinstance(text, str) and len(text.split()) > 5


# ---- converter layouts, float32 ---------------------------------------------------------------

@pytest.mark.parametrize("tied", [False, True])
def test_llama_gguf_equals_its_hf_arrays(tmp_path, tied):
    hf = llama_hf(np.random.default_rng(1))
    if tied:
        del hf["lm_head.weight"]
    path = write(tmp_path / "llama.gguf", "llama", llama_metadata(), llama_gguf_tensors(hf))
    model = pyllm.Model.from_pretrained(path)
    reference = pyllm.Model.from_arrays(llama_config(tied=tied), hf)
    assert model.spec["tie_word_embeddings"] == tied
    np.testing.assert_array_equal(model(IDS), reference(IDS))
    # the Q/K un-permute matters: the rows as stored give other logits, by far
    unpermuted = {k: v for k, v in hf.items()}
    for i in range(LLAMA["num_hidden_layers"]):
        for proj, heads in (("q_proj", 4), ("k_proj", 2)):
            name = f"model.layers.{i}.self_attn.{proj}.weight"
            unpermuted[name] = np.ascontiguousarray(_interleave(hf[name], heads))
    wrong = pyllm.Model.from_arrays(llama_config(tied=tied), unpermuted)(IDS)
    assert _spread(wrong, reference(IDS)) > 0.5


def test_bloom_gguf_equals_its_hf_arrays(tmp_path):
    hf = bloom_hf(np.random.default_rng(2))
    path = write(tmp_path / "bloom.gguf", "bloom", bloom_metadata(), bloom_gguf_tensors(hf))
    model = pyllm.Model.from_pretrained(path)
    reference = pyllm.Model.from_arrays(bloom_config(), hf)
    np.testing.assert_array_equal(model(IDS), reference(IDS))
    np.testing.assert_array_equal(model.generate(IDS, max_new_tokens=16), reference.generate(IDS, max_new_tokens=16))


def test_rope_freqs_divide_the_frequencies(tmp_path):
    """Llama-3 files carry their rope scaling as rope_freqs (one factor per frequency): llama.cpp
    divides each rotary frequency by it. Factors of 1 change nothing; others equal a model whose
    Q/K see positions with those frequencies (checked against factors folded into rope_theta)."""
    hf = llama_hf(np.random.default_rng(3))
    tensors = llama_gguf_tensors(hf)
    half = LLAMA["head_dim"] // 2
    plain = pyllm.Model.from_pretrained(write(tmp_path / "a.gguf", "llama", llama_metadata(), tensors))
    ones = pyllm.Model.from_pretrained(write(tmp_path / "b.gguf", "llama", llama_metadata(),
                                             {**tensors, "rope_freqs.weight": np.ones(half, np.float32)}))
    np.testing.assert_array_equal(ones(IDS), plain(IDS))
    # theta^(2i/d) * f^(2i/d) = (theta f)^(2i/d): factors f^(2i/d) are the base theta * f
    f = 4.0
    factors = (f ** (np.arange(half) * 2 / LLAMA["head_dim"])).astype(np.float32)
    scaled = pyllm.Model.from_pretrained(write(tmp_path / "c.gguf", "llama", llama_metadata(),
                                               {**tensors, "rope_freqs.weight": factors}))
    base = pyllm.Model.from_arrays(llama_config() | {"rope_theta": LLAMA["rope_theta"] * f}, hf)
    np.testing.assert_allclose(scaled(IDS), base(IDS), atol=2e-4 * np.std(base(IDS)))
    assert _spread(scaled(IDS), plain(IDS)) > 0.05


# ---- every ggml type ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["llama", "bloom"])
@pytest.mark.parametrize("qtype", list(DEFAULT_DTYPE), ids=lambda t: t.name)
def test_each_type_runs_close_to_its_dequantized_twin(tmp_path, arch, qtype):
    path, twin_path = typed_files(tmp_path, np.random.default_rng(int(qtype) + 100), arch, qtype)
    twin = pyllm.Model.from_pretrained(twin_path)
    expected = twin(IDS)
    exact = pyllm.Model.from_pretrained(path, dtype="float32")
    np.testing.assert_array_equal(exact(IDS), expected)

    model = pyllm.Model.from_pretrained(path)
    assert model.dtype == DEFAULT_DTYPE[qtype]
    got = model(IDS)
    assert _spread(got, expected) < TOLERANCE
    # decode (one token at a time on the cache) takes the 8-bit-activation kernels
    cache = model.new_cache()
    steps = np.concatenate([model(IDS[i:i + 1], cache=cache) for i in range(len(IDS))])
    assert _spread(steps, expected) < TOLERANCE
    greedy = model.generate(IDS, max_new_tokens=8)
    assert len(greedy) == len(IDS) + 8


@pytest.mark.parametrize("qtype", [GGML.Q4_0, GGML.Q4_1], ids=lambda t: t.name)
def test_native_blocks_are_not_requantized(tmp_path, qtype):
    """Q4_0/Q4_1 blocks packed as they are give other logits than their dequantized values
    quantized again (which moves any block whose extreme value is not on the grid's end)."""
    path, twin_path = typed_files(tmp_path, np.random.default_rng(7), "llama", qtype, off_grid=True)
    dtype = DEFAULT_DTYPE[qtype]
    native = pyllm.Model.from_pretrained(path, lm_head_dtype="same")
    requantized = pyllm.Model.from_pretrained(twin_path, dtype=dtype, lm_head_dtype="same")
    assert native.dtype == requantized.dtype == dtype
    expected = pyllm.Model.from_pretrained(twin_path)(IDS)
    assert not np.array_equal(native(IDS), requantized(IDS))
    assert _spread(native(IDS), expected) < _spread(requantized(IDS), expected)


def test_dtype_asks_for_another_precision(tmp_path):
    path, _ = typed_files(tmp_path, np.random.default_rng(8), "llama", GGML.Q8_0)
    for dtype in ("float32", "bfloat16", "int4", "q4_1"):
        assert pyllm.Model.from_pretrained(path, dtype=dtype).dtype == dtype
    assert pyllm.Model.from_pretrained(path, dtype="auto").dtype == "int8"


def test_gguf_loads_are_memory_checked(tmp_path, monkeypatch):
    path, _ = typed_files(tmp_path, np.random.default_rng(9), "llama", GGML.Q4_K)
    monkeypatch.setenv("PYLLM_MEMORY_LIMIT", "1M")
    with pytest.raises(MemoryError, match="loading this model as int8"):
        pyllm.Model.from_pretrained(path)
