"""The Gemma2 lightweight reranker (bge-reranker-v2.5-gemma2-lightweight, ``model_type: cost_wise_gemma``).

A Gemma2 decoder (transformers' own ``Gemma2DecoderLayer``) with two additions, all read from config.json:

- **exit heads:** ``lm_head.{i}`` is a ``Linear(hidden, 1)`` trained for exit layer ``start_layer + i * layer_sep``.
  A score is ``softcap(head(norm(h_L)))`` at the last real token, with Gemma2's
  ``final_logit_softcapping`` (``tanh(x / c) * c``).
- **token compression:** before each layer index in ``compress_layers`` (except 0), the passage tokens are
  mean-pooled in groups of ``compress_ratio``; query and prompt tokens are kept, padding moves to the end and
  positions are renumbered ``0 .. T'-1``. This needs right padding and each row's query length (bos + query +
  separator) and prompt length (separator + prompt).

Attention logit softcapping: the reference runs under SDPA, which ignored ``attn_logit_softcapping`` in the
transformers release it was written for, so by default it is not applied here either
(``attn_softcapping=True`` applies it, with eager attention).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn
from transformers import Gemma2Config
from transformers.models.gemma2.modeling_gemma2 import Gemma2DecoderLayer, Gemma2RMSNorm, Gemma2RotaryEmbedding

from bgekit.models import additive_mask, last_token_index
from bgekit.models.minicpm_layerwise import HeadLinear

_DROP = ("architectures", "model_type", "auto_map", "transformers_version", "start_layer", "layer_sep", "layer_wise")


class Compression(NamedTuple):
    """Token compression settings for one batch.

    ratio: passage tokens per pooled token (1 = off). layers: layer indices to compress before.
    query_lengths / prompt_lengths: per row, tokens before / after the passage, (B,) long tensors.
    """

    ratio: int
    layers: Sequence[int]
    query_lengths: torch.Tensor
    prompt_lengths: torch.Tensor


def gemma2_config(config: dict, attn_softcapping: bool = False) -> Gemma2Config:
    cfg = Gemma2Config(**{k: v for k, v in config.items() if k not in _DROP})
    if not attn_softcapping:
        cfg.attn_logit_softcapping = None
    cfg._attn_implementation = "eager" if cfg.attn_logit_softcapping is not None else "sdpa"
    return cfg


def compress_tokens(hidden: torch.Tensor, attention_mask: torch.Tensor, ratio: int, query_lengths: torch.Tensor,
                    prompt_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pool each row's passage tokens in groups of ``ratio``; keep query and prompt tokens.

    Row layout (right padding): ``[query q][passage P][prompt p][pad]`` with ``P = mask.sum() - q - p``. It becomes
    ``[query q][ceil(P / ratio) means][prompt p][pad]``; the last group averages only the tokens it has.

    Args:
        hidden: (B, T, H). attention_mask: (B, T), right padded. ratio: group size >= 1.
        query_lengths, prompt_lengths: (B,) long tensors.

    Returns:
        (B, T', H) states with zeros at padding, and the (B, T') mask.
    """
    q, p = query_lengths, prompt_lengths
    passage = attention_mask.sum(1) - q - p  # (B,)
    kept = (passage + ratio - 1) // ratio  # (B,)
    new_len = q + kept + p
    t_new = int(new_len.max())
    slot = torch.arange(t_new, device=hidden.device)[None]  # (1, T')
    member = torch.arange(ratio, device=hidden.device)  # (r,)
    in_query, in_passage = slot < q[:, None], (slot >= q[:, None]) & (slot < (q + kept)[:, None])
    in_prompt = (slot >= (q + kept)[:, None]) & (slot < new_len[:, None])
    group = (slot - q[:, None]).clamp(min=0)  # (B, T') passage group number
    # source token of each (slot, member): query/prompt slots copy one token, passage slots read a group
    first = torch.where(in_passage, q[:, None] + group * ratio, slot)
    first = torch.where(in_prompt, slot - kept[:, None] + passage[:, None], first)  # (B, T')
    source = first[..., None] + torch.where(in_passage[..., None], member, 0)  # (B, T', r)
    group_size = (passage[:, None] - group * ratio).clamp(min=1, max=ratio)  # (B, T')
    valid = torch.where(in_passage[..., None], member < group_size[..., None], member == 0)
    valid = valid & (in_query | in_passage | in_prompt)[..., None]  # (B, T', r)
    count = torch.where(in_passage, group_size, 1)[..., None]
    weight = valid.to(hidden.dtype) / count.to(hidden.dtype)  # (B, T', r)
    index = source.clamp(max=hidden.shape[1] - 1).reshape(hidden.shape[0], -1, 1).expand(-1, -1, hidden.shape[2])
    gathered = hidden.gather(1, index).view(hidden.shape[0], t_new, ratio, hidden.shape[2])  # (B, T', r, H)
    new_hidden = (gathered * weight[..., None]).sum(2)  # (B, T', H)
    return new_hidden, (slot < new_len[:, None]).to(attention_mask.dtype)


class Gemma2Backbone(nn.Module):
    """Embeddings, Gemma2 decoder layers and final norm (the checkpoint's ``model.*`` weights)."""

    def __init__(self, cfg: Gemma2Config):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Gemma2DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = Gemma2RMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.rotary_emb = Gemma2RotaryEmbedding(cfg)

    def _context(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> tuple:
        """Rotary embeddings for positions 0..T-1 and the full / sliding-window masks."""
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None]  # (1, T)
        rope = self.rotary_emb(hidden, positions)
        masks = {"full_attention": additive_mask(attention_mask, hidden.dtype),
                 "sliding_attention": additive_mask(attention_mask, hidden.dtype, self.cfg.sliding_window)}
        return rope, masks

    def exit_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int],
                    compression: Compression | None = None) -> dict:
        """``{L: norm(h_L) at the last real token}`` for every L in ``layers``, compressing where asked."""
        hidden = self.embed_tokens(input_ids)  # (B, T, H)
        hidden = hidden * torch.tensor(self.cfg.hidden_size ** 0.5, dtype=hidden.dtype)
        rope, masks = self._context(hidden, attention_mask)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        wanted, top, states = set(layers), max(layers), {}
        compress_at = set() if compression is None or compression.ratio == 1 else set(compression.layers) - {0}
        for idx in range(top + 1):
            if idx in wanted:
                states[idx] = self.norm(hidden[rows, last_token_index(attention_mask)])  # (B, H)
            if idx == top:
                break
            if idx in compress_at:
                hidden, attention_mask = compress_tokens(hidden, attention_mask, compression.ratio,
                                                         compression.query_lengths, compression.prompt_lengths)
                rope, masks = self._context(hidden, attention_mask)
            layer = self.layers[idx]
            hidden = layer(hidden, position_embeddings=rope, attention_mask=masks[layer.self_attn.layer_type])
        return states


class LightweightGemma2(nn.Module):
    """Gemma2 with per-exit-layer score heads and passage-token compression.

    Args:
        config: the checkpoint's config.json as a dict (``model_type: cost_wise_gemma``, ``layer_wise: true``).
        attn_softcapping: apply Gemma2's attention logit softcapping (the reference does not; see module doc).
    """

    def __init__(self, config: dict, attn_softcapping: bool = False):
        super().__init__()
        if not config.get("layer_wise", False):
            raise ValueError("only layer_wise cost_wise_gemma checkpoints (per-layer score heads) are supported")
        self.cfg = gemma2_config(config, attn_softcapping)
        self.num_layers = self.cfg.num_hidden_layers
        self.start_layer = int(config.get("start_layer", 28))
        self.layer_sep = int(config.get("layer_sep", 28))
        self.softcap = self.cfg.final_logit_softcapping
        self.model = Gemma2Backbone(self.cfg)
        self.lm_head = nn.ModuleList(HeadLinear(self.cfg.hidden_size) for _ in self.valid_layers())

    def init_buffers(self) -> None:
        """Make the rotary frequencies (not saved in checkpoints) after loading on the meta device."""
        self.model.rotary_emb = Gemma2RotaryEmbedding(self.cfg)

    def valid_layers(self) -> list[int]:
        """Exit layers that have a trained head."""
        return list(range(self.start_layer, self.num_layers + 1, self.layer_sep))

    def head_index(self, layer: int) -> int:
        """The head trained for exit ``layer``."""
        return (layer - self.start_layer) // self.layer_sep

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int],
                heads: Sequence[int], compression: Compression | None = None) -> torch.Tensor:
        """Scores of the last real token: ``out[i] = softcap(head[heads[i]](norm(h_{layers[i]})))``. -> (n, B)."""
        states = self.model.exit_states(input_ids, attention_mask, layers, compression)
        scores = []
        for layer, h in zip(layers, heads):
            logit = self.lm_head[h](states[layer]).squeeze(-1)  # (B,)
            if self.softcap is not None:
                logit = torch.tanh(logit / self.softcap) * self.softcap
            scores.append(logit.float())
        return torch.stack(scores)  # (n, B)
