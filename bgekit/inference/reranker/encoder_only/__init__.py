"""FlagEmbedding's module path ``FlagEmbedding.inference.reranker.encoder_only``: a thin shim over :mod:`bgekit.compat` (names load lazily)."""
from __future__ import annotations

from bgekit._lazy import lazy_names

_LAZY = {
    "FlagReranker": "bgekit.compat.reranker",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.inference.reranker.encoder_only", _LAZY, globals())
