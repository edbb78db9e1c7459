"""FlagEmbedding's module path ``FlagEmbedding.inference.reranker``: a thin shim over :mod:`bgekit.compat` (names load lazily)."""
from __future__ import annotations

from bgekit._lazy import lazy_names

_LAZY = {
    "FlagReranker": "bgekit.compat.reranker",
    "FlagLLMReranker": "bgekit.compat.reranker",
    "LayerWiseFlagLLMReranker": "bgekit.compat.layerwise",
    "LightWeightFlagLLMReranker": "bgekit.compat.layerwise",
    "RerankerModelClass": "bgekit.compat.model_mapping",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.inference.reranker", _LAZY, globals())
