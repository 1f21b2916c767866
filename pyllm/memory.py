"""How much memory the process may still take, how much a model or a KV cache needs, and the
MemoryError raised before an allocation that cannot fit (instead of the OOM killer ending the
process halfway through a load).

- :func:`available_bytes`: the least of the cgroup's headroom (limit minus usage, cgroup v2
  or v1, the process's own group and its ancestors), ``MemAvailable`` from /proc/meminfo and
  ``PYLLM_MEMORY_LIMIT`` (a cap on this process: bytes, or a number with K/M/G/T) minus what
  the process already holds.
- :func:`weight_bytes` and :func:`kv_cache_bytes`: what the C core allocates for a parsed
  config (a ``pyllm.architectures.DecoderSpec``), counted as it allocates it: buffers of 2 MB
  and more rounded up to 2 MB.
- :func:`check_fits`: MemoryError naming the need, the limit and what would fit.
"""
import os
import re

ENV_VAR = "PYLLM_MEMORY_LIMIT"
CGROUP_ROOT = "/sys/fs/cgroup"
PROC_SELF_CGROUP = "/proc/self/cgroup"
MEMINFO = "/proc/meminfo"

# cgroup v1 reports "no limit" as 2**63 rounded down to a page; nothing real is this large.
_NO_LIMIT = 1 << 60
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
DTYPES = ("float32", "bfloat16", "int8", "int4")


# ---- the limit ---------------------------------------------------------------------------

def parse_size(text):
    """Bytes in '123', '512M', '1.5G', '2GiB' (K/M/G/T are powers of 1024); ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:I?B)?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"{ENV_VAR} must be a number of bytes, optionally with K, M, G or T, got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _read_int(path):
    """The integer in a cgroup or proc file; None when absent, unreadable or 'max'."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _own_groups(proc_self_cgroup):
    """{'v2': path} and/or {'v1': path} of this process's memory cgroup, from /proc/self/cgroup."""
    groups = {}
    try:
        with open(proc_self_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return groups
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            groups["v2"] = path
        elif "memory" in controllers.split(","):
            groups["v1"] = path
    return groups


def _levels(mount, path):
    """The group's folder under its mount and each ancestor up to the mount (a group path from
    outside a container's cgroup namespace is not under the mount: then the mount alone)."""
    folder = os.path.join(mount, path.lstrip("/"))
    if not os.path.isdir(folder):
        folder = mount
    levels = [folder]
    while os.path.normpath(folder) != os.path.normpath(mount):
        folder = os.path.dirname(folder)
        levels.append(folder)
    return levels


def cgroup_headroom(cgroup_root=CGROUP_ROOT, proc_self_cgroup=PROC_SELF_CGROUP):
    """Bytes the process's cgroups still allow (the least over the group and its ancestors of
    limit minus usage, for cgroup v2 and v1), or None when no group sets a limit."""
    groups = _own_groups(proc_self_cgroup)
    files = []
    if "v2" in groups:
        # Unified hierarchy at the root, or beside the v1 controllers (hybrid) under unified/.
        for mount in (cgroup_root, os.path.join(cgroup_root, "unified")):
            if os.path.exists(os.path.join(mount, "cgroup.controllers")):
                files += [(level, "memory.max", "memory.current") for level in _levels(mount, groups["v2"])]
                break
    if "v1" in groups:
        mount = os.path.join(cgroup_root, "memory")
        files += [(level, "memory.limit_in_bytes", "memory.usage_in_bytes")
                  for level in _levels(mount, groups["v1"])]
    headroom = None
    for folder, limit_name, usage_name in files:
        limit = _read_int(os.path.join(folder, limit_name))
        if limit is None or limit >= _NO_LIMIT:
            continue
        usage = _read_int(os.path.join(folder, usage_name)) or 0
        room = max(0, limit - usage)
        headroom = room if headroom is None else min(headroom, room)
    return headroom


def meminfo_available(meminfo=MEMINFO):
    """MemAvailable of /proc/meminfo in bytes, or None when the file does not say."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    value, *unit = line.split()[1:]
                    return int(value) * (1024 if unit and unit[0].lower() == "kb" else 1)
    except OSError:
        pass
    return None


def process_rss():
    """Bytes this process holds in RAM (resident set)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _status_bytes(field):
    """A size field of /proc/self/status (VmSize, VmData) in bytes, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def rlimit_headroom():
    """(bytes, name) the process's own resource limits still allow: RLIMIT_AS minus its address
    space (VmSize), RLIMIT_DATA minus its data segment (VmData), whichever is less; (None, None)
    when neither is set. A limit set with setrlimit or ulimit -v fails allocations (and mmaps)
    beyond it, however much RAM is free."""
    try:
        import resource
    except ImportError:
        return None, None
    best = (None, None)
    for name, field in (("RLIMIT_AS", "VmSize"), ("RLIMIT_DATA", "VmData")):
        soft = resource.getrlimit(getattr(resource, name))[0]
        used = _status_bytes(field)
        if soft == resource.RLIM_INFINITY or soft < 0 or used is None:
            continue
        room = max(0, soft - used)
        if best[0] is None or room < best[0]:
            best = (room, name)
    return best


def memory_limit(cgroup_root=CGROUP_ROOT, proc_self_cgroup=PROC_SELF_CGROUP, meminfo=MEMINFO, environ=None):
    """(bytes the process can still get, what sets that figure): the least of
    PYLLM_MEMORY_LIMIT minus this process's resident memory, the process's RLIMIT_AS / RLIMIT_DATA
    headroom, the cgroup headroom and MemAvailable; (None, None) when none of them is known."""
    environ = os.environ if environ is None else environ
    bounds = []
    room, name = rlimit_headroom()
    if room is not None:
        bounds.append((room, name))
    if environ.get(ENV_VAR, "").strip():
        bounds.append((max(0, parse_size(environ[ENV_VAR]) - process_rss()), ENV_VAR))
    room = cgroup_headroom(cgroup_root, proc_self_cgroup)
    if room is not None:
        bounds.append((room, "cgroup limit"))
    ram = meminfo_available(meminfo)
    if ram is not None:
        bounds.append((ram, "available RAM"))
    return min(bounds) if bounds else (None, None)


def available_bytes(cgroup_root=CGROUP_ROOT, proc_self_cgroup=PROC_SELF_CGROUP, meminfo=MEMINFO, environ=None):
    """The memory this process can still get, in bytes (None when nothing says: no
    /proc/meminfo, no cgroup limit, no PYLLM_MEMORY_LIMIT)."""
    return memory_limit(cgroup_root, proc_self_cgroup, meminfo, environ)[0]


# ---- the estimates -----------------------------------------------------------------------

def _big(nbytes):
    """Bytes the C core reserves for a buffer of nbytes (pyllm_alloc_big's rounding)."""
    from . import _core
    return _core.alloc_big_size(int(nbytes))


def matrix_bytes(n, k, dtype):
    """Bytes of an [n, k] weight matrix (n outputs, k inputs) stored as dtype."""
    if dtype == "float32":
        return _big(4 * n * k)  # as given, [n, k] row-major
    if dtype == "bfloat16":
        return _big(2 * n * k)
    groups = -(-k // 32)  # K zero-padded up to a multiple of 32
    scales = -(-n * groups * 2 // 64) * 64  # f16, a buffer of their own (csrc/ops/quant.c)
    if dtype == "int8":
        return _big(n * groups * 32) + scales  # 32 int8 and an f16 scale per group
    if dtype == "int4":
        return _big(n * groups * 16) + scales  # 16 bytes of nibbles and an f16 scale per group
    if dtype == "q4_1":
        return _big(n * groups * 16) + 2 * scales  # and an f16 minimum
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


def _f32(count):
    """Bytes of a copied f32 vector (decoder.c copy_floats: big ones 2 MB-aligned)."""
    nbytes = 4 * count
    return _big(nbytes) if count >= (1 << 18) else -(-nbytes // 64) * 64


def weight_bytes(config, dtype="float32", lm_head_dtype=None):
    """Bytes the C core holds for the weights of a DecoderSpec (pyllm.architectures) at
    dtype: every matrix packed at dtype, the lm_head at its own (pyllm.dtypes.resolve_lm_head_dtype;
    a copy of its own even when tied to the embeddings), the embedding table, norms and biases f32."""
    from .dtypes import resolve_lm_head_dtype
    head_dtype = resolve_lm_head_dtype(lm_head_dtype, dtype)
    d, ff, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    hd = config["head_dim"]
    qw, kvw = config["num_attention_heads"] * hd, config["num_key_value_heads"] * hd
    matrices = [(qw, d), (kvw, d), (kvw, d), (d, qw), (ff, d), (d, ff)]
    if config["mlp"] == "swiglu":
        matrices.append((ff, d))  # the gate
    biases = (([qw, kvw, kvw] if config["qkv_bias"] else []) + ([d] if config["o_bias"] else [])
              + ([ff] * (len(matrices) - 5) + [d] if config["mlp_bias"] else []))
    shifted = config["norm"] == "layer"  # a LayerNorm has a shift beside its scale
    norms = 4 if shifted else 2
    per_layer = (sum(matrix_bytes(n, k, dtype) for n, k in matrices)
                 + sum(-(-4 * n // 64) * 64 for n in biases) + norms * _f32(d))
    embedding = _f32(v * d)
    extras = (2 if shifted else 1) * (2 if config["embedding_norm"] else 1) * _f32(d)  # final (+ embedding) norm
    # the layer structs and their small buffers: ~2 kB a matrix, measured
    layer_table = (config["num_hidden_layers"] * len(matrices) + 1) * 2048
    return config["num_hidden_layers"] * per_layer + embedding + matrix_bytes(v, d, head_dtype) + extras + layer_table


def kv_cache_bytes(config, batch, capacity, element_bytes=None):
    """Bytes of a KV cache for batch rows of capacity positions (csrc/models/kv_cache.c): keys and
    values of every layer, then a validity byte and an int32 position per slot and an int64
    length per row. element_bytes: of each key and value; None takes the parsed config's KV
    cache type (its "kv_type", set by Model.from_arrays; float32 when absent)."""
    if element_bytes is None:
        from .dtypes import KV_DTYPE_BYTES, KV_DTYPES
        names = {code: name for name, code in KV_DTYPES.items()}
        element_bytes = KV_DTYPE_BYTES[names[config.get("kv_type", KV_DTYPES["float32"])]]
    kvw = config["num_key_value_heads"] * config["head_dim"]
    kv = config["num_hidden_layers"] * batch * capacity * kvw * element_bytes
    return 2 * _big(kv) + batch * capacity * 5 + batch * 8


# ---- the check ---------------------------------------------------------------------------

def format_bytes(nbytes):
    """'27.0 GB', '512.0 MB', '3.2 kB' (powers of 1000, as disks and RAM are sold)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{int(nbytes)} bytes"


def check_fits(need_bytes, what, suggestion=None, **limit_options):
    """Raise MemoryError when need_bytes exceed what the process can still get.

    what says what needs the memory ("loading this model as float32"); suggestion, a string or
    a function of the available bytes returning one (or None), says what would fit. Does
    nothing when the limit is unknown. limit_options go to memory_limit (tests point them at
    fake files)."""
    limit, source = memory_limit(**limit_options)
    if limit is None or need_bytes <= limit:
        return
    if callable(suggestion):
        suggestion = suggestion(limit)
    message = (f"{what} needs {format_bytes(need_bytes)} but the process can have "
               f"{format_bytes(limit)} ({source})")
    raise MemoryError(message + (f"; {suggestion}" if suggestion else ""))


def check_weights(config, dtype, lm_head_dtype=None, transient_bytes=0):
    """MemoryError before a load whose weights at dtype cannot fit, naming a dtype that would.
    transient_bytes: a buffer held while packing on top (a GGUF tensor converted through float32)."""
    need = weight_bytes(config, dtype, lm_head_dtype) + transient_bytes

    def smaller_dtype(limit):
        for other in DTYPES[DTYPES.index(dtype) + 1:] if dtype in DTYPES else ():
            other_need = weight_bytes(config, other)
            if other_need <= limit:
                return f"dtype={other!r} needs {format_bytes(other_need)} and would fit"
        smallest = weight_bytes(config, DTYPES[-1])
        return f"no dtype fits: even dtype='int4' needs {format_bytes(smallest)}"

    check_fits(need, f"loading this model as {dtype}", smaller_dtype)


def check_kv_cache(need_bytes, batch, capacity):
    """MemoryError before allocating a KV cache that cannot fit, saying how many positions
    would. The C core calls this (csrc/python/py_memory.c) with the bytes it would reserve."""
    def fewer_positions(limit):
        per_position = need_bytes / capacity
        fit = int(limit // per_position) if per_position else capacity
        rows = f"{batch} rows" if batch > 1 else "one row"
        if fit < 1:
            return f"not even one position of {rows} fits"
        return (f"at most {fit:,} positions of {rows} would fit (pass a smaller n_ctx, "
                f"new_cache capacity or max_new_tokens)")

    rows = f"{batch:,} row{'s' if batch > 1 else ''}"
    check_fits(need_bytes, f"a KV cache of {rows} x {capacity:,} positions", fewer_positions)


# ---- what one call allocates on top of the weights and the KV cache ---------------------------

_ATTN_ROWS_PER_PASS = 8  # csrc/ops/attention.c pyllm_attention_rows_per_pass: query rows one pass scores


def workspace_bytes(config, tokens, batch, capacity, threads=None):
    """Bytes of the decoder's workspace for a call of `tokens` new tokens over all rows of a cache
    of batch x capacity (csrc/models/decoder.c reserve_buffers): activations per token, rotary
    tables, and each thread's attention scores over the capacity."""
    from . import _core
    d, ff, hd = config["hidden_size"], config["intermediate_size"], config["head_dim"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    qw, kvw = heads * hd, kv_heads * hd
    per_token = 2 * d + 2 * qw + 2 * kvw + 2 * ff + hd + 2  # x, h, q, k, v, attn, gate, up, cos, sin, position
    threads = _core.get_num_threads() if threads is None else threads
    return 4 * (tokens * per_token + batch * (hd // 2 + 2) + threads * _ATTN_ROWS_PER_PASS * capacity)


def check_call(config, batch, tokens, capacity, output_bytes, what, new_cache=True, threads=None):
    """MemoryError before a forward or generate call whose workspace (batch x tokens new tokens
    over a capacity of positions), output arrays (output_bytes) and, when the call makes one
    (new_cache), KV cache cannot fit together; that cache alone is checked first, with
    check_kv_cache's message."""
    kv = 0
    if new_cache:
        kv = kv_cache_bytes(config, batch, capacity)
        check_kv_cache(kv, batch, capacity)
    need = kv + workspace_bytes(config, batch * tokens, batch, capacity, threads) + output_bytes
    check_fits(need, what + " (KV cache, workspace and outputs)")


def forward_output_bytes(config, batch, seq, keep, hidden_states):
    """Bytes of a forward call's outputs: float32 logits [batch, keep, vocab] and, when asked,
    hidden states [layers + 1, batch, seq, hidden]."""
    out = 4 * batch * keep * config["vocab_size"]
    if hidden_states:
        out += 4 * (config["num_hidden_layers"] + 1) * batch * seq * config["hidden_size"]
    return out


def generate_output_bytes(batch, prompt, max_new, top_n, logprobs):
    """Bytes of generate's outputs (csrc/python/py_generate.c): int64 sequences [batch, prompt +
    max_new] and counts, with logprobs float32 [batch, max_new] and top ids / values [batch,
    max_new, top_n] (12 bytes an entry)."""
    out = 8 * batch * (prompt + max_new) + 8 * batch
    if logprobs:
        out += 4 * batch * max_new + 12 * batch * max_new * top_n
    return out
