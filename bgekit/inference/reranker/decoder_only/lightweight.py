"""FlagEmbedding's module ``FlagEmbedding.inference.reranker.decoder_only.lightweight``: a thin shim over :mod:`bgekit.compat.layerwise`."""
from __future__ import annotations

from bgekit.compat.layerwise import LightWeightFlagLLMReranker as LightweightLLMReranker

__all__ = ["LightweightLLMReranker"]
