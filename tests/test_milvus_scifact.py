"""Dense search through Milvus (Milvus Lite, an exact FLAT index) returns bgekit's own top-10 on SciFact for
every test query, and the evaluation scores (nDCG, recall) are the same.

Default run: all-MiniLM-L6-v2 on a SciFact subset (20 test queries, their judged documents, and the first corpus
documents up to 100 in all; passages cut to 128 tokens), which takes seconds. ``-m slow``: the whole corpus
(5,183 documents) and all 300 test queries at the model's own settings (minutes on a CPU).

The tiny golden embedder is not used here: its random weights put many documents within 1e-7 of each other, and
two exact float32 engines may order such near-ties differently (measured: 299 of 300 queries identical).
"""
from __future__ import annotations

import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from golden import GOLDEN

pytestmark = pytest.mark.usefixtures("one_thread")
SCIFACT = GOLDEN.parent / "data" / "scifact"
MODEL = "all-MiniLM-L6-v2"


def compare(tmp_path, n_queries: int | None, n_docs: int | None, **model_kwargs):
    """Build a Flat index, export it to Milvus Lite (FLAT), search every query in both: top-100 hits and scores."""
    from bgekit.eval.data import load_folder
    from bgekit.eval.metrics import evaluate_run
    from bgekit.index.milvus import export_to_milvus, milvus_client
    from bgekit.index.milvus_search import MilvusSearcher
    from bgekit.index.search import Searcher
    from bgekit.index.store import build_index
    from bgekit.loading import load_embedder

    if not (SCIFACT / "corpus.jsonl").is_file():
        pytest.skip("SciFact data not found (../shared/data/scifact)")
    data = load_folder(str(SCIFACT), "test")
    qids = list(data.queries)[:n_queries]
    judged = {d for q in qids for d in data.qrels[q]}
    fill = len(data.doc_ids) if n_docs is None else n_docs - len(judged)
    docs = [{"id": i, "title": t, "text": x} for n, (i, t, x) in enumerate(zip(data.doc_ids, data.titles, data.texts))
            if n < fill or i in judged]
    model = load_embedder(MODEL, devices="cpu", **model_kwargs)
    store = build_index(str(tmp_path / "ix"), model, docs, show_progress=False)
    client = milvus_client(str(tmp_path / "milvus.db"))
    assert export_to_milvus(store, client, "scifact", show_progress=False) == len(docs)
    texts = [data.queries[q] for q in qids]
    ours = Searcher(store, model).search(texts, top_k=100)
    theirs = MilvusSearcher(client, "scifact", model).search(texts, top_k=100)
    qrels = {q: data.qrels[q] for q in qids}

    def scores(results):  # BEIR convention: a hit whose id is the query's is dropped
        run = {q: {h.id: h.score for h in r.hits if h.id != q} for q, r in zip(qids, results)}
        return evaluate_run(qrels, run, k_values=[10, 100], metrics=["ndcg", "recall"])

    return qids, ours, theirs, scores(ours), scores(theirs)


def check_identical(qids, ours, theirs, local, milvus):
    differ = [q for q, a, b in zip(qids, ours, theirs) if [h.id for h in a.hits[:10]] != [h.id for h in b.hits[:10]]]
    assert not differ, f"top-10 differs for {len(differ)} of {len(qids)} queries: {differ[:5]}"
    for a, b in zip(ours, theirs):  # the same exact inner products, in float32
        assert [h.score for h in b.hits[:10]] == pytest.approx([h.score for h in a.hits[:10]], abs=1e-5)
    assert milvus == local


def test_milvus_flat_equals_the_local_index_on_a_scifact_subset(tmp_path):
    qids, ours, theirs, local, milvus = compare(tmp_path, 20, 100, passage_max_length=128)
    assert len(qids) == 20 and all(len(r.hits) == 100 for r in theirs)
    check_identical(qids, ours, theirs, local, milvus)
    assert local["recall@100"] > 0.9  # the judged documents are in the subset: a real retrieval, not noise


@pytest.mark.slow
def test_milvus_flat_equals_the_local_index_on_all_of_scifact(tmp_path):
    qids, ours, theirs, local, milvus = compare(tmp_path, None, None)
    assert len(qids) == 300 and len(ours) == 300
    check_identical(qids, ours, theirs, local, milvus)
    print(f"\nSciFact test, {MODEL}: local {local}\nMilvus Lite FLAT: {milvus}")
    assert local["ndcg@10"] == pytest.approx(0.6451, abs=0.01)  # MTEB's published all-MiniLM-L6-v2 score
