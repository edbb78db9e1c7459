"""DenseIndex: exact search equals brute force, approximate option, clear errors instead of FAISS crashes."""
import numpy as np
import pytest

from bgekit.index.dense import DenseIndex


def unit(rng, n, d=16):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_search_matches_brute_force():
    rng = np.random.default_rng(0)
    docs, queries = unit(rng, 300), unit(rng, 7)
    index = DenseIndex.from_vectors(docs)
    scores, ids = index.search(queries, k=10)
    brute = queries @ docs.T
    expected = np.argsort(-brute, axis=1)[:, :10]
    assert len(index) == 300 and ids.shape == (7, 10) and ids.dtype == np.int64
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(index.score(queries, ids), scores, rtol=1e-5, atol=1e-6)


def test_add_in_parts_and_single_query():
    rng = np.random.default_rng(1)
    docs = unit(rng, 50)
    index = DenseIndex(16)
    index.add(docs[:20])
    index.add(docs[20:])
    s, i = index.search(docs[33], k=1)                 # a 1-D query is one query
    assert i.tolist() == [[33]] and s[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_approximate_hnsw_finds_near_neighbours():
    rng = np.random.default_rng(2)
    docs = unit(rng, 500)
    index = DenseIndex.from_vectors(docs, factory="HNSW16", search_params={"efSearch": 64})
    _, ids = index.search(docs[:20], k=1)
    assert (ids[:, 0] == np.arange(20)).mean() >= 0.95  # each document finds itself
    assert not index.exact


def test_l2_metric_scores_are_negative_distances():
    index = DenseIndex.from_vectors(np.array([[0, 0], [3, 4]], np.float32), metric="l2")
    s, i = index.search(np.array([[3, 4]], np.float32), k=2)
    assert i.tolist() == [[1, 0]] and s.tolist() == [[0.0, -25.0]]


def test_clear_errors():
    docs = np.eye(4, dtype=np.float32)
    index = DenseIndex.from_vectors(docs)
    with pytest.raises(ValueError, match=r"k=5 is larger than the index \(4 documents\)"):
        index.search(docs, k=5)
    with pytest.raises(ValueError, match="dimension 3, the index holds dimension 4"):
        index.search(np.ones((1, 3), np.float32), k=1)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(docs, k=0)
    with pytest.raises(ValueError, match="index is empty"):
        DenseIndex(4).search(docs, k=1)
    with pytest.raises(ValueError, match=r"vectors\[1\] holds NaN"):
        DenseIndex.from_vectors(np.array([[1, 0], [np.nan, 0]], np.float32))
    with pytest.raises(ValueError, match="unknown metric"):
        DenseIndex(4, metric="cosine")
    with pytest.raises(ValueError, match="FAISS cannot build index"):
        DenseIndex(4, factory="NoSuchIndex")
    with pytest.raises(ValueError, match="could not train"):
        DenseIndex.from_vectors(docs, factory="IVF64,Flat")
