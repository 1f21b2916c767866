"""Text in, text out with pyllm.LLM: one prompt, a batch, a stream with a stop string, a chat.

    python examples/llm_chat.py                  # the default model: SmolLM2-135M-Instruct
    python examples/llm_chat.py --model MODEL    # a .gguf file or a Hugging Face model directory
"""
import argparse

import pyllm


def main(argv=None):
    parser = argparse.ArgumentParser(description="pyllm.LLM's calls one after the other: generate, a batch, "
                                                 "stream with a stop string, chat.")
    parser.add_argument("--model", default=None,
                        help="a .gguf file, a Hugging Face model directory or a Hub id with pyllm[hub] (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens per answer (default: 32)")
    args = parser.parse_args(argv)
    n = args.max_new_tokens

    with pyllm.LLM(args.model) as llm:  # None: the default model
        print(llm.generate("The capital of France is", max_new_tokens=n))
        for text in llm.generate(["Once upon a time", "def fibonacci(n):"], max_new_tokens=n):
            print(repr(text))
        for piece in llm.stream("A list of fruits:\n1.", max_new_tokens=2 * n, stop_strings=["\n4."]):
            print(piece, end="", flush=True)
        print()
        messages = [{"role": "user", "content": "Say hello in French."}]
        template = None if llm.tokenizer.chat_template else "vicuna"  # a model without a template of its own
        print(llm.chat(messages, template=template, max_new_tokens=n))


if __name__ == "__main__":
    main()
