"""Export to Qdrant (local in-memory mode) and search it: dense and sparse hits equal bgekit's own search,
ColBERT rescoring orders like bgekit's, filters work, and the collection refuses another model."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qdrant_client")

from golden import GOLDEN
from bgekit.cli.embed import DEFAULT_SAMPLE
from bgekit.encoder import Embedder
from bgekit.index.documents import read_corpus
from bgekit.index.model_info import IndexModelMismatch
from bgekit.index.qdrant import QdrantSearcher, export_to_qdrant, qdrant_client
from bgekit.index.search import Searcher
from bgekit.index.store import build_index
from bgekit.m3 import M3Embedder

M3 = str(GOLDEN / "models" / "m3")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    m3 = M3Embedder(M3, devices="cpu")
    docs = read_corpus(DEFAULT_SAMPLE)
    for i, meta in enumerate(docs.metadata):
        meta["lang"] = "en" if i % 3 else "de"
    store = build_index(str(tmp_path_factory.mktemp("q") / "ix"), m3, docs, colbert=True, show_progress=False)
    client = qdrant_client(path=":memory:")
    assert export_to_qdrant(store, client, "docs", show_progress=False) == 12
    return m3, store, client


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_single_signal_equals_bgekit(setup, mode):
    m3, store, client = setup
    ours = Searcher(store, m3).search("giant panda bamboo", top_k=5, mode=mode)
    theirs = QdrantSearcher(client, "docs", m3).search("giant panda bamboo", top_k=5, mode=mode)
    assert [h.id for h in theirs.hits] == [h.id for h in ours.hits]
    np.testing.assert_allclose([h.score for h in theirs.hits], [h.score for h in ours.hits], atol=1e-4)
    assert theirs.hits[0].text == ours.hits[0].text and theirs.stages == (mode,)


def test_colbert_rescoring_orders_like_bgekit(setup):
    m3, store, client = setup
    ours = Searcher(store, m3).search("capital of France", top_k=6, mode="hybrid", colbert=True, candidates=12,
                                       weights={"dense": 0.0, "sparse": 0.0, "colbert": 1.0})
    theirs = QdrantSearcher(client, "docs", m3).search("capital of France", top_k=6, mode="hybrid", colbert=True,
                                                        candidates=12)
    assert [h.id for h in theirs.hits] == [h.id for h in ours.hits]
    n_query_vectors = len(m3.encode_multi("capital of France", role="query", outputs=("colbert",)).colbert)
    np.testing.assert_allclose([h.score / n_query_vectors for h in theirs.hits], [h.score for h in ours.hits], atol=1e-3)


def test_hybrid_filter_and_model_check(setup):
    m3, store, client = setup
    res = QdrantSearcher(client, "docs", m3).search("panda", top_k=12, mode="hybrid", filter={"lang": "de"})
    assert res.hits and {h.id for h in res.hits} <= {"d1", "d4", "d7", "d10"}
    assert all(h.metadata["lang"] == "de" for h in res.hits)
    with pytest.raises(IndexModelMismatch, match="kind='m3'"):
        QdrantSearcher(client, "docs", Embedder(str(GOLDEN / "models" / "bert-embedder"), devices="cpu"))
    with pytest.raises(ValueError, match=r"exists; replace it with overwrite=True \(bgekit index export-qdrant --overwrite\)"):
        export_to_qdrant(store, client, "docs", show_progress=False)


def test_local_folder_mode(setup, tmp_path):
    m3, store, _ = setup
    client = qdrant_client(path=str(tmp_path / "qdrant"))
    export_to_qdrant(store, client, "docs", show_progress=False)
    assert client.count("docs").count == 12
    client.close()
    with pytest.raises(ValueError, match="exactly one of url"):
        qdrant_client()
