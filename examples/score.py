"""Scoring text: which answer does the model find most likely, and how surprised is it by a text.

    python examples/score.py                  # the default model: SmolLM2-135M-Instruct
    python examples/score.py --model MODEL    # a .gguf file or a Hugging Face model directory

LLM.loglikelihood takes (context, continuation) pairs of strings and tokenizes them as
lm-evaluation-harness does, so these are the numbers an lm-eval multiple-choice task computes.
"""
import argparse
import math

import pyllm

QUESTION = "Question: What is the capital of France?\nAnswer:"
CHOICES = [" Paris", " London", " Berlin", " a small green frog"]
TEXT = "The quick brown fox jumps over the lazy dog."


def main(argv=None):
    parser = argparse.ArgumentParser(description="Multiple choice by log-likelihood, and a text's perplexity.")
    parser.add_argument("--model", default=None,
                        help="a .gguf file, a Hugging Face model directory or a Hub id with pyllm[hub] (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--text", default=TEXT, help="the text whose perplexity is printed")
    args = parser.parse_args(argv)

    with pyllm.LLM(args.model) as llm:
        scores = llm.loglikelihood([(QUESTION, choice) for choice in CHOICES])  # [(logprob, is_greedy)]
        print(QUESTION)
        for choice, (logprob, greedy) in sorted(zip(CHOICES, scores), key=lambda item: -item[1][0]):
            print(f"  {logprob:9.3f}  {'greedy' if greedy else '      '}  {choice!r}")

        total = llm.loglikelihood_rolling(args.text)  # every token of the text, from BOS
        tokens = len(llm.tokenizer.encode(args.text))
        print(f"\n{args.text!r}: log-likelihood {total:.3f} over {tokens} tokens, "
              f"perplexity {math.exp(-total / tokens):.2f}")


if __name__ == "__main__":
    main()
