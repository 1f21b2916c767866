"""Hugging Face LLaMA directory -> GGUF file, as llama.cpp reads it (``pyllm convert``).

Written with the ``gguf`` package's GGUFWriter and quantizers (ggml's own rounding), so a file
quantized once loads fast in pyllm and also runs in llama.cpp. What llama.cpp expects, and
this writes:

- its tensor names (``token_embd``, ``blk.N.attn_q``, ..., ``output``; no ``output`` when the
  lm_head is tied to the embeddings) and its ``llama.*`` hyperparameter keys;
- Q/K rows in the interleaved RoPE order ggml's "normal" RoPE rotates: within each head, HF's
  rotate-half rows i and i + head_dim/2 become rows 2i and 2i + 1 (``rope_rows_from_hf``, the
  inverse of pyllm.architectures.llama.rope_rows_to_hf);
- the vocabulary (pyllm/gguf_vocab.py): ``tokenizer.model`` as ``tokenizer.ggml.model = "llama"``,
  or a byte-level BPE ``tokenizer.json`` as ``"gpt2"`` with its ``tokenizer.ggml.pre``; the
  special ids, add_bos/eos and the chat template.

Types (``TYPES``): F32, F16, BF16, Q8_0, Q4_0, Q4_1 for the 2-D weights; norms and biases stay
F32 (as llama.cpp keeps them). A matrix whose input size is not a multiple of 32 cannot be
cut into blocks and is written F16 instead (llama.cpp's converter falls back the same way).
The ``gguf`` package is needed only here: ``pip install "pyllm[convert]"``.
"""
import os

import numpy as np

from . import architectures, checkpoint
from .gguf_vocab import add_vocabulary

__all__ = ["TYPES", "MissingDependency", "convert_to_gguf", "rope_rows_from_hf"]

# ggml type of the matrices -> llama.cpp's general.file_type for a file "mostly" of that type.
TYPES = {"F32": 0, "F16": 1, "BF16": 32, "Q8_0": 7, "Q4_0": 2, "Q4_1": 3}
_BLOCK = 32  # elements per block of Q8_0, Q4_0, Q4_1


class MissingDependency(ImportError):
    """An optional package this feature needs is not installed; the message says what to install."""


def _gguf():
    try:
        import gguf
    except ImportError:
        raise MissingDependency("converting to GGUF needs the 'gguf' package: pip install \"pyllm[convert]\" "
                                "(or pip install gguf)") from None
    return gguf


def rope_rows_from_hf(w, n_heads):
    """Rows of a Q or K projection (or bias) from HF's rotate-half order to GGUF's interleaved
    one: per head, rows (i, i + head_dim/2) -> (2i, 2i + 1). For K, n_heads is the KV heads."""
    w = np.asarray(w)
    if w.shape[0] % (2 * n_heads):
        raise ValueError(f"{w.shape[0]} rows do not split into {n_heads} heads of an even size")
    half = w.shape[0] // n_heads // 2
    return np.ascontiguousarray(w.reshape(n_heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def _gguf_name(name):
    """llama.cpp's name of a canonical (HF LLaMA) tensor name."""
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if name in fixed:
        return fixed[name]
    parts = name.split(".")  # model.layers.N.<module>.<sub>.(weight|bias)
    layer, module, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
    short = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
             "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}[module]
    return f"blk.{layer}.{short}.{kind}"


def _tensor_type(array, wanted):
    """The ggml type a tensor is written in: F32 for vectors, F16 for a matrix whose rows are not
    whole blocks of a block type, else the wanted type."""
    if array.ndim == 1:
        return "F32"
    if wanted.startswith("Q") and array.shape[-1] % _BLOCK:
        return "F16"
    return wanted


def _add_hyperparameters(writer, gguf, spec, file_type, name):
    writer.add_name(name)
    writer.add_context_length(spec["max_position_embeddings"])
    writer.add_embedding_length(spec["hidden_size"])
    writer.add_block_count(spec["num_hidden_layers"])
    writer.add_feed_forward_length(spec["intermediate_size"])
    writer.add_head_count(spec["num_attention_heads"])
    writer.add_head_count_kv(spec["num_key_value_heads"])
    writer.add_rope_dimension_count(spec["head_dim"])
    if spec["head_dim"] * spec["num_attention_heads"] != spec["hidden_size"]:
        writer.add_key_length(spec["head_dim"])
        writer.add_value_length(spec["head_dim"])
    writer.add_layer_norm_rms_eps(spec["norm_eps"])
    writer.add_rope_freq_base(spec["rope_theta"])
    if spec["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(spec["rope_factor"])
    elif spec["rope_type"] != "default":
        raise ValueError(f"convert does not write rope_scaling of type {spec['rope_type']!r} yet "
                         f"(only none and 'linear')")
    writer.add_vocab_size(spec["vocab_size"])
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def convert_to_gguf(model_dir, out_path, type="Q8_0"):
    """Write the LLaMA model of a Hugging Face directory to ``out_path`` as GGUF, its matrices in
    ``type`` (a key of TYPES, any case). Returns {GGUF tensor name: ggml type written}.

    The file appears only when complete (written beside it, then renamed). The converted
    tensors are held in memory until written: about the output file's size."""
    gguf = _gguf()
    wanted = str(type).upper()
    if wanted not in TYPES:
        raise ValueError(f"unknown GGUF type {type!r}; convert writes {', '.join(TYPES)}")
    config = checkpoint.load_config(model_dir)
    arch = architectures.hf_architecture(config)
    if arch != "llama":
        raise ValueError(f"convert writes LLaMA-family models only; {model_dir} is {arch!r}")
    spec = architectures.spec_from_hf(config)
    weights = checkpoint.load_weights(model_dir, bf16="float32")
    arrays = architectures.weights_from_hf(spec, weights)
    if spec["tie_word_embeddings"]:
        del arrays["lm_head.weight"]  # llama.cpp uses token_embd when output is absent

    writer = gguf.GGUFWriter(out_path + ".part", "llama")
    written = {}
    try:
        name = os.path.basename(os.path.normpath(model_dir))
        _add_hyperparameters(writer, gguf, spec, TYPES[wanted], name)
        add_vocabulary(writer, model_dir, spec["vocab_size"])
        heads = {"q_proj": spec["num_attention_heads"], "k_proj": spec["num_key_value_heads"]}
        for canonical, array in arrays.items():
            array = np.asarray(array, dtype=np.float32)
            proj = canonical.split(".")[-2]
            if proj in heads:
                array = rope_rows_from_hf(array, heads[proj])
            ggml_type = _tensor_type(array, wanted)
            qtype = gguf.GGMLQuantizationType[ggml_type]
            writer.add_tensor(_gguf_name(canonical), gguf.quants.quantize(array, qtype), raw_dtype=qtype)
            written[_gguf_name(canonical)] = ggml_type
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(out_path + ".part", out_path)
    except BaseException:
        writer.close()
        if os.path.exists(out_path + ".part"):
            os.remove(out_path + ".part")
        raise
    return written
