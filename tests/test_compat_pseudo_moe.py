"""FlagPseudoMoEModel and model class "decoder-only-pseudo_moe": the domain reaches a remote-code model.

The model is a tiny remote-code model written here (tests/remote_toy.py); expected embeddings are computed
directly with transformers (tokenize, forward with the domain, last token, L2 normalise), not with bgekit.
"""
from __future__ import annotations

import numpy as np
import pytest

from golden import GOLDEN
from remote_toy import write_toy

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["how much protein should a female eat", "summit define", "a", "Definition of summit for learners."]
DECODER = GOLDEN / "models" / "decoder-embedder"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pseudo_moe")
    return {kind: write_toy(root / f"toy_{kind}", DECODER, cls)
            for kind, cls in (("forward", "DomainByForward"), ("setter", "DomainBySetter"))}


def _model(path, **kwargs):
    from bgekit import FlagPseudoMoEModel

    return FlagPseudoMoEModel(path, devices="cpu", use_bf16=False, **kwargs)


def _expected(path: str, texts: list[str], domain: str, by_forward: bool) -> np.ndarray:
    """Embeddings computed with plain transformers, one text at a time (no padding involved)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
    rows = []
    with torch.no_grad():
        for text in texts:
            enc = tok(text, return_tensors="pt")
            if by_forward:
                hidden = model(**enc, domain=domain).last_hidden_state
            else:
                model.set_domain(domain)
                hidden = model(**enc).last_hidden_state
            rows.append(torch.nn.functional.normalize(hidden[0, -1], dim=-1).numpy())
    return np.stack(rows)


@pytest.mark.parametrize("kind", ["forward", "setter"])
def test_constructor_domain_reaches_the_model(folders, kind):
    model = _model(folders[kind], domain_for_pseudo_moe="coding")
    got = model.encode(TEXTS)
    np.testing.assert_allclose(got, _expected(folders[kind], TEXTS, "coding", kind == "forward"), atol=1e-5)
    assert set(model.model.seen) == {"coding"}
    if kind == "setter":
        assert model.model.active == "coding"


@pytest.mark.parametrize("kind", ["forward", "setter"])
def test_per_call_domain_overrides_the_constructor(folders, kind):
    model = _model(folders[kind], domain_for_pseudo_moe="coding")
    by_domain = {d: model.encode(TEXTS, domain_for_pseudo_moe=d) for d in ("general", "reasoning")}
    np.testing.assert_allclose(by_domain["reasoning"], _expected(folders[kind], TEXTS, "reasoning", kind == "forward"),
                               atol=1e-5)
    assert not np.allclose(by_domain["general"], by_domain["reasoning"], atol=1e-3)
    np.testing.assert_allclose(model.encode(TEXTS, domain="reasoning"), by_domain["reasoning"], atol=1e-6)
    # the query/corpus paths route the call's domain too (nested encode does not fall back to the default)
    queries = model.encode_queries(TEXTS, domain_for_pseudo_moe="general")
    np.testing.assert_allclose(queries, by_domain["general"], atol=1e-6)
    np.testing.assert_allclose(model.encode_corpus(TEXTS), model.encode(TEXTS), atol=1e-6)  # back to "coding"
    assert model.model.seen[-1] == "coding"


def test_query_instruction_is_applied_with_the_domain(folders):
    model = _model(folders["forward"], domain_for_pseudo_moe="reasoning",
                   query_instruction_for_retrieval="Given a question, retrieve passages that answer the question.")
    fmt = "Instruct: {}\nQuery: {}"
    wrapped = [fmt.format(model.query_instruction_for_retrieval, t) for t in TEXTS]
    np.testing.assert_allclose(model.encode_queries(TEXTS), _expected(folders["forward"], wrapped, "reasoning", True),
                               atol=1e-5)


def test_auto_model_class_decoder_only_pseudo_moe(folders):
    from bgekit import FlagAutoModel, FlagPseudoMoEModel

    model = FlagAutoModel.from_finetuned(folders["setter"], model_class="decoder-only-pseudo_moe",
                                         domain_for_pseudo_moe="reasoning", use_fp16=False, use_bf16=False,
                                         trust_remote_code=True, devices="cpu")
    assert isinstance(model, FlagPseudoMoEModel)
    np.testing.assert_allclose(model.encode_corpus(TEXTS), _expected(folders["setter"], TEXTS, "reasoning", False),
                               atol=1e-5)


def test_single_device_method_takes_the_domain(folders):
    model = _model(folders["forward"])
    got = model.encode_single_device(TEXTS, device="cpu", domain_for_pseudo_moe="coding")
    np.testing.assert_allclose(got, _expected(folders["forward"], TEXTS, "coding", True), atol=1e-5)


def test_a_domain_the_model_cannot_take_is_an_error():
    with pytest.raises(ValueError, match="no set_domain method"):
        _model(str(DECODER), domain_for_pseudo_moe="coding", trust_remote_code=False)
    with pytest.raises(TypeError, match="domain_for_pseudo_moe must be a string"):
        _model(str(DECODER), domain_for_pseudo_moe=3, trust_remote_code=False)


@pytest.mark.slow  # starts two worker processes; the default run covers devices in test_compat_surface / _abc
def test_two_cpu_devices_give_the_single_device_result(folders):
    """The remote-code model travels to the worker processes and the domain with it."""
    from bgekit import FlagPseudoMoEModel

    texts = TEXTS * 3
    model = FlagPseudoMoEModel(folders["forward"], domain_for_pseudo_moe="coding", use_bf16=False,
                               devices=["cpu", "cpu"])
    np.testing.assert_allclose(model.encode_queries(texts, domain_for_pseudo_moe="reasoning"),
                               _model(folders["forward"], domain_for_pseudo_moe="reasoning").encode_queries(texts),
                               atol=1e-5)
