"""`bgekit index build|add|delete|info|export-qdrant`, `bgekit search --index-dir` and `bgekit serve` wiring."""
from __future__ import annotations

import json

import pytest

from golden import GOLDEN
from bgekit.cli import build_parser, main
from bgekit.cli.embed import DEFAULT_SAMPLE

M3 = str(GOLDEN / "models" / "m3")
BERT = str(GOLDEN / "models" / "bert-embedder")
RERANKER = str(GOLDEN / "models" / "bert-reranker")


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_build_search_add_delete_info(tmp_path, capsys):
    ix = str(tmp_path / "ix")
    assert main(["index", "build", "--model", M3, "--corpus", DEFAULT_SAMPLE, "--index-dir", ix, "--colbert",
                 "--device", "cpu"]) == 0
    assert "built" in capsys.readouterr().err
    out = run_json(capsys, ["search", "--index-dir", ix, "giant panda", "--mode", "hybrid", "--colbert",
                            "--top-k", "3", "--json", "--device", "cpu"])  # the index's model by default
    assert len(out[0]["hits"]) == 3 and out[0]["stages"] == ["dense", "sparse", "colbert", "fused"]
    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "n1", "text": "Tortoises live long, slow lives.", "lang": "en"}\n')
    assert main(["index", "add", "--index-dir", ix, "--corpus", str(more), "--device", "cpu"]) == 0
    out = run_json(capsys, ["search", "--index-dir", ix, "tortoises", "--filter", "lang=en", "--json",
                            "--reranker", RERANKER, "--device", "cpu"])
    assert [h["id"] for h in out[0]["hits"]] == ["n1"] and "rerank" in out[0]["hits"][0]["scores"]
    assert main(["index", "delete", "--index-dir", ix, "--ids", "n1", "d2"]) == 0
    info = run_json(capsys, ["index", "info", "--index-dir", ix, "--json"])
    assert info["count"] == 11 and info["outputs"] == ["dense", "sparse", "colbert"] and "probe" not in info["model"]
    assert main(["index", "info", "--index-dir", ix]) == 0
    assert "documents  11" in capsys.readouterr().out
    assert main(["search", "--index-dir", ix, "panda", "--device", "cpu"]) == 0
    assert "query: panda" in capsys.readouterr().out


def test_errors_exit_with_their_class_code_and_a_message(tmp_path, capsys):
    ix = str(tmp_path / "ix")
    assert main(["index", "build", "--model", BERT, "--corpus", DEFAULT_SAMPLE, "--index-dir", ix, "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["search", "--index-dir", ix, "x", "--model", M3, "--device", "cpu"]) == 4  # model mismatch
    assert "kind='encoder'" in capsys.readouterr().err
    assert main(["search", "--index-dir", ix, "x", "--mode", "sparse", "--device", "cpu"]) == 2  # usage
    assert "sparse search needs sparse vectors" in capsys.readouterr().err
    assert main(["index", "delete", "--index-dir", ix, "--ids", "nope"]) == 2
    assert "not in the index: 'nope'" in capsys.readouterr().err
    assert main(["index", "delete", "--index-dir", ix, "--ids", "nope", "--ignore-missing"]) == 0
    assert main(["index", "build", "--model", BERT, "--corpus", DEFAULT_SAMPLE, "--index-dir", ix]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["search", "--index-dir", ix, "x", "--filter", "novalue", "--device", "cpu"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err
    assert main(["index", "info", "--index-dir", str(tmp_path / "none")]) == 3  # input: not an index


def test_export_qdrant_local(tmp_path, capsys):
    pytest.importorskip("qdrant_client")
    ix = str(tmp_path / "ix")
    assert main(["index", "build", "--model", BERT, "--corpus", DEFAULT_SAMPLE, "--index-dir", ix, "--device", "cpu"]) == 0
    assert main(["index", "export-qdrant", "--index-dir", ix, "--collection", "docs", "--qdrant-path",
                 str(tmp_path / "q")]) == 0
    assert "exported 12 documents" in capsys.readouterr().err


def test_serve_builds_the_app_and_binds_loopback_by_default(tmp_path, monkeypatch):
    import bgekit.serve.runner

    seen = {}

    def run(app, sock, **kwargs):  # instead of serving: record what would be served, where
        seen.update(app=app, address=sock.getsockname()[:2])
        sock.close()

    monkeypatch.setattr(bgekit.serve.runner, "run", run)
    monkeypatch.setenv("BGEKIT_API_KEY", "k")
    assert main(["serve", "--model", BERT, "--reranker", RERANKER, "--port", "0", "--device", "cpu",
                 "--max-client-batch-size", "4"]) == 0
    assert seen["address"][0] == "127.0.0.1" and seen["address"][1] > 0
    engine = seen["app"].state.engine
    assert engine.config.api_key == "k" and engine.config.max_client_batch_size == 4 and engine.reranker is not None
    args = build_parser().parse_args(["search", "q"])
    assert args.model is None and args.index_dir is None  # plain search falls back to the default model
