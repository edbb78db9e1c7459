"""FlagEmbedding's module path ``FlagEmbedding.inference``: a thin shim over :mod:`bgekit.compat` (names load lazily)."""
from __future__ import annotations

from bgekit._lazy import lazy_names

_LAZY = {
    "FlagAutoModel": "bgekit.compat.embedder",
    "FlagAutoReranker": "bgekit.compat.reranker",
    "EmbedderModelClass": "bgekit.compat.model_mapping",
    "RerankerModelClass": "bgekit.compat.model_mapping",
    "FlagModel": "bgekit.compat.embedder",
    "BGEM3FlagModel": "bgekit.compat.m3",
    "FlagICLModel": "bgekit.compat.embedder",
    "FlagLLMModel": "bgekit.compat.embedder",
    "FlagPseudoMoEModel": "bgekit.compat.pseudo_moe",
    "FlagReranker": "bgekit.compat.reranker",
    "FlagLLMReranker": "bgekit.compat.reranker",
    "LayerWiseFlagLLMReranker": "bgekit.compat.layerwise",
    "LightWeightFlagLLMReranker": "bgekit.compat.layerwise",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.inference", _LAZY, globals())
