"""FlagEmbedding's module ``FlagEmbedding.abc.inference.AbsEmbedder``: a thin shim over :mod:`bgekit.compat.abstract`."""
from __future__ import annotations

from bgekit.compat.abstract import AbsEmbedder

__all__ = ["AbsEmbedder"]
