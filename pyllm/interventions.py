"""Interventions: change a model's activations during ``model(...)`` and ``generate(...)``.

An :class:`Intervention` adds a vector to, or replaces, one site's activations at one layer, at
every position of every row or at listed positions:

- ``site="residual"``: the residual stream after the layer (its output, hidden_states[layer + 1]);
- ``site="attn_out"``: the attention output, o_proj's (BLOOM: self_attention.dense's) output
  before its residual add;
- ``site="mlp_out"``: the MLP output, down_proj's (BLOOM: mlp.dense_4h_to_h's) output before its
  residual add.

A position is the token's position in its row, counting real tokens only (cumsum(mask) - 1):
position 0 is the first real token of a left-padded row, and positions run on across calls on
one KV cache and across generation steps, so ``positions=None`` ("every position") includes the
generated tokens. Padding tokens are never changed. The change applies to every row.

The C core applies them where it computes the activations (no Python call per layer or token);
a model call turns the list into one C object (:func:`compile_interventions`).
"""
import hashlib
import operator

import numpy as np

from . import _core

SITES = {"residual": 0, "attn_out": 1, "mlp_out": 2}


class Intervention:
    """``Intervention(layer, site="residual", positions=None, add=None, replace=None)``.

    layer: 0-based layer index. positions: None (every position), an int, or a list of distinct
    ints >= 0 (any order). Exactly one of add= (steering) or replace= (patching): a [hidden]
    vector used at every chosen position, or [len(positions), hidden] values, one row per
    listed position in the order given. The arrays are copied (float32)."""

    __slots__ = ("layer", "site", "positions", "values", "mode")

    def __init__(self, layer, site="residual", positions=None, add=None, replace=None):
        try:
            self.layer = operator.index(layer)
        except TypeError:
            raise TypeError(f"layer must be an int, got {type(layer).__name__}") from None
        if isinstance(layer, bool) or self.layer < 0:
            raise ValueError(f"layer must be an int >= 0, got {layer!r}")
        if site not in SITES:
            raise ValueError(f"site must be one of {', '.join(repr(s) for s in SITES)}, got {site!r}")
        self.site = site
        if (add is None) == (replace is None):
            raise ValueError("give exactly one of add= (a vector added) or replace= (values that replace the "
                             "activations)")
        self.mode = "add" if add is not None else "replace"
        name = self.mode
        values = _float_array(add if add is not None else replace, name)
        order = None
        if positions is None:
            self.positions = None
        else:
            listed = _positions(positions)
            order = np.argsort(listed, kind="stable")
            self.positions = listed[order]
        if values.ndim == 1:
            values = values[None, :]
        elif values.ndim == 2:
            if self.positions is None or values.shape[0] != len(self.positions):
                where = "every position" if self.positions is None else f"{len(self.positions)} positions"
                raise ValueError(f"{name} must be a [hidden] vector or [len(positions), hidden] values, one row per "
                                 f"listed position; got shape {values.shape} for {where}")
            values = values[order]
        else:
            raise ValueError(f"{name} must be a [hidden] vector or [len(positions), hidden] array, got "
                             f"{values.ndim} dimensions")
        if values.shape[1] == 0:
            raise ValueError(f"{name} must have hidden_size values per row, got 0")
        self.values = np.ascontiguousarray(values)
        self.values.flags.writeable = False
        if self.positions is not None:
            self.positions.flags.writeable = False

    @property
    def hidden_size(self):
        return self.values.shape[1]

    def key(self):
        """A deterministic digest (32 bytes) of everything that changes the activations: layer,
        site, add/replace, positions and the values' bytes. Equal interventions give equal keys
        in any process (a cache of computed keys and values can key on it)."""
        h = hashlib.sha256()
        h.update(f"{self.layer}|{self.site}|{self.mode}|".encode())
        h.update(b"all" if self.positions is None else self.positions.astype("<i8").tobytes())
        h.update(f"|{self.values.shape[0]}x{self.values.shape[1]}|".encode())
        h.update(self.values.astype("<f4").tobytes())
        return h.digest()

    def __repr__(self):
        where = "every position" if self.positions is None else f"positions={self.positions.tolist()}"
        return f"Intervention(layer={self.layer}, site={self.site!r}, {where}, {self.mode}=[{self.values.shape}])"


def interventions_key(interventions):
    """The key of a list of interventions (order matters: they apply in order), b"" for none."""
    items = _as_list(interventions)
    if not items:
        return b""
    h = hashlib.sha256()
    for item in items:
        h.update(item.key())
    return h.digest()


def _float_array(value, name):
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a float array, got {type(value).__name__}")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a float array, got {type(value).__name__}") from None
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise TypeError(f"{name} must be a float array, got dtype {array.dtype}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return array


def _positions(positions):
    if isinstance(positions, (bool, np.bool_, str, bytes, float)):
        raise TypeError(f"positions must be None, an int or a list of ints, got {positions!r}")
    array = np.asarray(positions)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise TypeError(f"positions must be None, an int or a list of ints, got {positions!r}")
    array = array.astype(np.int64)
    if array.size == 0:
        raise ValueError("positions must list at least one position (None: every position)")
    if np.any(array < 0):
        raise ValueError(f"positions must be >= 0, got {array.tolist()}")
    if len(np.unique(array)) != len(array):
        raise ValueError(f"positions must be distinct, got {array.tolist()}")
    return array


def _as_list(interventions):
    if interventions is None:
        return []
    if isinstance(interventions, Intervention):
        return [interventions]
    if isinstance(interventions, (str, bytes, dict)) or not hasattr(interventions, "__iter__"):
        raise TypeError(f"interventions must be a pyllm.Intervention or a list of them, got "
                        f"{type(interventions).__name__}")
    items = list(interventions)
    for i, item in enumerate(items):
        if not isinstance(item, Intervention):
            raise TypeError(f"interventions[{i}] must be a pyllm.Intervention, got {type(item).__name__}")
    return items


def compile_interventions(interventions, spec, reach=None):
    """The C object (pyllm._core.Interventions) of interventions for a model of `spec`, or None for
    none. reach: the number of positions the call can touch (a listed position >= reach is
    refused); None skips that check."""
    items = _as_list(interventions)
    if not items:
        return None
    layers, hidden = spec["num_hidden_layers"], spec["hidden_size"]
    for i, item in enumerate(items):
        if item.layer >= layers:
            raise ValueError(f"interventions[{i}]: layer={item.layer} is out of range: the model has {layers} "
                             f"layers (0..{layers - 1})")
        if item.hidden_size != hidden:
            raise ValueError(f"interventions[{i}]: {item.mode} has {item.hidden_size} values per row, expected the "
                             f"model's hidden_size={hidden}")
        if reach is not None and item.positions is not None and item.positions[-1] >= reach:
            raise ValueError(f"interventions[{i}]: position {int(item.positions[-1])} is out of range: this call's "
                             f"tokens reach positions 0..{reach - 1}")
    return _core.Interventions([(item.layer, SITES[item.site], item.mode == "replace", item.positions, item.values)
                                for item in items], hidden)
