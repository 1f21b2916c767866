"""pyllm.ray and the lm-eval backend's ray_actors= on a real two-node Ray cluster on this machine.

The cluster and the tests that use it (tests/ray_cluster/cluster_suite.py) run once, in a pytest of
their own inside `unshare -n -p -f --kill-child --mount-proc`: a network namespace of their own
(loopback only: Ray would otherwise advertise the machine's address) and a PID namespace of their
own, so every Ray process ends with it even when a test fails or the run times out. Each test here
reports one test of that run. Ray not installed, or namespaces not available, fails them with the
reason."""
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import pytest

from conftest import child_environment

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "ray_cluster", "in_namespace.sh")
SUITE = os.path.join(HERE, "ray_cluster", "cluster_suite.py")
TIMEOUT = 900  # seconds for the whole cluster run, start and stop included

INNER = [
    "test_sampling_is_bitwise_local_whatever_the_layout",
    "test_greedy_without_batch_invariance_and_bad_rows",
    "test_scoring_matches_local",
    "test_missing_model_path_names_path_and_node",
    "test_killed_actor_mid_job",
    "test_lm_eval_ray_actors_equal_single_process",
]


def _fail(reason, output=""):
    pytest.fail(f"{reason}\n{output[-6000:]}", pytrace=False)


@pytest.fixture(scope="module")
def cluster_run(data_dir):
    probe = subprocess.run([sys.executable, "-c", "import ray.data, ray.util.state, ray.dashboard"],
                           capture_output=True, text=True, env=child_environment())
    if probe.returncode != 0:
        _fail('Ray cannot run: `import ray.data, ray.util.state, ray.dashboard` failed (pip install "ray[data,default]")',
              probe.stderr)
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        _fail("the cluster tests need unshare (util-linux) and ip (iproute2) to make their own network namespace")
    # A short folder: Ray's Unix socket paths under it must stay under 108 bytes.
    temp = tempfile.mkdtemp(prefix="pyllm-ray-", dir="/tmp")
    junit = os.path.join(temp, "junit.xml")
    env = {**child_environment(), "PYLLM_TEST_DATA": data_dir}
    command = ["unshare", "-n", "-p", "-f", "--kill-child", "--mount-proc", "bash", SCRIPT, sys.executable, junit,
               temp, SUITE]
    try:
        try:
            # cwd outside the checkout: `python -m pytest` puts the cwd first on sys.path, and a
            # checkout's pyllm/ (unbuilt where pyllm was pip-installed) would shadow the installed one
            proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=temp)
        except subprocess.TimeoutExpired as e:
            _fail(f"the cluster run took more than {TIMEOUT} s (its namespace and every Ray process in it are gone)",
                  (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""))
        output = proc.stdout + proc.stderr
        if not os.path.exists(junit):
            _fail(f"the cluster run ended (exit {proc.returncode}) before its tests ran", output)
        results = {}
        for case in ET.parse(junit).getroot().iter("testcase"):
            problem = case.find("failure")
            if problem is None:
                problem = case.find("error")
            if problem is None:
                problem = case.find("skipped")
            results[case.get("name")] = None if problem is None else \
                f"{problem.get('message', '')}\n{problem.text or ''}"
        return results, output
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def test_every_cluster_test_is_reported(cluster_run):
    results, output = cluster_run
    assert sorted(results) == sorted(INNER), output[-3000:]


@pytest.mark.parametrize("name", INNER)
def test_cluster(cluster_run, name):
    results, output = cluster_run
    if name not in results:
        _fail(f"{name} did not run in the cluster suite", output)
    if results[name] is not None:
        _fail(f"{name} failed on the cluster:", results[name])


@pytest.mark.parametrize("bad", [0, -1, "x", "1.5"])
def test_ray_actors_must_be_a_positive_integer(bad):
    """Checked before Ray or the model is touched (no cluster needed)."""
    import pyllm.lm_eval
    with pytest.raises(ValueError, match="ray_actors must be a positive integer"):
        pyllm.lm_eval.PyllmLM(pretrained="/nonexistent/model", ray_actors=bad)
