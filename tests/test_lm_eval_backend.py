"""lm-evaluation-harness on pyllm against lm-eval's own hf backend (transformers) on the same
random model saved with save_pretrained: three small offline tasks written here as local JSON
files (multiple choice, rolling perplexity, generate_until). Every metric and every per-request
log-likelihood agrees within 1e-4 relative, and the generated texts are identical.

transformers' LlamaTokenizer built from tokenizer.model splits a run of two spaces differently
from sentencepiece (which pyllm matches): "is  Paris" gives [259, 2177, 275] there and
[29871, 3681] in sentencepiece. So the multiple-choice task joins context and choice with
target_delimiter "" (the choices carry their own leading space) and the texts hold no double
spaces; test_tokenizers_agree_on_the_texts checks the precondition.

The model comes from a factory (MODEL_FACTORIES) so that other architectures slot in: a factory
writes a complete model directory (config.json, model.safetensors, tokenizer files) and returns
nothing else."""
import json
import os
import shutil
import textwrap

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import lm_eval  # noqa: E402
import lm_eval.models  # noqa: E402,F401  (lm-eval's lazy registry of its own backends, hf among them)
from lm_eval.tasks import TaskManager  # noqa: E402

import pyllm  # noqa: E402
import pyllm.lm_eval  # noqa: E402,F401  (registers "pyllm")
import bloom_reference  # noqa: E402
import tokenizer_json_builders  # noqa: E402
from llama_reference import make_config, reference_model  # noqa: E402

REL = 1e-4

MC_DOCS = [
    {"question": "The capital of France is", "choices": [" Paris", " London", " a small green frog"], "answer": 0},
    {"question": "Water boils at one hundred degrees", "choices": [" Celsius", " Fahrenheit"], "answer": 0},
    {"question": "Question: What colour is the sky?\nAnswer:", "choices": [" blue", " red", " yellow", " green"],
     "answer": 0},
    {"question": "She opened the door and", "choices": [" walked in.", " flew away over the mountains.", " sat."],
     "answer": 2},
    {"question": "Two plus two equals", "choices": [" four", " five"], "answer": 0},
    # Longer than max_length (320 tokens) with its choices: both backends truncate from the left.
    {"question": "We kept on walking along the river bank. " * 45 + "At last we reached the", "choices": [" bridge", " old mill by the water"], "answer": 0},
]
PPL_DOCS = [
    {"text": "The quick brown fox jumps over the lazy dog. " * 40},
    {"text": "Once upon a time there was a little girl who lived in a village near the forest. "
             "Whenever she went out, the little girl wore a red riding cloak. " * 8},
    {"text": "Numbers like 12345 and 2024 appear in text, as do words such as encyclopedia and notwithstanding. " * 4},
]
GEN_DOCS = [
    {"prompt": "Once upon a time", "answer": " there"},
    {"prompt": "The meaning of life is", "answer": " 42"},
    {"prompt": "Q: Name a fruit.\nA:", "answer": " apple"},
    {"prompt": "In the beginning", "answer": " was"},
    # Longer than max_length - max_gen_toks (320 - 24): the context is cut from the left.
    {"prompt": "The rain fell all night over the quiet town. " * 40 + "In the morning", "answer": " the"},
]

TASKS = {
    "pyllm_test_mc": ("mc.jsonl", MC_DOCS, """
        output_type: multiple_choice
        target_delimiter: ""
        doc_to_text: "{{question}}"
        doc_to_choice: "{{choices}}"
        doc_to_target: "{{answer}}"
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
          - metric: acc_norm
            aggregation: mean
            higher_is_better: true
        """),
    "pyllm_test_ppl": ("ppl.jsonl", PPL_DOCS, """
        output_type: loglikelihood_rolling
        doc_to_text: ""
        doc_to_target: "{{text}}"
        metric_list:
          - metric: word_perplexity
          - metric: byte_perplexity
          - metric: bits_per_byte
        """),
    "pyllm_test_gen": ("gen.jsonl", GEN_DOCS, """
        output_type: generate_until
        doc_to_text: "{{prompt}}"
        doc_to_target: "{{answer}}"
        generation_kwargs:
          until: ["\\n", "."]
          max_gen_toks: 24
          do_sample: false
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
        """),
    # A stop string that random text hits, often inside a token: the text is cut there.
    "pyllm_test_gen_stop": ("gen.jsonl", GEN_DOCS, """
        output_type: generate_until
        doc_to_text: "{{prompt}}"
        doc_to_target: "{{answer}}"
        generation_kwargs:
          until: ["e", "o"]
          max_gen_toks: 16
          do_sample: false
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
        """),
}


def _write_tokenizer(directory, data_dir):
    shutil.copy(os.path.join(data_dir, "llama", "tokenizer.model"), os.path.join(directory, "tokenizer.model"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
                   "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "legacy": True,
                   "model_max_length": 1000000000000000019884624838656}, f)


def llama_factory(directory, data_dir):
    """A random 2-layer LLaMA over the 32,000-token LLaMA vocabulary; 512 positions leave room for
    the 256 tokens lm-eval reserves for generation plus the contexts."""
    config = make_config(vocab_size=32000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    hf = reference_model(config, seed=7, gain=2.0)
    hf.save_pretrained(directory, safe_serialization=True)
    _write_tokenizer(directory, data_dir)


def bloom_factory(directory, data_dir):
    """A random 2-layer BLOOM over a byte-level BPE tokenizer trained with BLOOM's exact pipeline
    (BLOOM's own 250k vocabulary cannot be had here); ALiBi has no position limit."""
    del data_dir
    path = tokenizer_json_builders.train_byte_level("bloom", os.path.join(directory, "tokenizer.json"))
    with open(path) as f:
        vocab_size = len(json.load(f)["model"]["vocab"])
    config = bloom_reference.make_config(vocab_size=vocab_size)
    hf = bloom_reference.reference_model(config, seed=7, gain=2.0)
    hf.save_pretrained(directory, safe_serialization=True)
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "BloomTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                   "unk_token": "<unk>", "pad_token": "<pad>", "padding_side": "left",
                   "add_prefix_space": False}, f)


MODEL_FACTORIES = {"llama": llama_factory, "bloom": bloom_factory}


@pytest.fixture(scope="module", params=sorted(MODEL_FACTORIES))
def model_dir(request, tmp_path_factory, data_dir):
    directory = str(tmp_path_factory.mktemp(f"model_{request.param}"))
    MODEL_FACTORIES[request.param](directory, data_dir)
    return directory


@pytest.fixture(scope="module")
def task_manager(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tasks")
    for name, (filename, docs, body) in TASKS.items():
        data = directory / filename
        data.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
        header = f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        (directory / f"{name}.yaml").write_text(header + textwrap.dedent(body))
    return TaskManager(include_path=str(directory), include_defaults=False)  # indexing the built-ins takes ~20 s


def _evaluate(backend, model_dir, task_manager, max_length):
    args = f"pretrained={model_dir},dtype=float32,max_length={max_length}"
    if backend == "pyllm":
        args += ",n_threads=2"
    return lm_eval.simple_evaluate(model=backend, model_args=args, tasks=sorted(TASKS), task_manager=task_manager,
                                   batch_size=2, device="cpu", log_samples=True, random_seed=0, numpy_random_seed=0,
                                   torch_random_seed=0, fewshot_random_seed=0)


@pytest.fixture(scope="module")
def results(model_dir, task_manager):
    """Both backends over every task; max_length 320 keeps 64 tokens of context for generation
    (lm-eval reserves 256), and the rolling texts (up to ~440 tokens) span two windows."""
    return {backend: _evaluate(backend, model_dir, task_manager, 320) for backend in ("pyllm", "hf")}


def test_tokenizers_agree_on_the_texts(model_dir):
    """Precondition of the comparison: transformers' tokenizer and pyllm's give the same ids."""
    from transformers import AutoTokenizer
    ours = pyllm.Tokenizer.from_pretrained(model_dir)
    theirs = AutoTokenizer.from_pretrained(model_dir)
    texts = [d["question"] + c for d in MC_DOCS for c in d["choices"]] + [d["text"] for d in PPL_DOCS] + \
        [d["prompt"] for d in GEN_DOCS]
    for text in texts:
        assert ours.encode(text) == theirs.encode(text), text


def _close(a, b):
    return abs(a - b) <= REL * max(abs(a), abs(b), 1e-12)


def test_every_metric_agrees(results):
    ours, theirs = results["pyllm"]["results"], results["hf"]["results"]
    assert set(ours) == set(theirs) == set(TASKS)
    compared = 0
    for task in TASKS:
        for key, value in theirs[task].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and "stderr" not in key:
                assert _close(ours[task][key], value), f"{task} {key}: pyllm {ours[task][key]} vs hf {value}"
                compared += 1
    assert compared >= 6


def _responses(result, task):
    return [sample["resps"] for sample in sorted(result["samples"][task], key=lambda s: s["doc_id"])]


def test_multiple_choice_loglikelihoods_agree(results):
    ours, theirs = _responses(results["pyllm"], "pyllm_test_mc"), _responses(results["hf"], "pyllm_test_mc")
    assert len(ours) == len(MC_DOCS)
    for doc_ours, doc_theirs in zip(ours, theirs):
        for (ll_ours, greedy_ours), (ll_theirs, greedy_theirs) in zip(
                (r[0] for r in doc_ours), (r[0] for r in doc_theirs)):
            assert _close(float(ll_ours), float(ll_theirs)), (ll_ours, ll_theirs)
            assert bool(greedy_ours) == bool(greedy_theirs)


def test_rolling_loglikelihoods_agree(results):
    ours, theirs = _responses(results["pyllm"], "pyllm_test_ppl"), _responses(results["hf"], "pyllm_test_ppl")
    assert len(ours) == len(PPL_DOCS)
    for a, b in zip(ours, theirs):
        assert _close(float(a[0][0] if isinstance(a[0], (list, tuple)) else a[0]),
                      float(b[0][0] if isinstance(b[0], (list, tuple)) else b[0]))


@pytest.mark.parametrize("task", ["pyllm_test_gen", "pyllm_test_gen_stop"])
def test_generated_texts_are_identical(results, task):
    ours, theirs = _responses(results["pyllm"], task), _responses(results["hf"], task)
    assert len(ours) == len(GEN_DOCS)
    assert ours == theirs
    # The comparison means something only if the model writes text.
    assert sum(len(r[0]) for r in ours) > 0


def test_stop_strings_cut_the_text(results):
    """Generations stopped by a stop string end before it (the comparison above covers that path)."""
    long_texts = [r[0][0] for r in _responses(results["pyllm"], "pyllm_test_gen")]
    cut_texts = [r[0][0] for r in _responses(results["pyllm"], "pyllm_test_gen_stop")]
    assert all("e" not in t and "o" not in t for t in cut_texts)
    assert sum(len(cut) < len(full) for cut, full in zip(cut_texts, long_texts)) >= 2


def test_backend_runs_with_torch_and_transformers_blocked(model_dir, isolated):
    """A child process whose imports of torch and transformers fail runs loglikelihood,
    loglikelihood_rolling and generate_until requests through the backend."""
    kind, message = isolated(f"""
        import importlib.abc, sys, types

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "transformers"):
                    raise ImportError(f"blocked import of {{name}}")
                return None

        sys.meta_path.insert(0, Block())
        import lm_eval
        import pyllm.lm_eval
        from lm_eval.api.registry import get_model
        lm = get_model("pyllm").create_from_arg_string("pretrained={model_dir},n_threads=2",
                                                       {{"batch_size": 2, "max_batch_size": None, "device": "cpu"}})
        req = lambda *args: types.SimpleNamespace(args=args)
        scores = lm.loglikelihood([req("The capital of France is", " Paris"), req("Two plus two", " equals four")])
        assert len(scores) == 2 and all(s[0] < 0 for s in scores), scores
        rolling = lm.loglikelihood_rolling([req("Once upon a time there was a dog.")])
        assert rolling[0] < 0, rolling
        texts = lm.generate_until([req("Once upon a time", {{"until": ["."], "max_gen_toks": 5}})])
        assert isinstance(texts[0], str)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
        assert not loaded, loaded
    """)
    assert kind is None, f"{kind}: {message}"


def test_python_m_pyllm_lm_eval_runs_the_cli(model_dir, task_manager, tmp_path):
    """`python -m pyllm.lm_eval` is lm-eval's CLI with the backend registered."""
    import subprocess
    import sys
    from conftest import child_environment
    include = task_manager.include_path if isinstance(task_manager.include_path, str) else task_manager.include_path[0]
    env = {**child_environment(), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "pyllm.lm_eval", "run", "--model", "pyllm", "--model_args",
                           f"pretrained={model_dir},max_length=320", "--tasks", "pyllm_test_mc",
                           "--include_path", str(include), "--output_path", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)  # `-m` puts the working folder first: not the source tree
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pyllm_test_mc" in proc.stdout and "acc" in proc.stdout


def test_batch_invariant_model_arg(model_dir):
    """model_args' batch_invariant=true loads the model in the mode (tests/test_batch_invariance.py)
    and leaves log-likelihoods the same at every batch size."""
    import types
    from lm_eval.api.registry import get_model
    req = lambda *args: types.SimpleNamespace(args=args)  # noqa: E731
    requests = [req("The capital of France is", " Paris"), req("Two plus two", " equals four"),
                req("A", " b"), req("Once upon a time there was", " a dog")]
    scores = []
    for batch_size in (1, 3):
        lm = get_model("pyllm").create_from_arg_string(f"pretrained={model_dir},batch_invariant=true",
                                                       {"batch_size": batch_size, "max_batch_size": None})
        assert lm.model.batch_invariant is True
        scores.append(lm.loglikelihood(requests))
    assert scores[0] == scores[1]
    plain = get_model("pyllm").create_from_arg_string(f"pretrained={model_dir}", {"batch_size": 1})
    assert plain.model.batch_invariant is False
    with pytest.raises(ValueError, match="batch_invariant"):
        get_model("pyllm").create_from_arg_string(f"pretrained={model_dir},batch_invariant=maybe", {})
