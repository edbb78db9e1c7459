"""Contrastive and distillation losses: pure functions of score matrices (plus one autograd-aware gather).

Layout. ``B`` queries each own a group of ``G`` passages (positive first). A score matrix is either

- in-batch: (B, N) against every passage of the batch (N = B·G), or of all processes (N = W·B·G) with
  cross-device negatives; query ``i`` of process ``r`` owns columns ``(r·B + i)·G ... + G - 1``
  (``first = r·B`` is its first global query index);
- no-in-batch: (B, G), each query against its own group only.

Cross-device negatives. Each process scores its own B queries against the passages of all processes,
gathered with :func:`gather_with_grad`, whose backward pass sums the gradients of every process back to the
passages' owner. With the data-parallel gradient average this gives exactly the loss and gradients of one
process holding the whole global batch (tests/test_train_distributed.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

KD_LOSS_TYPES = ("kl_div", "m3_kd_loss")


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward all-reduces (sums) the gradient and keeps this process's slice."""

    @staticmethod
    def forward(ctx, tensor):  # noqa: D102 - autograd plumbing
        import torch.distributed as dist

        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate ``tensor`` (same shape on every process) from all processes, keeping gradients.

    Returns:
        (W·n, ...) gathered rows and the index of this process's first row; ``(tensor, 0)`` when not distributed.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor, 0
    return _GatherWithGrad.apply(tensor), dist.get_rank() * tensor.shape[0]


def group_starts(batch: int, group_size: int, first: int = 0, in_batch: bool = True, device=None) -> torch.Tensor:
    """Column of each query's positive: (first + i)·G in-batch, 0 without in-batch negatives. -> (B,)"""
    if not in_batch:
        return torch.zeros(batch, dtype=torch.long, device=device)
    return (first + torch.arange(batch, device=device)) * group_size


def own_group(scores: torch.Tensor, starts: torch.Tensor, group_size: int) -> torch.Tensor:
    """Each query's scores for its own group. (B, N) -> (B, G)."""
    cols = starts[:, None] + torch.arange(group_size, device=scores.device)[None, :]  # (B, G)
    return scores.gather(1, cols)


def kl_div_loss(student: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student's softmax against teacher probabilities (KL up to a constant). (B, K) each."""
    return -(teacher_probs * torch.log_softmax(student.float(), dim=-1)).sum(dim=-1).mean()


def m3_kd_loss(scores: torch.Tensor, teacher_probs: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """BGE-M3's listwise distillation: for each group position j, cross-entropy towards passage j, weighted by
    the teacher's probability of j, with the group's passages before j masked out.

    Args:
        scores: (B, N) scores.
        teacher_probs: (B, G) teacher probabilities.
        starts: (B,) column of each query's first group passage.
    """
    scores = scores.float()
    loss = scores.new_zeros(())
    lowest = torch.finfo(scores.dtype).min
    for j in range(teacher_probs.shape[1]):
        target = starts + j  # (B,)
        loss = loss + (teacher_probs[:, j] * F.cross_entropy(scores, target, reduction="none")).mean()
        scores = scores.scatter(1, target[:, None], lowest)
    return loss


def group_loss(scores: torch.Tensor, group_size: int, *, first: int = 0, in_batch: bool = True,
               teacher_probs: torch.Tensor | None = None, kd_loss_type: str = "kl_div") -> torch.Tensor:
    """The contrastive loss of one score matrix, with optional distillation.

    Args:
        scores: (B, N) in-batch / cross-device scores, or (B, G) when ``in_batch`` is False; already divided by
            the temperature.
        group_size: G.
        first: global index of this process's first query (cross-device), else 0.
        in_batch: whether other queries' passages are negatives.
        teacher_probs: (B, G) softmax of the teacher scores, or None.
        kd_loss_type: "kl_div" (distillation on the own group plus the contrastive loss, as FlagEmbedding) or
            "m3_kd_loss" (:func:`m3_kd_loss` alone).

    Returns:
        A scalar (mean over the B queries).
    """
    starts = group_starts(scores.shape[0], group_size, first, in_batch, scores.device)
    if teacher_probs is None:
        return F.cross_entropy(scores.float(), starts)
    if kd_loss_type == "kl_div":
        return kl_div_loss(own_group(scores, starts, group_size), teacher_probs) + F.cross_entropy(scores.float(), starts)
    if kd_loss_type == "m3_kd_loss":
        return m3_kd_loss(scores, teacher_probs, starts)
    raise ValueError(f"unknown kd_loss_type {kd_loss_type!r}; valid: {', '.join(KD_LOSS_TYPES)}")


def dense_scores(q: torch.Tensor, p: torch.Tensor, temperature: float) -> torch.Tensor:
    """Inner products over the temperature. q (B, D), p (N, D) -> (B, N)."""
    return q @ p.T / temperature


def sparse_vectors(weights: torch.Tensor, input_ids: torch.Tensor, vocab_size: int, skip_ids) -> torch.Tensor:
    """Lexical weights as vocabulary-sized vectors: a token's largest weight in the text; special tokens 0.

    Args:
        weights: (N, T) non-negative token weights (0 at padding).
        input_ids: (N, T).
        vocab_size: V.
        skip_ids: token ids that never count (cls, eos, pad, unk), as at inference.

    Returns:
        (N, V) vectors; their inner products are the sparse scores bgekit computes at inference.
    """
    out = weights.new_zeros(weights.shape[0], vocab_size)
    out = out.scatter_reduce(1, input_ids, weights, reduce="amax", include_self=True)  # (N, V)
    keep = torch.ones(vocab_size, dtype=out.dtype, device=out.device)
    keep[list(skip_ids)] = 0
    return out * keep


def colbert_scores(q: torch.Tensor, q_mask: torch.Tensor, p: torch.Tensor, p_mask: torch.Tensor,
                   temperature: float) -> torch.Tensor:
    """ColBERT max-sim over real tokens, averaged over the query's tokens, over the temperature.

    Args:
        q: (B, Tq, C) query token vectors; q_mask (B, Tq) 1 for real tokens.
        p: (N, Tp, C) passage token vectors; p_mask (N, Tp).

    Returns:
        (B, N) scores (bgekit's inference max-sim: padding never matches).
    """
    sim = torch.einsum("bic,njc->binj", q, p)  # (B, Tq, N, Tp)
    sim = sim.masked_fill(~p_mask.bool()[None, None], torch.finfo(sim.dtype).min)
    best = sim.max(dim=-1).values * q_mask[:, :, None].to(sim.dtype)  # (B, Tq, N)
    return best.sum(dim=1) / q_mask.sum(dim=1, keepdim=True).clamp(min=1).to(sim.dtype) / temperature


def m3_unified_loss(dense: torch.Tensor, sparse: torch.Tensor, colbert: torch.Tensor, ensemble: torch.Tensor) -> torch.Tensor:
    """BGE-M3's weighting of its four losses: (dense + ensemble + 0.1·sparse + colbert) / 4."""
    return (dense + ensemble + 0.1 * sparse + colbert) / 4


def m3_self_distill_loss(unified: torch.Tensor, ensemble_scores: torch.Tensor, dense_scores: torch.Tensor,
                         sparse_scores: torch.Tensor, colbert_scores: torch.Tensor) -> torch.Tensor:
    """BGE-M3 self-distillation: each head also learns the (detached) softmax of the ensemble's scores.

    Returns:
        ``(unified + (kl_dense + 0.1·kl_sparse + kl_colbert) / 3) / 2``. All score matrices (B, N), same layout.
    """
    teacher = torch.softmax(ensemble_scores.detach().float(), dim=-1)
    distill = (kl_div_loss(dense_scores, teacher) + 0.1 * kl_div_loss(sparse_scores, teacher)
               + kl_div_loss(colbert_scores, teacher)) / 3
    return (unified + distill) / 2


def matryoshka(reps: torch.Tensor, dims, normalize: bool) -> list[torch.Tensor]:
    """The leading ``d`` dimensions of ``reps`` for each ``d`` in ``dims`` (normalised if asked). (N, D) -> [(N, d)]."""
    out = []
    for d in dims:
        part = reps[:, : min(int(d), reps.shape[1])]
        out.append(F.normalize(part, dim=-1) if normalize else part)
    return out
