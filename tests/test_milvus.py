"""Export to Milvus Lite (a file in a tmp folder, started by the test) and search it: dense and sparse hits equal
bgekit's own search (ids and scores), hybrid search with Milvus's RRF and weighted rankers equals bgekit's fusion
when every document is a candidate, metadata filters match exactly the documents the local index's filter
matches (typed values: "1" is not 1, True is not 1, None is null), another model is refused, and an export that
fails leaves no collection behind (and an existing one intact)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from golden import GOLDEN
from bgekit.cli.embed import DEFAULT_SAMPLE
from bgekit.encoder import Embedder
from bgekit.errors import InputError, OutputError, UsageError
from bgekit.index import milvus as MV
from bgekit.index.documents import read_corpus
from bgekit.index.milvus import export_to_milvus, filter_expr, milvus_client
from bgekit.index.milvus_search import MilvusSearcher
from bgekit.index.model_info import IndexModelMismatch
from bgekit.index.search import Searcher
from bgekit.index.store import build_index
from bgekit.m3 import M3Embedder

pytestmark = pytest.mark.usefixtures("one_thread")
M3 = str(GOLDEN / "models" / "m3")
# typed metadata values, one per document: the filter {"n": v} must match the same documents in both backends
TYPED = [1, "1", True, 1.0, None, 2, "x", False, [1], {"a": 1}, 0, "1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    m3 = M3Embedder(M3, devices="cpu")
    docs = read_corpus(DEFAULT_SAMPLE)
    for i, meta in enumerate(docs.metadata):
        meta["lang"] = "en" if i % 3 else "de"
        if i != 5:  # d6 has no "n" at all
            meta["n"] = TYPED[i]
    folder = tmp_path_factory.mktemp("milvus")
    store = build_index(str(folder / "ix"), m3, docs, show_progress=False)
    client = milvus_client(str(folder / "milvus.db"))
    assert export_to_milvus(store, client, "docs", show_progress=False) == 12
    return m3, store, client, MilvusSearcher(client, "docs", m3), Searcher(store, m3)


def ids(result):
    return [h.id for h in result.hits]


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_single_signal_equals_bgekit(setup, mode):
    _, _, _, milvus, local = setup
    for query in ("giant panda bamboo", "capital of France"):
        ours, theirs = local.search(query, top_k=5, mode=mode), milvus.search(query, top_k=5, mode=mode)
        assert ids(theirs) == ids(ours) and ours.hits
        np.testing.assert_allclose([h.score for h in theirs.hits], [h.score for h in ours.hits], atol=1e-5)
        assert theirs.stages == (mode,) and theirs.hits[0].text == ours.hits[0].text
        assert theirs.hits[0].metadata == ours.hits[0].metadata


@pytest.mark.parametrize("fusion", ["rrf", "weighted_sum"])
def test_hybrid_uses_milvus_rankers_and_equals_bgekit_fusion(setup, fusion):
    _, _, _, milvus, local = setup
    theirs = milvus.search("giant panda bamboo", top_k=5, mode="hybrid", fusion=fusion, candidates=12)
    ours = local.search("giant panda bamboo", top_k=5, mode="hybrid", fusion=fusion, candidates=12)
    assert ids(theirs) == ids(ours) and theirs.stages == ("fused",)
    np.testing.assert_allclose([h.score for h in theirs.hits], [h.scores["fused"] for h in ours.hits], atol=1e-5)
    if fusion == "weighted_sum":  # Milvus's WeightedRanker on raw scores: dense + 0.3 * sparse
        d = {h.id: h.score for h in local.search("giant panda bamboo", top_k=12, mode="dense").hits}
        s = {h.id: h.score for h in local.search("giant panda bamboo", top_k=12, mode="sparse").hits}
        top = theirs.hits[0]
        assert top.score == pytest.approx(d[top.id] + 0.3 * s.get(top.id, 0.0), abs=1e-5)
    weighted = milvus.search("giant panda bamboo", top_k=3, mode="hybrid", fusion=fusion, candidates=12,
                             weights={"dense": 0.0, "sparse": 1.0})
    if fusion == "weighted_sum":  # the weights reach Milvus: sparse alone decides
        assert ids(weighted) == ids(local.search("giant panda bamboo", top_k=3, mode="sparse"))


@pytest.mark.parametrize("value", [1, "1", True, None, 1.5, "x", [1, "1"], [True, None]])
def test_filters_match_the_local_index_exactly(setup, value):
    _, store, _, milvus, _ = setup
    expected = sorted(doc[0] for doc in store.documents(store.filter_rows({"n": value}).tolist()).values())
    got = sorted(ids(milvus.search("anything", top_k=12, filter={"n": value})))
    assert got == expected
    both = milvus.search("panda", top_k=12, mode="hybrid", filter={"lang": "de", "n": [1, "1"]})
    assert {h.id for h in both.hits} == {"d1", "d4"} and all(h.metadata["lang"] == "de" for h in both.hits)


def test_filter_expressions_quote_values_and_keep_types():
    assert filter_expr({"näme": 'a"b\\c'}) == '(filter_keys["näme"] == "s:a\\"b\\\\c")'
    assert filter_expr({"n": [1, 1.0, True], "z": None}) == (
        '(filter_keys["n"] == "n:1" or filter_keys["n"] == "n:1" or filter_keys["n"] == "b:true") and '
        '(filter_keys["z"] == "z:")')
    with pytest.raises(ValueError, match=r"filter\['n'\]: an empty list matches nothing"):
        filter_expr({"n": []})
    with pytest.raises(ValueError, match="values must be strings, numbers, booleans or null"):
        filter_expr({"n": {"a": 1}})


def test_model_check_options_and_errors(setup):
    m3, store, client, milvus, _ = setup
    with pytest.raises(IndexModelMismatch, match="kind='m3'"):
        MilvusSearcher(client, "docs", Embedder(str(GOLDEN / "models" / "bert-embedder"), devices="cpu"))
    with pytest.raises(ValueError, match="ColBERT rescoring is not available through Milvus"):
        milvus.search("x", colbert=True)
    with pytest.raises(ValueError, match="unknown mode 'bm25'; valid: dense, sparse, hybrid"):
        milvus.search("x", mode="bm25")
    with pytest.raises(ValueError, match="top_k must be a positive integer, got 0"):
        milvus.search("x", top_k=0)
    with pytest.raises(InputError, match="Milvus has no collection 'nope'"):
        MilvusSearcher(client, "nope", m3)
    with pytest.raises(ValueError, match=r"exists; replace it with overwrite=True \(bgekit index export-milvus"):
        export_to_milvus(store, client, "docs", show_progress=False)
    with pytest.raises(UsageError, match="Milvus names start with a letter"):
        export_to_milvus(store, client, "my-docs", show_progress=False)
    with pytest.raises(ValueError, match="unknown dense_index 'FAST'; valid: FLAT, HNSW, AUTOINDEX"):
        export_to_milvus(store, client, "other", dense_index="FAST", show_progress=False)
    with pytest.raises(UsageError, match="neither a Milvus Lite file"):
        milvus_client("milvus.sqlite")
    with pytest.raises(OutputError, match="cannot reach the Milvus server at http://127.0.0.1:9"):
        milvus_client("http://127.0.0.1:9", timeout=2)
    results = milvus.search(["giant panda", "Paris"], top_k=2)
    assert [r.query for r in results] == ["giant panda", "Paris"]
    assert [ids(r) for r in results] == [ids(r) for r in setup[4].search(["giant panda", "Paris"], top_k=2)]
    assert milvus.search([], top_k=2) == []


def test_a_failed_export_leaves_no_collection_and_keeps_the_old_one(setup, monkeypatch):
    m3, store, client, _, _ = setup
    monkeypatch.setattr(MV, "BATCH", 5)
    real = type(store).documents

    def failing(self, rows):
        if rows[0] >= 5:
            raise OSError("disk read failed")
        return real(self, rows)

    monkeypatch.setattr(type(store), "documents", failing)
    for name, overwrite in (("fresh", False), ("docs", True)):
        with pytest.raises(OSError, match="disk read failed"):
            export_to_milvus(store, client, name, overwrite=overwrite, show_progress=False)
        assert not client.has_collection(name + MV.STAGING)
    assert not client.has_collection("fresh")
    monkeypatch.setattr(type(store), "documents", real)
    old = MilvusSearcher(client, "docs", m3)  # the old collection still serves, whole
    assert old.store.count == 12 and ids(old.search("giant panda", top_k=3)) == ids(setup[4].search("giant panda", top_k=3))


def test_an_index_grown_by_adds_and_deletes_exports_its_live_documents(setup, tmp_path):
    m3, _, client, _, _ = setup
    docs = read_corpus(DEFAULT_SAMPLE)
    store = build_index(str(tmp_path / "grown"), m3, [{"id": i, "text": t} for i, t in zip(docs.ids[:6], docs.texts[:6])],
                        show_progress=False)
    store.add([{"id": i, "text": t} for i, t in zip(docs.ids[6:], docs.texts[6:])], m3, show_progress=False)
    store.delete(["d2", "d9"])
    assert export_to_milvus(store, client, "grown", show_progress=False) == 10
    milvus, local = MilvusSearcher(client, "grown", m3), Searcher(store, m3)
    assert milvus.store.count == 10
    for mode in ("dense", "sparse"):
        theirs, ours = milvus.search("capital city", top_k=10, mode=mode), local.search("capital city", top_k=10, mode=mode)
        assert ids(theirs) == ids(ours) and not {"d2", "d9"} & set(ids(theirs))
        np.testing.assert_allclose([h.score for h in theirs.hits], [h.score for h in ours.hits], atol=1e-5)


def test_l2_collections_report_negative_squared_distances_like_the_local_index(setup, tmp_path):
    m3, _, client, _, _ = setup
    store = build_index(str(tmp_path / "l2"), m3, read_corpus(DEFAULT_SAMPLE), metric="l2", show_progress=False)
    export_to_milvus(store, client, "l2docs", show_progress=False)
    milvus, local = MilvusSearcher(client, "l2docs", m3), Searcher(store, m3)
    theirs, ours = milvus.search("giant panda", top_k=4), local.search("giant panda", top_k=4)
    assert ids(theirs) == ids(ours) and all(h.score < 0 for h in theirs.hits)
    np.testing.assert_allclose([h.score for h in theirs.hits], [h.score for h in ours.hits], atol=1e-5)
    with pytest.raises(ValueError, match="a weighted sum of L2 distances and sparse scores means nothing"):
        milvus.search("giant panda", mode="hybrid")
    assert len(milvus.search("giant panda", top_k=3, mode="hybrid", fusion="rrf").hits) == 3


def test_a_text_too_long_for_milvus_is_named_and_nothing_is_left(setup, tmp_path):
    m3, _, client, _, _ = setup
    store = build_index(str(tmp_path / "long"), m3, [{"id": "short", "text": "a panda"},
                                                     {"id": "big", "text": "panda " * 11000}], show_progress=False)
    with pytest.raises(InputError, match=r"document 'big' \(index row 1\): its text is 66000 bytes; a Milvus "
                                         r"VARCHAR field holds at most 65535"):
        export_to_milvus(store, client, "long", show_progress=False)
    assert not client.has_collection("long") and not client.has_collection("long" + MV.STAGING)
