"""FlagEmbedding's module path ``FlagEmbedding.abc.inference``: the base classes ``AbsEmbedder`` and ``AbsReranker``
(:mod:`bgekit.compat.abstract`). Imported eagerly, as in FlagEmbedding, so the names are the classes even after
the same-named submodules are imported."""
from __future__ import annotations

from bgekit.abc.inference.AbsEmbedder import AbsEmbedder
from bgekit.abc.inference.AbsReranker import AbsReranker

__all__ = ["AbsEmbedder", "AbsReranker"]
