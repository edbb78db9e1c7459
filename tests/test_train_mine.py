"""`bgekit mine`: negatives come from the rank range, never a positive or the query; seeded and deterministic; the
false-negative filter; random filling; malformed input named; FlagEmbedding's option names."""
import json
import math

import numpy as np
import pytest

from bgekit.cli import main
from bgekit.cli.mine import parse_mine_args
from bgekit.train.label import read_records
from bgekit.train.mine import FalseNegativeFilter, MineConfig, mine, mine_file, parse_range
from golden import GOLDEN

DOCS = [f"doc {i}" for i in range(40)]


class RankEmbedder:
    """Every query ranks "doc i" at position i (doc 0 best): doc i is a unit vector at angle i degrees."""

    def encode_corpus(self, texts):
        return np.array([[math.cos(math.radians(int(t.split()[1]))), math.sin(math.radians(int(t.split()[1])))]
                         for t in texts], dtype=np.float32)

    def encode_queries(self, texts):
        return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(texts), 1))


def _examples(tmp_path, rows, name="train.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path), [ex for _, ex in read_records(str(path))]


ROWS = [{"query": "q0", "pos": ["doc 3"]}, {"query": "q1", "pos": ["doc 0", "doc 7"], "type": "normal"},
        {"query": "doc 5", "pos": ["doc 12"]}]


def test_negatives_come_from_the_range_and_skip_positives_and_the_query(tmp_path):
    _, examples = _examples(tmp_path, ROWS)
    negs, stats = mine(examples, RankEmbedder(), MineConfig((2, 14), negative_number=8), candidate_pool=DOCS)
    for ex, got in zip(examples, negs):
        ranks = [int(t.split()[1]) for t in got]
        allowed = {i for i in range(2, 14) if f"doc {i}" not in ex.pos and f"doc {i}" != ex.query}
        assert len(got) == 8 and len(set(got)) == 8 and set(ranks) <= allowed
    # q1 loses doc 7 (positive); "doc 5" loses itself (the query) and doc 12: 12 - 2 = 10 candidates each
    assert stats == {"examples": 3, "pool": 40, "from_range": 24, "filled": 0, "dropped_by_filter": 0, "short": 0}


def test_too_few_candidates_are_filled_at_random_or_left_short(tmp_path):
    _, examples = _examples(tmp_path, ROWS)
    negs, stats = mine(examples, RankEmbedder(), MineConfig((2, 6), negative_number=10), candidate_pool=DOCS)
    for ex, got in zip(examples, negs):
        assert len(got) == 10 and len(set(got)) == 10
        assert not set(got) & set(ex.pos) and ex.query not in got
    assert stats["filled"] == 30 - stats["from_range"] and stats["short"] == 0
    negs, stats = mine(examples, RankEmbedder(), MineConfig((2, 6), negative_number=10, fill=False), candidate_pool=DOCS)
    assert [len(n) for n in negs] == [3, 4, 3] and stats["short"] == 3


def test_same_seed_same_negatives_other_seed_other_negatives(tmp_path):
    _, examples = _examples(tmp_path, ROWS)
    run = lambda seed: mine(examples, RankEmbedder(), MineConfig((1, 40), 5, seed=seed), candidate_pool=DOCS)[0]
    assert run(7) == run(7)
    assert run(7) != run(8)


def test_pool_defaults_to_the_inputs_texts_in_order(tmp_path):
    rows = [{"query": "q", "pos": ["doc 1"], "neg": ["doc 9", "doc 2", "doc 1"]}, {"query": "r", "pos": ["doc 4"]}]
    _, examples = _examples(tmp_path, rows)
    negs, stats = mine(examples, RankEmbedder(), MineConfig((0, 10), negative_number=2))
    assert stats["pool"] == 4  # doc 1, doc 9, doc 2, doc 4
    assert len(negs[0]) == 2 and set(negs[0]) <= {"doc 9", "doc 2", "doc 4"}
    assert len(negs[1]) == 2 and "doc 4" not in negs[1]


class ScoreReranker:
    """Scores a pair by a table on the passage text (default 0)."""

    def __init__(self, table):
        self.table, self.seen = table, []

    def compute_score(self, pairs, batch_size=None):
        self.seen += pairs
        return [self.table.get(p, 0.0) for _, p in pairs]


@pytest.mark.parametrize("mode, threshold, dropped", [
    ("ratio", 0.95, {"doc 4", "doc 5"}),      # sigmoid(4.9) and sigmoid(9) are above 0.95 * sigmoid(5)
    ("margin", 0.5, {"doc 4", "doc 5"}),      # 4.9 and 9 are above 5 - 0.5
    ("absolute", 6.0, {"doc 5"}),             # only 9 is above 6
])
def test_false_negative_filter_drops_candidates_scored_like_the_positive(tmp_path, mode, threshold, dropped):
    _, examples = _examples(tmp_path, [{"query": "q", "pos": ["doc 1"]}])
    reranker = ScoreReranker({"doc 1": 5.0, "doc 4": 4.9, "doc 5": 9.0, "doc 6": 1.0})
    flt = FalseNegativeFilter(reranker, mode, threshold, candidates=8)
    negs, stats = mine(examples, RankEmbedder(), MineConfig((2, 10), negative_number=4, filter=flt), candidate_pool=DOCS)
    assert not set(negs[0]) & dropped and len(negs[0]) == 4
    assert stats["dropped_by_filter"] == len(dropped)
    assert ("q", "doc 1") in reranker.seen and len(reranker.seen) == 1 + 8  # the positive and 8 candidates


def test_filter_and_range_options_are_checked():
    with pytest.raises(ValueError, match="valid: ratio, margin, absolute"):
        FalseNegativeFilter(None, "percent")
    for bad in ("200", "a-b", "5-5", "10-2"):
        with pytest.raises(ValueError, match="range_for_sampling"):
            parse_range(bad)
    assert parse_range("2-200") == (2, 200)


def test_malformed_line_and_missing_positives_are_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"query": "q", "pos": ["doc 1"]}\n\n{"query": "q", "pos": [}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:3: not valid JSON"):
        mine_file(RankEmbedder(), str(path), str(tmp_path / "out.jsonl"), MineConfig((0, 5), 2))
    path.write_text('{"query": "q", "pos": ["doc 1"]}\n{"query": "q", "neg": ["doc 2"]}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: the example has no positives"):
        mine_file(RankEmbedder(), str(path), str(tmp_path / "out.jsonl"), MineConfig((0, 5), 2))
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_with_flagembedding_names_keeps_fields_and_drops_stale_scores(tmp_path, capsys):
    rows = [{"query": "what do pandas eat", "pos": ["Pandas eat bamboo."], "neg": ["x"], "neg_scores": [0.1],
             "pos_scores": [3.0], "prompt": "Find it."}] + [{"query": f"query {i}", "pos": [f"passage {i}"]} for i in range(5)]
    src, _ = _examples(tmp_path, rows)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": f"text number {i}"}) + "\n" for i in range(20)))
    out = tmp_path / "mined.jsonl"
    argv = ["mine", "--embedder_name_or_path", str(GOLDEN / "models" / "bert-embedder"), "--input_file", src,
            "--output_file", str(out), "--candidate_pool", str(pool), "--range_for_sampling", "2-12",
            "--negative_number", "4", "--use_gpu_for_searching", "--embedder_passage_max_length", "32"]
    assert main(argv) == 0
    assert '"from_range": 24' in capsys.readouterr().out
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["prompt"] == "Find it." and lines[0]["pos_scores"] == [3.0] and "neg_scores" not in lines[0]
    assert all(len(x["neg"]) == 4 and set(x["neg"]) <= {f"text number {i}" for i in range(20)} for x in lines)
    again = tmp_path / "again.jsonl"
    assert main(["mine", "--model", str(GOLDEN / "models" / "bert-embedder")] + argv[3:5] + ["--output", str(again)]
                + argv[7:]) == 0
    assert again.read_text() == out.read_text()


def test_mine_options_parse_in_both_spellings(tmp_path):
    snake = parse_mine_args(["--input_file", "a", "--output_file", "b", "--range_for_sampling", "2-200",
                             "--negative_number", "15", "--model_name_or_path", "m", "--false_negative_mode", "margin"])
    kebab = parse_mine_args(["--input", "a", "--output", "b", "--range-for-sampling", "2-200", "--negative-number", "15",
                             "--model", "m", "--false-negative-mode", "margin"])
    assert snake == kebab
    assert snake[1].negative_number == 15 and snake[3].embedder_name_or_path == "m"


def test_unknown_option_is_named(capsys):
    assert main(["mine", "--input", "a", "--output", "b", "--negatives", "3"]) == 2  # usage
    assert "unknown option(s) --negatives" in capsys.readouterr().err
