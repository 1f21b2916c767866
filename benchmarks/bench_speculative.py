"""Speculative decoding on SmolLM2-135M-Instruct: the model in bfloat16 as the target, drafted
for by prompt lookup and by the same model in its 4-bit GGUF form (q4_1, the only real draft /
target pair available offline), against plain greedy decoding, alternating runs in one process.

    python benchmarks/bench_speculative.py [--new 160] [--rounds 3] [--threads 1]

Two tasks through the chat template: an edit of a given paragraph (the reply repeats most of the
prompt: prompt lookup's case) and a free story. Greedy, so every mode must give the plain text
(checked). Tokens/s counts generated tokens (prefill included); each mode's figure is the median
over rounds, and the ratio to plain is taken round by round (the host is shared). Acceptance:
kept drafts / drafted tokens. The "auto" modes stop speculating when the acceptance rate so far
says it is slower, from the costs each model measured once (printed).
"""
import argparse
import statistics
import time

import numpy as np

import pyllm
from pyllm import default_model

EDIT = ("Fix the spelling mistakes in this text and give back the whole corrected text, nothing else:\n\n"
        "The old lighthouse stood at the edge of the cliff for more then a hundred years. Every nigth its "
        "keeper climbed the narow stairs, lit the great lamp and watched the ships pass safely by. "
        "When the storms came, the light never failed, and the fishermen of the vilage trusted it "
        "more than they trusted the weather.")
FREE = "Write a short story about a fox who learns to play the violin."


def modes(draft):
    return {
        "plain": {},
        "lookup always": dict(prompt_lookup_num_tokens=10, speculative="always"),
        "lookup auto": dict(prompt_lookup_num_tokens=10),
        "draft always": dict(assistant_model=draft, num_assistant_tokens=5, speculative="always"),
        "draft auto": dict(assistant_model=draft, num_assistant_tokens=5),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new", type=int, default=160, help="max new tokens per reply")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    path = default_model.default_model_path()
    target = pyllm.LLM(path, dtype="bfloat16", n_threads=args.threads)
    draft = pyllm.Model.from_gguf(path, n_threads=args.threads)  # the file's own q4_1
    print(f"target {target.model.dtype}, draft {draft.dtype}; measured costs (s):")
    print("  target", {k: f"{v:.2e}" for k, v in target.model.speculation_costs.items()})
    print("  draft ", {k: f"{v:.2e}" for k, v in draft.speculation_costs.items()})
    tasks = {"edit": EDIT, "free": FREE}
    prompts = {name: target.tokenizer.encode(target.chat_prompt([{"role": "user", "content": text}]),
                                             add_special_tokens=False) for name, text in tasks.items()}
    results = {}
    for round_ in range(args.rounds):
        for task, ids in prompts.items():
            reference = None
            for mode, options in modes(draft).items():
                start = time.perf_counter()
                out = target.model.generate(np.asarray([ids]), max_new_tokens=args.new, return_dict_in_generate=True,
                                            **options)
                took = time.perf_counter() - start
                new = int(out.num_new_tokens[0])
                tokens = out.sequences[0, len(ids):len(ids) + new]
                if reference is None:
                    reference = tokens
                assert np.array_equal(tokens, reference), f"{task} / {mode}: the greedy text changed"
                row = results.setdefault((task, mode), {"tps": [], "ratio": [], "rate": None, "stop": None})
                row["tps"].append(new / took)
                row["ratio"].append((new / took) / results[(task, "plain")]["tps"][-1])
                if out.num_draft_tokens is not None:
                    row["rate"] = f"{int(out.num_accepted_tokens[0])}/{int(out.num_draft_tokens[0])}"
                    row["stop"] = int(out.speculation_stopped_at[0])
                row["new"] = new
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    print(f"\n| task | mode | new tokens | tokens/s (median) | vs plain (median of rounds) | accepted/drafted | "
          f"auto stopped at |")
    print("|---|---|---|---|---|---|---|")
    for (task, mode), row in results.items():
        stop = "" if row["stop"] is None else ("never" if row["stop"] < 0 else str(row["stop"]))
        print(f"| {task} | {mode} | {row['new']} | {statistics.median(row['tps']):.1f} | "
              f"{statistics.median(row['ratio']):.2f}x | {row['rate'] or ''} | {stop} |")
    target.close()
    draft.close()


if __name__ == "__main__":
    main()
