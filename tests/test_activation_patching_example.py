"""examples/activation_patching.py on the tiny random LLaMA (test_examples.py runs every example
with --help, on a tiny model and on the default model): the PNG is written, and the effects mean
what they say: patching a position before the prompts differ changes nothing (the clean and
corrupted activations there are the same), patching the differing token does. Needs matplotlib
(the test extra)."""
import os
import subprocess
import sys

import numpy as np

from conftest import REPO, child_environment
from llm_models import write_llama


def test_patching_writes_a_png_and_the_effects_start_at_the_changed_token(tmp_path, data_dir):
    model_dir = write_llama(tmp_path / "tiny", data_dir, n_positions=128)
    out, effects = tmp_path / "patching.png", tmp_path / "effects.npy"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "examples", "activation_patching.py"), "--model",
                           model_dir, "--out", str(out), "--effects", str(effects)], capture_output=True, text=True,
                          timeout=600, env=child_environment(), cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "largest effect" in proc.stdout and str(out) in proc.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    effect = np.load(effects)
    assert effect.shape[0] == 1  # 2 layers: the residual stream after layer 0
    # BOS, "When", "Mary", "and", "John", ... are the same in both prompts up to the swapped name
    # (up to float rounding: the patched runs continue a cached prefix, the baseline is one pass)
    changed = int(np.flatnonzero(np.abs(effect[0]) > 1e-2)[0])
    assert changed >= 8, effect
    assert np.abs(effect[0, :changed]).max() < 1e-4, effect
