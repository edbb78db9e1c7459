"""`bgekit label`: teacher scores are the reranker's own scores, one per text; other fields are kept; bad input is
named; add_reranker_score.py's option names work; the output trains with --knowledge_distillation."""
import json

import pytest

from bgekit.cli import main
from bgekit.compat.reranker import FlagReranker
from bgekit.train.data import read_jsonl
from golden import GOLDEN

BERT_RR = str(GOLDEN / "models" / "bert-reranker")
ROWS = [
    {"query": "what do pandas eat", "pos": ["Pandas eat bamboo.", "Bamboo is their food."], "neg": ["Rain today."],
     "prompt": "Find it.", "type": "normal"},
    {"query": "capital of france", "pos": ["Paris is the capital."]},
    {"query": "sky colour", "pos": ["The sky is blue."], "neg": ["Grass is green.", "Pandas.", "Paris."],
     "neg_scores": [9.0, 9.0, 9.0]},
]


pytestmark = pytest.mark.usefixtures("one_thread")


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_label_adds_the_rerankers_scores_and_keeps_fields(tmp_path, capsys):
    src, out = _write(tmp_path / "in.jsonl", ROWS), tmp_path / "scored.jsonl"
    argv = ["label", "--reranker_name_or_path", BERT_RR, "--input_file", src, "--output_file", str(out),
            "--reranker_max_length", "64", "--reranker_batch_size", "2", "--use_fp16", "false"]
    assert main(argv) == 0
    assert '"examples": 3, "pairs": 8' in capsys.readouterr().out
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    reference = FlagReranker(BERT_RR, max_length=64)
    for row, line in zip(ROWS, lines):
        assert line["pos"] == row["pos"] and line["neg"] == row.get("neg", [])
        assert line["pos_scores"] == pytest.approx(reference.compute_score([[row["query"], p] for p in row["pos"]]), abs=1e-5)
        want = reference.compute_score([[row["query"], p] for p in row.get("neg", [])]) if row.get("neg") else []
        assert line["neg_scores"] == pytest.approx(want, abs=1e-5)
    assert lines[0]["prompt"] == "Find it." and lines[0]["type"] == "normal"
    assert len(read_jsonl(str(out), need_scores=True)) == 3  # ready for --knowledge_distillation


def test_label_with_short_names_and_normalize(tmp_path):
    src, out = _write(tmp_path / "in.jsonl", ROWS[:1]), tmp_path / "o.jsonl"
    assert main(["label", "--reranker", BERT_RR, "--input", src, "--output", str(out), "--normalize"]) == 0
    scores = json.loads(out.read_text())["pos_scores"] + json.loads(out.read_text())["neg_scores"]
    assert all(0.0 < s < 1.0 for s in scores)


def test_label_errors_are_named(tmp_path, capsys):
    bad = _write(tmp_path / "bad.jsonl", ROWS[:1])
    with open(bad, "a") as f:
        f.write('{"query": "q", "pos": "not a list"}\n')
    assert main(["label", "--reranker", BERT_RR, "--input", bad, "--output", str(tmp_path / "o.jsonl")]) == 3  # input
    assert "bad.jsonl:2: 'pos' must be a list of strings" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
    assert main(["label", "--input", bad, "--output", str(tmp_path / "o.jsonl")]) == 2  # usage
    assert "--reranker (--reranker_name_or_path) is required" in capsys.readouterr().err
    good = _write(tmp_path / "good.jsonl", ROWS[:1])
    layerwise = str(GOLDEN / "models" / "layerwise-reranker")
    assert main(["label", "--reranker", layerwise, "--input", good, "--output", str(tmp_path / "o.jsonl"),
                 "--cutoff_layers", "2", "3"]) == 2
    assert "give one exit layer" in capsys.readouterr().err
