"""Entry points for pyllm's own tests and benchmarks, not part of the API: one linear layer, one
weight format or one logits-processor stage of the C core alone, to hold against references.
They live in the C submodule pyllm._core._testing, off the shipped module's public surface."""
from ._core import _testing as _impl

linear = _impl.linear  # x · Wᵀ (+ bias) with W packed as a weight type; repeats > 1: (y, seconds a call)
set_claim_rows = _impl.set_claim_rows  # (rows) the decode products' rows per thread claim; 0: their own
quantize_roundtrip = _impl.quantize_roundtrip  # weights quantized to a type and back to f32
prefill_compute = _impl.prefill_compute        # (type) 'float32', 'bfloat16' or 'int8': prefill's products
apply_processors = _impl.apply_processors      # the generation loop's logits processors on [batch, vocab]
apply_warpers = _impl.apply_warpers            # the sampling warpers on [batch, vocab]
gguf_qweight_roundtrip = _impl.gguf_qweight_roundtrip  # GGUF Q8_0/Q4_0/Q4_1 blocks into our layout and back
tokenizer_work = _impl.tokenizer_work          # one encode's work counts (regex, BPE, special tokens, ...)
regex_work = _impl.regex_work                  # a pattern's matches over a text and the steps they took
fail_after = _impl.fail_after                  # ('alloc'|'dnnl'|'any', n): the n-th such call from now fails
fault_count = _impl.fault_count                # calls of a kind since fail_after
faults_injected = _impl.faults_injected        # failures injected since fail_after (0 or 1)
clear_faults = _impl.clear_faults              # stop counting, no failure pending
set_pool_sizing = _impl.set_pool_sizing  # (on) the pool's busy-neighbour sizing; off: every job uses all threads
pool_stats = _impl.pool_stats  # the worker pool's counters: workers, jobs, entries, reduced, wakeups
hold_kv_cache = _impl.hold_kv_cache              # fn() while a KV cache is claimed as a forward claims it
regex_find_all = _impl.regex_find_all  # the tokenizer regex engine's Split matches on raw bytes
decoder_tokens_run = _impl.decoder_tokens_run  # rows x tokens every forward pass has taken in so far
