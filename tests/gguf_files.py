"""Building GGUF files for tests: random valid raw blocks of every type pyllm reads, and small
files written by the gguf package's own writer (the reference for the layout)."""
import numpy as np

import gguf
from gguf import GGMLQuantizationType as GGML

# type -> byte offsets of its f16 fields inside one block (scales, minimums): the rest of a
# valid block is any bytes at all.
F16_FIELDS = {
    GGML.Q8_0: (0,), GGML.Q4_0: (0,), GGML.Q4_1: (0, 2), GGML.Q5_0: (0,), GGML.Q5_1: (0, 2),
    GGML.Q4_K: (0, 2), GGML.Q5_K: (0, 2), GGML.Q6_K: (208,),
}
BLOCK_TYPES = tuple(F16_FIELDS)
ALL_TYPES = (GGML.F32, GGML.F16, GGML.BF16) + BLOCK_TYPES


def finite_f16(rng, shape):
    """Random f16 bit patterns over the whole finite range: subnormals, zeros of both signs."""
    bits = rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)
    inf_or_nan = (bits & 0x7C00) == 0x7C00
    bits[inf_or_nan] &= np.uint16(0xBFFF)  # clear the exponent's top bit: finite
    return bits


def random_tensor_bytes(rng, qtype, rows, k):
    """uint8 [rows, bytes per row] of valid data of ggml type qtype for a [rows, k] matrix."""
    block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = rows * k // block
    if qtype == GGML.F32:
        return rng.standard_normal((rows, k)).astype(np.float32).view(np.uint8)
    if qtype == GGML.F16:
        return finite_f16(rng, (rows, k)).view(np.uint8)
    if qtype == GGML.BF16:
        bits = (rng.standard_normal((rows, k)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        return bits.view(np.uint8)
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for at in F16_FIELDS[qtype]:
        blocks[:, at:at + 2] = finite_f16(rng, (n_blocks,)).view(np.uint8).reshape(n_blocks, 2)
    return blocks.reshape(rows, k // block * block_bytes)


def write_gguf(path, metadata=(), tensors=(), alignment=None, arch="llama"):
    """A GGUF v3 file by gguf.GGUFWriter: metadata (key, value) pairs (typed by the writer) and
    tensors (name, array, raw_dtype or None)."""
    w = gguf.GGUFWriter(str(path), arch)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, value in metadata:
        if isinstance(value, tuple):  # (GGUFValueType, value[, element type])
            w.add_key_value(key, value[1], value[0], *value[2:])
        else:
            _add(w, key, value)
    for name, data, raw in tensors:
        w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def _add(w, key, value):
    if isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int):
        w.add_uint32(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    else:
        w.add_array(key, list(value))
