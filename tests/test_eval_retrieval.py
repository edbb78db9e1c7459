"""Retrieval pieces: drop-self, BM25, sparse and hybrid modes, reranking with any reranker object."""
import types

import numpy as np
import pytest

from bgekit.eval.data import RetrievalData
from bgekit.eval.retrieval import BM25Index, build_indexes, encode, outputs_for, rerank, search, to_run
from bgekit.eval.stream import encode_corpus_files, open_corpus_files
from bgekit.types import SparseVector

DOCS = ["the cat sat on the mat", "dogs bark at night", "a cat and a dog play", "stock markets fell today"]


class FakeM3:
    """Bag-of-words 'model': sparse = word counts by vocabulary id, dense = normalised counts."""

    vocab = {w: i for i, w in enumerate(sorted({w for d in DOCS + ["cat", "dog", "markets"] for w in d.split()}))}

    def encode_multi(self, texts, role, outputs, batch_size=None, show_progress=None):
        rows = []
        for t in texts:
            v = np.zeros(len(self.vocab), np.float32)
            for w in t.split():
                if w in self.vocab:
                    v[self.vocab[w]] += 1
            rows.append(v)
        dense = np.stack(rows) / np.maximum(np.linalg.norm(np.stack(rows), axis=1, keepdims=True), 1e-9)
        sparse = [SparseVector(np.flatnonzero(r).astype(np.int64), r[r > 0]) for r in rows]
        return types.SimpleNamespace(dense=dense if "dense" in outputs else None, sparse=sparse if "sparse" in outputs else None)

    def encode_corpus(self, texts, batch_size=None, show_progress=None):
        return self.encode_multi(texts, "passage", ("dense",)).dense

    encode_queries = encode_corpus


def test_to_run_drops_self_and_keeps_k():
    scores = np.array([[0.9, 0.8, 0.7, -np.inf]])
    ids = np.array([[1, 0, 2, -1]])
    doc_ids = ["q1", "d1", "d2"]
    assert to_run(scores, ids, doc_ids, ["q1"], k=2, drop={"q1": {"q1"}}) == {"q1": {"d1": 0.9, "d2": 0.7}}
    assert to_run(scores, ids, doc_ids, ["q1"], k=2) == {"q1": {"d1": 0.9, "q1": 0.8}}


def test_bm25_ranks_matching_documents_only():
    index = BM25Index(DOCS)
    scores, ids = index.search(["cat", "markets", "zebra"], k=3)
    assert set(ids[0][:2].tolist()) == {0, 2} and ids[0][2] == -1
    assert ids[1].tolist() == [3, -1, -1] and (ids[2] == -1).all()
    with pytest.raises(ValueError, match=r"k=5 is larger than the corpus \(4 documents\)"):
        index.search(["cat"], k=5)
    with pytest.raises(ValueError, match="corpus is empty"):
        BM25Index([])


@pytest.mark.parametrize("mode", ["dense", "sparse", "dense+sparse"])
def test_modes_find_the_obvious_document(mode):
    model = FakeM3()
    corpus = encode(model, DOCS, "passage", outputs_for(mode))
    queries = encode(model, ["markets", "dogs bark"], "query", outputs_for(mode))
    scores, ids = search(mode, build_indexes(mode, corpus), queries, k=2)
    assert ids[:, 0].tolist() == [3, 1]


def test_hybrid_weighted_sum_is_exact_over_the_union():
    model = FakeM3()
    corpus = encode(model, DOCS, "passage", ("dense", "sparse"))
    queries = encode(model, ["cat dog"], "query", ("dense", "sparse"))
    scores, ids = search("dense+sparse", build_indexes("dense+sparse", corpus), queries, k=4, weights=(1.0, 0.3))
    dense = queries.dense @ corpus.dense.T
    sparse = np.array([[queries.sparse[0].dot(d) for d in corpus.sparse]])
    expected = dense + 0.3 * sparse
    for s, i in zip(scores[0], ids[0]):
        if i >= 0:
            assert s == pytest.approx(expected[0, i], rel=1e-5)
    assert ids[0, 0] == 2                          # "a cat and a dog play" has both words
    _, rrf_ids = search("dense+sparse", build_indexes("dense+sparse", corpus), queries, k=2, fusion="rrf")
    assert rrf_ids[0, 0] == 2


def test_sparse_needs_an_m3_model_and_streamed_files_roundtrip(tmp_path):
    plain = types.SimpleNamespace(encode_corpus=lambda texts, batch_size=None, show_progress=None: np.ones((len(texts), 2)))
    with pytest.raises(ValueError, match="needs a model with sparse outputs"):
        encode(plain, DOCS, "passage", ("sparse",))
    assert encode(plain, DOCS, "passage", ("dense",)).dense.dtype == np.float32
    enc = encode(FakeM3(), DOCS, "passage", ("dense", "sparse"))
    data = RetrievalData("t", "test", [f"d{i}" for i in range(len(DOCS))], [""] * len(DOCS), list(DOCS),
                         {"q": "cat"}, {"q": {"d0": 1}})
    files = encode_corpus_files(FakeM3(), data, ("dense", "sparse"), str(tmp_path), show_progress=False)
    back = open_corpus_files(files)
    assert isinstance(back.dense, np.memmap)
    np.testing.assert_array_equal(back.dense, enc.dense)
    rows = back.sparse.matrix
    assert [SparseVector(rows[i].indices, rows[i].data).to_dict() for i in range(len(DOCS))] == \
        [v.to_dict() for v in enc.sparse]
    with pytest.raises(ValueError, match="unknown retrieval 'colbert'"):
        outputs_for("colbert")


class FakeReranker:
    """Scores a pair by the number of query words in the passage; records the calls."""

    def __init__(self):
        self.calls = []

    def compute_score(self, pairs, batch_size=None):
        self.calls.append((len(pairs), batch_size))
        return [float(sum(w in p for w in q.split())) for q, p in pairs]


def test_rerank_reorders_top_k_only():
    run = {"q": {"d0": 0.9, "d1": 0.8, "d2": 0.7}}
    texts = {"d0": "nothing", "d1": "cat", "d2": "cat dog"}
    rr = FakeReranker()
    out = rerank(run, {"q": "cat dog"}, texts, rr, top_k=2, batch_size=8)
    assert out == {"q": {"d0": 0.0, "d1": 1.0}} and rr.calls == [(2, 8)]   # d2 was not in the top 2
    native = types.SimpleNamespace(score=lambda pairs, batch_size=None: [1.0] * len(pairs))
    assert rerank(run, {"q": "x"}, texts, native, top_k=3) == {"q": {"d0": 1.0, "d1": 1.0, "d2": 1.0}}
    with pytest.raises(TypeError, match="neither compute_score nor score"):
        rerank(run, {"q": "x"}, texts, object())
    bad = types.SimpleNamespace(score=lambda pairs: [1.0])
    with pytest.raises(RuntimeError, match="1 scores for 3 pairs"):
        rerank(run, {"q": "x"}, texts, bad, top_k=3)


def test_rerank_interpolation_mixes_z_normalised_scores():
    run = {"q": {"d0": 0.9, "d1": 0.6, "d2": 0.3}, "empty": {}}
    texts = {"d0": "nothing", "d1": "cat", "d2": "cat dog"}
    queries = {"q": "cat dog", "empty": "x"}
    # reranker scores 0, 1, 2 (z: -1.22, 0, 1.22); first stage 0.9, 0.6, 0.3 (z: 1.22, 0, -1.22)
    alone = rerank(run, queries, texts, FakeReranker(), top_k=3)
    assert alone["q"] == {"d0": 0.0, "d1": 1.0, "d2": 2.0}
    first = rerank(run, queries, texts, FakeReranker(), top_k=3, interpolation=1.0)
    z = np.sqrt(1.5)
    assert first["q"] == pytest.approx({"d0": z, "d1": 0.0, "d2": -z}) and first["empty"] == {}
    mixed = rerank(run, queries, texts, FakeReranker(), top_k=3, interpolation=0.25)
    assert mixed["q"] == pytest.approx({"d0": -0.5 * z, "d1": 0.0, "d2": 0.5 * z})
    for bad in (-0.1, 1.5, True, "half"):
        with pytest.raises(ValueError, match="interpolation"):
            rerank(run, queries, texts, FakeReranker(), top_k=3, interpolation=bad)
