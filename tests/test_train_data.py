"""Training data: jsonl validation, sources and marks, group sampling, batch sampling, the embedder collator."""
import collections
import json
import os

import pytest
import torch

from bgekit.train.collate import EmbedderCollator
from bgekit.train.data import GroupDataset, TrainGroup, load_sources, negative_indices, read_jsonl
from bgekit.train.sampler import GroupBatchSampler
from golden import GOLDEN

EXAMPLES = os.path.join(os.path.dirname(str(GOLDEN)), "data", "finetune-examples", "embedder")
BERT = str(GOLDEN / "models" / "bert-embedder")


def _write(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


GOOD = {"query": "q", "pos": ["p"], "neg": ["n1", "n2"]}


# ---------------------------------------------------------------- real example data
def test_real_example_folders_load_with_marks_types_and_scores():
    folders = [os.path.join(EXAMPLES, d) for d in ("retrieval", "classification-no_in_batch_neg", "sts")]
    sources = load_sources(folders)
    by_name = {os.path.basename(s.name): s for s in sources}
    assert sorted(by_name) == ["AmazonClassification.jsonl", "Banking77Classification.jsonl", "msmarco.jsonl",
                               "nli.jsonl", "nq.jsonl", "sts.jsonl"]
    assert all(len(s.examples) == 10 for s in sources)
    assert {n for n, s in by_name.items() if s.no_in_batch_neg} == {"AmazonClassification.jsonl", "Banking77Classification.jsonl"}
    assert by_name["nli.jsonl"].examples[0].type == "only_1neg"
    assert by_name["msmarco.jsonl"].examples[0].pos_scores is not None
    assert by_name["sts.jsonl"].examples[0].prompt


def test_distillation_needs_scores_and_names_the_line():
    with pytest.raises(ValueError, match=r"AmazonClassification\.jsonl:1: .*pos_scores"):
        load_sources([os.path.join(EXAMPLES, "classification-no_in_batch_neg")], need_scores=True)
    sources = load_sources([os.path.join(EXAMPLES, "retrieval")], need_scores=True)
    ex = sources[0].examples[0]
    assert len(ex.pos_scores) == len(ex.pos) and len(ex.neg_scores) == len(ex.neg)


def test_same_source_batches_follow_types_on_real_data():
    sources = load_sources([os.path.join(EXAMPLES, d) for d in ("retrieval", "classification-no_in_batch_neg", "sts")])
    ds = GroupDataset(sources, group_size=8)
    sampler = GroupBatchSampler(ds, batch_size=4, same_source=True, seed=1)
    seen = collections.defaultdict(set)
    for batch in sampler:
        src = {ds.source_index[i] for i, _, _ in batch}
        assert len(src) == 1
        name = os.path.basename(sources[src.pop()].name)
        seen[name].add((len(batch), batch[0][2]))
    assert seen["nli.jsonl"] == {(4, 2)}                      # only_1neg: groups of 2
    assert seen["AmazonClassification.jsonl"] == {(2, 5)}     # symmetric_class: 4 negatives + 1, half batch
    assert seen["Banking77Classification.jsonl"] == {(2, 8)}
    assert seen["sts.jsonl"] == {(2, 8)}                      # symmetric: half batch
    assert seen["msmarco.jsonl"] == {(4, 8)}


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize("line, message", [
    ('{"query": "q", "pos": ["p"]', r"train\.jsonl:2: not valid JSON"),
    ({"query": "q", "neg": ["n"]}, r"train\.jsonl:2: the example has no positives"),
    ({"query": "q", "pos": [], "neg": ["n"]}, r"train\.jsonl:2: the example has no positives"),
    ({"query": 3, "pos": ["p"]}, r"train\.jsonl:2: 'query' must be a string"),
    ({"query": "q", "pos": "p"}, r"train\.jsonl:2: 'pos' must be a list of strings"),
    ({"query": "q", "pos": ["p"], "neg": ["n"], "neg_scores": [1, 2]}, r"train\.jsonl:2: 'neg_scores' has 2 scores for 1 texts"),
    ([1, 2], r"train\.jsonl:2: expected a JSON object"),
])
def test_bad_line_names_file_and_line(tmp_path, line, message):
    path = _write(tmp_path / "train.jsonl", [GOOD, line])
    with pytest.raises(ValueError, match=message) as info:
        read_jsonl(path)
    assert "train.jsonl" in str(info.value)


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path):
    path = _write(tmp_path / "t.jsonl", [GOOD, "", {"query": "q"}])
    with pytest.raises(ValueError, match=r"t\.jsonl:3:"):
        read_jsonl(path)


def test_missing_and_wrong_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sources([str(tmp_path / "nope.jsonl")])
    with pytest.raises(ValueError, match="not a .jsonl"):
        load_sources([_write(tmp_path / "x.txt", ["a"])])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .jsonl"):
        load_sources([str(tmp_path / "empty")])


def test_marked_file_name_small_file_merging_and_subsets(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    _write(folder / "big.jsonl", [GOOD] * 5)
    _write(folder / "a.jsonl", [GOOD] * 2)
    _write(folder / "b-no_in_batch_neg.jsonl", [GOOD] * 2)
    sources = load_sources([str(folder)], small_threshold=3)
    assert [len(s.examples) for s in sources] == [5, 4]       # a + b merged
    assert load_sources([str(folder)], small_threshold=3, drop_threshold=5)[-1].name.endswith("big.jsonl")
    single = load_sources([str(folder / "b-no_in_batch_neg.jsonl")])
    assert single[0].no_in_batch_neg
    subset = load_sources([str(folder)], max_examples_per_file=3)
    assert [len(s.examples) for s in subset] == [2, 2, 3]


# ---------------------------------------------------------------- groups
def test_negatives_without_replacement_when_enough():
    import random

    idx = negative_indices(10, 4, random.Random(0))
    assert len(idx) == 4 and len(set(idx)) == 4


def test_too_few_negatives_are_resampled_in_passes():
    import random

    for seed in range(20):
        counts = collections.Counter(negative_indices(3, 7, random.Random(seed)))
        assert sorted(counts) == [0, 1, 2] and set(counts.values()) <= {2, 3}


def test_draws_depend_on_seed_epoch_index_only(tmp_path):
    ex = {"query": "q", "pos": ["p1", "p2", "p3"], "neg": [f"n{i}" for i in range(20)], "pos_scores": [1, 2, 3],
          "neg_scores": list(range(20))}
    ds = GroupDataset(load_sources([_write(tmp_path / "t.jsonl", [ex])], need_scores=True), 5, seed=3, use_scores=True)
    a, b = ds[(0, 0, 5)], ds[(0, 0, 5)]
    assert a == b and len(a.passages) == 5 and a.passages[0].startswith("p")
    assert a.scores[0] == float(a.passages[0][1]) and a.scores[1:] == [float(p[1:]) for p in a.passages[1:]]
    assert any(ds[(0, e, 5)] != a for e in range(1, 6))


def test_example_without_negatives_is_rejected_for_groups(tmp_path):
    path = _write(tmp_path / "t.jsonl", [GOOD, {"query": "q", "pos": ["p"]}])
    with pytest.raises(ValueError, match=r"t\.jsonl:2: the example has no negatives"):
        GroupDataset(load_sources([path]), group_size=2)
    assert len(GroupDataset(load_sources([path]), group_size=1)) == 2


# ---------------------------------------------------------------- batches
def _dataset(tmp_path, n=10):
    return GroupDataset(load_sources([_write(tmp_path / "t.jsonl", [dict(GOOD, query=f"q{i}") for i in range(n)])]), 3)


def test_mixed_batches_cover_every_example_once_per_epoch(tmp_path):
    sampler = GroupBatchSampler(_dataset(tmp_path), batch_size=4, seed=0)
    batches = list(sampler)
    assert [len(b) for b in batches] == [4, 4, 2] and len(sampler) == 3
    assert sorted(i for b in batches for i, _, _ in b) == list(range(10))
    sampler.set_epoch(1)
    assert [k[1] for k in list(sampler)[0]] == [1] * 4 and list(sampler) != batches
    assert len(GroupBatchSampler(_dataset(tmp_path), batch_size=4, drop_last=True)) == 2


def test_world_size_splits_global_batches_into_equal_parts(tmp_path):
    sampler = GroupBatchSampler(_dataset(tmp_path), batch_size=2, seed=0, drop_last=True, world_size=2)
    batches = list(sampler)
    assert [len(b) for b in batches] == [2, 2, 2, 2]          # 2 global steps x 2 processes; 2 examples dropped


# ---------------------------------------------------------------- collator
@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(BERT)


def _group(**kw):
    base = dict(query="find pandas", passages=["pandas eat bamboo", "rain falls"], scores=None, prompt=None, type=None,
                category=None, no_in_batch_neg=False)
    return TrainGroup(**{**base, **kw})


def test_collator_instructions_prompts_and_symmetric_passages(tokenizer):
    col = EmbedderCollator(tokenizer, query_instruction="Q: ", passage_instruction="P: ")
    out = col([_group(), _group(prompt="Task: ", type="symmetric_sts")])
    q = tokenizer.batch_decode(out["queries"][0]["input_ids"], skip_special_tokens=True)
    p = tokenizer.batch_decode(out["passages"][0]["input_ids"], skip_special_tokens=True)
    assert q == ["q : find pandas", "task : find pandas"]
    assert p[:2] == ["p : pandas eat bamboo", "p : rain falls"] and p[2:] == ["task : pandas eat bamboo", "task : rain falls"]
    plain = EmbedderCollator(tokenizer)([_group(prompt="Task: ")])
    assert tokenizer.batch_decode(plain["queries"][0]["input_ids"], skip_special_tokens=True) == ["find pandas"]


def test_collator_teacher_scores_flags_lengths_and_sub_batches(tokenizer):
    col = EmbedderCollator(tokenizer, query_max_len=3, passage_max_len=4, sub_batch_size=3)
    groups = [_group(scores=[2.0, 1.0], no_in_batch_neg=True), _group(scores=[0.5, 0.0], no_in_batch_neg=True)]
    out = col(groups)
    assert torch.equal(out["teacher_scores"], torch.tensor([[2.0, 1.0], [0.5, 0.0]]))
    assert out["no_in_batch_neg"] is True
    assert [c["input_ids"].shape[0] for c in out["passages"]] == [3, 1]
    assert max(c["input_ids"].shape[1] for c in out["passages"]) <= 4 and out["queries"][0]["input_ids"].shape[1] <= 3
    assert col([_group(no_in_batch_neg=True), _group()])["no_in_batch_neg"] is False
    with pytest.raises(ValueError, match="some examples of a batch have teacher scores"):
        col([groups[0], _group()])
