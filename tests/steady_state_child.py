"""The child process of test_steady_state.py: random LLaMA and BLOOM models generating 40 tokens
(greedy, sampled with processors, a left-padded batch of 3 whose second row ends early), with
decode steps 2..32 marked from a stopping criterion, which the C loop calls after every step.

    python steady_state_child.py DTYPE MODE
    MODE "alloc":   run under LD_PRELOAD=alloc_counter.so; per-step allocation counts go into the
                    JSON result line.
    MODE "verbose": run under ONEDNN_VERBOSE=all; the parent reads oneDNN's lines between the
                    markers this writes.

Markers and results go through os.write(1) after flushing C stdio, so that they land in order
with oneDNN's verbose lines (printed through C stdio into the same pipe)."""
import ctypes
import json
import os
import sys

import numpy as np

import pyllm

PROMPT = 12  # over 8 rows: prefill's products (oneDNN's GEMM but for int8/int4 on AVX-512)
NEW_TOKENS = 40
FIRST, LAST = 2, 32  # the steady window: steps after FIRST up to LAST
PROBE_STEP = 10      # where the control run allocates and creates primitives on purpose
END_STEP = 12        # where the batch runs end their second row (the cache drops it)
OBJECTS = ("_core", "libdnnl")
HOWS = ("direct", "indirect")

libc = ctypes.CDLL(None)


def say(line):
    libc.fflush(None)
    os.write(1, (line + "\n").encode())


def llama(dtype, rng):
    """Hidden 256, 4 layers, MLP 1024, vocab 4096: 5.2M multiply-adds a token, above the 4M under
    which a call runs on one thread (threads_for in decoder.c), so decode uses both threads."""
    d, ff, vocab, layers, heads, kv_heads = 256, 1024, 4096, 4, 8, 4
    kv = d // heads * kv_heads
    config = {"model_type": "llama", "vocab_size": vocab, "hidden_size": d, "intermediate_size": ff,
              "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
              "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
              "bos_token_id": 1, "eos_token_id": 2}
    shapes = {"model.embed_tokens.weight": (vocab, d), "lm_head.weight": (vocab, d), "model.norm.weight": (d,)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kv, d),
                       p + "self_attn.v_proj.weight": (kv, d), p + "self_attn.o_proj.weight": (d, d),
                       p + "mlp.gate_proj.weight": (ff, d), p + "mlp.up_proj.weight": (ff, d),
                       p + "mlp.down_proj.weight": (d, ff), p + "input_layernorm.weight": (d,),
                       p + "post_attention_layernorm.weight": (d,)})
    return pyllm.Model.from_arrays(config, random_weights(shapes, rng), dtype=dtype)


def bloom(dtype, rng):
    """Hidden 256, 4 layers, vocab 8192: 5.2M multiply-adds a token, so two threads as well."""
    d, vocab, layers, heads = 256, 8192, 4, 8
    config = {"model_type": "bloom", "vocab_size": vocab, "n_embed": d, "n_layer": layers,
              "num_attention_heads": heads, "layer_norm_epsilon": 1e-5, "bos_token_id": 1,
              "eos_token_id": 2, "pad_token_id": 3}
    shapes = {"word_embeddings.weight": (vocab, d)}
    for part in ("weight", "bias"):
        shapes[f"word_embeddings_layernorm.{part}"] = (d,)
        shapes[f"ln_f.{part}"] = (d,)
    for i in range(layers):
        p = f"h.{i}."
        shapes.update({p + "self_attention.query_key_value.weight": (3 * d, d),
                       p + "self_attention.query_key_value.bias": (3 * d,),
                       p + "self_attention.dense.weight": (d, d), p + "self_attention.dense.bias": (d,),
                       p + "mlp.dense_h_to_4h.weight": (4 * d, d), p + "mlp.dense_h_to_4h.bias": (4 * d,),
                       p + "mlp.dense_4h_to_h.weight": (d, 4 * d), p + "mlp.dense_4h_to_h.bias": (d,)})
        for part in ("weight", "bias"):
            shapes[p + f"input_layernorm.{part}"] = (d,)
            shapes[p + f"post_attention_layernorm.{part}"] = (d,)
    return pyllm.Model.from_arrays(config, random_weights(shapes, rng), dtype=dtype)


def random_weights(shapes, rng):
    """Norm scales near 1, small biases, matrices with std 1.5 / sqrt(fan_in)."""
    out = {}
    for name, shape in shapes.items():
        noise = rng.standard_normal(shape, dtype=np.float32)
        if len(shape) == 2:
            out[name] = noise * np.float32(1.5 / shape[1] ** 0.5)
        elif "norm" in name and name.endswith("weight"):
            out[name] = 1 + np.float32(0.1) * noise
        else:
            out[name] = np.float32(0.1) * noise
    return out


class AllocCounter:
    """The LD_PRELOAD library's counters (tests/alloc_counter.c)."""

    def __init__(self, path):
        self.lib = ctypes.CDLL(path)  # the preloaded copy: same path, same object
        self.lib.alloc_counter_calls.restype = ctypes.c_long
        self.lib.alloc_counter_calls.argtypes = (ctypes.c_int, ctypes.c_int)
        self.lib.alloc_counter_summary.restype = ctypes.c_size_t
        self.lib.alloc_counter_summary.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
        found = self.lib.alloc_counter_arm()
        if found != 3:
            raise RuntimeError(f"alloc counter found objects mask {found}, expected 3 (_core and libdnnl)")

    def take(self):
        """Counts per object and way since the last take, and their summary; then zero them."""
        counts = {f"{o} {h}": self.lib.alloc_counter_calls(i, j)
                  for i, o in enumerate(OBJECTS) for j, h in enumerate(HOWS)}
        buf = ctypes.create_string_buffer(1 << 15)
        self.lib.alloc_counter_summary(buf, len(buf))
        self.lib.alloc_counter_reset()
        return counts, buf.value.decode(errors="replace")


def run(label, model, counter, ids, probe=None, end_row=None, **options):
    """Generate NEW_TOKENS tokens; in the stopping criterion (after step n) take the counts at
    FIRST (all before: prefill and the first steps) and at every step up to LAST, and end row
    end_row (if given) at END_STEP. probe: a float32 model whose 10-token call at PROBE_STEP
    creates matmul primitives on purpose (float32 whatever the dtype: int8 and int4 on AVX-512
    call oneDNN not at all)."""
    result = {"before": None, "steps": [], "summaries": []}
    width = ids.shape[1]

    def at_step(input_ids, scores):
        n = input_ids.shape[1] - width
        if probe is not None and n == PROBE_STEP:
            model.new_cache(1, 16)                 # allocates through the extension
            probe(np.arange(10, dtype=np.int64) + 7)  # a 10-token call: new matmul shapes
        if counter is not None and FIRST <= n <= LAST:
            counts, summary = counter.take()
            if n == FIRST:
                result["before"] = counts
            else:
                result["steps"].append(counts)
                if any(counts.values()):
                    result["summaries"].append(f"step {n}:\n{summary}")
        if n == FIRST:
            say(f"@@steady begin {label}")
        if n == LAST:
            say(f"@@steady end {label}")
        done = np.zeros(input_ids.shape[0], dtype=bool)
        if end_row is not None and n == END_STEP:
            done[end_row] = True
        return done

    say(f"@@steady start {label}")
    if counter is not None:
        counter.take()
    out = model.generate(ids, max_new_tokens=NEW_TOKENS, eos_token_id=[], stopping_criteria=at_step, **options)
    if out.shape[-1] != width + NEW_TOKENS:
        raise RuntimeError(f"{label}: generated {out.shape[-1] - width} tokens, expected {NEW_TOKENS}")
    return result


def main():
    dtype, mode = sys.argv[1], sys.argv[2]
    counter = AllocCounter(os.environ["PYLLM_ALLOC_COUNTER"]) if mode == "alloc" else None
    rng = np.random.default_rng(0)
    results = {}
    sampled = {"do_sample": True, "temperature": 0.9, "top_k": 50, "top_p": 0.9, "repetition_penalty": 1.3,
               "seed": 5}
    for name, build in (("llama", llama), ("bloom", bloom)):
        model = build(dtype, rng)
        vocab = model.vocab_size
        ids = rng.integers(4, vocab, size=(1, PROMPT))
        batch = rng.integers(4, vocab, size=(3, PROMPT))
        mask = np.ones_like(batch)
        for row, n in enumerate((8, 5, 2)):  # left padding
            batch[row, :PROMPT - n] = 0
            mask[row, :PROMPT - n] = 0
        results[f"{name} greedy"] = run(f"{name} greedy", model, counter, ids, do_sample=False)
        results[f"{name} sampled"] = run(f"{name} sampled", model, counter, ids, **sampled)
        results[f"{name} batch"] = run(f"{name} batch", model, counter, batch, end_row=1, attention_mask=mask,
                                       pad_token_id=0, do_sample=False)
        if name == "llama":
            probe = llama("float32", np.random.default_rng(1))
            results["llama control"] = run("llama control", model, counter, ids, probe=probe, do_sample=False)
    say("@@steady result " + json.dumps(results))


if __name__ == "__main__":
    main()
