"""FlagEmbedding's module ``FlagEmbedding.inference.reranker.model_mapping``: views of bgekit's model table
(see :mod:`bgekit.compat.model_mapping`)."""
from __future__ import annotations

from bgekit.compat.abstract import AbsReranker
from bgekit.compat.layerwise import LayerWiseFlagLLMReranker, LightWeightFlagLLMReranker
from bgekit.compat.model_mapping import AUTO_RERANKER_MAPPING, RERANKER_CLASS_MAPPING, RerankerConfig, RerankerModelClass
from bgekit.compat.reranker import FlagLLMReranker, FlagReranker

__all__ = ["AUTO_RERANKER_MAPPING", "AbsReranker", "FlagLLMReranker", "FlagReranker", "LayerWiseFlagLLMReranker",
           "LightWeightFlagLLMReranker", "RERANKER_CLASS_MAPPING", "RerankerConfig", "RerankerModelClass"]
