"""PEFT LoRA adapters merged into a Hugging Face model's weights at load.

``Model.from_pretrained(base, adapters=[dir1, dir2])`` (and ``LLM``) read each directory's
``adapter_config.json`` and ``adapter_model.safetensors`` and apply them in order, in float32,
to the base's tensors under their Hugging Face names, before the registry maps the names
(BLOOM's fused query_key_value is merged as one matrix, then split like any other) and before the C
core quantizes: what runs equals peft's ``merge_and_unload()`` on the same files.

Per LoRA module (peft's rules): the delta is ``(B @ A) * scaling``, transposed for an embedding,
with ``scaling = alpha / r`` (``alpha / sqrt(r)`` under ``use_rslora``), r and alpha taken from
``rank_pattern`` / ``alpha_pattern`` when a pattern matches the module's name. Whole tensors in
the file replace the base's: a ``modules_to_save`` module's trained copy replaces that module
alone (a tied lm_head or embedding it copies is untied, as in peft), a saved base layer is
loaded into the base's tensor (a tied pair stays tied). An embedding or lm_head with more rows
resizes the vocabulary (the config's ``vocab_size`` follows).
"""
import math
import os
import re
import warnings

import numpy as np

from . import checkpoint

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_NAME = "adapter_model.bin"
_PREFIX = "base_model.model."
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")

# Settings whose adapters a merge of B @ A cannot reproduce, refused by name when set.
_REFUSED_FLAGS = {
    "use_dora": "DoRA rescales each merged column by a learned magnitude",
    "lora_bias": "the adapter trains a bias on lora_B",
    "use_qalora": "QALoRA pools the input by groups before lora_A",
    "use_bdlora": "BD-LoRA's block-diagonal factors are not plain A and B",
    "alora_invocation_tokens": "activated LoRA applies only after its invocation tokens, so it cannot be merged",
    "trainable_token_indices": "trainable tokens are stored as per-token deltas",
    "target_parameters": "LoRA on bare parameters (MoE experts) is not a module's weight",
    "layer_replication": "it duplicates layers of the base",
    "arrow_config": "Arrow routes between adapters per token",
    "kasa_config": "KaSA rewrites the base weight by SVD",
    "monteclora_config": "MonteCLoRA samples its factors",
    "ensure_weight_tying": "pyllm unties an lm_head an adapter replaces, as peft does without this option",
}
# Initialisations that change the base weights themselves: such an adapter needs that modified
# base (peft's save_pretrained(path_initial_model_for_weight_conversion=...) converts it).
_BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")
# peft's names of the embedding layers (an embedding's LoRA is stored as lora_embedding_A/B).
_EMBEDDINGS = ("model.embed_tokens", "transformer.word_embeddings", "word_embeddings")
_LM_HEAD = "lm_head"


class Adapter:
    """One adapter directory: its path, config dict, and tensors grouped by module."""

    def __init__(self, path, config, lora, loads, copies, weights_path):
        self.path = path
        self.config = config
        self.lora = lora      # module name -> {"A": array, "B": array, "embedding": bool}
        self.loads = loads    # base tensor name -> array loaded into the base's tensor (a tied pair stays tied)
        self.copies = copies  # base tensor name -> array of a modules_to_save copy (replaces that module alone)
        self.weights_path = weights_path


def adapter_paths(adapters):
    """The adapters argument (None, a path, or a list or tuple of paths) as a list of str."""
    if adapters is None:
        return []
    if isinstance(adapters, (str, os.PathLike)):
        adapters = [adapters]
    if not isinstance(adapters, (list, tuple)):
        raise TypeError(f"adapters must be a path or a list of paths to PEFT adapter directories, "
                        f"got {type(adapters).__name__}")
    paths = []
    for i, path in enumerate(adapters):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"adapters[{i}] must be a path (str or os.PathLike) to a PEFT adapter directory, "
                            f"got {type(path).__name__}")
        path = os.fsdecode(os.fspath(path))
        if not os.path.isdir(path):
            raise ValueError(f"adapters[{i}] must be a PEFT adapter directory (with {CONFIG_NAME} and "
                             f"{WEIGHTS_NAME}), got {path!r}, which is not a directory")
        paths.append(path)
    return paths


def _check_config(path, config):
    """Refuse, by name, what a merge cannot reproduce; ValueError naming the file and setting."""
    where = os.path.join(path, CONFIG_NAME)
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        raise ValueError(f"{where}: peft_type is {peft_type!r}; pyllm merges LoRA adapters only (peft_type 'LORA')")
    for key, why in _REFUSED_FLAGS.items():
        if config.get(key):
            raise ValueError(f"{where}: {key}={config[key]!r} is not supported ({why}); "
                             f"pyllm merges plain LoRA adapters (use_dora false, bias 'none')")
    bias = config.get("bias", "none")
    if bias != "none":
        raise ValueError(f"{where}: bias={bias!r} is not supported (the adapter trains the base's biases); "
                         "pyllm accepts bias 'none' only")
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(_BASE_CHANGING_INITS):
        raise ValueError(f"{where}: init_lora_weights={init!r} is not supported: that initialisation changes the "
                         "base weights, so the adapter needs its modified base; save it with peft's "
                         "save_pretrained(..., path_initial_model_for_weight_conversion=...) to get a plain LoRA")
    r = config.get("r")
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ValueError(f"{where}: r must be a positive integer, got {r!r}")
    alpha = config.get("lora_alpha", 8)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise ValueError(f"{where}: lora_alpha must be a number, got {alpha!r}")
    for key in ("rank_pattern", "alpha_pattern"):
        pattern = config.get(key) or {}
        if not isinstance(pattern, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in pattern.values()):
            raise ValueError(f"{where}: {key} must map module names to numbers, got {pattern!r}")
    targets = config.get("target_modules")
    if not (isinstance(targets, str) or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))):
        raise ValueError(f"{where}: target_modules must be a list of module names or a regular expression, "
                         f"got {targets!r}")
    saved = config.get("modules_to_save")
    if saved is not None and not (isinstance(saved, list) and all(isinstance(m, str) for m in saved)):
        raise ValueError(f"{where}: modules_to_save must be a list of module names, got {saved!r}")
    exclude = config.get("exclude_modules")
    if not (exclude is None or isinstance(exclude, str)
            or (isinstance(exclude, list) and all(isinstance(m, str) for m in exclude))):
        raise ValueError(f"{where}: exclude_modules must be a list of module names or a regular expression, "
                         f"got {exclude!r}")
    if config.get("fan_in_fan_out"):
        # peft resets it for torch.nn.Linear (every layer of LLaMA and BLOOM): GPT-2's Conv1D only.
        warnings.warn(f"{where}: fan_in_fan_out=True applies to Conv1D layers only; LLaMA and BLOOM use "
                      "Linear layers, for which peft sets it to False, and so does pyllm", stacklevel=4)


def read(path):
    """The Adapter of a directory: config checked, tensors read (float32) and grouped."""
    weights_path = os.path.join(path, WEIGHTS_NAME)
    config = checkpoint._read_json_object(os.path.join(path, CONFIG_NAME), CONFIG_NAME)
    _check_config(path, config)
    if not os.path.isfile(weights_path):
        pickle = os.path.join(path, PICKLE_NAME)
        if os.path.isfile(pickle):
            raise ValueError(
                f"{pickle}: adapter_model.bin is a pickle, which pyllm does not load (unpickling runs code and needs "
                "torch); convert it once to adapter_model.safetensors with torch and safetensors installed:\n"
                f"  python -c \"import torch, safetensors.torch as st; st.save_file({{k: v.contiguous() for k, v in "
                f"torch.load({pickle!r}, map_location='cpu').items()}}, "
                f"{weights_path!r})\"")
        raise ValueError(f"adapter directory {path!r} lacks {WEIGHTS_NAME}: a PEFT adapter is saved as "
                         f"{CONFIG_NAME} + {WEIGHTS_NAME}")
    lora, loads, copies = {}, {}, {}
    saved = config.get("modules_to_save") or []
    for name, array in checkpoint.load_safetensors(weights_path).items():
        if not name.startswith(_PREFIX):
            raise ValueError(f"{weights_path}: tensor '{name}' does not start with '{_PREFIX}', as peft names "
                             "a causal LM's adapter tensors")
        key = name[len(_PREFIX):]
        array = np.array(array, dtype=np.float32)
        match = re.fullmatch(r"(.+)\.lora_(embedding_)?([AB])(\.weight)?", key)
        if match:
            module, embedding, side = match.group(1), bool(match.group(2)), match.group(3)
            lora.setdefault(module, {"embedding": embedding})[side] = array
            continue
        match = re.fullmatch(r"(.+?)(\.base_layer|\.original_module|\.modules_to_save)?\.(weight|bias)", key)
        if not match:
            raise ValueError(f"{weights_path}: tensor '{name}' is neither a LoRA factor (lora_A, lora_B) nor a "
                             "module's weight or bias")
        module, wrapper, part = match.groups()
        target = f"{module}.{part}"
        # peft loads a module's base_layer / original_module, and a saved module outside
        # modules_to_save, into the base's own tensor; a modules_to_save module is a trained copy.
        if wrapper in (".base_layer", ".original_module") or not _listed(saved, module):
            loads[target] = array
        else:
            copies[target] = array
    for module, entry in lora.items():
        for side in ("A", "B"):
            if side not in entry:
                raise ValueError(f"{weights_path}: module '{module}' has lora_{'BA'[side == 'B']} but no lora_{side}")
    return Adapter(path, config, lora, loads, copies, weights_path)


# ---- peft's matching rules ------------------------------------------------------------------------

def _listed(names, key):
    """key is one of names or ends with '.' + one (peft's list form of target_modules)."""
    return key in names or any(key.endswith("." + name) for name in names)


def _layer_index_allowed(config, key):
    indexes = config.get("layers_to_transform")
    if indexes is None or indexes == []:
        return True
    patterns = config.get("layers_pattern")
    if not patterns:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", key)
    else:
        match = None
        for pattern in [patterns] if isinstance(patterns, str) else patterns:
            match = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", key)
            if match:
                break
    if not match:
        return False
    index = int(match.group("idx"))
    return index == indexes if isinstance(indexes, int) else index in indexes


def is_target(config, key):
    """Whether peft puts a LoRA layer on the module named key (its check_target_module_exists)."""
    exclude = config.get("exclude_modules")
    if exclude and (re.fullmatch(exclude, key) if isinstance(exclude, str) else _listed(exclude, key)):
        return False
    saved = config.get("modules_to_save") or []
    if any(re.match(rf"(^|.*\.){m}($|\..*)", key) for m in saved):
        return False
    targets = config["target_modules"]
    if targets == "all-linear":
        return key != _LM_HEAD and not key.endswith(_EMBEDDINGS)
    if isinstance(targets, str):
        return re.fullmatch(targets, key) is not None
    if key in targets:
        return True
    return _listed(targets, key) and _layer_index_allowed(config, key)


def _pattern_value(pattern, key, default):
    """peft's get_pattern_key: the first pattern that matches the end of key, its value."""
    for name in pattern:
        if re.match(rf"(.*\.)?({name})$", key):
            return pattern[name]
    return pattern.get(key, default)


def scaling(config, module):
    """(r, scale) of a module: rank_pattern / alpha_pattern first, alpha/r or alpha/sqrt(r)."""
    r = _pattern_value(config.get("rank_pattern") or {}, module, config["r"])
    alpha = _pattern_value(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", 8))
    return r, alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


# ---- the base: names, tying, vocabulary -----------------------------------------------------------

def _embedding_name(names):
    return next((e + ".weight" for e in _EMBEDDINGS if e + ".weight" in names), None)


def _is_vocab_tensor(name):
    return name == _LM_HEAD + ".weight" or name in (e + ".weight" for e in _EMBEDDINGS)


def merged_config(config, adapters, tied):
    """The config after the adapters: vocab_size from a replaced embedding or lm_head, and
    tie_word_embeddings False when one of a tied pair is replaced (tied: the base's tying)."""
    config = dict(config)
    for adapter in adapters:
        for kind in (adapter.loads, adapter.copies):
            for name, array in kind.items():
                if not _is_vocab_tensor(name):
                    continue
                if tied and kind is adapter.copies:
                    config["tie_word_embeddings"] = tied = False
                if array.ndim == 2 and array.shape[0] != config.get("vocab_size"):
                    config["vocab_size"] = int(array.shape[0])
    return config


def merged_bytes(adapters):
    """Bytes the merge holds until the model is packed: a float32 copy of each adapted matrix
    and the adapters' whole tensors (for the memory check before the base is read)."""
    shapes = {}
    total = 0
    for adapter in adapters:
        for module, entry in adapter.lora.items():
            shapes[module] = entry["B"].shape[0] * entry["A"].shape[1]
        total += sum(a.nbytes for a in adapter.loads.values()) + sum(a.nbytes for a in adapter.copies.values())
    return total + 4 * sum(shapes.values())


def _float32(array):
    """A float32 copy of a base tensor in any storage the loaders hand on."""
    if isinstance(array, checkpoint.BFloat16Bits):
        return (np.asarray(array).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return np.array(array, dtype=np.float32)


def _base_modules(weights):
    return sorted({name[:-len(".weight")] for name in weights if name.endswith(".weight")})


def _check_targets(adapter, modules):
    """Every target_modules entry names a module of the base (peft refuses one that matches none)."""
    targets = adapter.config["target_modules"]
    where = os.path.join(adapter.path, CONFIG_NAME)
    kinds = sorted({m.rsplit(".", 1)[-1] for m in modules})
    if targets == "all-linear":
        return
    if isinstance(targets, str):
        if not any(re.fullmatch(targets, m) for m in modules):
            raise ValueError(f"{where}: target_modules {targets!r} matches no module of the base model "
                             f"(its modules: {', '.join(kinds)})")
        return
    for target in targets:
        if not any(_listed([target], m) for m in modules):
            raise ValueError(f"{where}: target_modules entry {target!r} names no module of the base model "
                             f"(its modules: {', '.join(kinds)})")


def merge(weights, adapters, tied):
    """Apply the adapters in order to the base's Hugging Face-named tensors (a dict, changed in
    place and returned); tied: whether the base's lm_head is its embedding. ValueError naming the
    adapter file, the module and the shapes when an adapter does not fit."""
    embedding = _embedding_name(weights)
    for adapter in adapters:
        modules = _base_modules(weights) + ([_LM_HEAD] if tied and _LM_HEAD + ".weight" not in weights else [])
        _check_targets(adapter, modules)
        for kind in (adapter.loads, adapter.copies):
            for name, array in kind.items():
                target = _tensor_name(weights, name, embedding if tied else None)
                if target is None:
                    raise ValueError(f"{adapter.weights_path}: the adapter replaces '{name}' (shape {array.shape}), "
                                     "which the base model lacks")
                base = weights[target]
                if array.shape != base.shape and not (_is_vocab_tensor(name) and array.shape[1:] == base.shape[1:]):
                    raise ValueError(f"{adapter.weights_path}: '{name}' has shape {array.shape} but the base's is "
                                     f"{tuple(base.shape)}")
        for name, array in adapter.loads.items():
            weights[_tensor_name(weights, name, embedding if tied else None)] = array
        if tied and any(_is_vocab_tensor(n) for n in adapter.copies):
            # peft replaces a module by a trained copy: the other of a tied pair keeps the base's tensor.
            weights[_LM_HEAD + ".weight"] = weights[embedding]
            tied = False
        weights.update(adapter.copies)
        for module, entry in adapter.lora.items():
            _merge_one(weights, adapter, module, entry, embedding if tied else None)
    head = weights.get(_LM_HEAD + ".weight")
    if head is not None and embedding is not None and head.shape[0] != weights[embedding].shape[0]:
        raise ValueError(f"after the adapters the embedding has {weights[embedding].shape[0]} rows but lm_head has "
                         f"{head.shape[0]}: an adapter that resizes the vocabulary must carry both "
                         f"(modules_to_save: embed_tokens and lm_head)")
    return weights


def _tensor_name(weights, name, tied_embedding):
    """The base tensor that name refers to (a tied lm_head is the embedding), or None."""
    if name in weights:
        return name
    if name == _LM_HEAD + ".weight" and tied_embedding is not None:
        return tied_embedding
    return None


def _merge_one(weights, adapter, module, entry, tied_embedding):
    where = adapter.weights_path
    if not is_target(adapter.config, module):
        selection = {k: adapter.config.get(k) for k in ("target_modules", "exclude_modules", "layers_to_transform",
                                                        "modules_to_save") if adapter.config.get(k) is not None}
        raise ValueError(f"{where}: the file has LoRA factors for '{module}', which {CONFIG_NAME}'s module selection "
                         f"{selection} does not select")
    name = _tensor_name(weights, module + ".weight", tied_embedding)  # tied: both change, as in peft
    if name is None:
        raise ValueError(f"{where}: the adapter has LoRA factors for '{module}', which the base model lacks")
    base = weights[name]
    if base.ndim != 2:
        raise ValueError(f"{where}: LoRA on '{module}', whose weight has shape {tuple(base.shape)}: a matrix is needed")
    r, scale = scaling(adapter.config, module)
    a, b = entry["A"], entry["B"]
    # A linear layer's weight is [out, in], an embedding's [vocab, dim] with A [r, vocab], B [dim, r].
    rows, cols = base.shape[::-1] if entry["embedding"] else base.shape
    if a.shape != (r, cols) or b.shape != (rows, r):
        raise ValueError(f"{where}: '{module}' has lora_A {a.shape} and lora_B {b.shape}, but its base weight "
                         f"{tuple(base.shape)} with r={r} needs lora_A {(r, cols)} and lora_B {(rows, r)}")
    delta = (b @ a) * np.float32(scale)
    merged = _float32(base)
    merged += delta.T if entry["embedding"] else delta
    weights[name] = merged


def has_tokenizer(path):
    return any(os.path.isfile(os.path.join(path, name)) for name in TOKENIZER_FILES)


def tokenizer_dir(model_dir, adapters, vocab_resized):
    """Where the tokenizer comes from (adapters: their paths): the last adapter directory that
    holds one, else the base. Adapters that resize the vocabulary without a tokenizer are refused."""
    for path in reversed(adapter_paths(adapters)):
        if has_tokenizer(path):
            return path
    if vocab_resized:
        raise ValueError(f"the adapters resize the vocabulary but no adapter directory holds a tokenizer "
                         f"({' or '.join(TOKENIZER_FILES)}); save the adapter's tokenizer beside "
                         f"{CONFIG_NAME} (tokenizer.save_pretrained(adapter_dir))")
    return model_dir
