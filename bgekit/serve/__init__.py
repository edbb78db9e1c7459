"""The HTTP server: an app factory over an engine (model, index) and a coalescing batcher.

``create_app`` builds the FastAPI app; ``ServeConfig`` holds its limits. Names load lazily so importing the
package does not import FastAPI.
"""
from __future__ import annotations

from bgekit._lazy import lazy_names

_LAZY = {
    "create_app": "bgekit.serve.app",
    "ServeConfig": "bgekit.serve.engine",
    "Engine": "bgekit.serve.engine",
}

__getattr__, __dir__, __all__ = lazy_names("bgekit.serve", _LAZY, globals())
