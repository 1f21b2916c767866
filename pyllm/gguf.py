"""Reading GGUF files (versions 2 and 3), the format llama.cpp writes.

A GGUF file is a header (magic ``GGUF``, version, tensor and key counts), metadata key/value
pairs, tensor infos (name, shape, ggml type, offset), padding to ``general.alignment``, then
the tensor data. :func:`open_gguf` parses and checks all of it and maps the file read-only:
tensor data is never copied until asked for (``tensor_bytes`` and ``tensor_array`` are
zero-copy NumPy views into one mmap, which stays open while any view lives).

Every count read from the file is checked against the bytes that are left before anything is
allocated, and every problem raises :class:`GGUFError` (a ValueError) naming the file and what
is wrong: a truncated file, a bad magic or version, an unknown value or tensor type, a tensor
past the end of the file, a tensor whose size disagrees with its shape and type, or metadata of
the wrong type (through the typed getters ``get_str``, ``get_int``, ... that users of the
metadata call).

Shapes: GGUF lists dimensions innermost first (``ne``); ``GGUFTensor.shape`` is the NumPy
(row-major) order, ``ne`` reversed, so a linear layer's weight is ``[out, in]`` as in PyTorch.
See docs/gguf.md for the API and the conventions a model loader needs.
"""
import math
import mmap
import os
import struct

import numpy as np

from . import limits

__all__ = ["GGMLMatrix", "GGUFError", "GGUFFile", "GGUFTensor", "open_gguf", "REQUIRED", "GGML_TYPES"]

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # ggml tensors have at most 4 dimensions

# ggml type id -> (name, elements per block, bytes per block): every type a GGUF file may
# hold, so any file can be read; pyllm dequantizes the ones in DEQUANTIZABLE.
GGML_TYPES = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}
TYPE_IDS = {name: type_id for type_id, (name, _, _) in GGML_TYPES.items()}
DEQUANTIZABLE = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K")
# Types whose elements NumPy holds as they are (BF16 has no NumPy dtype: its raw bits, uint16).
_PLAIN_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F64": "<f8",
                 "I8": "i1", "I16": "<i2", "I32": "<i4", "I64": "<i8"}

# Metadata value types: id -> (name, struct format or None for string/array).
_VALUE_TYPES = {
    0: ("uint8", "<B"), 1: ("int8", "<b"), 2: ("uint16", "<H"), 3: ("int16", "<h"),
    4: ("uint32", "<I"), 5: ("int32", "<i"), 6: ("float32", "<f"), 7: ("bool", "<B"),
    8: ("string", None), 9: ("array", None), 10: ("uint64", "<Q"), 11: ("int64", "<q"),
    12: ("float64", "<d"),
}
_STRING, _ARRAY, _BOOL = 8, 9, 7
_NUMPY_OF = {0: "u1", 1: "i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4", 6: "<f4", 10: "<u8", 11: "<i8",
             12: "<f8"}
_INT_TYPES = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64"}


REQUIRED = object()  # the default of a getter whose key must be present


class GGUFError(ValueError):
    """A GGUF file that cannot be read as it is; the message names the file and the problem."""


class GGMLMatrix(tuple):
    """A matrix of ggml blocks as the C core takes it, unconverted: the tuple (ggml type id,
    uint8 [rows, bytes per row]) — a view into the mapped file until rows are reordered — with
    the matrix's logical ``shape`` (rows, columns), ``type_name`` and ``nbytes``."""

    def __new__(cls, type_id, blocks, shape):
        self = super().__new__(cls, (int(type_id), blocks))
        self.shape = tuple(shape)
        return self

    @property
    def type_id(self):
        return self[0]

    @property
    def blocks(self):
        return self[1]

    @property
    def type_name(self):
        return GGML_TYPES[self[0]][0]

    @property
    def nbytes(self):
        return self[1].nbytes

    def with_rows(self, function):
        """The same type with its rows reordered or selected by function (of the uint8 rows)."""
        blocks = np.ascontiguousarray(function(self[1]))
        return GGMLMatrix(self[0], blocks, (blocks.shape[0], self.shape[1]))

    def dequantize(self):
        from . import _core
        n = self.shape[0] * self.shape[1]
        return _core._gguf_dequantize(self[0], np.ascontiguousarray(self[1]).reshape(-1), n).reshape(self.shape)

    def __repr__(self):
        return f"GGMLMatrix({self.type_name}, shape={list(self.shape)})"


class GGUFTensor:
    """One tensor's info: ``name``, ``type_id`` / ``type_name`` (ggml type), ``ne`` (GGUF order,
    innermost first), ``shape`` (NumPy order), ``n_elements``, ``nbytes`` and ``offset`` (absolute
    byte offset in the file)."""

    __slots__ = ("name", "type_id", "type_name", "ne", "shape", "n_elements", "nbytes", "offset")

    def __init__(self, name, type_id, ne, nbytes, offset):
        self.name = name
        self.type_id = type_id
        self.type_name = GGML_TYPES[type_id][0]
        self.ne = tuple(ne)
        self.shape = tuple(reversed(self.ne))
        self.n_elements = math.prod(self.ne)
        self.nbytes = nbytes
        self.offset = offset

    def __repr__(self):
        return f"GGUFTensor({self.name!r}, {self.type_name}, shape={list(self.shape)}, offset={self.offset})"


class _Reader:
    """Little-endian reads from the mapped file with bounds checks that name what was being read."""

    def __init__(self, path, buf, size):
        self.path, self.buf, self.size, self.pos = path, buf, size, 0

    def fail(self, message):
        raise GGUFError(f"{self.path}: {message}")

    def need(self, n, what):
        if n > self.size - self.pos:
            self.fail(f"truncated file: {what} needs {n} bytes at offset {self.pos}, "
                      f"but the file ends at {self.size}")

    def scalar(self, fmt, nbytes, what):
        self.need(nbytes, what)
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += nbytes
        return value

    def u32(self, what):
        return self.scalar("<I", 4, what)

    def u64(self, what):
        return self.scalar("<Q", 8, what)

    def string(self, what):
        n = self.u64(f"the length of {what}")
        self.check_string(n, what)
        self.need(n, f"{what} ({n} bytes)")
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            self.fail(f"{what} is not valid UTF-8 (byte {e.start} of {n})")

    def check_string(self, n, what):
        if n > limits.MAX_GGUF_STRING:
            self.fail(f"{what} is a string of {n} bytes, above pyllm's limit of {limits.MAX_GGUF_STRING}")

    def check_objects(self, count, what, per_element):
        """A Python object per element (a str, an array) takes far more memory than its bytes in
        the file (12 bytes make an empty array, 8 an empty string): MemoryError before making
        count of them when count x per_element bytes cannot fit."""
        from . import memory
        memory.check_fits(count * per_element, f"reading {what} of {self.path} ({count:,} elements)")

    def string_array(self, count, what):
        """count strings; one pass, each string decoded once (a 250k-token vocabulary is common)."""
        buf, pos, size = self.buf, self.pos, self.size
        unpack = struct.Struct("<Q").unpack_from
        out = [None] * count
        for i in range(count):
            if size - pos < 8:
                self.pos = pos
                self.need(8, f"the length of {what} element {i}")
            n = unpack(buf, pos)[0]
            pos += 8
            if n > limits.MAX_GGUF_STRING:
                self.pos = pos
                self.check_string(n, f"{what} element {i}")
            if n > size - pos:
                self.pos = pos
                self.need(n, f"{what} element {i} ({n} bytes)")
            try:
                out[i] = buf[pos:pos + n].decode("utf-8")
            except UnicodeDecodeError as e:
                self.fail(f"{what} element {i} is not valid UTF-8 (byte {e.start} of {n})")
            pos += n
        self.pos = pos
        return out

    def value(self, type_id, what, depth=0):
        """(value, type name) of one metadata value; arrays become NumPy arrays (numbers) or lists.
        depth: how many arrays hold this value (limits.MAX_GGUF_ARRAY_DEPTH bounds the nesting)."""
        if type_id not in _VALUE_TYPES:
            self.fail(f"{what} has unknown value type {type_id} (known: 0-12)")
        name, fmt = _VALUE_TYPES[type_id]
        if type_id == _STRING:
            return self.string(what), name
        if type_id == _ARRAY:
            elem_type = self.u32(f"the element type of {what}")
            count = self.u64(f"the length of {what}")
            if elem_type not in _VALUE_TYPES:
                self.fail(f"{what} is an array of unknown value type {elem_type} (known: 0-12)")
            elem_name, elem_fmt = _VALUE_TYPES[elem_type]
            if count > limits.MAX_GGUF_ARRAY:
                self.fail(f"{what} claims {count} elements, above pyllm's limit of {limits.MAX_GGUF_ARRAY}")
            if elem_type == _ARRAY and depth + 2 > limits.MAX_GGUF_ARRAY_DEPTH:
                self.fail(f"{what} nests arrays {depth + 2} deep, above pyllm's limit of "
                          f"{limits.MAX_GGUF_ARRAY_DEPTH}")
            # every element takes at least 1 byte (8 for a string's length, 12 for an array's header)
            least = {_STRING: 8, _ARRAY: 12}.get(elem_type) or struct.calcsize(elem_fmt)
            if count > (self.size - self.pos) // least:
                self.fail(f"{what} claims {count} elements of type {elem_name} ({count * least} bytes at least), "
                          f"but only {self.size - self.pos} bytes are left in the file")
            if elem_type in (_STRING, _ARRAY):  # measured: ~60 bytes a short str, ~150 an empty array
                self.check_objects(count, what, 96 if elem_type == _STRING else 256)
            if elem_type == _STRING:
                return self.string_array(count, what), f"array[{elem_name}]"
            if elem_type == _ARRAY:
                return [self.value(_ARRAY, f"{what} element {i}", depth + 1)[0] for i in range(count)], "array[array]"
            nbytes = count * struct.calcsize(elem_fmt)
            arr = np.frombuffer(self.buf, dtype=_NUMPY_OF.get(elem_type, "u1"), count=count, offset=self.pos).copy()
            self.pos += nbytes
            if elem_type == _BOOL:
                if arr.size and arr.max() > 1:
                    self.fail(f"{what} holds a bool that is neither 0 nor 1")
                arr = arr.astype(bool)
            return arr, f"array[{elem_name}]"
        v = self.scalar(fmt, struct.calcsize(fmt), what)
        if type_id == _BOOL:
            if v > 1:
                self.fail(f"{what} is a bool of value {v} (must be 0 or 1)")
            v = bool(v)
        return v, name


def _shape_text(ne):
    return "[" + ", ".join(str(d) for d in reversed(ne)) + "]"


class GGUFFile:
    """A parsed, validated, memory-mapped GGUF file.

    ``path``, ``version``, ``alignment``, ``metadata`` (dict key -> value: int, float, bool, str,
    a NumPy array for numeric arrays, a list for arrays of strings), ``value_types`` (key -> type
    name such as ``"uint32"`` or ``"array[string]"``), ``tensors`` (dict name -> :class:`GGUFTensor`
    in file order) and ``data_offset`` (where the tensor data starts)."""

    def __init__(self, path):
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            # mmap cannot map an empty file; such a file is truncated anyway
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self.size = size
        self._parse()

    # -- parsing --------------------------------------------------------------------------

    def _parse(self):
        r = _Reader(self.path, self._map, self.size)
        r.need(4, "the magic")
        magic = bytes(self._map[:4])
        if magic != GGUF_MAGIC:
            r.fail(f"not a GGUF file: it starts with {magic!r}, not b'GGUF'")
        r.pos = 4
        version = r.u32("the version")
        if version not in (2, 3):
            swapped = struct.unpack("<I", struct.pack(">I", version))[0]
            if swapped in (2, 3):
                r.fail(f"big-endian GGUF (version {swapped}) is not supported")
            r.fail(f"GGUF version {version} is not supported (versions 2 and 3 are; version 1 used 32-bit "
                   "counts and is obsolete)")
        self.version = version
        n_tensors = r.u64("the tensor count")
        n_kv = r.u64("the metadata count")
        # a key/value takes at least 13 bytes (key length, type, 1-byte value); a tensor info 32
        left = self.size - r.pos
        if n_kv > limits.MAX_GGUF_METADATA:
            r.fail(f"the header claims {n_kv} metadata pairs, above pyllm's limit of {limits.MAX_GGUF_METADATA}")
        if n_tensors > limits.MAX_GGUF_TENSORS:
            r.fail(f"the header claims {n_tensors} tensors, above pyllm's limit of {limits.MAX_GGUF_TENSORS}")
        if n_kv > left // 13:
            r.fail(f"the header claims {n_kv} metadata pairs, more than the {left} bytes left can hold: "
                   "the file is truncated or its header damaged")
        if n_tensors > left // 32:
            r.fail(f"the header claims {n_tensors} tensors, more than the {left} bytes left can hold: "
                   "the file is truncated or its header damaged")

        self.metadata, self.value_types = {}, {}
        for i in range(n_kv):
            key = r.string(f"metadata key {i}")
            if key in self.metadata:
                r.fail(f"metadata key {key!r} appears twice")
            type_id = r.u32(f"the value type of metadata key {key!r}")
            value, type_name = r.value(type_id, f"metadata value {key!r}")
            self.metadata[key] = value
            self.value_types[key] = type_name

        self.alignment = DEFAULT_ALIGNMENT
        if "general.alignment" in self.metadata:
            a = self.metadata["general.alignment"]
            if self.value_types["general.alignment"] != "uint32":
                r.fail(f"general.alignment must be a uint32, got {self.value_types['general.alignment']}")
            if a == 0 or a & (a - 1):
                r.fail(f"general.alignment is {a}, not a power of two")
            self.alignment = a

        infos = []
        names = set()
        for i in range(n_tensors):
            name = r.string(f"the name of tensor {i}")
            if name in names:
                r.fail(f"tensor name {name!r} appears twice")
            names.add(name)
            n_dims = r.u32(f"the dimension count of tensor {name!r}")
            if not 1 <= n_dims <= MAX_DIMS:
                r.fail(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} are possible)")
            r.need(8 * n_dims, f"the shape of tensor {name!r}")
            ne = struct.unpack_from(f"<{n_dims}Q", self._map, r.pos)
            r.pos += 8 * n_dims
            type_id = r.u32(f"the type of tensor {name!r}")
            offset = r.u64(f"the offset of tensor {name!r}")
            infos.append(self._check_info(r, name, ne, type_id, offset))

        self.data_offset = -(-r.pos // self.alignment) * self.alignment
        self.tensors = {}
        expected = 0
        for name, ne, type_id, offset, nbytes in infos:
            # tensors follow each other in file order, each padded to the alignment (as ggml writes them)
            if offset % self.alignment:
                r.fail(f"tensor {name!r} starts at data offset {offset}, not a multiple of the alignment "
                       f"{self.alignment}")
            if offset != expected:
                r.fail(f"tensor {name!r} starts at data offset {offset}, but the tensors before it end at "
                       f"{expected} by their shapes and types: a tensor's size disagrees with its shape and type")
            start = self.data_offset + offset
            if start + nbytes > self.size:
                r.fail(f"tensor {name!r} ({GGML_TYPES[type_id][0]}, shape {_shape_text(ne)}) needs bytes "
                       f"{start} to {start + nbytes}, past the end of the file ({self.size} bytes): "
                       "the file is truncated or the offset is wrong")
            self.tensors[name] = GGUFTensor(name, type_id, ne, nbytes, start)
            expected = offset + -(-nbytes // self.alignment) * self.alignment

    def _check_info(self, r, name, ne, type_id, offset):
        if type_id not in GGML_TYPES:
            r.fail(f"tensor {name!r} has unknown ggml type {type_id}")
        type_name, block, block_bytes = GGML_TYPES[type_id]
        n = 1
        for d in ne:
            if d >= 1 << 62:
                r.fail(f"tensor {name!r} has an impossible dimension {d}")
            n *= d
        if n >= 1 << 62:
            r.fail(f"tensor {name!r} has {n} elements: impossible")
        if ne[0] % block:
            r.fail(f"tensor {name!r} of type {type_name} has rows of {ne[0]} elements, not a multiple of its "
                   f"block size {block}: its size cannot match its shape and type")
        if offset >= 1 << 62:
            r.fail(f"tensor {name!r} has an impossible offset {offset}, past the end of the file")
        return name, ne, type_id, offset, n // block * block_bytes

    # -- metadata -------------------------------------------------------------------------

    def _typed(self, key, accept, expected, default):
        if key not in self.metadata:
            if default is REQUIRED:
                raise GGUFError(f"{self.path}: metadata key {key!r} is missing")
            return default
        if not accept(self.value_types[key]):
            raise GGUFError(f"{self.path}: metadata key {key!r} is {self.value_types[key]}, expected {expected}")
        return self.metadata[key]

    def get_str(self, key, default=None):
        """A string value; ``default`` when the key is absent (``REQUIRED``: absence is an error)."""
        return self._typed(key, lambda t: t == "string", "a string", default)

    def get_int(self, key, default=None):
        """An integer value of any integer type, as a Python int."""
        value = self._typed(key, lambda t: t in _INT_TYPES, "an integer", default)
        return int(value) if key in self.metadata else value

    def get_count(self, key, limit, default=REQUIRED):
        """A positive integer value of at most limit (pyllm.limits), as a Python int; GGUFError
        naming the file, the key, the value and the limit otherwise. default as get_int's."""
        value = self.get_int(key, default)
        if key not in self.metadata:
            return value
        try:
            return limits.check_count(f"metadata key {key!r}", value, limit)
        except ValueError as e:
            raise GGUFError(f"{self.path}: {e}") from None

    def get_float(self, key, default=None):
        """A float32/float64 value (integers are accepted too), as a Python float."""
        value = self._typed(key, lambda t: t in ("float32", "float64") or t in _INT_TYPES, "a number", default)
        return float(value) if key in self.metadata else value

    def get_bool(self, key, default=None):
        return self._typed(key, lambda t: t == "bool", "a bool", default)

    def get_array(self, key, elem, default=None):
        """An array whose elements are ``elem``: "string", "int", "float" or a value type name."""
        def accept(t):
            if not t.startswith("array["):
                return False
            inner = t[6:-1]
            return (inner == elem or (elem == "int" and inner in _INT_TYPES)
                    or (elem == "float" and inner in ("float32", "float64")))
        return self._typed(key, accept, f"an array of {elem}", default)

    def architecture(self, supported=None):
        """``general.architecture``; with ``supported`` (names), GGUFError unless it is one of them."""
        arch = self.get_str("general.architecture", REQUIRED)
        if supported is not None and arch not in supported:
            raise GGUFError(f"{self.path}: architecture {arch!r} is not supported "
                            f"(supported: {', '.join(supported)})")
        return arch

    # -- tensor data ----------------------------------------------------------------------

    def _tensor(self, name):
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    def __iter__(self):
        """The tensor names, in file order."""
        return iter(self.tensors)

    def release(self, names):
        """Drop these tensors' mapped pages from this process's memory once they are packed
        (MADV_DONTNEED on a read-only file mapping: a later read faults them back in)."""
        if not hasattr(mmap, "MADV_DONTNEED") or not isinstance(self._map, mmap.mmap):
            return
        page = mmap.PAGESIZE
        for name in names:
            t = self.tensors.get(name)
            if t is None or not t.nbytes:
                continue
            start = t.offset // page * page
            try:
                self._map.madvise(mmap.MADV_DONTNEED, start, t.offset + t.nbytes - start)
            except (OSError, ValueError):
                pass  # advice only

    def tensor_bytes(self, name):
        """The tensor's raw bytes: a zero-copy, read-only uint8 view into the mapped file."""
        t = self._tensor(name)
        return np.frombuffer(self._map, dtype=np.uint8, count=t.nbytes, offset=t.offset)

    def tensor_array(self, name):
        """A zero-copy view: F32/F16/F64/I8-I64 as their NumPy dtype and shape; BF16 as its raw
        uint16 bits; a block type as uint8 ``shape[:-1] + (bytes per row,)`` (raw blocks)."""
        t = self._tensor(name)
        raw = self.tensor_bytes(name)
        if t.type_name in _PLAIN_DTYPES:
            return raw.view(_PLAIN_DTYPES[t.type_name]).reshape(t.shape)
        _, block, block_bytes = GGML_TYPES[t.type_id]
        return raw.reshape(t.shape[:-1] + (t.ne[0] // block * block_bytes,))

    def weight(self, name):
        """The tensor as a model loader hands it to the C core, zero copy: F32 and F16 as NumPy
        arrays, BF16 as pyllm.checkpoint.BFloat16Bits, a 2-D block tensor as a :class:`GGMLMatrix`
        (of the types the C core reads: DEQUANTIZABLE); a 1-D block tensor dequantized to float32."""
        t = self._tensor(name)
        if t.type_name not in DEQUANTIZABLE:
            raise GGUFError(f"{self.path}: tensor {name!r} is {t.type_name}; pyllm runs models whose tensors are "
                            f"{', '.join(DEQUANTIZABLE)}")
        if t.type_name in ("F32", "F16"):
            return self.tensor_array(name)
        if t.type_name == "BF16":
            from .checkpoint import BFloat16Bits
            return self.tensor_array(name).view(BFloat16Bits)
        if len(t.shape) == 2:
            return GGMLMatrix(t.type_id, self.tensor_array(name), t.shape)
        return self.dequantize(name)

    def dequantize(self, name):
        """The tensor as float32 of its shape (a new array), for the types in DEQUANTIZABLE."""
        t = self._tensor(name)
        if t.type_name not in DEQUANTIZABLE:
            raise GGUFError(f"{self.path}: tensor {name!r} is {t.type_name}; pyllm dequantizes "
                            f"{', '.join(DEQUANTIZABLE)}")
        from . import _core
        return _core._gguf_dequantize(t.type_id, self.tensor_bytes(name), t.n_elements).reshape(t.shape)


def open_gguf(path):
    """Parse and check a GGUF file; a :class:`GGUFFile`. Raises GGUFError for a damaged file."""
    return GGUFFile(path)
