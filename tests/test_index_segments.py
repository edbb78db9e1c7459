"""An index that grows: adds write new segments, deletes write tombstones, `compact` merges them.

Searches over segments + tombstones equal searches over the same documents in one segment (compacted, or built
fresh), in every mode, with filters; older segments' files are never rewritten by an add or a delete; a change
or a compaction that fails or is killed at any step leaves the last complete state; version 1 folders open;
the merge policy; streaming builds."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from faults import crash_at_fsync, record_fsyncs
from golden import GOLDEN
from bgekit.cli import main
from bgekit.errors import InputError
from bgekit.index import changes
from bgekit.index.changes import MergePolicy, rewrite_range
from bgekit.index.documents import Documents, as_documents, read_corpus, stream_corpus
from bgekit.index.search import Searcher
from bgekit.index.store import Vectors, build_index, open_index
from bgekit.m3 import M3Embedder

pytestmark = pytest.mark.usefixtures("one_thread")
M3 = str(GOLDEN / "models" / "m3")
SCIFACT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "scifact", "corpus.jsonl")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_MERGES = MergePolicy(small_segment=0, merge_factor=0, max_deleted=1.0)  # every add a segment, every delete a tombstone


@pytest.fixture(scope="module")
def m3():
    return M3Embedder(M3, devices="cpu", passage_max_length=64)


@pytest.fixture(scope="module")
def data(m3):
    """48 SciFact documents (with a "group" field to filter on) and their BGE-M3 vectors."""
    objs = []
    with open(SCIFACT, encoding="utf-8") as f:
        for i, line in zip(range(48), f):
            obj = json.loads(line)
            objs.append({"id": obj["_id"], "title": obj["title"], "text": obj["text"][:300], "group": i % 3})
    docs = as_documents(objs)
    out = m3.encode_multi(docs.for_encoding(), role="passage", outputs=("dense", "sparse", "colbert"))
    return docs, Vectors(out.dense, out.sparse, out.colbert)


@pytest.fixture
def segmented(monkeypatch):
    monkeypatch.setattr(changes, "POLICY", NO_MERGES)


def part(data, idx):
    docs, vec = data
    idx = list(idx)
    return (Documents([docs.ids[i] for i in idx], [docs.texts[i] for i in idx], [docs.titles[i] for i in idx],
                      [docs.metadata[i] for i in idx]),
            Vectors(vec.dense[idx], [vec.sparse[i] for i in idx], [vec.colbert[i] for i in idx]))


def grow(root, m3, data):
    """Build 20, add 12, delete 3, add 16, upsert 1: four segments with tombstones in three of them."""
    first, more, last = part(data, range(20)), part(data, range(20, 32)), part(data, range(32, 48))
    store = build_index(root, m3, first[0], vectors=first[1], colbert=True, show_progress=False)
    store.add(more[0], vectors=more[1])
    docs = data[0]
    store.delete([docs.ids[3], docs.ids[5], docs.ids[21]])
    store.add(last[0], vectors=last[1])
    new_docs, new_vec = part(data, [40])  # doc 7 replaced by the text and vectors of doc 40
    new_docs.ids[0] = docs.ids[7]
    return store.add(new_docs, vectors=new_vec, upsert=True)


def snapshot(store):
    docs = store.documents(range(store.count))
    return {"ids": [docs[r][0] for r in range(store.count)], "text": [docs[r][1] for r in range(store.count)],
            "dense": np.array(store.dense_vectors), "sparse": store.sparse.matrix.toarray(),
            "colbert": [np.array(store.colbert[a:b]) for a, b in zip(store.colbert_offsets[:-1], store.colbert_offsets[1:])]}


def assert_same(a, b):
    assert a["ids"] == b["ids"] and a["text"] == b["text"]
    np.testing.assert_array_equal(a["dense"], b["dense"])
    np.testing.assert_array_equal(a["sparse"][:, :b["sparse"].shape[1]], b["sparse"][:, :a["sparse"].shape[1]])
    assert len(a["colbert"]) == len(b["colbert"]) and all(np.array_equal(x, y) for x, y in zip(a["colbert"], b["colbert"]))


SEARCHES = [{"mode": "dense"}, {"mode": "sparse"}, {"mode": "hybrid"}, {"mode": "hybrid", "fusion": "rrf"},
            {"mode": "hybrid", "colbert": True}, {"mode": "dense", "filter": {"group": 1}},
            {"mode": "hybrid", "filter": {"group": [0, 2]}}, {"mode": "sparse", "filter": {"group": 2}, "top_k": 3}]
QUERIES = ["vitamin D deficiency", "stem cells and aging", "protein folding in bacteria", "cancer risk"]


def hits(store, m3, options):
    options = {"top_k": 8, **options}
    return [[(h.id, round(h.score, 5), h.text) for h in r.hits] for r in Searcher(store, m3).search(QUERIES, **options)]


def test_segments_and_tombstones_search_like_one_segment(tmp_path, m3, data, segmented):
    store = grow(str(tmp_path / "grown"), m3, data)
    assert len(store.segments) == 4 and store.deleted == 4 and store.count == 45
    assert not isinstance(store.dense_vectors, np.ndarray)  # a view over the segments
    order = [data[0].ids.index(i) for i in snapshot(store)["ids"]]
    order[snapshot(store)["ids"].index(data[0].ids[7])] = 40  # the upserted row holds doc 40's text and vectors
    fresh_docs, fresh_vec = part(data, order)
    fresh_docs.ids = snapshot(store)["ids"]
    fresh = build_index(str(tmp_path / "fresh"), m3, fresh_docs, vectors=fresh_vec, colbert=True, show_progress=False)
    shutil.copytree(tmp_path / "grown", tmp_path / "compacted")
    compacted = open_index(str(tmp_path / "compacted")).compact()
    assert len(compacted.segments) == 1 and compacted.deleted == 0 and compacted.count == 45
    generation, files = compacted.generation, sorted(os.listdir(tmp_path / "compacted"))
    assert compacted.compacted and compacted.compact().generation == generation  # again: nothing to write
    assert sorted(os.listdir(tmp_path / "compacted")) == files
    for other in (fresh, compacted):
        assert_same(snapshot(store), snapshot(other))
    for options in SEARCHES:
        expected = hits(fresh, m3, options)
        assert hits(store, m3, options) == expected, options
        assert hits(compacted, m3, options) == expected, options
        assert all(expected), options
    assert store.rows([data[0].ids[3], data[0].ids[7], data[0].ids[47]]) == {data[0].ids[7]: 44, data[0].ids[47]: 43}
    assert store.filter_rows({"group": 1}).tolist() == fresh.filter_rows({"group": 1}).tolist()
    for seg in store.segments:  # the sparse rows and their postings are read from disk, not copied into memory
        assert _mapped(seg.sparse.matrix.indices) and _mapped(seg.sparse.inverted.data) and _mapped(seg.dense)


def _mapped(array) -> bool:
    while array is not None and not isinstance(array, np.memmap):
        array = getattr(array, "base", None)
    return array is not None


def test_add_and_delete_never_rewrite_older_segments(tmp_path, m3, data, segmented):
    root = tmp_path / "ix"
    store = build_index(str(root), m3, part(data, range(30))[0], vectors=part(data, range(30))[1], show_progress=False)
    first = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in (root / "seg-000001").iterdir()}
    store.add(part(data, range(30, 40))[0], vectors=part(data, range(30, 40))[1])
    store.delete([data[0].ids[2], data[0].ids[35]])
    assert [s.name for s in store.segments] == ["seg-000001", "seg-000002"]
    assert first == {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in (root / "seg-000001").iterdir()}
    assert np.load(os.path.join(store.folder, "seg-000001.deleted.npy")).tolist() == [2]
    assert np.load(os.path.join(store.folder, "seg-000002.deleted.npy")).tolist() == [5]
    manifest = json.load(open(os.path.join(store.folder, "manifest.json")))
    assert manifest["version"] == 2 and manifest["segments"] == [{"name": "seg-000001", "rows": 30, "deleted": 1},
                                                                  {"name": "seg-000002", "rows": 10, "deleted": 1}]


def test_merge_policy():
    def ranges(sizes, deleted=(), n_new=0, compact=False, legacy=False):
        parts = [(SimpleNamespace(rows=n, legacy=legacy), None) for n in sizes]
        dels = [np.arange(d) for d in deleted] or [np.zeros(0)] * len(sizes)
        return rewrite_range(parts, dels, n_new, compact, MergePolicy())

    assert ranges([1_000_000], n_new=1000) == (1, 1)          # a big index: only the new documents are written
    assert ranges([100_000], n_new=1000) == (1, 1)
    assert ranges([100_000, 2_000], n_new=1000) == (1, 2)     # small trailing segments merge with them
    assert ranges([100_000, 50_000], n_new=10_000) == (0, 2)  # sizes fall geometrically: merging cascades
    assert ranges([100_000, 20_000], n_new=1_000) == (2, 2)
    assert ranges([12], n_new=4) == (0, 1)                     # a tiny index stays one segment
    assert ranges([100_000, 20_000], deleted=[40_000, 0]) == (0, 1)  # too many deletions: rewritten
    assert ranges([100_000, 20_000], deleted=[1_000, 0]) == (2, 2)   # a few: tombstones only
    assert ranges([100_000, 5_000], deleted=[0, 10]) == (1, 2)       # a small segment is rewritten
    assert ranges([100_000, 20_000], compact=True) == (0, 2)
    assert ranges([100_000], legacy=True, n_new=5) == (0, 1)         # a version 1 generation is rewritten once


def test_every_step_of_a_segment_write_or_compaction_leaves_the_last_complete_state(tmp_path, m3, data, segmented,
                                                                                    monkeypatch):
    base = tmp_path / "base"
    grow(str(base), m3, data).delete([data[0].ids[30]])
    before = snapshot(open_index(str(base)))
    new_docs, new_vec = part(data, [3, 5])  # deleted earlier: back as a new segment
    ops = {"add": lambda s: s.add(new_docs, vectors=new_vec), "compact": lambda s: s.compact()}
    for name, op in ops.items():
        shutil.copytree(base, tmp_path / "probe")
        calls = record_fsyncs(monkeypatch, lambda: op(open_index(str(tmp_path / "probe"))))
        after = snapshot(open_index(str(tmp_path / "probe")))
        assert sum(c.endswith(".tmp") for c in calls) == 2 and len(calls) >= 12, calls  # segment, then generation
        shutil.rmtree(tmp_path / "probe")
        for stop in range(len(calls)):
            root = tmp_path / f"{name}-{stop}"
            shutil.copytree(base, root)
            with crash_at_fsync(monkeypatch, stop):
                op(open_index(str(root)))
            assert_same(snapshot(open_index(str(root))), after if stop == len(calls) - 1 else before)
            again = op(open_index(str(root))) if stop < len(calls) - 1 else open_index(str(root))
            assert_same(snapshot(again), after)  # the next writer cleans up and succeeds
            assert not [n for n in os.listdir(root) if n.endswith(".tmp")]
            shutil.rmtree(root)


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from bgekit.index import changes
    from bgekit.index import generation as G
    from bgekit.index.store import Vectors, open_index
    from bgekit.types import SparseVector
    changes.POLICY = changes.MergePolicy(0, 0, 1.0)
    root, op, stop, calls = sys.argv[1], sys.argv[2], int(sys.argv[3]), [0]
    real = G._fsync_path
    def fsync(path):
        if calls[0] == stop:
            os.kill(os.getpid(), signal.SIGKILL)
        calls[0] += 1
        real(path)
    G._fsync_path = fsync
    store = open_index(root)
    if op == "compact":
        store.compact()
    else:
        dim, cdim = store.model_info.dim, store.model_info.colbert_dim
        sparse = [SparseVector(np.array([1, 5]), np.array([0.5, 0.25], np.float32))] * 2
        store.add([{"id": "k1", "text": "killed"}, {"id": "k2", "text": "killed"}],
                  vectors=Vectors(np.ones((2, dim), np.float32), sparse, [np.ones((3, cdim), np.float32)] * 2))
    print("finished")
""")


@pytest.mark.parametrize("op,stop", [("add", 4), ("add", 10), ("compact", 9)])  # in the segment; after its rename
def test_sigkill_during_a_segment_write_or_compaction(tmp_path, m3, data, segmented, op, stop):
    root = str(tmp_path / "ix")
    before = snapshot(grow(root, m3, data))
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, root, op, str(stop)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert_same(snapshot(open_index(root)), before)
    store = open_index(root).compact()
    assert store.count == 45 and [s.name for s in store.segments] == ["seg-000006"]
    kept = ["seg-000001", "seg-000002", "seg-000004", "seg-000005", "seg-000006"]  # those of gen-000005 and gen-000006
    assert sorted(n for n in os.listdir(root) if n.startswith(("seg-", ".seg", ".gen"))) == kept


def test_a_version_1_index_opens_and_its_first_change_rewrites_it(tmp_path, m3, data):
    v2 = build_index(str(tmp_path / "v2"), m3, part(data, range(10))[0], vectors=part(data, range(10))[1],
                     colbert=True, show_progress=False)
    old = tmp_path / "v1" / "gen-000001"  # the version 1 layout: one complete copy per generation
    shutil.copytree(v2.segments[0].folder, old)
    seg = json.loads((old / "segment.json").read_text())
    (old / "segment.json").unlink()
    for name in ("sparse_inv_values.npy", "sparse_inv_indices.npy", "sparse_inv_indptr.npy"):  # not in version 1
        (old / name).unlink()
        del seg["files"][name]
    for name in ("sparse_indices.npy", "sparse_indptr.npy"):  # version 1 wrote int64
        np.save(old / name, np.load(old / name).astype(np.int64))
        seg["files"][name] = (old / name).stat().st_size
    manifest = {k: v for k, v in v2.manifest.items() if k != "segments"}
    manifest.update(version=1, generation=1, count=10, files=seg["files"], sparse_vocab=seg["sparse_vocab"])
    (old / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "v1" / "CURRENT").write_text("gen-000001\n")
    v1 = open_index(str(tmp_path / "v1"))
    assert v1.manifest["version"] == 1 and v1.segments[0].legacy
    assert not _mapped(v1.segments[0].sparse.inverted.data)  # no postings file in version 1: built in memory on open
    assert_same(snapshot(v1), snapshot(v2))
    assert hits(v1, m3, {"mode": "hybrid", "colbert": True}) == hits(v2, m3, {"mode": "hybrid", "colbert": True})
    v1.check()
    v1.add(part(data, [10])[0], vectors=part(data, [10])[1]).delete([data[0].ids[0]])
    v1.add(part(data, [11])[0], vectors=part(data, [11])[1])
    assert v1.manifest["version"] == 2 and v1.count == 11 and not (tmp_path / "v1" / "gen-000001").exists()


def test_approximate_segments_skip_deleted_rows(tmp_path, m3, segmented):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((260, m3.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docs = [{"id": f"v{i}", "text": "x"} for i in range(260)]
    for factory in ("HNSW8", "IVF4,Flat"):
        store = build_index(str(tmp_path / factory), m3, docs[:200], vectors=Vectors(vectors[:200]), outputs=("dense",),
                            factory=factory, search_params={"efSearch": 64} if "HNSW" in factory else None,
                            show_progress=False)
        store.add(docs[200:], vectors=Vectors(vectors[200:])).delete(["v5", "v230"])
        assert len(store.segments) == 2 and store.deleted == 2
        if factory.startswith("IVF"):  # the new segment reuses the first one's training
            import faiss

            a, b = (faiss.extract_index_ivf(s.index).quantizer for s in store.segments)
            np.testing.assert_array_equal(a.reconstruct_n(0, 4), b.reconstruct_n(0, 4))
            store = open_index(store.path, search_params={"nprobe": 4})
        found = store.dense.search(vectors[[5, 230, 7, 231]], 3)[1]
        ids = [[store.documents([r])[r][0] for r in row] for row in found]
        assert all("v5" not in row and "v230" not in row for row in ids)
        assert ids[2][0] == "v7" and ids[3][0] == "v231"
        with pytest.raises(AttributeError, match="compact"):
            _ = store.dense.index
        assert store.compact().dense.index.ntotal == 258


def test_exact_search_widens_past_many_tombstones(tmp_path, m3, segmented):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((120, m3.dim)).astype(np.float32)
    docs = [{"id": f"v{i}", "text": "x"} for i in range(120)]
    store = build_index(str(tmp_path / "ix"), m3, docs, vectors=Vectors(vectors), outputs=("dense",), show_progress=False)
    query = vectors[:2] + 0.1
    best = np.argsort(-(query @ vectors.T), axis=1, kind="stable")
    gone = sorted(set(best[0, :70].tolist()) | set(best[1, :40].tolist()))  # more than 2k + 8 of the best rows
    store.delete([f"v{i}" for i in gone])
    live = [i for i in range(120) if i not in gone]
    scores, rows = store.dense.search(query, 25)
    expected = [[f"v{i}" for i in order if i not in gone][:25] for order in best]
    assert [[store.documents([r])[r][0] for r in row] for row in rows] == expected
    np.testing.assert_allclose(scores, np.sort(query @ vectors[live].T, axis=1)[:, ::-1][:, :25], rtol=1e-5)


def test_streamed_build_equals_in_memory_and_checks_the_file_first(tmp_path, m3, data, monkeypatch):
    path = tmp_path / "corpus.jsonl"
    docs = data[0]
    path.write_text("".join(json.dumps({"id": i, "text": t, "group": m["group"]}) + "\n"
                            for i, t, m in zip(docs.ids[:30], docs.texts[:30], docs.metadata[:30])))
    stream = stream_corpus(str(path), chunk=7)
    assert len(stream) == 30 and [len(c) for c in stream] == [7, 7, 7, 7, 2]
    streamed = build_index(str(tmp_path / "a"), m3, stream, show_progress=False)
    memory = build_index(str(tmp_path / "b"), m3, read_corpus(str(path)), show_progress=False)
    assert snapshot_ids(streamed) == snapshot_ids(memory)
    np.testing.assert_allclose(np.asarray(streamed.dense_vectors), np.asarray(memory.dense_vectors), atol=1e-6)
    np.testing.assert_allclose(streamed.sparse.matrix.toarray(), memory.sparse.matrix.toarray(), atol=1e-6)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:25] + ['{"id": "x", "text": 5}'] + lines[25:]) + "\n")
    with pytest.raises(InputError, match=r"corpus.jsonl:26: 'text' must be a string"):
        stream_corpus(str(path))
    path.write_text("\n".join(lines + [lines[3]]) + "\n")
    with pytest.raises(InputError, match=rf"corpus.jsonl:31: id '{docs.ids[3]}' repeats line 4"):
        stream_corpus(str(path))
    with pytest.raises(ValueError, match="a streamed corpus takes its precomputed vectors from a row source"):
        build_index(str(tmp_path / "c"), m3, stream, vectors=data[1], show_progress=False)


def snapshot_ids(store):
    docs = store.documents(range(store.count))
    return [(docs[r][0], docs[r][1], docs[r][3]) for r in range(store.count)]


def test_cli_compact_and_info(tmp_path, m3, data, segmented, capsys):
    root = str(tmp_path / "ix")
    grow(root, m3, data)
    assert main(["index", "info", "--index-dir", root]) == 0
    assert "segments  4 (4 deleted rows)" in capsys.readouterr().out
    assert main(["index", "compact", "--index-dir", root]) == 0
    assert "4 segment(s) with 4 deleted rows -> 1 segment of 45 documents" in capsys.readouterr().err
    assert main(["index", "info", "--index-dir", root]) == 0
    assert "segments  1 (0 deleted rows)" in capsys.readouterr().out
    assert main(["index", "compact", "--index-dir", str(tmp_path / "none")]) == 3
    assert "not a bgekit index" in capsys.readouterr().err
