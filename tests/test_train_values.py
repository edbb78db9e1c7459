"""Training outputs checked by value, not by shape (issue 17):

- a folder saved by `bgekit train` holds the *trained* weights: they differ from the base, and the folder encodes
  (embedder) or scores (reranker) exactly as the trained model in memory does, so saving the untrained base or a
  wrong file fails;
- `bgekit label --normalize` writes the sigmoid of the reranker's own scores;
- the batch sampler's split across processes: within a step no two ranks share an example, and an epoch covers
  every example once (except the documented drops);
- the ICL objective: the trainer's loss on a fixed batch equals the contrastive loss computed here from the
  encoded ICL queries and passages, and the queries really carry in-context examples from the batch.
"""
import json
import math

import numpy as np
import pytest
import torch

from bgekit.cli import main
from bgekit.train.data import GroupDataset, load_sources
from bgekit.train.sampler import GroupBatchSampler
from golden import GOLDEN
from test_train_cli import _options as embedder_options
from test_train_objectives import DECODER, B, G, RTOL, _contrastive, _embedder_args, _embedder_case, _np
from test_train_reranker_cli import _options as reranker_options

BERT, BERT_RR = str(GOLDEN / "models" / "bert-embedder"), str(GOLDEN / "models" / "bert-reranker")
TEXTS = ["pandas eat bamboo", "what is the capital of france", "rain", ""]
PAIRS = [["what do pandas eat", "Pandas eat bamboo."], ["capital of france", "Paris is the capital."], ["q", ""]]

pytestmark = pytest.mark.usefixtures("one_thread")


def _spy(monkeypatch, module, name):
    """Wrap ``module.name`` (the function the CLI calls) so the test gets what it returned: the model in memory."""
    seen = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    return seen


def _changed(base: dict, trained: dict) -> list[str]:
    assert set(base) == set(trained), sorted(set(base) ^ set(trained))
    return [k for k in base if not torch.equal(base[k], trained[k])]


# ---------------------------------------------------------------------------------------------- saved folders
def test_cli_saved_embedder_is_the_trained_model(tmp_path, monkeypatch):
    import bgekit.train.run as run
    from bgekit import Embedder, load_embedder

    trained = _spy(monkeypatch, run, "train_embedder")
    out = tmp_path / "trained"
    argv = embedder_options(out, kebab=False) + ["--learning_rate", "1e-3"]
    assert main(["train", "embedder"] + argv) == 0
    saved, base = load_embedder(str(out), devices="cpu"), Embedder(BERT, devices="cpu", pooling="mean")
    changed = _changed(base.model.state_dict(), saved.model.state_dict())
    assert len(changed) > len(base.model.state_dict()) // 2, changed  # most tensors moved in 2 steps at lr 1e-3
    for fn in ("encode", "encode_queries", "encode_corpus"):
        np.testing.assert_array_equal(getattr(saved, fn)(TEXTS), getattr(trained[0], fn)(TEXTS), err_msg=fn)
    # ... and the trained embeddings are not the base's (what saving the base would give)
    assert np.abs(saved.encode(TEXTS) - base.encode(TEXTS)).max() > 1e-3


def test_cli_saved_reranker_is_the_trained_model(tmp_path, monkeypatch):
    import bgekit.train.run_reranker as run_reranker
    from bgekit import Reranker

    trained = _spy(monkeypatch, run_reranker, "train_reranker")
    out = tmp_path / "trained"
    assert main(["train", "reranker"] + reranker_options(out, kebab=False) + ["--learning_rate", "1e-3"]) == 0
    saved, base = Reranker(str(out), devices="cpu"), Reranker(BERT_RR, devices="cpu")
    in_memory = {k: v.detach().cpu() for k, v in trained[0].finish().state_dict().items()}
    assert _changed(in_memory, saved.model.state_dict()) == []        # the folder holds the trained weights
    changed = _changed(base.model.state_dict(), saved.model.state_dict())
    assert len(changed) > len(in_memory) // 2, changed                # ... which are not the base's
    assert np.abs(np.asarray(saved.score(PAIRS)) - np.asarray(base.score(PAIRS))).max() > 1e-3


# ---------------------------------------------------------------------------------------------- bgekit label
def test_label_normalize_writes_the_sigmoid_of_the_rerankers_scores(tmp_path):
    from bgekit.compat.reranker import FlagReranker

    rows = [{"query": "what do pandas eat", "pos": ["Pandas eat bamboo."], "neg": ["Rain today.", "Paris."]},
            {"query": "capital of france", "pos": ["Paris is the capital.", "It is Paris."], "neg": ["Pandas."]}]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["label", "--reranker", BERT_RR, "--input", str(src), "--output", str(out), "--normalize",
                 "--reranker_max_length", "64"]) == 0
    reference = FlagReranker(BERT_RR, max_length=64)
    for row, line in zip(rows, map(json.loads, out.read_text().splitlines())):
        for key, texts in (("pos_scores", row["pos"]), ("neg_scores", row["neg"])):
            raw = np.asarray(reference.compute_score([[row["query"], t] for t in texts]), dtype=np.float64)
            assert line[key] == pytest.approx(1 / (1 + np.exp(-raw)), abs=1e-6), key
            assert line[key] == pytest.approx(reference.compute_score([[row["query"], t] for t in texts], normalize=True), abs=1e-6)


# ---------------------------------------------------------------------------------------------- splits across ranks
def _sources(tmp_path, sizes):
    paths = []
    for s, n in enumerate(sizes):
        path = tmp_path / f"source{s}.jsonl"
        path.write_text("".join(json.dumps({"query": f"s{s}q{i}", "pos": ["p"], "neg": ["n"]}) + "\n" for i in range(n)))
        paths.append(str(path))
    return load_sources(paths)


def _steps(sampler, world_size):
    """Global steps as Accelerate deals them: batch i of the sampler goes to process i % world_size."""
    batches = [[i for i, _, _ in b] for b in sampler]
    assert len(batches) % world_size == 0, "every process must get a batch at every step"
    return [batches[s:s + world_size] for s in range(0, len(batches), world_size)]


@pytest.mark.parametrize("world_size", [2, 3, 4])
@pytest.mark.parametrize("n", [12, 13, 17])
@pytest.mark.parametrize("drop_last", [False, True])
def test_mixed_batches_split_across_ranks_without_overlap_and_cover_the_epoch(tmp_path, world_size, n, drop_last):
    batch_size = 2
    ds = GroupDataset(_sources(tmp_path, [n]), group_size=2)
    sampler = GroupBatchSampler(ds, batch_size=batch_size, seed=3, drop_last=drop_last, world_size=world_size)
    seen = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        steps, items = _steps(sampler, world_size), []
        for parts in steps:
            flat = [i for part in parts for i in part]
            assert len(flat) == len(set(flat)), f"ranks share an example in a step: {parts}"
            assert max(map(len, parts)) - min(map(len, parts)) <= 1 and min(map(len, parts)) >= 1, parts
            items += flat
        step = batch_size * world_size
        rest = n % step
        dropped = rest if rest and (drop_last or rest < world_size) else 0
        assert len(items) == len(set(items)) == n - dropped         # no example twice in an epoch
        assert set(items) <= set(range(n))
        seen.append(items)
    assert seen[0] != seen[1]                                         # reshuffled per epoch


@pytest.mark.parametrize("world_size", [2, 3])
def test_same_source_batches_split_across_ranks_without_overlap(tmp_path, world_size):
    sizes = [9, 14]
    ds = GroupDataset(_sources(tmp_path, sizes), group_size=2)
    sampler = GroupBatchSampler(ds, batch_size=2, same_source=True, seed=5, world_size=world_size)
    items = []
    for parts in _steps(sampler, world_size):
        flat = [i for part in parts for i in part]
        assert len(flat) == len(set(flat)) and [len(p) for p in parts] == [2] * world_size, parts
        assert len({ds.source_index[i] for i in flat}) == 1                 # one source per global step
        items += flat
    assert len(items) == len(set(items)) == sum(n // (2 * world_size) * 2 * world_size for n in sizes)


# ---------------------------------------------------------------------------------------------- the ICL objective
@pytest.fixture(scope="module")
def icl_data(tmp_path_factory):
    from test_train_objectives import ROWS

    path = tmp_path_factory.mktemp("icl") / "train.jsonl"
    with open(path, "w") as f:
        for q, pos, neg in ROWS:
            f.write(json.dumps({"query": q, "pos": [pos], "neg": neg, "prompt": "Find the passage."}) + "\n")
    return str(path)


def test_icl_loss_is_the_contrastive_loss_of_the_in_context_queries(icl_data, tmp_path):
    args = _embedder_args(DECODER, icl_data, tmp_path, "--model_class", "decoder-only-icl", "--lora_rank", "4",
                          "--lora_alpha", "8", "--query_max_len", "64")
    model, batch, loss, q, p = _embedder_case(args)
    assert model.embedder.spec.kind == "icl" and model.is_lora
    texts = model.embedder.tokenizer.batch_decode(batch["queries"][0]["input_ids"], skip_special_tokens=True)
    examples = [t.count("<response>") - 1 for t in texts]
    assert max(examples) >= 1, texts                                   # the queries carry in-context examples
    assert all(t.rstrip().endswith("<response>") for t in texts) and all("Find the passage." in t for t in texts)
    scores = _np(q["dense"]) @ _np(p["dense"]).T / 0.1                 # (B, B*G)
    assert scores.shape == (B, B * G)
    expected = _contrastive(scores)
    assert loss == pytest.approx(expected, rel=RTOL)
    assert abs(expected - _contrastive(scores, in_batch=False)) > 1e-3 and math.isfinite(loss)
