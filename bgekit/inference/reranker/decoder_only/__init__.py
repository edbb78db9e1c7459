"""FlagEmbedding's module path ``FlagEmbedding.inference.reranker.decoder_only``: a thin shim over :mod:`bgekit.compat` (names load lazily)."""
from __future__ import annotations

from bgekit._lazy import lazy_names

_LAZY = {
    "FlagLLMReranker": "bgekit.compat.reranker",
    "LayerWiseFlagLLMReranker": "bgekit.compat.layerwise",
    "LightWeightFlagLLMReranker": "bgekit.compat.layerwise",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.inference.reranker.decoder_only", _LAZY, globals())
