"""LLM.loglikelihood / LLM.loglikelihood_rolling on strings against lm-evaluation-harness's own
``hf`` backend (HFLM) on the same random model directories (a LLaMA with the SentencePiece
tokenizer, which adds BOS; a BLOOM with a byte-level tokenizer.json, which adds nothing): the
token ids of every pair, the log-probability sums and the is-greedy flags."""
import os
import types

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pyllm  # noqa: E402
from pyllm import text_pairs  # noqa: E402
from llm_models import write_model  # noqa: E402

MAX_LENGTH = 96
REL = 1e-4

PAIRS = [
    ("The capital of France is", " Paris"),
    ("The capital of France is ", "Paris"),          # trailing space moves to the continuation
    ("The capital of France is  \n", "London"),      # several whitespace characters move
    ("", "Hello world"),                             # empty context: scored after the prefix token
    ("", "a b"),  # (not " a": transformers 5's LlamaTokenizer drops SentencePiece's "▁" before a leading space)
    ("<s>Question: 2+2?\nAnswer:", " 4"),            # already starts with BOS text: no second BOS
    ("Zürich 東京", " 42 ünïcode"),
    ("She opened the door and", " walked in."),
    ("She opened the door and", " sat."),            # a shared context
    ("We kept on walking along the river bank. " * 12 + "At last we reached the", " old mill"),  # truncated
]
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time there was a little girl who lived in a village near the forest. " * 8,  # two windows
    "",
    "Zürich 東京 42",
]


@pytest.fixture(scope="module", params=["llama", "bloom"])
def setup(request, tmp_path_factory, data_dir):
    directory = tmp_path_factory.mktemp(request.param)
    write_model(request.param, directory, data_dir)
    from lm_eval.models.huggingface import HFLM
    reference = HFLM(pretrained=str(directory), device="cpu", max_length=MAX_LENGTH, batch_size=2, dtype="float32")
    llm = pyllm.LLM(str(directory), n_threads=2)
    yield llm, reference
    llm.close()


def _requests(items):
    return [types.SimpleNamespace(args=item if isinstance(item, tuple) else (item,)) for item in items]


def _greedy_pairs(llm):
    """Pairs whose continuation is the model's own greedy next token, kept when its text encodes
    back to that token after the context, so that is_greedy can be True."""
    import numpy as np
    prefix = text_pairs.prefix_token_id(llm.tokenizer)
    pairs = []
    for context in ("Hello world", "The cat sat on the mat because", "Once upon a time", "A B C D", "1, 2, 3,"):
        ids = text_pairs.encode_text(llm.tokenizer, context, prefix)
        token = int(np.argmax(llm.model(ids)[-1]))
        text = llm.tokenizer.decode(ids + [token])[len(llm.tokenizer.decode(ids)):]
        if text and text_pairs.encode_pair(llm.tokenizer, context, text, prefix)[1] == [token]:
            pairs.append((context, text))
    return pairs


def test_token_ids_equal_lm_evals(setup):
    llm, reference = setup
    prefix = text_pairs.prefix_token_id(llm.tokenizer)
    assert prefix == reference.prefix_token_id
    for context, continuation in PAIRS:
        ours = text_pairs.encode_pair(llm.tokenizer, context, continuation, prefix)
        if context == "":
            cont = reference.tok_encode(continuation, add_special_tokens=False)
            theirs = ([prefix], cont) if cont[0] != prefix else (cont[:1], cont[1:])
        else:
            theirs = reference._encode_pair(context, continuation)
        assert ours == (list(theirs[0]), list(theirs[1])), (context, continuation)
    for text in TEXTS:
        assert text_pairs.encode_text(llm.tokenizer, text, prefix) == reference.tok_encode(text), text


def test_loglikelihood_equals_lm_evals(setup):
    llm, reference = setup
    pairs = PAIRS + _greedy_pairs(llm)
    ours = llm.loglikelihood(pairs, max_length=MAX_LENGTH, batch_size=3)
    theirs = reference.loglikelihood(_requests(pairs), disable_tqdm=True)
    assert len(ours) == len(theirs) == len(pairs)
    for pair, (ll, greedy), (ref_ll, ref_greedy) in zip(pairs, ours, theirs):
        assert abs(ll - ref_ll) <= REL * abs(ref_ll), (pair, ll, ref_ll)
        assert greedy == bool(ref_greedy), pair
    assert len({round(ll, 3) for ll, _ in ours}) > len(pairs) // 2  # the scores differ: the model is not flat
    assert any(greedy for _, greedy in ours)  # the flag is exercised both ways
    assert not all(greedy for _, greedy in ours)


def test_loglikelihood_rolling_equals_lm_evals(setup):
    llm, reference = setup
    ours = llm.loglikelihood_rolling(TEXTS, max_length=MAX_LENGTH)
    theirs = reference.loglikelihood_rolling(_requests(TEXTS), disable_tqdm=True)
    assert len(ours) == len(theirs) == len(TEXTS)
    for text, a, b in zip(TEXTS, ours, theirs):
        assert abs(a - b) <= REL * max(abs(b), 1e-9), (text, a, b)
    # An empty text scores nothing, as in lm-eval, unless the tokenizer adds BOS (then BOS is scored).
    assert (ours[2] == 0.0) == (llm.tokenizer.encode("") == [])
    assert len(text_pairs.rolling_pairs(llm.tokenizer, TEXTS[1], text_pairs.prefix_token_id(llm.tokenizer),
                                        MAX_LENGTH)) >= 2  # the long text spans windows
    # One str, one float: the same score as in the batch, up to the GEMM's summation order, which
    # on AVX2 hosts changes with the number of rows (oneDNN's f32 GEMM; bit for bit only with
    # batch_invariant=True).
    alone = llm.loglikelihood_rolling(TEXTS[0], max_length=MAX_LENGTH)
    assert isinstance(alone, float) and abs(alone - ours[0]) <= 1e-6 * abs(ours[0])


def test_the_backend_scores_the_same_tokens(setup):
    """pyllm's lm-eval backend and LLM share the tokenization: same numbers on the same pairs."""
    import pyllm.lm_eval
    llm, _ = setup
    backend = pyllm.lm_eval.PyllmLM(llm.model_dir, max_length=MAX_LENGTH, n_threads=2, batch_size=3)
    pairs = PAIRS[:6]
    # llm's prefix cache is warm from the tests before: its contexts start from cached KV, which
    # moves float32 sums by rounding only (~1e-7 relative); other tokens would move them far more.
    ours = llm.loglikelihood(pairs, max_length=MAX_LENGTH, batch_size=3)
    theirs = backend.loglikelihood(_requests(pairs), disable_tqdm=True)
    assert [ll for ll, _ in theirs] == pytest.approx([ll for ll, _ in ours], rel=1e-6)
    assert [greedy for _, greedy in theirs] == [greedy for _, greedy in ours]
    assert backend.loglikelihood_rolling(_requests(TEXTS), disable_tqdm=True) == pytest.approx(
        llm.loglikelihood_rolling(TEXTS, max_length=MAX_LENGTH, batch_size=3), rel=1e-6)


def test_a_single_pair_must_be_wrapped(setup):
    llm, _ = setup
    with pytest.raises(TypeError, match=r"wrap it in a list, \[\(context, continuation\)\]"):
        llm.loglikelihood(("The capital of France is", " Paris"))
    with pytest.raises(TypeError, match="wrap it in a list"):
        llm.loglikelihood(["The capital of France is", " Paris"])


@pytest.mark.parametrize("requests, error, words", [
    ("The capital", TypeError, "requests must be a list of (context, continuation) pairs"),
    ([], ValueError, "requests is empty"),
    ([("a", "b", "c")], TypeError, "requests[0] must be a (context, continuation) pair"),
    ([("a", 3)], TypeError, "requests[0]'s continuation must be a str, got int"),
    ([(None, "b")], TypeError, "requests[0]'s context must be a str, got NoneType"),
    ([("a", "")], ValueError, "requests[0] has an empty continuation"),
])
def test_bad_requests(setup, requests, error, words):
    llm, _ = setup
    with pytest.raises(error) as info:
        llm.loglikelihood(requests)
    assert words in str(info.value)


@pytest.mark.parametrize("texts, error, words", [
    (b"bytes", TypeError, "texts must be a str or a list of str, got bytes"),
    ([], ValueError, "texts is empty"),
    (["ok", 5], TypeError, "texts[1] must be a str, got int"),
])
def test_bad_rolling_texts(setup, texts, error, words):
    llm, _ = setup
    with pytest.raises(error) as info:
        llm.loglikelihood_rolling(texts)
    assert words in str(info.value)
