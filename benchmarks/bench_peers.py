"""pyllm side by side with its peers, one run on one machine, at matched precision.

    python benchmarks/bench_peers.py --quick
    python benchmarks/bench_peers.py --shapes small,tinyllama,bloom,llama7b --rounds 3

Builds random-weight models of real shapes as Hugging Face directories (config.json +
model.safetensors), converts each with the peer's own tool (gguf.GGUFWriter + llama.cpp's
quantizer, CTranslate2's TransformersConverter, ONNX Runtime GenAI's model builder) and measures,
with 2 threads everywhere and every measurement in its own subprocess (so peak RSS is its own):

- prefill tok/s: a 512-token prompt to its first new token;
- decode tok/s at batch 1: 128 new tokens after a 128-token prompt, the first token's time
  (prefill) taken out: 127 / (best of 2 t(128 new) - best of 3 t(1 new));
- batch-8 decode tok/s: 8 prompts of 128 tokens, 128 new tokens each, the first token's time
  (the 8 prefills) taken out as for batch 1: 8 x 127 / (t(128 new) - t(1 new)); beside it the
  end-to-end figure, 8 x 128 / t(128 new), prefills included (llama-cpp-python has no batched
  generation: its 8 sequential calls, in both);
- load time and peak RSS (VmHWM) of the process.

pyllm and each peer run alternately (A B A B) and the table gives the median of the per-pair
ratios pyllm/peer. Beside each decode figure, its roofline: a bandwidth probe of our own (a
read loop, 2 threads, 1 GB buffer, best of 5, run just before each pair) divided by the bytes
read per token at that precision (weight matrices + KV cache). Generation never ends early:
every engine is told to ignore its end token and the number of tokens produced is checked.

Needs the `bench` extra (pip install '.[bench]'); engines whose package is missing are reported
as such. A C compiler makes the bandwidth probe (llama-cpp-python needs one to install anyway).
"""
import argparse
import ctypes
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- shapes

LLAMA_BASE = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "vocab_size": 32000,
    "attention_bias": False, "mlp_bias": False, "use_cache": True,
}


def llama_config(hidden, layers, heads, kv_heads, mlp, dtype="float32"):
    return dict(LLAMA_BASE, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                num_key_value_heads=kv_heads, intermediate_size=mlp, torch_dtype=dtype)


def bloom_config():
    path = os.path.join(HERE, "..", "..", "shared", "data", "bloom", "bloom-560m.config.json")
    for candidate in (os.environ.get("PYLLM_BLOOM_CONFIG"), path, "/work/shared/data/bloom/bloom-560m.config.json"):
        if candidate and os.path.exists(candidate):
            with open(candidate) as f:
                return dict(json.load(f), torch_dtype="float32")
    # bloom-560m's published shape, for a checkout without the shared data folder.
    return {"architectures": ["BloomForCausalLM"], "model_type": "bloom", "n_embed": 1024, "n_layer": 24,
            "num_attention_heads": 16, "vocab_size": 250880, "layer_norm_epsilon": 1e-5,
            "apply_residual_connection_post_layernorm": False, "bos_token_id": 1, "eos_token_id": 2,
            "pad_token_id": 3, "unk_token_id": 0, "torch_dtype": "float32"}


# name -> (config, what it is). llama7b is written in bf16 (13.5 GB, as such checkpoints ship) and
# run by pyllm's bf16/int8/int4 only: its f32 weights (27 GB) do not fit this machine.
SHAPES = {
    "small": (lambda: llama_config(1024, 8, 16, 4, 2816), "LLaMA 1024x8, 16/4 heads, MLP 2816"),
    "tinyllama": (lambda: llama_config(2048, 22, 32, 4, 5632), "LLaMA at TinyLlama-1.1B's shape"),
    "bloom": (bloom_config, "BLOOM at bloom-560m's shape"),
    "llama7b": (lambda: llama_config(4096, 32, 32, 32, 11008, dtype="bfloat16"), "LLaMA-7B's shape"),
}


def dims(config):
    """The few numbers every engine's shape depends on, for LLaMA and BLOOM configs alike."""
    if config["model_type"] == "bloom":
        d, heads = config["n_embed"], config["num_attention_heads"]
        return dict(arch="bloom", d=d, layers=config["n_layer"], heads=heads, kv_heads=heads,
                    head_dim=d // heads, ff=4 * d, vocab=config["vocab_size"])
    d, heads = config["hidden_size"], config["num_attention_heads"]
    return dict(arch="llama", d=d, layers=config["num_hidden_layers"], heads=heads,
                kv_heads=config.get("num_key_value_heads", heads), head_dim=d // heads,
                ff=config["intermediate_size"], vocab=config["vocab_size"])


def tensor_shapes(config):
    """HF tensor names and shapes, in the order they are written."""
    s = dims(config)
    d, ff, v, hd = s["d"], s["ff"], s["vocab"], s["head_dim"]
    out = []
    if s["arch"] == "llama":
        out.append(("model.embed_tokens.weight", (v, d)))
        for i in range(s["layers"]):
            p = f"model.layers.{i}."
            out += [(p + "input_layernorm.weight", (d,)),
                    (p + "self_attn.q_proj.weight", (s["heads"] * hd, d)),
                    (p + "self_attn.k_proj.weight", (s["kv_heads"] * hd, d)),
                    (p + "self_attn.v_proj.weight", (s["kv_heads"] * hd, d)),
                    (p + "self_attn.o_proj.weight", (d, s["heads"] * hd)),
                    (p + "post_attention_layernorm.weight", (d,)),
                    (p + "mlp.gate_proj.weight", (ff, d)),
                    (p + "mlp.up_proj.weight", (ff, d)),
                    (p + "mlp.down_proj.weight", (d, ff))]
        out += [("model.norm.weight", (d,)), ("lm_head.weight", (v, d))]
    else:
        out += [("word_embeddings.weight", (v, d)), ("word_embeddings_layernorm.weight", (d,)),
                ("word_embeddings_layernorm.bias", (d,))]
        for i in range(s["layers"]):
            p = f"h.{i}."
            out += [(p + "input_layernorm.weight", (d,)), (p + "input_layernorm.bias", (d,)),
                    (p + "self_attention.query_key_value.weight", (3 * d, d)),
                    (p + "self_attention.query_key_value.bias", (3 * d,)),
                    (p + "self_attention.dense.weight", (d, d)), (p + "self_attention.dense.bias", (d,)),
                    (p + "post_attention_layernorm.weight", (d,)), (p + "post_attention_layernorm.bias", (d,)),
                    (p + "mlp.dense_h_to_4h.weight", (ff, d)), (p + "mlp.dense_h_to_4h.bias", (ff,)),
                    (p + "mlp.dense_4h_to_h.weight", (d, ff)), (p + "mlp.dense_4h_to_h.bias", (d,))]
        out += [("ln_f.weight", (d,)), ("ln_f.bias", (d,))]  # lm_head tied to word_embeddings
    return out


def matrix_params(config):
    """Weights read per decoded token: every matrix but the embedding table (one row of it is read)
    and the lm_head (tied or not, it is read whole)."""
    s = dims(config)
    n = sum(int(np.prod(shape)) for name, shape in tensor_shapes(config)
            if len(shape) == 2 and "embed" not in name and "lm_head" not in name)
    return n + s["vocab"] * s["d"]


def random_tensor(name, shape, seed):
    """Deterministic per name: std 0.02 matrices, unit norm weights, zero biases, so activations stay
    in the range of a trained model's and every engine sees the same numbers."""
    if name.endswith(".bias"):
        return np.zeros(shape, np.float32)
    if len(shape) == 1:
        return np.ones(shape, np.float32)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)


def to_bf16_bits(x):
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    return ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)


def write_safetensors(path, config, seed, dtype):
    """Streams one tensor at a time into model.safetensors (the 7B shape would not fit in memory
    twice); the format is an 8-byte header length, a JSON header, then the raw little-endian data."""
    st_dtype, size = {"float32": ("F32", 4), "bfloat16": ("BF16", 2)}[dtype]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    shapes = tensor_shapes(config)
    for name, shape in shapes:
        n = int(np.prod(shape)) * size
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for name, shape in shapes:
            x = random_tensor(name, shape, seed)
            f.write((x if dtype == "float32" else to_bf16_bits(x)).tobytes())
    os.replace(tmp, path)


def write_tokenizer(model_dir, vocab):
    """A word-level tokenizer whose tokens are the ids' names: the peers' converters want one, and
    the benchmark feeds token ids, never text."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(3, vocab)]
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for i, t in enumerate(tokens[:3])],
           "normalizer": None, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": None,
           "decoder": None, "model": {"type": "WordLevel", "vocab": {t: i for i, t in enumerate(tokens)},
                                      "unk_token": "<unk>"}}
    with open(os.path.join(model_dir, "tokenizer.json"), "w") as f:
        json.dump(tok, f)
    with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                   "unk_token": "<unk>", "pad_token": "<unk>", "model_max_length": 2048}, f)


def ensure_hf(workdir, shape, seed=0):
    """The shape's HF directory, written once (kept while its config is unchanged)."""
    config = SHAPES[shape][0]()
    model_dir = os.path.join(workdir, shape, "hf")
    stamp = json.dumps([config, seed], sort_keys=True)
    stamp_path = os.path.join(model_dir, ".bench-stamp")
    if os.path.exists(stamp_path) and open(stamp_path).read() == stamp:
        return model_dir, config
    os.makedirs(model_dir, exist_ok=True)
    t0 = time.perf_counter()
    log(f"[{shape}] writing random weights to {model_dir}")
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    with open(os.path.join(model_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2, "do_sample": False}, f)
    write_tokenizer(model_dir, dims(config)["vocab"])
    write_safetensors(os.path.join(model_dir, "model.safetensors"), config, seed, config["torch_dtype"])
    with open(stamp_path, "w") as f:
        f.write(stamp)
    log(f"[{shape}] written in {time.perf_counter() - t0:.0f} s")
    return model_dir, config


# ---------------------------------------------------------------- engines and precisions

# engine -> its precisions, each with (precision class, bytes per weight of the matrices,
# bytes per KV-cache element) for the roofline. Classes pair a peer with pyllm's dtype.
ENGINES = {
    # pyllm's KV cache is f32 for float32 models and f16 for the others
    "pyllm": {"float32": ("f32", 4.0, 4), "bfloat16": ("bf16", 2.0, 2),
              "int8": ("int8", 34 / 32, 2), "int4": ("int4", 18 / 32, 2)},
    "llama.cpp": {"F32": ("f32", 4.0, 2), "BF16": ("bf16", 2.0, 2),
                  "Q8_0": ("int8", 34 / 32, 2), "Q4_0": ("int4", 18 / 32, 2)},
    "ctranslate2": {"float32": ("f32", 4.0, 4), "int8": ("int8", 1.0, 4)},
    # MatMulNBits: 4-bit weights and one f32 scale per block of 32
    "onnxruntime-genai": {"fp32": ("f32", 4.0, 4), "int4": ("int4", 0.5 + 4 / 32, 4)},
    "transformers": {"float32": ("f32", 4.0, 4), "bfloat16": ("bf16", 2.0, 2)},
}
PEERS = [e for e in ENGINES if e != "pyllm"]
CLASSES = ["f32", "bf16", "int8", "int4"]
PYLLM_DTYPE = {cls: p for p, (cls, _, _) in ENGINES["pyllm"].items()}
ALIASES = {"llamacpp": "llama.cpp", "llama-cpp-python": "llama.cpp", "ct2": "ctranslate2",
           "ort": "onnxruntime-genai", "ortgenai": "onnxruntime-genai", "onnxruntime_genai": "onnxruntime-genai",
           "hf": "transformers", "torch": "transformers"}


def supports(engine, shape, config):
    if shape == "llama7b":
        return engine == "pyllm"
    if engine == "onnxruntime-genai" and config["model_type"] == "bloom":
        return False  # its model builder has no BLOOM
    return True


def bytes_per_token(engine, precision, config, position):
    _, weight_bytes, kv_bytes = ENGINES[engine][precision]
    s = dims(config)
    kv = 2 * s["layers"] * s["kv_heads"] * s["head_dim"] * position * kv_bytes
    return matrix_params(config) * weight_bytes + kv


# ---------------------------------------------------------------- conversions (each peer's own tool)

def gguf_tokenizer(writer, config):
    """GPT-2-style BPE vocabulary of the same word-level tokens; ids are fed directly, so the one
    merge is there only because llama.cpp refuses a BPE vocabulary without merges."""
    import gguf
    vocab = dims(config)["vocab"]
    tokens = ["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(3, vocab)]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL] * (vocab - 3))
    writer.add_token_merges(["t 3"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(False)


def rope_interleave(w, n_heads):
    """HF's rotate-half row order -> GGUF's interleaved (pairs) order, per head."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def gguf_tensors(model_dir, config):
    """(gguf name, float32 array) for every tensor, in llama.cpp's names and layouts."""
    from safetensors import safe_open
    s = dims(config)
    with safe_open(os.path.join(model_dir, "model.safetensors"), framework="np") as f:
        get = f.get_tensor
        if s["arch"] == "llama":
            yield "token_embd.weight", get("model.embed_tokens.weight")
            for i in range(s["layers"]):
                p, b = f"model.layers.{i}.", f"blk.{i}."
                yield b + "attn_norm.weight", get(p + "input_layernorm.weight")
                yield b + "attn_q.weight", rope_interleave(get(p + "self_attn.q_proj.weight"), s["heads"])
                yield b + "attn_k.weight", rope_interleave(get(p + "self_attn.k_proj.weight"), s["kv_heads"])
                yield b + "attn_v.weight", get(p + "self_attn.v_proj.weight")
                yield b + "attn_output.weight", get(p + "self_attn.o_proj.weight")
                yield b + "ffn_norm.weight", get(p + "post_attention_layernorm.weight")
                yield b + "ffn_gate.weight", get(p + "mlp.gate_proj.weight")
                yield b + "ffn_up.weight", get(p + "mlp.up_proj.weight")
                yield b + "ffn_down.weight", get(p + "mlp.down_proj.weight")
            yield "output_norm.weight", get("model.norm.weight")
            yield "output.weight", get("lm_head.weight")
        else:
            d, heads, hd = s["d"], s["heads"], s["head_dim"]
            emb = get("word_embeddings.weight")
            yield "token_embd.weight", emb
            yield "token_embd_norm.weight", get("word_embeddings_layernorm.weight")
            yield "token_embd_norm.bias", get("word_embeddings_layernorm.bias")
            for i in range(s["layers"]):
                p, b = f"h.{i}.", f"blk.{i}."
                # HF fuses QKV per head ([head, q|k|v, head_dim]); llama.cpp wants all Q, then K, then V.
                qkv = get(p + "self_attention.query_key_value.weight").reshape(heads, 3, hd, d)
                qkv_b = get(p + "self_attention.query_key_value.bias").reshape(heads, 3, hd)
                yield b + "attn_norm.weight", get(p + "input_layernorm.weight")
                yield b + "attn_norm.bias", get(p + "input_layernorm.bias")
                yield b + "attn_qkv.weight", np.ascontiguousarray(qkv.transpose(1, 0, 2, 3).reshape(3 * d, d))
                yield b + "attn_qkv.bias", np.ascontiguousarray(qkv_b.transpose(1, 0, 2).reshape(3 * d))
                yield b + "attn_output.weight", get(p + "self_attention.dense.weight")
                yield b + "attn_output.bias", get(p + "self_attention.dense.bias")
                yield b + "ffn_norm.weight", get(p + "post_attention_layernorm.weight")
                yield b + "ffn_norm.bias", get(p + "post_attention_layernorm.bias")
                yield b + "ffn_up.weight", get(p + "mlp.dense_h_to_4h.weight")
                yield b + "ffn_up.bias", get(p + "mlp.dense_h_to_4h.bias")
                yield b + "ffn_down.weight", get(p + "mlp.dense_4h_to_h.weight")
                yield b + "ffn_down.bias", get(p + "mlp.dense_4h_to_h.bias")
            yield "output_norm.weight", get("ln_f.weight")
            yield "output_norm.bias", get("ln_f.bias")
            yield "output.weight", emb  # tied: llama.cpp's converter writes it out as its own tensor


def write_gguf(model_dir, config, path, bf16):
    import gguf
    s = dims(config)
    arch = s["arch"]
    writer = gguf.GGUFWriter(path + ".part", arch)
    writer.add_context_length(2048)
    writer.add_embedding_length(s["d"])
    writer.add_block_count(s["layers"])
    writer.add_feed_forward_length(s["ff"])
    writer.add_head_count(s["heads"])
    writer.add_head_count_kv(s["kv_heads"])
    writer.add_vocab_size(s["vocab"])
    if arch == "llama":
        writer.add_rope_dimension_count(s["head_dim"])
        writer.add_rope_freq_base(config["rope_theta"])
        writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    else:
        writer.add_layer_norm_eps(config["layer_norm_epsilon"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if bf16 else gguf.LlamaFileType.ALL_F32)
    gguf_tokenizer(writer, config)
    for name, x in gguf_tensors(model_dir, config):
        if bf16 and x.ndim == 2:
            q = gguf.quants.quantize(np.ascontiguousarray(x, np.float32), gguf.GGMLQuantizationType.BF16)
            writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            writer.add_tensor(name, np.ascontiguousarray(x, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(path + ".part", path)


def quantize_gguf(src, dst, ftype_name):
    """llama.cpp's own quantizer with pure set: every matrix, the output one included, gets the type."""
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype_name}")
    params.pure = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), (dst + ".part").encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize({ftype_name}) returned {rc}")
    os.replace(dst + ".part", dst)


def artifact(engine, precision, shape, model_dir, config, workdir):
    """The file or directory this engine loads at this precision, converted once and cached."""
    base = os.path.join(workdir, shape)
    if engine in ("pyllm", "transformers"):
        return model_dir
    if engine == "llama.cpp":
        path = os.path.join(base, "gguf", f"model-{precision}.gguf")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            log(f"[{shape}] llama.cpp {precision}: converting")
            if precision in ("F32", "BF16"):
                write_gguf(model_dir, config, path, bf16=precision == "BF16")
            else:
                quantize_gguf(artifact(engine, "F32", shape, model_dir, config, workdir), path, precision)
        return path
    if engine == "ctranslate2":
        path = os.path.join(base, "ct2", precision)
        if not os.path.exists(os.path.join(path, "model.bin")):
            log(f"[{shape}] ctranslate2 {precision}: converting")
            run_tool([sys.executable, "-c", "import sys, ctranslate2; ctranslate2.converters.TransformersConverter("
                      "sys.argv[1]).convert(sys.argv[2], quantization=sys.argv[3], force=True)",
                      model_dir, path, precision])
        return path
    if engine == "onnxruntime-genai":
        path = os.path.join(base, "ortgenai", precision)
        config_path = os.path.join(path, "genai_config.json")
        if not os.path.exists(config_path):
            log(f"[{shape}] onnxruntime-genai {precision}: building")
            run_tool([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", model_dir, "-o", path,
                      "-p", precision, "-e", "cpu", "-c", os.path.join(base, "ortgenai", "cache")])
            with open(config_path) as f:
                genai = json.load(f)
            # its sessions' thread pools: 2 threads as every other engine
            genai["model"]["decoder"]["session_options"].update(intra_op_num_threads=2, inter_op_num_threads=1)
            with open(config_path, "w") as f:
                json.dump(genai, f, indent=2)
        return path
    raise ValueError(engine)


def run_tool(cmd):
    proc = subprocess.run(cmd, env=thread_env(2), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}... failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


# ---------------------------------------------------------------- the worker: one engine, one precision

def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PyllmRunner:
    def __init__(self, path, precision, threads):
        import pyllm
        # "pure", as the peers' files: every matrix, the lm_head included, in the named type
        # (pyllm's defaults keep a bf16 model's lm_head in f32 and an int4 one's in int8).
        self.model = pyllm.Model.from_pretrained(path, dtype=precision, n_threads=threads, lm_head_dtype="same")

    def generate(self, rows, n_new):
        ids = np.asarray(rows, np.int64)
        out = self.model.generate(ids, max_new_tokens=n_new, do_sample=False, eos_token_id=[], pad_token_id=0)
        return [list(r[ids.shape[1]:]) for r in out]


# What a build of llama-cpp-python on an AMX host needs: ggml's AMX backend (built by default there)
# segfaults in ggml_backend_amx_mul_mat on the first Q8_0 or Q4_0 product on some hosts
# (ggml-org/llama.cpp#20824, open), this one included; its AVX-512 paths (and weight repacking) stay.
LLAMA_CPP_WITHOUT_AMX = ("-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON "
                         "-DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON "
                         "-DGGML_AVX512_BF16=ON")


class LlamaCppRunner:
    def __init__(self, path, precision, threads):
        import llama_cpp
        if precision in ("Q8_0", "Q4_0") and b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info():
            raise RuntimeError("llama-cpp-python has ggml's AMX backend, which segfaults on Q8_0/Q4_0 here "
                               "(ggml-org/llama.cpp#20824): reinstall it without, CMAKE_ARGS=\""
                               + LLAMA_CPP_WITHOUT_AMX + "\" pip install --force-reinstall --no-deps "
                               "--no-cache-dir llama-cpp-python")
        self.llm = llama_cpp.Llama(path, n_ctx=1024, n_batch=512, n_ubatch=512, n_threads=threads,
                                   n_threads_batch=threads, verbose=False)

    def generate(self, rows, n_new):
        out = []
        for row in rows:  # no batched generation in llama-cpp-python: one call per prompt
            self.llm.reset()  # no prefix reuse from the last call
            new = []
            # generate() never stops on the end token by itself: it yields until we stop asking.
            for token in self.llm.generate(row, top_k=1, temp=0.0, reset=True):
                new.append(token)
                if len(new) == n_new:
                    break
            out.append(new)
        return out


class CTranslate2Runner:
    def __init__(self, path, precision, threads):
        import ctranslate2
        self.gen = ctranslate2.Generator(path, device="cpu", compute_type=precision, intra_threads=threads,
                                         inter_threads=1)
        vocab_path = os.path.join(path, "vocabulary.json")
        if os.path.exists(vocab_path):
            with open(vocab_path) as f:
                self.vocab = json.load(f)
        else:
            with open(os.path.join(path, "vocabulary.txt")) as f:
                self.vocab = f.read().split("\n")

    def generate(self, rows, n_new):
        starts = [[self.vocab[t] for t in row] for row in rows]
        res = self.gen.generate_batch(starts, max_length=n_new, min_length=n_new, sampling_topk=1,
                                      include_prompt_in_result=False, max_batch_size=len(rows))
        return [r.sequences_ids[0] for r in res]


class OrtGenaiRunner:
    def __init__(self, path, precision, threads):
        import onnxruntime_genai as og
        self.og = og
        self.model = og.Model(path)

    def generate(self, rows, n_new):
        og = self.og
        ids = np.asarray(rows, np.int32)
        total = ids.shape[1] + n_new
        params = og.GeneratorParams(self.model)
        # min_length = max_length: the end token is masked until the last step
        params.set_search_options(max_length=total, min_length=total, do_sample=False, batch_size=len(rows))
        gen = og.Generator(self.model, params)
        gen.append_tokens(ids)
        while not gen.is_done():
            gen.generate_next_token()
        return [list(gen.get_sequence(i)[ids.shape[1]:]) for i in range(len(rows))]


class TransformersRunner:
    def __init__(self, path, precision, threads):
        import torch
        import transformers
        torch.set_num_threads(threads)
        self.torch = torch
        self.model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, precision))
        self.model.eval()

    def generate(self, rows, n_new):
        torch = self.torch
        ids = torch.tensor(rows, dtype=torch.long)
        with torch.inference_mode():
            out = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_new,
                                      min_new_tokens=n_new, do_sample=False, pad_token_id=0)
        return [list(map(int, r[ids.shape[1]:])) for r in out]


RUNNERS = {"pyllm": PyllmRunner, "llama.cpp": LlamaCppRunner, "ctranslate2": CTranslate2Runner,
           "onnxruntime-genai": OrtGenaiRunner, "transformers": TransformersRunner}


def worker(job):
    """Loads one engine at one precision, measures, returns a dict (printed as JSON)."""
    vocab, threads = job["vocab"], job["threads"]
    rng = np.random.default_rng(7)
    prompt = lambda n: [int(t) for t in rng.integers(3, vocab, size=n)]  # noqa: E731
    p_prefill, p_decode = prompt(job["prefill"]), prompt(job["prompt"])
    batch = [prompt(job["prompt"]) for _ in range(job["batch"])]

    t0 = time.perf_counter()
    try:
        runner = RUNNERS[job["engine"]](job["path"], job["precision"], threads)
    except ValueError as e:  # pyllm: a dtype this build does not take yet
        if job["engine"] == "pyllm" and "dtype" in str(e):
            return {"status": "not available", "reason": str(e)}
        raise
    load_s = time.perf_counter() - t0
    rss_load = peak_rss_mb()

    tokens = []

    def timed(rows, n_new):
        t = time.perf_counter()
        out = runner.generate(rows, n_new)
        dt = time.perf_counter() - t
        got = [len(r) for r in out]
        if got != [n_new] * len(rows):
            raise RuntimeError(f"asked for {n_new} new tokens per row, got {got}")
        tokens[:] = [int(t) for t in out[0][:16]]
        return dt

    def past_first(rows, n_new, attempts):
        """(tokens per second past the first token, seconds of the whole call): the first token's
        time (the prompts' prefill) taken out, the best of 3 calls from the best of 2 whole ones.
        Best of both sides: a best first-token time taken from one lone whole call read the
        prefill's usual noise as decode time, which cut the rate of an engine whose decode is short
        beside its prefill (pyllm's batch-8 int4 on the small shape, 8 x 31 tokens after 8 x 128:
        1,276 tok/s in the table, 1,660-2,400 from the decode steps alone). On a noisy host a slow
        first-token run can leave nothing (or a few microseconds) past it, which would read as an
        absurd rate: measured again then, up to `attempts` times, and None (not in the medians) if
        it stays so."""
        for _ in range(attempts):
            first = min(timed(rows, 1) for _ in range(3))
            full = min(timed(rows, n_new) for _ in range(2))
            if full - first > 0.1 * full:
                return len(rows) * (n_new - 1) / (full - first), full
        return None, full

    timed([p_decode[:16]], 2)  # warm-up: first-call allocations, lazy initialisation
    prefill = min(timed([p_prefill], 1) for _ in range(2))
    decode_tps, _ = past_first([p_decode], job["new"], 3)
    result = {"status": "ok", "load_s": load_s, "rss_load_mb": rss_load, "tokens": list(tokens),
              "prefill_tps": job["prefill"] / prefill, "decode_tps": decode_tps}
    if job["batch_new"] > 1:
        # batch decode as batch-1 decode (here the first token's time is the 8 prefills, which
        # would otherwise dominate it), and the end-to-end rate beside it
        result["batch_tps"], full = past_first(batch, job["batch_new"], 1)
        result["batch_e2e_tps"] = job["batch"] * job["batch_new"] / full
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def thread_env(threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def run_worker(job, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)]
    try:
        proc = subprocess.run(cmd, env=thread_env(job["threads"]), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {timeout} s"}
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"status": "failed", "reason": f"exit {proc.returncode}: {tail}"[:300]}


# ---------------------------------------------------------------- bandwidth probe

PROBE_C = r"""
#define _POSIX_C_SOURCE 199309L
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A read loop: eight independent XOR chains so the compiler vectorises it and the loads,
   not the arithmetic, are the limit. */
typedef struct { const uint64_t *p; size_t n; uint64_t sink; } part_t;

static void *read_part(void *arg) {
    part_t *part = arg;
    uint64_t a[8] = {0};
    for (size_t i = 0; i + 8 <= part->n; i += 8)
        for (int k = 0; k < 8; k++) a[k] ^= part->p[i + k];
    part->sink = a[0] ^ a[1] ^ a[2] ^ a[3] ^ a[4] ^ a[5] ^ a[6] ^ a[7];
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best read bandwidth in GB/s over `reps` passes of `threads` threads over `bytes`. */
double probe(size_t bytes, int threads, int reps) {
    uint64_t *buf = NULL;
    if (threads < 1 || threads > 64 || posix_memalign((void **)&buf, 1 << 21, bytes)) return -1.0;
    memset(buf, 1, bytes);
    size_t words = bytes / 8, share = words / threads / 8 * 8;
    pthread_t tid[64];
    part_t parts[64];
    double best = 0.0;
    uint64_t sink = 0;
    for (int r = 0; r < reps; r++) {
        double t = now();
        for (int k = 0; k < threads; k++) {
            parts[k] = (part_t){buf + k * share, share, 0};
            pthread_create(&tid[k], NULL, read_part, &parts[k]);
        }
        for (int k = 0; k < threads; k++) {
            pthread_join(tid[k], NULL);
            sink ^= parts[k].sink;
        }
        double gbs = share * threads * 8.0 / (now() - t) / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return sink == 42 ? best + 1e-12 : best;  /* the sink keeps the reads alive */
}
"""


def build_probe(workdir):
    lib = os.path.join(workdir, "bwprobe.so")
    if not os.path.exists(lib):
        src = os.path.join(workdir, "bwprobe.c")
        with open(src, "w") as f:
            f.write(PROBE_C)
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not cc:
            return None
        proc = subprocess.run([cc, "-O3", "-march=native", "-shared", "-fPIC", "-pthread", src, "-o", lib],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            log(f"bandwidth probe did not compile: {proc.stderr[-500:]}")
            return None
    probe = ctypes.CDLL(lib).probe
    probe.restype, probe.argtypes = ctypes.c_double, [ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
    return probe


def bandwidth(probe, threads):
    """GB/s: 1 GB buffer, best of 5."""
    return probe(1 << 30, threads, 5) if probe else float("nan")


# ---------------------------------------------------------------- the run

def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pyllm_dtypes():
    """Which dtypes the importable pyllm accepts, tried on a tiny model (float32 always)."""
    try:
        import pyllm
    except ImportError:
        return set()
    config = llama_config(64, 1, 2, 2, 128)
    config["vocab_size"] = 64
    weights = {name: random_tensor(name, shape, 0) for name, shape in tensor_shapes(config)}
    ok = set()
    for dtype in ENGINES["pyllm"]:
        try:
            pyllm.Model.from_arrays(config, weights, dtype=dtype, n_threads=1)
            ok.add(dtype)
        except (ValueError, TypeError, NotImplementedError):
            pass
    return ok


def engine_available(engine):
    module = {"pyllm": "pyllm", "llama.cpp": "llama_cpp", "ctranslate2": "ctranslate2",
              "onnxruntime-genai": "onnxruntime_genai", "transformers": "transformers"}[engine]
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    return proc.returncode == 0


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def run(args):
    workdir = os.path.expanduser(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    probe = build_probe(workdir)
    engines = args.engines
    missing = [e for e in engines if not engine_available(e)]
    for e in missing:
        log(f"{e}: not installed, skipped (pip install '.[bench]')")
    engines = [e for e in engines if e not in missing]
    dtypes_ok = pyllm_dtypes() if "pyllm" in engines else set()
    log(f"pyllm dtypes available: {sorted(dtypes_ok)}")
    job_base = dict(threads=args.threads, prompt=args.prompt, new=args.new, prefill=args.prefill,
                    batch=args.batch)

    # results[(shape, engine, precision)] = list of worker dicts; pairs[(shape, peer, precision)] = list of
    # (pyllm result, peer result, bandwidth)
    results, pairs, notes, probes = {}, {}, {}, []
    for shape in args.shapes:
        config = SHAPES[shape][0]()
        # the 7B shape only for pyllm's compact dtypes: skip writing 13.5 GB when none is there
        if shape == "llama7b" and not (dtypes_ok - {"float32"}):
            for p in ENGINES["pyllm"]:
                if p != "float32":
                    notes[(shape, "pyllm", p)] = "not available"
            continue
        model_dir, config = ensure_hf(workdir, shape)
        vocab = dims(config)["vocab"]
        # what to run: every (peer, precision) against pyllm at the same class; pyllm alone where
        # no peer is selected (or on the 7B shape)
        plan = []
        for peer in engines:
            if peer == "pyllm" or not supports(peer, shape, config):
                continue
            for prec, (cls, _, _) in ENGINES[peer].items():
                plan.append((peer, prec, PYLLM_DTYPE[cls] if "pyllm" in engines else None))
        if "pyllm" in engines:
            paired = {p for _, _, p in plan}
            for prec in ENGINES["pyllm"]:
                if prec not in paired and not (shape == "llama7b" and prec == "float32"):
                    plan.append((None, None, prec))
        for prec in list(ENGINES["pyllm"]):
            if "pyllm" in engines and prec not in dtypes_ok:
                notes[(shape, "pyllm", prec)] = "not available"
        # conversions up front, so the timed rounds run back to back
        for peer, prec, _ in plan:
            if peer is None or (shape, peer, prec) in notes:
                continue
            try:
                artifact(peer, prec, shape, model_dir, config, workdir)
            except Exception as e:  # a peer's converter failing must not stop the others
                notes[(shape, peer, prec)] = f"conversion failed: {str(e).strip().splitlines()[-1][:200]}"
                log(f"[{shape}] {peer} {prec}: {notes[(shape, peer, prec)]}")
        batch_new = args.batch_new if shape != "llama7b" else 0  # 7B: load, prefill and decode only
        for rnd in range(args.rounds):
            for peer, prec, mine in plan:
                legs = []
                if mine is not None and (shape, "pyllm", mine) not in notes:
                    legs.append(("pyllm", mine, model_dir))
                if peer is not None and (shape, peer, prec) not in notes:
                    legs.append((peer, prec, artifact(peer, prec, shape, model_dir, config, workdir)))
                if not legs:
                    continue
                if rnd % 2 == 1:
                    legs.reverse()  # A B, then B A: neither side always runs first
                bw = bandwidth(probe, args.threads)
                probes.append(bw)
                got = {}
                for engine, p, path in legs:
                    job = dict(job_base, engine=engine, precision=p, path=path, vocab=vocab, batch_new=batch_new)
                    r = run_worker(job, args.timeout)
                    r["bandwidth"] = bw
                    log(f"[{shape} round {rnd + 1}] {engine} {p}: "
                        + (fmt_result(r) if r["status"] == "ok" else f"{r['status']}: {r.get('reason', '')}"))
                    if r["status"] != "ok":
                        notes[(shape, engine, p)] = r["status"] if r["status"] == "not available" \
                            else f"failed: {r.get('reason', '')}"
                        continue
                    results.setdefault((shape, engine, p), []).append(r)
                    got[engine] = r
                if peer is not None and "pyllm" in got and peer in got:
                    pairs.setdefault((shape, peer, prec), []).append((got["pyllm"], got[peer]))
    return summarize(args, results, pairs, notes, probes)


def fmt_result(r):
    decode = "unmeasured" if r["decode_tps"] is None else f"{r['decode_tps']:.1f}"
    s = f"load {r['load_s']:.1f} s, prefill {r['prefill_tps']:.0f}, decode {decode}"
    if "batch_tps" in r:
        batch = "unmeasured" if r["batch_tps"] is None else f"{r['batch_tps']:.1f}"
        s += f", batch-8 decode {batch} (end to end {r['batch_e2e_tps']:.1f})"
    return s + f" tok/s, peak RSS {r['peak_rss_mb']:.0f} MB, probe {r['bandwidth']:.1f} GB/s"


# ---------------------------------------------------------------- table and plot

def agreement(tokens, reference):
    """How many of the first greedy tokens equal the f32 reference's: every f32 engine should give
    all of them (the conversions are right); quantized ones drift apart after a few."""
    n = 0
    for a, b in zip(tokens, reference):
        if a != b:
            break
        n += 1
    return n


def summarize(args, results, pairs, notes, probes):
    rows = []
    for shape in args.shapes:
        config = SHAPES[shape][0]()
        ref = (results.get((shape, "pyllm", "float32")) or results.get((shape, "transformers", "float32")) or [{}])
        reference = ref[0].get("tokens")
        for engine in ["pyllm"] + PEERS:
            if engine not in args.engines:
                continue
            for prec, (cls, _, _) in ENGINES[engine].items():
                key = (shape, engine, prec)
                rs = results.get(key, [])
                if not rs and key not in notes:
                    continue
                row = {"shape": shape, "engine": engine, "precision": prec, "class": cls, "runs": len(rs),
                       "note": notes.get(key, "") if not rs else ""}
                if rs:
                    pos = args.prompt + args.new / 2  # mean KV length over the decode
                    per_token = bytes_per_token(engine, prec, config, pos)
                    row.update(
                        prefill=median([r["prefill_tps"] for r in rs]),
                        decode=median([r["decode_tps"] for r in rs]),
                        roofline=median([r["decode_tps"] / (r["bandwidth"] * 1e9 / per_token) for r in rs
                                         if r["bandwidth"] == r["bandwidth"] and r["decode_tps"] is not None]),
                        batch=median([r.get("batch_tps") for r in rs]),
                        batch_e2e=median([r.get("batch_e2e_tps") for r in rs]),
                        load=median([r["load_s"] for r in rs]),
                        rss=median([r["peak_rss_mb"] for r in rs]),
                        agree=None if not reference else
                        f"{min(agreement(r['tokens'], reference) for r in rs)}/{len(reference)}")
                ps = pairs.get(key, [])
                if ps:
                    row["ratio"] = {m: median([a[m] / b[m] for a, b in ps if a.get(m) and b.get(m)])
                                    for m in ("prefill_tps", "decode_tps", "batch_tps")}
                rows.append(row)
    return rows, probes


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def num(x, digits=0):
    return "–" if x is None else f"{x:,.{digits}f}"


def markdown(args, rows, probes):
    today = datetime.date.today().isoformat()
    bw = f"{min(probes):.1f}–{max(probes):.1f} GB/s (median {statistics.median(probes):.1f})" if probes and \
        probes[0] == probes[0] else "not measured (no C compiler)"
    lines = [f"# pyllm and its peers, side by side",
             "",
             f"Run {today} on {cpu_model()} ({os.cpu_count()} cores), {args.threads} threads everywhere; "
             f"bandwidth probe (read loop, {args.threads} threads, 1 GB, best of 5, before each pair): {bw}. "
             f"Random weights; prefill = {args.prefill}-token prompt to its first token; decode = batch 1, "
             f"{args.new} new tokens after {args.prompt}; batch-8 = {args.batch} x {args.batch_new} new tokens after "
             f"{args.prompt} each, generated tokens per second past the first token (decode), and all of them "
             f"over the whole call (end to end, the {args.batch} prefills included; llama.cpp: "
             f"{args.batch} sequential calls); {args.rounds} alternating round(s), medians. "
             f"Roofline % = decode / (probe / bytes read per token). Ratio = median over pairs of "
             f"pyllm / peer at the matched precision (prefill / decode / batch-8 decode). Greedy = leading new tokens "
             f"equal to the f32 reference's (pyllm float32, else transformers float32).",
             "",
             f"Command: `python benchmarks/bench_peers.py {' '.join(sys.argv[1:])}`".rstrip(),
             ""]
    versions = engine_versions(args.engines)
    if versions:
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    for shape in args.shapes:
        srows = [r for r in rows if r["shape"] == shape]
        if not srows:
            continue
        lines += [f"## {shape}: {SHAPES[shape][1]}", "",
                  "| engine | precision | prefill tok/s | decode tok/s | roofline % | batch-8 decode tok/s "
                  "| batch-8 end to end tok/s | load s | peak RSS MB | greedy "
                  "| pyllm / peer (prefill / decode / batch-8 decode) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in srows:
            if not r["runs"]:
                lines.append(f"| {r['engine']} | {r['precision']} | {r['note']} | | | | | | | | |")
                continue
            ratio = r.get("ratio")
            ratio_s = " / ".join("–" if ratio[m] is None else f"{ratio[m]:.2f}x"
                                 for m in ("prefill_tps", "decode_tps", "batch_tps")) if ratio else ""
            lines.append(f"| {r['engine']} | {r['precision']} | {num(r['prefill'])} | {num(r['decode'], 1)} | "
                         f"{num(None if r['roofline'] is None else 100 * r['roofline'])} | {num(r['batch'], 1)} | "
                         f"{num(r['batch_e2e'], 1)} | "
                         f"{num(r['load'], 1)} | {num(r['rss'])} | {r['agree'] or '–'} | {ratio_s} |")
        lines.append("")
    return "\n".join(lines)


def engine_versions(engines):
    from importlib import metadata
    names = {"pyllm": "pyllm", "llama.cpp": "llama-cpp-python", "ctranslate2": "ctranslate2",
             "onnxruntime-genai": "onnxruntime-genai", "transformers": "transformers"}
    out = {}
    for e in engines:
        try:
            out[names[e]] = metadata.version(names[e])
        except metadata.PackageNotFoundError:
            pass
    if "transformers" in engines:
        try:
            out["torch"] = metadata.version("torch")
        except metadata.PackageNotFoundError:
            pass
    return out


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shapes = sorted({r["shape"] for r in rows if r["runs"]}, key=list(SHAPES).index)
    if not shapes:
        return False
    engines = [e for e in ENGINES if any(r["engine"] == e and r["runs"] for r in rows)]
    metrics = [("decode", "decode tok/s, batch 1"), ("prefill", "prefill tok/s, 512 tokens"),
               ("batch", "batch-8 decode tok/s")]
    fig, axes = plt.subplots(len(shapes), len(metrics), figsize=(17, 3.8 * len(shapes)), squeeze=False)
    width = 0.8 / max(len(engines), 1)
    for i, shape in enumerate(shapes):
        for j, (metric, title) in enumerate(metrics):
            ax = axes[i][j]
            for k, engine in enumerate(engines):
                xs, ys = [], []
                for c, cls in enumerate(CLASSES):
                    for r in rows:
                        if r["shape"] == shape and r["engine"] == engine and r["class"] == cls and r["runs"] \
                                and r.get(metric) is not None:
                            xs.append(c + (k - (len(engines) - 1) / 2) * width)
                            ys.append(r[metric])
                if xs:
                    bars = ax.bar(xs, ys, width, label=engine)
                    ax.bar_label(bars, fmt="%.0f", fontsize=7)
            ax.set_xticks(range(len(CLASSES)), CLASSES)
            ax.set_title(f"{shape}: {title}")
            ax.set_ylabel("tokens/s")
            if i == 0 and j == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ---------------------------------------------------------------- command line

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small shape only, 2 rounds, batch-8 of 32 new tokens")
    ap.add_argument("--shapes", default=None, help=f"comma list of {','.join(SHAPES)} (default: all)")
    ap.add_argument("--engines", default=None, help=f"comma list of {','.join(ENGINES)} (default: all)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3; --quick 2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128, help="prompt tokens before decoding")
    ap.add_argument("--new", type=int, default=128, help="new tokens for decode and batch-8")
    ap.add_argument("--prefill", type=int, default=512, help="prompt tokens for the prefill figure")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batch-new", type=int, default=None,
                    help="new tokens per row for the batch-8 figure (default --new; --quick 32: llama.cpp's "
                         "8 sequential calls dominate the run's time)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per measurement subprocess")
    ap.add_argument("--workdir", default=os.path.join("~", ".cache", "pyllm-bench"),
                    help="models and converted files, written once")
    ap.add_argument("--out", default=os.path.join(HERE, "results"), help="where the table and plot go")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        try:
            print(json.dumps(worker(json.loads(args.worker))), flush=True)
        except Exception as e:  # reported in the table, not a crash of the whole run
            print(json.dumps({"status": "failed", "reason": f"{type(e).__name__}: {e}"[:300]}), flush=True)
        return

    args.shapes = (args.shapes.split(",") if args.shapes else ["small"] if args.quick else list(SHAPES))
    engines = args.engines.split(",") if args.engines else list(ENGINES)
    args.engines = [ALIASES.get(e.strip(), e.strip()) for e in engines]
    for bad in [s for s in args.shapes if s not in SHAPES] + [e for e in args.engines if e not in ENGINES]:
        ap.error(f"unknown shape or engine {bad!r}")
    if args.rounds is None:
        args.rounds = 2 if args.quick else 3
    if args.batch_new is None:
        args.batch_new = 32 if args.quick else args.new

    rows, probes = run(args)
    os.makedirs(args.out, exist_ok=True)
    stem = "peers-" + "-".join(args.shapes)
    table = markdown(args, rows, probes)
    with open(os.path.join(args.out, stem + ".md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, stem + ".json"), "w") as f:
        json.dump({"rows": rows, "probes": probes, "argv": sys.argv[1:]}, f, indent=1)
    if plot(rows, os.path.join(args.out, stem + ".png")):
        log(f"plot: {os.path.join(args.out, stem + '.png')}")
    print(table)


if __name__ == "__main__":
    main()
