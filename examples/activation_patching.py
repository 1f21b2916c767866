"""Activation patching: where in the model does the answer live?

    python examples/activation_patching.py                     # the default model: SmolLM2-135M-Instruct
    python examples/activation_patching.py --model MODEL --out patching.png

Two prompts that differ in one detail, a clean one and a corrupted one, lead the model to two
different answers. We run the corrupted prompt again and again, each time replacing one layer's
residual stream at one position with what the clean prompt had there (pyllm.Intervention with
replace=), and measure how far that moves the answer back: 0 = no effect, 1 = the clean answer's
full preference restored. The plot (matplotlib, a PNG) shows it per layer and position.

Needs matplotlib (`pip install matplotlib`).
"""
import argparse
import os
import sys
import tempfile

import numpy as np

import pyllm

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"


def answer_id(tokenizer, prompt_ids, prompt, answer):
    """The token the answer starts with when it follows the prompt (tokenized together, so a
    SentencePiece model's leading space is where it would be)."""
    ids = tokenizer.encode(prompt + answer)
    if len(ids) > len(prompt_ids) and ids[:len(prompt_ids)] == prompt_ids:
        return ids[len(prompt_ids)]
    return tokenizer.encode(answer, add_special_tokens=False)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Patch the clean prompt's residual stream into the corrupted "
                                                 "run, one layer and position at a time, and plot the effect.")
    parser.add_argument("--model", default=None,
                        help="a .gguf file, a Hugging Face model directory or a Hub id with pyllm[hub] "
                             "(default: SmolLM2-135M-Instruct)")
    parser.add_argument("--clean", default=CLEAN, help="the clean prompt")
    parser.add_argument("--corrupted", default=CORRUPTED, help="the corrupted prompt (as many tokens as --clean)")
    parser.add_argument("--answers", nargs=2, default=[" Mary", " John"], metavar=("CLEAN", "CORRUPTED"),
                        help="the answer each prompt should lead to (default: ' Mary' ' John')")
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "activation_patching.png"),
                        help="the PNG to write (default: activation_patching.png in the temporary directory)")
    parser.add_argument("--effects", default=None, help="also save the effects [layer, position] to this .npy file")
    args = parser.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt

    path = args.model if args.model is not None else pyllm.default_model_path()
    print(f"loading {path}", file=sys.stderr)
    llm = pyllm.LLM(path, n_threads=1)
    model, tok = llm.model, llm.tokenizer
    clean, corrupted = tok.encode(args.clean), tok.encode(args.corrupted)
    if len(clean) != len(corrupted):
        sys.exit(f"the prompts must have as many tokens to be patched position by position: {len(clean)} and "
                 f"{len(corrupted)}")
    good, bad = (answer_id(tok, clean, args.clean, answer) for answer in args.answers)
    if good == bad:
        sys.exit(f"the answers {args.answers} start with the same token")

    def preference(logits):
        """How much more the model wants the clean answer than the corrupted one, next token."""
        return float(logits[-1, good] - logits[-1, bad])

    # The clean run's residual stream: hidden_states[layer + 1] is layer `layer`'s output (the
    # last entry is after the final norm, so the last layer is left out: patching its output would
    # just copy the clean logits at that position).
    clean_logits, states = model(clean, output_hidden_states=True)
    layers = model.spec["num_hidden_layers"] - 1
    if layers < 1:
        sys.exit("the model has one layer: there is no residual stream between layers to patch")
    clean_pref, corrupted_pref = preference(clean_logits), preference(model(corrupted))
    print(f"clean prompt:     {args.clean!r} -> prefers {args.answers[0]!r} by {clean_pref:+.3f}")
    print(f"corrupted prompt: {args.corrupted!r} -> prefers {args.answers[0]!r} by {corrupted_pref:+.3f}")
    if abs(clean_pref - corrupted_pref) < 1e-6:
        sys.exit("the two prompts give the same preference: nothing to restore")

    # A patch at position p leaves the tokens before p as they were: the corrupted prompt's first p
    # tokens are computed once into a KV cache, and each patched run copies it and runs the rest,
    # asking for the last position's logits only.
    effect = np.zeros((layers, len(clean)), np.float32)
    prefix = model.new_cache(capacity=len(corrupted))
    for position in range(len(clean)):
        for layer in range(layers):
            patch = pyllm.Intervention(layer, "residual", positions=[position], replace=states[layer + 1][position])
            cache = prefix.copy()
            patched = preference(model(corrupted[position:], cache=cache, interventions=[patch], logits_to_keep=1))
            effect[layer, position] = (patched - corrupted_pref) / (clean_pref - corrupted_pref)
        model(corrupted[position:position + 1], cache=prefix, logits_to_keep=1)  # the prefix grows by one

    if args.effects is not None:
        np.save(args.effects, effect)
    layer, position = np.unravel_index(np.argmax(np.abs(effect)), effect.shape)
    print(f"largest effect: layer {layer}, position {position} ({tok.decode([clean[position]])!r}): "
          f"{effect[layer, position]:+.2f} of the clean preference restored")

    labels = [f"{tok.decode([c])!r}" if c == d else f"{tok.decode([c])!r}/{tok.decode([d])!r}"
              for c, d in zip(clean, corrupted)]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(clean)), max(4, 0.22 * layers)))
    image = ax.imshow(effect, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, origin="lower")
    ax.set_xticks(range(len(clean)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("layer (its output patched)")
    ax.set_title(f"residual stream patched: share of the preference for {args.answers[0]!r} restored")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    llm.close()


if __name__ == "__main__":
    main()
