"""Sparse and hybrid retrieval plus reranking through the real bgekit classes, on tiny random checkpoints."""
import os

import numpy as np
import pytest

from bgekit.eval import EvalConfig, evaluate_retrieval
from bgekit.eval.data import RetrievalData

GOLDEN = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "golden", "models")


@pytest.fixture(scope="module")
def m3():
    from bgekit.loading import load_embedder

    return load_embedder(os.path.join(GOLDEN, "m3"))


@pytest.fixture(scope="module")
def data():
    texts = {"d1": "Dogs bark.", "d2": "dog", "d3": "Cats purr.", "d4": "stock markets"}
    return RetrievalData("tiny", "test", list(texts), [""] * 4, list(texts.values()), {"q1": "dog"}, {"q1": {"d2": 1}})


def test_sparse_retrieval_matches_lexical_scores(m3, data):
    result = evaluate_retrieval(data, m3, config=EvalConfig(retrieval="sparse", show_progress=False, k_values=(1,)))
    q = m3.encode_multi(["dog"], role="query", outputs=("sparse",)).sparse[0]
    docs = m3.encode_multi(data.documents(), role="passage", outputs=("sparse",)).sparse
    expected = {d: v.dot(q) for d, v in zip(data.doc_ids, docs) if v.dot(q) > 0}
    assert result.run["q1"].keys() == expected.keys() and "d2" in expected
    for d, s in result.run["q1"].items():
        assert s == pytest.approx(expected[d], rel=1e-5)


def test_hybrid_is_weighted_sum_and_reranker_plugs_in(m3, data, tmp_path):
    from bgekit.compat.reranker import FlagAutoReranker

    config = EvalConfig(retrieval="dense+sparse", weights=(1.0, 0.3), show_progress=False, cache_dir=str(tmp_path))
    result = evaluate_retrieval(data, m3, config=config)
    q = m3.encode_multi(["dog"], role="query", outputs=("dense", "sparse"))
    docs = m3.encode_multi(data.documents(), role="passage", outputs=("dense", "sparse"))
    for i, d in enumerate(data.doc_ids):
        expected = float(docs.dense[i] @ q.dense[0]) + 0.3 * docs.sparse[i].dot(q.sparse[0])
        assert result.run["q1"][d] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    again = evaluate_retrieval(data, m3, config=config)                     # sparse weights come back from the cache
    assert again.cache_hit and again.run == result.run
    reranker = FlagAutoReranker.from_finetuned(os.path.join(GOLDEN, "bert-reranker"))
    reranked = evaluate_retrieval(data, m3, reranker=reranker, config=EvalConfig(retrieval="dense+sparse", rerank_top_k=3, show_progress=False))
    pairs = [["dog", data.documents()[data.doc_ids.index(d)]] for d in reranked.run["q1"]]
    np.testing.assert_allclose(list(reranked.run["q1"].values()), reranker.compute_score(pairs), rtol=1e-5)
    assert len(reranked.run["q1"]) == 3
