"""FlagEmbedding's module ``FlagEmbedding.inference.embedder.model_mapping``: views of bgekit's model table
(see :mod:`bgekit.compat.model_mapping`)."""
from __future__ import annotations

from bgekit.compat.abstract import AbsEmbedder
from bgekit.compat.embedder import FlagICLModel, FlagLLMModel, FlagModel
from bgekit.compat.m3 import BGEM3FlagModel
from bgekit.compat.model_mapping import (AUTO_EMBEDDER_MAPPING, BCE_MAPPING, BGE_MAPPING, E5_MAPPING,
                                         EMBEDDER_CLASS_MAPPING, GTE_MAPPING, LINQ_MAPPING, QWEN3_EMBEDDING_MAPPING,
                                         SFR_MAPPING, EmbedderConfig, EmbedderModelClass, PoolingMethod,
                                         support_model_list, support_native_bge_model_list)
from bgekit.compat.pseudo_moe import FlagPseudoMoEModel

__all__ = ["AUTO_EMBEDDER_MAPPING", "AbsEmbedder", "BCE_MAPPING", "BGEM3FlagModel", "BGE_MAPPING", "E5_MAPPING",
           "EMBEDDER_CLASS_MAPPING", "EmbedderConfig", "EmbedderModelClass", "FlagICLModel", "FlagLLMModel",
           "FlagModel", "FlagPseudoMoEModel", "GTE_MAPPING", "LINQ_MAPPING", "PoolingMethod",
           "QWEN3_EMBEDDING_MAPPING", "SFR_MAPPING", "support_model_list", "support_native_bge_model_list"]
