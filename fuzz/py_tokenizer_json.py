"""atheris: a tokenizer.json (any bytes) loaded by Tokenizer.from_file, then encode / decode /
stream-decode when it loads."""
import py_harness as h
from pyllm import Tokenizer


def test_one_input(data):
    tok = h.expected(Tokenizer.from_file, h.write("tokenizer.json", data))
    if tok is not None:
        h.exercise_tokenizer(tok)


if __name__ == "__main__":
    h.main(test_one_input)
