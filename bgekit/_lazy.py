"""Lazy public names for a package: ``name -> module`` resolved on first access (PEP 562).

Keeps ``import bgekit`` (and its subpackages) light: torch, transformers, faiss and friends load only when a name
that needs them is used.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_names(package: str, names: dict[str, str], namespace: dict[str, Any]) -> tuple[Callable, Callable, list[str]]:
    """Return ``(__getattr__, __dir__, __all__)`` for ``package`` whose public ``names`` live in other modules.

    A resolved name is stored in ``namespace`` (the package's globals) so the lookup runs once.
    """
    public = sorted(names)

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return list(namespace.get("__all__", public))

    return __getattr__, __dir__, public
