"""FlagEmbedding's model-mapping names (``EmbedderModelClass``, ``AUTO_EMBEDDER_MAPPING``, ``RerankerConfig``...)
as views of bgekit's one model table, :mod:`bgekit.registry`: nothing here is a second table.

Differences (docs/compat.md, "Model mapping"): the mappings also hold the names bgekit adds to its table
(``all-MiniLM-L6-v2``); reranker keys are the bare model names that lookups use (FlagEmbedding keys three of
them with their hub organisation, which its basename lookup never matches); jina and gte rerankers have
``trust_remote_code=True``, which they need to load.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from bgekit import registry
from bgekit.compat.abstract import AbsEmbedder, AbsReranker
from bgekit.compat.embedder import FlagICLModel, FlagLLMModel, FlagModel
from bgekit.compat.layerwise import LayerWiseFlagLLMReranker, LightWeightFlagLLMReranker
from bgekit.compat.m3 import BGEM3FlagModel
from bgekit.compat.pseudo_moe import FlagPseudoMoEModel
from bgekit.compat.reranker import FlagLLMReranker, FlagReranker


class EmbedderModelClass(Enum):
    """FlagAutoModel's ``model_class`` values."""

    ENCODER_ONLY_BASE = "encoder-only-base"
    ENCODER_ONLY_M3 = "encoder-only-m3"
    DECODER_ONLY_BASE = "decoder-only-base"
    DECODER_ONLY_ICL = "decoder-only-icl"
    DECODER_ONLY_PSEUDO_MOE = "decoder-only-pseudo_moe"


class RerankerModelClass(Enum):
    """FlagAutoReranker's ``model_class`` values."""

    ENCODER_ONLY_BASE = "encoder-only-base"
    DECODER_ONLY_BASE = "decoder-only-base"
    DECODER_ONLY_LAYERWISE = "decoder-only-layerwise"
    DECODER_ONLY_LIGHTWEIGHT = "decoder-only-lightweight"


class PoolingMethod(Enum):
    LAST_TOKEN = "last_token"
    CLS = "cls"
    MEAN = "mean"


@dataclass
class EmbedderConfig:
    """One row of AUTO_EMBEDDER_MAPPING."""

    model_class: type[AbsEmbedder]
    pooling_method: PoolingMethod
    trust_remote_code: bool = False
    query_instruction_format: str = "{}{}"


@dataclass
class RerankerConfig:
    """One row of AUTO_RERANKER_MAPPING."""

    model_class: type[AbsReranker]
    trust_remote_code: bool = False


EMBEDDER_CLASS_MAPPING = OrderedDict([
    (EmbedderModelClass.ENCODER_ONLY_BASE, FlagModel),
    (EmbedderModelClass.ENCODER_ONLY_M3, BGEM3FlagModel),
    (EmbedderModelClass.DECODER_ONLY_BASE, FlagLLMModel),
    (EmbedderModelClass.DECODER_ONLY_ICL, FlagICLModel),
    (EmbedderModelClass.DECODER_ONLY_PSEUDO_MOE, FlagPseudoMoEModel),
])
RERANKER_CLASS_MAPPING = OrderedDict([
    (RerankerModelClass.ENCODER_ONLY_BASE, FlagReranker),
    (RerankerModelClass.DECODER_ONLY_BASE, FlagLLMReranker),
    (RerankerModelClass.DECODER_ONLY_LAYERWISE, LayerWiseFlagLLMReranker),
    (RerankerModelClass.DECODER_ONLY_LIGHTWEIGHT, LightWeightFlagLLMReranker),
])

# registry kinds -> FlagEmbedding classes
_EMBEDDER_KIND = {"encoder": FlagModel, "m3": BGEM3FlagModel, "decoder": FlagLLMModel, "icl": FlagICLModel}
_RERANKER_KIND = {"cross-encoder": FlagReranker, "llm": FlagLLMReranker, "layerwise": LayerWiseFlagLLMReranker,
                  "lightweight": LightWeightFlagLLMReranker}


def _embedder_config(spec: registry.ModelSpec) -> EmbedderConfig:
    return EmbedderConfig(_EMBEDDER_KIND[spec.kind], PoolingMethod(spec.pooling), spec.trust_remote_code,
                          spec.query_instruction_format)


def _family(keep: Callable[[str], bool]) -> OrderedDict:
    return OrderedDict((name, _embedder_config(spec)) for name, spec in registry.EMBEDDERS.items() if keep(name))


BGE_MAPPING = _family(lambda n: n.startswith("bge-"))
QWEN3_EMBEDDING_MAPPING = _family(lambda n: n.startswith("Qwen3-Embedding"))
E5_MAPPING = _family(lambda n: n.startswith(("e5-", "multilingual-e5")))
GTE_MAPPING = _family(lambda n: n.startswith("gte-"))
SFR_MAPPING = _family(lambda n: n.startswith("SFR-"))
LINQ_MAPPING = _family(lambda n: n.startswith("Linq-"))
BCE_MAPPING = _family(lambda n: n.startswith("bce-"))
AUTO_EMBEDDER_MAPPING = _family(lambda n: True)

AUTO_RERANKER_MAPPING = OrderedDict(
    (name, RerankerConfig(_RERANKER_KIND[spec.kind], spec.trust_remote_code)) for name, spec in registry.RERANKERS.items()
)


def support_native_bge_model_list() -> list[str]:
    """The BGE embedder names FlagAutoModel resolves by name."""
    return list(BGE_MAPPING)


def support_model_list() -> list[str]:
    """Every embedder name FlagAutoModel resolves by name."""
    return list(AUTO_EMBEDDER_MAPPING)
