"""`bgekit index export-milvus`, `bgekit search --milvus-uri URI --collection NAME` and `bgekit serve --milvus-uri`
on Milvus Lite (a file in a tmp folder): the CLI's hits equal `bgekit search --index-dir`'s, each misuse exits
with its class's code and one line, and the server's /search and /health run on the collection (a re-export
with another model turns /health to 503 naming the mismatch)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from fastapi.testclient import TestClient

from golden import GOLDEN
from bgekit.cli import main
from bgekit.cli.embed import DEFAULT_SAMPLE

pytestmark = pytest.mark.usefixtures("one_thread")
M3 = str(GOLDEN / "models" / "m3")
BERT = str(GOLDEN / "models" / "bert-embedder")
RERANKER = str(GOLDEN / "models" / "bert-reranker")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("milvus-cli")
    corpus = folder / "docs.jsonl"
    with open(DEFAULT_SAMPLE) as f:
        rows = [json.loads(line) for line in f]
    corpus.write_text("".join(json.dumps({**r, "lang": "en" if i % 2 else "fr"}) + "\n" for i, r in enumerate(rows)))
    ix, uri = str(folder / "ix"), str(folder / "milvus.db")
    assert main(["index", "build", "--model", M3, "--corpus", str(corpus), "--index-dir", ix, "--device", "cpu"]) == 0
    assert main(["index", "export-milvus", "--index-dir", ix, "--milvus-uri", uri, "--collection", "docs"]) == 0
    return folder, ix, uri


def run_json(capsys, argv):
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_search_through_milvus_equals_the_local_index(exported, capsys):
    _, ix, uri = exported
    milvus = ["--milvus-uri", uri, "--collection", "docs"]
    for extra in (["--mode", "dense"], ["--mode", "sparse"], ["--mode", "hybrid", "--candidates", "12"],
                  ["--mode", "hybrid", "--fusion", "rrf", "--candidates", "12"], ["--filter", "lang=fr"]):
        argv = ["search", "giant panda bamboo", "--top-k", "4", "--json", "--device", "cpu", *extra]
        ours = run_json(capsys, argv + ["--index-dir", ix])[0]
        theirs = run_json(capsys, argv + milvus)[0]
        assert [h["id"] for h in theirs["hits"]] == [h["id"] for h in ours["hits"]], extra
        final = ours["stages"][-1]
        assert [h["score"] for h in theirs["hits"]] == pytest.approx([h["scores"][final] for h in ours["hits"]],
                                                                     abs=1e-5)
        assert theirs["stages"] == [final]
    reranked = run_json(capsys, ["search", "panda", "--top-k", "2", "--json", "--reranker", RERANKER, "--device",
                                 "cpu", *milvus])[0]
    assert reranked["stages"] == ["dense", "rerank"] and all("rerank" in h["scores"] for h in reranked["hits"])
    scores = [h["scores"]["rerank"] for h in reranked["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert main(["search", "panda", "--device", "cpu", *milvus]) == 0
    assert "query: panda" in capsys.readouterr().out


@pytest.mark.parametrize("argv, code, message", [
    (["search", "x", "--milvus-uri", "{uri}"], 2, "--milvus-uri and --collection go together"),
    (["search", "x", "--milvus-uri", "{uri}", "--collection", "docs", "--index-dir", "{ix}"], 2,
     "give either --index-dir"),
    (["search", "x", "--milvus-uri", "{uri}", "--collection", "docs", "--colbert"], 2, "--colbert cannot apply"),
    (["search", "x", "--milvus-uri", "{uri}", "--collection", "docs", "--ef-search", "8"], 2,
     "--ef-search cannot apply with --milvus-uri"),
    (["search", "x", "--milvus-uri", "{uri}", "--collection", "nope"], 3, "Milvus has no collection 'nope'"),
    (["search", "x", "--milvus-uri", "{uri}", "--collection", "docs", "--model", BERT], 4, "kind='encoder'"),
    (["index", "export-milvus", "--index-dir", "{ix}", "--milvus-uri", "{uri}", "--collection", "docs"], 2,
     "exists; replace it with overwrite=True"),
    (["index", "export-milvus", "--index-dir", "{ix}", "--milvus-uri", "{uri}", "--collection", "a-b"], 2,
     "Milvus names start with a letter"),
    (["index", "export-milvus", "--index-dir", "{ix}", "--milvus-uri", "http://127.0.0.1:9", "--collection", "d"], 5,
     "cannot reach the Milvus server at http://127.0.0.1:9"),
    (["index", "export-milvus", "--index-dir", "{ix}", "--milvus-uri", "{folder}/no/m.db", "--collection", "d"], 5,
     "does not exist"),
    (["index", "export-milvus", "--index-dir", "{folder}/none", "--milvus-uri", "{uri}", "--collection", "d"], 3,
     "is not a bgekit index"),
])
def test_misuse_exits_with_its_code_and_one_line(exported, capsys, argv, code, message):
    folder, ix, uri = exported
    argv = [a.format(folder=folder, ix=ix, uri=uri) for a in argv]
    capsys.readouterr()
    assert main(argv + (["--device", "cpu"] if argv[0] == "search" else [])) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2, err


def test_serve_with_milvus_uri(exported, tmp_path, monkeypatch, capsys):
    import bgekit.serve.runner

    folder, ix, uri = exported
    seen = {}

    def run(app, sock, **kwargs):  # instead of serving: keep the app
        seen["app"] = app
        sock.close()

    monkeypatch.setattr(bgekit.serve.runner, "run", run)
    assert main(["index", "export-milvus", "--index-dir", ix, "--milvus-uri", uri, "--collection", "served"]) == 0
    assert main(["serve", "--milvus-uri", uri, "--collection", "served", "--port", "0", "--device", "cpu"]) == 0
    with TestClient(seen["app"]) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["index"]["count"] == 12
        assert health["index"]["path"] == f"{uri}#served" and health["index"]["outputs"] == ["dense", "sparse"]
        body = client.post("/search", json={"query": "giant panda", "top_k": 3, "mode": "hybrid", "fusion": "rrf",
                                            "filter": {"lang": "en"}}).json()
        direct = run_json(capsys, ["search", "giant panda", "--top-k", "3", "--mode", "hybrid", "--fusion", "rrf",
                                   "--filter", "lang=en", "--json", "--milvus-uri", uri, "--collection", "served",
                                   "--device", "cpu"])[0]
        assert [h["id"] for h in body["hits"]] == [h["id"] for h in direct["hits"]] and body["stages"] == ["fused"]
        assert all(h["metadata"]["lang"] == "en" for h in body["hits"])
        assert client.post("/search", json={"query": "x", "colbert": True}).status_code == 400
        other = str(tmp_path / "other")  # the collection exported again, from an index of another model
        assert main(["index", "build", "--model", BERT, "--corpus", DEFAULT_SAMPLE, "--index-dir", other,
                     "--device", "cpu"]) == 0
        assert main(["index", "export-milvus", "--index-dir", other, "--milvus-uri", uri, "--collection", "served",
                     "--overwrite"]) == 0
        sick = client.get("/health")
        assert sick.status_code == 503 and "kind='m3'" in " ".join(sick.json()["problems"])
        assert client.post("/search", json={"query": "giant panda"}).status_code == 503
    assert main(["serve", "--milvus-uri", uri, "--port", "0"]) == 2
    assert "--milvus-uri and --collection go together" in capsys.readouterr().err


def test_a_lite_file_held_by_another_process_is_one_clear_error(exported):
    import subprocess
    import sys

    from pymilvus import MilvusClient

    _, _, uri = exported
    held = MilvusClient(uri)  # this process holds the file; a second process cannot open it
    done = subprocess.run([sys.executable, "-m", "bgekit", "search", "x", "--milvus-uri", uri, "--collection", "docs"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 5, done.stderr
    assert "a Lite file serves one process at a time" in done.stderr and "Traceback" not in done.stderr
    assert held.has_collection("docs")
