"""``pyllm bench``: prefill and decode speed of a model on this machine.

Each repeat is one greedy ``generate`` of exactly N new tokens (end tokens banned until then)
after a random prompt of P tokens; a streamer stamps the time of each step. Prefill is P tokens
over the time to the first new token (which includes sampling it), decode is the remaining
N - 1 tokens over the time they took. One untimed warm-up run goes first (caches, pages, thread
start-up); the medians of the repeats are printed.
"""
import statistics
import sys
import time

import numpy as np

from .commands import load_llm


class _Clock:
    """A streamer that notes when each put (the prompt, then each new token) happens."""

    def __init__(self):
        self.times = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def _one_run(model, prompt, new_tokens):
    clock = _Clock()
    start = time.perf_counter()
    model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, streamer=clock)
    steps = clock.times[1:]  # times[0] is the prompt, put before any work
    prefill = len(prompt) / (steps[0] - start)
    decode = (len(steps) - 1) / (steps[-1] - steps[0]) if len(steps) > 1 else float("nan")
    return prefill, decode


def run(args):
    llm = load_llm(args)
    model = llm.model
    if args.prompt_tokens + args.new_tokens > model.n_ctx:
        raise ValueError(f"{args.prompt_tokens} prompt + {args.new_tokens} new tokens exceed the context "
                         f"n_ctx={model.n_ctx}")
    if args.new_tokens < 2:
        raise ValueError("decode speed needs --new-tokens 2 or more")
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, model.vocab_size, size=args.prompt_tokens, dtype=np.int64)
    _one_run(model, prompt[:min(16, len(prompt))], 2)  # warm-up
    runs = [_one_run(model, prompt, args.new_tokens) for _ in range(args.repeats)]
    prefill = statistics.median(r[0] for r in runs)
    decode = statistics.median(r[1] for r in runs)
    sys.stdout.write(f"model:   {llm.model_dir} ({model.spec['architecture']}, {model.dtype}, "
                     f"{model.n_threads} threads)\n"
                     f"prefill: {prefill:.1f} tok/s ({args.prompt_tokens} tokens, median of {args.repeats})\n"
                     f"decode:  {decode:.1f} tok/s ({args.new_tokens} tokens after the prompt, batch 1, "
                     f"median of {args.repeats})\n")
