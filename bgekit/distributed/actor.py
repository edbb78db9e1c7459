"""What runs inside each Ray actor: read rows (jsonl lines or parquet records), encode them with one model held for
the actor's life, and return the vectors as an Arrow table, one row per input row, in input order.

A row that cannot be read (not JSON, no text) or whose encoding raises is returned with its ``error`` set, not
dropped, so the driver can name every failing id. A batch whose encoding raises is re-encoded row by row to find
the rows at fault; the others keep their vectors. No Ray import here: the class is plain Python, and Ray Data
turns it into a pool of actors.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

KINDS = {"passage": ("encode_corpus", "passage"), "query": ("encode_queries", "query"), "plain": ("encode", "text")}


@dataclass(frozen=True)
class RowFormat:
    """How a corpus row becomes ``(id, text)``.

    Attributes:
        field: the field holding the text.
        corpus: index corpus rules (bgekit.index.documents): ``id`` or ``_id`` required, a ``title`` is prepended
            to the text. Otherwise the id is optional (the driver numbers rows without one).
        jsonl: rows arrive as raw jsonl lines (else as parquet records).
    """

    field: str = "text"
    corpus: bool = False
    jsonl: bool = True

    def parse(self, raw: Any) -> tuple[str | None, str]:
        """``(id or None, text to encode)``; ValueError names what is wrong with the row."""
        obj = raw
        if self.jsonl:
            if isinstance(raw, bytes):
                try:
                    raw = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})") from None
            if raw is None or not raw.strip():
                raise ValueError("a blank line")  # filtered out before; kept as a guard
            try:
                obj = json.loads(raw.lstrip("\ufeff"))
            except json.JSONDecodeError as e:
                raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
        doc_id = obj.get("id", obj.get("_id"))
        if doc_id is not None and (isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)) or doc_id == ""):
            raise ValueError(f"'id' must be a non-empty string or an integer, got {doc_id!r:.60}")
        if self.corpus and doc_id is None:
            raise ValueError("no 'id' (or '_id')")
        text = obj.get(self.field)
        if not isinstance(text, str):
            raise ValueError(f"expected a string field {self.field!r}, got {type(text).__name__}")
        if self.corpus:
            title = obj.get("title")
            if title is not None and not isinstance(title, str):
                raise ValueError(f"'title' must be a string, got {type(title).__name__}")
            text = f"{title} {text}".strip() if title else text
        return (None if doc_id is None else str(doc_id)), text


@dataclass(frozen=True)
class ModelLoader:
    """Loads ``bgekit.load_embedder(name, devices=device, **kwargs)`` inside an actor (picklable)."""

    name: str
    kwargs: dict = field(default_factory=dict)

    def __call__(self, device: str) -> Any:
        from bgekit.loading import load_embedder

        return load_embedder(self.name, devices=device, **self.kwargs)


class EncodeActor:
    """One model per actor; ``__call__`` maps an Arrow batch of rows to an Arrow table of vectors.

    Args:
        loader: ``loader(device) -> embedder`` (a :class:`ModelLoader` or any picklable callable).
        fmt: the :class:`RowFormat` of the input rows.
        kind: "passage", "query" or "plain" (which instruction applies).
        sparse: also return BGE-M3 lexical weights.
        use_gpu: load the model on the actor's GPU (Ray sets CUDA_VISIBLE_DEVICES to the one it assigned).
    """

    def __init__(self, loader: Callable[[str], Any], fmt: RowFormat, kind: str, sparse: bool, use_gpu: bool):
        self.model = loader("cuda:0" if use_gpu else "cpu")  # Ray shows an actor only its own GPU
        self.fmt, self.kind, self.sparse = fmt, kind, sparse
        self.m3 = hasattr(self.model, "encode_multi")
        if sparse and not self.m3:
            raise ValueError(f"sparse vectors need a BGE-M3 model; got {type(self.model).__name__}")
        self.dim = int(self.model.dim)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, list]:
        """(dense (n, D) float32, sparse vectors or []) for ``texts``."""
        method, role = KINDS[self.kind]
        if self.m3 and self.sparse:
            out = self.model.encode_multi(texts, role=role, outputs=("dense", "sparse"), show_progress=False)
            return np.asarray(out.dense, dtype=np.float32), list(out.sparse)
        dense = getattr(self.model, method)(texts, show_progress=False)
        return np.asarray(dense, dtype=np.float32).reshape(len(texts), self.dim), []

    def _encode_rows(self, texts: list[str]) -> tuple[np.ndarray, list, list[str | None]]:
        """Encode as one batch; if that raises, row by row, so only the rows at fault carry an error."""
        if not texts:
            return np.zeros((0, self.dim), np.float32), [], []
        try:
            dense, sparse = self.encode(texts)
            return dense, sparse, [None] * len(texts)
        except Exception:  # noqa: BLE001 - the row-by-row pass below names the cause per row
            pass
        dense, sparse, errors = np.zeros((len(texts), self.dim), np.float32), [], []
        for k, text in enumerate(texts):
            try:
                d, s = self.encode([text])
                dense[k] = d[0]
                sparse += s
                errors.append(None)
            except Exception as e:  # noqa: BLE001 - reported to the driver with the row's id
                sparse += [None] if self.sparse else []
                errors.append(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}")
        return dense, sparse, errors

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        raw = batch.column("text").to_pylist() if self.fmt.jsonl else batch.to_pylist()
        if self.fmt.jsonl:
            raw = [r for r in raw if r is not None and r.strip()]  # blank lines are not rows (as bgekit.io)
        ids: list[str | None] = []
        texts: list[str | None] = []
        errors: list[str | None] = []
        for r in raw:
            try:
                doc_id, text = self.fmt.parse(r)
                ids.append(doc_id), texts.append(text), errors.append(None)
            except ValueError as e:
                ids.append(_id_of(r)), texts.append(None), errors.append(f"unreadable row: {e}")
        good = [k for k, e in enumerate(errors) if e is None]
        dense = np.zeros((len(raw), self.dim), np.float32)
        sparse: list = [None] * len(raw)
        d, s, errs = self._encode_rows([texts[k] for k in good])
        for j, k in enumerate(good):
            dense[k], errors[k] = d[j], errs[j]
            if self.sparse:
                sparse[k] = s[j]
        return _table(pa, ids, errors, dense, sparse if self.sparse else None)


def _id_of(raw: Any) -> str | None:
    """The id of a row that could not be read, when it can be found at all (for the error report)."""
    obj = raw
    if isinstance(raw, (str, bytes)):
        try:
            obj = json.loads(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw.lstrip("\ufeff"))
        except json.JSONDecodeError:
            return None
    doc_id = obj.get("id", obj.get("_id")) if isinstance(obj, dict) else None
    return None if doc_id is None else str(doc_id)


def _table(pa: Any, ids: list, errors: list, dense: np.ndarray, sparse: list | None) -> Any:
    """The actor's output: id, error, dense (fixed-size list), and sparse indices / values (lists) when asked."""
    dim = dense.shape[1]
    columns = {"id": pa.array(ids, pa.string()), "error": pa.array(errors, pa.string()),
               "dense": pa.FixedSizeListArray.from_arrays(pa.array(dense.reshape(-1), pa.float32()), dim)}
    if sparse is not None:
        lengths = [0 if v is None else len(v) for v in sparse]
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        idx = [v.indices for v in sparse if v is not None]
        val = [v.values for v in sparse if v is not None]
        columns["sparse_indices"] = pa.ListArray.from_arrays(
            offsets, pa.array(np.concatenate(idx).astype(np.int64) if idx else np.zeros(0, np.int64)))
        columns["sparse_values"] = pa.ListArray.from_arrays(
            offsets, pa.array(np.concatenate(val).astype(np.float32) if val else np.zeros(0, np.float32)))
    return pa.table(columns)
