"""Text in, text out with pyllm.LLM: one prompt, a batch, a stream with a stop string, a chat.

    python examples/llm_chat.py MODEL_DIR
"""
import sys

import pyllm


def main(model_dir):
    with pyllm.LLM(model_dir) as llm:
        print(llm.generate("The capital of France is", max_new_tokens=16))
        for text in llm.generate(["Once upon a time", "def fibonacci(n):"], max_new_tokens=24):
            print(repr(text))
        for piece in llm.stream("A list of fruits:\n1.", max_new_tokens=64, stop_strings=["\n4."]):
            print(piece, end="", flush=True)
        print()
        messages = [{"role": "user", "content": "Say hello in French."}]
        template = None if llm.tokenizer.chat_template else "vicuna"  # a model without a template of its own
        print(llm.chat(messages, template=template, max_new_tokens=32))


if __name__ == "__main__":
    main(sys.argv[1])
