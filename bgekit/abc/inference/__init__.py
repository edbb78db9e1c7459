"""FlagEmbedding's module path ``FlagEmbedding.abc.inference``: a thin shim over :mod:`bgekit.compat` (names load lazily)."""
from __future__ import annotations

from bgekit._lazy import lazy_names

_LAZY = {
    "AbsEmbedder": "bgekit.compat.abstract",
    "AbsReranker": "bgekit.compat.abstract",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.abc.inference", _LAZY, globals())
