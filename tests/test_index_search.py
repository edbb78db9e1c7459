"""Searching a persisted index: every mode's scores and order equal a brute-force computation from the model's
own outputs; RRF and weighted-sum fusion, ColBERT rescoring, reranking, metadata filters and clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from golden import GOLDEN
from bgekit.cli.embed import DEFAULT_SAMPLE
from bgekit.encoder import Embedder
from bgekit.index.documents import read_corpus
from bgekit.index.search import SearchHit, Searcher, SearchResult
from bgekit.index.store import build_index, open_index
from bgekit.reranker import Reranker
from bgekit.scoring import maxsim

BERT = str(GOLDEN / "models" / "bert-embedder")
RERANKER = str(GOLDEN / "models" / "bert-reranker")
QUERIES = ["giant panda bamboo", "capital of France", "how do vaccines work"]
LANGS = ["en", "fr", "en", "de", "en", "fr", "en", "de", "en", "fr", "en", "de"]


@pytest.fixture(scope="module")
def reranker():
    return Reranker(RERANKER, devices="cpu")


@pytest.fixture(scope="module")
def corpus():
    docs = read_corpus(DEFAULT_SAMPLE)
    for i, meta in enumerate(docs.metadata):
        meta.update(lang=LANGS[i], year=2000 + i % 3, open=i % 2 == 0)
    return docs


@pytest.fixture(scope="module")
def store(tmp_path_factory, m3, corpus):
    return build_index(str(tmp_path_factory.mktemp("ix") / "ix"), m3, corpus, colbert=True, show_progress=False)


@pytest.fixture(scope="module")
def brute(m3, corpus):
    """Every signal's score of every query with every document, from the model directly: (Q, N) each."""
    q = m3.encode_multi(QUERIES, role="query")
    p = m3.encode_multi(corpus.texts, role="passage")
    return {
        "dense": q.dense @ p.dense.T,
        "sparse": np.array([[a.dot(b) for b in p.sparse] for a in q.sparse]),
        "colbert": np.array([[maxsim(a, b.astype(np.float16)) for b in p.colbert] for a in q.colbert]),
    }


def ranked(scores, k):
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_single_signal_search_equals_brute_force(store, m3, corpus, brute, mode):
    results = Searcher(store, m3).search(QUERIES, top_k=4, mode=mode)
    assert [len(r.hits) for r in results] == ([4, 4, 4] if mode == "dense" else [4, 1, 0])
    assert isinstance(results, list) and all(isinstance(r, SearchResult) for r in results)
    for q, res in enumerate(results):
        expected = [i for i in ranked(brute[mode], 4)[q] if brute[mode][q, i] > 0 or mode == "dense"]
        assert [h.id for h in res.hits] == [corpus.ids[i] for i in expected]  # sparse: only documents sharing a token
        assert [h.rank for h in res.hits] == list(range(1, len(expected) + 1)) and res.stages == (mode,)
        np.testing.assert_allclose([h.score for h in res.hits], brute[mode][q, expected], atol=1e-5)
        assert all(set(h.scores) == {mode} and h.text == corpus.texts[corpus.ids.index(h.id)] for h in res.hits)


def test_hybrid_weighted_sum_equals_exact_fusion(store, m3, corpus, brute):
    weights = {"dense": 1.0, "sparse": 0.5}
    res = Searcher(store, m3).search(QUERIES, top_k=5, mode="hybrid", weights=weights, candidates=12)
    fused = brute["dense"] + 0.5 * brute["sparse"]
    for q, r in enumerate(res):
        expected = ranked(fused, 5)[q]
        assert [h.id for h in r.hits] == [corpus.ids[i] for i in expected]
        for h, i in zip(r.hits, expected):
            assert h.scores["fused"] == pytest.approx(fused[q, i], abs=1e-5) == h.score
            assert h.scores["dense"] == pytest.approx(brute["dense"][q, i], abs=1e-5)
            assert h.scores["sparse"] == pytest.approx(brute["sparse"][q, i], abs=1e-5)


def test_hybrid_rrf_with_colbert_fuses_each_signals_ranking(store, m3, corpus, brute):
    res = Searcher(store, m3).search(QUERIES[0], top_k=12, mode="hybrid", fusion="rrf", colbert=True, candidates=12)
    rrf = np.zeros(12)
    for s in ("dense", "sparse", "colbert"):
        for rank, i in enumerate(ranked(brute[s][:1], 12)[0], 1):
            rrf[i] += 1.0 / (60 + rank)
    assert res.stages == ("dense", "sparse", "colbert", "fused")
    assert [h.score for h in res.hits] == pytest.approx(sorted(rrf, reverse=True), abs=1e-7)  # float32 fused scores
    assert [h.id for h in res.hits][:3] == [corpus.ids[i] for i in np.argsort(-rrf, kind="stable")[:3]]
    for h in res.hits:
        assert h.scores["colbert"] == pytest.approx(brute["colbert"][0, corpus.ids.index(h.id)], abs=1e-5)


def test_colbert_rescoring_of_dense_candidates(store, m3, corpus, brute):
    w = {"dense": 0.0, "colbert": 1.0}
    res = Searcher(store, m3).search(QUERIES[1], top_k=3, mode="dense", colbert=True, weights=w, candidates=6)
    pool = ranked(brute["dense"][1:2], 6)[0]
    best = pool[np.argsort(-brute["colbert"][1, pool], kind="stable")[:3]]
    assert [h.id for h in res.hits] == [corpus.ids[i] for i in best]


def test_rerank_top_candidates_with_a_bgekit_reranker(store, m3, reranker, corpus):
    searcher = Searcher(store, m3, reranker=reranker)
    res = searcher.search("giant panda", top_k=3, mode="hybrid", candidates=5, rerank_depth=4)
    assert res.stages == ("dense", "sparse", "fused", "rerank")
    first = searcher.search("giant panda", top_k=5, mode="hybrid", candidates=5, rerank=False)
    depth4 = [h.id for h in first.hits[:4]]
    direct = reranker.score([("giant panda", corpus.texts[corpus.ids.index(d)]) for d in depth4])
    expected = [depth4[i] for i in np.argsort(-np.asarray(direct), kind="stable")[:3]]
    assert [h.id for h in res.hits] == expected
    assert [h.score for h in res.hits] == pytest.approx(sorted(direct, reverse=True)[:3], abs=1e-5)
    assert all(h.scores["rerank"] == h.score and "fused" in h.scores for h in res.hits)


def test_metadata_filter_exact_values(store, m3, corpus, brute):
    searcher = Searcher(store, m3)
    res = searcher.search(QUERIES[0], top_k=12, mode="dense", filter={"lang": "en"})
    allowed = [i for i, lang in enumerate(LANGS) if lang == "en"]
    expected = [corpus.ids[i] for i in sorted(allowed, key=lambda i: -brute["dense"][0, i])]
    assert [h.id for h in res.hits] == expected and all(h.metadata["lang"] == "en" for h in res.hits)
    res = searcher.search(QUERIES[0], top_k=12, mode="hybrid", filter={"lang": ["fr", "de"], "year": 2001})
    assert {h.id for h in res.hits} <= {corpus.ids[i] for i in range(12) if LANGS[i] != "en" and i % 3 == 1}
    assert res.hits and all(h.metadata["year"] == 2001 for h in res.hits)
    assert {h.id for h in searcher.search("x", top_k=12, filter={"open": True}).hits} == set(corpus.ids[0::2])
    assert searcher.search("x", filter={"year": "2001"}).hits == []  # a string never matches a number
    assert searcher.search("x", filter={"open": 1}).hits == []       # nor an integer a boolean
    assert searcher.search("x", filter={"missing": None}).hits == []
    with pytest.raises(ValueError, match="filter field names"):
        searcher.search("x", filter={'a"b': 1})
    with pytest.raises(ValueError, match=r"filter\['lang'\]: values must be"):
        searcher.search("x", filter={"lang": {"$ne": "en"}})


def test_bad_options_are_clear_errors(tmp_path, store, m3, corpus):
    searcher = Searcher(store, m3)
    with pytest.raises(ValueError, match="unknown mode 'bm25'; valid: dense, sparse, hybrid"):
        searcher.search("x", mode="bm25")
    with pytest.raises(ValueError, match="unknown fusion 'max'; valid: weighted_sum, rrf"):
        searcher.search("x", mode="hybrid", fusion="max")
    with pytest.raises(ValueError, match="unknown weights \\['dens'\\]"):
        searcher.search("x", weights={"dens": 1})
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        searcher.search("x", top_k=0)
    with pytest.raises(ValueError, match="needs a Searcher created with a reranker"):
        searcher.search("x", rerank=True)
    with pytest.raises(TypeError, match="queries must be"):
        searcher.search(["ok", 3])
    bert = Embedder(BERT, devices="cpu")
    dense_only = build_index(str(tmp_path / "d"), bert, corpus, show_progress=False)
    with pytest.raises(ValueError, match="sparse search needs sparse vectors; the index holds dense"):
        Searcher(dense_only, bert).search("x", mode="hybrid")
    no_colbert = build_index(str(tmp_path / "m"), m3, corpus.slice(0, 3), show_progress=False)
    with pytest.raises(ValueError, match="colbert=True"):
        Searcher(no_colbert, m3).search("x", colbert=True)
    assert len(searcher.search("x", top_k=50).hits) == 12  # at most the corpus


def test_search_sees_documents_added_by_another_writer(tmp_path, m3, corpus):
    store = build_index(str(tmp_path / "ix"), m3, corpus.slice(0, 4), show_progress=False)
    searcher = Searcher(open_index(str(tmp_path / "ix")), m3)
    assert len(searcher.search("x", top_k=10).hits) == 4
    store.add([{"id": "new", "text": "the giant panda"}], m3, show_progress=False)
    hits = searcher.search("the giant panda", top_k=10).hits
    assert len(hits) == 5 and hits[0].id == "new" and isinstance(hits[0], SearchHit)
