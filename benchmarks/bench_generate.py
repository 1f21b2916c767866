"""Batched against sequential generation: 8 prompts as one left-padded batch against 8 calls of
one prompt each, same model, same options, alternating runs in one process.

    python benchmarks/bench_generate.py [--new 64] [--repeat 3] [--threads N]

The model is a random LLaMA of a realistic small shape (hidden 1024, 8 layers, 16 heads,
intermediate 2816, vocab 32000: ~170 M parameters, ~680 MB of f32 weights). Decoding one token
reads every weight once, so a batch of 8 rows shares each read eight ways: the batch should give
several times the tokens per second. Rows end on their own: with --eos, each row stops at a
different step (its own end token) and the batch drops it from the computation.
Greedy decoding; tokens/s counts generated tokens only (prefill included in the time).
"""
import argparse
import statistics
import time

import numpy as np

import pyllm

CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "hidden_size": 1024,
    "intermediate_size": 2816, "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 16,
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
}


def random_weights(config, seed=0):
    rng = np.random.default_rng(seed)
    d, ff, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]

    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * (1.5 / cols ** 0.5)).astype(np.float32)

    w = {"model.embed_tokens.weight": matrix(v, d) * 10, "model.norm.weight": np.ones(d, np.float32),
         "lm_head.weight": matrix(v, d)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            w[p + f"self_attn.{name}.weight"] = matrix(d, d)
        w[p + "mlp.gate_proj.weight"] = matrix(ff, d)
        w[p + "mlp.up_proj.weight"] = matrix(ff, d)
        w[p + "mlp.down_proj.weight"] = matrix(d, ff)
        w[p + "input_layernorm.weight"] = np.ones(d, np.float32)
        w[p + "post_attention_layernorm.weight"] = np.ones(d, np.float32)
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new", type=int, default=64, help="new tokens per prompt")
    ap.add_argument("--repeat", type=int, default=3, help="alternating rounds")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--eos", action="store_true", help="give each row an end token it meets at its own step")
    args = ap.parse_args()

    t0 = time.perf_counter()
    model = pyllm.Model.from_arrays(CONFIG, random_weights(CONFIG), n_threads=args.threads)
    print(f"model: random LLaMA "
          f"hidden {CONFIG['hidden_size']}, {CONFIG['num_hidden_layers']} layers, vocab {CONFIG['vocab_size']}; "
          f"built in {time.perf_counter() - t0:.1f} s, {model.n_threads} threads")

    rng = np.random.default_rng(1)
    lengths = [12, 30, 7, 21, 16, 9, 25, 14]
    prompts = [rng.integers(3, CONFIG["vocab_size"], size=n) for n in lengths]
    width = max(lengths)
    ids = np.zeros((8, width), np.int64)
    mask = np.zeros((8, width), np.int64)
    for r, p in enumerate(prompts):
        ids[r, width - len(p):] = p
        mask[r, width - len(p):] = 1

    eos = []
    if args.eos:  # each row's token at a different step of its free run becomes an end token
        free = [model.generate(p, max_new_tokens=args.new, eos_token_id=[]) for p in prompts]
        eos = sorted({int(f[len(p) + args.new * (r + 1) // 9]) for r, (p, f) in enumerate(zip(prompts, free))})
    kw = dict(max_new_tokens=args.new, eos_token_id=eos, pad_token_id=0)

    def batched():
        out = model.generate(ids, attention_mask=mask, return_dict_in_generate=True, **kw)
        return int(out.num_new_tokens.sum()), out

    def sequential():
        outs = [model.generate(p, return_dict_in_generate=True, **kw) for p in prompts]
        return sum(int(o.num_new_tokens) for o in outs), outs

    batched(), sequential()  # warm-up: primitives, page faults
    rates = {"batch of 8": [], "8 sequential": []}
    for _ in range(args.repeat):
        for name, fn in (("batch of 8", batched), ("8 sequential", sequential)):
            t = time.perf_counter()
            tokens, result = fn()
            rates[name].append(tokens / (time.perf_counter() - t))
            if name == "batch of 8":
                batch_out = result
            else:
                seq_out = result
    same = sum(np.array_equal(batch_out.sequences[r, width - len(p):width + int(seq_out[r].num_new_tokens)],
                              seq_out[r].sequences) for r, p in enumerate(prompts))
    for name, values in rates.items():
        print(f"{name:>13}: median {statistics.median(values):8.1f} tok/s   best {max(values):8.1f} tok/s   "
              f"({', '.join(f'{v:.1f}' for v in values)})")
    ratio = [b / s for b, s in zip(rates["batch of 8"], rates["8 sequential"])]
    print(f"batch / sequential: median {statistics.median(ratio):.2f}x (per round: "
          f"{', '.join(f'{x:.2f}' for x in ratio)}); rows identical to their single run: {same}/8; "
          f"new tokens per row: {batch_out.num_new_tokens.tolist()}")


if __name__ == "__main__":
    main()
