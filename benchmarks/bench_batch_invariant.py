"""What batch invariance costs: prefill and decode tokens/s of one random LLaMA loaded with and
without ``batch_invariant=True``, per dtype, in alternating rounds (medians).

    python benchmarks/bench_batch_invariant.py                         # hidden 1024, 8 layers, vocab 32000
    python benchmarks/bench_batch_invariant.py --dtypes float32 --rounds 9

Without the mode float32 runs oneDNN's GEMM (weights packed for it) and the other dtypes switch
from our decode kernels to oneDNN's bf16 GEMM above 8 rows; with it every linear layer runs our
own kernels, one path for every row count. Decode is batch 1 (and --batch rows of one batched
generate), prefill one prompt of --prefill tokens keeping the last position's logits."""
import argparse
import statistics
import time

import numpy as np

import pyllm
from bench_dtypes import decode_rate, prefill_rate, random_llama


def batch_decode_rate(model, prompts, new):
    start = time.perf_counter()
    out = model.generate(prompts, max_new_tokens=new, min_new_tokens=new, eos_token_id=[])
    seconds = time.perf_counter() - start
    assert out.shape[-1] == prompts.shape[1] + new
    return prompts.shape[0] * new / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--prefill", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args()
    config, weights = random_llama(args.hidden, args.layers, args.heads, args.kv_heads, args.ffn, args.vocab)
    runs = [(dt, inv) for dt in args.dtypes.split(",") for inv in (False, True)]
    models = {run: pyllm.Model.from_arrays(config, weights, dtype=run[0], n_threads=args.threads,
                                           batch_invariant=run[1]) for run in runs}
    del weights
    rng = np.random.default_rng(1)
    prompt = rng.integers(3, args.vocab, size=8)
    prompts = rng.integers(3, args.vocab, size=(args.batch, 8))
    long_prompt = rng.integers(3, args.vocab, size=args.prefill)
    figures = {run: {"decode": [], "batch": [], "prefill": []} for run in runs}
    for run in runs:  # warm up: primitives, scratch, page faults
        decode_rate(models[run], prompt, 4)
        prefill_rate(models[run], long_prompt)
    for _ in range(args.rounds):
        for run in runs:
            figures[run]["decode"].append(decode_rate(models[run], prompt, args.new_tokens))
            figures[run]["batch"].append(batch_decode_rate(models[run], prompts, args.new_tokens))
            figures[run]["prefill"].append(prefill_rate(models[run], long_prompt))
    print(f"LLaMA hidden {args.hidden}, {args.layers} layers, heads {args.heads}/{args.kv_heads}, ffn {args.ffn}, "
          f"vocab {args.vocab}; {args.threads} threads; kernels: {pyllm._core.kernel_isa()}; "
          f"medians of {args.rounds} alternating rounds")
    print(f"| dtype | batch_invariant | prefill {args.prefill} tok/s | decode tok/s | "
          f"decode x{args.batch} tok/s | MB |")
    print("|---|---|---|---|---|---|")
    for dt, inv in runs:
        f = {key: statistics.median(values) for key, values in figures[(dt, inv)].items()}
        base = {key: statistics.median(values) for key, values in figures[(dt, False)].items()}
        ratio = "" if not inv else " ({:.2f}x)"
        print(f"| {dt} | {inv} | {f['prefill']:.0f}{ratio.format(f['prefill'] / base['prefill'])} "
              f"| {f['decode']:.1f}{ratio.format(f['decode'] / base['decode'])} "
              f"| {f['batch']:.1f}{ratio.format(f['batch'] / base['batch'])} "
              f"| {models[(dt, inv)].weight_bytes / 1e6:.0f} |")


if __name__ == "__main__":
    main()
