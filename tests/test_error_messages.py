"""Errors that say what to do (issue 10, section 4): text given where token ids go, ragged batches,
pyllm.lm_eval without lm-eval, and the lm-eval backend's device message only when a device was
asked for."""
import logging

import numpy as np
import pytest

import pyllm
from llama_reference import make_config, make_pair
from llm_models import write_llama


@pytest.fixture(scope="module")
def model():
    _, model = make_pair(make_config(max_position_embeddings=64), seed=2)
    return model


def _calls(model):
    return {
        "model(...)": lambda ids, **kw: model(ids, **kw),
        "model.generate(...)": lambda ids, **kw: model.generate(ids, max_new_tokens=2, **kw),
    }


@pytest.mark.parametrize("call", ["model(...)", "model.generate(...)"])
@pytest.mark.parametrize("text", ["Hello world", ["Hello", "world"], [["Hello"]], b"Hello", np.array(["Hello"])])
def test_text_instead_of_ids_says_to_encode_it(model, call, text):
    with pytest.raises(TypeError) as info:
        _calls(model)[call](text)
    message = str(info.value)
    assert "input_ids" in message and "tok.encode(text)" in message and "pyllm.LLM" in message


@pytest.mark.parametrize("call", ["model(...)", "model.generate(...)"])
@pytest.mark.parametrize("rows", [[[1, 2, 3], [4, 5]], [np.array([1, 2]), [3]], ([1], [2, 3], [4, 5, 6])])
def test_ragged_rows_say_how_to_pad(model, call, rows):
    with pytest.raises(ValueError) as info:
        _calls(model)[call](rows)
    message = str(info.value)
    assert "input_ids rows have different lengths" in message
    assert "attention_mask=[[0, 0, 1, 1]" in message and "Left-pad" in message
    assert "inhomogeneous" not in message  # NumPy's words are not ours


def test_the_padded_form_the_message_shows_works(model):
    """The advice holds: left-padded rows with their mask give each row's own logits."""
    short, long = [5, 6], [1, 2, 3, 4]
    logits = model([[0, 0] + short, long], attention_mask=[[0, 0, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_allclose(logits[0, 2:], model(short), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits[1], model(long), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows", [[[1, 2], 3], [1, [2, 3]]])
def test_mixed_ids_and_rows(model, rows):
    with pytest.raises(ValueError, match=r"input_ids mixes token ids and lists: give a flat list \[seq\]"):
        model(rows)


def test_ragged_attention_mask(model):
    with pytest.raises(ValueError) as info:
        model([[1, 2], [3, 4]], attention_mask=[[1, 1], [1]])
    assert "attention_mask rows have different lengths" in str(info.value)


def test_token_level_scoring_points_to_text_scoring(model):
    with pytest.raises(TypeError, match=r"requests\[0\] context .*got str.*pyllm.LLM.loglikelihood"):
        model.loglikelihood([("The capital of France is", " Paris")])


def test_import_pyllm_lm_eval_without_lm_eval_says_what_to_install(isolated):
    kind, message = isolated("""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "lm_eval":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Block())
        import pyllm.lm_eval
    """)
    assert kind == "ImportError"
    assert 'pip install "pyllm[eval]"' in message


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, data_dir):
    return write_llama(tmp_path_factory.mktemp("llama"), data_dir, n_positions=128)


@pytest.mark.parametrize("device, warned", [(None, False), ("cpu", False), ("cuda:0", True), ("mps", True)])
def test_backend_device_message_only_when_asked(model_dir, caplog, device, warned):
    import pyllm.lm_eval
    from lm_eval.api.registry import get_model
    with caplog.at_level(logging.WARNING, logger="pyllm.lm_eval"):
        get_model("pyllm").create_from_arg_string(f"pretrained={model_dir}",
                                                  {"batch_size": 1, "max_batch_size": None, "device": device})
    said = [r.getMessage() for r in caplog.records if "ignoring device" in r.getMessage()]
    assert bool(said) == warned, said
    if warned:
        assert repr(device) in said[0]


def test_lm_eval_cli_defaults_to_cuda_so_python_m_pyllm_lm_eval_says_cpu():
    """lm-eval's CLI passes device='cuda:0' when none is given (EvaluatorConfig's default): our
    entry point names cpu instead, unless the user names a device or a config file."""
    import dataclasses
    from lm_eval.config.evaluate_config import EvaluatorConfig
    from pyllm.lm_eval.__main__ import default_device_to_cpu
    default = {f.name: f.default for f in dataclasses.fields(EvaluatorConfig)}["device"]
    assert default == "cuda:0"
    run = ["x", "run", "--model", "pyllm", "--tasks", "t"]
    assert default_device_to_cpu(run) == run + ["--device", "cpu"]
    assert default_device_to_cpu(["x", "--model", "pyllm", "--tasks", "t"])[-2:] == ["--device", "cpu"]  # legacy form
    for kept in (run + ["--device", "cuda:0"], run + ["--device=mps"], run + ["--config", "c.yaml"], run + ["-C", "c"],
                 ["x", "ls", "tasks"], ["x", "run"], ["x", "run", "--help"], ["x"]):
        assert default_device_to_cpu(kept) == kept
