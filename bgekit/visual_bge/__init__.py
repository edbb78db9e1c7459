"""The module path of FlagEmbedding's research package ``visual_bge``: ``from bgekit.visual_bge.modeling import
Visualized_BGE`` replaces ``from visual_bge.modeling import Visualized_BGE``. The code lives in bgekit.visual."""
