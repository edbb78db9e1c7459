"""Visualized-BGE as one torch module: a BERT / XLM-R text tower from transformers with EVA02 patch tokens fed in.

Attribute names follow the reference (``bge_embeddings``, ``bge_encoder``, ``model_visual.visual``,
``visual_proj``), so its ``.pth`` state dict loads as it is. The sequences it builds:

- text: ``[CLS] t1 .. tn [SEP]`` at the text model's own positions;
- image (+ text): ``[CLS] img1 .. imgP t1 .. tn [SEP]``; the image tokens are the EVA tower's patch tokens
  (its CLS dropped) through ``visual_proj``, at positions 1..P, plus the text model's position table and its
  embedding LayerNorm; the text keeps ``[CLS]`` at position 0 and continues at P + 1.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from bgekit.errors import ModelError, ModelFileError, ModelMismatch
from bgekit.visual.config import VisionConfig
from bgekit.visual.eva import EVAVisionTower, rope_tables

MASK_MIN = -65504.0  # the reference's additive mask value (float16's minimum), whatever the dtype
# checkpoint keys that the reference stores but never uses at inference
_UNUSED_PREFIXES = ("bge_pooler.", "model_visual.logit_scale", "model_visual.visual.norm.", "model_visual.visual.head.")


class _VisualHolder(nn.Module):
    """``model_visual``: the EVA-CLIP wrapper of the reference, of which only ``visual`` is used."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.visual = EVAVisionTower(config)


class VisualBGEModel(nn.Module):
    """The joined towers. Build with :func:`load_model`; the constructor makes random weights.

    Args:
        text_config: the text model's transformers config (BERT or XLM-RoBERTa).
        vision: the EVA tower's config; its width must equal the text hidden size.
    """

    def __init__(self, text_config: Any, vision: VisionConfig):
        super().__init__()
        from transformers import AutoModel

        hidden = text_config.hidden_size
        if vision.width != hidden:
            raise ModelMismatch(f"vision tower {vision.name} has width {vision.width}, but the text model's hidden "
                                f"size is {hidden}; Visualized-BGE needs them equal")
        text = AutoModel.from_config(text_config)
        self.text_config = text_config
        self.vision = vision
        self.bge_embeddings = text.embeddings
        self.bge_encoder = text.encoder
        self.model_visual = _VisualHolder(vision)
        self.visual_proj = nn.Linear(hidden, hidden)
        max_positions = text_config.max_position_embeddings
        offset = text_config.pad_token_id + 1 if text_config.model_type in ("xlm-roberta", "roberta") else 0
        self.text_limit = max_positions - offset  # tokens of a text alone (XLM-R positions start after padding)
        self.composed_limit = max_positions - vision.num_patches  # text tokens next to an image (positions 0, P+1..)

    # ------------------------------------------------------------------ pieces
    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Every token of the EVA tower's last block, before its final norm. (B, 3, S, S) -> (B, 1 + P, H)."""
        return self.model_visual.visual(pixels.to(self.visual_proj.weight.dtype)).contiguous()

    def text_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """A text alone. (B, T) -> last hidden states (B, T, H)."""
        _check_length(input_ids.shape[1], self.text_limit, "text")
        emb = self.bge_embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))  # (B, T, H)
        return self._encode(emb, attention_mask)

    def composed_states(self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Image + text (text ``[CLS] [SEP]`` for an image alone).

        Returns ``(hidden, mask)``: (B, 1 + P + T - 1, H) and the matching (B, P + T) attention mask.
        """
        b, t = input_ids.shape
        if pixels.shape[0] != b:
            raise ValueError(f"{pixels.shape[0]} images but {b} texts; composed inputs pair one image with one text")
        _check_length(t, self.composed_limit, "text next to an image")
        device = input_ids.device
        patches = self.visual_proj(self.image_tokens(pixels)[:, 1:])  # (B, P, H), the EVA CLS dropped
        n = patches.shape[1]
        pos = self.bge_embeddings.position_embeddings(torch.arange(1, 1 + n, device=device))  # (P, H)
        patches = self.bge_embeddings.LayerNorm(patches + pos)
        text_pos = torch.cat([torch.zeros(1, dtype=torch.long, device=device),
                              torch.arange(1 + n, n + t, device=device)]).unsqueeze(0)  # (1, T): 0, P+1, ...
        text = self.bge_embeddings(input_ids=input_ids, position_ids=text_pos,
                                   token_type_ids=torch.zeros_like(input_ids))  # (B, T, H)
        seq = torch.cat([text[:, :1], patches, text[:, 1:]], dim=1)  # (B, 1 + P + T - 1, H)
        mask = torch.cat([torch.ones(b, n, dtype=attention_mask.dtype, device=device), attention_mask], dim=1)
        return self._encode(seq, mask), mask

    def _encode(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        additive = ((1.0 - mask[:, None, None, :].float()) * MASK_MIN).to(embeddings.dtype)  # (B, 1, 1, T)
        return self.bge_encoder(embeddings, attention_mask=additive)[0]


def _check_length(tokens: int, limit: int, what: str) -> None:
    if tokens > limit:
        raise ModelMismatch(f"a {what} of {tokens} tokens is beyond the model's position limit of {limit} tokens; "
                            "truncate it (bgekit.VisualEmbedder does, with max_length)")


def check_weights_file(path: Any) -> str:
    """``path`` as a string when it is an existing file; ModelFileError naming it otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"model_weight must be the path of the .pth checkpoint, got {type(path).__name__}")
    if not os.path.isfile(path):
        raise ModelFileError(f"Visualized-BGE weights {os.fspath(path)!r} do not exist (model_weight: the .pth "
                             "file, e.g. Visualized_base_en_v1.5.pth)")
    return os.fspath(path)


def read_state_dict(path: str) -> dict:
    """The reference checkpoint's tensors (a ``torch.save``d state dict), read without unpickling code."""
    check_weights_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is reported naming it
        raise ModelError(f"cannot read the Visualized-BGE weights {path}: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} is not a state dict of tensors (save it with torch.save(model.state_dict()))")
    return state


def load_weights(model: VisualBGEModel, state: dict, where: str) -> dict:
    """Fill ``model`` from the reference state dict; every key is accounted for or the error lists them.

    Returns the stored tensors the model does not hold (RoPE copies, the unused pooler, norm, head and
    logit scale), so a save can write the reference's full layout again.

    The RoPE tables the reference stores (three copies) are checked against the config's, so a checkpoint
    paired with the wrong tower config fails here instead of giving wrong vectors.
    """
    state = dict(state)
    extras = {}
    cos, sin = rope_tables(model.vision)
    for key in [k for k in state if k.endswith((".rope.freqs_cos", ".rope.freqs_sin"))]:
        stored = extras[key] = state.pop(key)
        expected = cos if key.endswith("cos") else sin
        if stored.shape != expected.shape or not torch.allclose(stored.float(), expected, atol=1e-5):
            raise ModelMismatch(f"{where}: {key} does not match the RoPE of vision config {model.vision.name} "
                                f"(shape {tuple(stored.shape)} vs {tuple(expected.shape)}); wrong config for this checkpoint?")
    for key in [k for k in state if k.startswith(_UNUSED_PREFIXES)]:
        extras[key] = state.pop(key)
    own = model.state_dict()
    shapes = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and v.shape != own[k].shape]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected or shapes:
        raise ModelMismatch(f"{where} does not fit text model + vision config {model.vision.name}: "
                            f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, unexpected "
                            f"{unexpected[:8]}{'...' if len(unexpected) > 8 else ''}, shape mismatches {shapes[:4]}")
    model.load_state_dict(state, strict=True)
    return extras


def load_model(text_path: str, weights: str, vision: VisionConfig, dtype: Any = None) -> VisualBGEModel:
    """The model for a text-model folder (config only; its weights come from ``weights``), in eval mode."""
    from transformers import AutoConfig

    text_config = AutoConfig.from_pretrained(text_path)
    if text_config.model_type not in ("bert", "xlm-roberta", "roberta"):
        raise ModelMismatch(f"{text_path}: Visualized-BGE's text tower is BERT or XLM-RoBERTa, got "
                            f"model_type {text_config.model_type!r}")
    state = read_state_dict(weights)
    model = VisualBGEModel(text_config, vision)
    load_weights(model, state, weights)
    if dtype is not None:
        model.to(dtype)
    return model.eval()
