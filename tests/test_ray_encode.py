"""Corpus encoding on Ray Data (bgekit.distributed): equal to a single-process encode, failures reported, the CLI.

One local Ray runtime (``ray.init(num_cpus=2)``) serves the whole module: starting Ray on 2 cores takes seconds,
and every encode job starts its own actor pool on it. Reference outputs come from the same tiny checkpoints
loaded in this process (module-scoped).
"""
import json
import os
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="could not import ray (pip install 'bgekit[ray]')")

from bgekit.cli import main  # noqa: E402
from bgekit.distributed import EncodeJobError, encode_to_shards, read_shards  # noqa: E402
from bgekit.distributed.actor import ModelLoader  # noqa: E402
from golden import GOLDEN  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

BERT = str(GOLDEN / "models" / "bert-embedder")
M3 = str(GOLDEN / "models" / "m3")
TOL = 1e-6


def _sentences() -> list[str]:
    with open(GOLDEN / "manifest.json", encoding="utf-8") as f:
        case = next(c for c in json.load(f)["cases"] if c["id"] == "m3/encode-all")
    return list(case["inputs"]["sentences"])  # empty, short, Chinese, emoji, accents, a text beyond 512 tokens


@pytest.fixture(scope="module")
def runtime():
    if not GOLDEN.is_dir():
        pytest.skip("golden fixtures not found (../shared/golden)")
    # the actors inherit this process's environment (offline hub) and Ray gives each one CPU thread
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # not a `ray start` one
    # the loaders below are defined in this test module, which Ray's workers cannot import: pickle them by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def texts() -> list[str]:
    base = _sentences()
    return [f"{s} {k}".strip() if k else s for k in range(3) for s in base]  # 36 rows of mixed lengths


@pytest.fixture(scope="module")
def bert():
    from bgekit.loading import load_embedder

    return load_embedder(BERT, devices="cpu")


def _jsonl(path, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(row if isinstance(row, str) else json.dumps(row, ensure_ascii=False))
            f.write("\n")
    return str(path)


def test_cli_encode_m3_parquet_dense_and_sparse(runtime, tmp_path, texts):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bgekit.loading import load_embedder

    pq.write_table(pa.table({"id": list(range(100, 100 + len(texts))), "body": texts}), tmp_path / "c.parquet")
    out = tmp_path / "m3-emb"
    code = main(["encode", str(tmp_path / "c.parquet"), "-o", str(out), "--ray", "--sparse", "--model", M3,
                 "--field", "body", "--kind", "query", "--ray-batch-size", "7", "--ray-concurrency", "1"])
    assert code == 0
    shards = read_shards(str(out))
    m3 = load_embedder(M3, devices="cpu")
    ref = m3.encode_multi(texts, role="query", outputs=("dense", "sparse"), show_progress=False)
    assert shards.ids() == [str(i) for i in range(100, 100 + len(texts))]
    dense_diff = float(np.abs(shards.dense() - ref.dense).max())
    got = shards.sparse()
    assert [g.indices.tolist() for g in got] == [r.indices.tolist() for r in ref.sparse]
    sparse_diff = max(float(np.abs(g.values - r.values).max()) for g, r in zip(got, ref.sparse) if len(r))
    print(f"M3 max abs diff vs single process: dense {dense_diff:.3g}, sparse {sparse_diff:.3g}")
    assert dense_diff <= TOL and sparse_diff <= TOL
    # What is left is batch composition (padding), as between two batch sizes in one process: encoded in the same
    # 7-row batches (one parquet block), the single process gives Ray's values bit for bit.
    chunks = [m3.encode_multi(texts[i:i + 7], role="query", outputs=("dense", "sparse"), show_progress=False)
              for i in range(0, len(texts), 7)]
    assert np.array_equal(shards.dense(), np.concatenate([c.dense for c in chunks]))
    same = [v for c in chunks for v in c.sparse]
    assert all(np.array_equal(g.indices, r.indices) and np.array_equal(g.values, r.values) for g, r in zip(got, same))


def test_cli_index_build_ray_equals_local_build(runtime, tmp_path, texts, bert):
    from bgekit.index.store import open_index

    docs = [{"id": f"d{i}", "text": t, **({"title": "Panda"} if i % 4 == 0 else {})} for i, t in enumerate(texts)]
    corpus = _jsonl(tmp_path / "c.jsonl", docs)
    index_dir = tmp_path / "index"
    assert main(["index", "build", "--corpus", corpus, "--index-dir", str(index_dir), "--model", BERT, "--ray",
                 "--ray-batch-size", "6", "--ray-concurrency", "1"]) == 0
    store = open_index(str(index_dir))
    rows = store.rows([d["id"] for d in docs])
    order = [rows[d["id"]] for d in docs]
    got = np.asarray(store.dense_vectors[0:store.count], dtype=np.float32)[order]
    expected = bert.encode_corpus([f"Panda {t}".strip() if i % 4 == 0 else t for i, t in enumerate(texts)],
                                  show_progress=False)
    assert store.count == len(docs) and float(np.abs(got - expected).max()) <= TOL
    assert [n for n in os.listdir(tmp_path) if "ray-shards" in n] == []  # the temporary shards are removed


class FaultyModel:
    """A real embedder that raises on a text containing BOOM and kills its process on CRASH (once, or ``always``)."""

    def __init__(self, marker: str | None = None, always: bool = False):
        self.marker, self.always = marker, always

    def __call__(self, device: str):
        model = ModelLoader(BERT)(device)
        encode, marker, always = model.encode_corpus, self.marker, self.always

        def faulty(texts, **kwargs):
            if marker and any("CRASH" in t for t in texts) and (always or not os.path.exists(marker)):
                open(marker, "w").close()
                os._exit(1)  # the actor process dies in the middle of a batch
            if any("BOOM" in t for t in texts):
                raise RuntimeError("boom in the model")
            return encode(texts, **kwargs)

        model.encode_corpus = faulty
        return model


def test_failing_rows_are_reported_with_ids_and_nothing_is_written(runtime, tmp_path):
    rows = [{"id": f"d{i}", "text": f"text {i}"} for i in range(12)]
    rows[3] = '{"id": "d3", "text": '           # not JSON
    rows[5] = {"id": "d5", "text": None}       # no text
    rows[9] = {"id": "d9", "text": "a BOOM"}   # the model raises on it
    corpus = _jsonl(tmp_path / "c.jsonl", rows)
    with open(corpus, "ab") as f:
        f.write(b'{"id": "d12", "text": "caf\xe9"}\n')  # Latin-1, not UTF-8
    out = tmp_path / "emb"
    with pytest.raises(EncodeJobError, match="4 of 13 rows failed; nothing was written") as info:
        encode_to_shards(corpus, str(out), FaultyModel(), concurrency=1, batch_size=4, show_progress=False)
    failures = info.value.failures
    assert [(r, i) for r, i, _ in failures] == [(3, None), (5, "d5"), (9, "d9"), (12, "d12")]
    assert failures[0][2].startswith("unreadable row: not valid JSON")
    assert failures[1][2] == "unreadable row: expected a string field 'text', got NoneType"
    assert failures[2][2] == "RuntimeError: boom in the model"  # only the bad row: its batch was retried row by row
    assert failures[3][2] == "unreadable row: not valid UTF-8 (byte 0xe9 at column 27)"
    assert info.value.kind == "unexpected"
    assert os.listdir(tmp_path) == ["c.jsonl"]  # no output, no temporary folder


def test_two_actors_one_killed_give_the_single_process_vectors_in_order(runtime, tmp_path, texts, bert):
    rows = list(texts)
    rows[7] = "CRASH " + rows[7]  # the actor encoding this row dies once (os._exit); Ray restarts it, retries the batch
    corpus = _jsonl(tmp_path / "c.jsonl", [{"id": f"doc-{i}", "text": t} for i, t in enumerate(rows)])
    marker = tmp_path / "crashed"
    shards = encode_to_shards(corpus, str(tmp_path / "emb"), FaultyModel(str(marker)), kind="passage",
                              concurrency=2, cpus_per_actor=0.5, batch_size=5, shard_rows=8,
                              show_progress=False)  # two actors beside the read task on 2 CPUs
    assert marker.exists()  # the actor did die
    expected = np.asarray(bert.encode_corpus(rows, show_progress=False), dtype=np.float32)
    again = read_shards(str(tmp_path / "emb"))
    assert again.ids() == [f"doc-{i}" for i in range(len(rows))]
    assert again.count == len(rows) and len(again.manifest["shards"]) == 5  # 36 rows, 8 per shard
    diff = float(np.abs(again.dense() - expected).max())
    print(f"dense max abs diff vs single process: {diff:.3g}")
    assert again.dense().dtype == np.float32 and diff <= TOL
    assert shards.manifest["kind"] == "passage" and shards.manifest["count"] == len(rows)
    assert sorted(os.listdir(tmp_path)) == ["c.jsonl", "crashed", "emb"]  # no temporary folder left behind


def test_an_actor_that_keeps_dying_stops_the_job_after_the_retries(runtime, tmp_path):
    corpus = _jsonl(tmp_path / "c.jsonl", [{"id": f"d{i}", "text": "CRASH" if i == 9 else "x"} for i in range(12)])
    marker = tmp_path / "crashed"  # with always=True the actor dies on every attempt at the batch holding row 9
    with pytest.raises(EncodeJobError, match=r"the Ray job failed after \d+ rows.*ActorDiedError.*nothing was written"):
        encode_to_shards(corpus, str(tmp_path / "emb"), FaultyModel(str(marker), always=True), concurrency=1,
                         batch_size=4, retries=0, show_progress=False)
    assert sorted(os.listdir(tmp_path)) == ["c.jsonl", "crashed"]  # it did crash; no output, no temporary folder


@pytest.mark.parametrize("argv, message", [
    (["--ray-address", "auto"], "--ray-address cannot apply without --ray"),
    (["--ray", "--device", "cpu"], "--device cannot apply with --ray"),
    (["--ray", "-o", "out.npy"], "with --ray the output is a folder of shards"),
    (["--ray", "--visual-weights", "w.pth"], "--visual-weights cannot apply with --ray"),
])
def test_cli_refuses_options_that_cannot_apply(tmp_path, capsys, argv, message):
    corpus = _jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "x"}])
    args = ["encode", corpus, "-o", str(tmp_path / "out"), "--model", BERT] + argv
    if "-o" in argv:
        args = ["encode", corpus, "--model", BERT] + argv
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_sparse_for_a_dense_model_before_starting_ray(tmp_path, capsys):
    corpus = _jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "x"}])
    assert main(["encode", corpus, "-o", str(tmp_path / "out"), "--ray", "--sparse", "--model", BERT]) == 4
    assert "sparse vectors need a BGE-M3 model" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["c.jsonl"]


def test_cli_names_the_extra_when_ray_is_missing(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    corpus = _jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "x"}])
    assert main(["encode", corpus, "-o", str(tmp_path / "out"), "--ray", "--model", BERT]) == 6
    assert "this needs the 'ray' package: pip install 'bgekit[ray]'" in capsys.readouterr().err


def test_cli_refuses_a_text_file_and_colbert(tmp_path, capsys):
    txt = tmp_path / "c.txt"
    txt.write_text("one\ntwo\n")
    assert main(["encode", str(txt), "-o", str(tmp_path / "out"), "--ray", "--model", BERT]) == 2
    assert "a Ray encode reads .jsonl or .parquet" in capsys.readouterr().err
    corpus = _jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "x"}])
    assert main(["index", "build", "--corpus", corpus, "--index-dir", str(tmp_path / "i"), "--model", M3, "--ray",
                 "--colbert"]) == 2
    assert "--colbert cannot apply with --ray" in capsys.readouterr().err


def test_only_rays_notice_of_its_secure_default_is_hidden():
    """ray.init prints that it turned token authentication on (nothing to do); the warning that it is off stays."""
    import logging

    from bgekit.distributed.ray_encode import _token_default_notice

    def record(message):
        return logging.LogRecord("ray._private.authentication.authentication_token_setup", logging.WARNING, "", 0,
                                 message, (), None)

    assert not _token_default_notice(record("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE"
                                            "=disabled to opt out."))
    assert _token_default_notice(record("Token authentication is disabled for this Ray cluster. Anyone with network "
                                        "access to the cluster can run arbitrary code"))
