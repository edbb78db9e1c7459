"""Pick the native embedder class for a model: an :class:`~bgekit.encoder.Embedder` or, for BGE-M3 models, an
:class:`~bgekit.m3.M3Embedder`. It sits above both modules so neither imports the other for it."""
from __future__ import annotations

from typing import Any

from bgekit import backends
from bgekit.encoder import Embedder
from bgekit.m3 import M3Embedder
from bgekit.registry import DEFAULT_MODEL, resolve


def load_embedder(model_name_or_path: str = DEFAULT_MODEL, **kwargs: Any) -> Embedder:
    """The right embedder class for a model: an :class:`Embedder`, or an M3 embedder for BGE-M3 models.

    Example:
        >>> emb = load_embedder("all-MiniLM-L6-v2")
    """
    spec = kwargs.pop("spec", None)
    if spec is None:
        spec = resolve(model_name_or_path, folder=backends.locate(model_name_or_path, kwargs.get("cache_dir")))
    if spec.kind == "m3":
        return M3Embedder(model_name_or_path, spec=spec, **kwargs)
    return Embedder(model_name_or_path, spec=spec, **kwargs)
