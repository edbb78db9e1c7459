"""FlagEmbedding's module ``FlagEmbedding.inference.embedder.decoder_only.base``: a thin shim over :mod:`bgekit.compat.embedder`."""
from __future__ import annotations

from bgekit.compat.embedder import FlagLLMModel as BaseLLMEmbedder

__all__ = ["BaseLLMEmbedder"]
