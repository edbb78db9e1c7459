"""`bgekit eval sts`: the scores against correlations computed here from the model's own embeddings (tiny model),
bad input named by file and line, and (slow) the published all-MiniLM-L6-v2 STS-B validation Spearman."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from golden import GOLDEN

pytestmark = pytest.mark.usefixtures("one_thread")

STS_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsbenchmark-dev" / "dev.jsonl"
TINY = str(GOLDEN / "models" / "bert-embedder")
PAIRS = [("A man is playing a guitar.", "A person plays the guitar.", 4.6),
         ("A cat sits on the mat.", "The stock market fell today.", 0.2),
         ("Paris is the capital of France.", "France's capital is Paris.", 5.0),
         ("A dog runs in the park.", "A dog is running outside.", 3.8),
         ("He is cooking dinner.", "A plane takes off.", 0.0),
         ("A man is playing a guitar.", "A woman is slicing an onion.", 0.5)]


def _main(argv):
    from bgekit.cli import main

    return main(argv)


def _write(path: Path, rows) -> str:
    path.write_text("".join(json.dumps({"sentence1": a, "sentence2": b, "score": s}) + "\n" for a, b, s in rows))
    return str(path)


def test_eval_sts_matches_correlations_of_the_model_embeddings(tmp_path, capsys):
    from scipy.stats import pearsonr, spearmanr

    from bgekit import Embedder

    data, out = _write(tmp_path / "pairs.jsonl", PAIRS), tmp_path / "sts.json"
    assert _main(["eval", "sts", "--data", data, "--model", TINY, "--output", str(out), "--no-progress"]) == 0
    report = json.loads(out.read_text())
    emb = Embedder(TINY, devices="cpu")
    a = emb.encode([p[0] for p in PAIRS])
    b = emb.encode([p[1] for p in PAIRS])
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    gold = [p[2] for p in PAIRS]
    assert report["cosine_spearman"] == pytest.approx(spearmanr(cos, gold)[0], abs=1e-6)
    assert report["cosine_pearson"] == pytest.approx(pearsonr(cos, gold)[0], abs=1e-6)
    assert report["num_pairs"] == 6 and report["model"] == TINY
    assert "cosine_spearman" in capsys.readouterr().out


@pytest.mark.parametrize("line, fragment", [
    ('{"sentence1": "a", "score": 1}', ":2: expected string fields 'sentence1' and 'sentence2'"),
    ('{"sentence1": "a", "sentence2": "b", "score": "high"}', ":2: expected a number in field 'score'"),
    ("not json", ":2: not valid JSON"),
])
def test_eval_sts_bad_lines(tmp_path, capsys, line, fragment):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"sentence1": "a", "sentence2": "b", "score": 1.0}) + "\n" + line + "\n")
    assert _main(["eval", "sts", "--data", str(data), "--model", TINY]) == 3
    assert f"{data}{fragment}" in capsys.readouterr().err


def test_eval_sts_needs_two_pairs_and_a_writable_output(tmp_path, capsys):
    one = _write(tmp_path / "one.jsonl", PAIRS[:1])
    assert _main(["eval", "sts", "--data", one, "--model", TINY]) == 3
    assert "a correlation needs at least 2" in capsys.readouterr().err
    two = _write(tmp_path / "two.jsonl", PAIRS[:2])
    assert _main(["eval", "sts", "--data", two, "--model", TINY, "--output", str(tmp_path)]) == 5
    assert "is a folder; give a file path" in capsys.readouterr().err


@pytest.mark.slow  # 3,000 sentences through all-MiniLM-L6-v2: about 45 s on the shared 2-core machine
def test_eval_sts_reproduces_published_minilm_stsb(tmp_path):
    if not STS_DEV.is_file():
        pytest.skip(f"not found (../shared/data/stsbenchmark-dev): {STS_DEV}")
    out = tmp_path / "sts.json"
    assert _main(["eval", "sts", "--data", str(STS_DEV), "--model", "all-MiniLM-L6-v2", "--output", str(out),
                  "--no-progress"]) == 0
    report = json.loads(out.read_text())
    assert report["num_pairs"] == 1500
    assert report["cosine_spearman"] == pytest.approx(0.86716, abs=1e-3)  # MTEB, STSBenchmark validation
