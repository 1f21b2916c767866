"""Shared fixtures: where the real test assets live, and running a snippet in its own process."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.environ.get("PYLLM_TEST_DATA", os.path.join(REPO, "..", "shared", "data"))


@pytest.fixture(scope="session")
def data_dir():
    """../shared/data (or $PYLLM_TEST_DATA). Its absence fails the test: these assets are the proof."""
    if not os.path.isdir(DATA_DIR):
        pytest.fail(f"test data not found at {DATA_DIR}: set PYLLM_TEST_DATA to the shared/data folder")
    return os.path.abspath(DATA_DIR)


_ISOLATED_PRELUDE = """
import json, sys, traceback
def _report(kind, message):
    sys.stdout.write("\\n__PYLLM_RESULT__" + json.dumps({{"kind": kind, "message": message}}) + "\\n")
try:
{body}
except BaseException as e:
    _report(type(e).__name__, str(e))
else:
    _report(None, "")
"""


def run_isolated(code, timeout=300, env=None):
    """Run code in a fresh interpreter; return (exception class name or None, message).

    A crash (segfault, abort) of the child fails the calling test instead of the whole run."""
    body = textwrap.indent(textwrap.dedent(code), "    ")
    proc = subprocess.run([sys.executable, "-c", _ISOLATED_PRELUDE.format(body=body)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=os.path.dirname(REPO))
    marker = "__PYLLM_RESULT__"
    if proc.returncode != 0 or marker not in proc.stdout:
        raise AssertionError(f"child process died (exit {proc.returncode}):\n"
                             f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.rsplit(marker, 1)[1].strip())
    return result["kind"], result["message"]


@pytest.fixture
def isolated():
    return run_isolated
