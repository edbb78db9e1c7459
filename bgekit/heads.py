"""BGE-M3 heads on top of the encoder's token states: load, apply, save.

A BGE-M3 folder holds two small linear layers beside the transformer weights, as plain state dicts:

- ``colbert_linear.pt``: Linear(hidden, colbert_dim), one multi-vector per token after ``<s>``;
- ``sparse_linear.pt``: Linear(hidden, 1), a ReLU'd weight per token (the lexical weights).

They are read with ``torch.load(weights_only=True)`` (no pickle code runs) and written the same way, so a
fine-tuned folder saved with :func:`save_heads` loads here and in FlagEmbedding.
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import torch

from bgekit.errors import ModelMismatch
from bgekit.types import SparseVector

COLBERT_FILE = "colbert_linear.pt"
SPARSE_FILE = "sparse_linear.pt"


class M3Heads(torch.nn.Module):
    """The ColBERT and sparse projections of BGE-M3.

    Args:
        hidden_size: the encoder's hidden size.
        colbert_dim: output size of the ColBERT projection; -1 (or 0) means ``hidden_size``.
        dtype: parameter dtype.
    """

    def __init__(self, hidden_size: int, colbert_dim: int = -1, dtype: torch.dtype | None = None):
        super().__init__()
        out = hidden_size if colbert_dim is None or colbert_dim <= 0 else colbert_dim
        self.colbert = torch.nn.Linear(hidden_size, out, dtype=dtype)
        self.sparse = torch.nn.Linear(hidden_size, 1, dtype=dtype)

    @property
    def colbert_dim(self) -> int:
        return self.colbert.out_features

    def token_weights(self, hidden: torch.Tensor) -> torch.Tensor:
        """Lexical weight of every position. (B, T, H) -> (B, T), >= 0."""
        return torch.relu(self.sparse(hidden)).squeeze(-1)

    def colbert_vecs(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ColBERT vectors of every position but the first (``<s>``), zero at padding. (B, T, H) -> (B, T-1, C)."""
        vecs = self.colbert(hidden[:, 1:])  # (B, T-1, C)
        return vecs * mask[:, 1:, None].to(vecs.dtype)


def load_heads(folder: str, hidden_size: int, colbert_dim: int = -1, dtype: torch.dtype = torch.float32) -> M3Heads:
    """Load the two heads of a BGE-M3 folder.

    Args:
        folder: the model folder.
        hidden_size: the encoder's hidden size (the heads' input size).
        colbert_dim: expected ColBERT output size; -1 takes it from the file.
        dtype: dtype to run the heads in.

    Returns:
        The heads, in eval mode.

    Raises:
        FileNotFoundError: a head file is missing (the folder is not a BGE-M3 checkpoint).
        ValueError: a head file does not hold a Linear state dict of the right shape.
    """
    paths = {name: os.path.join(folder, name) for name in (COLBERT_FILE, SPARSE_FILE)}
    missing = [name for name, path in paths.items() if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f"{folder!r} lacks {' and '.join(missing)}: a BGE-M3 model folder holds colbert_linear.pt and "
            "sparse_linear.pt beside the encoder weights. Use a complete BGE-M3 checkpoint, or a dense-only "
            "class (bgekit.Embedder / FlagModel) for a plain encoder."
        )
    colbert = _read_linear(paths[COLBERT_FILE], hidden_size)
    sparse = _read_linear(paths[SPARSE_FILE], hidden_size, out_features=1)
    found = colbert["weight"].shape[0]
    if colbert_dim is not None and colbert_dim > 0 and colbert_dim != found:
        raise ValueError(f"colbert_dim={colbert_dim} but {paths[COLBERT_FILE]} projects to {found} dimensions")
    heads = M3Heads(hidden_size, found, dtype=dtype)
    heads.colbert.load_state_dict(colbert)
    heads.sparse.load_state_dict(sparse)
    return heads.eval()


def _read_linear(path: str, in_features: int, out_features: int | None = None) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ModelMismatch(f"{path}: cannot read it as a weights-only torch state dict ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or set(state) != {"weight", "bias"}:
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ModelMismatch(f"{path}: expected a Linear state dict with keys ['bias', 'weight'], got {keys}")
    weight, bias = state["weight"], state["bias"]
    if weight.ndim != 2 or weight.shape[1] != in_features or bias.shape != (weight.shape[0],):
        raise ModelMismatch(f"{path}: weight {tuple(weight.shape)} / bias {tuple(bias.shape)} do not fit a Linear({in_features}, n)")
    if out_features is not None and weight.shape[0] != out_features:
        raise ModelMismatch(f"{path}: expected {out_features} output(s), got {weight.shape[0]}")
    return state


def save_heads(heads: M3Heads, folder: str) -> list[str]:
    """Write the heads as ``colbert_linear.pt`` / ``sparse_linear.pt`` (CPU tensors), atomically.

    Returns:
        The two paths written.
    """
    from bgekit.io import atomic_open

    written = []
    for name, layer in ((COLBERT_FILE, heads.colbert), (SPARSE_FILE, heads.sparse)):
        path = os.path.join(folder, name)
        state = {k: v.detach().to("cpu").clone().contiguous() for k, v in layer.state_dict().items()}
        with atomic_open(path, "wb") as f:
            torch.save(state, f)
        written.append(path)
    return written


def special_token_ids(tokenizer) -> frozenset[int]:
    """Ids that never get a lexical weight: the tokenizer's cls, eos, pad and unk tokens."""
    ids = (tokenizer.cls_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id)
    return frozenset(int(i) for i in ids if i is not None)


def lexical_weights(ids: np.ndarray, weights: np.ndarray, skip_ids: Iterable[int]) -> tuple[SparseVector, np.ndarray]:
    """One text's lexical weights from its token ids and per-token weights.

    Special ids and weights <= 0 are dropped; a repeated token keeps its largest weight.

    Args:
        ids: (T,) token ids of the real (unpadded) tokens.
        weights: (T,) their weights.
        skip_ids: ids to drop.

    Returns:
        The compact vector (ascending ids, float32 weights), and the positions of its entries ordered by
        first occurrence in the text (the key order of FlagEmbedding's dicts).
    """
    ids = np.asarray(ids, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float32)
    keep = (weights > 0) & ~np.isin(ids, np.fromiter(skip_ids, dtype=np.int64))
    ids, weights = ids[keep], weights[keep]
    unique, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    values = np.zeros(len(unique), dtype=np.float32)
    np.maximum.at(values, inverse, weights)
    return SparseVector(unique, values), np.argsort(first, kind="stable")
