"""Readers of Hugging Face config.json values shared by the architecture modules: required and
optional numbers under their aliases, and the rotary settings every RoPE family writes alike."""
from .._checks import LIMITS, bounded_int, flag as _flag
from .spec import ROPE_TYPES


def first(config, keys, default=None):
    """(key, value) of the first alias present and not None, else (keys[0], default)."""
    for key in keys:
        if config.get(key) is not None:
            return key, config[key]
    return keys[0], default


def required_int(config, keys, family, limit_key=None):
    """A positive bounded int under the first alias present; ValueError naming the key(s)."""
    key, value = first(config, keys)
    if value is None:
        also = "".join(f" (or '{k}')" for k in keys[1:])
        raise ValueError(f"{family} config lacks the required key '{keys[0]}'{also}")
    return bounded_int(key, value, LIMITS[limit_key or keys[-1]])


def number(config, key, default, test=lambda x: x >= 0, expected="a number >= 0"):
    value = config.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not test(value):
        raise ValueError(f"{key} must be {expected}, got {value!r}")
    return float(value)


def flag(config, key, default):
    """A true/false key (null or absent: default); ValueError naming it for anything else."""
    return _flag(key, config.get(key), default)


def rope(config, max_position_embeddings):
    """The spec's rotary keys from either config form: newer configs carry ``rope_parameters``
    (``rope_type`` and ``rope_theta`` inside), older ones a top-level ``rope_theta`` and an
    optional ``rope_scaling`` whose kind is under ``type`` or ``rope_type``."""
    params = config.get("rope_parameters")
    if params is None:
        params = config.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise ValueError(f"rope_scaling / rope_parameters must be a dict or null, got {params!r}")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in ROPE_TYPES:
        raise ValueError(f"rope type must be one of {', '.join(ROPE_TYPES)}, got {rope_type!r}")
    theta = params.get("rope_theta", config.get("rope_theta", 10000.0))
    out = {
        "rope_type": rope_type,
        "rope_theta": number({"rope_theta": theta}, "rope_theta", 10000.0, lambda x: x > 0, "a positive number"),
        "rope_factor": 1.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "max_position_embeddings": max_position_embeddings,
        "original_max_position_embeddings": max_position_embeddings,
    }
    if rope_type != "default":
        if not isinstance(params.get("factor"), (int, float)) or isinstance(params.get("factor"), bool) \
                or not params["factor"] > 0:
            raise ValueError(f"rope scaling '{rope_type}' needs a positive 'factor', got {params.get('factor')!r}")
        out["rope_factor"] = float(params["factor"])
    if rope_type == "llama3":
        for key in ("low_freq_factor", "high_freq_factor"):
            value = params.get(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"rope scaling 'llama3' needs a positive '{key}', got {value!r}")
            out[key] = float(value)
        if out["low_freq_factor"] == out["high_freq_factor"]:
            raise ValueError("rope scaling 'llama3' needs low_freq_factor != high_freq_factor")
        original = params.get("original_max_position_embeddings", max_position_embeddings)
        out["original_max_position_embeddings"] = bounded_int("original_max_position_embeddings", original,
                                                              LIMITS["context"])
    return out
