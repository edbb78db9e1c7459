"""Loss functions: layouts, distillation, and agreement of the training scores with bgekit's inference scores."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bgekit import scoring
from bgekit.heads import lexical_weights
from bgekit.train import losses


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_in_batch_targets_are_each_querys_positive():
    scores = _rand(3, 6)  # B=3, G=2
    expected = F.cross_entropy(scores, torch.tensor([0, 2, 4]))
    assert torch.allclose(losses.group_loss(scores, 2), expected)
    # cross-device: this process's first query is global query 2 of 4 (W=2) -> columns 4 and 6
    wide = _rand(2, 8)
    assert torch.allclose(losses.group_loss(wide, 2, first=2), F.cross_entropy(wide, torch.tensor([4, 6])))


def test_no_in_batch_targets_are_column_zero():
    own = _rand(3, 4)
    assert torch.allclose(losses.group_loss(own, 4, in_batch=False), F.cross_entropy(own, torch.zeros(3, dtype=torch.long)))


def test_kl_div_adds_distillation_on_the_own_group():
    scores, teacher = _rand(2, 6), torch.softmax(_rand(2, 3, seed=1), -1)
    own = torch.stack([scores[0, 0:3], scores[1, 3:6]])
    expected = -(teacher * torch.log_softmax(own, -1)).sum(-1).mean() + F.cross_entropy(scores, torch.tensor([0, 3]))
    got = losses.group_loss(scores, 3, teacher_probs=teacher, kd_loss_type="kl_div")
    assert torch.allclose(got, expected)


def test_m3_kd_loss_reduces_to_cross_entropy_for_a_certain_teacher():
    scores = _rand(2, 6)
    certain = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    got = losses.group_loss(scores, 3, teacher_probs=certain, kd_loss_type="m3_kd_loss")
    assert torch.allclose(got, F.cross_entropy(scores, torch.tensor([0, 3])))
    # the second position's term masks the first positive out of the softmax
    second = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    masked = scores.clone()
    masked[0, 0] = masked[1, 3] = -1e30
    got = losses.group_loss(scores, 3, teacher_probs=second, kd_loss_type="m3_kd_loss")
    assert torch.allclose(got, F.cross_entropy(masked, torch.tensor([1, 4])))


def test_unknown_kd_loss_type_lists_valid_ones():
    with pytest.raises(ValueError, match="kl_div, m3_kd_loss"):
        losses.group_loss(_rand(2, 4), 2, teacher_probs=torch.ones(2, 2) / 2, kd_loss_type="mse")


def test_colbert_scores_equal_inference_maxsim():
    q, p = _rand(2, 4, 5), _rand(3, 6, 5, seed=1)
    q_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    p_mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    got = losses.colbert_scores(q, q_mask, p, p_mask, temperature=0.5)
    for i in range(2):
        for j in range(3):
            ref = scoring.maxsim(q[i][q_mask[i].bool()].numpy(), p[j][p_mask[j].bool()].numpy())
            assert got[i, j].item() == pytest.approx(ref / 0.5, rel=1e-5)


def test_sparse_scores_equal_inference_lexical_matching():
    ids = torch.tensor([[0, 5, 7, 5, 2, 1], [0, 7, 9, 2, 1, 1]])  # 0 cls, 2 eos, 1 pad
    weights = torch.tensor([[0.9, 0.3, 0.5, 0.8, 0.4, 0.0], [0.7, 0.2, 0.6, 0.1, 0.0, 0.0]])
    vecs = losses.sparse_vectors(weights, ids, vocab_size=12, skip_ids={0, 1, 2})
    a, _ = lexical_weights(ids[0].numpy(), weights[0].numpy(), {0, 1, 2})
    b, _ = lexical_weights(ids[1].numpy(), weights[1].numpy(), {0, 1, 2})
    assert (vecs[0] @ vecs[1]).item() == pytest.approx(a.dot(b))
    assert vecs[0, 5].item() == pytest.approx(0.8) and vecs[0, 0].item() == 0.0


def test_sparse_vectors_pass_gradients_to_the_largest_weight():
    weights = torch.tensor([[0.3, 0.8]], requires_grad=True)
    losses.sparse_vectors(weights, torch.tensor([[4, 4]]), 6, {0}).sum().backward()
    assert weights.grad.tolist() == [[0.0, 1.0]]


def test_self_distill_and_unified_weights():
    d, s, c, e = (torch.tensor(x) for x in (1.0, 2.0, 3.0, 4.0))
    assert losses.m3_unified_loss(d, s, c, e).item() == pytest.approx((1 + 4 + 0.2 + 3) / 4)
    same = _rand(2, 4)
    # every head already equals the ensemble: the distillation term is the ensemble's entropy
    ent = -(torch.softmax(same, -1) * torch.log_softmax(same, -1)).sum(-1).mean()
    got = losses.m3_self_distill_loss(torch.tensor(1.0), same, same, same, same)
    assert got.item() == pytest.approx(((1.0 + (ent * 2.1 / 3)) / 2).item(), rel=1e-5)


def test_matryoshka_truncates_then_normalises():
    reps = _rand(3, 8)
    small, full = losses.matryoshka(reps, [4, 100], normalize=True)
    assert small.shape == (3, 4) and full.shape == (3, 8)
    assert torch.allclose(small.norm(dim=-1), torch.ones(3))
    assert torch.allclose(small, F.normalize(reps[:, :4], dim=-1))


def test_gather_is_identity_without_distributed():
    t = _rand(2, 3)
    out, first = losses.gather_with_grad(t)
    assert out is t and first == 0
    assert np.array_equal(losses.dense_scores(t, t, 0.5).numpy(), (t @ t.T / 0.5).numpy())
