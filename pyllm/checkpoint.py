"""Reading Hugging Face checkpoints from disk: config.json, generation_config.json and
safetensors weights (one file or shards named by model.safetensors.index.json).

Weights are mapped, not read: every tensor of a file is a NumPy view into one read-only
mmap of that file (zero copy for F32/F16/F64/integers), which stays open as long as any of
its arrays lives. BF16 has no NumPy dtype: it is widened to float32 (a copy), or, with
bf16="bits", kept as its raw bits in a :class:`BFloat16Bits` view (zero copy) for the C core
to convert while it packs. A :class:`Weights` dict can drop a tensor's pages from memory once
it has been packed (the file stays mapped; the pages come back from disk if read again).

Everything is checked before a view is made, so a damaged file raises a clear ValueError
naming the file and tensor instead of producing an array that reads past the file's end.
"""
import json
import math
import mmap
import os

import numpy as np

from .limits import MAX_JSON_BYTES, MAX_SAFETENSORS_HEADER, MAX_TENSOR_DIMS, check_file_size

CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"

_MAX_HEADER_BYTES = MAX_SAFETENSORS_HEADER

# safetensors dtype name -> little-endian NumPy dtype it is read as.
_SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # widened to float32 after reading
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


# ---------------------------------------------------------------------------------------
# JSON files


def _model_dir(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model directory not found: {path}")
    if not os.path.isdir(path):
        raise NotADirectoryError(f"expected a model directory, got a file: {path}")
    return path


def _read_json_object(path, what):
    """The JSON object stored in path; ValueError (naming the file and position) otherwise. The
    file's size is checked before it is read (pyllm.limits.MAX_JSON_BYTES)."""
    try:
        check_file_size(path, MAX_JSON_BYTES, what)
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: {what} is not UTF-8 text (invalid byte at offset {e.start})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: {what} is not valid JSON: {e.msg} at line {e.lineno} "
                         f"column {e.colno} (char {e.pos})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: {what} must hold a JSON object, got a JSON {_json_kind(value)}")
    return value


def _json_kind(value):
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def load_config(model_dir):
    """The model's config.json as a dict."""
    model_dir = _model_dir(model_dir)
    return _read_json_object(os.path.join(model_dir, CONFIG_NAME), "config.json")


def load_generation_config(model_dir):
    """generation_config.json as a dict, or {} when the model has none."""
    model_dir = _model_dir(model_dir)
    path = os.path.join(model_dir, GENERATION_CONFIG_NAME)
    if not os.path.exists(path):
        return {}
    return _read_json_object(path, "generation_config.json")


# ---------------------------------------------------------------------------------------
# safetensors


class BFloat16Bits(np.ndarray):
    """A uint16 array holding bfloat16 bit patterns (the top half of a float32): the marker the
    model loaders and the C core read bf16 weights by, without widening them."""


class Weights(dict):
    """{name: array} from safetensors files, remembering where each tensor's bytes lie in its
    file's mapping so :meth:`release` can hand them back to the page cache."""

    def __init__(self):
        super().__init__()
        self._ranges = {}

    def _place(self, name, mapped, offset, nbytes):
        if isinstance(mapped, mmap.mmap) and nbytes:
            self._ranges[name] = (mapped, offset, nbytes)

    def release(self, names):
        """Drop the mapped pages of these tensors from this process's memory (MADV_DONTNEED on a
        read-only file mapping: nothing is lost, a later read faults them back in)."""
        if not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        for name in names:
            where = self._ranges.get(name)
            if where is None:
                continue
            mapped, offset, nbytes = where
            start = offset // page * page
            try:
                mapped.madvise(mmap.MADV_DONTNEED, start, offset + nbytes - start)
            except (OSError, ValueError):
                pass  # advice only: a platform that refuses it just keeps the pages


class _MappedFile:
    """A read-only mmap of a whole file plus its size (mmap cannot map an empty file)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.size = os.fstat(f.fileno()).st_size
            self.buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else b""


def _parse_header(path, mapped):
    """(tensor entries, data start offset) of a safetensors file, fully validated."""
    size = mapped.size
    if size < 8:
        raise ValueError(f"{path}: not a safetensors file: {size} bytes is too short for the "
                         f"8-byte header length")
    header_len = int.from_bytes(mapped.buffer[:8], "little")
    if header_len > size - 8:
        raise ValueError(f"{path}: header length {header_len} runs past the end of the file "
                         f"({size} bytes): the file is truncated or not safetensors")
    if header_len > _MAX_HEADER_BYTES:
        raise ValueError(f"{path}: header length {header_len} is above pyllm's limit of {_MAX_HEADER_BYTES} bytes")
    raw = bytes(mapped.buffer[8:8 + header_len])
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: safetensors header is not UTF-8 (invalid byte at header offset "
                         f"{e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: safetensors header is not valid JSON: {e.msg} at char {e.pos}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: safetensors header must be a JSON object, got a JSON {_json_kind(header)}")

    data_start = 8 + header_len
    data_size = size - data_start
    entries = {}
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict):
                raise ValueError(f"{path}: __metadata__ must be a JSON object of strings")
            continue
        entries[name] = _check_entry(path, name, info, data_size)

    # Tensors may not share bytes.
    spans = sorted((e[2], e[3], n) for n, e in entries.items() if e[3] > e[2])
    for (b0, e0, n0), (b1, _, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ValueError(f"{path}: tensors '{n0}' (bytes {b0}..{e0}) and '{n1}' (from byte {b1}) overlap")
    return entries, data_start


def _check_entry(path, name, info, data_size):
    """(dtype name, shape, begin, end) of one header entry, or ValueError."""
    where = f"{path}: tensor '{name}'"
    if not isinstance(info, dict):
        raise ValueError(f"{where}: header entry must be an object, got a JSON {_json_kind(info)}")
    dtype_name, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype_name, str):
        raise ValueError(f"{where}: missing or non-string 'dtype'")
    if dtype_name not in _SAFETENSORS_DTYPES:
        raise ValueError(f"{where}: dtype {dtype_name} is not supported (expected one of "
                         f"{', '.join(_SAFETENSORS_DTYPES)})")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"{where}: 'shape' must be a list of non-negative integers, got {shape!r}")
    if len(shape) > MAX_TENSOR_DIMS:
        raise ValueError(f"{where}: 'shape' has {len(shape)} dimensions, above pyllm's limit of {MAX_TENSOR_DIMS}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(o) is int and o >= 0 for o in offsets)):
        raise ValueError(f"{where}: 'data_offsets' must be [begin, end] of non-negative integers, "
                         f"got {offsets!r}")
    begin, end = offsets
    if end < begin:
        raise ValueError(f"{where}: data_offsets [{begin}, {end}] end before they begin")
    expected = math.prod(shape) * _SAFETENSORS_DTYPES[dtype_name].itemsize
    if end - begin != expected:
        raise ValueError(f"{where}: data_offsets [{begin}, {end}] hold {end - begin} bytes but "
                         f"{dtype_name} of shape {shape} needs {expected}")
    if end > data_size:
        raise ValueError(f"{where}: data_offsets [{begin}, {end}] run past the end of the data "
                         f"({data_size} bytes): the file is truncated")
    return dtype_name, tuple(shape), begin, end


def _tensor_view(mapped, data_start, entry, bf16="float32"):
    dtype_name, shape, begin, end = entry
    dtype = _SAFETENSORS_DTYPES[dtype_name]
    count = (end - begin) // dtype.itemsize
    if count == 0:
        array = np.zeros(shape, dtype=dtype)
    else:
        offset = data_start + begin
        array = np.frombuffer(mapped.buffer, dtype=dtype, count=count, offset=offset).reshape(shape)
        if offset % dtype.itemsize:
            array = array.copy()  # the C core wants aligned data; rare in practice
    if dtype_name == "BF16" and bf16 == "bits":
        return array.view(BFloat16Bits)
    if dtype_name == "BF16":
        # bfloat16 is the top half of a float32; shift in place to hold one copy only.
        widened = array.astype(np.uint32)
        widened <<= 16
        array = widened.view(np.float32)
    return array


def load_safetensors(path, names=None, bf16="float32"):
    """Tensors of one safetensors file as a :class:`Weights` {name: array} (all of them, or those
    in names); BF16 tensors widened to float32, or with bf16="bits" as :class:`BFloat16Bits`."""
    if bf16 not in ("float32", "bits"):
        raise ValueError(f"bf16 must be 'float32' or 'bits', got {bf16!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"safetensors file not found: {path}")
    from . import file_kinds
    file_kinds.expect(path, {file_kinds.SAFETENSORS}, "a safetensors file")
    mapped = _MappedFile(path)
    entries, data_start = _parse_header(path, mapped)
    if names is None:
        names = list(entries)
    out = Weights()
    for name in names:
        if name not in entries:
            raise ValueError(f"{path}: tensor '{name}' is not in this file")
        out[name] = _tensor_view(mapped, data_start, entries[name], bf16)
        _, _, begin, end = entries[name]
        out._place(name, mapped.buffer, data_start + begin, end - begin)
    return out


def save_safetensors(path, tensors, metadata=None):
    """Write {name: array} as one safetensors file that the safetensors package reads.

    Tensors go in order of decreasing item size (then name), back to back, so each starts
    aligned to its item size; the header is padded with spaces to 8 bytes, as the reference
    writer does. BF16 tensors are given as :class:`BFloat16Bits` (e.g. ``bits.view(BFloat16Bits)``
    of a uint16 array)."""
    path = os.fspath(path)
    dtype_names = {dt: name for name, dt in _SAFETENSORS_DTYPES.items() if name != "BF16"}
    header, arrays, offset = {}, [], 0
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map strings to strings")
        header["__metadata__"] = dict(metadata)
    items = []
    for name, array in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"tensor name must be a string other than __metadata__, got {name!r}")
        if isinstance(array, BFloat16Bits):
            items.append((-2, name, np.asarray(array.view(np.ndarray), dtype="<u2", order="C"), "BF16"))
            continue
        array = np.asarray(array)
        key = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
        if key not in dtype_names:
            raise TypeError(f"tensor '{name}': dtype {array.dtype} cannot be stored in safetensors "
                            f"(expected one of {', '.join(str(d) for d in dtype_names)})")
        items.append((-array.dtype.itemsize, name, np.asarray(array, dtype=key, order="C"), dtype_names[key]))
    for _, name, array, dtype_name in sorted(items, key=lambda item: (item[0], item[1])):
        header[name] = {"dtype": dtype_name, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        arrays.append(array)
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for array in arrays:
            f.write(array.tobytes())


def _load_sharded(model_dir, index_path, bf16):
    index = _read_json_object(index_path, SAFETENSORS_INDEX_NAME)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index_path}: 'weight_map' must be a non-empty object of tensor name -> shard file")
    by_shard = {}
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise ValueError(f"{index_path}: shard for tensor '{name}' must be a file name, got {shard!r}")
        if os.path.isabs(shard) or ".." in shard.replace("\\", "/").split("/"):
            raise ValueError(f"{index_path}: shard '{shard}' for tensor '{name}' must be a file inside "
                             f"the model directory")
        by_shard.setdefault(shard, []).append(name)
    weights = Weights()
    for shard, names in by_shard.items():
        shard_path = os.path.join(model_dir, shard)
        if not os.path.exists(shard_path):
            raise FileNotFoundError(f"shard {shard_path} named by {index_path} (for tensor "
                                    f"'{names[0]}') not found")
        part = load_safetensors(shard_path, names, bf16)
        weights.update(part)
        weights._ranges.update(part._ranges)
    return weights


def load_weights(model_dir, bf16="float32"):
    """Every weight of a checkpoint directory as a :class:`Weights` {Hugging Face name: array}.

    Reads model.safetensors, else the shards listed in model.safetensors.index.json; bf16 as in
    :func:`load_safetensors`."""
    model_dir = _model_dir(model_dir)
    single = os.path.join(model_dir, SAFETENSORS_NAME)
    if os.path.exists(single):
        return load_safetensors(single, bf16=bf16)
    index = os.path.join(model_dir, SAFETENSORS_INDEX_NAME)
    if os.path.exists(index):
        return _load_sharded(model_dir, index, bf16)
    hint = ""
    if any(f.endswith(".bin") or f.endswith(".pt") for f in os.listdir(model_dir)):
        hint = " (PyTorch pickle checkpoints are not read: convert them to safetensors)"
    raise FileNotFoundError(f"no weights in {model_dir}: expected {SAFETENSORS_NAME} or "
                            f"{SAFETENSORS_INDEX_NAME}{hint}")


def load_pretrained(model_dir, bf16="float32"):
    """(config, weights, generation_config) of a Hugging Face model directory: what
    Model.from_pretrained hands to Model.from_arrays."""
    return load_config(model_dir), load_weights(model_dir, bf16), load_generation_config(model_dir)
