import json

import pytest

from bgekit.cli import main
from bgekit.cli.rerank import read_queries
from golden import GOLDEN

XLMR = str(GOLDEN / "models" / "xlmr-reranker")
PASSAGES = ["The quick brown fox.", "Paris is the capital of France.", "Dense retrievers encode text.", ""]


@pytest.fixture(scope="module")
def reranker():
    from bgekit.compat.reranker import FlagReranker

    return FlagReranker(XLMR, devices="cpu")


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_jsonl_queries_to_sorted_jsonl(tmp_path, reranker):
    src = _write_jsonl(tmp_path / "in.jsonl", [
        {"id": "q1", "query": "capital of France", "passages": PASSAGES},
        {"query": "how do retrievers work", "passages": [{"id": "d7", "text": PASSAGES[2]}, PASSAGES[0]]},
    ])
    out = tmp_path / "out.jsonl"
    assert main(["rerank", src, "-o", str(out), "--model", XLMR, "--device", "cpu", "--batch-size", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r.get("id") for r in rows] == ["q1", None] and rows[0]["query"] == "capital of France"
    expected = reranker.compute_score([["capital of France", p] for p in PASSAGES])
    hits = rows[0]["hits"]
    assert [h["score"] for h in hits] == pytest.approx(sorted(expected, reverse=True), abs=1e-5)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert [h["text"] for h in hits] == [PASSAGES[int(h["id"])] for h in hits]
    assert {h["id"] for h in rows[1]["hits"]} == {"d7", "1"}  # given ids kept, the others are indices
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_query_with_a_passage_file_top_k_and_normalize(tmp_path, reranker):
    src = tmp_path / "passages.txt"
    src.write_text("\n".join(PASSAGES[:3]) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = ["rerank", str(src), "--query", "capital of France", "-o", str(out), "--model", XLMR, "--top-k", "2", "--normalize"]
    assert main(args) == 0
    (row,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    expected = reranker.compute_score([["capital of France", p] for p in PASSAGES[:3]], normalize=True)
    assert len(row["hits"]) == 2
    assert [h["score"] for h in row["hits"]] == pytest.approx(sorted(expected, reverse=True)[:2], abs=1e-6)


def test_prints_json_and_table(tmp_path, capsys):
    src = _write_jsonl(tmp_path / "in.jsonl", [{"query": "capital of France", "passages": PASSAGES[:2]}])
    assert main(["rerank", src, "--model", XLMR, "--json"]) == 0
    (res,) = json.loads(capsys.readouterr().out)
    assert res["hits"][0]["score"] >= res["hits"][1]["score"]
    assert main(["rerank", src, "--model", XLMR]) == 0
    out = capsys.readouterr().out
    assert "query: capital of France" in out and "rank" in out and PASSAGES[1] in out


def test_bad_input_names_file_and_line(tmp_path, capsys):
    src = _write_jsonl(tmp_path / "bad.jsonl", [{"query": "q", "passages": ["p"]}, {"query": "q", "passages": "p"}])
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_queries(src)
    out = tmp_path / "x.jsonl"
    assert main(["rerank", src, "-o", str(out), "--model", XLMR]) == 3  # input error
    assert "bad.jsonl:2" in capsys.readouterr().err and not out.exists()
    src = _write_jsonl(tmp_path / "bad2.jsonl", [{"query": "q", "passages": [{"body": "p"}]}])
    assert main(["rerank", src, "--model", XLMR]) == 3
    assert "passages[0]" in capsys.readouterr().err
    txt = tmp_path / "p.txt"
    txt.write_text("p\n", encoding="utf-8")
    assert main(["rerank", str(txt), "--model", XLMR]) == 2  # usage: a .txt needs --query
    assert "--query" in capsys.readouterr().err
    assert main(["rerank", str(tmp_path / "nope.jsonl"), "--model", XLMR]) == 3
    assert "does not exist" in capsys.readouterr().err
    good = _write_jsonl(tmp_path / "good.jsonl", [{"query": "q", "passages": ["p"]}])
    assert main(["rerank", good, "--model", str(GOLDEN / "models" / "bert-embedder")]) == 4  # model error
    assert "not in bgekit's reranker table" in capsys.readouterr().err
