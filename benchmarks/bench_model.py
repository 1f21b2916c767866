"""Prefill and decode speed of pyllm's BLOOM against transformers, same random weights, same run.

    python benchmarks/bench_model.py [--layers 24] [--vocab 250880] [--prompt 128] [--new 32]
                                     [--repeat 3] [--threads 2]

The model has bloom-560m's shape (hidden 1024, 16 heads, 24 layers, vocab 250880) with random
f32 weights (about 2.2 GB in each engine; --layers / --vocab shrink it). Runs alternate between
the two engines and the best of N is kept, so both see the same minutes of a shared host; the
ratios are what to quote, not the absolute times. Prefill = one forward over --prompt tokens
(logits of every position, as model(ids) returns them); decode = greedy generation of --new
tokens after that prompt, per new token: (time to generate 1 + --new tokens - time to generate 1)
/ --new, so the prompt's cost cancels out.
"""
import argparse
import time

import numpy as np
import torch
from transformers import BloomConfig, BloomForCausalLM

import pyllm


def build(args):
    config = {"model_type": "bloom", "architectures": ["BloomForCausalLM"], "vocab_size": args.vocab,
              "n_embed": 1024, "n_layer": args.layers, "num_attention_heads": 16, "layer_norm_epsilon": 1e-5,
              "apply_residual_connection_post_layernorm": False, "bos_token_id": 1, "eos_token_id": 2,
              "pad_token_id": 3}
    torch.manual_seed(0)
    hf = BloomForCausalLM(BloomConfig(**config)).eval()  # transformers' own init (std 0.02)
    weights = {name: t.detach().numpy() for name, t in hf.state_dict().items()}
    model = pyllm.Model.from_arrays(config, weights, n_threads=args.threads)
    del weights
    return hf, model


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--vocab", type=int, default=250880)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    hf, model = build(args)
    ids = np.random.default_rng(0).integers(4, args.vocab, size=(1, args.prompt))
    ids_t = torch.as_tensor(ids)

    def hf_prefill():
        with torch.no_grad():
            hf(ids_t, use_cache=False)

    def hf_generate(n):
        with torch.no_grad():
            hf.generate(ids_t, attention_mask=torch.ones_like(ids_t), max_new_tokens=n,
                        min_new_tokens=n, do_sample=False, pad_token_id=3, eos_token_id=None)

    def ours_prefill():
        model(ids)

    def ours_generate(n):
        model.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=[])

    # Same tokens from both first (a sanity check, not a parity test: greedy may split on ties).
    with torch.no_grad():
        ref = hf.generate(ids_t, attention_mask=torch.ones_like(ids_t), max_new_tokens=8, do_sample=False,
                          pad_token_id=3, eos_token_id=None)[0, args.prompt:].numpy()
    ours = model.generate(ids, max_new_tokens=8, eos_token_id=[])[0, args.prompt:]
    print(f"first 8 greedy tokens agree: {np.array_equal(ref, ours)}")

    engines = {"pyllm": (ours_prefill, ours_generate), "transformers": (hf_prefill, hf_generate)}
    results = {name: {"prefill": [], "one": [], "many": []} for name in engines}
    for _ in range(args.repeat):  # alternate engines round by round
        for name, (prefill, generate) in engines.items():
            results[name]["prefill"].append(best(prefill, 1))
            results[name]["one"].append(best(lambda: generate(1), 1))
            results[name]["many"].append(best(lambda: generate(1 + args.new), 1))

    print(f"BLOOM shape: hidden 1024, 16 heads, {args.layers} layers, vocab {args.vocab}; "
          f"{args.threads} threads; prompt {args.prompt}, {args.new} new tokens; best of {args.repeat}")
    summary = {}
    for engine, r in results.items():
        prefill = min(r["prefill"])
        decode = max(min(r["many"]) - min(r["one"]), 1e-9) / args.new
        summary[engine] = (prefill, decode)
        print(f"  {engine:13s} prefill {prefill * 1e3:8.1f} ms ({args.prompt / prefill:7.1f} tok/s)   "
              f"decode {decode * 1e3:7.2f} ms/token ({1 / decode:6.1f} tok/s)")
    print(f"  pyllm / transformers speed: prefill {summary['transformers'][0] / summary['pyllm'][0]:.2f}x, "
          f"decode {summary['transformers'][1] / summary['pyllm'][1]:.2f}x")


if __name__ == "__main__":
    main()
