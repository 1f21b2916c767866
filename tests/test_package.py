"""The package imports from an installed location and reports its oneDNN."""
import os
import re
import subprocess
import sys

import pyllm
from conftest import child_environment


def test_version_and_onednn():
    assert re.fullmatch(r"\d+\.\d+\.\d+", pyllm.__version__)
    major, minor, _ = (int(x) for x in pyllm.onednn_version().split("."))
    assert (major, minor) >= (3, 0)


def test_imports_outside_checkout(tmp_path):
    out = subprocess.run([sys.executable, "-c", "import pyllm; print(pyllm.__version__, pyllm.onednn_version())"],
                         cwd=tmp_path, env=child_environment(), capture_output=True, text=True, check=True).stdout.split()
    assert out == [pyllm.__version__, pyllm.onednn_version()]


def test_thread_setting_roundtrip():
    before = pyllm._core.get_num_threads()
    try:
        pyllm._core.set_num_threads(1)
        assert pyllm._core.get_num_threads() == 1
    finally:
        pyllm._core.set_num_threads(before)


def test_data_dir_present(data_dir):
    assert os.path.exists(os.path.join(data_dir, "llama", "tokenizer.model"))
