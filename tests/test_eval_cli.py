"""`bgekit eval beir / report` on a tiny BEIR folder."""
import json
import os

from bgekit.cli import main
from test_eval_data import make_beir


def test_eval_beir_bm25_writes_json_markdown_and_plot(tmp_path, capsys):
    root = make_beir(str(tmp_path / "tiny"))
    out, md, png = (str(tmp_path / n) for n in ("r.json", "t.md", "c.png"))
    assert main(["eval", "beir", "--dataset-dir", root, "--retrieval", "bm25", "--output", out, "--markdown", md,
                 "--plot", png, "--k-values", "1,2,3"]) == 0
    printed = capsys.readouterr().out
    assert "ndcg@10" in printed and "tiny" in printed
    report = json.load(open(out))
    assert set(report["datasets"]["tiny"]["splits"]["test"]["metrics"]) >= {"ndcg@1", "recall@3", "mrr@2"}
    assert open(md).read().startswith("| run | dataset | split |") and os.path.getsize(png) > 1000
    assert main(["eval", "report", out, out, "--metrics", "ndcg@1,recall@3"]) == 0
    assert capsys.readouterr().out.count("| bm25 | tiny | test |") == 2


def test_eval_beir_dense_with_minilm(tmp_path, capsys):
    root = make_beir(str(tmp_path / "tiny"))
    out = str(tmp_path / "r.json")
    assert main(["eval", "beir", "--dataset-dir", root, "--model", "all-MiniLM-L6-v2", "--output", out,
                 "--no-progress", "--cache-dir", str(tmp_path / "cache")]) == 0
    report = json.load(open(out))
    assert report["model"]["name"] == "all-MiniLM-L6-v2" and report["model"]["passage_max_length"] == 256
    assert report["datasets"]["tiny"]["splits"]["test"]["metrics"]["recall@3"] == 1.0


def test_eval_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["eval", "beir", "--dataset-dir", str(tmp_path / "missing"), "--retrieval", "bm25"]) == 3
    assert "does not exist" in capsys.readouterr().err
    root = make_beir(str(tmp_path / "tiny"))
    with open(os.path.join(root, "queries.jsonl"), "a") as f:
        f.write("{not json\n")
    assert main(["eval", "beir", "--dataset-dir", root, "--retrieval", "bm25"]) == 3
    assert "queries.jsonl:4: not valid JSON" in capsys.readouterr().err
