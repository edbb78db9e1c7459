"""``visual_bge.modeling`` of FlagEmbedding's research code: ``Visualized_BGE`` (see bgekit.visual.compat)."""
from bgekit.visual.compat import Visualized_BGE

__all__ = ["Visualized_BGE"]
