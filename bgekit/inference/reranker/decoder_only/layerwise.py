"""FlagEmbedding's module ``FlagEmbedding.inference.reranker.decoder_only.layerwise``: a thin shim over :mod:`bgekit.compat.layerwise`."""
from __future__ import annotations

from bgekit.compat.layerwise import LayerWiseFlagLLMReranker as LayerWiseLLMReranker

__all__ = ["LayerWiseLLMReranker"]
