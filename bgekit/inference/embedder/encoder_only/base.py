"""FlagEmbedding's module ``FlagEmbedding.inference.embedder.encoder_only.base``: a thin shim over :mod:`bgekit.compat.embedder`."""
from __future__ import annotations

from bgekit.compat.embedder import FlagModel as BaseEmbedder

__all__ = ["BaseEmbedder"]
