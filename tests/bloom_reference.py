"""Random BLOOM models built twice: as transformers.BloomForCausalLM (the reference) and as
pyllm.Model from the same state dict.

Every variant keeps hidden size 120 (a multiple of each head count tested: 1, 3, 5, 8, 12), so
variants share every tensor by name (drawn from a generator seeded by (seed, name)) and differ
only in what the variant changes: the head split and ALiBi slopes, or the residual rule. Matrices
are scaled well above transformers' initialisation (std 0.02): with tied embeddings a weakly
weighted BLOOM only echoes its input token, and its variants would barely move the logits."""
import zlib

import numpy as np
import torch
from transformers import BloomConfig, BloomForCausalLM

import pyllm
from llama_reference import left_padded, state_arrays  # noqa: F401  (shared helpers, re-exported)

BASE_CONFIG = {
    "model_type": "bloom",
    "architectures": ["BloomForCausalLM"],
    "vocab_size": 160,
    "n_embed": 120,
    "n_layer": 2,
    "num_attention_heads": 8,
    "layer_norm_epsilon": 1e-5,
    "apply_residual_connection_post_layernorm": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 3,
}


def make_config(**overrides):
    config = dict(BASE_CONFIG)
    config.update(overrides)
    return config


def _fill(param, name, seed, gain, mlp_gain, bias_std):
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
    if "layernorm.weight" in name or name.endswith("ln_f.weight"):
        param.copy_(1.0 + 0.3 * noise)
    elif name.endswith(".bias"):
        param.copy_(bias_std * noise)
    elif "word_embeddings" in name:
        param.copy_(0.3 * noise)  # tied: it also sets the logits' scale (and their f32 rounding)
    else:
        g = mlp_gain if ".mlp." in name else gain
        param.copy_(noise * (g / param.shape[1] ** 0.5))


def reference_model(config, seed=0, gain=1.5, mlp_gain=None, bias_std=0.3):
    """A fresh BloomForCausalLM (float32, eval) with the scaled random weights of `seed`: block
    matrices have std gain / sqrt(fan_in) (mlp_gain for the MLP's, default gain), biases bias_std.

    For generation, large gains and small biases: biases (ln_f's above all) and the GeLU's
    positive mean add one direction to every position's logits, which makes a few tokens win
    everywhere; and once a token repeats, ALiBi (unlike RoPE) sees the same context again and
    greedy decoding locks onto it."""
    hf = BloomForCausalLM(BloomConfig(**config)).eval()
    with torch.no_grad():
        for name, param in hf.named_parameters():
            _fill(param, name, seed, gain, gain if mlp_gain is None else mlp_gain, bias_std)
    return hf


def make_pair(config, seed=0, gain=1.5, mlp_gain=None, bias_std=0.3, **model_kwargs):
    hf = reference_model(config, seed, gain, mlp_gain, bias_std)
    return hf, pyllm.Model.from_arrays(config, state_arrays(hf), **model_kwargs)


def reference_logits(hf, ids, attention_mask=None):
    """transformers' logits for int ids [batch, seq]; BLOOM derives ALiBi positions from the mask."""
    kwargs = {}
    if attention_mask is not None:
        kwargs["attention_mask"] = torch.as_tensor(np.asarray(attention_mask, dtype=np.int64))
    with torch.no_grad():
        return hf(torch.as_tensor(np.asarray(ids, dtype=np.int64)), **kwargs).logits.float().numpy()
