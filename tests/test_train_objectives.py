"""The training objectives themselves: for each variant, the trainer's loss on a fixed tiny batch equals the loss
computed here, independently, from the batch's encoded representations (or scores) and the published formula.

The other training tests check that the loss goes down and that saved folders reload; these pin *which* loss is
minimised, so dropping in-batch negatives, the teacher scores, a temperature, an M3 term or the self-distillation
fails a test. The formulas are written out in float64 numpy from the FlagEmbedding / BGE-M3 papers' definitions:

- contrastive: cross-entropy of ``q·p / t`` towards the query's positive, over every passage of the batch
  (in-batch negatives) or over the query's own group;
- ``kl_div`` distillation: ``-sum(softmax(teacher) * log_softmax(own-group scores))`` plus the contrastive term;
- ``m3_kd_loss``: for each group position j, the teacher-weighted cross-entropy towards passage j with the group's
  earlier passages removed from the softmax;
- Matryoshka: the mean of the contrastive loss over the leading ``d`` dimensions, each re-normalised;
- BGE-M3 unified: ``(dense + ensemble + 0.1 * sparse + colbert) / 4`` with ensemble ``dense + 0.3 * sparse + colbert``;
  self-distillation adds ``(kl_dense + 0.1 * kl_sparse + kl_colbert) / 3`` towards the ensemble and halves the sum;
- rerankers: cross-entropy over each query's own group (positive first), plus ``kl_div`` towards the teacher;
  layerwise: the mean over exit layers, plus the deepest layer teaching the others when there is no teacher.

Cross-device negatives are the in-batch formula over the gathered batch; tests/test_train_distributed.py pins
that two processes give the single-process loss, and this file pins the single-process loss.
"""
import json

import numpy as np
import pytest
import torch

from bgekit.train.args import parse_embedder_args
from bgekit.train.reranker_args import parse_reranker_args
from bgekit.train.run import build_embedder_training
from bgekit.train.run_reranker import build_reranker_training
from golden import GOLDEN

MODELS = GOLDEN / "models"
BERT, M3, DECODER = (str(MODELS / n) for n in ("bert-embedder", "m3", "decoder-embedder"))
BERT_RR, LLM_RR, LAYERWISE = (str(MODELS / n) for n in ("bert-reranker", "llm-reranker", "layerwise-reranker"))

ROWS = [
    ("what do pandas eat", "Pandas eat bamboo almost exclusively.", ["The stock market fell today.", "Rain is expected."]),
    ("how do vaccines work", "Vaccines train the immune system.", ["Bamboo grows fast.", "The match ended in a draw."]),
    ("capital of france", "Paris is the capital of France.", ["Berlin has many museums.", "Vaccines are injected."]),
    ("why is the sky blue", "Rayleigh scattering makes the sky blue.", ["Pandas live in China.", "Madrid is in Spain."]),
]
B, G = 4, 3
# float32 forward vs float64 formula: measured differences are below 2e-6 relative; 1e-5 leaves a margin.
RTOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    with open(path, "w") as f:
        for i, (q, pos, neg) in enumerate(ROWS):
            # teacher scores that disagree with the contrastive target, so dropping them changes the loss
            f.write(json.dumps({"query": q, "pos": [pos], "neg": neg, "pos_scores": [2.0 - i],
                                "neg_scores": [1.5 + 0.5 * i, 0.25 * i]}) + "\n")
    return str(path)


# ---------------------------------------------------------------------------------------------- formulas (numpy)
def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(_log_softmax(x))


def _ce(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean cross-entropy of rows of ``scores`` towards column ``targets[i]``."""
    return float(-_log_softmax(scores)[np.arange(len(targets)), targets].mean())


def _own_groups(scores: np.ndarray) -> np.ndarray:
    """(B, B*G) -> (B, G): each query's scores for its own passages."""
    return np.stack([scores[i, i * G:(i + 1) * G] for i in range(scores.shape[0])])


def _contrastive(scores: np.ndarray, in_batch: bool = True) -> float:
    if in_batch:
        return _ce(scores, np.arange(scores.shape[0]) * G)
    return _ce(_own_groups(scores), np.zeros(scores.shape[0], dtype=int))


def _kl_div(student: np.ndarray, teacher_probs: np.ndarray) -> float:
    return float(-(teacher_probs * _log_softmax(student)).sum(axis=-1).mean())


def _m3_kd(scores: np.ndarray, teacher_probs: np.ndarray) -> float:
    total = 0.0
    for j in range(G):
        per_query = []
        for i in range(scores.shape[0]):
            row = scores[i].copy()
            row[i * G:i * G + j] = -np.inf  # the group's passages before j leave the softmax
            per_query.append(teacher_probs[i, j] * -_log_softmax(row[None])[0, i * G + j])
        total += float(np.mean(per_query))
    return total


def _colbert(q: np.ndarray, qm: np.ndarray, p: np.ndarray, pm: np.ndarray) -> np.ndarray:
    """Max-sim over the passage's real tokens, averaged over the query's real tokens. -> (B, N)."""
    out = np.zeros((len(q), len(p)))
    for i in range(len(q)):
        qv = q[i][qm[i].astype(bool)]
        for n in range(len(p)):
            out[i, n] = (qv @ p[n][pm[n].astype(bool)].T).max(axis=1).mean()
    return out


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


# ---------------------------------------------------------------------------------------------- embedders
def _embedder_args(model, data, out, *extra, temperature="0.1"):
    return parse_embedder_args([
        "--model", model, "--train_data", data, "--output_dir", str(out), "--max_steps", "1",
        "--per_device_train_batch_size", str(B), "--train_group_size", str(G), "--save_strategy", "no",
        "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true", "--query_max_len", "24",
        "--passage_max_len", "24", "--temperature", temperature, *extra])


def _embedder_batch(args):
    """(training model in eval mode, the first batch's groups, the batch, its encoded queries and passages)."""
    trainer, model = build_embedder_training(*args)
    trainer.batch_sampler.set_epoch(0)
    groups = [trainer.train_dataset[k] for k in next(iter(trainer.batch_sampler))]
    batch = trainer.data_collator(groups)
    model.eval()
    with torch.no_grad():
        q, p = model.encode(batch["queries"]), model.encode(batch["passages"])
    return model, groups, batch, q, p


def _embedder_case(args):
    """(training model in eval mode, a fixed batch, its loss, the encoded queries and passages)."""
    model, _, batch, q, p = _embedder_batch(args)
    with torch.no_grad():
        loss = model(**batch)["loss"].item()
    return model, batch, loss, q, p


@pytest.mark.parametrize("temperature", ["0.1", "0.05"])
def test_in_batch_contrastive_loss(data, tmp_path, temperature):
    model, batch, loss, q, p = _embedder_case(_embedder_args(BERT, data, tmp_path, temperature=temperature))
    assert q["dense"].shape == (B, q["dense"].shape[1]) and p["dense"].shape[0] == B * G
    scores = _np(q["dense"]) @ _np(p["dense"]).T / float(temperature)  # (B, B*G)
    assert loss == pytest.approx(_contrastive(scores), rel=RTOL)
    # the two formulas differ on this batch, so the check above tells them apart
    assert abs(_contrastive(scores) - _contrastive(scores, in_batch=False)) > 1e-3


def test_own_group_loss_without_in_batch_negatives(data, tmp_path):
    model, batch, _, q, p = _embedder_case(_embedder_args(BERT, data, tmp_path))
    with torch.no_grad():
        loss = model(**{**batch, "no_in_batch_neg": True})["loss"].item()
    scores = _np(q["dense"]) @ _np(p["dense"]).T / 0.1
    assert loss == pytest.approx(_contrastive(scores, in_batch=False), rel=RTOL)


def test_training_encodes_as_inference_does(data, tmp_path):
    """The representations the formulas use are the inference embedder's for the same texts."""
    model, groups, _, q, p = _embedder_batch(_embedder_args(BERT, data, tmp_path))
    emb = model.embedder
    np.testing.assert_allclose(_np(q["dense"]), emb.encode([g.query for g in groups]), atol=1e-6)
    np.testing.assert_allclose(_np(p["dense"]), emb.encode([t for g in groups for t in g.passages]), atol=1e-6)


@pytest.mark.parametrize("kd", ["kl_div", "m3_kd_loss"])
def test_distillation_loss(data, tmp_path, kd):
    model, batch, loss, q, p = _embedder_case(
        _embedder_args(BERT, data, tmp_path, "--knowledge_distillation", "--kd_loss_type", kd))
    teacher = _softmax(_np(batch["teacher_scores"]))  # (B, G)
    scores = _np(q["dense"]) @ _np(p["dense"]).T / 0.1
    expected = _kl_div(_own_groups(scores), teacher) + _contrastive(scores) if kd == "kl_div" else _m3_kd(scores, teacher)
    assert loss == pytest.approx(expected, rel=RTOL)
    assert abs(expected - _contrastive(scores)) > 1e-3  # the teacher term matters on this batch


def test_matryoshka_loss_averages_the_truncated_dimensions(data, tmp_path):
    model, batch, loss, q, p = _embedder_case(
        _embedder_args(BERT, data, tmp_path, "--use_mrl", "--mrl_dims", "8", "16", "--sentence_pooling_method", "mean"))
    qd, pd = _np(q["dense"]), _np(p["dense"])
    assert not np.allclose(np.linalg.norm(qd, axis=1), 1.0)  # full vectors stay unnormalised under MRL

    def part(x, d):
        x = x[:, :d]
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    expected = np.mean([_contrastive(part(qd, d) @ part(pd, d).T / 0.1) for d in (8, 16)])
    assert loss == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize("self_distill", [False, True])
def test_m3_unified_loss(data, tmp_path, self_distill):
    extra = ["--unified_finetuning"] + (["--use_self_distill", "--self_distill_start_step", "-1"] if self_distill else [])
    model, batch, loss, q, p = _embedder_case(_embedder_args(M3, data, tmp_path, *extra))
    t = 0.1
    dense = _np(q["dense"]) @ _np(p["dense"]).T / t
    sparse = _np(q["sparse"]) @ _np(p["sparse"]).T / t
    colbert = _colbert(_np(q["colbert"]), _np(q["colbert_mask"]), _np(p["colbert"]), _np(p["colbert_mask"])) / t
    ensemble = dense + 0.3 * sparse + colbert
    unified = (_contrastive(dense) + _contrastive(ensemble) + 0.1 * _contrastive(sparse) + _contrastive(colbert)) / 4
    expected = unified
    if self_distill:
        teacher = _softmax(ensemble)
        expected = (unified + (_kl_div(dense, teacher) + 0.1 * _kl_div(sparse, teacher) + _kl_div(colbert, teacher)) / 3) / 2
    assert np.abs(sparse).max() > 0 and np.abs(colbert).max() > 0
    assert loss == pytest.approx(expected, rel=RTOL)


def test_m3_sparse_and_colbert_representations_match_inference(data, tmp_path):
    """The M3 training representations give the inference model's sparse and ColBERT scores for the same pairs."""
    model, groups, _, q, p = _embedder_batch(_embedder_args(M3, data, tmp_path, "--unified_finetuning"))
    emb = model.embedder
    pairs = [[groups[0].query, text] for text in groups[0].passages]
    ref = emb.score_pairs(pairs, max_query_length=24, max_passage_length=24)
    sparse = _np(q["sparse"])[0] @ _np(p["sparse"])[:G].T
    colbert = _colbert(_np(q["colbert"])[:1], _np(q["colbert_mask"])[:1], _np(p["colbert"])[:G], _np(p["colbert_mask"])[:G])[0]
    np.testing.assert_allclose(sparse, ref["sparse"], atol=1e-5)
    np.testing.assert_allclose(colbert, ref["colbert"], atol=1e-5)


def test_decoder_lora_loss_is_the_contrastive_loss_of_last_token_vectors(data, tmp_path):
    model, batch, loss, q, p = _embedder_case(_embedder_args(
        DECODER, data, tmp_path, "--lora_rank", "4", "--lora_alpha", "8", "--target_modules", "q_proj", "v_proj"))
    assert model.is_lora
    scores = _np(q["dense"]) @ _np(p["dense"]).T / 0.1
    assert loss == pytest.approx(_contrastive(scores), rel=RTOL)


# ---------------------------------------------------------------------------------------------- rerankers
def _reranker_case(model_path, data, out, *extra):
    args = parse_reranker_args([
        "--model", model_path, "--train_data", data, "--output_dir", str(out), "--max_steps", "1",
        "--per_device_train_batch_size", str(B), "--train_group_size", str(G), "--save_strategy", "no",
        "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true", "--query_max_len", "16",
        "--passage_max_len", "32", *extra])
    trainer, model = build_reranker_training(*args)
    trainer.batch_sampler.set_epoch(0)
    batch = trainer.data_collator([trainer.train_dataset[k] for k in next(iter(trainer.batch_sampler))])
    model.eval()
    with torch.no_grad():
        out = model(**batch)
    return batch, out["loss"].item(), _np(out["scores"])


def _reranker_expected(scores: np.ndarray, teacher_scores) -> float:
    grouped = scores.reshape(B, G)
    loss = _ce(grouped, np.zeros(B, dtype=int))
    if teacher_scores is not None:
        loss += _kl_div(grouped, _softmax(_np(teacher_scores)))
    return loss


@pytest.mark.parametrize("kd", [False, True])
@pytest.mark.parametrize("model_path,extra", [
    (BERT_RR, []),
    (LLM_RR, ["--lora_rank", "4", "--lora_alpha", "8", "--target_modules", "q_proj", "v_proj"]),
], ids=["cross-encoder", "llm-lora"])
def test_reranker_group_loss(data, tmp_path, model_path, extra, kd):
    batch, loss, scores = _reranker_case(model_path, data, tmp_path, *extra, *(["--knowledge_distillation"] if kd else []))
    assert (batch["teacher_scores"] is not None) == kd
    assert scores.shape == (B * G,)
    expected = _reranker_expected(scores, batch["teacher_scores"])
    assert loss == pytest.approx(expected, rel=RTOL)
    if kd:
        assert abs(expected - _reranker_expected(scores, None)) > 1e-3


@pytest.mark.parametrize("kd", [False, True])
def test_layerwise_loss_over_exit_layers(data, tmp_path, kd):
    batch, loss, scores = _reranker_case(LAYERWISE, data, tmp_path, "--start_layer", "1",
                                         *(["--knowledge_distillation"] if kd else []))
    layers = scores.reshape(scores.shape[0], B, G)  # (L, B, G)
    assert layers.shape[0] > 1
    expected = np.mean([_reranker_expected(layer.reshape(-1), batch["teacher_scores"]) for layer in layers])
    if not kd:  # the deepest layer teaches the shallower ones
        deepest = _softmax(layers[-1])
        expected += np.mean([_kl_div(layer, deepest) for layer in layers[:-1]])
    assert loss == pytest.approx(expected, rel=RTOL)
