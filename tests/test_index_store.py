"""The persisted index folder: build / add / delete / upsert on the tiny fixtures and the sample corpus, stored
vectors equal the model's, crash safety (an error or a SIGKILL at every step of a change leaves the previous
generation complete), the write lock, approximate FAISS factories, and refusal of a different model."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from faults import crash_at_fsync, record_fsyncs
from golden import GOLDEN
from bgekit.cli.embed import DEFAULT_SAMPLE
from bgekit.index import generation as G
from bgekit.index.documents import as_documents, read_corpus
from bgekit.index.model_info import IndexModelMismatch
from bgekit.index.search import Searcher
from bgekit.index.store import Vectors, build_index, open_index
from bgekit.m3 import M3Embedder

M3 = str(GOLDEN / "models" / "m3")
BERT = str(GOLDEN / "models" / "bert-embedder")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def corpus():
    return read_corpus(DEFAULT_SAMPLE)


def snapshot(store):
    """Everything a reader sees: ids in row order, dense vectors, sparse rows, ColBERT vectors."""
    docs = store.documents(range(store.count))
    out = {"ids": [docs[r][0] for r in range(store.count)], "dense": np.array(store.dense_vectors)}
    if store.sparse is not None:
        out["sparse"] = store.sparse.matrix.toarray()
    if store.colbert is not None:
        out["colbert"] = [np.array(store.colbert[a:b]) for a, b in zip(store.colbert_offsets[:-1], store.colbert_offsets[1:])]
    return out


def assert_same(a, b, atol=0.0):
    """Equal snapshots; atol allows the ~1e-7 float noise of encoding in different batches."""
    assert a["ids"] == b["ids"]
    np.testing.assert_allclose(a["dense"], b["dense"], rtol=0, atol=atol)
    if "sparse" in a:
        np.testing.assert_allclose(a["sparse"], b["sparse"], rtol=0, atol=atol)
    if "colbert" in a:
        assert len(a["colbert"]) == len(b["colbert"])
        for x, y in zip(a["colbert"], b["colbert"]):
            np.testing.assert_allclose(x.astype(np.float32), y.astype(np.float32), rtol=0, atol=atol and 1e-3)


def test_dense_build_stores_the_models_vectors_and_documents(tmp_path, bert, corpus):
    store = build_index(str(tmp_path / "ix"), bert, corpus, show_progress=False)
    assert store.count == 12 and store.outputs == ("dense",) and store.sparse is None and store.generation == "gen-000001"
    np.testing.assert_allclose(store.dense_vectors, bert.encode_corpus(corpus.texts), atol=1e-6)
    docs = store.documents([0, 11])
    assert docs[0][:2] == ("d1", corpus.texts[0]) and docs[11][0] == "d12"
    assert store.model_info.name == BERT and store.model_info.dim == 32 and store.model_info.kind == "encoder"
    again = open_index(str(tmp_path / "ix"))
    assert_same(snapshot(store), snapshot(again))
    assert json.load(open(tmp_path / "ix" / "gen-000001" / "manifest.json"))["count"] == 12


def test_m3_build_with_colbert_equals_encode_multi(tmp_path, m3, corpus):
    store = build_index(str(tmp_path / "ix"), m3, corpus, colbert=True, show_progress=False)
    out = m3.encode_multi(corpus.texts, role="passage")
    assert store.outputs == ("dense", "sparse", "colbert")
    np.testing.assert_allclose(store.dense_vectors, out.dense, atol=1e-6)
    for i, (vec, col) in enumerate(zip(out.sparse, out.colbert)):
        row = store.sparse.matrix[i]
        np.testing.assert_array_equal(row.indices, vec.indices)
        np.testing.assert_allclose(row.data, vec.values, rtol=1e-6)
        stored = store.colbert[store.colbert_offsets[i]:store.colbert_offsets[i + 1]]
        np.testing.assert_array_equal(stored, col.astype(np.float16))
    assert isinstance(store.colbert, np.memmap)


def test_add_delete_upsert_keep_rows_and_vectors_consistent(tmp_path, m3, corpus):
    store = build_index(str(tmp_path / "ix"), m3, corpus.slice(0, 8), colbert=True, show_progress=False)
    before = snapshot(store)
    store.add(corpus.slice(8, 12), m3, show_progress=False)
    full = build_index(str(tmp_path / "full"), m3, corpus, colbert=True, show_progress=False)
    assert_same(snapshot(store), snapshot(full), atol=1e-6)
    store.delete(["d2", "d11"])
    after = snapshot(store)
    keep = [i for i, d in enumerate(before["ids"] + ["d9", "d10", "d11", "d12"]) if d not in ("d2", "d11")]
    ref = snapshot(full)
    ref = {"ids": [ref["ids"][i] for i in keep], "dense": ref["dense"][keep], "sparse": ref["sparse"][keep],
           "colbert": [ref["colbert"][i] for i in keep]}
    assert_same(after, ref, atol=1e-6)
    assert store.rows(["d12", "d2"]) == {"d12": 9}
    with pytest.raises(ValueError, match="already in the index.*'d1'"):
        store.add([{"id": "d1", "text": "again"}], m3, show_progress=False)
    assert store.filter_rows({"lang": "en"}).tolist() == []  # cached for this generation only
    store.add([{"id": "d1", "text": "replaced text", "lang": "en"}], m3, upsert=True, show_progress=False)
    assert store.count == 10 and store.documents([9])[9][:2] == ("d1", "replaced text")
    assert store.filter_rows({"lang": "en"}).tolist() == [9]
    with pytest.raises(ValueError, match="not in the index: 'nope'"):
        store.delete(["d3", "nope"])
    assert store.count == 10  # nothing changed
    store.delete(["d3", "nope"], missing="ignore")
    assert store.count == 9 and "d3" not in store.rows(["d3"])
    assert sorted(n for n in os.listdir(tmp_path / "ix") if n.startswith("gen-")) == ["gen-000004", "gen-000005"]


def test_delete_everything_then_add_again(tmp_path, bert, corpus):
    store = build_index(str(tmp_path / "ix"), bert, corpus.slice(0, 3), show_progress=False)
    store.delete(["d1", "d2", "d3"])
    assert store.count == 0 and store.dense_vectors.shape == (0, 32)
    assert Searcher(store, bert).search("panda").hits == []
    store.add(corpus.slice(3, 5), bert, show_progress=False)
    assert [h.id for h in Searcher(store, bert).search("bag of words", top_k=2).hits] != []


def test_precomputed_vectors_are_checked(tmp_path, bert, corpus):
    docs = corpus.slice(0, 2)
    with pytest.raises(ValueError, match="dimension 5"):
        build_index(str(tmp_path / "a"), bert, docs, vectors=Vectors(np.ones((2, 5), np.float32)), show_progress=False)
    with pytest.raises(ValueError, match="1 rows for 2 documents"):
        build_index(str(tmp_path / "a"), bert, docs, vectors=Vectors(np.ones((1, 32), np.float32)), show_progress=False)
    store = build_index(str(tmp_path / "b"), bert, docs, vectors=Vectors(np.eye(2, 32, dtype=np.float32)), show_progress=False)
    np.testing.assert_array_equal(store.dense_vectors, np.eye(2, 32))


def test_refuses_a_different_query_or_passage_model(tmp_path, bert, m3, corpus):
    store = build_index(str(tmp_path / "ix"), m3, corpus.slice(0, 3), show_progress=False)
    with pytest.raises(IndexModelMismatch, match="kind='m3'.*kind='encoder'"):
        Searcher(store, bert)
    with pytest.raises(IndexModelMismatch, match="normalize=True.*normalize=False"):
        Searcher(store, M3Embedder(M3, devices="cpu", normalize=False))
    other = M3Embedder(M3, devices="cpu")
    with __import__("torch").no_grad():
        other.model.embeddings.word_embeddings.weight.mul_(-1.0)  # same settings, different weights
    with pytest.raises(IndexModelMismatch, match="probe cosine"):
        Searcher(store, other)
    with pytest.raises(IndexModelMismatch, match="passage_max_length"):
        store.add([{"id": "x", "text": "y"}], M3Embedder(M3, devices="cpu", passage_max_length=64), show_progress=False)
    assert store.count == 3
    Searcher(store, M3Embedder(M3, devices="cpu", query_max_length=64))  # query settings may differ


def test_build_refuses_existing_index_and_foreign_folders(tmp_path, bert, corpus):
    build_index(str(tmp_path / "ix"), bert, corpus.slice(0, 2), show_progress=False)
    with pytest.raises(ValueError, match="already exists"):
        build_index(str(tmp_path / "ix"), bert, corpus.slice(0, 2), show_progress=False)
    store = build_index(str(tmp_path / "ix"), bert, corpus.slice(2, 5), overwrite=True, show_progress=False)
    assert store.count == 3 and store.generation == "gen-000002"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a bgekit index"):
        build_index(str(tmp_path / "other"), bert, corpus.slice(0, 2), show_progress=False)
    with pytest.raises(FileNotFoundError, match="not a bgekit index"):
        open_index(str(tmp_path / "other"))


def test_every_step_of_a_failed_change_leaves_the_previous_generation(tmp_path, m3, corpus, monkeypatch):
    root = str(tmp_path / "ix")
    store = build_index(root, m3, corpus.slice(0, 6), colbert=True, show_progress=False)
    before = snapshot(store)
    new = corpus.slice(6, 9)
    vectors = Vectors(**{k: v for k, v in vars(m3.encode_multi(new.texts, role="passage")).items()})
    steps = len(record_fsyncs(monkeypatch, lambda: store.add(new, vectors=vectors)))
    assert steps >= 8
    store.delete(new.ids)  # back to 6 documents
    before = snapshot(store)
    for stop in range(steps):
        with crash_at_fsync(monkeypatch, stop):
            open_index(root).add(new, vectors=vectors)
        reopened = open_index(root)
        if stop < steps - 1:
            assert_same(snapshot(reopened), before)
        else:  # the last step runs after the pointer switch: the change is complete and live
            assert reopened.count == 9
            reopened.delete(new.ids)
    monkeypatch.setattr(G, "_switch_pointer", lambda root, name: (_ for _ in ()).throw(OSError("no switch")))
    with pytest.raises(OSError, match="no switch"):
        open_index(root).add(new, vectors=vectors)
    monkeypatch.undo()
    assert_same(snapshot(open_index(root)), before)
    store = open_index(root).add(new, vectors=vectors)  # the next writer cleans up and succeeds
    assert store.count == 9 and not [n for n in os.listdir(root) if n.startswith(".gen-")]


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from bgekit.index import generation as G
    from bgekit.index.store import Vectors, open_index
    stop, calls = int(sys.argv[2]), [0]
    real = G._fsync_path
    def fsync(path):
        if calls[0] == stop:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[0] += 1
        real(path)
    G._fsync_path = fsync
    store = open_index(sys.argv[1])
    n = 3
    store.add([{"id": f"k{i}", "text": "killed"} for i in range(n)], vectors=Vectors(np.ones((n, 32), np.float32)))
    print("finished")
""")


@pytest.mark.parametrize("stop", [0, 3, 5])  # first file; the manifest; after the rename, before the pointer switch
def test_sigkill_during_add_leaves_the_previous_index(tmp_path, bert, corpus, stop):
    root = str(tmp_path / "ix")
    before = snapshot(build_index(root, bert, corpus, factory="HNSW8", show_progress=False))
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, root, str(stop)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert_same(snapshot(open_index(root)), before)
    store = open_index(root).add([{"id": "after", "text": "a later add works"}], bert, show_progress=False)
    assert store.count == 13 and store.dense.index.ntotal == 13
    assert not [n for n in os.listdir(root) if n.startswith(".gen-")]


def test_write_lock_refuses_a_second_writer(tmp_path, bert, corpus):
    store = build_index(str(tmp_path / "ix"), bert, corpus.slice(0, 2), show_progress=False)
    with G.write_lock(store.path):
        with pytest.raises(G.IndexBusyError, match="another process"):
            store.delete(["d1"])
    assert store.count == 2


def test_hnsw_index_extends_on_add_and_rebuilds_on_delete(tmp_path, bert, corpus):
    store = build_index(str(tmp_path / "ix"), bert, corpus.slice(0, 8), factory="HNSW8", search_params={"efSearch": 32},
                        show_progress=False)
    assert not store.dense.exact and store.dense.index.ntotal == 8
    store.add(corpus.slice(8, 12), bert, show_progress=False)
    assert store.dense.index.ntotal == 12
    store.delete(["d1"])
    assert store.dense.index.ntotal == 11
    hits = Searcher(store, bert).search(corpus.texts[5], top_k=1).hits
    assert hits[0].id == "d6" and hits[0].scores["dense"] == pytest.approx(float(store.dense_vectors[4] @ store.dense_vectors[4]), abs=1e-5)


def test_an_open_reader_survives_later_generations(tmp_path, bert, corpus):
    writer = build_index(str(tmp_path / "ix"), bert, corpus.slice(0, 4), show_progress=False)
    reader = open_index(str(tmp_path / "ix"))
    searcher = Searcher(reader, bert)
    for part in (corpus.slice(4, 6), corpus.slice(6, 8), corpus.slice(8, 10)):
        writer.add(part, bert, show_progress=False)
    assert not (tmp_path / "ix" / "gen-000001").exists()
    assert reader.documents([3])[3][0] == "d4"  # the old generation's files are still open
    assert searcher.search("panda", top_k=10).hits and reader.count == 10  # search reloads the live generation


def test_damaged_generation_is_reported(tmp_path, bert, corpus):
    store = build_index(str(tmp_path / "ix"), bert, corpus.slice(0, 2), show_progress=False)
    with open(os.path.join(store.segments[0].folder, "dense.npy"), "ab") as f:  # the vectors live in segments
        f.write(b"junk")
    with pytest.raises(ValueError, match="dense.npy.*damaged"):
        open_index(str(tmp_path / "ix"))


def test_corpus_and_document_validation(tmp_path):
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n\n{"id": "b", "text": 3}\n')
    with pytest.raises(ValueError, match=r"c.jsonl:3: 'text' must be a string"):
        read_corpus(str(bad))
    bad.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    with pytest.raises(ValueError, match=r"c.jsonl:2: id 'a' repeats"):
        read_corpus(str(bad))
    bad.write_text('{"id": "a", "text": "x"\n')
    with pytest.raises(ValueError, match=r"c.jsonl:1: not valid JSON"):
        read_corpus(str(bad))
    docs = as_documents([{"_id": 7, "title": "T", "text": "body", "year": 2020, "metadata": {"lang": "en"}}])
    assert docs.ids == ["7"] and docs.for_encoding() == ["T body"] and docs.metadata == [{"year": 2020, "lang": "en"}]
    with pytest.raises(ValueError, match=r"documents\[0\]: 'id'"):
        as_documents([{"text": "no id"}])


def test_ivf_index_built_empty_is_trained_on_the_first_add(tmp_path, bert):
    store = build_index(str(tmp_path / "ix"), bert, [], factory="IVF4,Flat", show_progress=False)
    assert store.count == 0 and not store.dense.index.is_trained
    vectors = np.random.default_rng(0).standard_normal((200, 32)).astype(np.float32)
    store.add([{"id": str(i), "text": "x"} for i in range(200)], vectors=Vectors(vectors))
    assert store.dense.index.is_trained and store.dense.index.ntotal == 200
