"""pyllm.LLM: text in, text out, against transformers' generate on the same random model directory
(a LLaMA with the shared SentencePiece tokenizer, a BLOOM with a trained tokenizer.json); stop
strings (text level, per row, and model.generate's HF-style ids); streaming; Ctrl-C; threads;
bad input."""
import _thread
import threading

import numpy as np
import pytest
import torch

import pyllm
from llm_models import hf_pair, write_llama, write_model

PROMPTS = ["Hello world", "The cat sat on the mat because", "Once upon a time, in a land far away", "Zürich 東京 42"]


@pytest.fixture(scope="module", params=["llama", "bloom"])
def setup(request, tmp_path_factory, data_dir):
    directory = tmp_path_factory.mktemp(request.param)
    write_model(request.param, directory, data_dir)
    hf, hf_tok = hf_pair(str(directory))
    llm = pyllm.LLM(str(directory), n_threads=2)
    yield request.param, llm, hf, hf_tok
    llm.close()


def hf_generate(hf, hf_tok, prompt, max_new_tokens, **kwargs):
    """(new text, new ids) of transformers' greedy generate."""
    ids = torch.tensor([hf_tok(prompt)["input_ids"]])
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                          pad_token_id=hf_tok.pad_token_id or hf_tok.eos_token_id, **kwargs)
    new = out[0, ids.shape[1]:].tolist()
    return hf_tok.decode(new, skip_special_tokens=True), out[0].tolist()


def test_tokenizers_agree(setup):
    _, llm, _, hf_tok = setup
    for prompt in PROMPTS:
        assert llm.tokenizer.encode(prompt) == hf_tok(prompt)["input_ids"]


@pytest.mark.parametrize("max_new_tokens", [1, 7, 24])
def test_greedy_text_equals_transformers(setup, max_new_tokens):
    _, llm, hf, hf_tok = setup
    for prompt in PROMPTS:
        expected, _ = hf_generate(hf, hf_tok, prompt, max_new_tokens)
        got = llm.generate(prompt, max_new_tokens=max_new_tokens)
        assert got == expected, prompt
        assert len(got) > 0 or max_new_tokens == 1


def test_batch_of_prompts_equals_single_prompts(setup):
    _, llm, _, _ = setup
    singles = [llm.generate(p, max_new_tokens=16) for p in PROMPTS]
    assert llm.generate(PROMPTS, max_new_tokens=16) == singles
    assert llm.generate(PROMPTS[1:2], max_new_tokens=16) == singles[1:2]


def test_generation_config_and_model_defaults(setup):
    _, llm, _, _ = setup
    cfg = pyllm.GenerationConfig(max_new_tokens=5)
    assert llm.generate(PROMPTS[0], generation_config=cfg) == llm.generate(PROMPTS[0], max_new_tokens=5)
    # A per-call option overrides the config's.
    assert llm.generate(PROMPTS[0], generation_config=cfg, max_new_tokens=9) == \
        llm.generate(PROMPTS[0], max_new_tokens=9)
    # Unset options inherit generation_config.json; transformers' default length there is 20 new tokens.
    assert llm.generate(PROMPTS[0]) == llm.generate(PROMPTS[0], max_new_tokens=20)


def test_sampling_with_a_seed_is_reproducible(setup):
    _, llm, _, _ = setup
    kwargs = dict(do_sample=True, temperature=1.5, top_k=0, max_new_tokens=12)
    a = llm.generate(PROMPTS[2], seed=5, **kwargs)
    assert a == llm.generate(PROMPTS[2], seed=5, **kwargs)
    assert len({llm.generate(PROMPTS[2], seed=s, **kwargs) for s in range(6)}) > 1
    many = llm.generate(PROMPTS[2], seed=5, num_return_sequences=3, **kwargs)
    assert isinstance(many, list) and len(many) == 3 and many[0] == a


def _stop_candidates(text):
    """Substrings of a generated text to use as stop strings: short ones inside and across tokens."""
    out = []
    for start, length in ((1, 2), (len(text) // 2, 3), (len(text) // 3, 1), (len(text) - 4, 4)):
        s = text[max(0, start):max(0, start) + length]
        if s.strip():
            out.append(s)
    return out


def test_stop_strings_cut_the_text(setup):
    _, llm, _, _ = setup
    for prompt in PROMPTS:
        full = llm.generate(prompt, max_new_tokens=24, eos_token_id=[])
        for stop in _stop_candidates(full):
            got = llm.generate(prompt, max_new_tokens=24, eos_token_id=[], stop_strings=[stop])
            assert got == full[:full.index(stop)], (prompt, stop)
        # Several stop strings: the earliest occurrence wins.
        stops = _stop_candidates(full)
        cut = min(full.index(s) for s in stops)
        assert llm.generate(prompt, max_new_tokens=24, eos_token_id=[], stop_strings=stops) == full[:cut]


def test_stop_strings_per_row_in_a_batch(setup):
    _, llm, _, _ = setup
    fulls = llm.generate(PROMPTS, max_new_tokens=20, eos_token_id=[])
    stop = fulls[1][len(fulls[1]) // 2:len(fulls[1]) // 2 + 2]
    got = llm.generate(PROMPTS, max_new_tokens=20, eos_token_id=[], stop_strings=stop)
    for full, text in zip(fulls, got):
        assert text == (full[:full.index(stop)] if stop in full else full)
    assert got[1] != fulls[1]


def test_model_generate_stop_strings_like_transformers(setup):
    """model.generate(stop_strings=, tokenizer=) returns the ids up to and including the token
    that completed the stop string, as transformers' StopStringCriteria does."""
    _, llm, hf, hf_tok = setup
    for prompt in PROMPTS:
        full, _ = hf_generate(hf, hf_tok, prompt, 24, eos_token_id=None)
        for stop in _stop_candidates(full):
            _, expected = hf_generate(hf, hf_tok, prompt, 24, stop_strings=[stop], tokenizer=hf_tok)
            ids = llm.tokenizer.encode(prompt)
            got = llm.model.generate(ids, max_new_tokens=24, stop_strings=[stop], tokenizer=llm.tokenizer)
            assert got.tolist() == expected, (prompt, stop)


def test_stream_concatenation_equals_generate(setup):
    _, llm, _, _ = setup
    for prompt in PROMPTS:
        for kwargs in ({"max_new_tokens": 24}, {"max_new_tokens": 30, "eos_token_id": []},
                       {"do_sample": True, "seed": 3, "max_new_tokens": 20}):
            full = llm.generate(prompt, **kwargs)
            pieces = list(llm.stream(prompt, **kwargs))
            assert "".join(pieces) == full
            assert all(p and "\ufffd" not in p for p in pieces) or "\ufffd" in full
            stops = _stop_candidates(full)
            pieces = list(llm.stream(prompt, stop_strings=stops, **kwargs))
            assert "".join(pieces) == llm.generate(prompt, stop_strings=stops, **kwargs)


def test_stream_holds_back_a_possible_stop_string(setup):
    _, llm, _, _ = setup
    full = llm.generate(PROMPTS[2], max_new_tokens=24, eos_token_id=[])
    # A stop string that starts like the text's end but never completes: that text may be shown
    # only when the stream ends.
    tail = full[-3:]
    stop = tail + "\u2603never"
    pieces = list(llm.stream(PROMPTS[2], max_new_tokens=24, eos_token_id=[], stop_strings=[stop]))
    assert "".join(pieces) == full
    assert pieces[-1].endswith(tail)
    shown = ""
    for piece in pieces[:-1]:
        shown += piece
        assert not any(shown.endswith(stop[:n]) for n in range(1, len(stop)))


def test_closing_a_stream_stops_generation(setup):
    _, llm, _, _ = setup
    steps = []

    def count(input_ids, scores):
        steps.append(1)
        return scores

    stream = llm.stream(PROMPTS[0], max_new_tokens=400, eos_token_id=[], logits_processor=count)
    first = next(stream)
    assert isinstance(first, str)
    stream.close()
    assert len(steps) < 400
    assert llm.generate(PROMPTS[0], max_new_tokens=5) == llm.generate(PROMPTS[0], max_new_tokens=5)


def _interrupt_at(step):
    seen = []

    def processor(input_ids, scores):
        seen.append(1)
        if len(seen) == step:
            _thread.interrupt_main()  # as Ctrl-C (or a notebook's interrupt) would
        return scores
    return processor, seen


def test_keyboard_interrupt_stops_generate_within_a_step(setup):
    _, llm, _, _ = setup
    expected = llm.generate(PROMPTS[1], max_new_tokens=10)
    processor, seen = _interrupt_at(3)
    with pytest.raises(KeyboardInterrupt):
        llm.generate(PROMPTS[1], max_new_tokens=400, eos_token_id=[], logits_processor=processor)
    assert len(seen) <= 4
    assert llm.generate(PROMPTS[1], max_new_tokens=10) == expected


def test_keyboard_interrupt_stops_a_stream(setup):
    _, llm, _, _ = setup
    expected = llm.generate(PROMPTS[1], max_new_tokens=10)
    processor, seen = _interrupt_at(3)
    with pytest.raises(KeyboardInterrupt):
        for _ in llm.stream(PROMPTS[1], max_new_tokens=400, eos_token_id=[], logits_processor=processor):
            pass
    assert len(seen) < 400
    assert "".join(llm.stream(PROMPTS[1], max_new_tokens=10)) == expected


def test_threads_share_one_llm(setup):
    _, llm, _, _ = setup
    expected = {p: llm.generate(p, max_new_tokens=12) for p in PROMPTS}
    results, errors = [], []

    def work(i):
        try:
            for k in range(3):
                p = PROMPTS[(i + k) % len(PROMPTS)]
                results.append((p, llm.generate(p, max_new_tokens=12)))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 12
    for p, text in results:
        assert text == expected[p]


def test_perplexity_goes_through_scoring(setup):
    _, llm, _, _ = setup
    value = llm.perplexity(PROMPTS)
    assert value == pyllm.scoring.perplexity(llm.model, llm.tokenizer, PROMPTS)
    assert np.isfinite(value) and value > 1


def test_bad_input_leaves_the_llm_usable(setup):
    _, llm, _, _ = setup
    expected = llm.generate(PROMPTS[0], max_new_tokens=4)
    with pytest.raises(TypeError, match="max_tokens"):
        llm.generate(PROMPTS[0], max_tokens=4)
    with pytest.raises(TypeError, match="bogus"):
        llm.stream(PROMPTS[0], bogus=1)
    with pytest.raises(ValueError, match="top_p"):
        llm.generate(PROMPTS[0], top_p=1.5)
    with pytest.raises(ValueError, match="temperature"):
        llm.stream(PROMPTS[0], temperature=-1)
    with pytest.raises(ValueError, match="empty"):
        llm.generate([])
    with pytest.raises(ValueError, match="empty string"):
        llm.generate(PROMPTS[0], stop_strings=["ok", ""])
    with pytest.raises(TypeError):
        llm.generate(PROMPTS[0], stop_strings=[3])
    with pytest.raises(TypeError):
        llm.generate(42)
    with pytest.raises(TypeError):
        llm.generate(["fine", None])
    with pytest.raises(ValueError, match="n_ctx"):
        llm.generate("word " * 2000)
    with pytest.raises(ValueError, match="role"):
        llm.chat([{"content": "hi"}])
    with pytest.raises(ValueError, match="tokenizer"):
        llm.model.generate(llm.tokenizer.encode("x"), stop_strings=["a"])
    assert llm.generate(PROMPTS[0], max_new_tokens=4) == expected


def test_close_frees_and_later_calls_raise(tmp_path, data_dir):
    directory = write_llama(tmp_path, data_dir)
    with pyllm.LLM(directory) as llm:
        text = llm.generate("Hi", max_new_tokens=3)
        assert isinstance(text, str)
    assert llm.closed
    for call in (lambda: llm.generate("Hi"), lambda: llm.stream("Hi"), lambda: llm.chat([{"role": "user", "content": "x"}]),
                 lambda: llm.perplexity("Hi")):
        with pytest.raises(RuntimeError, match="closed"):
            call()


def test_options_from_a_generation_config_reach_the_stop_strings(setup):
    """num_return_sequences set only in the config still sizes the per-row stop-string state."""
    _, llm, _, _ = setup
    cfg = pyllm.GenerationConfig(do_sample=True, num_return_sequences=3, max_new_tokens=12, seed=4)
    texts = llm.generate(PROMPTS[:2], generation_config=cfg, stop_strings=["e"])
    assert len(texts) == 2 and all(len(row) == 3 for row in texts)
    full = llm.generate(PROMPTS[:2], generation_config=cfg)
    for cut_rows, full_rows in zip(texts, full):
        for text, whole in zip(cut_rows, full_rows):
            assert text == (whole[:whole.index("e")] if "e" in whole else whole)


def test_hooks_and_context_errors_leave_the_llm_usable(setup):
    _, llm, _, _ = setup
    expected = llm.generate(PROMPTS[0], max_new_tokens=4)

    def boom(input_ids, scores):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        llm.generate(PROMPTS[0], max_new_tokens=4, logits_processor=boom)
    with pytest.raises(RuntimeError, match="boom"):
        list(llm.stream(PROMPTS[0], max_new_tokens=4, logits_processor=boom))
    with pytest.raises(ValueError, match="shape"):
        llm.generate(PROMPTS[0], max_new_tokens=4, logits_processor=lambda i, s: s[:, :3])
    with pytest.raises(ValueError, match="n_ctx"):
        llm.generate(PROMPTS[0], max_new_tokens=llm.model.n_ctx)
    assert llm.generate(PROMPTS[0], max_new_tokens=4) == expected


def test_streams_and_generates_from_several_threads(setup):
    _, llm, _, _ = setup
    expected = {p: llm.generate(p, max_new_tokens=10) for p in PROMPTS}
    results, errors = [], []

    def work(i):
        try:
            p = PROMPTS[i % len(PROMPTS)]
            text = "".join(llm.stream(p, max_new_tokens=10)) if i % 2 else llm.generate(p, max_new_tokens=10)
            results.append((p, text))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 6
    assert all(text == expected[p] for p, text in results)


def test_stop_string_helpers_against_brute_force():
    from pyllm.stop_strings import cut_at_stop, held_back_length
    rng = np.random.default_rng(1)
    for _ in range(300):
        text = "".join(rng.choice(list("abé"), size=rng.integers(0, 9)))
        stops = ["".join(rng.choice(list("abé"), size=rng.integers(1, 5))) for _ in range(rng.integers(1, 4))]
        held = max([n for s in stops for n in range(1, len(s)) if len(text) >= n and text.endswith(s[:n])] + [0])
        assert held_back_length(text, stops) == held
        hits = [text.find(s) for s in stops if s in text]
        assert cut_at_stop(text, stops) == ((text[:min(hits)], True) if hits else (text, False))


def test_llm_passes_n_ctx_and_threads(tmp_path, data_dir):
    directory = write_llama(tmp_path, data_dir)
    llm = pyllm.LLM(directory, n_ctx=24, n_threads=1)
    assert llm.model.n_ctx == 24 and llm.model.n_threads == 1
    with pytest.raises(ValueError, match="n_ctx"):
        llm.generate("word " * 30, max_new_tokens=1)
    with pytest.raises(ValueError, match="dtype"):
        pyllm.LLM(directory, dtype="int3")
    with pytest.raises(FileNotFoundError):
        pyllm.LLM(str(tmp_path / "missing"))


def test_stop_strings_from_a_generation_config(setup):
    _, llm, _, _ = setup
    full = llm.generate(PROMPTS[2], max_new_tokens=20, eos_token_id=[])
    stop = _stop_candidates(full)[1]
    expected = llm.generate(PROMPTS[2], max_new_tokens=20, eos_token_id=[], stop_strings=stop)
    cfg = pyllm.GenerationConfig(max_new_tokens=20, eos_token_id=[], stop_strings=[stop])
    assert llm.generate(PROMPTS[2], generation_config=cfg) == expected
    assert "".join(llm.stream(PROMPTS[2], generation_config=cfg)) == expected
    # Given by name, they win over the config's.
    assert llm.generate(PROMPTS[2], generation_config=cfg, stop_strings=["\u2603"]) == full
    ids = llm.tokenizer.encode(PROMPTS[2])
    assert llm.model.generate(ids, generation_config=cfg, tokenizer=llm.tokenizer).tolist() == \
        llm.model.generate(ids, max_new_tokens=20, eos_token_id=[], stop_strings=stop, tokenizer=llm.tokenizer).tolist()
    with pytest.raises(ValueError, match="empty string"):
        pyllm.GenerationConfig(stop_strings=[""])
    with pytest.raises(ValueError, match="tokenizer"):
        llm.model.generate(ids, generation_config=cfg)


def test_a_real_sigint_stops_generate_and_stream(setup):
    """The signal itself (what a terminal's Ctrl-C or a notebook kernel's interrupt sends)."""
    import os
    import signal
    _, llm, _, _ = setup
    expected = llm.generate(PROMPTS[3], max_new_tokens=6)
    seen = []

    def processor(input_ids, scores):
        seen.append(1)
        if len(seen) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return scores

    with pytest.raises(KeyboardInterrupt):
        llm.generate(PROMPTS[3], max_new_tokens=400, eos_token_id=[], logits_processor=processor)
    assert len(seen) <= 3
    seen.clear()
    with pytest.raises(KeyboardInterrupt):
        list(llm.stream(PROMPTS[3], max_new_tokens=400, eos_token_id=[], logits_processor=processor))
    assert len(seen) < 400
    assert llm.generate(PROMPTS[3], max_new_tokens=6) == expected
