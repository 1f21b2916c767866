"""atheris: a safetensors file (any bytes) loaded by pyllm.checkpoint.load_safetensors, both
BF16 modes, every tensor read through."""
import py_harness as h
from pyllm import checkpoint


def test_one_input(data):
    path = h.write("model.safetensors", data)
    for bf16 in ("float32", "bits"):
        weights = h.expected(checkpoint.load_safetensors, path, bf16=bf16)
        if weights is None:
            return
        for array in weights.values():
            array.sum()
        weights.release(list(weights))


if __name__ == "__main__":
    h.main(test_one_input)
