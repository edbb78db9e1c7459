"""FlagEmbedding's module ``FlagEmbedding.inference.reranker.decoder_only.base``: a thin shim over :mod:`bgekit.compat.reranker`."""
from __future__ import annotations

from bgekit.compat.reranker import FlagLLMReranker as BaseLLMReranker

__all__ = ["BaseLLMReranker"]
