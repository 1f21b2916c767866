"""The weight types a model can be packed in, by name, and the rules that pick one."""
import numpy as np

# dtype name -> the C core's weight type (csrc/ops/quant.h). int8 and int4 are ggml's Q8_0 and
# Q4_0 (one f16 scale per 32 input channels); q4_1 (scale and minimum) is what GGUF Q4_1 files hold.
DTYPES = {"float32": 0, "bfloat16": 1, "int8": 2, "q8_0": 2, "int4": 3, "q4_0": 3, "q4_1": 4}
DTYPE_NAMES = {code: name for name, code in DTYPES.items() if name not in ("q8_0", "q4_0")}
# A checkpoint's own type -> the dtype "auto" picks. float16 has no compute path here: bfloat16
# keeps its size (float32 would double it).
_AUTO = {"float32": "float32", "bfloat16": "bfloat16", "float16": "bfloat16"}


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
    return resolve_dtype(lm_head_dtype)
