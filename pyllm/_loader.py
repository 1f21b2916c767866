"""Make libdnnl.so.3 loadable before pyllm._core is imported.

The onednn-cpu-gomp wheel installs the library under the environment's data prefix
(``<prefix>/lib``), which the dynamic loader does not search. The extension carries an
$ORIGIN-relative rpath for the usual site-packages layout; preloading the library by its
full path covers the others (editable builds, --target installs, user sites). A library
already loaded under the soname ``libdnnl.so.3`` satisfies the extension's dependency.
"""
import ctypes
import os
import sysconfig
from importlib import metadata


def _candidates():
    root = os.environ.get("DNNL_ROOT")
    if root:
        for sub in ("lib", "lib64"):
            yield os.path.join(root, sub, "libdnnl.so.3")
    try:
        dist = metadata.distribution("onednn-cpu-gomp")
        for f in dist.files or []:
            if str(f).endswith("libdnnl.so.3"):
                yield os.path.abspath(str(dist.locate_file(f)))
    except metadata.PackageNotFoundError:
        pass
    yield os.path.join(sysconfig.get_path("data"), "lib", "libdnnl.so.3")


# pyllm's kernels and oneDNN (onednn-cpu-gomp) both thread with GNU OpenMP, the system's
# libgomp.so.1, which the wheel does not bundle: a renamed copy would be a second OpenMP runtime
# beside the one libdnnl.so.3 loads, each with its own thread pool.
OPENMP_LIBRARY = "libgomp.so.1"
OPENMP_MISSING = ("pyllm needs the GNU OpenMP runtime {name}, which this system lacks (slim container images "
                  "often do): install it with the system's package manager, e.g. 'apt-get install libgomp1' "
                  "(Debian, Ubuntu), 'dnf install libgomp' (Fedora, RHEL) or 'apk add libgomp' (Alpine)")


def check_openmp(name=OPENMP_LIBRARY):
    """Load the OpenMP runtime first, so that its absence is one clear ImportError rather than
    the loader's message about libdnnl.so.3 or pyllm._core."""
    try:
        ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        raise ImportError(OPENMP_MISSING.format(name=name)) from None


def load_onednn():
    # libgomp reads its wait policy once, when it is loaded (with libdnnl here). A thread that
    # reaches a barrier first spins GOMP_SPINCOUNT times, then sleeps. libgomp's default (300k
    # spins) fought a busy neighbour process for the core the other thread needed: 2-thread
    # decode fell to 0.41-0.56x of 1-thread. Sleeping at once (OMP_WAIT_POLICY=passive) fixed that
    # (0.96x) but paid a wake-up at every parallel region: int4 decode on a quiet host halved (161
    # against 312 tok/s, 1024x8 LLaMA). 3000 spins bridge the gaps between a step's regions and
    # still yield: 297-310 tok/s quiet, 0.91x beside a busy process (benchmarks/bench_threads.py).
    # Set only for the load and never over the user's own choice (OMP_WAIT_POLICY or GOMP_SPINCOUNT).
    ours = "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
    if ours:
        os.environ["GOMP_SPINCOUNT"] = "3000"
    try:
        check_openmp()
        for path in _candidates():
            if os.path.exists(path):
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return path
        return None  # fall back on the rpath and the system loader path
    finally:
        if ours:
            del os.environ["GOMP_SPINCOUNT"]
