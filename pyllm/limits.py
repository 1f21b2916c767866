"""Every limit pyllm puts on a count or a size that comes from a file or a call, in one place.

A count read from a file (layers, heads, vocabulary, context, a GGUF string's length...) or
passed to a call (max_new_tokens, batch rows, n_threads...) is checked here *before* anything is
sized from it: past its limit it is a ValueError naming the quantity, the value and the limit.
Memory is the other bound, checked by pyllm.memory against what the process can have.

The model limits are far above every published model (LLaMA-3.1-405B: 126 layers, 128 heads,
hidden 16384, MLP 53248; vocabularies up to 256k) and far below what would exhaust memory before
the memory check could speak.
"""
import numbers

from . import _core

# ---- a model's shape (config.json, GGUF metadata, llama2.c headers) ----------------------------
MAX_LAYERS = _core.MAX_LAYERS  # the C core sizes its per-layer tables by it (csrc/models/decoder.h)
MAX_HEADS = 4096               # 32x the most heads published (128)
MAX_HEAD_DIM = 4096            # 16x the widest head published (256)
MAX_HIDDEN = 1 << 17           # 8x the widest hidden state published (16384)
MAX_INTERMEDIATE = 1 << 20     # ~20x the widest MLP published (53248)
MAX_VOCAB = 1 << 24            # 64x the largest vocabularies (256k)
MAX_CONTEXT = 2**31 - 1        # the KV cache stores positions as int32

# ---- call arguments ----------------------------------------------------------------------------
MAX_TOKENS = MAX_CONTEXT       # max_new_tokens, max_length, min_new_tokens: never more than a context
MAX_THREADS = _core.MAX_THREADS  # the C binding's own bound on a thread count (csrc/python/py_args.h)
MAX_BATCH = 1 << 24            # rows of one call; their memory is checked on top (pyllm.memory)
MAX_STOP_STRINGS = 4096        # each step compares every stop string with each row's new text
MAX_STOP_STRING_CHARS = 1 << 16
MAX_BAD_WORDS_TOKENS = 1 << 20  # every step matches every bad word against each row
MAX_INT64 = 2**63 - 1          # what the C core takes for an option it clamps (top_k, ngram sizes)

# ---- files ---------------------------------------------------------------------------------------
MAX_JSON_BYTES = 64 << 20      # config.json, generation_config.json, tokenizer_config.json: kB in practice
MAX_TOKENIZER_BYTES = 1 << 30  # tokenizer.model / .json / llama2.c .bin: 35 MB at most in practice
MAX_SAFETENSORS_HEADER = 100 * 1000 * 1000  # the reference implementation's own cap
MAX_TENSOR_DIMS = 8            # weights have 1 to 4; NumPy refuses more than 64
MAX_GGUF_TENSORS = 1 << 20     # MAX_LAYERS x ~20 tensors a layer fit 16x over
MAX_GGUF_METADATA = 1 << 16    # key/value pairs: a few dozen in practice
MAX_GGUF_STRING = 1 << 26      # bytes of one string (chat templates: tens of kB)
MAX_GGUF_ARRAY = 1 << 25       # elements of one array: 2x MAX_VOCAB (tokens, scores, merges)
MAX_GGUF_ARRAY_DEPTH = 2       # arrays of arrays of values; deeper nesting is in no file and recurses


def is_int(value):
    """A Python or NumPy integer that is not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_count(quantity, value, limit, where=None, low=1):
    """value as an int in [low, limit]; ValueError naming where (a file, or None), the quantity,
    the value and the limit otherwise (non-integers, bools and floats included)."""
    prefix = f"{where}: " if where else ""
    if not is_int(value):
        raise ValueError(f"{prefix}{quantity} must be an integer, got {value!r}")
    value = int(value)
    if value < low:
        expected = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{prefix}{quantity} must be {expected}, got {value}")
    if value > limit:
        raise ValueError(f"{prefix}{quantity} is {value}, above pyllm's limit of {limit}")
    return value


def check_file_size(path, limit, what):
    """The size of a file that is read whole, checked before it is read: ValueError naming the
    file, its size and the limit when it is larger."""
    import os
    size = os.path.getsize(path)
    if size > limit:
        raise ValueError(f"{path}: {what} of {size} bytes is above pyllm's limit of {limit} bytes")
    return size
