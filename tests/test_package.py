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


def test_missing_openmp_runtime_is_one_clear_import_error():
    from pyllm._loader import check_openmp
    try:
        check_openmp("libpyllm-absent-openmp.so.1")
    except ImportError as e:
        assert "libpyllm-absent-openmp.so.1" in str(e) and "apt-get install libgomp1" in str(e)
    else:
        raise AssertionError("a missing OpenMP runtime was not reported")


def test_exactly_one_openmp_runtime_after_computing(data_dir, isolated):
    # In a process of pyllm's own: the test suite's references (torch, sentencepiece) bring
    # their own copies of libgomp, which a user's process may have too.
    kind, message = isolated(f"""
        import pyllm
        from pyllm.cli.info import openmp_runtimes
        from pyllm.llama2c import load_llama2c
        model = pyllm.Model.from_arrays(*load_llama2c({data_dir!r} + "/stories260K/stories260K.bin"), n_threads=2)
        model(list(range(1, 60)))
        assert len(openmp_runtimes()) == 1, openmp_runtimes()
    """)
    assert kind is None, message
