"""pyllm's own precisions side by side: decode and prefill tokens/s of one random LLaMA packed as
float32, bfloat16, int8 and int4, in alternating rounds, with the bytes each decode step streams.

    python benchmarks/bench_dtypes.py                      # hidden 2048, 4 layers (TinyLlama's layer shape)
    python benchmarks/bench_dtypes.py --layers 22          # TinyLlama-1.1B's full shape (about 4.4 GB of f32)

"GB/s" is weight bytes read per decode step (every matrix once, the lm_head included) divided by
the step time: how close decode runs to the memory wall. The peers' figures come from
benchmarks/bench_peers.py."""
import argparse
import statistics
import time

import numpy as np

import pyllm


def random_llama(hidden, layers, heads, kv_heads, ffn, vocab, seed=0):
    rng = np.random.default_rng(seed)
    head = hidden // heads
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": vocab,
              "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads, "max_position_embeddings": 2048,
              "rms_norm_eps": 1e-5, "tie_word_embeddings": False}

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols), dtype=np.float32) * (0.5 / cols ** 0.5)).astype(np.float32)

    w = {"model.embed_tokens.weight": mat(vocab, hidden), "model.norm.weight": np.ones(hidden, np.float32),
         "lm_head.weight": mat(vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = mat(hidden, hidden)
        w[p + "self_attn.k_proj.weight"] = mat(kv_heads * head, hidden)
        w[p + "self_attn.v_proj.weight"] = mat(kv_heads * head, hidden)
        w[p + "self_attn.o_proj.weight"] = mat(hidden, hidden)
        w[p + "mlp.gate_proj.weight"] = mat(ffn, hidden)
        w[p + "mlp.up_proj.weight"] = mat(ffn, hidden)
        w[p + "mlp.down_proj.weight"] = mat(hidden, ffn)
        w[p + "input_layernorm.weight"] = np.ones(hidden, np.float32)
        w[p + "post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
    return config, w


def decode_rate(model, prompt, new):
    start = time.perf_counter()
    out = model.generate(prompt, max_new_tokens=new, min_new_tokens=new, eos_token_id=[])
    seconds = time.perf_counter() - start
    assert out.shape[-1] == len(prompt) + new
    return new / seconds


def prefill_rate(model, prompt):
    start = time.perf_counter()
    model(prompt, logits_to_keep=1)
    return len(prompt) / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=5632)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--prefill", type=int, default=256)
    ap.add_argument("--dtypes", default="float32,bfloat16,int8,int4")
    args = ap.parse_args()
    config, weights = random_llama(args.hidden, args.layers, args.heads, args.kv_heads, args.ffn, args.vocab)
    dtypes = args.dtypes.split(",")
    models = {dt: pyllm.Model.from_arrays(config, weights, dtype=dt, n_threads=args.threads,
                                          lm_head_dtype="same") for dt in dtypes}
    del weights
    rng = np.random.default_rng(1)
    prompt = rng.integers(3, args.vocab, size=8)
    long_prompt = rng.integers(3, args.vocab, size=args.prefill)
    decode = {dt: [] for dt in dtypes}
    prefill = {dt: [] for dt in dtypes}
    for dt in dtypes:  # warm up: primitives, scratch, page faults
        decode_rate(models[dt], prompt, 4)
        prefill_rate(models[dt], long_prompt)
    for _ in range(args.rounds):
        for dt in dtypes:
            decode[dt].append(decode_rate(models[dt], prompt, args.new_tokens))
            prefill[dt].append(prefill_rate(models[dt], long_prompt))
    print(f"LLaMA hidden {args.hidden}, {args.layers} layers, ffn {args.ffn}, vocab {args.vocab}; "
          f"{args.threads} threads; kernels: {pyllm._core.kernel_isa()}; medians of {args.rounds} alternating rounds")
    print(f"{'dtype':10} {'MB':>8} {'decode tok/s':>13} {'GB/s':>7} {'vs f32':>7} {'prefill tok/s':>14} {'vs f32':>7}")
    base_d = statistics.median(decode[dtypes[0]])
    base_p = statistics.median(prefill[dtypes[0]])
    for dt in dtypes:
        d = statistics.median(decode[dt])
        p = statistics.median(prefill[dt])
        mb = models[dt].weight_bytes / 1e6
        streamed = mb - args.vocab * args.hidden * 4 / 1e6  # the embedding table is not streamed
        print(f"{dt:10} {mb:8.0f} {d:13.1f} {streamed * d / 1e3:7.1f} {d / base_d:7.2f} {p:14.1f} {p / base_p:7.2f}")


if __name__ == "__main__":
    main()
