"""atheris: llama2.c files. The input's first byte chooses: even, a checkpoint (.bin) for
pyllm.llama2c.load_llama2c; odd, a tokenizer file for Tokenizer.from_llama2c with the vocabulary
size in the next two bytes, then encode / decode / stream-decode when it loads."""
import py_harness as h
from pyllm import Tokenizer
from pyllm.llama2c import load_llama2c


def test_one_input(data):
    if not data:
        return
    if data[0] % 2 == 0:
        loaded = h.expected(load_llama2c, h.write("model.bin", data[1:]))
        if loaded is not None:
            config, weights = loaded
            for array in weights.values():
                array.sum()
        return
    vocab_size = int.from_bytes(data[1:3], "little")
    tok = h.expected(Tokenizer.from_llama2c, h.write("tokenizer.bin", data[3:]), vocab_size)
    if tok is not None:
        h.exercise_tokenizer(tok)


if __name__ == "__main__":
    h.main(test_one_input)
