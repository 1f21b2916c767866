"""Prove `pyllm convert` against llama.cpp: convert Hugging Face LLaMA directories to every GGUF
type pyllm writes, load each file in llama-cpp-python, and compare with pyllm running the HF
directory in float32: the tokenizer's ids, the prompt's last logits, and 32 greedy tokens.

Run in an environment with llama-cpp-python (pip install ".[bench]"; it builds llama.cpp from
source, about 20 minutes) and the test requirements (torch, transformers for the random model):

    PYLLM_TEST_DATA=../shared/data python tools/check_convert_llamacpp.py

Models: stories260K (trained; from its llama2.c weights, with its GGUF vocabulary as a
tokenizer.model) and a random LLaMA over the real 32,000-piece LLaMA tokenizer (the tests'
llm_models.write_llama). llama.cpp keeps its KV cache in f16 and, for Q8_0/Q4_0/Q4_1, quantizes
activations to 8 bits, so its logits differ from pyllm's float32 ones by more than rounding.
"""
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import pyllm  # noqa: E402
from pyllm.convert import TYPES, convert_to_gguf  # noqa: E402
from pyllm.gguf import open_gguf  # noqa: E402

PROMPTS = ["Once upon a time, there was a little girl named Lily.", "The cat sat on the mat and",
           "Tom and his dog went to the park. They", "One day, a big bird", "She was happy because"]
NEW = 32


def stories_dir(data, out):
    from pyllm.llama2c import convert_llama2c
    from spm_files import write_sentencepiece
    d = convert_llama2c(os.path.join(data, "stories260K", "stories260K.bin"), os.path.join(out, "stories260K"))
    meta = open_gguf(os.path.join(data, "stories260K", "stories260K.gguf")).metadata
    write_sentencepiece(os.path.join(d, "tokenizer.model"), meta["tokenizer.ggml.tokens"],
                        meta["tokenizer.ggml.scores"], meta["tokenizer.ggml.token_type"])
    return d


def random_llama_dir(data, out):
    from llm_models import write_llama
    d = os.path.join(out, "random-llama")
    os.makedirs(d)
    return write_llama(d, data)


def llama_cpp_run(llm, ids):
    """(last-position logits of ids, NEW greedy tokens) from llama.cpp."""
    llm.reset()
    llm.eval(ids)
    logits = np.array(llm.scores[len(ids) - 1], dtype=np.float32)
    tokens = []
    for _ in range(NEW):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        tokens.append(token)
        llm.eval([token])
    return logits, tokens


def main():
    from llama_cpp import Llama, __version__ as llama_cpp_version
    data = os.environ.get("PYLLM_TEST_DATA", os.path.join(HERE, "..", "..", "shared", "data"))
    print(f"pyllm {pyllm.__version__} (oneDNN {pyllm.onednn_version()}), llama-cpp-python {llama_cpp_version}")
    print("| model | type | tokenizer ids equal | max abs logit diff (last prompt position) | "
          "greedy tokens equal before the first difference (of 32, per prompt) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model_dir in (stories_dir(data, tmp), random_llama_dir(data, tmp)):
            ours = pyllm.LLM(model_dir)
            expected = []
            for prompt in PROMPTS:
                ids = ours.tokenizer.encode(prompt)
                out = ours.model.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False)
                expected.append((ids, ours.model(ids)[-1], [int(t) for t in out[len(ids):]]))
            for kind in TYPES:
                path = os.path.join(tmp, f"{os.path.basename(model_dir)}-{kind}.gguf")
                convert_to_gguf(model_dir, path, kind)
                llm = Llama(model_path=path, n_ctx=256, n_threads=2, logits_all=True, verbose=False)
                ids_equal, diffs, agree = True, [], []
                for prompt, (ids, logits, tokens) in zip(PROMPTS, expected):
                    ids_equal &= llm.tokenize(prompt.encode(), add_bos=True) == ids
                    got_logits, got_tokens = llama_cpp_run(llm, ids)
                    diffs.append(float(np.max(np.abs(got_logits - logits))))
                    same = next((i for i, (a, b) in enumerate(zip(tokens, got_tokens)) if a != b), NEW)
                    agree.append(same)
                print(f"| {os.path.basename(model_dir)} | {kind} | {'yes' if ids_equal else 'NO'} | "
                      f"{max(diffs):.2e} | {' '.join(str(a) for a in agree)} |")
                del llm


if __name__ == "__main__":
    main()
