"""The per-token cost of constrained decoding (regex= / json_schema=), against the same generation
unconstrained, on the default model (SmolLM2-135M-Instruct, Q4_1, vocabulary 49,152).

    python benchmarks/bench_constrained.py [--new 48] [--repeat 5] [--batch 1 4] [--threads N]

Every run generates exactly --new tokens per row (no end token, eos_token_id=[]), so the runs
differ only by the constraint; plain and constrained runs alternate in one process and the medians
are compared. The constraints: a regex that allows any text (every token allowed at every step:
the largest masks) and a JSON schema (a typical structured-output case; its rows end when the
object is complete, so its time is per token it generated). The time inside the two hooks is also
measured, split into the mask (llguidance), applying it (NumPy) and advancing the matchers.
"""
import argparse
import statistics
import time

import pyllm
from pyllm import constrained

SCHEMA = {"type": "array", "items": {"type": "object",
                                     "properties": {"name": {"type": "string", "maxLength": 12},
                                                    "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                                    "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]},
                                                             "maxItems": 3}},
                                     "required": ["name", "age", "tags"], "additionalProperties": False}}
ANY_TEXT = r"(?s:.)*"


class HookClock:
    """Seconds spent in Constraint.process (mask + apply) and Constraint.stop (advance)."""

    def __init__(self):
        self.process = self.stop = 0.0
        self.steps = 0
        self._process, self._stop = constrained.Constraint.process, constrained.Constraint.stop
        clock = self

        def process(self_, input_ids, scores):
            t = time.perf_counter()
            out = clock._process(self_, input_ids, scores)
            clock.process += time.perf_counter() - t
            clock.steps += 1
            return out

        def stop(self_, input_ids, scores):
            t = time.perf_counter()
            out = clock._stop(self_, input_ids, scores)
            clock.stop += time.perf_counter() - t
            return out

        constrained.Constraint.process, constrained.Constraint.stop = process, stop

    def close(self):
        constrained.Constraint.process, constrained.Constraint.stop = self._process, self._stop


def run(llm, ids, mask, new, **constraint):
    t = time.perf_counter()
    out = llm.model.generate(ids, attention_mask=mask, tokenizer=llm.tokenizer, max_new_tokens=new, eos_token_id=[],
                             return_dict_in_generate=True, **constraint)
    return time.perf_counter() - t, int(out.num_new_tokens.sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    llm = pyllm.LLM(n_threads=args.threads)
    print(f"model: {llm.model_dir} (vocab {llm.model.vocab_size}), {llm.model.n_threads} threads, "
          f"{args.new} new tokens a row, medians of {args.repeat} alternating rounds")
    prompts = [llm.chat_prompt([{"role": "user", "content": f"List {n + 2} people as JSON."}]) for n in range(8)]
    constraints = {"regex (any text)": {"regex": ANY_TEXT}, "json_schema": {"json_schema": SCHEMA}}
    run(llm, *llm.tokenizer(prompts[:1], return_tensors="np").values(), 4, **constraints["json_schema"])  # warm-up
    print(f"{'batch':>5} {'constraint':<18} {'plain ms/tok':>12} {'constr. ms/tok':>14} {'overhead ms/tok':>15} "
          f"{'mask+apply':>10} {'advance':>8}  (hook ms per step)")
    for batch in args.batch:
        enc = llm.tokenizer(prompts[:batch], padding=True, return_tensors="np")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        for name, constraint in constraints.items():
            plain, constr, clock_rows = [], [], []
            for _ in range(args.repeat):
                seconds, tokens = run(llm, ids, mask, args.new)
                plain.append(seconds / tokens)
                clock = HookClock()
                try:
                    seconds, tokens = run(llm, ids, mask, args.new, **constraint)
                finally:
                    clock.close()
                constr.append(seconds / tokens)
                clock_rows.append((clock.process / clock.steps, clock.stop / clock.steps))
            p, c = statistics.median(plain) * 1e3, statistics.median(constr) * 1e3
            hook_process = statistics.median(r[0] for r in clock_rows) * 1e3
            hook_stop = statistics.median(r[1] for r in clock_rows) * 1e3
            print(f"{batch:>5} {name:<18} {p:>12.2f} {c:>14.2f} {c - p:>15.2f} {hook_process:>10.2f} {hook_stop:>8.2f}")


if __name__ == "__main__":
    main()
