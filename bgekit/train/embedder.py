"""The trainable embedder: a bgekit :class:`~bgekit.encoder.Embedder` (or M3) wrapped for the Trainer.

One class serves every kind: encoder-only, BGE-M3 (dense + sparse + ColBERT heads), decoder-only (usually
with LoRA) and ICL. It trains the embedder's own weights in place, pools and normalises exactly as the
embedder does at inference, and saves folders the bgekit loaders read (``save_to``): weights, tokenizer,
``bgekit_spec.json`` (kind, pooling, instructions, max length) and, for M3, ``colbert_linear.pt`` /
``sparse_linear.pt``. A LoRA model is saved merged (plain weights) with its adapter in ``adapter/``.

Loss (see :mod:`bgekit.train.losses`): contrastive over in-batch, cross-device or own-group negatives,
optional distillation from teacher scores, Matryoshka dimensions, and for M3 the unified dense / sparse /
ColBERT / ensemble loss with optional self-distillation. As in FlagEmbedding, the sparse and ColBERT losses
use in-batch (never cross-device) negatives.
"""
from __future__ import annotations

import dataclasses
import logging
import os

import torch
import torch.nn.functional as F

from bgekit.heads import M3Heads, load_heads, save_heads, special_token_ids
from bgekit.pooling import get_pooling
from bgekit.registry import write_spec_file
from bgekit.train import losses

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
M3_SPARSE_WEIGHT = 0.3  # sparse share of the M3 ensemble score, as in FlagEmbedding


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """How scores become a loss (FlagEmbedding's training arguments of the same names)."""

    temperature: float = 0.02
    negatives_cross_device: bool = False
    kd_loss_type: str = "kl_div"
    mrl_dims: tuple[int, ...] = ()
    unified: bool = False
    self_distill: bool = False
    self_distill_start_step: int = -1

    def __post_init__(self) -> None:
        if self.kd_loss_type not in losses.KD_LOSS_TYPES:
            raise ValueError(f"unknown kd_loss_type {self.kd_loss_type!r}; valid: {', '.join(losses.KD_LOSS_TYPES)}")


class EmbedderTrainModel(torch.nn.Module):
    """An embedder in training: ``forward(queries, passages, ...) -> {"loss": ...}``.

    Args:
        embedder: the bgekit Embedder / M3Embedder to train (its ``model`` is trained in place).
        config: the loss settings.
        heads: M3 heads to train (an M3Embedder's own ``heads``, or new ones); None for dense-only models.
        lora: a ``peft.LoraConfig`` to wrap the transformer with, or None.
    """

    def __init__(self, embedder, config: LossConfig, heads: M3Heads | None = None, lora=None):
        super().__init__()
        self.embedder = embedder
        self.loss_config = config
        self.model = embedder.model
        if lora is not None:
            from peft import get_peft_model

            self.model = get_peft_model(self.model, lora)
        self.heads = heads
        self.pool = get_pooling(embedder.pooling_method)
        text_config = embedder.model.config.get_text_config()
        self.vocab_size = max(text_config.vocab_size, len(embedder.tokenizer))
        self.skip_ids = special_token_ids(embedder.tokenizer)
        if getattr(text_config, "use_cache", None):
            text_config.use_cache = False

    @property
    def is_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, every_n_layers: int = 1,
                                        offload: bool = False) -> None:
        """Called by the Trainer for ``--gradient_checkpointing``; LoRA also needs input gradients."""
        base = self.model.get_base_model() if self.is_lora else self.model
        base.activation_checkpointing_enable(activation_checkpointing_kwargs, every_n_layers=every_n_layers, offload=offload)
        if self.is_lora:
            base.enable_input_require_grads()

    # ------------------------------------------------------------------ encoding
    def encode(self, chunks: list) -> dict[str, torch.Tensor]:
        """Tokenised texts (a list of padded sub-batches) -> representations.

        Returns:
            "dense" (N, H) pooled float32 (normalised unless Matryoshka dimensions are trained); for M3 also
            "sparse" (N, V), "colbert" (N, T-1, C) and "colbert_mask" (N, T-1).
        """
        parts = [self._encode_chunk(c) for c in chunks]
        out = {"dense": torch.cat([p["dense"] for p in parts])}
        if self.heads is not None and self.loss_config.unified:
            out["sparse"] = torch.cat([p["sparse"] for p in parts])
            width = max(p["colbert"].shape[1] for p in parts)
            out["colbert"] = torch.cat([F.pad(p["colbert"], (0, 0, 0, width - p["colbert"].shape[1])) for p in parts])
            out["colbert_mask"] = torch.cat([F.pad(p["colbert_mask"], (0, width - p["colbert_mask"].shape[1])) for p in parts])
        return out

    def _encode_chunk(self, inputs) -> dict[str, torch.Tensor]:
        mask = inputs["attention_mask"]  # (b, T)
        hidden = self.model(**inputs, return_dict=True).last_hidden_state  # (b, T, H)
        dense = self.pool(hidden, mask).float()  # (b, H)
        if self.embedder.normalize_embeddings and not self.loss_config.mrl_dims:
            dense = F.normalize(dense, dim=-1)
        out = {"dense": dense}
        if self.heads is not None and self.loss_config.unified:
            weights = self.heads.token_weights(hidden).float() * mask  # (b, T)
            out["sparse"] = losses.sparse_vectors(weights, inputs["input_ids"], self.vocab_size, self.skip_ids)
            colbert = self.heads.colbert_vecs(hidden, mask).float()  # (b, T-1, C)
            if self.embedder.normalize_embeddings:
                colbert = F.normalize(colbert, dim=-1)
            out["colbert"], out["colbert_mask"] = colbert, mask[:, 1:]
        return out

    # ------------------------------------------------------------------ loss
    def forward(self, queries: list, passages: list, teacher_scores: torch.Tensor | None = None,
                no_in_batch_neg: bool = False, step: int = 0) -> dict[str, torch.Tensor]:
        """The loss of one batch.

        Args:
            queries: B queries as padded sub-batches (see :class:`~bgekit.train.collate.EmbedderCollator`).
            passages: B·G passages, each query's group in order, positive first.
            teacher_scores: (B, G) teacher scores (distillation) or None.
            no_in_batch_neg: each query sees only its own group.
            step: the optimizer step (for ``self_distill_start_step``).
        """
        q, p = self.encode(queries), self.encode(passages)
        batch = q["dense"].shape[0]
        group = p["dense"].shape[0] // batch
        teacher = None if teacher_scores is None else torch.softmax(teacher_scores.float().view(batch, group), dim=-1)
        in_batch = not no_in_batch_neg
        cross = in_batch and self.loss_config.negatives_cross_device
        if self.loss_config.mrl_dims:
            qs = losses.matryoshka(q["dense"], self.loss_config.mrl_dims, self.embedder.normalize_embeddings)
            ps = losses.matryoshka(p["dense"], self.loss_config.mrl_dims, self.embedder.normalize_embeddings)
            loss = sum(self._dense_loss(a, b, group, teacher, in_batch, cross)[0] for a, b in zip(qs, ps)) / len(qs)
            return {"loss": loss}
        loss, dense_scores = self._dense_loss(q["dense"], p["dense"], group, teacher, in_batch, cross)
        if "sparse" not in q:
            return {"loss": loss}
        return self._m3_loss(q, p, group, teacher, in_batch, loss, dense_scores, step)

    def _scores(self, scores: torch.Tensor, group: int, in_batch: bool) -> torch.Tensor:
        """(B, N) in-batch scores -> the layout of the loss: unchanged, or (B, G) own groups."""
        if in_batch:
            return scores
        return losses.own_group(scores, losses.group_starts(scores.shape[0], group, device=scores.device), group)

    def _dense_loss(self, q, p, group, teacher, in_batch, cross):
        """Dense loss; returns it and the local (B, N) / (B, G) dense scores (for the M3 ensemble)."""
        t = self.loss_config.temperature
        if cross:
            p_all, _ = losses.gather_with_grad(p)
            first = _rank() * q.shape[0]
            scores = losses.dense_scores(q, p_all, t)  # (B, W·B·G)
            loss = losses.group_loss(scores, group, first=first, teacher_probs=teacher, kd_loss_type=self.loss_config.kd_loss_type)
            local = scores[:, _rank() * p.shape[0]:(_rank() + 1) * p.shape[0]]  # (B, B·G)
            return loss, local
        scores = self._scores(losses.dense_scores(q, p, t), group, in_batch)
        return losses.group_loss(scores, group, in_batch=in_batch, teacher_probs=teacher,
                                 kd_loss_type=self.loss_config.kd_loss_type), scores

    def _m3_loss(self, q, p, group, teacher, in_batch, dense_loss, dense_scores, step):
        t, kd = self.loss_config.temperature, self.loss_config.kd_loss_type
        sparse = self._scores(losses.dense_scores(q["sparse"], p["sparse"], t), group, in_batch)
        colbert = self._scores(losses.colbert_scores(q["colbert"], q["colbert_mask"], p["colbert"], p["colbert_mask"], t),
                               group, in_batch)
        ensemble = dense_scores + M3_SPARSE_WEIGHT * sparse + colbert

        def one(scores):
            return losses.group_loss(scores, group, in_batch=in_batch, teacher_probs=teacher, kd_loss_type=kd)

        loss = losses.m3_unified_loss(dense_loss, one(sparse), one(colbert), one(ensemble))
        if self.loss_config.self_distill and step > self.loss_config.self_distill_start_step:
            loss = losses.m3_self_distill_loss(loss, ensemble, dense_scores, sparse, colbert)
        return {"loss": loss}

    # ------------------------------------------------------------------ saving
    @property
    def spec(self):
        """The ModelSpec saved with the model: the embedder's settings, kind ``m3`` when it has heads."""
        emb = self.embedder
        return dataclasses.replace(
            emb.spec, kind="m3" if self.heads is not None else emb.spec.kind, pooling=emb.pooling_method,
            query_instruction=emb.query_instruction_for_retrieval, query_instruction_format=emb.query_instruction_format,
            passage_instruction=emb.passage_instruction_for_retrieval,
            passage_instruction_format=emb.passage_instruction_format, max_length=emb.passage_max_length)

    def save_to(self, folder: str, state_dict: dict | None = None) -> None:
        """Write a folder the bgekit loaders read (from ``state_dict`` when given, e.g. by DeepSpeed)."""
        own = _prefixed(state_dict, "model.") if state_dict is not None else self.model.state_dict()
        if self.is_lora:
            from bgekit.train.lora import merged_state_dict

            self.model.get_base_model().save_pretrained(folder, state_dict=merged_state_dict(self.model, own))
            self.model.save_pretrained(os.path.join(folder, ADAPTER_DIR), state_dict=own)
        else:
            self.model.save_pretrained(folder, state_dict=own)
        self.embedder.tokenizer.save_pretrained(folder)
        if self.heads is not None:
            heads = self.heads
            if state_dict is not None:
                heads = M3Heads(self.heads.colbert.in_features, self.heads.colbert_dim)
                heads.load_state_dict(_prefixed(state_dict, "heads."))
            save_heads(heads, folder)
        write_spec_file(folder, self.spec)

    def load_from(self, folder: str) -> None:
        """Load trained weights back from a folder written by :meth:`save_to` (to resume)."""
        from bgekit import backends

        if self.is_lora:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            set_peft_model_state_dict(self.model, load_file(os.path.join(folder, ADAPTER_DIR, "adapter_model.safetensors")))
        else:
            dtype = next(self.model.parameters()).dtype
            fresh = backends.load_model(folder, dtype, trust_remote_code=self.embedder.spec.trust_remote_code)
            self.model.load_state_dict(fresh.state_dict())
        if self.heads is not None:
            loaded = load_heads(folder, self.heads.colbert.in_features, -1, next(self.heads.parameters()).dtype)
            self.heads.load_state_dict(loaded.state_dict())

    def finish(self):
        """After training: the embedder computes exactly what the saved folder does (LoRA merged in), in eval
        mode, and moves itself to its devices on the next encode. Returns the embedder."""
        if self.is_lora:
            from bgekit.train.lora import merged_state_dict

            merged = merged_state_dict(self.model, self.model.state_dict())
            base = self.model.unload()
            base.load_state_dict(merged)
            self.model = self.embedder.model = base
        self.eval()
        self.embedder._device = None
        return self.embedder


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _prefixed(state_dict: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
