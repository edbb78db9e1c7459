"""Embedding shards (bgekit.distributed.shards): the format a Ray encode writes. No Ray needed here."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bgekit.distributed.shards import ShardWriter, read_shards
from bgekit.errors import InputError, OutputError
from bgekit.types import SparseVector


def _rows(n: int, dim: int = 4):
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((n, dim)).astype(np.float32)
    sparse = [SparseVector(np.array(sorted(rng.choice(50, size=i % 4, replace=False)), np.int64),
                           rng.random(i % 4).astype(np.float32)) for i in range(n)]
    return [f"id-{i}" for i in range(n)], dense, sparse


def test_round_trip_in_order_across_shards(tmp_path):
    ids, dense, sparse = _rows(11)
    out = str(tmp_path / "emb")
    with ShardWriter(out, ("dense", "sparse"), shard_rows=4) as w:
        for a, b in ((0, 3), (3, 9), (9, 11)):  # batches that do not line up with the shards
            w.add(ids[a:b], dense[a:b], sparse[a:b])
        w.commit({"model": "toy"})
    shards = read_shards(out)
    assert [s["count"] for s in shards.manifest["shards"]] == [4, 4, 3]
    assert [s["first_row"] for s in shards.manifest["shards"]] == [0, 4, 8]
    assert shards.ids() == ids and shards.manifest["model"] == "toy" and shards.dim == 4
    assert np.array_equal(shards.dense(), dense)
    back = shards.sparse()
    assert all(np.array_equal(a.indices, b.indices) and np.array_equal(a.values, b.values) for a, b in zip(back, sparse))
    assert sorted(os.listdir(tmp_path)) == ["emb"]


def test_a_row_reader_takes_chunks_that_cross_shards_and_checks_ids(tmp_path):
    from bgekit.distributed.shards import RowReader

    ids, dense, sparse = _rows(10)
    out = str(tmp_path / "emb")
    with ShardWriter(out, ("dense", "sparse"), shard_rows=4) as w:
        w.add(ids, dense, sparse)
        w.commit()
    reader = read_shards(out).reader()
    assert isinstance(reader, RowReader)
    d, s = reader.take(ids[:3])
    assert np.array_equal(d, dense[:3]) and [v.indices.tolist() for v in s] == [v.indices.tolist() for v in sparse[:3]]
    d, s = reader.take(ids[3:9])  # rows 3..8 span all three shards
    assert np.array_equal(d, dense[3:9]) and len(s) == 6
    with pytest.raises(InputError, match="row 9: the shards hold id 'id-9' where 'other' was expected"):
        reader.take(["other"])
    with pytest.raises(InputError, match="the shards end at row 10; 1 more rows were expected"):
        read_shards(out).reader().take(ids + ["id-10"])


def test_an_unfinished_writer_leaves_nothing(tmp_path):
    ids, dense, _ = _rows(10)
    out = tmp_path / "emb"
    with pytest.raises(RuntimeError, match="stopped"):
        with ShardWriter(str(out), shard_rows=3) as w:
            w.add(ids, dense)  # three shards are on disk, in the temporary folder
            raise RuntimeError("stopped before commit")
    assert os.listdir(tmp_path) == []


def test_a_new_folder_replaces_an_earlier_one_whole(tmp_path):
    out = str(tmp_path / "emb")
    for n in (5, 2):
        ids, dense, _ = _rows(n)
        with ShardWriter(out, shard_rows=2) as w:
            w.add(ids, dense)
            w.commit()
    shards = read_shards(out)
    assert shards.count == 2 and sorted(os.listdir(out)) == ["manifest.json", "shard-00000.dense.npy",
                                                             "shard-00000.ids.json"]
    assert sorted(os.listdir(tmp_path)) == ["emb"]


def test_targets_that_are_not_shards_are_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(OutputError, match="is not empty and holds no shards"):
        ShardWriter(str(tmp_path / "notes"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        ShardWriter(str(tmp_path / "file"))
    with pytest.raises(ValueError, match="must include 'dense'"):
        ShardWriter(str(tmp_path / "x"), ("sparse",))


def test_wrong_rows_are_refused(tmp_path):
    with ShardWriter(str(tmp_path / "emb"), ("dense", "sparse")) as w:
        with pytest.raises(ValueError, match="sparse vectors must be given"):
            w.add(["a"], np.zeros((1, 3)))
        with pytest.raises(ValueError, match=r"dense must be \(2, D\)"):
            w.add(["a", "b"], np.zeros((3, 3)), [SparseVector.from_dict({})] * 2)


def test_damage_is_named(tmp_path):
    ids, dense, _ = _rows(6)
    out = tmp_path / "emb"
    with ShardWriter(str(out), shard_rows=3) as w:
        w.add(ids, dense)
        w.commit()
    with open(out / "shard-00001.dense.npy", "ab") as f:
        f.write(b"\0")
    with pytest.raises(InputError, match=r"shard-00001.dense.npy: \d+ bytes where the manifest records"):
        read_shards(str(out))
    os.remove(out / "manifest.json")
    with pytest.raises(InputError, match="manifest.json is missing"):
        read_shards(str(out))
    (out / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(InputError, match="not the manifest of bgekit shards"):
        read_shards(str(out))


def test_import_stays_light():
    code = ("import sys, bgekit, bgekit.distributed, bgekit.distributed.cli, bgekit.cli; bgekit.cli.build_parser(); "
            "heavy = [m for m in ('ray', 'pyarrow') if m in sys.modules]; print(heavy); assert not heavy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture(scope="module")
def m3():
    from golden import GOLDEN

    from bgekit import M3Embedder

    return M3Embedder(str(GOLDEN / "models" / "m3"), devices="cpu")


def test_a_streamed_build_takes_its_vectors_from_shards_a_chunk_at_a_time(tmp_path, m3):
    """What `bgekit index build --ray` does: the corpus streamed in chunks, each chunk's vectors read from the shards
    (which are cut elsewhere); the index equals a local build; shards with other ids build nothing."""
    from bgekit.index.documents import stream_corpus
    from bgekit.index.store import build_index
    from bgekit.index.vectors import encode

    docs = [{"id": f"d{i}", "text": f"document {i} about {'pandas' if i % 3 else 'bamboo'} and more words" * (1 + i % 4)}
            for i in range(11)]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    enc = encode(m3, [d["text"] for d in docs], "passage", ("dense", "sparse"))
    with ShardWriter(str(tmp_path / "emb"), ("dense", "sparse"), shard_rows=4) as w:
        w.add([d["id"] for d in docs], enc.dense, enc.sparse)
        w.commit()
    shards = read_shards(str(tmp_path / "emb"))
    streamed = build_index(str(tmp_path / "a"), m3, stream_corpus(str(corpus), chunk=3), vectors=shards.reader(),
                           show_progress=False)
    local = build_index(str(tmp_path / "b"), m3, docs, show_progress=False)
    assert streamed.count == local.count == 11
    np.testing.assert_allclose(np.asarray(streamed.dense_vectors[:11]), np.asarray(local.dense_vectors[:11]), atol=1e-6)
    np.testing.assert_allclose(streamed.sparse.matrix.toarray(), local.sparse.matrix.toarray(), atol=1e-6)
    rows = streamed.documents(range(11))
    assert [rows[r][0] for r in range(11)] == [d["id"] for d in docs]
    (tmp_path / "c2.jsonl").write_text("".join(json.dumps({**d, "id": d["id"] + "x"} if i == 7 else d) + "\n"
                                               for i, d in enumerate(docs)), encoding="utf-8")
    with pytest.raises(InputError, match="row 7: the shards hold id 'd7' where 'd7x' was expected"):
        build_index(str(tmp_path / "c"), m3, stream_corpus(str(tmp_path / "c2.jsonl"), chunk=3),
                    vectors=shards.reader(), show_progress=False)
    assert not (tmp_path / "c").exists() or not any(n.startswith("gen-") for n in os.listdir(tmp_path / "c"))
    with pytest.raises(ValueError, match="row source of vectors"):
        build_index(str(tmp_path / "d"), m3, docs, vectors=shards.reader(), show_progress=False)
