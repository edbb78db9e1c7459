"""FlagEmbedding's module path ``FlagEmbedding.inference.embedder.encoder_only``: a thin shim over :mod:`bgekit.compat` (names load lazily)."""
from __future__ import annotations

from bgekit._lazy import lazy_names

_LAZY = {
    "FlagModel": "bgekit.compat.embedder",
    "BGEM3FlagModel": "bgekit.compat.m3",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.inference.embedder.encoder_only", _LAZY, globals())
