"""FlagEmbedding's public surface (class names, signatures, defaults) over bgekit's native API.

Nothing in the native API imports this package. Names load lazily.
"""
from __future__ import annotations

from bgekit._lazy import lazy_names

_LAZY = {
    "FlagAutoModel": "bgekit.compat.embedder",
    "FlagModel": "bgekit.compat.embedder",
    "FlagLLMModel": "bgekit.compat.embedder",
    "FlagICLModel": "bgekit.compat.embedder",
    "FlagPseudoMoEModel": "bgekit.compat.pseudo_moe",
    "AbsEmbedder": "bgekit.compat.abstract",
    "AbsReranker": "bgekit.compat.abstract",
    "EmbedderModelClass": "bgekit.compat.model_mapping",
    "RerankerModelClass": "bgekit.compat.model_mapping",
    "BGEM3FlagModel": "bgekit.compat.m3",
    "FlagAutoReranker": "bgekit.compat.reranker",
    "FlagReranker": "bgekit.compat.reranker",
    "FlagLLMReranker": "bgekit.compat.reranker",
    "LayerWiseFlagLLMReranker": "bgekit.compat.layerwise",
    "LightWeightFlagLLMReranker": "bgekit.compat.layerwise",
    "Visualized_BGE": "bgekit.visual.compat",  # research/visual_bge
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.compat", _LAZY, globals())
