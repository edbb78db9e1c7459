"""BGE-M3: dense vectors, sparse lexical weights and ColBERT multi-vectors from one forward pass.

:class:`M3Embedder` is an :class:`~bgekit.encoder.Embedder` (``encode*`` give dense vectors, so it works
wherever an embedder does) with :meth:`M3Embedder.encode_multi` for all three outputs and
:meth:`M3Embedder.score_pairs` for hybrid scores. FlagEmbedding's ``BGEM3FlagModel`` is in
:mod:`bgekit.compat.m3`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from bgekit import scoring
from bgekit.batching import check_batch_size, check_texts, map_devices, run_sorted
from bgekit.encoder import Embedder, _check_length, _given
from bgekit.heads import lexical_weights, load_heads, special_token_ids
from bgekit.prompts import apply_instruction
from bgekit.types import SparseVector

OUTPUTS = ("dense", "sparse", "colbert")
# role -> (instruction attribute, instruction-format attribute, max-length attribute)
ROLES = {
    "query": ("query_instruction_for_retrieval", "query_instruction_format", "query_max_length"),
    "passage": ("passage_instruction_for_retrieval", "passage_instruction_format", "passage_max_length"),
    "text": (None, None, "passage_max_length"),
}


@dataclass(frozen=True)
class M3Output:
    """What :meth:`M3Embedder.encode_multi` returns; an output not asked for is None.

    For a single string: ``dense`` is (D,), ``sparse`` one SparseVector, ``colbert`` one (n, C) array.

    Attributes:
        dense: (N, D) float32.
        sparse: one SparseVector per text (sorted token ids, float32 weights).
        colbert: one (n_tokens - 1, C) float32 array per text (``<s>`` dropped, ``</s>`` kept).
    """

    dense: np.ndarray | None = None
    sparse: list[SparseVector] | SparseVector | None = None
    colbert: list[np.ndarray] | np.ndarray | None = None


class M3Embedder(Embedder):
    """BGE-M3 embedder: dense, sparse (lexical) and multi-vector (ColBERT) outputs.

    Args:
        model_name_or_path: a BGE-M3 folder (with ``colbert_linear.pt`` and ``sparse_linear.pt``) or hub name.
        colbert_dim: expected ColBERT size; -1 reads it from ``colbert_linear.pt``.
        **kwargs: any argument of :class:`~bgekit.encoder.Embedder` (unknown ones raise TypeError).

    Example:
        >>> m3 = M3Embedder("BAAI/bge-m3")                                   # doctest: +SKIP
        >>> out = m3.encode_multi(["I love NLP"], role="query")             # doctest: +SKIP
        >>> out.dense.shape, out.sparse[0].indices[:3], out.colbert[0].shape  # doctest: +SKIP
    """

    def __init__(self, model_name_or_path: str = "BAAI/bge-m3", *, colbert_dim: int = -1, **kwargs: Any):
        super().__init__(model_name_or_path, **kwargs)
        hidden = self.model.config.get_text_config().hidden_size
        self.heads = load_heads(self.path, hidden, colbert_dim, self.dtype)
        self.special_ids = special_token_ids(self.tokenizer)

    @property
    def colbert_vector_dim(self) -> int:
        """Size of a ColBERT vector (after truncate_dim)."""
        c = self.heads.colbert_dim
        return min(c, self.truncate_dim) if self.truncate_dim else c

    def encode_multi(self, sentences, role: str = "passage", outputs: Sequence[str] = OUTPUTS,
                     batch_size: int | None = None, max_length: int | None = None,
                     pad_to_multiple_of: int | None = None, show_progress: bool | None = None) -> M3Output:
        """Encode texts into any of the three M3 outputs.

        Args:
            sentences: a string or a list of strings.
            role: "query" (query instruction, query_max_length), "passage" (passage instruction) or "text" (none).
            outputs: any of "dense", "sparse", "colbert".
            batch_size, max_length: default to the constructor's (max_length by role).
            pad_to_multiple_of: pad batches to a multiple of this many tokens.
            show_progress: progress bar; None shows one for 256 texts or more.

        Returns:
            An :class:`M3Output`.
        """
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
        instruction_attr, format_attr, length_attr = ROLES[role]
        texts, single = check_texts(sentences)
        instruction = getattr(self, instruction_attr) if instruction_attr else None
        if instruction is not None:
            texts = [apply_instruction(getattr(self, format_attr), instruction, t) for t in texts]
        outputs = _check_outputs(outputs)
        rows = self._encode_rows(texts, outputs, batch_size, _given(max_length, getattr(self, length_attr)),
                                 pad_to_multiple_of, show_progress)
        dense, sparse, colbert = self._collect(rows, outputs)
        if single:
            dense, sparse, colbert = (None if x is None else x[0] for x in (dense, sparse, colbert))
        return M3Output(dense, sparse, colbert)

    def score_pairs(self, pairs: Sequence[Sequence[str]], batch_size: int | None = None,
                    max_query_length: int | None = None, max_passage_length: int | None = None,
                    weights: Sequence[float] | None = None, show_progress: bool | None = None,
                    device: str | None = None) -> dict[str, np.ndarray]:
        """Dense, sparse, ColBERT and fused scores of (query, passage) pairs; no instructions are applied.

        ColBERT max-sim only looks at each passage's real tokens (see docs/compat.md, "BGE-M3").

        Args:
            pairs: a list of (query, passage) string pairs.
            batch_size: defaults to the constructor's.
            max_query_length / max_passage_length: default to query_max_length / passage_max_length.
            weights: [dense, sparse, colbert] weights of the fused modes; default [1, 1, 1].
            show_progress: progress bar; None shows one for 256 texts or more.
            device: run on this one device (None: the target devices).

        Returns:
            mode -> (len(pairs),) float64 scores, for every mode of :data:`bgekit.scoring.MODES`.
        """
        weights = scoring.check_weights(weights)
        pairs = _check_pairs(pairs)
        q_rows = self._rows_by_text([q for q, _ in pairs], batch_size, _given(max_query_length, self.query_max_length),
                                    show_progress, device)
        p_rows = self._rows_by_text([p for _, p in pairs], batch_size, _given(max_passage_length, self.passage_max_length),
                                    show_progress, device)
        single: dict[str, list[float]] = {"dense": [], "sparse": [], "colbert": []}
        for q, p in pairs:
            a, b = q_rows[q], p_rows[p]
            single["dense"].append(float(np.dot(a["dense"].astype(np.float64), b["dense"].astype(np.float64))))
            single["sparse"].append(a["sparse"].dot(b["sparse"]))
            single["colbert"].append(scoring.maxsim(a["colbert"], b["colbert"]))
        return scoring.fuse(single, weights)

    # ------------------------------------------------------------------ internals
    def _to(self, device: str) -> None:
        if device != self._device:
            self.heads.to(device)
        super()._to(device)

    def _rows_by_text(self, texts: list[str], batch_size: int | None, max_length: int,
                      show_progress: bool | None, device: str | None = None) -> dict[str, dict]:
        """All three outputs of each distinct text (a text repeated across pairs is encoded once)."""
        unique = list(dict.fromkeys(texts))
        return dict(zip(unique, self._encode_rows(unique, OUTPUTS, batch_size, max_length, None, show_progress, device)))

    def _collect(self, rows: list[dict], outputs: tuple[str, ...]):
        """Per-text rows -> (dense (N, D) array, list of SparseVector, list of colbert arrays); None if not asked."""
        dense = sparse = colbert = None
        if "dense" in outputs:
            dense = np.stack([r["dense"] for r in rows]) if rows else np.zeros((0, self.dim), dtype=np.float32)
        if "sparse" in outputs:
            sparse = [r["sparse"] for r in rows]
        if "colbert" in outputs:
            colbert = [r["colbert"] for r in rows]
        return dense, sparse, colbert

    def _encode_rows(self, texts: list[str], outputs: tuple[str, ...], batch_size: int | None, max_length: int,
                     pad_to_multiple_of: int | None, show_progress: bool | None, device: str | None = None) -> list[dict]:
        """One dict per text with the asked outputs (plus "sparse_order"), on ``device`` or the target devices."""
        batch_size = check_batch_size(_given(batch_size, self.batch_size))
        max_length = _check_length(max_length, "max_length", getattr(self, "max_positions", None))
        args = (outputs, batch_size, max_length, pad_to_multiple_of, show_progress)
        if not texts:
            return []
        devices = self.target_devices if device is None else [device]
        if len(devices) == 1 or len(texts) == 1:
            return self._rows_on_device(devices[0], texts, *args)
        n = len(devices)
        parts = map_devices(self._rows_on_device, [(texts[i::n],) + args for i in range(n)], devices)
        rows: list[Any] = [None] * len(texts)
        for i, part in enumerate(parts):
            rows[i::n] = part
        return rows

    def _rows_on_device(self, device: str, texts: list[str], outputs: tuple[str, ...], batch_size: int,
                        max_length: int, pad_to_multiple_of: int | None, show_progress: bool | None) -> list[dict]:
        import torch

        features = self._tokenize(texts, max_length)
        self._to(device)

        @torch.inference_mode()
        def forward(batch):
            inputs = self._pad(batch, pad_to_multiple_of).to(device)
            hidden = self.model(**inputs, return_dict=True).last_hidden_state  # (B, T, H)
            return self._split_rows(hidden, inputs["input_ids"], inputs["attention_mask"], outputs)

        return run_sorted(features, [len(f["input_ids"]) for f in features], forward, batch_size, device,
                          desc="Encoding (M3)", show_progress=show_progress)

    def _split_rows(self, hidden, input_ids, mask, outputs: tuple[str, ...]) -> list[dict]:
        """A padded batch's outputs -> one dict per text, padding removed. hidden (B, T, H), mask (B, T)."""
        real = mask.bool().cpu().numpy()  # (B, T)
        rows: list[dict] = [{} for _ in range(hidden.shape[0])]
        if "dense" in outputs:
            dense = self._finish(self._pool(hidden, mask)).cpu().numpy()  # (B, D)
            for row, vec in zip(rows, dense):
                row["dense"] = vec
        if "sparse" in outputs:
            weights = self.heads.token_weights(hidden).float().cpu().numpy()  # (B, T)
            ids = input_ids.cpu().numpy()
            for row, i, w, m in zip(rows, ids, weights, real):
                row["sparse"], row["sparse_order"] = lexical_weights(i[m], w[m], self.special_ids)
        if "colbert" in outputs:
            vecs = self.heads.colbert_vecs(hidden, mask)  # (B, T-1, C)
            b, t, c = vecs.shape
            vecs = self._finish(vecs.reshape(b * t, c)).reshape(b, t, -1).cpu().numpy()  # (B, T-1, C')
            for row, v, m in zip(rows, vecs, real):
                row["colbert"] = v[m[1:]]  # (n_tokens - 1, C')
        return rows


def _check_outputs(outputs: Sequence[str]) -> tuple[str, ...]:
    if isinstance(outputs, str):
        outputs = (outputs,)
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown:
        raise ValueError(f"unknown M3 output(s) {unknown}; valid: {', '.join(OUTPUTS)}")
    if not outputs:
        raise ValueError(f"ask for at least one M3 output of {', '.join(OUTPUTS)}")
    return tuple(o for o in OUTPUTS if o in outputs)


def _check_pairs(pairs: Any) -> list[tuple[str, str]]:
    if not isinstance(pairs, (list, tuple)):
        raise TypeError(f"sentence_pairs must be a list of (query, passage) pairs, got {type(pairs).__name__}")
    out = []
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(s, str) for s in pair):
            raise TypeError(f"sentence_pairs[{i}] must be a (query, passage) pair of strings, got {pair!r:.80}")
        out.append((pair[0], pair[1]))
    return out
