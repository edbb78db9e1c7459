"""FlagEmbedding's module ``FlagEmbedding.inference.embedder.decoder_only.icl``: a thin shim over :mod:`bgekit.compat.embedder`."""
from __future__ import annotations

from bgekit.compat.embedder import FlagICLModel as ICLLLMEmbedder

__all__ = ["ICLLLMEmbedder"]
