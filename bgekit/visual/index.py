"""Visualized-BGE in the persisted index: what the index records about the model, reloading it, and encoding.

An index built with a :class:`~bgekit.visual.embedder.VisualEmbedder` stores dense vectors only. Its documents
may carry an image (``metadata["image"]``, an absolute path resolved when the corpus is read) and an optional
text. The manifest's model entry records the weights file (absolute path, size and a fingerprint) and the
embedding of a fixed synthetic image, so a reopened index reloads the same checkpoint and refuses another.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Sequence

import numpy as np

FINGERPRINT_BYTES = 1 << 20  # read from the start and the end of the weights file


def is_visual(model: Any) -> bool:
    """True for a Visualized-BGE embedder."""
    return bool(getattr(model, "visual", False))


def fingerprint(path: str) -> str:
    """sha256 of the file's size, its first and last MiB: cheap for a 2 GB checkpoint, distinct for another one."""
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(FINGERPRINT_BYTES))
        if size > FINGERPRINT_BYTES:
            f.seek(max(FINGERPRINT_BYTES, size - FINGERPRINT_BYTES))
            h.update(f.read())
    return h.hexdigest()


def probe_image() -> np.ndarray:
    """A fixed 32x32 RGB picture (gradients and a square) whose embedding tests the vision tower's weights."""
    y, x = np.mgrid[0:32, 0:32]
    img = np.stack([x * 8, y * 8, (x + y) * 4], axis=-1).astype(np.uint8)
    img[8:20, 10:22] = (230, 40, 60)
    return img


def describe(model: Any) -> dict:
    """The ``ModelInfo`` fields of a Visualized-BGE embedder (see :mod:`bgekit.index.model_info`)."""
    from bgekit.index.model_info import PROBE_TEXT

    name = str(model.model_name_or_path)
    if os.path.isdir(name):
        name = os.path.abspath(name)
    weights = os.path.abspath(model.model_weight)
    probe = model.encode(texts=[PROBE_TEXT], convert_to_numpy=True, show_progress=False)[0]
    image_probe = model.encode(images=[probe_image()], convert_to_numpy=True, show_progress=False)[0]
    visual = {"weights": weights, "size": os.path.getsize(weights), "fingerprint": fingerprint(weights),
              "vision": model.vision.name, "vision_config": dataclasses.asdict(model.vision), "image_probe": [float(v) for v in image_probe]}
    return dict(name=name, kind="visual", dim=int(model.dim), pooling=model.pooling_method,
                normalize=bool(model.normalize_embeddings), passage_max_length=model.max_length,
                spec={}, probe=[float(v) for v in probe], visual=visual)


def check(mine: dict | None, theirs: dict | None, index_model: str, use: str) -> str | None:
    """Why the ``use`` model's visual record differs from the index's, or None when it is the same checkpoint."""
    if mine is None and theirs is None:
        return None
    if mine is None:
        return f"the index was built with the text model {index_model!r}, not a Visualized-BGE checkpoint"
    if theirs is None:
        return (f"the index was built with the Visualized-BGE checkpoint {mine['weights']!r}; the {use} model is a "
                "text embedder. Load the checkpoint with --visual-weights")
    if mine["fingerprint"] != theirs["fingerprint"]:
        return (f"the index was built with the Visualized-BGE weights {mine['weights']!r}; the {use} model's "
                f"weights {theirs['weights']!r} are another file (fingerprint differs)")
    a, b = np.asarray(mine["image_probe"], np.float64), np.asarray(theirs["image_probe"], np.float64)
    cos = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
    if cos < 0.999:
        return f"the {use} model's vision tower does not reproduce the index's image probe (cosine {cos:.4f})"
    return None


def load(info: Any, weights: str | None = None, **kwargs: Any):
    """The index's Visualized-BGE model: its recorded text model, weights (or ``weights``), vision tower, pooling.

    Raises:
        ModelFileError: the recorded weights file is gone (name the file; give --visual-weights).
    """
    from bgekit.errors import ModelFileError
    from bgekit.visual.config import VisionConfig
    from bgekit.visual.embedder import VisualEmbedder

    weights = weights or info.visual["weights"]
    if not os.path.isfile(weights):
        raise ModelFileError(f"the index's Visualized-BGE weights {weights!r} do not exist; give the checkpoint's "
                             "new place with --visual-weights")
    vision = VisionConfig(**info.visual["vision_config"])  # the recorded tower: no config file needed beside
    return VisualEmbedder(info.name, weights, vision_config=vision, pooling=info.pooling or "cls",
                          normalize=info.normalize, **kwargs)


def encode(model: Any, texts: Sequence[str | None], images: Sequence[Any] | None, outputs: Sequence[str],
           batch_size: int | None = None, show_progress: bool | None = False) -> np.ndarray:
    """(N, D) float32 dense vectors of texts, images or image + text rows (an empty text next to an image: none).

    Raises:
        ValueError: outputs other than dense (Visualized-BGE has no sparse or ColBERT head).
    """
    extra = sorted(set(outputs) - {"dense"})
    if extra:
        raise ValueError(f"outputs {extra} need a BGE-M3 model; a Visualized-BGE index holds dense vectors only "
                         "(search it with mode='dense')")
    images = list(images) if images is not None else [None] * len(texts)
    texts = [t if t else None for t in texts]
    if any(t is None and i is None for t, i in zip(texts, images)):
        raise ValueError("every row needs a text or an image")
    return np.asarray(model.encode(texts=texts if any(t is not None for t in texts) else None,
                                   images=images if any(i is not None for i in images) else None,
                                   batch_size=batch_size, convert_to_numpy=True, show_progress=show_progress),
                      dtype=np.float32).reshape(len(texts), -1)
