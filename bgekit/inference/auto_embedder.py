"""FlagEmbedding's module ``FlagEmbedding.inference.auto_embedder``: a thin shim over :mod:`bgekit.compat.embedder`."""
from __future__ import annotations

from bgekit.compat.embedder import FlagAutoModel

__all__ = ["FlagAutoModel"]
