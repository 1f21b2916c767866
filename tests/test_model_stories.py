"""A real trained LLaMA: stories260K (llama2.c checkpoint) against run.c's own outputs —
logits at the first positions, 65 greedy tokens for five prompts, and the 200-step story
llama2.c's test suite expects."""
import json
import os
import struct

import numpy as np
import pytest

import pyllm


def _permute_to_rotate_half(w, n_heads):
    """llama2.c/Meta checkpoints rotate adjacent pairs (2i, 2i+1); Hugging Face layout rotates
    halves (i, i + d/2). Reorder each head's rows so the HF-layout RoPE computes the same."""
    rows, cols = w.shape
    head = rows // n_heads
    return w.reshape(n_heads, head // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def load_llama2c_v0(path):
    """(config dict, HF-named weights) from a llama2.c legacy v0 checkpoint (FORMATS.md §3)."""
    with open(path, "rb") as f:
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", f.read(28))
        data = np.frombuffer(f.read(), dtype="<f4")
    shared = vocab > 0
    vocab = abs(vocab)
    head = dim // n_heads
    kv_dim = n_kv * head
    at = 0

    def take(*shape):
        nonlocal at
        n = int(np.prod(shape))
        out = data[at:at + n].reshape(shape)
        at += n
        return out

    emb = take(vocab, dim)
    rms_att = take(n_layers, dim)
    wq, wk = take(n_layers, dim, dim), take(n_layers, kv_dim, dim)
    wv, wo = take(n_layers, kv_dim, dim), take(n_layers, dim, dim)
    rms_ffn = take(n_layers, dim)
    w1, w2, w3 = take(n_layers, hidden, dim), take(n_layers, dim, hidden), take(n_layers, hidden, dim)
    rms_final = take(dim)
    take(seq_len, head // 2)
    take(seq_len, head // 2)
    weights = {"model.embed_tokens.weight": emb, "model.norm.weight": rms_final,
               "lm_head.weight": emb if shared else take(vocab, dim)}
    for i in range(n_layers):
        p = f"model.layers.{i}."
        weights.update({
            p + "self_attn.q_proj.weight": _permute_to_rotate_half(wq[i], n_heads),
            p + "self_attn.k_proj.weight": _permute_to_rotate_half(wk[i], n_kv),
            p + "self_attn.v_proj.weight": wv[i], p + "self_attn.o_proj.weight": wo[i],
            p + "mlp.gate_proj.weight": w1[i], p + "mlp.down_proj.weight": w2[i], p + "mlp.up_proj.weight": w3[i],
            p + "input_layernorm.weight": rms_att[i], p + "post_attention_layernorm.weight": rms_ffn[i],
        })
    config = {"model_type": "llama", "vocab_size": vocab, "hidden_size": dim, "intermediate_size": hidden,
              "num_hidden_layers": n_layers, "num_attention_heads": n_heads, "num_key_value_heads": n_kv,
              "max_position_embeddings": seq_len, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "tie_word_embeddings": shared, "bos_token_id": 1, "eos_token_id": 2}
    return config, weights


def load_tok512_pieces(path, vocab):
    with open(path, "rb") as f:
        struct.unpack("<i", f.read(4))
        pieces = []
        for _ in range(vocab):
            _score, n = struct.unpack("<fi", f.read(8))
            pieces.append(f.read(n))
    return pieces


@pytest.fixture(scope="module")
def stories(data_dir):
    folder = os.path.join(data_dir, "stories260K")
    config, weights = load_llama2c_v0(os.path.join(folder, "stories260K.bin"))
    with open(os.path.join(folder, "run_c_reference_outputs.json")) as f:
        reference = json.load(f)
    return folder, config, pyllm.Model.from_arrays(config, weights), reference["cases"]


def test_logits_match_run_c(stories):
    _, _, model, cases = stories
    worst = 0.0
    for case in cases:
        tokens = (case["prompt_tokens"] + case["greedy_continuation"])[:3]
        ours = model(tokens)
        ref = np.array(case["logits_first_positions"], dtype=np.float32)
        scale = np.abs(ref).max(axis=-1, keepdims=True)
        worst = max(worst, float((np.abs(ours - ref) / scale).max()))
    assert worst <= 1e-5, f"max relative logit error {worst:.3g} vs run.c"


def test_greedy_continuations_match_run_c(stories):
    _, _, model, cases = stories
    for case in cases:
        prompt, expected = case["prompt_tokens"], case["greedy_continuation"]
        out = model.generate(prompt, max_new_tokens=len(expected), eos_token_id=[])
        assert out[len(prompt):].tolist() == expected, case["prompt"]
    # The batch of all five prompts, left-padded, gives the same continuations.
    width = max(len(c["prompt_tokens"]) for c in cases)
    ids = np.zeros((len(cases), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, c in enumerate(cases):
        ids[row, width - len(c["prompt_tokens"]):] = c["prompt_tokens"]
        mask[row, width - len(c["prompt_tokens"]):] = 1
    out = model.generate(ids, attention_mask=mask, max_new_tokens=65, eos_token_id=[])
    for row, c in enumerate(cases):
        assert out[row, width:].tolist() == c["greedy_continuation"], c["prompt"]


def test_two_hundred_step_story_matches_llama2c(stories):
    folder, config, model, _ = stories
    pieces = load_tok512_pieces(os.path.join(folder, "tok512.bin"), config["vocab_size"])
    # run.c: BOS at position 0, then 200 greedy steps, stopping at BOS (id 1).
    out = model.generate([1], max_new_tokens=200, eos_token_id=1)[1:].tolist()
    if out and out[-1] == 1:
        out = out[:-1]
    text = b""
    for i, tok in enumerate(out):
        piece = pieces[tok]
        if i == 0 and piece.startswith(b" "):
            piece = piece[1:]
        if piece.startswith(b"<0x") and piece.endswith(b">") and len(piece) == 6:
            piece = bytes([int(piece[3:5], 16)])
        text += piece
    with open(os.path.join(folder, "expected_greedy_200steps.txt"), "rb") as f:
        expected = f.read()
    assert text.decode("utf-8") == expected.decode("utf-8")
