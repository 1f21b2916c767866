"""Build of the C extension pyllm._core against oneDNN.

oneDNN is found, in order: $DNNL_ROOT (a user's own oneDNN >= 3.0, with include/ and lib/),
then the PyPI wheels onednn-devel-cpu-gomp (headers, present in the build environment) and
onednn-cpu-gomp (libdnnl.so.3). The wheels put their files under the environment's data
prefix, which is not on the loader path, so the extension gets an $ORIGIN-relative rpath
and pyllm/__init__.py preloads libdnnl.so.3 as well.
"""
import glob
import os
import sys
import sysconfig
from importlib import metadata

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def _wheel_file(dist_name, suffix):
    """Absolute path of the first file of an installed distribution ending with suffix."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).replace("\\", "/").endswith(suffix):
            path = os.path.abspath(str(dist.locate_file(f)))
            if os.path.exists(path):
                return path
    return None


def find_onednn():
    """Return (include_dir, library_file) for oneDNN."""
    root = os.environ.get("DNNL_ROOT")
    if root:
        inc = os.path.join(root, "include")
        libs = sorted(glob.glob(os.path.join(root, "lib*", "libdnnl.so*")))
        if not os.path.exists(os.path.join(inc, "oneapi", "dnnl", "dnnl.h")) or not libs:
            sys.exit(f"DNNL_ROOT={root} has no include/oneapi/dnnl/dnnl.h or lib/libdnnl.so*")
        return inc, libs[0]
    header = _wheel_file("onednn-devel-cpu-gomp", "include/oneapi/dnnl/dnnl.h")
    library = _wheel_file("onednn-cpu-gomp", "libdnnl.so.3")
    if header is None:
        prefix_header = os.path.join(sysconfig.get_path("data"), "include", "oneapi", "dnnl", "dnnl.h")
        header = prefix_header if os.path.exists(prefix_header) else None
    if library is None:
        prefix_lib = os.path.join(sysconfig.get_path("data"), "lib", "libdnnl.so.3")
        library = prefix_lib if os.path.exists(prefix_lib) else None
    if header is None or library is None:
        sys.exit("oneDNN not found: install onednn-devel-cpu-gomp==2023.2.0 "
                 "or set DNNL_ROOT to a oneDNN >= 3.0 installation")
    return os.path.dirname(os.path.dirname(os.path.dirname(header))), library


def c_files(pattern):
    return sorted(os.path.relpath(p, HERE)
                  for p in glob.glob(os.path.join(HERE, "csrc", "**", pattern), recursive=True))


include_dir, dnnl_library = find_onednn()
cflags = ["-std=c11", "-O3", "-fopenmp", "-Wall", "-Wextra", "-Werror=implicit-function-declaration",
          "-fno-strict-aliasing", "-D_GNU_SOURCE", "-DNPY_NO_DEPRECATED_API=NPY_1_7_API_VERSION"]
ldflags = ["-fopenmp",
           # <prefix>/lib/pythonX.Y/site-packages/pyllm/_core.so -> <prefix>/lib/libdnnl.so.3
           "-Wl,-rpath,$ORIGIN/../../.."]
if os.environ.get("DNNL_ROOT"):
    ldflags.append("-Wl,-rpath," + os.path.dirname(dnnl_library))
if os.environ.get("PYLLM_SANITIZE") == "1":
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
    cflags = [f for f in cflags if f != "-O3"] + ["-O1"] + san
    ldflags += san
if os.environ.get("PYLLM_FUZZ") == "1":
    # For the atheris harnesses (fuzz/build.sh python, with CC=clang): ASan + UBSan, and libFuzzer's
    # coverage counters so that atheris sees the C code each input reaches. Serial C core: clang has
    # no OpenMP runtime here, fuzz/include/omp.h stands in for it (oneDNN keeps its own libgomp).
    # clang ignores `#pragma GCC target`: the kernels' instruction sets are enabled for every file,
    # so this build runs only on a CPU with AVX-512 BF16/VNNI (as the CI machines have), and the ISA
    # probe answers yes (clang 14's __builtin_cpu_supports does not know "f16c"; PYLLM_ISA still lowers it).
    # No target_clones either: their ifunc resolvers run before the extension's own relocations, and
    # under ASan they jump through one not yet applied (every clone would be the AVX-512 one anyway).
    fuzz = ["-D__builtin_cpu_supports(feature)=1", "-Dtarget_clones(...)=unused",
            "-fsanitize=address,undefined,fuzzer-no-link", "-fno-sanitize-recover=undefined",
            "-fno-omit-frame-pointer", "-g", "-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw",
            "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mavx512vnni"]
    cflags = [f for f in cflags if f not in ("-O3", "-fopenmp")] + ["-O1", "-Wno-unknown-pragmas",
                                                                   "-I" + os.path.join(HERE, "fuzz", "include")] + fuzz
    ldflags = [f for f in ldflags if f != "-fopenmp"] + ["-fsanitize=address,undefined"]  # runtime: LD_PRELOAD
if os.environ.get("PYLLM_DEBUG") == "1":
    cflags = [f for f in cflags if f != "-O3"] + ["-O0", "-g"]


class BuildExt(build_ext):
    """The interpreter's own link command may carry absolute rpaths (pyenv's LDSHARED names its
    lib directory): a wheel must not search the build machine's directories, so only the rpaths
    given above ($ORIGIN-relative, or DNNL_ROOT's, which a user asked for) remain."""

    def build_extensions(self):
        self.compiler.linker_so = [arg for arg in self.compiler.linker_so
                                   if not arg.startswith(("-Wl,-rpath,/", "-Wl,-rpath=/", "-Wl,-R/"))]
        super().build_extensions()


core = Extension(
    "pyllm._core",
    sources=c_files("*.c"),
    depends=c_files("*.h"),  # a header edited makes the next build_ext rebuild, not only a .c
    include_dirs=[os.path.join(HERE, "csrc"), include_dir, numpy.get_include()],
    extra_compile_args=cflags,
    extra_link_args=ldflags,
    # Link the versioned file itself: the wheel may not ship the unversioned libdnnl.so.
    extra_objects=[dnnl_library],
)

setup(ext_modules=[core], cmdclass={"build_ext": BuildExt})
