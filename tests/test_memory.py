"""pyllm.memory: the memory the process can have (cgroup v1/v2, /proc/meminfo,
PYLLM_MEMORY_LIMIT), the estimates of what weights and KV caches take (checked against the RSS
a real allocation adds), and the MemoryError / ValueError raised before a model or a cache that
cannot fit is allocated. Allocations run in child processes, so their memory and any limit
stay out of the test process."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pyllm
from pyllm import memory
from pyllm.architectures import spec_from_hf

from conftest import REPO, child_environment

MiB = 1 << 20
GiB = 1 << 30

# ---- children ------------------------------------------------------------------------------

_CHILD_PRELUDE = '''
import ctypes, gc, json, os, sys
import numpy as np
import pyllm
from pyllm import checkpoint, memory
from pyllm.architectures import canonical_shapes, spec_from_hf

def filled(shape, rng):
    """Random f32 filled in place: no temporaries, whose freed blocks would stay in the heap,
    be reused by the allocations measured and hide their growth."""
    a = np.empty(shape, np.float32)
    rng.standard_normal(dtype=np.float32, out=a)
    a *= 0.05
    return a

def llama_weights(config, seed=0):
    rng = np.random.default_rng(seed)
    return {name: filled(shape, rng) for name, shape in canonical_shapes(spec_from_hf(config, None)).items()}

def bloom_weights(config, seed=0):
    c = spec_from_hf(config, None)
    d, v = c["hidden_size"], c["vocab_size"]
    shapes = {"word_embeddings.weight": (v, d)}
    for part in ("weight", "bias"):
        shapes["word_embeddings_layernorm." + part] = shapes["ln_f." + part] = (d,)
    for i in range(c["num_hidden_layers"]):
        p = f"h.{i}."
        for part in ("weight", "bias"):
            shapes[p + "input_layernorm." + part] = shapes[p + "post_attention_layernorm." + part] = (d,)
        for name, (rows, cols) in {"self_attention.query_key_value": (3 * d, d), "self_attention.dense": (d, d),
                                   "mlp.dense_h_to_4h": (4 * d, d), "mlp.dense_4h_to_h": (d, 4 * d)}.items():
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (rows, cols), (rows,)
    rng = np.random.default_rng(seed)
    return {"transformer." + name: filled(shape, rng) for name, shape in shapes.items()}

def rss_after_trim():
    """Resident bytes once freed heap blocks are handed back (BLOOM's q/k/v split leaves some)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return memory.process_rss()

def peak_rss():
    """The process's peak resident memory: VmHWM, since getrusage's ru_maxrss carries over the
    parent's peak through fork and exec (a pytest process holding torch is well above 1 GB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")

SMALL = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "max_position_embeddings": 64, "eos_token_id": 63}

def small_model_generates():
    """A small model still loads and generates: a refused allocation left the process sound."""
    model = pyllm.Model.from_arrays(SMALL, llama_weights(SMALL, seed=1))
    out = model.generate([1, 2, 3], max_new_tokens=5, eos_token_id=[])
    return len(out)

def expect(exc_type, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return str(e)
    raise AssertionError(f"no {exc_type.__name__} from {fn.__name__}")

def report(**values):
    print("__RESULT__" + json.dumps(values))
'''


def child(code, env=None, timeout=600):
    """Run code after _CHILD_PRELUDE in a fresh interpreter; return what it report()s."""
    program = _CHILD_PRELUDE + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=timeout,
                          env={**child_environment(), **(env or {})}, cwd=os.path.dirname(REPO))
    if proc.returncode != 0 or "__RESULT__" not in proc.stdout:
        raise AssertionError(f"child failed (exit {proc.returncode}):\nstdout: {proc.stdout[-2000:]}\n"
                             f"stderr: {proc.stderr[-4000:]}")
    return json.loads(proc.stdout.rsplit("__RESULT__", 1)[1])


# ---- available_bytes ------------------------------------------------------------------------

def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _fake_system(tmp_path, proc_cgroup, files, mem_available_kb=50 * 1024 * 1024):
    """A cgroup tree, a /proc/self/cgroup and a /proc/meminfo under tmp_path; the keyword
    arguments that point memory_limit at them."""
    root = tmp_path / "cgroup"
    root.mkdir()
    for rel, text in files.items():
        _write(root / rel, text)
    _write(tmp_path / "self_cgroup", proc_cgroup)
    _write(tmp_path / "meminfo", f"MemTotal:       99999999 kB\nMemFree:         1000 kB\n"
                                 f"MemAvailable:   {mem_available_kb} kB\n")
    return {"cgroup_root": str(root), "proc_self_cgroup": str(tmp_path / "self_cgroup"),
            "meminfo": str(tmp_path / "meminfo"), "environ": {}}


def test_meminfo_alone_bounds_a_process_without_a_cgroup_limit(tmp_path):
    where = _fake_system(tmp_path, "0::/\n", {"cgroup.controllers": "cpu memory\n", "memory.max": "max\n"},
                         mem_available_kb=3 * 1024 * 1024)
    assert memory.memory_limit(**where) == (3 * GiB, "available RAM")
    assert memory.available_bytes(**where) == 3 * GiB


def test_real_system_agrees_with_proc_meminfo():
    with open("/proc/meminfo") as f:
        fields = dict(line.split(":", 1) for line in f)
    mem_available = int(fields["MemAvailable"].split()[0]) * 1024
    available = memory.available_bytes(environ={})
    # Other processes come and go between the two reads: agree within 10%, never above.
    assert 0 < available <= mem_available * 1.1
    assert memory.meminfo_available() == pytest.approx(mem_available, rel=0.1)


def test_cgroup_v2_limit_minus_usage_of_the_group_and_its_ancestors(tmp_path):
    where = _fake_system(tmp_path, "0::/jobs/mine\n", {
        "cgroup.controllers": "cpu memory\n",
        "jobs/memory.max": str(6 * GiB) + "\n", "jobs/memory.current": str(1 * GiB) + "\n",
        "jobs/mine/memory.max": str(4 * GiB) + "\n", "jobs/mine/memory.current": str(512 * MiB) + "\n",
    })
    assert memory.cgroup_headroom(where["cgroup_root"], where["proc_self_cgroup"]) == 4 * GiB - 512 * MiB
    assert memory.memory_limit(**where) == (4 * GiB - 512 * MiB, "cgroup limit")
    # The parent's headroom is the smaller one once it is nearly used up.
    (tmp_path / "cgroup/jobs/memory.current").write_text(str(5 * GiB + 256 * MiB))
    assert memory.available_bytes(**where) == 6 * GiB - (5 * GiB + 256 * MiB)


def test_cgroup_v2_max_means_no_limit(tmp_path):
    where = _fake_system(tmp_path, "0::/a\n", {
        "cgroup.controllers": "memory\n", "a/memory.max": "max\n", "a/memory.current": "123456\n"})
    assert memory.cgroup_headroom(where["cgroup_root"], where["proc_self_cgroup"]) is None
    assert memory.memory_limit(**where)[1] == "available RAM"


def test_cgroup_v1_limit_and_its_unlimited_value(tmp_path):
    unlimited = "9223372036854771712\n"  # what cgroup v1 writes for "no limit"
    cgroup = "5:cpu,cpuacct:/\n4:memory:/job\n0::/\n"
    where = _fake_system(tmp_path, cgroup, {
        "memory/memory.limit_in_bytes": unlimited, "memory/memory.usage_in_bytes": str(9 * GiB),
        "memory/job/memory.limit_in_bytes": str(2 * GiB), "memory/job/memory.usage_in_bytes": str(GiB // 2),
        "unified/cgroup.controllers": "\n",  # hybrid mode: the v2 tree has no memory files
    })
    assert memory.memory_limit(**where) == (2 * GiB - GiB // 2, "cgroup limit")
    (tmp_path / "cgroup/memory/job/memory.limit_in_bytes").write_text(unlimited)
    assert memory.cgroup_headroom(where["cgroup_root"], where["proc_self_cgroup"]) is None


def test_container_group_path_outside_the_mount_reads_the_mount_itself(tmp_path):
    # Without a cgroup namespace a container sees the host's path, and its own group mounted at the root.
    where = _fake_system(tmp_path, "4:memory:/docker/0123abcd\n", {
        "memory/memory.limit_in_bytes": str(3 * GiB), "memory/memory.usage_in_bytes": str(GiB)})
    assert memory.available_bytes(**where) == 2 * GiB


def test_cgroup_usage_above_the_limit_leaves_nothing(tmp_path):
    where = _fake_system(tmp_path, "0::/\n", {
        "cgroup.controllers": "memory\n", "memory.max": str(GiB), "memory.current": str(2 * GiB)})
    assert memory.available_bytes(**where) == 0


@pytest.mark.parametrize("text, value", [("123", 123), ("512M", 512 * MiB), ("2g", 2 * GiB), ("1.5G", 3 * GiB // 2),
                                         ("64KiB", 64 * 1024), (" 3T ", 3 << 40), ("7MB", 7 * MiB)])
def test_parse_size(text, value):
    assert memory.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1G", "1X", "1e9"])
def test_parse_size_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError, match="PYLLM_MEMORY_LIMIT"):
        memory.parse_size(text)


def test_env_limit_caps_the_process_minus_what_it_holds(tmp_path):
    where = _fake_system(tmp_path, "0::/\n", {})
    where["environ"] = {"PYLLM_MEMORY_LIMIT": "8G"}
    limit, source = memory.memory_limit(**where)
    assert source == "PYLLM_MEMORY_LIMIT"
    rss = memory.process_rss()
    assert 8 * GiB - rss - 64 * MiB <= limit <= 8 * GiB - rss + 64 * MiB
    # A cap above what the machine has changes nothing.
    where["environ"] = {"PYLLM_MEMORY_LIMIT": "1000T"}
    assert memory.memory_limit(**where) == (50 * GiB, "available RAM")


def test_check_fits_message_names_need_limit_source_and_suggestion(tmp_path):
    where = _fake_system(tmp_path, "0::/\n", {}, mem_available_kb=1_000_000)  # 1.024 GB
    memory.check_fits(10**9, "loading this", "never shown", **where)  # fits: nothing raised
    with pytest.raises(MemoryError) as e:
        memory.check_fits(27 * 10**9, "loading this model as float32",
                          lambda limit: f"{limit} bytes would be enough", **where)
    assert str(e.value) == ("loading this model as float32 needs 27.0 GB but the process can have 1.0 GB "
                            "(available RAM); 1024000000 bytes would be enough")


# ---- estimates by arithmetic -------------------------------------------------------------------

LLAMA_7B = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
            "num_attention_heads": 32, "max_position_embeddings": 2048}
# stories260K's shape: an MLP input of 172, not a multiple of 32; GQA; every buffer under 2 MB.
STORIES_260K = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5,
                "num_attention_heads": 8, "num_key_value_heads": 4, "max_position_embeddings": 512}


def _overhead(config):
    """pyllm.memory's fixed allowance for the C objects of each matrix (7 a LLaMA layer + lm_head)."""
    return (7 * config["num_hidden_layers"] + 1) * 2048


def test_matrix_bytes_per_dtype():
    # Quants in one buffer (2 MB pages when that big, else 64-byte aligned), f16 scales in another.
    assert memory.matrix_bytes(64, 172, "bfloat16") == 64 * 172 * 2           # 22,016 = 344 x 64
    assert memory.matrix_bytes(64, 172, "int8") == 64 * 6 * 32 + 64 * 6 * 2    # K 172 -> 192: 6 groups
    assert memory.matrix_bytes(64, 172, "int4") == 64 * 6 * 16 + 64 * 6 * 2
    assert memory.matrix_bytes(64, 172, "q4_1") == 64 * 6 * 16 + 2 * 64 * 6 * 2
    assert memory.matrix_bytes(172, 64, "int4") == 5504 + 704                  # 688 bytes of scales, to 64
    assert memory.matrix_bytes(4096, 4096, "int8") == 16 * MiB + 1 * MiB       # quants: exactly 8 pages
    assert memory.matrix_bytes(11008, 4096, "int4") == 22 * MiB + 11008 * 128 * 2  # 21.5 MiB -> 11 pages
    with pytest.raises(ValueError, match="dtype"):
        memory.matrix_bytes(4, 4, "float16")


def test_weight_bytes_of_llama_7b_in_bf16_int8_int4():
    c = spec_from_hf(LLAMA_7B, None)
    gb = {d: memory.weight_bytes(c, d) / 1e9 for d in memory.DTYPES}
    same = {d: memory.weight_bytes(c, d, "same") / 1e9 for d in memory.DTYPES}
    assert 26.9 < gb["float32"] < 27.2                       # the figures
    # bf16 13.5 GB for the matrices; the f32 embedding table (0.52 GB) and, by default, the f32 lm_head
    assert 13.6 < same["bfloat16"] < 13.8 and 13.9 < gb["bfloat16"] < 14.1
    # int8 and int4 (with its int8 lm_head by default); the f32 embedding table is 0.52 GB of them
    assert 7.5 < gb["int8"] < 7.8 and 4.3 < gb["int4"] < 4.4 and 4.2 < same["int4"] < 4.35
    assert memory.weight_bytes(c, "int4") - memory.weight_bytes(c, "int4", "same") == \
        memory.matrix_bytes(32000, 4096, "int8") - memory.matrix_bytes(32000, 4096, "int4")


def test_weight_bytes_of_stories260k_shape_pads_k_to_32():
    c = spec_from_hf(STORIES_260K, None)
    up64 = lambda n: -(-n // 64) * 64  # noqa: E731 - buffers under 2 MB are 64-byte aligned
    norms = 5 * 2 * 256 + 256
    embedding = 512 * 64 * 4
    q = lambda rows, groups, per: up64(rows * groups * per) + up64(rows * groups * 2)  # noqa: E731
    # q, o 64 x 2 groups; k, v 32 x 2; gate, up 172 x 2; down 64 x 6 (K 172 -> 192).
    layer = 2 * q(64, 2, 32) + 2 * q(32, 2, 32) + 2 * q(172, 2, 32) + q(64, 6, 32)
    assert memory.weight_bytes(c, "int8") == 5 * layer + embedding + q(512, 2, 32) + norms + _overhead(c)
    layer = 2 * q(64, 2, 16) + 2 * q(32, 2, 16) + 2 * q(172, 2, 16) + q(64, 6, 16)
    assert memory.weight_bytes(c, "int4", "same") == 5 * layer + embedding + q(512, 2, 16) + norms + _overhead(c)
    layer = 2 * 8192 + 2 * 4096 + 2 * 22016 + 22016
    assert memory.weight_bytes(c, "bfloat16", "same") == 5 * layer + embedding + 512 * 128 + norms + _overhead(c)


def test_tied_lm_head_still_counts_its_own_copy():
    tied = spec_from_hf(dict(STORIES_260K, tie_word_embeddings=True), None)
    untied = spec_from_hf(STORIES_260K, None)
    for dtype in memory.DTYPES:
        assert memory.weight_bytes(tied, dtype) == memory.weight_bytes(untied, dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_kv_cache_bytes_equal_what_the_c_core_reserves(dtype):
    config = dict(STORIES_260K, max_position_embeddings=4096)
    model = pyllm.Model.from_arrays(config, _numpy_llama_weights(config), dtype=dtype)
    element = 4 if dtype == "float32" else 2  # the cache is f16 below float32 (pyllm.dtypes)
    c = spec_from_hf(config, None)
    for batch, capacity in [(1, 1), (1, 512), (3, 1000), (8, 4096)]:
        cache = model.new_cache(batch, capacity)
        assert cache.nbytes == memory.kv_cache_bytes(model.spec, batch, capacity), (batch, capacity)
        assert cache.nbytes == memory.kv_cache_bytes(c, batch, capacity, element_bytes=element), (batch, capacity)
    # 5 layers x 4 rows x 100 slots x 4 KV heads x head_dim 8 x 4 bytes = 256,000, for keys and
    # for values (under 2 MB: 64-byte aligned); 5 bytes a slot; 8 a row.
    assert memory.kv_cache_bytes(c, 4, 100) == 2 * 256_000 + 4 * 100 * 5 + 4 * 8
    assert memory.kv_cache_bytes(c, 4, 100, element_bytes=2) == 2 * 128_000 + 4 * 100 * 5 + 4 * 8


def _numpy_llama_weights(config, seed=0):
    from pyllm.architectures import canonical_shapes
    rng = np.random.default_rng(seed)
    return {name: (0.05 * rng.standard_normal(shape)).astype(np.float32)
            for name, shape in canonical_shapes(spec_from_hf(config, None)).items()}


# ---- estimates against real allocations (RSS, in a child) ---------------------------------------

# Within 2% + 4 MB of the resident memory the load adds: the estimate counts the bytes the C
# core allocates (oneDNN's padded layout, 2 MB rounding); the rest is allocator and oneDNN
# bookkeeping.
_WEIGHT_CASES = {
    "llama GQA, vocab 32000": ("llama", {"vocab_size": 32000, "hidden_size": 1024, "intermediate_size": 2816,
                                         "num_hidden_layers": 6, "num_attention_heads": 16,
                                         "num_key_value_heads": 4}),
    "llama odd sizes, biases": ("llama", {"vocab_size": 5003, "hidden_size": 600, "intermediate_size": 1700,
                                          "num_hidden_layers": 6, "num_attention_heads": 10,
                                          "num_key_value_heads": 5, "attention_bias": True, "mlp_bias": True}),
    "llama many small layers, tied": ("llama", {"vocab_size": 3000, "hidden_size": 100, "intermediate_size": 172,
                                                "num_hidden_layers": 40, "num_attention_heads": 5,
                                                "tie_word_embeddings": True}),
    "bloom": ("bloom", {"model_type": "bloom", "vocab_size": 20000, "hidden_size": 768, "n_layer": 4,
                        "n_head": 12}),
}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8", "int4"])
@pytest.mark.parametrize("name", list(_WEIGHT_CASES))
def test_weight_bytes_match_the_memory_a_load_adds(name, dtype):
    arch, config = _WEIGHT_CASES[name]
    out = child(f"""
        config = {config!r}
        weights = {arch}_weights(config)
        before = rss_after_trim()
        model = pyllm.Model.from_arrays(config, weights, dtype={dtype!r})
        grown = rss_after_trim() - before
        report(grown=grown, estimate=memory.weight_bytes(spec_from_hf(config, None), {dtype!r}))
    """)
    grown, estimate = out["grown"], out["estimate"]
    assert abs(grown - estimate) <= 0.02 * estimate + 4e6, f"{name} {dtype}: load added {grown:,} bytes, estimate {estimate:,}"


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_kv_cache_bytes_match_the_memory_a_filled_cache_takes_and_new_cache_writes_nothing(dtype):
    config = {"vocab_size": 320, "hidden_size": 1024, "intermediate_size": 256, "num_hidden_layers": 8,
              "num_attention_heads": 16, "num_key_value_heads": 4, "max_position_embeddings": 2048}
    out = child(f"""
        config = {config!r}
        model = pyllm.Model.from_arrays(config, llama_weights(config), dtype={dtype!r})
        model([1, 2, 3])
        before = rss_after_trim()
        cache = model.new_cache(4, 2048)
        reserved = rss_after_trim()
        copy = cache.copy()  # writes every byte of its buffers
        filled = rss_after_trim()
        report(new_cache=reserved - before, filled=filled - reserved, nbytes=cache.nbytes,
               estimate=memory.kv_cache_bytes(model.spec, 4, 2048))
    """)
    assert out["estimate"] == out["nbytes"] > (130e6 if dtype == "float32" else 65e6)
    assert out["new_cache"] < 2e6, f"new_cache wrote {out['new_cache']:,} bytes of a {out['estimate']:,}-byte cache"
    assert abs(out["filled"] - out["estimate"]) <= 0.01 * out["estimate"] + 2e6, out


def test_a_long_cache_is_reserved_without_writing_its_tables():
    # 20M slots of a narrow model: 1.3 GB of keys and values and 100 MB of validity and positions
    # reserved, and not written: a cache of any size is refused or made without a pass over it.
    out = child("""
        config = dict(SMALL, hidden_size=8, num_hidden_layers=1, max_position_embeddings=20_000_000)
        model = pyllm.Model.from_arrays(config, llama_weights(config))
        before = rss_after_trim()
        cache = model.new_cache()
        grown = memory.process_rss() - before
        model([1, 2, 3], cache=cache)  # and it works
        report(grown=grown, nbytes=cache.nbytes, used=cache.used)
    """)
    assert out["nbytes"] > 1.3e9 and out["used"] == 3
    assert out["grown"] < 2e6, f"new_cache wrote {out['grown']:,} bytes of a {out['nbytes']:,}-byte cache"


# ---- refusing what cannot fit -----------------------------------------------------------------

# f32 2.0 GB, bf16 1.0 GB, int8 0.62 GB: under an 800 MiB cap only int8 and int4 fit.
MEDIUM = {"vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 8,
          "num_attention_heads": 16, "num_key_value_heads": 4, "max_position_embeddings": 2048}


def test_load_over_the_limit_raises_memory_error_naming_need_limit_and_a_dtype(tmp_path):
    folder = tmp_path / "medium"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(MEDIUM))  # no weights: the check comes first
    out = child(f"""
        parsed = spec_from_hf({MEDIUM!r}, None)
        need = {{d: memory.weight_bytes(parsed, d) for d in memory.DTYPES}}
        from_arrays = expect(MemoryError, pyllm.Model.from_arrays, {MEDIUM!r}, {{}})
        from_pretrained = expect(MemoryError, pyllm.Model.from_pretrained, {str(folder)!r})
        report(from_arrays=from_arrays, from_pretrained=from_pretrained, need=need,
               limit=memory.available_bytes(), tokens=small_model_generates(), peak=peak_rss())
    """, env={"PYLLM_MEMORY_LIMIT": "800M"})
    need, limit = out["need"], out["limit"]
    assert need["bfloat16"] > limit > need["int8"], out  # the case is what it claims to be
    for message in (out["from_arrays"], out["from_pretrained"]):
        assert message.startswith(f"loading this model as float32 needs {memory.format_bytes(need['float32'])} "
                                  "but the process can have "), message
        assert "(PYLLM_MEMORY_LIMIT)" in message
        assert message.endswith(f"dtype='int8' needs {memory.format_bytes(need['int8'])} and would fit"), message
    assert out["tokens"] == 8
    assert out["peak"] < 400e6


def test_load_that_no_dtype_can_fit_says_so():
    out = child("""
        config = dict(SMALL, num_hidden_layers=4096, hidden_size=1 << 17, intermediate_size=1 << 20,
                      num_attention_heads=1024, vocab_size=1 << 24)
        report(message=expect(MemoryError, pyllm.Model.from_arrays, config, {}), peak=peak_rss())
    """)
    assert "loading this model as float32 needs" in out["message"]
    assert "(available RAM)" in out["message"] or "(cgroup limit)" in out["message"]
    assert "no dtype fits: even dtype='int4' needs" in out["message"]
    assert out["peak"] < 500e6


def test_new_cache_over_the_limit_raises_memory_error_naming_need_limit_and_what_fits():
    out = child("""
        config = dict(SMALL, max_position_embeddings=8_000_000)  # 8M positions x 2 layers x 2 x 32 x 4 B = 4 GB
        model = pyllm.Model.from_arrays(config, llama_weights(config))
        message = expect(MemoryError, model.new_cache)
        limit = memory.available_bytes()
        batch = expect(MemoryError, model.new_cache, 2, 4_000_000)
        cache = model.new_cache(1, 1000)
        model([1, 2, 3], cache=cache)
        repeated = expect(MemoryError, model.new_cache(1, 500_000).repeat, 4)
        generated = expect(MemoryError, model.generate, [1, 2], max_new_tokens=7_999_000)
        need = memory.kv_cache_bytes(spec_from_hf(config, None), 1, 8_000_000)
        report(message=message, batch=batch, repeated=repeated, generated=generated, need=need,
               limit=limit, tokens=small_model_generates(),
               logits=list(model([1, 2, 3]).shape), peak=peak_rss())
    """, env={"PYLLM_MEMORY_LIMIT": "700M"})
    assert out["message"].startswith(f"a KV cache of 1 row x 8,000,000 positions needs "
                                     f"{memory.format_bytes(out['need'])} but the process can have "), out
    assert "(PYLLM_MEMORY_LIMIT); at most " in out["message"]
    fit = int(out["message"].split("at most ")[1].split(" ")[0].replace(",", ""))
    per_position = out["need"] / 8e6
    assert 0.98 * out["limit"] / per_position <= fit <= 1.02 * out["limit"] / per_position, (fit, out)
    assert "positions of one row would fit" in out["message"]
    assert out["batch"].startswith("a KV cache of 2 rows x 4,000,000 positions needs")
    assert "positions of 2 rows would fit" in out["batch"]
    assert out["repeated"].startswith("a KV cache of 4 rows x 500,000 positions needs")
    assert out["generated"].startswith("a KV cache of 1 row x 7,999,001 positions needs")
    assert out["tokens"] == 8 and out["logits"] == [3, 64]
    assert out["peak"] < 400e6


# ---- absurd counts fail fast, in bounded memory ---------------------------------------------

def test_two_billion_layers_fail_fast_in_bounded_memory(tmp_path):
    folder = tmp_path / "layers"
    folder.mkdir()
    big = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2147483647,
           "num_attention_heads": 4, "max_position_embeddings": 64}
    (folder / "config.json").write_text(json.dumps(big))
    from pyllm import checkpoint
    checkpoint.save_safetensors(str(folder / "model.safetensors"),
                                {"model.norm.weight": np.ones(32, np.float32)})
    out = child(f"""
        report(from_arrays=expect(ValueError, pyllm.Model.from_arrays, {big!r}, {{}}),
               from_pretrained=expect(ValueError, pyllm.Model.from_pretrained, {str(folder)!r}),
               bloom=expect(ValueError, pyllm.Model.from_arrays,
                            {{"model_type": "bloom", "vocab_size": 64, "n_embed": 32, "n_layer": 2**31 - 1,
                              "n_head": 4}}, {{}}),
               peak=peak_rss())
    """)
    assert out["from_arrays"] == "config: num_hidden_layers is 2147483647, above pyllm's limit of 4096"
    assert out["from_pretrained"] == (f"{folder / 'config.json'}: num_hidden_layers is 2147483647, above pyllm's "
                                      "limit of 4096")
    assert out["bloom"] == "config: n_layer is 2147483647, above pyllm's limit of 4096"
    assert out["peak"] < 500e6, f"peak RSS {out['peak']:,} bytes"


@pytest.mark.parametrize("key, value, limit", [
    ("num_attention_heads", 1 << 20, 4096), ("num_key_value_heads", 8192, 4096), ("head_dim", 1 << 16, 4096),
    ("hidden_size", 1 << 20, 1 << 17), ("intermediate_size", 1 << 24, 1 << 20), ("vocab_size", 1 << 30, 1 << 24),
    ("max_position_embeddings", 2**31, 2**31 - 1),
])
def test_every_count_has_a_limit_named_in_the_error(key, value, limit):
    with pytest.raises(ValueError) as e:
        pyllm.Model.from_arrays(dict(LLAMA_7B, **{key: value}), {})
    assert str(e.value) == f"config: {key} is {value}, above pyllm's limit of {limit}"


def test_huge_context_fails_in_new_cache_before_memory_grows():
    out = child("""
        config = dict(SMALL, max_position_embeddings=2**31 - 1)  # n_ctx defaults to it
        model = pyllm.Model.from_arrays(config, llama_weights(config))
        assert model.n_ctx == 2**31 - 1
        before = memory.process_rss()
        cache = expect(MemoryError, model.new_cache)
        rows = expect(MemoryError, model.new_cache, 2**40, 2**31 - 1)
        wrapped = expect(ValueError, model.generate, [1, 2], max_new_tokens=2**63 - 1)
        generated = expect(MemoryError, model.generate, [1, 2], max_new_tokens=2**31 - 3)
        report(cache=cache, rows=rows, wrapped=wrapped, generated=generated, grown=memory.process_rss() - before,
               logits=list(model([1, 2, 3]).shape), peak=peak_rss())
    """)
    assert out["cache"].startswith("a KV cache of 1 row x 2,147,483,647 positions needs 1.1 TB")
    assert "does not fit the address space" in out["rows"]
    assert out["wrapped"] == "generation option max_new_tokens is 9223372036854775807, above pyllm's limit of 2147483647"
    assert out["generated"].startswith("a KV cache of 1 row x 2,147,483,646 positions needs")
    assert out["logits"] == [3, 64]
    assert out["grown"] < 20e6 and out["peak"] < 500e6, out
