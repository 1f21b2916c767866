"""The weight types a model can be packed in, by name, and the rules that pick one."""
import numpy as np

# dtype name -> the C core's weight type (csrc/ops/quant.h). int8 and int4 are ggml's Q8_0 and
# Q4_0 (one f16 scale per 32 input channels); q4_1 (scale and minimum) is what GGUF Q4_1 files hold.
DTYPES = {"float32": 0, "bfloat16": 1, "int8": 2, "q8_0": 2, "int4": 3, "q4_0": 3, "q4_1": 4}
DTYPE_NAMES = {code: name for name, code in DTYPES.items() if name not in ("q8_0", "q4_0")}
# A checkpoint's own type -> the dtype "auto" picks. float16 has no compute path here: bfloat16
# keeps its size (float32 would double it).
_AUTO = {"float32": "float32", "bfloat16": "bfloat16", "float16": "bfloat16"}


# The torch dtypes that mean what a pyllm dtype of that name means (torch.int8 does not: pyllm's
# int8 is a block-quantized format, not integer weights).
_TORCH_DTYPES = ("float32", "bfloat16")
_ACCEPTED = f"one of {', '.join(DTYPES)}, 'auto' or the torch dtypes torch.float32 and torch.bfloat16"


def _torch_dtype_name(argument, value):
    """"bfloat16" for torch.bfloat16 (found by its type, so torch is never imported); other values
    unchanged; ValueError naming the argument for a torch dtype pyllm has no match for."""
    kind = type(value)
    if kind.__name__ == "dtype" and kind.__module__ == "torch":
        name = str(value).replace("torch.", "")
        if name not in _TORCH_DTYPES:
            raise ValueError(f"{argument} must be {_ACCEPTED}, got {value!r}")
        return name
    return value


class _DefaultName(str):
    """A default argument value marked as such: dtype_argument tells it from the same name passed."""


# from_arrays' dtype default: "float32", yielding to a torch_dtype= given instead.
FLOAT32_DEFAULT = _DefaultName("float32")


def dtype_argument(dtype, torch_dtype):
    """The dtype a loader was asked for: dtype=, or torch_dtype= (transformers' name for it),
    each a pyllm dtype name or a torch dtype (torch.bfloat16); None when neither was given.
    TypeError when both were."""
    if torch_dtype is not None and isinstance(dtype, _DefaultName):
        dtype = None
    if dtype is not None and torch_dtype is not None:
        raise TypeError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} were both given: torch_dtype is "
                        f"transformers' name for dtype, pass one of them")
    if torch_dtype is None:
        return _torch_dtype_name("dtype", dtype)
    name = _torch_dtype_name("torch_dtype", torch_dtype)
    if name is np.float32 or (isinstance(name, str) and (name == "auto" or name in DTYPES)):
        return name
    raise ValueError(f"torch_dtype must be {_ACCEPTED}, got {torch_dtype!r}")


def resolve_dtype(dtype, config=None):
    """The canonical dtype name for a dtype argument ("auto": the checkpoint's torch_dtype)."""
    if dtype is np.float32:
        dtype = "float32"
    if dtype == "auto":
        stored = None
        if isinstance(config, dict):
            stored = config.get("torch_dtype", config.get("dtype"))
        return _AUTO.get(str(stored).replace("torch.", ""), "float32")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)} or 'auto', got {dtype!r}")
    return {"q8_0": "int8", "q4_0": "int4"}.get(dtype, dtype)


# The lm_head's default type per model dtype: one step above the blocks' where that matters.
# The output matrix decides between near-tied tokens: in bf16 it moved stories260K's greedy story
# (a 0.004 logit margin at step 186), and at 4 bits it costs most of the perplexity (as llama.cpp,
# which keeps it at Q6_K in its 4-bit mixes).
_LM_HEAD_DEFAULT = {"float32": "float32", "bfloat16": "float32", "int8": "int8", "int4": "int8", "q4_1": "int8"}


def resolve_lm_head_dtype(lm_head_dtype, dtype):
    """The lm_head's dtype: lm_head_dtype ("same": the model's), else the default for dtype."""
    if lm_head_dtype is None:
        return _LM_HEAD_DEFAULT[dtype]
    if lm_head_dtype == "same":
        return dtype
    try:
        return resolve_dtype(lm_head_dtype)
    except ValueError as e:
        raise ValueError(f"lm_head_{e} (or 'same', or None for the default)") from None


# KV cache element types -> the C core's codes (csrc/ops/attention.h).
KV_DTYPES = {"float32": 0, "bfloat16": 1, "float16": 2}
KV_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# The cache of a model below float32 is 16-bit: half the memory, and half the bytes attention reads
# per token. float16 rather than bfloat16, by measurement: the same speed (attention widens either
# to f32 in registers: benchmarks/bench_context.py), and 8x less rounding (11 bits of mantissa
# against 8): on random LLaMA models the logits move 6.5e-4 x their std from an f32 cache's with
# f16 against 5.9e-3 with bf16; on stories260K in bfloat16, 2.7e-3 against 4.5e-3, and the
# perplexity 0.005% against 0.07% (tests/test_kv_cache_dtype.py). bf16's one advantage, f32's
# range, is covered by saturating at f16's ±65504 when storing (a clipped outlier key still wins
# its softmax; an inf would make NaN scores). kv_dtype="bfloat16" remains available.
KV_DEFAULT_16BIT = "float16"


def resolve_kv_dtype(kv_dtype, dtype):
    """The KV cache's element type: kv_dtype when given ("float32", "bfloat16" or "float16"),
    else float32 for float32 models and KV_DEFAULT_16BIT for the others."""
    if kv_dtype is None:
        return "float32" if dtype == "float32" else KV_DEFAULT_16BIT
    if kv_dtype is np.float32:
        kv_dtype = "float32"
    if not isinstance(kv_dtype, str) or kv_dtype not in KV_DTYPES:
        raise ValueError(f"kv_dtype must be one of {', '.join(KV_DTYPES)} or None, got {kv_dtype!r}")
    return kv_dtype
