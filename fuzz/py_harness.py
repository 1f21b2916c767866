"""What the atheris harnesses share: the contract an input is held to, and the run loop.

The contract: a hostile file or argument may make pyllm raise ValueError (its GGUFError is one),
MemoryError or OSError, with a message; anything else is a finding: another exception type
(IndexError, TypeError, KeyError, struct.error, RecursionError, SystemError...), a parser's raw
error escaping unwrapped (UnicodeError, json.JSONDecodeError: ValueErrors whose message names no
file), a crash or sanitizer report in the C core, or a hang (atheris's -timeout)."""
import json
import os
import sys
import tempfile

import atheris

ALLOWED = (ValueError, MemoryError, OSError)
UNWRAPPED = (UnicodeError, json.JSONDecodeError)

with atheris.instrument_imports(include=["pyllm"]):
    import pyllm  # noqa: F401  (instrumented: Python-level coverage guides the fuzzer too)

# Files the harnesses write their input to: on tmpfs when there is one.
WORKDIR = tempfile.mkdtemp(prefix="pyllm-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


def data_dir():
    path = os.environ.get("PYLLM_TEST_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    if not os.path.isdir(path):
        sys.exit(f"test data not found at {path}: set PYLLM_TEST_DATA")
    return path


def write(name, data):
    """data into WORKDIR/name; the path."""
    path = os.path.join(WORKDIR, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def expected(call, *args, **kwargs):
    """call(*args, **kwargs), or None when it refused the input the documented way."""
    try:
        return call(*args, **kwargs)
    except UNWRAPPED:
        raise
    except ALLOWED as e:
        if not str(e):
            raise AssertionError(f"{type(e).__name__} without a message") from e
        return None


def exercise_tokenizer(tok, text="Hello world, 123 caf\u00e9 <s></s>\n\t  x"):
    """Encode, decode and stream-decode with a tokenizer that loaded: none of it may fail."""
    for special in (False, True):
        ids = tok.encode(text, add_special_tokens=special)
        assert all(0 <= i < tok.vocab_size for i in ids), ids
        for skip in ((False, True) if special else (False,)):
            whole = tok.decode(ids, skip_special_tokens=skip)
            stream = tok.stream_decoder(skip_special_tokens=skip)
            streamed = "".join(stream.push(i) for i in ids) + stream.flush()
            assert streamed == whole, (ids, streamed, whole)
    tok.decode(list(range(min(tok.vocab_size, 300))))


def main(test_one_input):
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
