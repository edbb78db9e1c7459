"""FlagEmbedding's module ``FlagEmbedding.inference.embedder.encoder_only.m3``: a thin shim over :mod:`bgekit.compat.m3`."""
from __future__ import annotations

from bgekit.compat.m3 import BGEM3FlagModel as M3Embedder

__all__ = ["M3Embedder"]
