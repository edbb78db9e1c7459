"""FlagEmbedding's module ``FlagEmbedding.inference.auto_reranker``: a thin shim over :mod:`bgekit.compat.reranker`."""
from __future__ import annotations

from bgekit.compat.reranker import FlagAutoReranker

__all__ = ["FlagAutoReranker"]
