"""FlagEmbedding's module ``FlagEmbedding.inference.embedder.decoder_only.pseudo_moe``: a thin shim over :mod:`bgekit.compat.pseudo_moe`."""
from __future__ import annotations

from bgekit.compat.pseudo_moe import FlagPseudoMoEModel as PseudoMoELLMEmbedder

__all__ = ["PseudoMoELLMEmbedder"]
