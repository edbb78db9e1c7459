"""FlagEmbedding's module ``FlagEmbedding.abc.inference.AbsReranker``: a thin shim over :mod:`bgekit.compat.abstract`."""
from __future__ import annotations

from bgekit.compat.abstract import AbsReranker

__all__ = ["AbsReranker"]
