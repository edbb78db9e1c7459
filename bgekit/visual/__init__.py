"""Visualized-BGE: BGE text towers with EVA02 image tokens, so texts, images and image + text share one space.

- :class:`bgekit.visual.embedder.VisualEmbedder` - the native API (``bgekit.VisualEmbedder``);
- :class:`bgekit.visual.compat.Visualized_BGE` - FlagEmbedding's research class (``bgekit.Visualized_BGE``);
- :mod:`bgekit.visual.model`, :mod:`bgekit.visual.eva`, :mod:`bgekit.visual.config`, :mod:`bgekit.visual.images`
  - the towers, their configs and the Pillow + numpy image preprocessing.

Names load lazily: importing this package imports neither torch nor Pillow.
"""
from __future__ import annotations

from bgekit._lazy import lazy_names

_LAZY = {
    "VisualEmbedder": "bgekit.visual.embedder",
    "Visualized_BGE": "bgekit.visual.compat",
    "VisionConfig": "bgekit.visual.config",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.visual", _LAZY, globals())
