"""Smoke tests of an installed pyllm wheel, run by .ci/run from outside the checkout in a fresh
venv that has no compiler (CC=false): the package imports from site-packages, its extension
searches no build path, one OpenMP runtime runs, oneDNN comes from its own wheel, the LICENSE
ships, the console script works, and stories260K tells run.c's greedy story.

    cd /somewhere/else && python -m pytest -q /path/to/smoke_installed.py   (PYLLM_TEST_DATA set)
"""
import os
import subprocess
import sys
from importlib import metadata

import pyllm
from pyllm.cli.info import openmp_runtimes

DATA = os.environ["PYLLM_TEST_DATA"]
STORIES = os.path.join(DATA, "stories260K")


def _dynamic_entries(path):
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    return [line.split(None, 2)[1:] for line in out.splitlines() if line.strip().startswith("0x")]


def test_imported_from_the_installed_wheel():
    assert os.path.dirname(pyllm.__file__).startswith(sys.prefix), pyllm.__file__
    assert "site-packages" in pyllm.__file__


def test_no_build_paths_in_runpath():
    core = pyllm._core.__file__
    entries = _dynamic_entries(core)
    paths = [value.split("[", 1)[1].rstrip("]") for kind, value in entries if kind in ("(RUNPATH)", "(RPATH)")]
    assert paths, "the extension has no RUNPATH: libdnnl.so.3 would not be found"
    for path in ":".join(paths).split(":"):
        assert path.startswith("$ORIGIN"), f"{core} searches {path}"
    needed = {value.split("[", 1)[1].rstrip("]") for kind, value in entries if kind == "(NEEDED)"}
    assert "libdnnl.so.3" in needed and "libgomp.so.1" in needed  # neither bundled: one copy of each


def test_onednn_from_its_own_wheel_and_one_openmp_runtime():
    requires = metadata.requires("pyllm")
    assert any(r.startswith("onednn-cpu-gomp") for r in requires), requires
    model = pyllm.Model.from_arrays(*_stories_arrays(), n_threads=2)
    model(list(range(1, 60)))
    maps = open("/proc/self/maps").read()
    dnnl = {line.split()[-1] for line in maps.splitlines() if line.endswith("libdnnl.so.3") or "libdnnl.so.3." in line}
    assert len(dnnl) == 1 and next(iter(dnnl)).startswith(sys.prefix), dnnl
    assert "pyllm.libs" not in maps
    assert len(openmp_runtimes()) == 1, openmp_runtimes()


def test_license_ships_in_the_wheel():
    files = [f for f in metadata.distribution("pyllm").files if os.path.basename(str(f)) == "LICENSE"]
    assert files, "no LICENSE in the installed distribution"
    text = files[0].read_text()
    assert text.startswith("MIT License") and "the pyllm developers" in text


def _stories_arrays():
    from pyllm.llama2c import load_llama2c
    config, weights = load_llama2c(os.path.join(STORIES, "stories260K.bin"))
    return config, weights


def test_stories260K_greedy_story():
    model = pyllm.Model.from_arrays(*_stories_arrays())
    tok = pyllm.Tokenizer.from_pretrained(os.path.join(STORIES, "stories260K.gguf"))
    out = model.generate([tok.bos_token_id], max_new_tokens=200)
    expected = open(os.path.join(STORIES, "expected_greedy_200steps.txt"), encoding="utf-8").read()
    assert tok.decode(out, skip_special_tokens=True).strip() == expected.strip()


def test_console_script():
    script = os.path.join(os.path.dirname(sys.executable), "pyllm")
    out = subprocess.run([script, "info"], capture_output=True, text=True, check=True).stdout
    assert f"oneDNN:        {pyllm.onednn_version()}" in out
    ids = subprocess.run([script, "tokenize", "-m", os.path.join(STORIES, "stories260K.gguf"), "Once upon a time"],
                         capture_output=True, text=True, check=True).stdout.split()
    tok = pyllm.Tokenizer.from_pretrained(os.path.join(STORIES, "stories260K.gguf"))
    assert [int(i) for i in ids] == tok.encode("Once upon a time")
    proc = subprocess.run([script, "generate", "-m", os.path.join(sys.prefix, "no-model"), "hi"],
                          capture_output=True, text=True)
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1
