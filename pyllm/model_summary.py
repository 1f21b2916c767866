"""What ``repr(model)`` shows: the architecture, the parameter count, the weight type, the
context and the threads, computed from the decoder spec alone (no weights are read)."""

__all__ = ["parameter_count", "format_count", "model_repr"]


def parameter_count(spec):
    """The number of parameters of a decoder spec, counted as transformers' ``num_parameters()``
    counts them: every weight and bias once, tied embeddings once."""
    h, inter, vocab = spec["hidden_size"], spec["intermediate_size"], spec["vocab_size"]
    q = spec["num_attention_heads"] * spec["head_dim"]
    kv = spec["num_key_value_heads"] * spec["head_dim"]
    norm = 2 * h if spec["norm"] == "layer" else h  # LayerNorm has a shift, RMSNorm only a scale
    attention = h * (q + 2 * kv) + q * h + (q + 2 * kv if spec["qkv_bias"] else 0) + (h if spec["o_bias"] else 0)
    if spec["mlp"] == "swiglu":  # gate, up, down
        mlp = 3 * h * inter + (2 * inter + h if spec["mlp_bias"] else 0)
    else:  # up, down
        mlp = 2 * h * inter + (inter + h if spec["mlp_bias"] else 0)
    layers = spec["num_hidden_layers"] * (attention + mlp + 2 * norm)
    embeddings = vocab * h * (1 if spec["tie_word_embeddings"] else 2)
    return embeddings + layers + norm + (norm if spec["embedding_norm"] else 0)


def format_count(n):
    """1.10B, 135M, 4.2K: three significant digits at most, as model cards write sizes."""
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= scale:
            value = n / scale
            digits = 0 if value >= 100 else 1 if value >= 10 else 2
            return f"{value:.{digits}f}{unit}"
    return str(n)


def model_repr(model):
    spec = model.spec
    if model.closed:
        return f"Model(architecture={spec['architecture']!r}, closed)"
    return (f"Model(architecture={spec['architecture']!r}, parameters={format_count(parameter_count(spec))}, "
            f"dtype={model.dtype!r}, n_ctx={model.n_ctx}, n_threads={model.n_threads})")
