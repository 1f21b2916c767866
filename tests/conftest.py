"""Shared fixtures: where the real test assets live, and running a snippet in its own process."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest


def pytest_configure(config):
    """The Ctrl-C tests need Python's own SIGINT handler. A runner that starts the suite as a
    background job hands it SIGINT ignored (POSIX: an asynchronous list ignores SIGINT), and
    Python then installs no handler, so KeyboardInterrupt could never come: put it back."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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


def child_environment():
    """os.environ for a child process started in another folder: a relative PYTHONPATH (a
    development checkout) is made absolute so the child imports the same pyllm."""
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep))
    # The sanitizer job's children: ASan+UBSan still check them, without the exit-time leak scan
    # (see .ci/sanitize.sh), which the pytest process itself keeps.
    if env.get("PYLLM_CHILD_ASAN_OPTIONS"):
        env["ASAN_OPTIONS"] = env["PYLLM_CHILD_ASAN_OPTIONS"]
    return env


def run_isolated(code, timeout=300, env=None):
    """Run code in a fresh interpreter; return (exception class name or None, message).

    A crash (segfault, abort) of the child fails the calling test instead of the whole run."""
    body = textwrap.indent(textwrap.dedent(code), "    ")
    child_env = {**child_environment(), **(env or {})}
    proc = subprocess.run([sys.executable, "-c", _ISOLATED_PRELUDE.format(body=body)],
                          capture_output=True, text=True, timeout=timeout,
                          env=child_env, cwd=os.path.dirname(REPO))
    marker = "__PYLLM_RESULT__"
    if proc.returncode != 0 or marker not in proc.stdout:
        raise AssertionError(f"child process died (exit {proc.returncode}):\n"
                             f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.rsplit(marker, 1)[1].strip())
    return result["kind"], result["message"]


@pytest.fixture
def isolated():
    return run_isolated


def run_cli(args, stdin="", cwd=None, env=None, timeout=300):
    """`python -m pyllm ARGS` in a fresh process: (exit code, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "pyllm", *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env={**child_environment(), **(env or {})}, cwd=cwd or os.path.dirname(REPO))
    return proc.returncode, proc.stdout, proc.stderr
