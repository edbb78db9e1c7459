"""FlagEmbedding's module ``FlagEmbedding.inference.reranker.encoder_only.base``: a thin shim over :mod:`bgekit.compat.reranker`."""
from __future__ import annotations

from bgekit.compat.reranker import FlagReranker as BaseReranker

__all__ = ["BaseReranker"]
