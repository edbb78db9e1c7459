"""The vision tower's architecture: the two published EVA02-CLIP configs by name, or a JSON beside a checkpoint.

Visualized-BGE picks its EVA tower from the text model's name: ``bge-base-en-v1.5`` runs EVA02-CLIP-B-16 and
``bge-m3`` runs EVA02-CLIP-L-14. Any other checkpoint (a tiny test model, a retrained tower) carries its config
as an ``EVA02-CLIP-*.json`` file (the EVA-CLIP ``model_configs`` layout) in the checkpoint's folder.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from bgekit.errors import ModelError, ModelFileError, UsageError


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """An EVA02 vision tower: what the reference's ``vision_cfg`` says, the flags this port supports.

    Attributes:
        name: the config's name (``EVA02-CLIP-B-16``, or the JSON file's stem).
        image_size: input side in pixels (square).
        patch_size: side of a patch; the grid is ``image_size // patch_size`` squared.
        width: token width (must equal the text tower's hidden size).
        layers: number of transformer blocks.
        head_width: width of one attention head.
        mlp_ratio: SwiGLU hidden width is ``int(width * mlp_ratio)``.
        pt_hw_seq_len: RoPE's pre-training grid side (positions are interpolated to it).
        intp_freq: interpolate RoPE positions to the pre-training grid.
    """

    name: str
    image_size: int = 224
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    head_width: int = 64
    mlp_ratio: float = 2.6667
    pt_hw_seq_len: int = 16
    intp_freq: bool = True

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Image tokens the text tower receives (the EVA CLS token is dropped)."""
        return self.grid * self.grid

    @property
    def heads(self) -> int:
        return self.width // self.head_width

    @property
    def mlp_hidden(self) -> int:
        return int(self.width * self.mlp_ratio)


# The published towers (EVA02-CLIP model_configs, vision part).
NAMED_CONFIGS: dict[str, VisionConfig] = {
    "EVA02-CLIP-B-16": VisionConfig("EVA02-CLIP-B-16", image_size=224, patch_size=16, width=768, layers=12),
    "EVA02-CLIP-L-14": VisionConfig("EVA02-CLIP-L-14", image_size=224, patch_size=14, width=1024, layers=24),
}
# substring of the text model's name -> tower, in the order the reference tests them
TEXT_MODEL_TOWERS: dict[str, str] = {"bge-base-en-v1.5": "EVA02-CLIP-B-16", "bge-m3": "EVA02-CLIP-L-14"}

# Flags of the EVA-CLIP JSON that this port implements, with the only value it supports. The attention
# kernel (xattn), fused LayerNorm and patch dropout change nothing at inference, so any value is accepted.
_REQUIRED_FLAGS = {"rope": True, "naiveswiglu": True, "subln": True, "qkv_bias": True, "postnorm": False,
                   "global_average_pool": False, "ls_init_value": None}
_IGNORED = {"eva_model_name", "drop_path_rate", "xattn", "fusedLN", "patch_dropout"}
_FIELDS = {f.name for f in dataclasses.fields(VisionConfig)} - {"name"}


def from_dict(name: str, cfg: dict[str, Any], where: str) -> VisionConfig:
    """A VisionConfig from an EVA-CLIP ``model_configs`` dict (the ``vision_cfg`` inside it).

    Raises:
        ModelError: no ``vision_cfg``, an unknown key, or a flag this port does not implement (all named).
    """
    vision = cfg.get("vision_cfg") if isinstance(cfg, dict) else None
    if not isinstance(vision, dict):
        raise ModelError(f"{where}: an EVA-CLIP config needs a 'vision_cfg' object")
    unknown = sorted(set(vision) - _FIELDS - set(_REQUIRED_FLAGS) - _IGNORED)
    if unknown:
        raise ModelError(f"{where}: unknown vision_cfg keys {unknown}; known: {sorted(_FIELDS | set(_REQUIRED_FLAGS) | _IGNORED)}")
    defaults = {"qkv_bias": True, "postnorm": False, "global_average_pool": False, "ls_init_value": None}
    for flag, wanted in _REQUIRED_FLAGS.items():
        got = vision.get(flag, defaults.get(flag))
        if got != wanted:
            raise ModelError(f"{where}: vision_cfg {flag}={got!r} is not supported (Visualized-BGE's EVA02 towers "
                             f"use {flag}={wanted!r})")
    values = {k: vision[k] for k in _FIELDS if k in vision}
    for key in ("image_size", "patch_size", "width", "layers", "head_width", "pt_hw_seq_len"):
        if key in values and (isinstance(values[key], bool) or not isinstance(values[key], int) or values[key] < 1):
            raise ModelError(f"{where}: vision_cfg {key} must be a positive integer, got {values[key]!r}")
    config = VisionConfig(name, **values)
    if config.image_size % config.patch_size or config.width % config.head_width or (config.head_width // 2) % 2:
        raise ModelError(f"{where}: image_size must be a multiple of patch_size, width of head_width, and "
                         f"head_width of 4 (got {config.image_size}, {config.patch_size}, {config.width}, "
                         f"{config.head_width})")
    return config


def read_json(path: str) -> VisionConfig:
    """The config in an EVA-CLIP JSON file (its stem is the name)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read the vision config ({e})") from None
    return from_dict(os.path.splitext(os.path.basename(path))[0], data, path)


def _beside(weights: str) -> list[str]:
    folder = os.path.dirname(os.path.abspath(weights))
    found = []
    for entry in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, entry)
        if entry.endswith(".json") and os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    if "vision_cfg" in json.load(f):
                        found.append(path)
            except (OSError, ValueError, TypeError):
                continue  # not an EVA-CLIP config
    return found


def resolve(text_model: str, weights: str, vision_config: Any = None) -> VisionConfig:
    """The tower for a checkpoint.

    Order: ``vision_config`` when given (a published name, a JSON path or a VisionConfig); else the published
    tower the text model's name selects (as the reference); else the one EVA-CLIP JSON beside ``weights``.

    Raises:
        UsageError: an unknown ``vision_config`` name.
        ModelError: no config found, or several JSON configs beside the checkpoint (all named).
    """
    if isinstance(vision_config, VisionConfig):
        return vision_config
    if isinstance(vision_config, str):
        if vision_config in NAMED_CONFIGS:
            return NAMED_CONFIGS[vision_config]
        if vision_config.endswith(".json") or os.path.sep in vision_config:
            return read_json(vision_config)
        raise UsageError(f"unknown vision_config {vision_config!r}; valid names: {', '.join(NAMED_CONFIGS)}, "
                         "or the path of an EVA-CLIP JSON config")
    if vision_config is not None:
        raise UsageError(f"vision_config must be a name, a JSON path or a VisionConfig, got {type(vision_config).__name__}")
    for fragment, name in TEXT_MODEL_TOWERS.items():
        if fragment in str(text_model):
            return NAMED_CONFIGS[name]
    found = _beside(weights)
    if len(found) == 1:
        return read_json(found[0])
    where = os.path.dirname(os.path.abspath(weights))
    if found:
        raise ModelError(f"several EVA-CLIP configs beside the checkpoint: {found}; pass vision_config= to choose")
    raise ModelError(f"no vision tower for text model {text_model!r}: its name contains none of "
                     f"{list(TEXT_MODEL_TOWERS)} (the published Visualized-BGE pairs) and {where} holds no "
                     "EVA-CLIP JSON config (a file with a 'vision_cfg' object, e.g. EVA02-CLIP-tiny.json)")
