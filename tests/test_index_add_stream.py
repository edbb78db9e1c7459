"""`IndexStore.add` and `bgekit index add` with a streamed corpus (``stream_corpus``): the same index as an add of
the documents held in memory, ids checked against the index before anything is encoded, upsert, bad lines named
by file and line, and the chunks bounded: at most ``chunk`` documents are read before they are encoded and
written (memory is shown bounded by counting what reaches the encoder and the writer, not by timing or RSS)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bgekit.cli import main
from bgekit.errors import InputError, UsageError
from bgekit.index import documents as D
from bgekit.index.documents import read_corpus, stream_corpus
from bgekit.index.model_info import PROBE_TEXT
from bgekit.index.search import Searcher
from bgekit.index.segment import SegmentWriter
from bgekit.index.store import build_index, open_index

pytestmark = pytest.mark.usefixtures("one_thread")

TOPICS = ["pandas eat bamboo", "the heart pumps blood", "insulin controls glucose", "neurons fire at synapses",
          "vaccines train the immune system"]
QUERIES = ["what do pandas eat", "blood and the heart", "glucose in the blood", "immune response"]


def doc(i: int, suffix: str = "") -> dict:
    return {"id": f"d{i}", "text": f"{TOPICS[i % 5]} {suffix}(note {i})", "title": f"T{i}" if i % 3 else None,
            "group": i % 2, "metadata": {"year": 2000 + i}}


BASE = [doc(i) for i in range(4)]
NEW = [doc(i) for i in range(4, 14)]  # 10 documents: chunks of 3, 3, 3, 1


def write(path, docs) -> str:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return str(path)


def stored(store) -> list:
    """Every live document as stored (id, text, title, metadata), in row order."""
    rows = store.documents(range(store.count))
    return [rows[r] for r in range(store.count)]


def results(store, model, mode="dense") -> list:
    return [[(h.id, h.text, h.score) for h in r.hits] for r in Searcher(store, model).search(QUERIES, top_k=6, mode=mode)]


def assert_same_index(a, b, model, modes=("dense",)):
    assert a.count == b.count and stored(a) == stored(b)
    np.testing.assert_allclose(np.asarray(a.dense_vectors), np.asarray(b.dense_vectors), rtol=0, atol=1e-6)
    if a.sparse is not None:
        np.testing.assert_allclose(a.sparse.matrix.toarray(), b.sparse.matrix.toarray(), rtol=0, atol=1e-6)
    for mode in modes:
        ra, rb = results(a, model, mode), results(b, model, mode)
        assert [[h[:2] for h in r] for r in ra] == [[h[:2] for h in r] for r in rb]
        assert any(ra)  # the queries find something (sparse search may find fewer than top_k)
        for x, y in zip(ra, rb):
            np.testing.assert_allclose([h[2] for h in x], [h[2] for h in y], rtol=0, atol=1e-6)


def record(monkeypatch, model, log):
    """Log what the add does, in order: ("read", id) per document the stream parses, ("encode", n texts) per
    call of the document encoder, ("write", n rows) per segment append; ``encode`` calls are logged as ("probe",
    text) for the model check's probe text, else ("plain", n texts) (the document encoder may call it)."""
    method = "encode_multi" if hasattr(model, "encode_multi") else "encode_corpus"
    real_encode, real_doc, real_append = getattr(model, method), D._document, SegmentWriter.append
    real_plain = model.encode

    def encode_docs(texts, *args, **kwargs):
        log.append(("encode", len(texts)))
        return real_encode(texts, *args, **kwargs)

    def plain(texts, *args, **kwargs):
        log.append(("probe", texts[0]) if list(texts) == [PROBE_TEXT] else ("plain", len(texts)))
        return real_plain(texts, *args, **kwargs)

    def document(obj, where, images=None):
        if where:  # "" is the check made when the stream is opened; a place is given when a chunk is read
            log.append(("read", obj["id"]))
        return real_doc(obj, where, images)

    def append(self, docs, vectors):
        log.append(("write", len(docs)))
        return real_append(self, docs, vectors)

    monkeypatch.setattr(model, method, encode_docs)
    monkeypatch.setattr(model, "encode", plain)
    monkeypatch.setattr(D, "_document", document)
    monkeypatch.setattr(SegmentWriter, "append", append)


def test_a_streamed_add_equals_an_in_memory_add_and_reads_one_chunk_at_a_time(tmp_path, bert, monkeypatch):
    path = write(tmp_path / "new.jsonl", NEW)
    streamed = build_index(str(tmp_path / "a"), bert, BASE, show_progress=False)
    memory = build_index(str(tmp_path / "b"), bert, BASE, show_progress=False)
    stream = stream_corpus(path, chunk=3)
    assert stream.ids == [d["id"] for d in NEW] and len(stream) == 10
    log = []
    record(monkeypatch, bert, log)
    streamed.add(stream, bert, show_progress=False)
    monkeypatch.undo()
    memory.add(read_corpus(path), bert, show_progress=False)
    assert streamed.generation == memory.generation == "gen-000002" and streamed.count == 14
    assert_same_index(streamed, memory, bert)
    assert stored(streamed)[4] == ("d4", NEW[0]["text"], "T4", {"group": 0, "year": 2004})
    # the base segment is copied first (no reads, no encoding); then each chunk of 3 is read, encoded, written
    # before the next is read: never more than 3 documents' texts in hand
    steps = [s for s in log if s[0] not in ("probe", "plain")]
    ids = [("read", d["id"]) for d in NEW]
    expected = []
    for start in range(0, 10, 3):
        n = len(ids[start:start + 3])
        expected += ids[start:start + 3] + [("encode", n), ("write", n)]
    assert steps == expected
    assert max(n for kind, n in steps if kind == "encode") == 3


def test_an_id_already_in_the_index_is_refused_before_anything_is_encoded(tmp_path, bert, monkeypatch, capsys):
    store = build_index(str(tmp_path / "ix"), bert, BASE, show_progress=False)
    before = (store.generation, sorted(os.listdir(tmp_path / "ix")))
    path = write(tmp_path / "new.jsonl", NEW[:5] + [doc(2, "again ")] + NEW[5:])
    log = []
    record(monkeypatch, bert, log)
    with pytest.raises(UsageError, match=r"1 document id\(s\) already in the index \('d2'\)"):
        store.add(stream_corpus(path, chunk=3), bert, show_progress=False)
    assert [kind for kind, _ in log] == ["probe"]  # the model check only: no document read or encoded
    assert (store.generation, sorted(os.listdir(tmp_path / "ix"))) == before and store.count == 4
    # the command refuses before it even loads the model
    monkeypatch.setattr("bgekit.loading.load_embedder", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["index", "add", "--index-dir", str(tmp_path / "ix"), "--corpus", path, "--device", "cpu"]) == 2
    assert "already in the index ('d2')" in capsys.readouterr().err
    assert open_index(str(tmp_path / "ix")).generation == before[0]


def test_upsert_through_the_stream_replaces_old_rows(tmp_path, bert):
    changed = [doc(1, "revised "), doc(3, "revised ")] + NEW[:3]
    path = write(tmp_path / "up.jsonl", changed)
    streamed = build_index(str(tmp_path / "a"), bert, BASE, show_progress=False)
    memory = build_index(str(tmp_path / "b"), bert, BASE, show_progress=False)
    streamed.add(stream_corpus(path, chunk=2), bert, upsert=True, show_progress=False)
    memory.add(read_corpus(path), bert, upsert=True, show_progress=False)
    assert streamed.count == 7 and [d[0] for d in stored(streamed)] == ["d0", "d2", "d1", "d3", "d4", "d5", "d6"]
    assert streamed.documents([streamed.rows(["d1"])["d1"]]).popitem()[1][1] == changed[0]["text"]
    assert_same_index(streamed, memory, bert)


def test_a_bad_line_is_named_by_file_and_line_before_any_encoding(tmp_path, bert, monkeypatch, capsys):
    store = build_index(str(tmp_path / "ix"), bert, BASE, show_progress=False)
    lines = [json.dumps(d) for d in NEW]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:6] + ['{"id": "x", "text": 5}'] + lines[6:]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl:7: 'text' must be a string"):
        stream_corpus(str(bad), chunk=3)
    monkeypatch.setattr("bgekit.loading.load_embedder", lambda *a, **k: pytest.fail("the model was loaded"))
    assert main(["index", "add", "--index-dir", str(tmp_path / "ix"), "--corpus", str(bad), "--device", "cpu"]) == 3
    assert "bad.jsonl:7: 'text' must be a string" in capsys.readouterr().err
    assert open_index(str(tmp_path / "ix")).generation == store.generation == "gen-000001"


def test_a_file_changed_after_its_check_stops_the_add_and_leaves_the_index_as_it_was(tmp_path, bert):
    store = build_index(str(tmp_path / "ix"), bert, BASE, show_progress=False)
    path = write(tmp_path / "new.jsonl", NEW)
    stream = stream_corpus(path, chunk=3)
    write(tmp_path / "new.jsonl", NEW[:5] + [doc(1)] + NEW[6:])  # d1 (in the index) where d9 was checked
    with pytest.raises(InputError, match=r"new.jsonl: the file changed after it was checked \(line 6 has id 'd1' "
                                         r"where the check saw 'd9'\)"):
        store.add(stream, bert, show_progress=False)
    write(tmp_path / "new.jsonl", NEW[:7])
    with pytest.raises(InputError, match="it ends after 7 documents where the check counted 10"):
        store.add(stream, bert, show_progress=False)
    again = open_index(str(tmp_path / "ix"))
    assert again.generation == "gen-000001" and stored(again) == stored(store) and again.count == 4
    assert not [n for n in os.listdir(tmp_path / "ix") if "seg-" in n and n != store.segments[0].name]


def test_bge_m3_streamed_add_equals_in_memory_add(tmp_path, m3):
    path = write(tmp_path / "new.jsonl", NEW)
    streamed = build_index(str(tmp_path / "a"), m3, BASE, colbert=True, show_progress=False)
    memory = build_index(str(tmp_path / "b"), m3, BASE, colbert=True, show_progress=False)
    streamed.add(stream_corpus(path, chunk=4), m3, show_progress=False)
    memory.add(read_corpus(path), m3, show_progress=False)
    assert streamed.outputs == ("dense", "sparse", "colbert") and streamed.count == 14
    assert_same_index(streamed, memory, m3, modes=("dense", "sparse", "hybrid"))
    for r in range(14):
        np.testing.assert_allclose(streamed.colbert_of(r).astype(np.float32), memory.colbert_of(r).astype(np.float32),
                                   rtol=0, atol=1e-3)


def test_a_streamed_add_takes_precomputed_vectors_from_a_row_source(tmp_path, m3):
    from bgekit.distributed.shards import ShardWriter, read_shards
    from bgekit.index.vectors import encode

    path = write(tmp_path / "new.jsonl", NEW)
    new = read_corpus(path)
    enc = encode(m3, new.for_encoding(), "passage", ("dense", "sparse"))
    with ShardWriter(str(tmp_path / "emb"), ("dense", "sparse"), shard_rows=4) as w:
        w.add(new.ids, enc.dense, enc.sparse)
        w.commit()
    streamed = build_index(str(tmp_path / "a"), m3, BASE, show_progress=False)
    memory = build_index(str(tmp_path / "b"), m3, BASE, show_progress=False)
    streamed.add(stream_corpus(path, chunk=3), vectors=read_shards(str(tmp_path / "emb")).reader())
    memory.add(new, m3, show_progress=False)
    assert_same_index(streamed, memory, m3, modes=("dense", "sparse"))
    with pytest.raises(ValueError, match="a streamed corpus takes its precomputed vectors from a row source"):
        streamed.add(stream_corpus(path), vectors=enc)
    with pytest.raises(ValueError, match="stream_corpus\\(path, images=True\\) is for a Visualized-BGE index"):
        streamed.add(stream_corpus(path, images=True), m3)
    assert streamed.generation == "gen-000002"
