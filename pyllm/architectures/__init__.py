"""The architecture registry: every model family pyllm runs, one module each.

Each module (llama.py, bloom.py) turns each source's configuration into one DecoderSpec
(spec.py) and each source's tensor names into the canonical ones; the C core reads only the
spec. Sources: a Hugging Face directory (config.json + state dict), a llama2.c checkpoint
(header; LLaMA only), and GGUF metadata (``spec_from_gguf`` / ``weights_from_gguf``: the hook
the GGUF reader fills in). Adding a family is adding a module here (see docs/architectures.md).
"""
from .._checks import check_n_ctx, token_ids
from . import bloom, llama
from .spec import DecoderSpec, canonical_shapes

ARCHITECTURES = {module.NAME: module for module in (llama, bloom)}


def _supported():
    return "pyllm runs " + " and ".join(f"{m.FAMILY} ({m.HF_CLASSES[0]})" for m in ARCHITECTURES.values())


def get(name):
    """The module of a registry name ('llama', 'bloom'); ValueError naming it otherwise."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unsupported architecture {name!r}; {_supported()}")
    return ARCHITECTURES[name]


def hf_architecture(config):
    """The registry name of a config.json dict, from model_type and architectures (a LLaMA when
    neither is given); ValueError naming what the config says when no module runs it."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (config.json), got {type(config).__name__}")
    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if not isinstance(architectures, (list, tuple)):
        raise ValueError(f"config 'architectures' must be a list, got {architectures!r}")
    for name, module in ARCHITECTURES.items():
        listed = any(cls in architectures for cls in module.HF_CLASSES)
        if model_type == module.HF_MODEL_TYPE or (model_type is None and listed):
            if architectures and not listed:
                raise ValueError(f"config has model_type={model_type!r} but architectures={list(architectures)!r}, "
                                 f"which lacks {module.HF_CLASSES[0]}; {_supported()}")
            return name
    if model_type is None and not architectures:
        return llama.NAME
    raise ValueError(f"unsupported architecture: model_type={model_type!r}, architectures="
                     f"{list(architectures)!r}; {_supported()}")


def spec_from_hf(config, n_ctx=None, source="config"):
    """The DecoderSpec of a Hugging Face config.json dict; n_ctx: the KV-cache capacity (None:
    the family's default). Every key the loaders read is checked (type, range, pyllm.limits)
    before anything is sized from it: a ValueError starting with source (the config.json path,
    or "config" for a dict) names the key, the value and the limit."""
    n_ctx = None if n_ctx is None else check_n_ctx(n_ctx)  # a call argument: no source
    try:
        module = get(hf_architecture(config))
        for key in ("bos_token_id", "pad_token_id", "eos_token_id"):
            token_ids(key, config.get(key), many=key == "eos_token_id")
        return module.spec_from_hf(config, n_ctx)
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None


def weights_from_hf(spec, weights):
    """The checked tensors of a Hugging Face state dict under canonical names."""
    if not isinstance(weights, dict):
        raise TypeError(f"weights must be a dict of arrays, got {type(weights).__name__}")
    return get(spec["architecture"]).weights_from_hf(spec, weights)


def gguf_architecture(f):
    """The registry module of a GGUF file (a pyllm.gguf.GGUFFile) by its general.architecture;
    GGUFError naming the file and the architectures pyllm runs otherwise."""
    return get(f.architecture(supported=tuple(ARCHITECTURES)))


def config_from_gguf(f):
    """The Hugging Face config.json dict equivalent to a GGUF file's metadata."""
    return gguf_architecture(f).config_from_gguf(f)


def spec_from_gguf(f, n_ctx=None):
    """The DecoderSpec of a GGUF file, by general.architecture."""
    return gguf_architecture(f).spec_from_gguf(f, n_ctx)


def weights_from_gguf(spec, f):
    """The checked tensors of a GGUF file under canonical names (ggml blocks kept as blocks)."""
    return get(spec["architecture"]).weights_from_gguf(spec, f)


__all__ = ["ARCHITECTURES", "DecoderSpec", "canonical_shapes", "config_from_gguf", "get", "gguf_architecture",
           "hf_architecture", "spec_from_gguf",
           "spec_from_hf", "weights_from_gguf", "weights_from_hf"]
