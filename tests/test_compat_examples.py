"""FlagEmbedding's inference example scripts (examples/inference/**.py), run with bgekit.

Each entry of SCRIPTS makes the same calls as one script, with only the import changed: the hub name points at
a folder of that name holding the golden fixture of the same architecture, CUDA devices become CPU ones, and the
40-layer models' layer numbers map to the tiny fixtures' layers (one table: tests/compat_hub.py). Each script
runs to the end; what it prints is then checked: shapes, identical inputs giving identical outputs, and several
devices giving what one device gives. The README code blocks are in tests/test_compat_readme.py. Scripts on two
devices start worker processes (10-90 s each on the shared 2-core machine), so they carry the ``slow`` marker
(run them with ``-m slow``); the default run covers several devices in test_compat_surface and test_compat_abc.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compat_hub import cpu, layers, make_hub

pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """``hub(name, like=None)``: the hub name as a folder holding the fixture (see tests/compat_hub.py)."""
    return make_hub(tmp_path_factory.mktemp("hub"))


def make(entry: str, path: str, **kwargs):
    """``entry`` as the scripts call it: a class name, or ``FlagAutoModel`` / ``FlagAutoReranker``."""
    import bgekit

    if entry in ("FlagAutoModel", "FlagAutoReranker"):
        return getattr(bgekit, entry).from_finetuned(path, **kwargs)
    return getattr(bgekit, entry)(path, **kwargs)


# ---------------------------------------------------------------- inputs (the scripts' texts, shortened)
CAPITALS_Q = ["What is the capital of France?", "What is the population of China?"]
CAPITALS_P = ["Paris is the capital of France.", "The population of China is over 1.4 billion people."]
PROTEIN_Q = ["how much protein should a female eat", "summit define"]
PROTEIN_P = ["As a general guideline, the CDC's average requirement of protein for women ages 19 to 70 is 46 grams "
             "per day.", "Definition of summit for English Language Learners: the highest point of a mountain."]
M3_Q = ["What is BGE M3?", "Defination of BM25"]
M3_P = ["BGE M3 is an embedding model supporting dense retrieval, lexical matching and multi-vector interaction.",
        "BM25 is a bag-of-words retrieval function that ranks a set of documents based on the query terms."]
PAIRS = [[q, p] for q in CAPITALS_Q for p in CAPITALS_P]
QUESTION = "Given a question, retrieve passages that answer the question."
EXAMPLES = [
    {"instruct": "Given a web search query, retrieve relevant passages that answer the query.",
     "query": "what is a virtual interface",
     "response": "A virtual interface is a software-defined abstraction of a physical network interface."},
    {"instruct": "Given a web search query, retrieve relevant passages that answer the query.",
     "query": "causes of back pain in female for a week",
     "response": "Back pain in females lasting a week can stem from various factors."},
]
EN = "Represent this sentence for searching relevant passages: "
ICL = dict(query_instruction_for_retrieval=QUESTION, examples_for_task=EXAMPLES,
           examples_instruction_format="<instruct>{}\n<query>{}\n<response>{}")
MOE = dict(query_instruction_for_retrieval=QUESTION, query_instruction_format="Instruct: {}\nQuery: {}",
           use_fp16=False, use_bf16=True, trust_remote_code=True)
LLM_RR = dict(use_fp16=True, query_instruction_for_rerank="A: ", passage_instruction_for_rerank="B: ")

# ---------------------------------------------------------------- the scripts
TWO = ["cuda:0", "cuda:1"]
# script -> (entry, hub name, constructor kwargs, shape, inputs repeated n times, call kwargs)
SCRIPTS = {
    "embedder/encoder_only/base_single_device.py": ("FlagModel", "BAAI/bge-small-en-v1.5", dict(
        query_instruction_for_retrieval=EN, query_instruction_format="{}{}", devices="cuda:0", pooling_method="cls"),
        "dense", 100, {}),
    "embedder/encoder_only/base_multi_devices.py": ("FlagModel", "BAAI/bge-small-en-v1.5", dict(
        query_instruction_for_retrieval=EN, query_instruction_format="{}{}", devices=TWO, pooling_method="cls"),
        "dense", 100, {}),
    "embedder/encoder_only/auto_base_single_device.py": ("FlagAutoModel", "BAAI/bge-small-en-v1.5", dict(
        query_instruction_for_retrieval=EN, devices="cuda:0"), "dense", 100, {}),
    "embedder/encoder_only/auto_base_multi_devices.py": ("FlagAutoModel", "BAAI/bge-small-en-v1.5", dict(
        query_instruction_for_retrieval=EN, devices=TWO), "dense", 100, {}),
    "embedder/encoder_only/m3_single_device.py": ("BGEM3FlagModel", "BAAI/bge-m3", dict(
        devices="cuda:0", pooling_method="cls"), "m3", 100, {}),
    "embedder/encoder_only/m3_multi_devices.py": ("BGEM3FlagModel", "BAAI/bge-m3", dict(
        devices=TWO, pooling_method="cls"), "m3", 100, {}),
    "embedder/encoder_only/auto_m3_single_device.py": ("FlagAutoModel", "BAAI/bge-m3", dict(devices="cuda:0"),
                                                        "m3", 100, {}),
    "embedder/encoder_only/auto_m3_multi_devices.py": ("FlagAutoModel", "BAAI/bge-m3", dict(devices=TWO), "m3", 100, {}),
    "embedder/encoder_only/m3_single_device_compute_score.py": ("BGEM3FlagModel", "BAAI/bge-m3", dict(
        devices="cuda:0", pooling_method="cls"), "m3-score", 100, {}),
    "embedder/encoder_only/m3_multi_devices_compute_score.py": ("BGEM3FlagModel", "BAAI/bge-m3", dict(
        devices=TWO, pooling_method="cls"), "m3-score", 100, {}),
    "embedder/decoder_only/base_single_device.py": ("FlagLLMModel", "BAAI/bge-multilingual-gemma2", dict(
        query_instruction_for_retrieval=QUESTION, query_instruction_format="<instruct>{}\n<query>{}", devices="cuda:0"),
        "decoder", 100, {}),
    "embedder/decoder_only/base_multi_devices.py": ("FlagLLMModel", "BAAI/bge-multilingual-gemma2", dict(
        query_instruction_for_retrieval=QUESTION, query_instruction_format="<instruct>{}\n<query>{}", devices=TWO),
        "decoder", 100, {}),
    "embedder/decoder_only/auto_base_single_device.py": ("FlagAutoModel", "BAAI/bge-multilingual-gemma2", dict(
        query_instruction_for_retrieval=QUESTION, devices="cuda:0"), "decoder", 100, {}),
    "embedder/decoder_only/auto_base_multi_devices.py": ("FlagAutoModel", "BAAI/bge-multilingual-gemma2", dict(
        query_instruction_for_retrieval=QUESTION, devices=TWO), "decoder", 100, {}),
    "embedder/decoder_only/icl_single_device.py": ("FlagICLModel", "BAAI/bge-en-icl", dict(
        ICL, query_instruction_format="<instruct>{}\n<query>{}", devices="cuda:0"), "decoder", 100, {}),
    "embedder/decoder_only/icl_multi_devices.py": ("FlagICLModel", "BAAI/bge-en-icl", dict(
        ICL, query_instruction_format="<instruct>{}\n<query>{}", devices=TWO), "decoder", 100, {}),
    "embedder/decoder_only/auto_icl_single_device.py": ("FlagAutoModel", "BAAI/bge-en-icl", dict(ICL, devices="cuda:0"),
                                                         "decoder", 100, {}),
    "embedder/decoder_only/auto_icl_multi_devices.py": ("FlagAutoModel", "BAAI/bge-en-icl", dict(ICL, devices=TWO),
                                                        "decoder", 100, {}),
    "embedder/decoder_only/pseudo_moe_single_device.py": ("FlagPseudoMoEModel", "geevec-ai/geevec-embeddings-1.0-lite",
                                                           dict(MOE, domain_for_pseudo_moe="coding", devices="cuda:0"),
                                                           "decoder", 10, {}),
    "embedder/decoder_only/pseudo_moe_multi_devices.py": ("FlagPseudoMoEModel", "geevec-ai/geevec-embeddings-1.0-lite",
                                                          dict(MOE, domain_for_pseudo_moe="reasoning", devices=TWO),
                                                          "decoder", 100, {}),
    "embedder/decoder_only/auto_pseudo_moe_single_device.py": ("FlagAutoModel", "geevec-ai/geevec-embeddings-1.0-lite",
        dict(MOE, model_class="decoder-only-pseudo_moe", domain_for_pseudo_moe="reasoning", devices="cuda:0"),
        "decoder", 10, {}),
    "embedder/decoder_only/auto_pseudo_moe_multi_devices.py": ("FlagAutoModel", "geevec-ai/geevec-embeddings-1.0-lite",
        dict(MOE, model_class="decoder-only-pseudo_moe", domain_for_pseudo_moe="coding", devices=TWO),
        "decoder", 100, {}),
    "reranker/encoder_only/base_single_device.py": ("FlagReranker", "BAAI/bge-reranker-large", dict(
        use_fp16=True, batch_size=128, query_max_length=256, max_length=512, devices=["cuda:3"]), "rerank", 100, {}),
    "reranker/encoder_only/base_multi_devices.py": ("FlagReranker", "BAAI/bge-reranker-large", dict(
        use_fp16=True, batch_size=128, query_max_length=256, max_length=512, devices=["cuda:3", "cuda:4"]),
        "rerank", 100, {}),
    "reranker/encoder_only/auto_base_single_device.py": ("FlagAutoReranker", "BAAI/bge-reranker-large", dict(
        use_fp16=True, batch_size=128, query_max_length=256, max_length=512, devices=["cuda:3"]), "rerank", 100, {}),
    "reranker/encoder_only/auto_base_multi_devices.py": ("FlagAutoReranker", "BAAI/bge-reranker-large", dict(
        use_fp16=True, batch_size=128, query_max_length=256, max_length=512, devices=["cuda:3", "cuda:4"]),
        "rerank", 100, {}),
    "reranker/decoder_only/base_single_device.py": ("FlagLLMReranker", "BAAI/bge-reranker-v2-gemma", dict(
        LLM_RR, devices=["cuda:3"]), "rerank", 100, {}),
    "reranker/decoder_only/base_multi_devices.py": ("FlagLLMReranker", "BAAI/bge-reranker-v2-gemma", dict(
        LLM_RR, devices=["cuda:3", "cuda:4"]), "rerank", 100, {}),
    "reranker/decoder_only/auto_base_single_device.py": ("FlagAutoReranker", "BAAI/bge-reranker-v2-gemma", dict(
        LLM_RR, devices=["cuda:3"]), "rerank", 100, {}),
    "reranker/decoder_only/auto_base_multi_devices.py": ("FlagAutoReranker", "BAAI/bge-reranker-v2-gemma", dict(
        LLM_RR, devices=["cuda:3", "cuda:4"]), "rerank", 100, {}),
    "reranker/decoder_only/layerwise_single_device.py": ("LayerWiseFlagLLMReranker",
        "BAAI/bge-reranker-v2-minicpm-layerwise", dict(LLM_RR, trust_remote_code=True, devices=["cuda:3"]),
        "rerank", 100, {"cutoff_layers": [28]}),
    "reranker/decoder_only/layerwise_multi_devices.py": ("LayerWiseFlagLLMReranker",
        "BAAI/bge-reranker-v2-minicpm-layerwise", dict(LLM_RR, trust_remote_code=True, devices=["cuda:3", "cuda:4"]),
        "rerank", 100, {"cutoff_layers": [28]}),
    "reranker/decoder_only/auto_layerwise_single_device.py": ("FlagAutoReranker",
        "BAAI/bge-reranker-v2-minicpm-layerwise", dict(LLM_RR, trust_remote_code=True, devices=["cuda:3"]),
        "rerank", 100, {"cutoff_layers": [28]}),
    "reranker/decoder_only/auto_layerwise_multi_devices.py": ("FlagAutoReranker",
        "BAAI/bge-reranker-v2-minicpm-layerwise", dict(LLM_RR, trust_remote_code=True, devices=["cuda:3", "cuda:4"]),
        "rerank", 100, {"cutoff_layers": [28]}),
    "reranker/decoder_only/lightweight_single_device.py": ("LightWeightFlagLLMReranker",
        "BAAI/bge-reranker-v2.5-gemma2-lightweight", dict(LLM_RR, trust_remote_code=True, devices=["cuda:3"]),
        "rerank", 100, {"cutoff_layers": [28], "compress_ratio": 2, "compress_layers": [24, 40]}),
    "reranker/decoder_only/lightweight_multi_devices.py": ("LightWeightFlagLLMReranker",
        "BAAI/bge-reranker-v2.5-gemma2-lightweight", dict(LLM_RR, trust_remote_code=True, devices=["cuda:3", "cuda:4"]),
        "rerank", 100, {"cutoff_layers": [28], "compress_ratio": 2, "compress_layers": [24, 40]}),
    "reranker/decoder_only/auto_lightweight_single_device.py": ("FlagAutoReranker",
        "BAAI/bge-reranker-v2.5-gemma2-lightweight", dict(LLM_RR, trust_remote_code=True, devices=["cuda:3"]),
        "rerank", 100, {"cutoff_layers": [28], "compress_ratio": 2, "compress_layers": [24, 40]}),
    "reranker/decoder_only/auto_lightweight_multi_devices.py": ("FlagAutoReranker",
        "BAAI/bge-reranker-v2.5-gemma2-lightweight", dict(LLM_RR, trust_remote_code=True, devices=["cuda:3", "cuda:4"]),
        "rerank", 100, {"cutoff_layers": [28], "compress_ratio": 2, "compress_layers": [24, 40]}),
}


def _params():
    for name in sorted(SCRIPTS):
        multi = isinstance(SCRIPTS[name][2]["devices"], list) and len(SCRIPTS[name][2]["devices"]) > 1
        marks = [pytest.mark.slow] if multi else []
        yield pytest.param(name, marks=marks, id=name)


def _map_call(hub_name: str, call: dict) -> dict:
    out = dict(call)
    for key in ("cutoff_layers", "compress_layers"):
        if key in out:
            out[key] = layers(hub_name, out[key])
    return out


def run_script(hub, name: str, devices=None):
    """The script's calls; returns what it prints (and the model). ``devices`` overrides the script's."""
    entry, hub_name, kwargs, shape, n, call = SCRIPTS[name]
    kwargs = dict(kwargs, devices=cpu(kwargs["devices"]) if devices is None else devices)
    model = make(entry, hub(hub_name), **kwargs)
    if shape in ("dense", "decoder"):
        q_texts, p_texts = (CAPITALS_Q, CAPITALS_P) if shape == "dense" else (PROTEIN_Q, PROTEIN_P)
        q, p = model.encode_queries(q_texts * n), model.encode_corpus(p_texts * n)
        return model, {"q": q, "p": p, "scores": q @ p.T}
    if shape == "m3":
        outputs = dict(return_dense=True, return_sparse=True, return_colbert_vecs=False)
        q, p = model.encode_queries(M3_Q * n, **outputs), model.encode_corpus(M3_P * n, **outputs)
        return model, {"q": q["dense_vecs"], "p": p["dense_vecs"], "scores": q["dense_vecs"] @ p["dense_vecs"].T,
                       "sparse": model.compute_lexical_matching_score(q["lexical_weights"], p["lexical_weights"])}
    if shape == "m3-score":
        queries = M3_Q * n
        forward = model.compute_score(list(zip(queries, M3_P * n)), weights_for_different_modes=[1., 0.3, 1.])
        queries.reverse()
        reverse = model.compute_score(list(zip(queries, M3_P * n)), weights_for_different_modes=[1., 0.3, 1.])
        return model, {"forward": forward, "reverse": reverse}
    return model, {"scores": np.asarray(model.compute_score(PAIRS * n, **_map_call(hub_name, call)))}


def _check_dense(out: dict, n: int, tol: float) -> None:
    q, p = out["q"], out["p"]
    assert q.shape[0] == 2 * n and p.shape[0] == 2 * n and q.shape[1] == p.shape[1]
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(q[::2], np.repeat(q[:1], n, axis=0), atol=tol)  # the same text, the same vector
    np.testing.assert_allclose(p[1::2], np.repeat(p[1:2], n, axis=0), atol=tol)
    assert out["scores"].shape == (2 * n, 2 * n)


def _check(shape: str, out: dict, n: int) -> None:
    if shape in ("dense", "m3"):
        _check_dense(out, n, 1e-5)
    elif shape == "decoder":  # left padding: a text's vector moves slightly with its batch (golden README)
        _check_dense(out, n, 1e-4)
    if shape == "m3":
        sparse = out["sparse"]
        assert sparse.shape == (2 * n, 2 * n) and np.all(np.asarray(sparse, dtype=float) >= 0)
    if shape == "m3-score":
        for scores in (out["forward"], out["reverse"]):
            assert set(scores) == {"colbert", "sparse", "dense", "sparse+dense", "colbert+sparse+dense"}
            d, s, c = (np.asarray(scores[k]) for k in ("dense", "sparse", "colbert"))
            assert len(d) == 2 * n
            np.testing.assert_allclose(scores["sparse+dense"], (d + 0.3 * s) / 1.3, atol=1e-6)
            np.testing.assert_allclose(scores["colbert+sparse+dense"], (d + 0.3 * s + c) / 2.3, atol=1e-6)
        # reversing the queries swaps pairs: pair 1 of the reversed run is pair 0's query with pair 1's passage
        assert not np.allclose(out["forward"]["dense"][:2], out["reverse"]["dense"][:2])
    if shape == "rerank":
        scores = out["scores"].reshape(n, len(PAIRS))
        np.testing.assert_allclose(scores, np.repeat(scores[:1], n, axis=0), atol=1e-4)


@pytest.mark.parametrize("name", list(_params()))
def test_example_script_runs_to_the_end(hub, name):
    entry, hub_name, kwargs, shape, n, _ = SCRIPTS[name]
    model, out = run_script(hub, name)
    _check(shape, out, n)
    if isinstance(kwargs["devices"], list) and len(kwargs["devices"]) > 1:
        _, single = run_script(hub, name, devices="cpu")
        for key, value in out.items():
            if isinstance(value, dict):
                for mode in value:
                    np.testing.assert_allclose(value[mode], single[key][mode], atol=1e-4, err_msg=f"{key}:{mode}")
            else:
                np.testing.assert_allclose(np.asarray(value, dtype=float), np.asarray(single[key], dtype=float),
                                           atol=1e-4, err_msg=key)


def test_every_example_script_has_an_entry():
    """Each script of FlagEmbedding's examples/inference has an entry here (when the reference is at hand)."""
    ref = Path("/work/ref/examples/inference")
    if not ref.is_dir():
        pytest.skip("FlagEmbedding's examples are not checked out here")
    scripts = sorted(str(p.relative_to(ref)) for p in ref.rglob("*.py"))
    assert scripts == sorted(SCRIPTS)
