"""FlagEmbedding's module path ``FlagEmbedding.inference.embedder.decoder_only``: a thin shim over :mod:`bgekit.compat` (names load lazily)."""
from __future__ import annotations

from bgekit._lazy import lazy_names

_LAZY = {
    "FlagLLMModel": "bgekit.compat.embedder",
    "FlagICLModel": "bgekit.compat.embedder",
    "FlagPseudoMoEModel": "bgekit.compat.pseudo_moe",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.inference.embedder.decoder_only", _LAZY, globals())
