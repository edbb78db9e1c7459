"""Evaluation streams its corpus: texts stay in their file (read a chunk at a time, or a few rows by offset), corpus
vectors go to .npy files searched memory-mapped; results equal an in-memory evaluation of the same collection."""
import gzip
import json
import os

import numpy as np
import pytest

import bgekit.eval.stream as stream
from bgekit.errors import InputError
from bgekit.eval import EvalConfig, evaluate_retrieval
from bgekit.eval.corpus import CorpusFile, LazyColumn
from bgekit.eval.data import RetrievalData, load_folder

pytestmark = pytest.mark.usefixtures("one_thread")

HERE = os.path.dirname(__file__)
GOLDEN = os.path.join(HERE, "..", "..", "shared", "golden", "models")
SCIFACT = os.path.join(HERE, "..", "..", "shared", "data", "scifact")


@pytest.fixture(scope="module")
def memory():
    """Five SciFact queries and 60 documents, held in memory (lists)."""
    full = load_folder(SCIFACT)
    small = full.subset(5, 60)
    assert isinstance(small.texts, list)
    return small


def write_beir(folder, data, gz=False):
    os.makedirs(os.path.join(folder, "qrels"))
    opener = (lambda p: gzip.open(p + ".gz", "wt", encoding="utf-8")) if gz else (lambda p: open(p, "w", encoding="utf-8"))
    with opener(os.path.join(folder, "corpus.jsonl")) as f:
        for i, t, x in zip(data.doc_ids, data.titles, data.texts):
            f.write(json.dumps({"_id": i, "title": t, "text": x}) + "\n")
    with open(os.path.join(folder, "queries.jsonl"), "w", encoding="utf-8") as f:
        for q, text in data.queries.items():
            f.write(json.dumps({"_id": q, "text": text}) + "\n")
    with open(os.path.join(folder, "qrels", "test.tsv"), "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, docs in data.qrels.items():
            for d, rel in docs.items():
                f.write(f"{q}\t{d}\t{rel}\n")
    return str(folder)


@pytest.fixture
def on_disk(memory, tmp_path):
    return load_folder(write_beir(tmp_path / "scifact60", memory), name=memory.name)


@pytest.fixture(scope="module")
def bert():
    from bgekit.loading import load_embedder

    return load_embedder(os.path.join(GOLDEN, "bert-embedder"), devices="cpu")


@pytest.fixture(scope="module")
def m3():
    from bgekit.loading import load_embedder

    return load_embedder(os.path.join(GOLDEN, "m3"), devices="cpu")


def test_a_folder_corpus_stays_in_its_file_and_reads_like_lists(memory, on_disk, tmp_path):
    assert isinstance(on_disk.texts, LazyColumn) and isinstance(on_disk.titles, LazyColumn)
    assert on_disk.doc_ids == memory.doc_ids
    assert on_disk.texts == memory.texts and list(on_disk.titles) == memory.titles
    assert on_disk.texts[7] == memory.texts[7] and on_disk.titles[-1] == memory.titles[-1]
    assert on_disk.texts[2:9:3] == memory.texts[2:9:3]
    with pytest.raises(IndexError):
        on_disk.texts[60]
    assert on_disk.documents() == memory.documents()
    assert [d for chunk in on_disk.document_chunks(7) for d in chunk] == memory.documents()
    assert on_disk.corpus_fingerprint == memory.corpus_fingerprint  # cache keys carry over
    picked = [memory.doc_ids[i] for i in (40, 3, 40)]
    assert on_disk.texts_of(picked) == memory.texts_of(picked) == {d: memory.documents()[memory.doc_ids.index(d)] for d in picked}
    sub = on_disk.subset(2, 10)
    assert isinstance(sub.texts, list) and sub.texts == memory.subset(2, 10).texts
    gz = load_folder(write_beir(tmp_path / "gz", memory, gz=True))  # no reading by offset in gzip: lists
    assert isinstance(gz.texts, list) and gz.documents() == memory.documents()


def test_a_corpus_file_changed_after_loading_is_an_error(on_disk):
    path = on_disk.corpus_file.path
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"_id": "new", "text": "added later"}) + "\n")
    with pytest.raises(InputError, match="changed after it was loaded"):
        list(on_disk.document_chunks(10))


def test_a_bad_corpus_line_is_named_when_the_folder_loads(tmp_path, memory):
    folder = write_beir(tmp_path / "bad", memory)
    with open(os.path.join(folder, "corpus.jsonl"), "a", encoding="utf-8") as f:
        f.write('{"_id": "x", "title": "no text"}\n')
    with pytest.raises(InputError, match=r"corpus.jsonl:61: missing field 'text'"):
        load_folder(folder)
    with pytest.raises(ValueError, match="gzip"):
        CorpusFile(os.path.join(folder, "corpus.jsonl.gz"), "_id")


class Spy:
    """Counts what an evaluation does to the corpus: texts per encoding call, rows read by offset."""

    def __init__(self, monkeypatch, model):
        self.calls, self.rows = [], 0
        spy = self
        inner = model.encode_corpus

        def encode_corpus(texts, *args, **kwargs):
            spy.calls.append(len(texts))
            return inner(texts, *args, **kwargs)

        monkeypatch.setattr(model, "encode_corpus", encode_corpus)
        rows = CorpusFile.rows

        def counted(self, positions):
            out = rows(self, positions)
            spy.rows += len(out)
            return out

        monkeypatch.setattr(CorpusFile, "rows", counted)

        def whole(self):
            raise AssertionError("the evaluation read the whole corpus into memory")

        monkeypatch.setattr(RetrievalData, "documents", whole)


def assert_same_run(a, b):
    assert a.keys() == b.keys()
    for q in a:
        assert list(a[q]) == list(b[q]), q
        np.testing.assert_allclose(list(a[q].values()), list(b[q].values()), atol=1e-5)


def test_dense_evaluation_streams_and_matches_memory(memory, on_disk, bert, monkeypatch):
    from bgekit.reranker import Reranker

    config = EvalConfig(retrieval="dense", show_progress=False, search_top_k=20, rerank_top_k=4)
    reranker = Reranker(os.path.join(GOLDEN, "bert-reranker"), devices="cpu")
    expected = evaluate_retrieval(memory, bert, reranker, config)
    monkeypatch.setattr(stream, "EVAL_CHUNK", 16)
    spy = Spy(monkeypatch, bert)
    got = evaluate_retrieval(on_disk, bert, reranker, config)
    assert sum(spy.calls) == 60 and max(spy.calls) <= 16 and len(spy.calls) == 4  # 16 + 16 + 16 + 12
    assert 0 < spy.rows <= 5 * 4  # only the texts the reranker scores, read by offset
    assert_same_run(got.run, expected.run)
    assert got.metrics == pytest.approx(expected.metrics, abs=1e-9)


def test_bm25_tokenizes_the_file_as_it_reads_it(memory, on_disk, monkeypatch):
    config = EvalConfig(retrieval="bm25", show_progress=False)
    expected = evaluate_retrieval(memory, config=config)
    monkeypatch.setattr(RetrievalData, "documents", lambda self: pytest.fail("read whole"))
    got = evaluate_retrieval(on_disk, config=config)
    assert got.run == expected.run and got.metrics == expected.metrics


@pytest.mark.parametrize("retrieval", ["sparse", "dense+sparse"])
def test_m3_sparse_and_hybrid_stream_through_memory_maps(memory, on_disk, m3, monkeypatch, retrieval):
    import bgekit.eval.runner as runner
    from bgekit.index.sparse import SparseIndex

    config = EvalConfig(retrieval=retrieval, show_progress=False, search_top_k=20)
    expected = evaluate_retrieval(memory, m3, config=config)
    monkeypatch.setattr(stream, "EVAL_CHUNK", 25)
    seen = {}
    build = runner.build_indexes

    def spy(mode, corpus, *args):
        seen.update(dense=corpus.dense, sparse=corpus.sparse)
        return build(mode, corpus, *args)

    monkeypatch.setattr(runner, "build_indexes", spy)
    monkeypatch.setattr(RetrievalData, "documents", lambda self: pytest.fail("read whole"))
    got = evaluate_retrieval(on_disk, m3, config=config)
    if retrieval == "sparse":
        assert seen["dense"] is None  # only what the mode needs is encoded
    else:
        assert isinstance(seen["dense"], np.memmap) and seen["dense"].shape == (60, m3.dim)
    assert isinstance(seen["sparse"], SparseIndex) and len(seen["sparse"]) == 60
    for array in (seen["sparse"].matrix.data, seen["sparse"].inverted.indices):
        assert not array.flags.owndata  # views of the memory-mapped files, not copies
    assert_same_run(got.run, expected.run)


def test_the_cache_keeps_the_streamed_files_and_hits_memory_mapped(on_disk, bert, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    config = EvalConfig(retrieval="dense", show_progress=False, search_top_k=10, cache_dir=str(cache))
    first = evaluate_retrieval(on_disk, bert, config=config)
    assert not first.cache_hit
    names = sorted(os.listdir(cache))
    assert len(names) == 2 and names[0].endswith(".dense.npy") and names[1].endswith(".json")  # no leftovers
    monkeypatch.setattr(bert, "encode_corpus", lambda *a, **k: pytest.fail("a cache hit encodes nothing"))
    second = evaluate_retrieval(on_disk, bert, config=config)
    assert second.cache_hit and second.run == first.run and second.metrics == first.metrics


def test_an_unwritable_cache_folder_costs_the_cache_not_the_run(on_disk, bert, tmp_path, caplog, monkeypatch):
    import tempfile

    cache = str(tmp_path / "cache")
    real = tempfile.mkdtemp

    def read_only(*args, **kwargs):  # a read-only cache folder (chmod does not stop root, who runs CI)
        if kwargs.get("dir") == cache:
            raise PermissionError(13, "Permission denied", cache)
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    config = EvalConfig(retrieval="dense", show_progress=False, search_top_k=10, cache_dir=cache)
    result = evaluate_retrieval(on_disk, bert, config=config)
    assert "could not write in the embedding cache" in caplog.text and "Permission denied" in caplog.text
    assert len(result.run) == 5 and not result.cache_hit and os.listdir(cache) == []


def test_a_cache_manifest_that_cannot_be_written_leaves_a_working_run(on_disk, bert, tmp_path, caplog, monkeypatch):
    """The arrays were already moved into the cache when its manifest write fails (disk full): the run reads them
    from there, and the entry stays a miss (no manifest) for the next run."""
    import bgekit.eval.cache as cache_module

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_module, "atomic_write_text", disk_full)
    config = EvalConfig(retrieval="dense", show_progress=False, search_top_k=10, cache_dir=str(tmp_path / "cache"))
    first = evaluate_retrieval(on_disk, bert, config=config)
    assert "could not write the embedding cache" in caplog.text and len(first.run) == 5
    monkeypatch.undo()
    second = evaluate_retrieval(on_disk, bert, config=config)
    assert not second.cache_hit and second.run == first.run
