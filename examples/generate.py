"""Tokenizer + model + generate, end to end.

    python examples/generate.py                          # stories260K, a tiny trained LLaMA
    python examples/generate.py MODEL_DIR "Your prompt"  # any Hugging Face LLaMA directory

Without arguments it runs stories260K from the shared test data (../shared/data, or
$PYLLM_TEST_DATA), a 260K-parameter LLaMA trained on children's stories, in llama2.c's format.
"""
import os
import sys
import time

import pyllm
from pyllm.llama2c import load_llama2c


def load_stories260k():
    here = os.path.dirname(os.path.abspath(__file__))
    data = os.environ.get("PYLLM_TEST_DATA", os.path.join(here, "..", "..", "shared", "data"))
    folder = os.path.join(data, "stories260K")
    config, weights = load_llama2c(os.path.join(folder, "stories260K.bin"))
    model = pyllm.Model.from_arrays(config, weights)
    tokenizer = pyllm.Tokenizer.from_llama2c(os.path.join(folder, "tok512.bin"), config["vocab_size"])
    return tokenizer, model


def main():
    if len(sys.argv) > 1:
        tokenizer = pyllm.Tokenizer.from_pretrained(sys.argv[1])
        model = pyllm.Model.from_pretrained(sys.argv[1])
    else:
        tokenizer, model = load_stories260k()
    prompt = sys.argv[2] if len(sys.argv) > 2 else "Once upon a time"
    ids = tokenizer.encode(prompt)

    start = time.perf_counter()
    greedy = model.generate(ids, max_new_tokens=120, do_sample=False)
    elapsed = time.perf_counter() - start
    new = len(greedy) - len(ids)
    print("greedy:", tokenizer.decode(greedy, skip_special_tokens=True))
    print(f"  ({new} tokens in {elapsed:.3f} s, {new / elapsed:.0f} tokens/s)\n")

    sampled = model.generate(ids, max_new_tokens=120, do_sample=True, temperature=0.8, top_p=0.9, seed=42)
    print("sampled (temperature 0.8, top_p 0.9, seed 42):", tokenizer.decode(sampled, skip_special_tokens=True))


if __name__ == "__main__":
    main()
