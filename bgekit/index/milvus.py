"""Export an index to Milvus (dense FLOAT_VECTOR, BGE-M3 SPARSE_FLOAT_VECTOR) through pymilvus.

The same code serves Milvus Lite (a local file ending in ``.db``, the ``milvus-lite`` package: the embedded
default) and a Milvus server or cluster (``http://host:19530``; a token in ``$MILVUS_TOKEN``). Each document is
one entity: its id (the primary key), text, title, metadata (JSON) and vectors. The collection records the
index's model in its properties, and :class:`~bgekit.index.milvus_search.MilvusSearcher` refuses another model.

An export writes a staging collection and renames it into place when complete, so a killed export never leaves
a partial collection under the asked name. ColBERT vectors stay in the local index (Milvus has no multi-vector
max-sim over them here); dense and sparse vectors are exported.

Metadata filters keep the local index's rules ("1" does not match 1, True does not match 1, None matches null):
each scalar metadata value is also stored as a typed key (``filter_keys``), and filters compare those.

Example:
    >>> client = milvus_client("milvus.db")                                         # doctest: +SKIP
    >>> export_to_milvus(open_index("my-index"), client, "docs")                     # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import re
import time
import uuid
from contextlib import contextmanager
from typing import Any

import numpy as np

from bgekit.errors import InputError, OutputError, UsageError

BATCH = 256
ID_MAX_BYTES = 1024
TEXT_MAX_BYTES = 65535  # Milvus's VARCHAR limit on a default server
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NAME_MAX = 255
STAGING = "__bgekit_staging"
# dense index type -> its build parameters; FLAT is exact (the same results as bgekit's own Flat index)
# (HNSW and AUTOINDEX are approximate: Milvus picks their search settings)
DENSE_INDEXES: dict[str, dict] = {"FLAT": {}, "HNSW": {"M": 16, "efConstruction": 200}, "AUTOINDEX": {}}
METRICS = {"ip": "IP", "l2": "L2"}
EXPORTED = ("dense", "sparse")  # the index outputs a collection can hold
# Milvus refuses a sparse vector without a non-zero weight; a document without one gets this dimension, which no
# query vector has (token ids are far smaller), so it never scores.
EMPTY_SPARSE = {2**32 - 2: 1.0}
PROP_MODEL, PROP_OUTPUTS, PROP_METRIC, PROP_EXPORT = "bgekit.model", "bgekit.outputs", "bgekit.metric", "bgekit.export"
OUTPUT_FIELDS = ["doc_id", "text", "title", "metadata"]


def _pymilvus():
    try:
        import pymilvus
    except ImportError as e:
        raise ImportError("Milvus needs pymilvus (and milvus-lite for a local file): pip install 'bgekit[milvus]'") from e
    return pymilvus


@contextmanager
def milvus_errors(what: str):
    """Milvus's own errors as one :class:`~bgekit.errors.OutputError` that names what failed."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as e:
        raise OutputError(f"Milvus: {what} failed: {getattr(e, 'message', e)}") from None


def is_lite(uri: str) -> bool:
    """Milvus Lite (a local file) rather than a server: pymilvus's own rule, a URI ending in ``.db``."""
    return uri.endswith(".db")


def milvus_client(uri: str, token: str | None = None, timeout: float = 10.0):
    """A MilvusClient for Milvus Lite (a path ending in ``.db``) or a server or cluster (``http://host:19530``).

    Connects now: an unreachable server, or a Lite file in a folder that does not exist, is one clear error.
    """
    pymilvus = _pymilvus()
    if not isinstance(uri, str) or not uri.strip():
        raise UsageError(f"--milvus-uri must be a Milvus Lite file (ending in .db) or a server URL, got {uri!r}")
    if is_lite(uri):
        import importlib.util

        if importlib.util.find_spec("milvus_lite") is None:
            raise ModuleNotFoundError(f"{uri!r} is a Milvus Lite file, which needs milvus-lite: "
                                      "pip install 'bgekit[milvus]'", name="milvus_lite")
        folder = os.path.dirname(os.path.abspath(uri))
        if not os.path.isdir(folder):
            raise OutputError(f"--milvus-uri {uri!r}: the folder {folder!r} does not exist (Milvus Lite keeps its "
                              "data in that file; create the folder first)")
    elif "://" not in uri:
        raise UsageError(f"--milvus-uri {uri!r} is neither a Milvus Lite file (a path ending in .db) nor a server "
                         "URL such as http://127.0.0.1:19530")
    try:
        return pymilvus.MilvusClient(uri=uri, token=token or "", timeout=timeout)
    except pymilvus.exceptions.MilvusException as e:
        reason = getattr(e, "message", e)
        if is_lite(uri):
            raise OutputError(f"cannot open the Milvus Lite file {uri} ({reason}); a Lite file serves one process "
                              "at a time: is another one (a bgekit serve --milvus-uri) using it?") from None
        raise OutputError(f"cannot reach the Milvus server at {uri} ({reason}); is it running, and is the URI "
                          "(and $MILVUS_TOKEN) right?") from None


def check_collection_name(name: str) -> str:
    """Milvus's collection-name rule: a letter or _, then letters, digits or _ (at most 255 characters)."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or len(name) + len(STAGING) > NAME_MAX:
        raise UsageError(f"collection name {name!r}: Milvus names start with a letter or '_' and hold only letters, "
                         f"digits and '_' (at most {NAME_MAX - len(STAGING)} characters here)")
    return name


def typed_key(value: Any) -> str | None:
    """A metadata value as a string that keeps its JSON type (None for lists and objects, which filters never match).

    Numbers compare by value (1 and 1.0 are one key), as in the local index's SQLite filter.
    """
    if value is None:
        return "z:"
    if isinstance(value, bool):
        return f"b:{'true' if value else 'false'}"
    if isinstance(value, str):
        return f"s:{value}"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            value = int(value)
        return f"n:{value!r}"
    return None


def filter_keys(metadata: dict) -> dict[str, str]:
    return {k: key for k, v in metadata.items() if (key := typed_key(v)) is not None}


def filter_expr(where: dict | None) -> str:
    """bgekit's exact-value metadata filter (``{"lang": "en", "year": [2023, 2024]}``) as a Milvus expression."""
    if where is None:
        return ""
    from bgekit.index.documents import filter_sql

    filter_sql(where)  # the local index's checks and messages: one set of rules for both backends
    clauses = []
    for name, value in where.items():
        field = f"filter_keys[{json.dumps(name, ensure_ascii=False)}]"
        options = value if isinstance(value, list) else [value]
        clauses.append("(" + " or ".join(f"{field} == {json.dumps(typed_key(v), ensure_ascii=False)}"
                                          for v in options) + ")")
    return " and ".join(clauses)


def _schema(client: Any, store: Any, outputs: tuple[str, ...]):
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False, description="bgekit index export")
    schema.add_field("doc_id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX_BYTES)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=store.model_info.dim)
    if "sparse" in outputs:
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
    schema.add_field("title", DataType.VARCHAR, max_length=TEXT_MAX_BYTES, nullable=True)
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("filter_keys", DataType.JSON)
    return schema


def _index_params(client: Any, metric: str, dense_index: str, outputs: tuple[str, ...]):
    params = client.prepare_index_params()
    params.add_index("dense", index_type=dense_index, metric_type=metric, params=dict(DENSE_INDEXES[dense_index]))
    if "sparse" in outputs:
        params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    return params


def _check_bytes(value: str | None, what: str, limit: int, doc_id: str, row: int) -> None:
    if value is not None and len(value) * 4 > limit and len(value.encode("utf-8")) > limit:
        raise InputError(f"document {doc_id!r} (index row {row}): its {what} is {len(value.encode('utf-8'))} bytes; "
                         f"a Milvus VARCHAR field holds at most {limit}")


def _entities(store: Any, rows: range, outputs: tuple[str, ...]) -> list[dict]:
    dense = np.asarray(store.dense_vectors[rows.start:rows.stop], dtype=np.float32)  # (B, D)
    out = []
    for row, (doc_id, text, title, metadata) in sorted(store.documents(rows).items()):
        _check_bytes(doc_id, "id", ID_MAX_BYTES, doc_id, row)
        _check_bytes(text, "text", TEXT_MAX_BYTES, doc_id, row)
        _check_bytes(title, "title", TEXT_MAX_BYTES, doc_id, row)
        entity = {"doc_id": doc_id, "dense": dense[row - rows.start].tolist(), "text": text, "title": title,
                  "metadata": metadata, "filter_keys": filter_keys(metadata)}
        if "sparse" in outputs:
            r = store.sparse.matrix[row]
            entity["sparse"] = {int(i): float(v) for i, v in zip(r.indices, r.data) if v != 0} or dict(EMPTY_SPARSE)
        out.append(entity)
    return out


def export_to_milvus(store: Any, client: Any, collection: str, *, overwrite: bool = False, dense_index: str = "FLAT",
                     show_progress: bool = True) -> int:
    """Copy every document of ``store`` into a new Milvus collection. Returns the number of entities.

    Args:
        store: an open index (:func:`~bgekit.index.store.open_index`).
        client: a MilvusClient (see :func:`milvus_client`).
        collection: the collection name; an existing one is an error unless ``overwrite``.
        dense_index: the Milvus index over dense vectors: a key of :data:`DENSE_INDEXES` (FLAT: exact search).
        show_progress: a progress bar.
    """
    from tqdm.auto import tqdm

    check_collection_name(collection)
    if dense_index not in DENSE_INDEXES:
        raise ValueError(f"unknown dense_index {dense_index!r}; valid: {', '.join(DENSE_INDEXES)}")
    outputs = tuple(o for o in store.outputs if o in EXPORTED)
    metric = METRICS[store.manifest["dense"]["metric"]]
    staging = collection + STAGING
    with milvus_errors(f"export to collection {collection!r}"):
        if client.has_collection(collection) and not overwrite:
            raise ValueError(f"Milvus collection {collection!r} exists; replace it with overwrite=True "
                             "(bgekit index export-milvus --overwrite)")
        if client.has_collection(staging):  # left by an export that was killed
            client.drop_collection(staging)
        properties = {PROP_MODEL: json.dumps(store.model_info.to_json()), PROP_OUTPUTS: ",".join(outputs),
                      PROP_METRIC: store.manifest["dense"]["metric"],
                      PROP_EXPORT: f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}/{uuid.uuid4().hex[:8]}"}
        client.create_collection(staging, schema=_schema(client, store, outputs), properties=properties)
        # sync=False: the collection is empty, so there is nothing to wait for (and Milvus Lite cannot wait)
        client.create_index(staging, _index_params(client, metric, dense_index, outputs), sync=False)
        try:
            with tqdm(total=store.count, desc="Exporting", unit="doc", disable=not show_progress) as bar:
                for start in range(0, store.count, BATCH):
                    rows = range(start, min(start + BATCH, store.count))
                    client.insert(staging, _entities(store, rows, outputs))
                    bar.update(len(rows))
            client.flush(staging)
            if client.has_collection(collection):
                client.drop_collection(collection)
            client.rename_collection(staging, collection)
            client.load_collection(collection)
        except BaseException:
            if client.has_collection(staging):
                client.drop_collection(staging)
            raise
    return store.count
