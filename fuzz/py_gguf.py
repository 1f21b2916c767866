"""atheris: a GGUF file (any bytes): the reader (header, metadata, tensor infos), every typed
metadata getter, every tensor read and dequantized, the model config and spec a GGUF model
would run with, and the tokenizer in its metadata (then encode / decode / stream-decode)."""
import py_harness as h
from pyllm import Tokenizer, gguf, gguf_model

MAX_ELEMENTS = 1 << 20  # larger tensors are only described, not read (a bounded run per input)


def _read(f):
    for key in f.metadata:
        f.value_types[key]
    f.architecture()
    for name, t in f.tensors.items():
        if t.nbytes <= 4 * MAX_ELEMENTS:
            f.tensor_bytes(name)
            f.weight(name)
            f.dequantize(name).sum()


def test_one_input(data):
    path = h.write("model.gguf", data)
    f = h.expected(gguf.open_gguf, path)
    if f is None:
        return
    h.expected(_read, f)
    h.expected(gguf_model.read, path)
    tok = h.expected(Tokenizer.from_gguf, f)
    if tok is not None:
        h.exercise_tokenizer(tok)


if __name__ == "__main__":
    h.main(test_one_input)
