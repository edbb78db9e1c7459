"""FlagEmbedding's module path ``FlagEmbedding.inference.embedder``: a thin shim over :mod:`bgekit.compat` (names load lazily)."""
from __future__ import annotations

from bgekit._lazy import lazy_names

_LAZY = {
    "FlagModel": "bgekit.compat.embedder",
    "BGEM3FlagModel": "bgekit.compat.m3",
    "FlagICLModel": "bgekit.compat.embedder",
    "FlagLLMModel": "bgekit.compat.embedder",
    "FlagPseudoMoEModel": "bgekit.compat.pseudo_moe",
    "EmbedderModelClass": "bgekit.compat.model_mapping",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.inference.embedder", _LAZY, globals())
