"""Decode speed against context length: tokens/s of greedy decoding after a prompt of 128 and of
2,000 tokens, for a random LLaMA of TinyLlama-1.1B's layer shape (hidden 2048, 32 heads, 4 KV
heads, MLP 5632, vocab 32000) with few layers, packed as float32 (f32 KV cache) and int8/int4
(16-bit KV cache), in alternating rounds.

    python benchmarks/bench_context.py                       # 4 layers, positions 128 and 2000
    python benchmarks/bench_context.py --kv-dtypes bfloat16,float16,float32 --dtypes int4
    perf record -g python benchmarks/bench_context.py --positions 2000 --dtypes int4 --rounds 3

Each round copies a cache holding the prefilled prompt and times --new-tokens single-token calls
through it (the prompt's prefill is not timed). "attention ms" is the step-time growth from the
shortest to each position (a lower bound on the time attention takes there, as attention over a
short context costs little); perf gives the full share (the kernels are pyllm_attention's
attend_* functions)."""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_dtypes import random_llama  # noqa: E402

import pyllm  # noqa: E402


def decode_seconds(model, base, first_token, new):
    """Seconds per single-token step over `new` greedy steps after the prefilled cache `base`."""
    cache = base.copy()
    token = first_token
    start = time.perf_counter()
    for _ in range(new):
        logits = model(np.array([token]), cache=cache, logits_to_keep=1)
        token = int(np.argmax(logits[0, -1]))
    return (time.perf_counter() - start) / new


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--positions", default="128,2000")
    ap.add_argument("--dtypes", default="float32,int8,int4")
    ap.add_argument("--kv-dtypes", default="default",
                    help="comma-separated KV cache types to compare per dtype (default: the model's rule)")
    args = ap.parse_args()
    config, weights = random_llama(2048, args.layers, 32, 4, 5632, 32000)
    positions = [int(p) for p in args.positions.split(",")]
    config["max_position_embeddings"] = max(positions) + args.new_tokens + 8
    kv_dtypes = [None if k == "default" else k for k in args.kv_dtypes.split(",")]
    variants = {}
    for dt in args.dtypes.split(","):
        for kv in kv_dtypes:
            options = {} if kv is None else {"kv_dtype": kv}
            model = pyllm.Model.from_arrays(config, weights, dtype=dt, n_threads=args.threads, **options)
            variants[f"{dt}/{model.kv_dtype}"] = model
    del weights
    rng = np.random.default_rng(1)
    prompts = {p: rng.integers(3, 32000, size=p) for p in positions}
    bases = {}
    for name, model in variants.items():  # prefill once; warm up primitives, scratch, page faults
        for p in positions:
            cache = model.new_cache(1, p + args.new_tokens + 1)
            model(prompts[p], cache=cache, logits_to_keep=1)
            bases[name, p] = cache
            decode_seconds(model, cache, 5, 2)
    times = {key: [] for key in bases}
    for _ in range(args.rounds):
        for name, model in variants.items():
            for p in positions:
                times[name, p].append(decode_seconds(model, bases[name, p], 5, args.new_tokens))
    print(f"LLaMA hidden 2048, {args.layers} layers, 32 heads / 4 KV heads, ffn 5632, vocab 32000; "
          f"{args.threads} threads; kernels: {pyllm._core.kernel_isa()}; {args.new_tokens} greedy tokens per "
          f"round; medians of {args.rounds} alternating rounds")
    print(f"{'dtype/kv':18} {'position':>8} {'tok/s':>8} {'ms/step':>8} {'growth ms':>10} {'vs first':>9}")
    for name in variants:
        first = statistics.median(times[name, positions[0]])
        for p in positions:
            t = statistics.median(times[name, p])
            print(f"{name:18} {p:8d} {1 / t:8.1f} {1e3 * t:8.2f} {1e3 * (t - first):10.2f} {first / t:9.2f}")


if __name__ == "__main__":
    main()
