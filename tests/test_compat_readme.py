"""The FlagEmbedding code blocks of its READMEs (the top README's quick start, examples/README.md,
examples/inference/embedder/README.md, examples/inference/reranker/README.md), run with bgekit.

Each test makes the block's calls with only the import changed; hub names point at folders of that name holding
the golden fixture of the same architecture, CUDA devices become "cpu" and the 40-layer models' layer numbers map
to the fixtures' (tests/compat_hub.py: HUB, LAYERS). The blocks that use plain transformers (no
FlagEmbedding import) are not bgekit's to run. Where a golden case makes the same call, the values match it.
"""
from __future__ import annotations

import numpy as np
import pytest

from golden import GOLDEN, assert_close, case_by_id, load_output, resolve_inputs
from compat_hub import cpu, layers, make_hub
from test_compat_examples import EXAMPLES

pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """``hub(name, like=None)``: the hub name as a folder holding the fixture (see tests/compat_hub.py)."""
    return make_hub(tmp_path_factory.mktemp("hub"))


ZH_INSTRUCTION = "为这个句子生成表示以用于检索相关文章："
S1, S2 = ["样例数据-1", "样例数据-2"], ["样例数据-3", "样例数据-4"]
QUERIES, PASSAGES = ["query_1", "query_2"], ["样例文档-1", "样例文档-2"]
PANDA = [["what is panda?", "hi"], ["what is panda?", "The giant panda (Ailuropoda melanoleuca), sometimes called a "
                                     "panda bear or simply panda, is a bear species endemic to China."]]


def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, dtype=np.float64)))


def _dense_block(model):
    """The embedder README's encode / encode_queries / encode_corpus block; returns what it prints."""
    e1, e2 = model.encode(S1), model.encode(S2)
    q, p = model.encode_queries(QUERIES), model.encode_corpus(PASSAGES)
    return e1 @ e2.T, q @ p.T


# ---------------------------------------------------------------- top README and examples/README.md

def test_top_readme_quick_start(hub):
    from bgekit import FlagAutoModel

    model = FlagAutoModel.from_finetuned(hub("BAAI/bge-base-en-v1.5"),
                                         query_instruction_for_retrieval="Represent this sentence for searching relevant passages:",
                                         use_fp16=True)
    embeddings_1 = model.encode(["I love NLP", "I love machine learning"])
    embeddings_2 = model.encode(["I love BGE", "I love text retrieval"])
    similarity = embeddings_1 @ embeddings_2.T
    assert similarity.shape == (2, 2) and np.all(np.abs(similarity) <= 1 + 1e-5)


def test_examples_readme_embedder_block(hub):
    from bgekit import FlagAutoModel

    model = FlagAutoModel.from_finetuned(hub("BAAI/bge-large-zh-v1.5"), query_instruction_for_retrieval=ZH_INSTRUCTION,
                                         use_fp16=True, devices=cpu(["cuda:0"]))
    similarity = model.encode_corpus(S1) @ model.encode_corpus(S2).T
    scores = model.encode_queries(QUERIES) @ model.encode_corpus(PASSAGES).T
    assert similarity.shape == scores.shape == (2, 2)
    # the query instruction is applied to queries only
    np.testing.assert_allclose(model.encode_queries(QUERIES), model.encode([ZH_INSTRUCTION + q for q in QUERIES]),
                               atol=1e-6)


def test_examples_readme_reranker_block(hub):
    from bgekit import FlagAutoReranker

    model = FlagAutoReranker.from_finetuned(hub("BAAI/bge-reranker-large"), use_fp16=True, devices=cpu(["cuda:0"]))
    similarity = model.compute_score([("样例数据-1", "样例数据-3"), ("样例数据-2", "样例数据-4")], normalize=True)
    scores = model.compute_score([("query_1", "样例文档-1"), ("query_2", "样例文档-2")])
    assert len(similarity) == len(scores) == 2 and all(0 < s < 1 for s in similarity)


# ---------------------------------------------------------------- examples/inference/embedder/README.md

def test_embedder_readme_auto_model(hub):
    from bgekit import FlagAutoModel

    model = FlagAutoModel.from_finetuned(hub("BAAI/bge-large-zh-v1.5"), query_instruction_for_retrieval=ZH_INSTRUCTION,
                                         use_fp16=True, devices=cpu(["cuda:1"]))
    similarity, scores = _dense_block(model)
    assert similarity.shape == scores.shape == (2, 2)


def test_embedder_readme_auto_model_custom_class(hub):
    from bgekit import FlagAutoModel, FlagModel

    model = FlagAutoModel.from_finetuned(hub("your_model_name_or_path", like="BAAI/bge-large-zh-v1.5"),
                                         model_class="encoder-only-base", query_instruction_for_retrieval=ZH_INSTRUCTION,
                                         pooling_method="cls", use_fp16=True, devices=cpu(["cuda:1"]))
    assert type(model) is FlagModel
    similarity, scores = _dense_block(model)
    assert similarity.shape == scores.shape == (2, 2)


def test_embedder_readme_flag_model_matches_the_golden_case(hub):
    """FlagModel on the bert fixture, as in the README block; the golden case's call on the same object agrees."""
    from bgekit import FlagModel

    model = FlagModel(hub("BAAI/bge-large-zh-v1.5"), query_instruction_for_retrieval=ZH_INSTRUCTION, use_fp16=True,
                      devices=cpu(["cuda:1"]))
    similarity, scores = _dense_block(model)
    assert similarity.shape == scores.shape == (2, 2)
    case = case_by_id("bert-embedder/encode-cls-norm")
    assert_close(model.encode(*resolve_inputs(case)), load_output(case, "embeddings"), case["tolerance"], case["id"])


def test_embedder_readme_m3_model(hub):
    from bgekit import BGEM3FlagModel

    model = BGEM3FlagModel(hub("BAAI/bge-m3"), use_fp16=True, pooling_method="cls", devices=cpu(["cuda:1"]))
    outputs = dict(return_dense=True, return_sparse=True, return_colbert_vecs=False)
    embeddings_1, embeddings_2 = model.encode(S1, **outputs), model.encode(S2, **outputs)
    dense_similarity = embeddings_1["dense_vecs"] @ embeddings_2["dense_vecs"].T
    sparse_similarity = model.compute_lexical_matching_score(embeddings_1["lexical_weights"],
                                                             embeddings_2["lexical_weights"])
    q_embeddings, p_embeddings = model.encode_queries(QUERIES, **outputs), model.encode_corpus(PASSAGES, **outputs)
    assert dense_similarity.shape == sparse_similarity.shape == (2, 2)
    assert q_embeddings["colbert_vecs"] is None and len(p_embeddings["lexical_weights"]) == 2
    case = case_by_id("m3/encode-all")  # the golden case's call on the same object
    got = model.encode(*resolve_inputs(case), **case["method_kwargs"])
    for key in case["outputs"]:
        assert_close(got[key], load_output(case, key), case["tolerance"], f"{case['id']}:{key}")


def test_embedder_readme_llm_model(hub):
    from bgekit import FlagLLMModel

    model = FlagLLMModel(hub("BAAI/bge-multilingual-gemma2"),
                         query_instruction_for_retrieval="Given a question, retrieve passages that answer the question.",
                         query_instruction_format="<instruct>{}\n<query>{}", use_fp16=True, devices=cpu(["cuda:1"]))
    scores = model.encode_queries(QUERIES) @ model.encode_corpus(PASSAGES).T
    assert scores.shape == (2, 2)
    case = case_by_id("decoder-embedder/encode-queries-icl-format")
    assert_close(FlagLLMModel(str(GOLDEN / case["model"]), **case["constructor_kwargs"]).encode_queries(
        *resolve_inputs(case)), load_output(case, "embeddings"), case["tolerance"], case["id"])


def test_embedder_readme_icl_model(hub):
    from bgekit import FlagICLModel

    model = FlagICLModel(hub("BAAI/bge-en-icl"),
                         query_instruction_for_retrieval="Given a question, retrieve passages that answer the question.",
                         query_instruction_format="<instruct>{}\n<query>{}", examples_for_task=EXAMPLES,
                         examples_instruction_format="<instruct>{}\n<query>{}\n<response>{}", use_fp16=True,
                         devices=cpu(["cuda:1"]))
    queries = ["how much protein should a female eat", "summit define"]
    passages = ["As a general guideline, the CDC's average requirement of protein for women is 46 grams per day.",
                "Definition of summit for English Language Learners: the highest point of a mountain."]
    scores = model.encode_queries(queries) @ model.encode_corpus(passages).T
    assert scores.shape == (2, 2)
    assert model.prefix.startswith("<instruct>Given a web search query") and model.prefix.endswith("\n\n")


# ---------------------------------------------------------------- examples/inference/reranker/README.md

def _rerank_block(reranker, call: dict | None = None, normalize: bool = True):
    """The reranker README's block: one pair, normalised, the panda pairs, normalised."""
    call = call or {}
    score = reranker.compute_score(["query", "passage"], **call)
    scores = reranker.compute_score(PANDA, **call)
    assert len(score) == 1 and len(scores) == 2
    if normalize:
        np.testing.assert_allclose(reranker.compute_score(["query", "passage"], normalize=True, **call),
                                   _sigmoid(score), rtol=1e-6)
        np.testing.assert_allclose(reranker.compute_score(PANDA, normalize=True, **call), _sigmoid(scores), rtol=1e-6)
    return score, scores


def test_reranker_readme_auto_reranker(hub):
    from bgekit import FlagAutoReranker, FlagReranker

    reranker = FlagAutoReranker.from_finetuned(hub("BAAI/bge-reranker-large"), query_max_length=256,
                                               passage_max_length=512, use_fp16=True, devices=cpu(["cuda:1"]))
    assert type(reranker) is FlagReranker
    _rerank_block(reranker)


def test_reranker_readme_auto_reranker_custom_class(hub):
    from bgekit import FlagAutoReranker

    reranker = FlagAutoReranker.from_finetuned(hub("your_model_name_or_path", like="BAAI/bge-reranker-large"),
                                               model_class="encoder-only-base", query_max_length=256,
                                               passage_max_length=512, use_fp16=True, devices=cpu(["cuda:1"]))
    assert len(reranker.compute_score(["query", "passage"])) == 1


def test_reranker_readme_flag_reranker_matches_the_golden_case(hub):
    from bgekit import FlagReranker

    reranker = FlagReranker(hub("BAAI/bge-reranker-v2-m3"), query_max_length=256, passage_max_length=512,
                            use_fp16=True, devices=cpu(["cuda:1"]))
    _rerank_block(reranker)
    case = case_by_id("xlmr-reranker/compute-score-query-max-length-4")
    other = FlagReranker(hub("BAAI/bge-reranker-v2-m3"), passage_max_length=512, **case["constructor_kwargs"])
    assert_close(other.compute_score(*resolve_inputs(case), **case["method_kwargs"]), load_output(case, "scores"),
                 case["tolerance"], case["id"])


def test_reranker_readme_llm_reranker(hub):
    from bgekit import FlagLLMReranker

    reranker = FlagLLMReranker(hub("BAAI/bge-reranker-v2-gemma"), query_max_length=256, passage_max_length=512,
                               use_fp16=True, devices=cpu(["cuda:1"]))
    _rerank_block(reranker, normalize=False)


def test_reranker_readme_layerwise_reranker(hub):
    from bgekit import LayerWiseFlagLLMReranker

    name = "BAAI/bge-reranker-v2-minicpm-layerwise"
    reranker = LayerWiseFlagLLMReranker(hub(name), query_max_length=256, passage_max_length=512, use_fp16=True,
                                        devices=cpu(["cuda:1"]))
    _rerank_block(reranker, {"cutoff_layers": layers(name, [28])}, normalize=False)


def test_reranker_readme_lightweight_reranker(hub):
    from bgekit import LightWeightFlagLLMReranker

    name = "BAAI/bge-reranker-v2.5-gemma2-lightweight"
    reranker = LightWeightFlagLLMReranker(hub(name), query_max_length=256, passage_max_length=512, use_fp16=True,
                                          devices=cpu(["cuda:1"]))
    call = {"cutoff_layers": layers(name, [28]), "compress_ratio": 2, "compress_layers": layers(name, [24, 40])}
    _rerank_block(reranker, call, normalize=False)
