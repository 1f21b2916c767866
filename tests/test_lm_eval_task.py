"""The README's "Running lm-evaluation-harness" recipe, run as written: a local task YAML
(dataset_path: json, data_files under dataset_kwargs) and its jsonl in a folder, lm-eval's CLI with
--include_path, offline. The pyllm backend's results equal the hf backend's on the same tiny model,
and no device warning appears when no device was named. The README's "Running lm-evaluation-harness" copies TASK_YAML,
DOCS and the commands from here."""
import json
import os
import subprocess
import sys

import pytest

from conftest import child_environment
from llm_models import write_llama

TASK_YAML = """\
task: capitals
dataset_path: json
dataset_kwargs:
  data_files:
    test: capitals.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "Question: What is the capital of {{country}}?\\nAnswer:"
doc_to_choice: "{{choices}}"
doc_to_target: "{{answer}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""

DOCS = [
    {"country": "France", "choices": ["Paris", "Lyon", "Marseille"], "answer": 0},
    {"country": "Japan", "choices": ["Osaka", "Tokyo", "Kyoto"], "answer": 1},
    {"country": "Italy", "choices": ["Milan", "Naples", "Rome"], "answer": 2},
    {"country": "Canada", "choices": ["Ottawa", "Toronto", "Vancouver"], "answer": 0},
]
# No leading space in the choices: lm-eval puts target_delimiter (" ") between the question and
# each choice. (" Paris" would make "Answer:  Paris", two spaces, which transformers 5's LLaMA
# tokenizer encodes unlike SentencePiece, and pyllm, do.)

# The commands of the README, run in the folder that holds capitals.yaml and capitals.jsonl.
PYLLM_COMMAND = ["-m", "pyllm.lm_eval", "run", "--model", "pyllm", "--model_args", "pretrained={model}",
                 "--tasks", "capitals", "--include_path", ".", "--output_path", "results", "--log_samples"]
HF_COMMAND = ["-m", "lm_eval", "run", "--model", "hf", "--model_args", "pretrained={model},dtype=float32",
              "--device", "cpu", "--tasks", "capitals", "--include_path", ".", "--output_path", "results_hf",
              "--log_samples"]


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("task")
    (folder / "capitals.yaml").write_text(TASK_YAML)
    (folder / "capitals.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    model = write_llama(tmp_path_factory.mktemp("model"), data_dir, n_positions=512)
    return folder, model


def _run(folder, command, model):
    env = {**child_environment(), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, *(part.format(model=model) for part in command)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _results(folder, name):
    paths = [os.path.join(root, f) for root, _, files in os.walk(folder / name) for f in files
             if f.startswith("results_") and f.endswith(".json")]
    assert len(paths) == 1, paths
    with open(paths[0]) as f:
        return json.load(f)["results"]["capitals"]


def _samples(folder, name):
    paths = [os.path.join(root, f) for root, _, files in os.walk(folder / name) for f in files
             if f.startswith("samples_capitals")]
    assert len(paths) == 1, paths
    with open(paths[0]) as f:
        rows = sorted((json.loads(line) for line in f), key=lambda s: s["doc_id"])
    return [[float(r[0][0]) for r in row["resps"]] for row in rows]


@pytest.fixture(scope="module")
def runs(task_folder):
    folder, model = task_folder
    ours = _run(folder, PYLLM_COMMAND, model)
    _run(folder, HF_COMMAND, model)
    return folder, ours


def test_the_recipe_runs_and_equals_the_hf_backend(runs):
    folder, _ = runs
    ours, theirs = _results(folder, "results"), _results(folder, "results_hf")
    for metric in ("acc,none", "acc_norm,none"):
        assert ours[metric] == pytest.approx(theirs[metric], abs=1e-9), metric
    ours_ll, theirs_ll = _samples(folder, "results"), _samples(folder, "results_hf")
    assert len(ours_ll) == len(DOCS)
    for a, b in zip(ours_ll, theirs_ll):
        assert a == pytest.approx(b, rel=1e-4)
    assert len({round(x, 4) for row in ours_ll for x in row}) > len(DOCS)  # real, varied scores


def test_no_device_warning_when_none_was_named(runs):
    _, proc = runs
    assert "ignoring device" not in proc.stderr + proc.stdout
