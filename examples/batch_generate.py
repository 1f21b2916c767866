"""Many prompts at once: one left-padded batch, each row ending on its own.

    python examples/batch_generate.py                  # the default model: SmolLM2-135M-Instruct
    python examples/batch_generate.py --model MODEL    # a .gguf file or a Hugging Face model directory

First with pyllm.LLM (text in, text out), then the same batch by hand, as with transformers:
the tokenizer pads on the left and gives the attention mask, Model.generate continues every row.
"""
import argparse
import time

import pyllm

PROMPTS = ["The capital of France is", "Here is a recipe for pancakes:", "1, 2, 3, 4,",
           "The three primary colours are"]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Generate for a batch of prompts in one call.")
    parser.add_argument("--model", default=None,
                        help="a .gguf file, a Hugging Face model directory or a Hub id with pyllm[hub] (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="tokens per prompt (default: 24)")
    parser.add_argument("prompts", nargs="*", help="prompts (default: four examples)")
    args = parser.parse_args(argv)
    prompts = args.prompts or PROMPTS

    with pyllm.LLM(args.model) as llm:
        start = time.perf_counter()
        texts = llm.generate(prompts, max_new_tokens=args.max_new_tokens)  # one batch, greedy
        print(f"{len(prompts)} prompts in {time.perf_counter() - start:.2f} s")
        for prompt, text in zip(prompts, texts):
            print(f"{prompt!r} -> {text!r}")

        # The same by hand: left padding plus the mask, new tokens after the prompt width.
        tok, model = llm.tokenizer, llm.model
        batch = tok(prompts, padding=True, return_tensors="np")
        out = model.generate(batch["input_ids"], attention_mask=batch["attention_mask"],
                             max_new_tokens=args.max_new_tokens, do_sample=False)
        width = batch["input_ids"].shape[1]
        for row, text in zip(out, texts):
            by_hand = tok.decode(row[width:].tolist(), skip_special_tokens=True)
            print("same" if by_hand.startswith(text) else "differs", repr(by_hand))


if __name__ == "__main__":
    main()
