"""A model from a GGUF file: its config and spec from the metadata (through the architecture
registry), the dtype it runs at by default, its generation defaults, and its tensors as the C core
takes them (pyllm.model.Model.from_pretrained calls :func:`read`).

The default dtype keeps what the file holds where a kernel runs it as it is, and otherwise
converts at load (dequantized to float32 in C, then packed):

| the file's linear layers | default dtype | notes |
|---|---|---|
| all Q8_0 / all Q4_0 / all Q4_1 | int8 / int4 / q4_1 | the blocks as they are, no re-quantizing |
| all F32 | float32 | |
| all F16 or BF16 | bfloat16 | F16 has no compute path here; BF16 bits are kept |
| Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, or a mix of types | int8 | re-quantized to Q8_0 from the exact dequantized values |

int8 for the other block types because it keeps the file's 4-6-bit values within Q8_0's rounding
(a step of amax/127 per 32 against their amax/15 to /63) at about half the memory of bfloat16, and
decodes on the int8 kernels. Measured on SmolLM2 quantized by llama.cpp to Q4_K_M (which, its 576
columns not being a multiple of 256, it makes a mix of 166 Q5_0, 16 Q4_K, 14 Q6_K and 15 Q8_0
matrices), perplexity of a held text against the same file run exactly in float32: int8 (the
default) -0.05% prefill / +0.46% decode, bfloat16 +0.24% / +0.17% (tools/smollm2_q4_k_m.py).
The lm_head follows pyllm.dtypes' rule (int8 under the 4-bit dtypes): a tied Q8_0 token_embd, as
SmolLM2's, is then taken as it is. The embedding table is dequantized to float32 (one row per
token: memory, not bandwidth). ``dtype=`` asks for any other precision.
"""
import collections
import os

from . import architectures
from .gguf import GGUFError, open_gguf

# ggml type -> the dtype whose kernels run it without conversion (F16 has no compute path: bf16)
_RUNS_AS = {"F32": "float32", "F16": "bfloat16", "BF16": "bfloat16", "Q8_0": "int8", "Q4_0": "int4",
            "Q4_1": "q4_1"}
CONVERTED_DEFAULT = "int8"
_NATIVE_BLOCKS = {"Q8_0": "int8", "Q4_0": "int4", "Q4_1": "q4_1"}


def is_gguf(path):
    """Whether path is a file that starts with GGUF's magic."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def _layer_matrix_types(f):
    """Counter of the ggml types of the blocks' linear layers (blk.N.*.weight, 2-D)."""
    return collections.Counter(t.type_name for name, t in f.tensors.items()
                               if name.startswith("blk.") and len(t.shape) == 2)


def default_dtype(f):
    """The dtype a GGUF file runs at when none is asked for (see the module's table)."""
    types = _layer_matrix_types(f)
    if len(types) == 1:
        return _RUNS_AS.get(next(iter(types)), CONVERTED_DEFAULT)
    if types and set(types) <= {"F32", "F16", "BF16"}:
        return "float32" if "F32" in types else "bfloat16"
    return CONVERTED_DEFAULT


def conversion_bytes(f, dtype, lm_head_dtype):
    """Bytes of the largest float32 buffer packing holds for a tensor converted through float32
    (a block type packed as another type than its own, not as float32)."""
    largest = 0
    for name, t in f.tensors.items():
        if len(t.shape) != 2 or t.type_name in ("F32", "F16", "BF16"):
            continue
        target = lm_head_dtype if name in ("output.weight", "token_embd.weight") else dtype
        if target != "float32" and _NATIVE_BLOCKS.get(t.type_name) != target:
            largest = max(largest, 4 * t.n_elements)
    return largest


def generation_defaults(f, vocab_size):
    """generation_config.json's equivalent: the special ids (end-of-turn ids also end generation,
    as in llama.cpp's end-of-generation set). An id outside the vocabulary means none, as
    llama.cpp writes -1 (pyllm.tokenizer_gguf reads them alike)."""
    def special(meta):
        value = f.get_int(f"tokenizer.ggml.{meta}_token_id", None)
        return value if value is not None and 0 <= value < vocab_size else None

    ids = {}
    for key, meta in (("bos_token_id", "bos"), ("pad_token_id", "padding")):
        if special(meta) is not None:
            ids[key] = special(meta)
    ends = list(dict.fromkeys(e for e in map(special, ("eos", "eot", "eom")) if e is not None))
    if ends:
        ids["eos_token_id"] = ends[0] if len(ends) == 1 else ends
    return ids


def read(path, n_ctx=None):
    """(GGUFFile, config dict, DecoderSpec, generation defaults) of a GGUF model file; GGUFError
    naming the file and the problem for anything that cannot run."""
    f = open_gguf(path)
    try:
        config = architectures.config_from_gguf(f)
        spec = architectures.spec_from_gguf(f, n_ctx)
    except GGUFError:
        raise
    except ValueError as e:
        raise GGUFError(f"{f.path}: {e}") from None
    generation = generation_defaults(f, spec["vocab_size"])
    config.update(generation)
    return f, config, spec, generation


def weights(f, spec):
    """The checked tensors under canonical names (views into the file; ggml blocks as
    pyllm.gguf.GGMLMatrix); GGUFError naming the file and the tensor otherwise."""
    try:
        return architectures.weights_from_gguf(spec, f)
    except GGUFError:
        raise
    except (ValueError, TypeError) as e:
        raise GGUFError(f"{f.path}: {e}") from None
