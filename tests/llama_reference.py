"""Random LLaMA models built twice: as transformers.LlamaForCausalLM (the reference) and as
pyllm.Model from the same state dict.

Weights are drawn per tensor from a generator seeded by (seed, tensor name), so two variants
share every tensor they have in common and differ only by what the variant changes; they are
scaled well above transformers' initialisation (std 0.02) so that attention is sharp and every
variant moves the logits far more than the parity tolerance."""
import zlib

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import pyllm

BASE_CONFIG = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 160,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def _fill(param, name, seed, gain):
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    noise = torch.randn(param.shape, generator=gen, dtype=torch.float32)
    if name.endswith("norm.weight"):
        param.copy_(1.0 + 0.3 * noise)
    elif name.endswith(".bias"):
        param.copy_(0.5 * noise)
    elif "embed_tokens" in name:
        param.copy_(0.3 * noise)
    else:
        param.copy_(noise * (gain / param.shape[1] ** 0.5))


def make_config(**overrides):
    config = dict(BASE_CONFIG)
    config.update(overrides)
    return config


def reference_model(config, seed=0, gain=1.5):
    """A fresh LlamaForCausalLM (float32, eval) with the scaled random weights of `seed`;
    matrices have std gain / sqrt(fan_in)."""
    hf = LlamaForCausalLM(LlamaConfig(**config)).eval()
    with torch.no_grad():
        for name, param in hf.named_parameters():
            _fill(param, name, seed, gain)
    return hf


def state_arrays(hf):
    return {name: t.detach().numpy().copy() for name, t in hf.state_dict().items()}


def make_pair(config, seed=0, gain=1.5, **model_kwargs):
    hf = reference_model(config, seed, gain)
    return hf, pyllm.Model.from_arrays(config, state_arrays(hf), **model_kwargs)


def reference_logits(hf, ids, attention_mask=None):
    """transformers' logits for int ids [batch, seq]; under a mask, the positions pyllm uses
    (cumsum(mask) - 1) are passed explicitly."""
    ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    kwargs = {}
    if attention_mask is not None:
        mask_t = torch.as_tensor(np.asarray(attention_mask, dtype=np.int64))
        positions = (mask_t.cumsum(-1) - 1).clamp(min=0)
        kwargs = {"attention_mask": mask_t, "position_ids": positions}
    with torch.no_grad():
        return hf(ids_t, **kwargs).logits.float().numpy()


def left_padded(rng, lengths, vocab, pad=0):
    """ids [len(lengths), max(lengths)] left-padded with `pad`, and their mask."""
    width = max(lengths)
    ids = np.full((len(lengths), width), pad, dtype=np.int64)
    mask = np.zeros((len(lengths), width), dtype=np.int64)
    for row, n in enumerate(lengths):
        ids[row, width - n:] = rng.integers(0, vocab, size=n)
        mask[row, width - n:] = 1
    return ids, mask
