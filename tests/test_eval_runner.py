"""End to end on SciFact: small real subsets by default; the full reproduction is marked slow."""
import json
import os

import numpy as np
import pytest

from bgekit.eval import EvalConfig, evaluate_beir, evaluate_retrieval, load_folder
from bgekit.eval.data import RetrievalData
from bgekit.eval.runner import make_report

SCIFACT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "scifact")


@pytest.fixture(scope="module")
def minilm():
    from bgekit.loading import load_embedder

    return load_embedder("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def small():
    return load_folder(SCIFACT, split="test").subset(8, 40)


def test_batch_size_does_not_change_results(minilm, small):
    a = evaluate_retrieval(small, minilm, config=EvalConfig(batch_size=5, show_progress=False))
    b = evaluate_retrieval(small, minilm, config=EvalConfig(batch_size=32, show_progress=False))
    assert a.metrics == b.metrics
    for q in small.queries:
        top_a = sorted(a.run[q], key=a.run[q].get, reverse=True)[:10]
        top_b = sorted(b.run[q], key=b.run[q].get, reverse=True)[:10]
        assert top_a == top_b
        np.testing.assert_allclose([a.run[q][d] for d in top_a], [b.run[q][d] for d in top_b], atol=1e-5)
    assert a.metrics["ndcg@10"] > 0.5 and len(a.run[next(iter(small.queries))]) == 40   # k capped at the corpus


def test_cached_run_gives_identical_metrics(minilm, small, tmp_path):
    config = EvalConfig(cache_dir=str(tmp_path / "cache"), show_progress=False)
    first = evaluate_retrieval(small, minilm, config=config)
    second = evaluate_retrieval(small, minilm, config=config)
    assert not first.cache_hit and second.cache_hit
    assert second.metrics == first.metrics and second.run == first.run
    assert second.timings["encode"] < first.timings["encode"]
    assert len([f for f in os.listdir(tmp_path / "cache") if f.endswith(".json")]) == 1


def test_report_records_provenance(minilm, small, tmp_path):
    result = evaluate_retrieval(small, minilm, config=EvalConfig(show_progress=False, k_values=(1, 10)))
    report = make_report([result], minilm, None, EvalConfig(k_values=(1, 10)))
    m = report["model"]
    assert m["name"] == "all-MiniLM-L6-v2" and len(m["fingerprint"]) == 64
    assert m["query_max_length"] == m["passage_max_length"] == 256 and m["dtype"] == "float32"
    assert m["query_instruction"] is None and m["pooling"] == "mean"
    assert report["bgekit_version"] and report["config"]["drop_self"] is True
    split = report["datasets"][small.name]["splits"]["test"]
    assert split["fingerprint"] == small.fingerprint and set(split["metrics"]) >= {"ndcg@10", "recall@10", "mrr@10", "map@10", "precision@10"}
    assert set(split["timings"]) == {"encode", "index", "search", "rerank", "metrics", "total"}
    json.dumps(report)                                                   # serialisable as is


def tiny(doc_texts, queries, qrels):
    ids = list(doc_texts)
    return RetrievalData("tiny", "test", ids, [""] * len(ids), list(doc_texts.values()), queries, qrels)


def test_drop_self_is_on_by_default_and_switchable():
    data = tiny({"q1": "argument about solar power costs", "d1": "solar power is getting cheaper", "d2": "wind farms"},
                {"q1": "argument about solar power costs"}, {"q1": {"d1": 1}})
    dropped = evaluate_retrieval(data, config=EvalConfig(retrieval="bm25", k_values=(1,)))
    kept = evaluate_retrieval(data, config=EvalConfig(retrieval="bm25", k_values=(1,), drop_self=False))
    assert "q1" not in dropped.run["q1"] and dropped.metrics["ndcg@1"] == 1.0
    assert next(iter(kept.run["q1"])) == "q1" and kept.metrics["ndcg@1"] == 0.0


class CountingReranker:
    def compute_score(self, pairs, batch_size=None):
        return [float(len(set(q.split()) & set(p.split()))) for q, p in pairs]


def test_reranker_step_in_the_runner():
    data = tiny({"a": "cats", "b": "cats and dogs together", "c": "dogs dogs dogs"}, {"q": "cats and dogs"}, {"q": {"b": 1}})
    result = evaluate_retrieval(data, reranker=CountingReranker(), config=EvalConfig(retrieval="bm25", rerank_top_k=2, k_values=(1, 3)))
    assert list(result.run["q"]) and len(result.run["q"]) == 2 and result.metrics["mrr@1"] == 1.0
    assert result.timings["rerank"] >= 0.0


def test_no_progress_also_silences_a_native_rerankers_bar(capsys):
    from golden import GOLDEN
    from bgekit.reranker import Reranker

    docs = {f"d{i}": f"document {i} about cats" for i in range(300)}
    data = tiny(docs, {"q": "cats"}, {"q": {"d1": 1}})
    reranker = Reranker(str(GOLDEN / "models" / "bert-reranker"), devices="cpu")
    for show, expect_bar in ((False, False), (True, True)):
        config = EvalConfig(retrieval="bm25", rerank_top_k=300, show_progress=show)
        result = evaluate_retrieval(data, reranker=reranker, config=config)
        assert len(result.run["q"]) == 300
        assert ("Scoring" in capsys.readouterr().err) is expect_bar


def test_bm25_reproduces_anserini_on_full_scifact():
    # BM25 is cheap (about a second), so the full test split runs by default.
    report = evaluate_beir([SCIFACT], config=EvalConfig(retrieval="bm25"))
    metrics = report["datasets"]["scifact"]["splits"]["test"]["metrics"]
    # measured 0.6762 (bm25s, Lucene-style idf) vs Anserini flat 0.6789; 0.005 keeps out Anserini multifield (0.665)
    assert abs(metrics["ndcg@10"] - 0.6789) <= 0.005
    assert report["model"] is None


@pytest.mark.slow
def test_minilm_reproduces_mteb_on_full_scifact(tmp_path):
    out = str(tmp_path / "results.json")
    report = evaluate_beir([SCIFACT], model="all-MiniLM-L6-v2", config=EvalConfig(batch_size=64, show_progress=False), output=out)
    metrics = report["datasets"]["scifact"]["splits"]["test"]["metrics"]
    assert abs(metrics["ndcg@10"] - 0.6451) <= 0.002
    assert abs(metrics["recall@100"] - 0.925) <= 0.002
    with open(out) as f:
        assert json.load(f)["datasets"]["scifact"]["splits"]["test"]["metrics"] == metrics


@pytest.mark.slow
def test_bf16_stays_within_0003_of_fp32():
    fp32 = evaluate_beir([SCIFACT], config=EvalConfig(batch_size=64, show_progress=False))
    bf16 = evaluate_beir([SCIFACT], config=EvalConfig(batch_size=64, show_progress=False), model_kwargs={"dtype": "bf16"})
    get = lambda r: r["datasets"]["scifact"]["splits"]["test"]["metrics"]["ndcg@10"]  # noqa: E731
    assert abs(get(fp32) - get(bf16)) <= 0.003


def test_k_larger_than_corpus_is_capped_with_a_message(caplog):
    data = tiny({"a": "cats", "b": "dogs", "c": "birds"}, {"q": "cats"}, {"q": {"a": 1}})
    with caplog.at_level("WARNING", logger="bgekit.eval.runner"):
        result = evaluate_retrieval(data, config=EvalConfig(retrieval="bm25", k_values=(1, 1000)))
    assert "search_top_k=1000 is larger than the corpus of tiny (3 documents)" in caplog.text
    assert result.metrics["recall@1000"] == 1.0
