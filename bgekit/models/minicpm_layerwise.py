"""The MiniCPM layerwise reranker (bge-reranker-v2-minicpm-layerwise), written on transformers' Llama blocks.

MiniCPM is a Llama with three scalings, all read from config.json:

- token embeddings are multiplied by ``scale_emb``;
- every residual branch (attention and MLP) is multiplied by ``scale_depth / sqrt(num_hidden_layers)``;
- ``dim_model_base`` only rescales vocabulary-sized ("raw"/"complex") heads, which no published reranker
  uses; the "simple" heads here are plain ``Linear(hidden, 1)`` on the normed state.

The score for exit layer L is ``head_L(norm(h_L))`` at the last real token, where ``h_L`` is the output of the
first L decoder layers and ``norm`` is the model's final RMSNorm (for L = num_hidden_layers that is the usual
final state). Heads exist for layers ``start_layer .. num_hidden_layers`` (``lm_head.{L - start_layer}``), or
one shared head when ``head_multi`` is false. Weight names match the published checkpoint.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaMLP, LlamaRMSNorm, LlamaRotaryEmbedding

from bgekit.models import additive_mask, last_token_index

_LLAMA_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
                 "attention_bias", "attention_dropout", "pad_token_id")


def llama_config(config: dict) -> LlamaConfig:
    """The Llama config describing MiniCPM's attention/MLP blocks (SDPA attention)."""
    kwargs = {k: config[k] for k in _LLAMA_FIELDS if config.get(k) is not None}
    kwargs.setdefault("num_key_value_heads", config["num_attention_heads"])
    scaling = config.get("rope_scaling")
    if scaling:  # MiniCPM's {"type": "linear" | "dynamic", "factor": f}
        kwargs["rope_parameters"] = {"rope_type": scaling.get("type", scaling.get("rope_type")),
                                     "factor": scaling["factor"], "rope_theta": config.get("rope_theta", 10000.0)}
    cfg = LlamaConfig(**kwargs)
    cfg._attn_implementation = "sdpa"
    return cfg


class HeadLinear(nn.Module):
    """One score head; the wrapper only exists to give the checkpoint's ``linear_head`` weight name."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear_head = nn.Linear(hidden_size, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_head(x)


class MiniCPMDecoderLayer(nn.Module):
    """Pre-norm Llama block whose residual branches are scaled by ``scale_depth / sqrt(num_layers)``."""

    def __init__(self, cfg: LlamaConfig, layer_idx: int, residual_scale: float):
        super().__init__()
        self.self_attn = LlamaAttention(cfg, layer_idx)
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = LlamaRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.residual_scale = residual_scale

    def forward(self, hidden: torch.Tensor, position_embeddings: tuple, mask: torch.Tensor) -> torch.Tensor:
        attn, _ = self.self_attn(self.input_layernorm(hidden), position_embeddings=position_embeddings,
                                 attention_mask=mask)
        hidden = hidden + attn * self.residual_scale  # (B, T, H)
        return hidden + self.mlp(self.post_attention_layernorm(hidden)) * self.residual_scale


class MiniCPMBackbone(nn.Module):
    """Embeddings, decoder layers and final norm (the checkpoint's ``model.*`` weights)."""

    def __init__(self, cfg: LlamaConfig, scale_emb: float, scale_depth: float):
        super().__init__()
        self.cfg = cfg
        self.scale_emb = scale_emb
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        residual_scale = scale_depth / math.sqrt(cfg.num_hidden_layers)
        self.layers = nn.ModuleList(MiniCPMDecoderLayer(cfg, i, residual_scale) for i in range(cfg.num_hidden_layers))
        self.norm = LlamaRMSNorm(cfg.hidden_size, eps=cfg.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(cfg)

    def exit_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int]) -> dict:
        """``{L: norm(h_L) at the last real token}`` for every L in ``layers``; runs only max(layers) layers."""
        hidden = self.embed_tokens(input_ids) * self.scale_emb  # (B, T, H)
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None]  # (1, T), as the reference
        rope = self.rotary_emb(hidden, positions)
        mask = additive_mask(attention_mask, hidden.dtype)  # (B, 1, T, T)
        last = last_token_index(attention_mask)  # (B,)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        wanted, top, states = set(layers), max(layers), {}
        for idx in range(top + 1):
            if idx in wanted:
                states[idx] = self.norm(hidden[rows, last])  # (B, H)
            if idx < top:
                hidden = self.layers[idx](hidden, rope, mask)
        return states


class LayerwiseMiniCPM(nn.Module):
    """MiniCPM with per-exit-layer score heads.

    Args:
        config: the checkpoint's config.json as a dict (``model_type: minicpm``, ``head_type: simple``).

    Example:
        >>> from bgekit.models import load_pretrained                           # doctest: +SKIP
        >>> model = load_pretrained("bge-reranker-v2-minicpm-layerwise", torch.float32)  # doctest: +SKIP
        >>> model(ids, mask, layers=[28], heads=[model.head_index(28)]).shape    # doctest: +SKIP
        torch.Size([1, 2])
    """

    def __init__(self, config: dict):
        super().__init__()
        head_type = config.get("head_type", "simple")
        if head_type != "simple":
            raise ValueError(f"head_type {head_type!r} is not supported: only 'simple' score heads "
                             "(the published bge-reranker-v2-minicpm-layerwise) are")
        self.raw_config = config
        self.cfg = llama_config(config)
        self.num_layers = self.cfg.num_hidden_layers
        self.start_layer = int(config.get("start_layer", 8))
        self.head_multi = bool(config.get("head_multi", True))
        self.model = MiniCPMBackbone(self.cfg, config.get("scale_emb", 1), config.get("scale_depth", 1))
        if self.head_multi:
            self.lm_head = nn.ModuleList(HeadLinear(self.cfg.hidden_size) for _ in self.valid_layers())
        else:
            self.lm_head = HeadLinear(self.cfg.hidden_size)

    def init_buffers(self) -> None:
        """Make the rotary frequencies (not saved in checkpoints) after loading on the meta device."""
        self.model.rotary_emb = LlamaRotaryEmbedding(self.cfg)

    def valid_layers(self) -> list[int]:
        """Exit layers that have a trained head."""
        return list(range(self.start_layer, self.num_layers + 1))

    def head_index(self, layer: int) -> int:
        """The head trained for exit ``layer``."""
        return layer - self.start_layer if self.head_multi else 0

    def _head(self, index: int) -> nn.Module:
        return self.lm_head[index] if self.head_multi else self.lm_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int],
                heads: Sequence[int], compression: None = None) -> torch.Tensor:
        """Scores of the last real token: ``out[i] = head[heads[i]](norm(h_{layers[i]}))``. -> (len(layers), B).

        ``compression`` exists for a common signature with the lightweight model; MiniCPM does not compress.
        """
        if compression is not None:
            raise ValueError("the MiniCPM layerwise reranker does not support token compression")
        states = self.model.exit_states(input_ids, attention_mask, layers)
        scores = [self._head(h)(states[layer]).squeeze(-1) for layer, h in zip(layers, heads)]  # each (B,)
        return torch.stack(scores).float()  # (n, B)
