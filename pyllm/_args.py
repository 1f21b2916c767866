"""Checks of ordinary arguments shared across the public API, so every call refuses a wrong type
or value the same way: a TypeError or ValueError naming the argument, the value and what is
accepted (tests/test_api_sweep.py walks the API with bad values)."""
import numpy as np


def check_bool(name, value):
    """value as a bool; True/False (or NumPy's bool) only, not 'yes' or 2."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_progress(value):
    """progress= of the long calls: True (a bar), False (none) or None (a bar for long work)."""
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"progress must be True, False or None, got {value!r}")
    return value if value is None else bool(value)
