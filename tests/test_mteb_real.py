"""MTEBModel through the real ``mteb`` package (mteb 2's ``mteb.evaluate``), fully offline.

- mteb's own in-memory mock tasks (retrieval, STS, classification) run end to end on the tiny golden BERT;
- a local mteb retrieval task built from a SciFact subset gives the same scores as ``bgekit.eval`` on the
  same BEIR folder (same model, same encoder inputs: mteb only differs in search and scoring code);
- a task instruction reaches the query texts mteb has encoded, and not the documents nor other tasks.

Nothing is written to mteb's results cache (``cache=None``) and CO2 tracking (codecarbon) is off.
"""
import csv
import inspect
import json
import math
import os

import numpy as np
import pytest

mteb = pytest.importorskip("mteb")
mock_tasks = pytest.importorskip("mteb.mocks.mock_tasks", reason="this mteb has no offline mock tasks")

from datasets import Dataset  # noqa: E402  (an mteb dependency)
from mteb.abstasks.retrieval import AbsTaskRetrieval  # noqa: E402
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData  # noqa: E402
from mteb.abstasks.task_metadata import TaskMetadata  # noqa: E402

from bgekit.loading import load_embedder  # noqa: E402
from bgekit.eval.data import RetrievalData, load_folder  # noqa: E402
from bgekit.eval.metrics import sts_spearman  # noqa: E402
from bgekit.eval.mteb import MTEBModel  # noqa: E402
from bgekit.eval.runner import EvalConfig, evaluate_retrieval  # noqa: E402
from golden import GOLDEN  # noqa: E402

MockClassificationTask = mock_tasks.MockClassificationTask
MockRetrievalTask = mock_tasks.MockRetrievalTask
MockSTSTask = mock_tasks.MockSTSTask
# mteb's mock classification fits LogisticRegression(max_iter=10) on 2 texts; sklearn warns about its F1 scores
quiet_mock_classifier = pytest.mark.filterwarnings("ignore:Precision is ill-defined")

BERT = str(GOLDEN / "models" / "bert-embedder")
SCIFACT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "scifact")
BATCH = 32


def run_mteb(model, tasks, **kwargs):
    """mteb.evaluate with nothing written to disk, no codecarbon, no progress bars."""
    return mteb.evaluate(model, tasks, cache=None, co2_tracker=False, show_progress_bar=False,
                         encode_kwargs={"batch_size": BATCH, "show_progress_bar": False}, **kwargs)


def scores_of(result, task_name, split="test"):
    """The score dict of one task's split (its only subset, "default")."""
    task_result = next(r for r in result.task_results if r.task_name == task_name)
    (scores,) = [s for s in task_result.scores[split] if s["hf_subset"] == "default"]
    return scores


@pytest.fixture(scope="module")
def bert():
    return load_embedder(BERT)


@pytest.fixture(scope="module")
def minilm():
    return load_embedder("all-MiniLM-L6-v2")


# ---------------------------------------------------------------- mteb's mock tasks


@quiet_mock_classifier
def test_mock_tasks_run_through_real_mteb(bert):
    retrieval, sts, classification = MockRetrievalTask(), MockSTSTask(), MockClassificationTask()
    for task in (retrieval, sts):  # loaded here so bgekit can score the same data; mteb keeps preloaded data
        task.load_data()
    result = run_mteb(MTEBModel(bert), [retrieval, sts, classification])

    assert result.model_name == "bgekit/bert-embedder"
    assert {r.task_name for r in result.task_results} == {"MockRetrievalTask", "MockSTSTask", "MockClassificationTask"}
    for split in ("val", "test"):
        s = scores_of(result, "MockRetrievalTask", split)
        assert s["main_score"] == s["ndcg_at_10"]
        for key in ("ndcg_at_10", "map_at_10", "recall_at_1", "mrr_at_10"):
            assert math.isfinite(s[key]) and 0.0 <= s[key] <= 1.0, (split, key, s[key])
    s_cls = scores_of(result, "MockClassificationTask")
    assert s_cls["main_score"] == s_cls["accuracy"] and 0.0 <= s_cls["accuracy"] <= 1.0

    # retrieval: bgekit's own evaluation of the mock's data (2 queries, 2 documents, graded qrels with 0s)
    split = retrieval.dataset["default"]["test"]
    corpus, queries = split["corpus"], split["queries"]
    data = RetrievalData("mock", "test", list(corpus["id"]), list(corpus["title"]), list(corpus["text"]),
                         dict(zip(queries["id"], queries["text"])), split["relevant_docs"])
    config = EvalConfig(batch_size=BATCH, show_progress=False, k_values=(1, 10), search_top_k=len(data.doc_ids))
    ours = evaluate_retrieval(data, bert, config=config)
    s = scores_of(result, "MockRetrievalTask")
    for metric in ("ndcg", "map", "recall", "mrr"):
        for k in (1, 10):
            assert s[f"{metric}_at_{k}"] == pytest.approx(ours.metrics[f"{metric}@{k}"], abs=1e-5), (metric, k)

    # STS (2 pairs, so a correlation of +-1): mteb's "spearman" uses the adapter's similarity_pairwise,
    # "cosine_spearman" mteb's own cosine; both must be bgekit's cosine Spearman on the same embeddings
    s_sts = scores_of(result, "MockSTSTask")
    assert s_sts["main_score"] == s_sts["cosine_spearman"] and -1.0 <= s_sts["cosine_spearman"] <= 1.0
    pairs = sts.dataset["test"]
    gold = np.asarray(pairs["score"], dtype=float) / sts.max_score
    ours_sts = sts_spearman(bert.encode(list(pairs["sentence1"])), bert.encode(list(pairs["sentence2"])), gold)
    assert s_sts["spearman"] == pytest.approx(ours_sts["cosine_spearman"], abs=1e-6)
    assert s_sts["cosine_spearman"] == pytest.approx(ours_sts["cosine_spearman"], abs=1e-6)


# ---------------------------------------------------------------- mteb vs bgekit on a SciFact subset


class LocalBEIRRetrieval(AbsTaskRetrieval):
    """An mteb retrieval task read from a local BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv).

    Like mteb's own SciFact task, it keeps mteb's defaults: ``ignore_identical_ids = False`` and documents read as
    title + " " + text. Every query in queries.jsonl goes to mteb; mteb itself drops those without relevant docs.
    """

    metadata = TaskMetadata(
        name="LocalSciFactSubset", description="A SciFact subset read from a local BEIR folder (bgekit test).",
        reference=None, dataset={"path": "local", "revision": "local"}, type="Retrieval", category="t2t",
        modalities=["text"], eval_splits=["test"], eval_langs=["eng-Latn"], main_score="ndcg_at_10", date=None,
        domains=None, task_subtypes=None, license=None, annotations_creators=None, dialect=None,
        sample_creation=None, bibtex_citation=None,
    )

    def __init__(self, folder, **kwargs):
        super().__init__(**kwargs)
        self.folder = str(folder)

    def load_data(self, num_proc=None, **kwargs):
        with open(os.path.join(self.folder, "corpus.jsonl"), encoding="utf-8") as f:
            corpus = [json.loads(line) for line in f]
        with open(os.path.join(self.folder, "queries.jsonl"), encoding="utf-8") as f:
            queries = [json.loads(line) for line in f]
        relevant: dict[str, dict[str, int]] = {}
        with open(os.path.join(self.folder, "qrels", "test.tsv"), encoding="utf-8", newline="") as f:
            rows = csv.reader(f, delimiter="\t")
            next(rows)  # header
            for qid, did, score in rows:
                relevant.setdefault(qid, {})[did] = int(score)
        self.dataset = {"default": {"test": RetrievalSplitData(
            corpus=Dataset.from_list([{"id": d["_id"], "title": d["title"], "text": d["text"]} for d in corpus]),
            queries=Dataset.from_list([{"id": q["_id"], "text": q["text"]} for q in queries]),
            relevant_docs=relevant, top_ranked=None)}}
        self.data_loaded = True


def write_scifact_subset(folder, n_queries=100, n_docs=400):
    """The first ``n_queries`` SciFact test queries, their relevant documents plus other documents up to ``n_docs``,
    as a BEIR folder. queries.jsonl also holds every other SciFact query (no qrels here: both sides must skip them),
    after the judged ones so that both sides encode the judged queries in one order."""
    sub = load_folder(SCIFACT, split="test").subset(n_queries, n_docs)
    os.makedirs(folder / "qrels")
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for doc_id, title, text in zip(sub.doc_ids, sub.titles, sub.texts):
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with open(os.path.join(SCIFACT, "queries.jsonl"), encoding="utf-8") as f:
        others = [q for q in map(json.loads, f) if q["_id"] not in sub.queries]
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, text in sub.queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
        for q in others:
            f.write(json.dumps({"_id": q["_id"], "text": q["text"]}) + "\n")
    with open(folder / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, judged in sub.qrels.items():
            for doc_id, rel in judged.items():
                f.write(f"{qid}\t{doc_id}\t{rel}\n")
    return sub


class MemoEncode:
    """Memoises an embedder's ``encode`` on everything that decides its output (texts, batch size, max length,
    instruction...; not the progress bar). bgekit's encode_queries/encode_corpus call ``self.encode``, so when
    bgekit asks for exactly what mteb asked for, the embeddings are reused instead of recomputed."""

    def __init__(self, encode):
        self.encode, self.signature = encode, inspect.signature(encode)
        self.store, self.hits = {}, []

    def __call__(self, *args, **kwargs):
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        settings = dict(bound.arguments)
        settings.pop("show_progress", None)
        texts = settings.pop("sentences")
        key = (tuple(texts) if isinstance(texts, list) else texts, tuple(sorted(settings.items())))
        self.hits.append(key in self.store)
        if key not in self.store:
            self.store[key] = self.encode(*args, **kwargs)
        return np.array(self.store[key], copy=True)


def test_mteb_scores_match_bgekit_on_scifact_subset(minilm, tmp_path, monkeypatch):
    folder = tmp_path / "scifact_subset"
    sub = write_scifact_subset(folder)
    assert len(sub.queries) == 100 and len(sub.doc_ids) == 400
    # mteb's SciFact keeps ignore_identical_ids=False while bgekit drops doc id == query id: no difference here
    assert not set(sub.queries) & set(sub.doc_ids)

    memo = MemoEncode(minilm.encode)
    monkeypatch.setattr(minilm, "encode", memo)
    result = run_mteb(MTEBModel(minilm), [LocalBEIRRetrieval(folder)])
    assert memo.hits == [False, False]  # mteb: one call for the 100 judged queries, one for the corpus
    mteb_scores = scores_of(result, "LocalSciFactSubset")

    data = load_folder(str(folder), split="test")
    assert list(data.queries) == list(sub.queries) and data.doc_ids == sub.doc_ids
    ours = evaluate_retrieval(data, minilm, config=EvalConfig(batch_size=BATCH, show_progress=False,
                                                              search_top_k=len(data.doc_ids)))
    # bgekit encoded exactly the texts mteb encoded, with the same instruction, max length and batch size
    assert memo.hits == [False, False, True, True]

    print(f"\nSciFact subset ({len(data.queries)} queries, {len(data.doc_ids)} docs), all-MiniLM-L6-v2:")
    for metric in ("ndcg", "recall", "map", "mrr", "precision"):
        for k in (1, 3, 5, 10, 100):
            mine, theirs = ours.metrics[f"{metric}@{k}"], mteb_scores[f"{metric}_at_{k}"]
            if k in (10, 100):
                print(f"  {metric}@{k}: mteb {theirs:.5f}  bgekit {mine:.6f}")
            # mteb rounds its means to 5 decimals (except MRR)
            assert theirs == pytest.approx(mine, abs=1e-5), (metric, k, theirs, mine)
    assert mteb_scores["main_score"] == mteb_scores["ndcg_at_10"]
    assert 0.5 < ours.metrics["ndcg@10"] < 1.0 and ours.metrics["recall@100"] > 0.9  # a real run, not a degenerate one


# ---------------------------------------------------------------- instructions


class RecordingTokenizer:
    """Records every list of texts handed to the tokenizer (what the model finally reads), then tokenizes."""

    def __init__(self, tokenizer):
        self.tokenizer, self.seen = tokenizer, []

    def __call__(self, texts, *args, **kwargs):
        self.seen.append(list(texts) if isinstance(texts, (list, tuple)) else [texts])
        return self.tokenizer(texts, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


@quiet_mock_classifier
def test_task_instruction_reaches_queries_only(bert, monkeypatch):
    retrieval, sts, classification = MockRetrievalTask(), MockSTSTask(), MockClassificationTask()
    for task in (retrieval, sts, classification):
        task.load_data()
    split = retrieval.dataset["default"]["test"]
    queries = list(split["queries"]["text"])
    documents = [f"{t} {x}".strip() for t, x in zip(split["corpus"]["title"], split["corpus"]["text"])]

    recorder = RecordingTokenizer(bert.tokenizer)
    monkeypatch.setattr(bert, "tokenizer", recorder)
    model = MTEBModel(bert, task_instructions={"MockRetrievalTask": "X: ", "MockClassificationTask": "C: "})

    def texts_read(task):
        recorder.seen.clear()
        result = run_mteb(model, [task])
        assert math.isfinite(scores_of(result, task.metadata.name)["main_score"])
        return sorted(t for texts in recorder.seen for t in texts)

    # retrieval, splits "val" and "test": queries with the instruction, documents (title + text) without
    assert texts_read(retrieval) == sorted(2 * (["X: " + q for q in queries] + documents))
    # a task with no entry gets no instruction (the golden BERT has no query instruction of its own)
    pairs = sts.dataset["test"]
    assert texts_read(sts) == sorted(list(pairs["sentence1"]) + list(pairs["sentence2"]))
    # a non-retrieval task with an entry gets it on every text it encodes
    cls_texts = set(classification.dataset["train"]["text"]) | set(classification.dataset["test"]["text"])
    seen = texts_read(classification)
    assert seen and {t[3:] for t in seen} == cls_texts and all(t.startswith("C: ") for t in seen)
