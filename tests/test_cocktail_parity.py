"""Parity with LM-Cocktail 0.0.4 on the golden cocktail cases (../shared/golden/README-cocktail.md): the merged
state dicts, the computed weights and losses, the decoder inputs, the embeddings of the saved folder (through
bgekit's FlagModel and through sentence-transformers), the saved files, and every error case."""
from __future__ import annotations

import json
import os
import random

import pytest

from golden import GOLDEN, assert_close, cases, load_output

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = cases({"LM_Cocktail.mix_models", "LM_Cocktail.mix_models_with_data", "LM_Cocktail.mix_models_by_layers"})
ERROR_CASES = json.loads((GOLDEN / "cocktail-error-cases.json").read_text(encoding="utf-8"))


def _args(case: dict) -> list:
    """The case's positional inputs with the model folders made absolute (the reference ran inside GOLDEN)."""
    values = list(case["inputs"].values())
    values[0] = [str(GOLDEN / p) for p in values[0]]
    return values


def _call(case: dict, tmp_path):
    import bgekit.cocktail as cocktail

    kwargs = dict(case["method_kwargs"])
    if kwargs.get("output_path") == "<tmp>":
        kwargs["output_path"] = str(tmp_path / "merged")
    if case.get("python_random_seed") is not None:
        random.seed(case["python_random_seed"])
    func = getattr(cocktail, case["reference_class"].split(".")[1])
    return func(*_args(case), **kwargs), kwargs.get("output_path")


def _tol(case: dict, key: str) -> dict:
    return case["outputs"][key].get("tolerance") or case["tolerance"]


def test_all_seven_cases_are_here():
    assert len(CASES) == 7 and len(ERROR_CASES) == 10


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_golden_case(case, tmp_path):
    from safetensors.torch import load_file

    model, out = _call(case, tmp_path)
    expected = load_file(str(GOLDEN / case["outputs"]["state_dict"]["file"]))
    state = model.state_dict()
    assert list(state) == list(expected) or sorted(state) == sorted(expected), "key sets differ"
    for key in expected:
        assert_close(state[key], expected[key].numpy(), _tol(case, "state_dict"), f"{case['id']}:{key}")
    if "weights" in case["outputs"]:
        assert_close(model.cocktail_weights, load_output(case, "weights"), _tol(case, "weights"), "weights")
        assert_close(model.cocktail_losses, load_output(case, "example_loss"), _tol(case, "example_loss"), "example_loss")
    if out is None:
        return
    saved = load_file(os.path.join(out, "model.safetensors"))
    assert sorted(saved) == sorted(expected)
    for key in expected:
        assert_close(saved[key], expected[key].numpy(), _tol(case, "state_dict"), f"saved {key}")
    reference_files = set(load_output(case, "saved_files")["files"])
    ours = {os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out) for f in fs}
    # differences (docs/compat.md): no sentence-transformers model card README.md; bgekit's spec file added
    assert ours == (reference_files - {"README.md"}) | {"bgekit_spec.json"}
    if "embeddings" in case["outputs"]:
        from bgekit.compat.embedder import FlagModel

        flag = FlagModel(out, use_fp16=False, devices="cpu", pooling_method="cls")
        assert_close(flag.encode(case["embed_sentences"]), load_output(case, "embeddings"), _tol(case, "embeddings"),
                     f"{case['id']}:embeddings")


def test_saved_encoder_loads_with_sentence_transformers_and_bgekit_by_any_name(tmp_path):
    """The folder as the reference saves it: SentenceTransformer(folder) gives the golden embeddings (CLS +
    Normalize from modules.json); bgekit's Embedder reads the spec file even when the folder name says nothing."""
    st = pytest.importorskip("sentence_transformers")
    case = next(c for c in CASES if c["id"] == "cocktail/mix-models-encoder")
    _, out = _call(case, tmp_path)
    expected = load_output(case, "embeddings")
    got = st.SentenceTransformer(out, device="cpu").encode(case["embed_sentences"])
    assert_close(got, expected, _tol(case, "embeddings"), "sentence-transformers")
    renamed = tmp_path / "some-name"
    os.replace(out, renamed)
    from bgekit import Embedder

    emb = Embedder(str(renamed), devices="cpu")
    assert emb.spec.kind == "encoder" and emb.pooling_method == "cls"
    assert_close(emb.encode(case["embed_sentences"]), expected, _tol(case, "embeddings"), "bgekit Embedder")


def test_decoder_inputs_match_the_reference_exactly():
    """Token ids and labels of every row (the reference's quirk included: the prompt mask covers encode(input)
    with its trailing </s>, so the first output token is not scored)."""
    from bgekit import backends
    from bgekit.cocktail.losses import llm_batches, llm_rows

    case = next(c for c in CASES if c["id"] == "cocktail/mix-models-with-data-decoder")
    expected = load_output(case, "llm_inputs")
    tok = backends.load_tokenizer(str(GOLDEN / case["model"][0]))
    assert tok.pad_token_id == expected["pad_token_id"]
    batches = llm_batches(tok, llm_rows(tok, case["inputs"]["example_ata"], expected["pad_to"]), 2)
    assert len(batches) == len(expected["batches"])
    for batch, exp in zip(batches, expected["batches"]):
        assert batch["input_ids"].shape[0] == exp["padded_shape"][0]
        for i, row in enumerate(exp["rows"]):
            n = len(row["input_ids"])
            assert batch["input_ids"][i, :n].tolist() == row["input_ids"]
            assert batch["labels"][i, :n].tolist() == row["labels"]
            assert int(batch["attention_mask"][i].sum()) == row["attention_mask_sum"]
            assert (batch["labels"][i, n:] == -100).all() and (batch["input_ids"][i, n:] == 0).all()


# ---------------------------------------------------------------- error cases

# the reference's exception type -> what bgekit raises there (a subclass of it, with a message), or None where
# bgekit deliberately differs (docs/compat.md)
DIFFERENT = {
    "cocktail/error-with-data-keyword-example-data": "accepted: bgekit takes example_data as well as example_ata",
    "cocktail/error-by-layers-reranker-type": "the reference crashes (UnboundLocalError); bgekit merges rerankers, and "
                                              "refuses this embedder checkpoint because it has no classifier weights",
}
MESSAGE = {  # a fragment each of our messages must contain: it names the problem
    "cocktail/error-weights-sum-2": "sum to 2",
    "cocktail/error-by-layers-weights-sum-2": "sum to 2",
    "cocktail/error-weights-length-mismatch": "1 weights for 2 models",
    "cocktail/error-mix-models-unknown-model-type": "unknown model_type 'embedder'; valid: decoder, encoder, reranker",
    "cocktail/error-mix-models-encoder-decoder-type": "unknown model_type 'encoder-decoder'",
    "cocktail/error-with-data-reranker-type": "unknown model_type 'reranker'; valid: decoder, encoder",
    "cocktail/error-with-data-encoder-decoder-type": "unknown model_type 'encoder-decoder'",
    "cocktail/error-with-data-too-few-negatives": "example_data[0]: 7 negatives, but neg_number=8",
}


@pytest.mark.parametrize("case", [c for c in ERROR_CASES if c["id"] not in DIFFERENT],
                         ids=[c["id"] for c in ERROR_CASES if c["id"] not in DIFFERENT])
def test_error_case(case, tmp_path, monkeypatch):
    """Raised before any model is read (loading is made to fail), as the reference's type, naming the problem."""
    import builtins

    import bgekit.cocktail.params as params

    monkeypatch.setattr(params, "inspect_model", lambda *a, **k: pytest.fail("a model was read before the check"))
    expected_type = getattr(builtins, case["raises"]["type"])
    with pytest.raises(expected_type, match=MESSAGE[case["id"]].replace("(", r"\(").replace("[", r"\[")):
        _call(case, tmp_path)


def test_error_case_example_data_keyword_is_accepted(tmp_path):
    case = next(c for c in ERROR_CASES if c["id"] == "cocktail/error-with-data-keyword-example-data")
    examples = case["method_kwargs"]["example_data"]
    random.seed(0)
    a = _call(case, tmp_path)[0]
    random.seed(0)
    import bgekit.cocktail as cocktail

    b = cocktail.mix_models_with_data(*_args(case), examples)  # the 0.0.4 positional slot (example_ata)
    assert a.cocktail_weights == b.cocktail_weights and len(a.cocktail_weights) == 2
    assert abs(sum(a.cocktail_weights) - 1) < 1e-6
    with pytest.raises(TypeError, match="both example_ata and example_data"):
        cocktail.mix_models_with_data(*_args(case), examples, example_data=examples)


def test_error_case_by_layers_reranker_on_an_embedder_checkpoint(tmp_path):
    from bgekit.cocktail import MergeMismatch

    case = next(c for c in ERROR_CASES if c["id"] == "cocktail/error-by-layers-reranker-type")
    with pytest.raises(MergeMismatch, match=r"bert-embedder-trim' has no weights for tensor 'classifier\.bias'"):
        _call(case, tmp_path)


def test_every_error_case_is_covered():
    assert set(DIFFERENT) | set(MESSAGE) == {c["id"] for c in ERROR_CASES}
    assert not set(DIFFERENT) & set(MESSAGE)
